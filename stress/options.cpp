#include "options.hpp"

#include <charconv>
#include <cmath>
#include <cstdlib>
#include <iostream>
#include <set>
#include <string_view>

#include "model.hpp"
#include "shmap/shmap.hpp"

namespace shmap::stress {

namespace {

constexpr const char* kUsage = R"(usage: shmap-stress [options]

Forks W writers and R readers that share one shmap segment, optionally SIGKILLs
random workers and respawns them, checks invariants while running and after
the run (including Map::fsck), and reports throughput and violations.

Workloads (key spaces; docs/stress.md explains every check):
  owned      each key has exactly one writer, which writes versions 1, 2, 3...
             with a checksum in the value; readers check values are never torn,
             belong to their key, and never go back in version; after the run
             every key holds its acknowledged version (or, for a key a killed
             writer was writing, one more)
  counters   writers fetch_add(+1) on 8 shared keys; each final value lies
             between the acknowledged and the attempted increments
  churn      writers insert, assign and erase on a shared key space; a read
             finds either nothing or a well-formed value of that key
  mixed      all three at once (default)
  grow       all three at once in a map that starts with a 16-slot index and
             a 1 MiB arena (Options::help_slots 16): the index grows to the
             key spaces and keeps migrating (same-size rebuilds dropping the
             churn's deleted slots) while writers are killed

options:
  --duration S       seconds to run (a float); default 10
  --writers W        writer processes; default 2
  --readers R        reader processes (they open the map read-only); default 2
  --workload NAME    owned | counters | churn | mixed | grow; default mixed
  --keys N           keys of the owned space and of the churn space; default 10000
  --key-bytes K      bytes per key (at least enough for "o:<id>"); default 16
  --value-bytes V    payload bytes per value, after a 24-byte header; default 32
  --kill-rate K      SIGKILLs per second of random workers, each respawned at
                     once; default 0 (no kills)
  --seed S           seeds every worker's operation stream and the killer;
                     default random; always printed
  --pin POLICY       compact (worker i on PU i, round robin, hwloc) | none;
                     default none
  --name NAME        segment name; default /shmap-stress-<pid>
  --keep             leave the segment in place at the end (for shmap fsck/dump)
  --allow-leaks      leaked bytes and counter drift left after recovery that
                     the kills explain are a warning, not a failure
  --json PATH        results as JSON; default stress-results.json ("" = none)
  -h, --help         this text

exit status: 0 clean; 1 a violation, an fsck failure, or leaked bytes (unless
--allow-leaks); 2 usage error; 3 the run could not be set up.
)";

template <class T>
T parse_integer(std::string_view s, std::string_view what, T lo, T hi) {
  T out{};
  const auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), out);
  if (s.empty() || ec != std::errc() || p != s.data() + s.size() || out < lo || out > hi)
    throw UsageError(std::string(what) + " must be an integer in [" + std::to_string(lo) + ", " + std::to_string(hi) +
                     "], not \"" + std::string(s) + "\"");
  return out;
}

double parse_real(std::string_view s, std::string_view what, double lo, double hi, bool lo_inclusive) {
  const std::string text(s);
  char* end = nullptr;
  const double v = std::strtod(text.c_str(), &end);
  const bool low_ok = lo_inclusive ? v >= lo : v > lo;
  if (text.empty() || *end != '\0' || !std::isfinite(v) || !low_ok || v > hi)
    throw UsageError(std::string(what) + " must be a number in " + (lo_inclusive ? "[" : "(") + std::to_string(lo) +
                     ", " + std::to_string(hi) + "], not \"" + text + "\"");
  return v;
}

}  // namespace

const char* to_string(Workload w) noexcept {
  switch (w) {
    case Workload::owned:
      return "owned";
    case Workload::counters:
      return "counters";
    case Workload::churn:
      return "churn";
    case Workload::mixed:
      return "mixed";
    case Workload::grow:
      return "grow";
  }
  return "?";
}

