#include "options.hpp"

#include <algorithm>
#include <charconv>
#include <cstdlib>
#include <cstdio>
#include <iostream>
#include <string_view>

namespace shmap::bench {

namespace {

constexpr const char* kUsage = R"(usage: shmap-bench [options]

Measures shmap's throughput with P forked processes sharing one map, next to
baselines run in the same binary on the same key sets:
  shmap             shmap::Map opened by name in every worker process
  ideal-shm         an unsafe linear-probing table of 16-byte inline slots in a
                    MAP_SHARED mapping, same worker processes: the ceiling for
                    get (8-byte keys and values only)
  ideal-indirect    the same without inline slots: 8-byte slot words pointing to
                    24-byte records, as shmap's index does, still with no
                    validation: the ceiling for shmap's layout
  std-mutex         std::unordered_map<std::string, std::string> behind a
                    std::mutex, worker THREADS of one process (it cannot be
                    shared across processes)
  std-shared_mutex  the same behind a std::shared_mutex, gets taking it shared
                    (workloads that read)
Every workload runs with 1 worker and with P workers; each measurement is
repeated and the median reported with its min-max, and shmap's ratio to each
baseline at the same worker count.

options:
  --procs P           worker processes (threads for std-*); default 2
  --keys N            keys in the map; default 1000000
  --key-bytes K       bytes per key; default 8
  --value-bytes V     bytes per value; default 8
  --duration S        seconds per measurement (a float); default 2
  --workloads LIST    comma-separated, run in order; default get,insert,90/10
                        get       uniform random gets of the N preloaded keys
                        get-miss  uniform random gets of N keys never inserted
                        insert    worker w of W inserts its own slice of N/W
                                  fresh keys into an empty map sized for N,
                                  until the slice is done or the duration ends
                        R/W       R% get, W% insert_or_assign of uniform random
                                  preloaded keys (R+W=100), e.g. 90/10, 50/50
  --impls LIST        comma-separated subset of shmap, ideal-shm,
                      ideal-indirect, std-mutex, std-shared_mutex; default all
                      that apply
  --json PATH         write every measurement as JSON; default
                      bench-results.json in the current directory ("" = none)
  --seed S            seeds keys, per-worker operation streams and shmap's
                      hash seed; default 1
  --pin POLICY        compact | scatter | none; default compact
                        compact   one worker per core, filling a NUMA node
                                  before the next, SMT siblings last
                        scatter   round-robin over packages and the NUMA
                                  nodes in them, SMT siblings last
                        none      no binding
  --repeat R          repetitions of each measurement; default 3 (median shown)
  --plan-only         print the topology and the placement plan, run nothing
  --synthetic DESC    with --plan-only: plan for an hwloc synthetic topology,
                      e.g. "package:2 numa:2 core:4 pu:2"
  -h, --help          this text

Method: keys and operation streams are generated before the timed region;
workers start together on a spin barrier in shared memory and stop at a common
deadline; Mops/s = all workers' operations / (common start to last worker's
end). Every shmap measurement uses a fresh segment.
)";

template <class T>
bool parse_number(std::string_view s, T& out) {
  const auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), out);
  return ec == std::errc() && p == s.data() + s.size();
}

std::vector<std::string_view> split(std::string_view s, char sep) {
  std::vector<std::string_view> parts;
  while (true) {
    const auto pos = s.find(sep);
    parts.push_back(s.substr(0, pos));
    if (pos == std::string_view::npos) break;
    s.remove_prefix(pos + 1);
  }
  return parts;
}

}  // namespace

const std::vector<std::string>& all_impls() {
  static const std::vector<std::string> impls{"shmap", "ideal-shm", "ideal-indirect", "std-mutex",
                                                  "std-shared_mutex"};
  return impls;
}

std::optional<Options> parse_options(int argc, char** argv, int& exit_code) {
  Options o;
  exit_code = 2;
  auto fail = [&](const std::string& msg) -> std::optional<Options> {
    std::cerr << "shmap-bench: " << msg << " (see --help)\n";
    return std::nullopt;
  };
  std::string workloads = "get,insert,90/10";
  std::string impls;

  for (int i = 1; i < argc; ++i) {
    std::string_view arg = argv[i];
    std::string_view value;
    bool has_value = false;
    if (const auto eq = arg.find('='); arg.starts_with("--") && eq != std::string_view::npos) {
      value = arg.substr(eq + 1);
      arg = arg.substr(0, eq);
      has_value = true;
    }
    auto next = [&]() -> bool {
      if (has_value) return true;
      if (i + 1 >= argc) return false;
      value = argv[++i];
      return true;
    };
    const std::string name(arg);
    if (arg == "-h" || arg == "--help") {
      std::cout << kUsage;
      exit_code = 0;
      return std::nullopt;
    }
    if (arg == "--plan-only") {
      o.plan_only = true;
      continue;
    }
    if (!next()) return fail(name + " needs a value");
    if (arg == "--procs") {
      if (!parse_number(value, o.procs) || o.procs < 1 || o.procs > 256) return fail("--procs must be 1..256");
    } else if (arg == "--keys") {
      if (!parse_number(value, o.keys) || o.keys < 1) return fail("--keys must be a positive integer");
    } else if (arg == "--key-bytes") {
      if (!parse_number(value, o.key_bytes) || o.key_bytes < 1 || o.key_bytes > 4095)
        return fail("--key-bytes must be 1..4095");
    } else if (arg == "--value-bytes") {
      if (!parse_number(value, o.value_bytes) || o.value_bytes > (std::size_t{1} << 20) - 1)
        return fail("--value-bytes must be 0..1048575");
    } else if (arg == "--duration") {
      const std::string v(value);
      char* end = nullptr;
      o.duration_s = std::strtod(v.c_str(), &end);
      if (v.empty() || *end != '\0' || !(o.duration_s > 0) || o.duration_s > 3600)
        return fail("--duration must be a number of seconds in (0, 3600]");
    } else if (arg == "--workloads") {
      workloads = std::string(value);
    } else if (arg == "--impls") {
      impls = std::string(value);
    } else if (arg == "--json") {
      o.json_path = std::string(value);
    } else if (arg == "--seed") {
      if (!parse_number(value, o.seed)) return fail("--seed must be an unsigned integer");
    } else if (arg == "--pin") {
      const auto p = parse_pin_policy(value);
      if (!p) return fail("--pin must be compact, scatter or none");
      o.pin = *p;
    } else if (arg == "--repeat") {
      if (!parse_number(value, o.repeat) || o.repeat < 1 || o.repeat > 1000) return fail("--repeat must be 1..1000");
    } else if (arg == "--synthetic") {
      o.synthetic = std::string(value);
    } else {
      return fail("unknown option " + name);
    }
  }

  for (std::string_view w : split(workloads, ',')) {
    auto wl = parse_workload(w);
    if (!wl) return fail("unknown workload \"" + std::string(w) + "\"; workloads are " + workload_syntax());
    o.workloads.push_back(*wl);
  }
  if (impls.empty()) {
    o.impls = all_impls();
  } else {
    for (std::string_view s : split(impls, ',')) {
      if (std::find(all_impls().begin(), all_impls().end(), s) == all_impls().end())
        return fail("unknown implementation \"" + std::string(s) + "\"");
      o.impls.emplace_back(s);
    }
  }
  if (!o.synthetic.empty() && !o.plan_only) return fail("--synthetic only goes with --plan-only");
  exit_code = 0;
  return o;
}

}  // namespace shmap::bench
