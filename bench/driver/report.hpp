// Summaries (median and range of the repeats), the printed tables, and the
// JSON result file.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "measure.hpp"
#include "options.hpp"
#include "planner.hpp"

namespace shmap::bench {

struct RunInfo {
  std::string date_utc;  // ISO 8601
  std::string host;
  std::string kernel;
  std::string compiler;
  bool optimized = false;  // NDEBUG build
  std::string loadavg_start;  // /proc/loadavg's three averages when the run began
};

// The 1, 5 and 15 minute load averages, "0.52 0.58 0.59".
std::string read_loadavg();

RunInfo collect_run_info();

struct Summary {
  double median = 0, min = 0, max = 0;  // Mops/s over the repeats that ran cleanly
  unsigned samples = 0;
};

// The measurements of (workload, impl, workers) that had no anomaly.
std::optional<Summary> summarize(const std::vector<Measurement>& all, const std::string& workload,
                                 const std::string& impl, unsigned workers);

// The same over any per-measurement figure (e.g. readers_mops).
std::optional<Summary> summarize_by(const std::vector<Measurement>& all, const std::string& workload,
                                    const std::string& impl, unsigned workers, double (*figure)(const Measurement&));

// The sampled latencies of those measurements, merged over the repeats.
LatencySummary summarize_latency(const std::vector<Measurement>& all, const std::string& workload,
                                 const std::string& impl, unsigned workers);

// The table of one workload: a row per implementation and worker count, with
// shmap's ratio to each baseline at the same worker count.
std::string format_table(const Workload& wl, const std::vector<Measurement>& all, const std::vector<unsigned>& counts,
                         const std::vector<std::string>& impls, std::uint64_t keys);

// The table of a one-writer workload (get-migrating, get-with-writer): the
// readers' gets/s, the writer's ops/s, the migrations each run completed and
// the parent's samples of stats().migrating.
std::string format_writer_table(const Workload& wl, const std::vector<Measurement>& all,
                                const std::vector<unsigned>& counts, const std::vector<std::string>& impls,
                                std::uint64_t keys);

// A ratio between two sets of measurements of this run (other
// implementations or other workloads), with the target it is held to, if any.
struct Comparison {
  std::string name;   // "insert: shmap-grow / shmap"
  std::string after;  // the workload whose table it is printed under (the later of the two)
  unsigned workers = 0;
  double ratio = 0;
  double target = 0;   // > 0: the ratio should be at least this
  std::string detail;  // the figures behind the ratio, for the printed line
  bool met() const { return target <= 0 || ratio >= target; }
};

// Every comparison the measurements so far allow: insert grown from 16 slots
// against presized (shmap-grow / shmap, target >= 0.5x), the readers' gets/s
// during migrations against without (get-migrating / get-with-writer), and
// shmap's memory per live key after churn against the get workload's
// presized map.
std::vector<Comparison> comparisons(const std::vector<Workload>& workloads, const std::vector<Measurement>& all,
                                    const std::vector<unsigned>& counts, const Options& o);

// The lines of those printed under workload `after`'s table.
std::string format_comparisons(const std::vector<Comparison>& cs, const std::string& after);

// Where the pages of each implementation's table were after the last clean
// repeat with the most workers, and the policy that put them there.
std::string format_memory(const Workload& wl, const std::vector<Measurement>& all, const std::vector<unsigned>& counts,
                          const std::vector<std::string>& impls, const MemPolicy& policy);

// Where the workers ran: the planned PU of each worker and the CPUs that
// sched_getcpu() reported after pinning and after the timed loop, over every
// measurement; a CPU other than the planned one is flagged.
std::string format_placement_check(const std::vector<Measurement>& all, const std::vector<unsigned>& counts,
                                   const Topology& topo);

// The worker counts a workload runs with: 1 and P, or P alone (P >= 2) for
// the one-writer workloads, which need a reader besides the writer.
std::vector<unsigned> counts_for(const Workload& wl, const std::vector<unsigned>& counts);

std::string to_json(const RunInfo& info, const Options& o, const Topology& topo, PinPolicy pin,
                    const std::vector<unsigned>& counts, const std::vector<Measurement>& all);

}  // namespace shmap::bench
