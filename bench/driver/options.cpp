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

Measures shmap's throughput and latency with P forked processes sharing one
map, next to baselines run in the same binary on the same key streams:
  shmap             shmap::Map opened by name in every worker process
  shmap-grow        the same, created at 16 slots (capacity 12, a 1 MiB arena)
                    so it grows while the workers insert (insert workload
                    only; the insert table shows shmap-grow / shmap against
                    its target, >= 0.5x)
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
  boost-ipc         Boost.Interprocess: a boost::unordered_map of 8-byte keys
                    and values in a managed_shared_memory segment behind an
                    interprocess_sharable_mutex (gets shared, writes
                    exclusive), opened by name in every worker process (8-byte
                    keys and values only)
Every workload runs with 1 worker and with P workers (get-migrating and
get-with-writer with P only); each measurement is repeated and the median reported with its min-max, shmap's ratio to each
baseline at the same worker count, and the p50/p99/p99.9 latency of the
sampled operations (all repeats merged).

options:
  --procs P           worker processes (threads for std-*); default 2
  --keys N            keys in the map; default 1000000
  --key-bytes K       bytes per key; default 8
  --value-bytes V     bytes per value; default 8
  --duration S        seconds per measurement (a float); default 2
  --workloads LIST    comma-separated, run in order; default get,insert,90/10
                        get        uniform random gets of the N preloaded keys
                        get-miss   uniform random gets of N keys never inserted
                        insert     worker w of W inserts its own slice of N/W
                                   fresh keys into an empty map sized for N,
                                   until the slice is done or the duration ends
                        R/W        R% get, W% insert_or_assign of uniform
                                   random preloaded keys (R+W=100), e.g. 90/10
                        zipf       zipfian gets of the preloaded keys (rank r
                                   drawn with probability ~ 1/(r+1)^theta,
                                   Gray et al.'s method, hot keys scattered
                                   over the key space)
                        zipf-R/W   a mix over zipfian keys, e.g. zipf-90/10
                        counter    fetch_add(1) on K hot counter keys, chosen
                                   uniformly (std-*, boost-ipc: increment
                                   under the lock; ideal-*: an atomic fetch_add
                                   on the slot's value); the counters must sum
                                   to the increments afterwards
                      not in the default run (opt in by name):
                        get-migrating    shmap only, P >= 2 workers: worker 0
                                   inserts fresh keys and erases each one
                                   --writer-window inserts later, so the index
                                   keeps rebuilding at the same size (map
                                   created with help_slots 16, so a migration
                                   spans many writes); workers 1.. get uniform
                                   random preloaded keys. Reports the readers'
                                   gets/s, the migrations completed in the run
                                   and the fraction of the parent's samples of
                                   stats() (at least 10 ms apart) that found a
                                   migration running
                        get-with-writer  its baseline: worker 0 does
                                   insert_or_assign of preloaded keys instead
                                   (no migration); with both, the ratio of the
                                   readers' gets/s is printed
                        churn      every worker inserts fresh keys and erases
                                   each one --churn-window of its inserts
                                   later, into a map created for the live
                                   keys; Mops/s counts an insert and an erase
                                   as one op each; shmap's bytes per live key
                                   (the segment file's allocated blocks)
                                   are printed next to the get workload's
                                   presized map and key+value
  --zipf-theta T      skew of zipf workloads, 0 <= T < 1; default 0.99
  --counter-keys K    counters of the counter workload (1..N); default 8
  --churn-window W    churn: live keys per worker; default --keys / workers
                      (so the live set is --keys, like the get workload's map)
  --writer-window W   get-migrating: the writer's live fresh keys; default 1000
  --impls LIST        comma-separated subset of shmap, shmap-grow, ideal-shm,
                      ideal-indirect, std-mutex, std-shared_mutex, boost-ipc;
                      default all that apply
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
  --membind POLICY    where the table's pages go; default firsttouch
                        firsttouch      no policy: the first toucher's node
                                        (the parent's, for a preloaded table)
                        bind:N          every page on NUMA node N (logical)
                        interleave      round-robin over the NUMA nodes the
                                        measurement's workers are pinned to
                                        (every node if they are unpinned)
                        interleave:all  round-robin over every NUMA node
                      Applied with hwloc_set_area_membind (mbind) to the
                      shared object itself, before the preload, so it holds
                      for pages any worker touches first; shmap's segment
                      file is mapped by the driver just for that. std-*:
                      the parent thread's policy (inherited by its worker
                      threads). After each run the resident pages are
                      sampled and their nodes reported.
  --latency-sample N  time every N-th operation of each worker (N a power of
                      two; rdtsc, calibrated) into a log-linear histogram
                      (1.6% buckets); 0 = off; default 256. A timed operation
                      runs alone (the fences drain the out-of-order window), so
                      it costs about two memory latencies: measured on the
                      dev VM, 1 in 256 costs 0-4% of the throughput (within
                      the noise), 1 in 64 costs ideal-shm 5-14% and shmap
                      0-6%
  --repeat R          repetitions of each measurement; default 3 (median shown)
  --plan-only         print the topology, the placement and memory plans, run
                      nothing
  --synthetic DESC    with --plan-only: plan for an hwloc synthetic topology,
                      e.g. "package:2 numa:2 core:4 pu:2"
  -h, --help          this text

Method: keys and operation streams (zipfian ones included) are generated
before the timed region (except the fresh keys of churn and of the
get-migrating writer: two fmix64 per operation in the loop, since a cycled
stream would re-insert keys into their own old slots and stop the
migrations); workers start together on a spin barrier in shared
memory and stop at a common deadline; Mops/s = all workers' operations /
(common start to last worker's end). Every measurement uses a fresh table
(shmap: a fresh segment). Latency samples are fenced, so they include the
clock's own cost (the "floor" printed at start).
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
  static const std::vector<std::string> impls{"shmap",     "shmap-grow",       "ideal-shm", "ideal-indirect",
                                              "std-mutex", "std-shared_mutex", "boost-ipc"};
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
    } else if (arg == "--membind") {
      const auto p = parse_mem_policy(value);
      if (!p) return fail("--membind must be firsttouch, bind:N, interleave or interleave:all");
      o.membind = *p;
    } else if (arg == "--latency-sample") {
      if (!parse_number(value, o.latency_sample) || o.latency_sample > (1u << 20) ||
          (o.latency_sample & (o.latency_sample - 1)) != 0)
        return fail("--latency-sample must be 0 or a power of two up to 1048576");
    } else if (arg == "--zipf-theta") {
      const std::string v(value);
      char* end = nullptr;
      o.zipf_theta = std::strtod(v.c_str(), &end);
      if (v.empty() || *end != '\0' || !(o.zipf_theta >= 0 && o.zipf_theta < 1))
        return fail("--zipf-theta must be a number in [0, 1)");
    } else if (arg == "--counter-keys") {
      if (!parse_number(value, o.counter_keys) || o.counter_keys < 1) return fail("--counter-keys must be at least 1");
    } else if (arg == "--churn-window") {
      if (!parse_number(value, o.churn_window) || o.churn_window < 1 || o.churn_window > (std::uint64_t{1} << 32))
        return fail("--churn-window must be 1..2^32");
    } else if (arg == "--writer-window") {
      if (!parse_number(value, o.writer_window) || o.writer_window < 1 || o.writer_window > (std::uint64_t{1} << 32))
        return fail("--writer-window must be 1..2^32");
    } else if (arg == "--repeat") {
      if (!parse_number(value, o.repeat) || o.repeat < 1 || o.repeat > 1000) return fail("--repeat must be 1..1000");
    } else if (arg == "--synthetic") {
      o.synthetic = std::string(value);
    } else {
      return fail("unknown option " + name);
    }
  }

  for (std::string_view w : split(workloads, ',')) {
    auto wl = parse_workload(w, o.zipf_theta, o.counter_keys);
    if (!wl) return fail("unknown workload \"" + std::string(w) + "\"; workloads are " + workload_syntax());
    if (wl->kind == WorkloadKind::churn) wl->window = o.churn_window;
    if (wl->kind == WorkloadKind::get_migrating) wl->window = o.writer_window;
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
  if (o.counter_keys > o.keys) return fail("--counter-keys must be at most --keys");
  exit_code = 0;
  return o;
}

}  // namespace shmap::bench