const char* to_string(Pin p) noexcept {
  return p == Pin::compact ? "compact" : "none";
}

std::optional<Options> parse_options(int argc, char** argv) {
  Options o;
  std::set<std::string, std::less<>> seen;
  bool key_bytes_given = false;
  for (int i = 1; i < argc; ++i) {
    std::string_view arg = argv[i];
    if (arg == "-h" || arg == "--help") {
      std::cout << kUsage;
      return std::nullopt;
    }
    if (!arg.starts_with("--")) throw UsageError("unexpected argument \"" + std::string(arg) + "\"");
    std::string_view value;
    bool has_value = false;
    if (const auto eq = arg.find('='); eq != std::string_view::npos) {
      value = arg.substr(eq + 1);
      arg = arg.substr(0, eq);
      has_value = true;
    }
    const std::string name(arg);
    if (!seen.insert(name).second) throw UsageError(name + " given twice");
    if (arg == "--keep" || arg == "--allow-leaks") {
      if (has_value) throw UsageError(name + " takes no value");
      (arg == "--keep" ? o.keep : o.allow_leaks) = true;
      continue;
    }
    if (!has_value) {
      if (i + 1 >= argc) throw UsageError(name + " needs a value");
      value = argv[++i];
    }
    if (arg == "--duration") {
      o.duration_s = parse_real(value, name, 0, 1e7, false);
    } else if (arg == "--writers") {
      o.writers = parse_integer<unsigned>(value, name, 0, 256);
    } else if (arg == "--readers") {
      o.readers = parse_integer<unsigned>(value, name, 0, 256);
    } else if (arg == "--keys") {
      o.keys = parse_integer<std::uint64_t>(value, name, 1, std::uint64_t{1} << 26);
    } else if (arg == "--key-bytes") {
      o.key_bytes = parse_integer<std::uint32_t>(value, name, 3, kMaxKeyBytes);
      key_bytes_given = true;
    } else if (arg == "--value-bytes") {
      o.value_bytes = parse_integer<std::uint32_t>(value, name, 0, kMaxValueBytes - kValueHeaderBytes);
    } else if (arg == "--kill-rate") {
      o.kill_rate = parse_real(value, name, 0, 10000, true);
    } else if (arg == "--seed") {
      o.seed = parse_integer<std::uint64_t>(value, name, 0, UINT64_MAX);
      o.seed_given = true;
    } else if (arg == "--workload") {
      if (value == "owned")
        o.workload = Workload::owned;
      else if (value == "counters")
        o.workload = Workload::counters;
      else if (value == "churn")
        o.workload = Workload::churn;
      else if (value == "mixed")
        o.workload = Workload::mixed;
      else if (value == "grow")
        o.workload = Workload::grow;
      else
        throw UsageError("--workload must be owned, counters, churn, mixed or grow");
    } else if (arg == "--pin") {
      if (value == "compact")
        o.pin = Pin::compact;
      else if (value == "none")
        o.pin = Pin::none;
      else
        throw UsageError("--pin must be compact or none");
    } else if (arg == "--name") {
      if (value.empty()) throw UsageError("--name must not be empty");
      o.name = std::string(value);
    } else if (arg == "--json") {
      o.json_path = std::string(value);
    } else {
      throw UsageError("unknown option " + name);
    }
  }
  if (o.writers + o.readers == 0) throw UsageError("--writers and --readers are both 0: nothing to run");
  const std::size_t need = min_key_bytes(o.keys);
  if (o.key_bytes < need) {
    if (key_bytes_given)
      throw UsageError("--key-bytes " + std::to_string(o.key_bytes) + " cannot hold the keys of --keys " +
                       std::to_string(o.keys) + " (needs at least " + std::to_string(need) + ")");
    o.key_bytes = static_cast<std::uint32_t>(need);
  }
  return o;
}

}  // namespace shmap::stress
