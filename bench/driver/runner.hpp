// Runs one measurement: W workers, as forked processes or as threads of this
// process, pinned by a placement plan, started together, each running its timed
// loop until a shared deadline.
//
// Start protocol (no sleeps): the control block lives in a MAP_SHARED |
// MAP_ANONYMOUS mapping made before fork(), so parent and children share it.
//   1. each worker pins itself, prepares (e.g. opens the map), then increments
//      `ready` and spins on `go`;
//   2. the parent spins until ready == W, writes the start time and the
//      deadline, then sets `go`;
//   3. each worker runs until the deadline (or its work is done), writes its
//      counts into its own cache line of the control block and exits.
// The same mapping holds one latency histogram per worker (latency.hpp), which
// the worker's timed loop fills directly and the parent merges after reaping.
// The parent then reaps the workers; one that fails or dies is reported, and
// one still running long after the deadline is killed and reported as hung.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "latency.hpp"
#include "planner.hpp"

namespace shmap::bench {

class Machine;

// CLOCK_MONOTONIC in nanoseconds: one clock for all processes of the machine.
std::int64_t now_ns();
// CPU time of the calling thread in nanoseconds.
std::int64_t thread_cpu_ns();

// What one worker's timed loop did.
struct LoopCounts {
  std::uint64_t ops = 0;            // operations performed
  std::uint64_t hits = 0;           // gets that found the key
  std::uint64_t misses = 0;         // gets that did not
  std::uint64_t writes_ok = 0;      // inserts/assigns that took effect
  std::uint64_t writes_failed = 0;  // inserts/assigns that did not
  std::uint64_t sink = 0;           // total length of the values read (checked against hits * value bytes)
  std::uint64_t digest = 0;         // sum of the values' first bytes: no copy-out can be optimized away
  std::int64_t end_ns = 0;          // now_ns() when the loop stopped
  std::int64_t cpu_ns = 0;          // CPU time the loop's thread got (CLOCK_THREAD_CPUTIME_ID)

  void hit(const std::string& value) {
    ++hits;
    sink += value.size();
    digest += static_cast<unsigned char>(value.data()[0]);  // data() is NUL-terminated: [0] exists even when empty
  }
};

struct Control;

// Handed to each worker: it calls arrive_and_wait() once, after its untimed
// preparation, and gets back the deadline (CLOCK_MONOTONIC ns) of its timed loop.
class StartGate {
 public:
  StartGate(Control& c, LatencyHistogram* hist, std::uint32_t period) : c_(c), hist_(hist), period_(period) {}
  // Throws std::runtime_error if the run was aborted (another worker failed).
  std::int64_t arrive_and_wait();
  bool arrived() const { return arrived_; }
  // This worker's histogram in the shared results region and the sampling
  // period (0 = no sampling), for the timed loop.
  LatencyHistogram* histogram() const { return hist_; }
  std::uint32_t sample_period() const { return period_; }

 private:
  Control& c_;
  LatencyHistogram* hist_;
  std::uint32_t period_;
  bool arrived_ = false;
};

struct WorkerOutcome {
  LoopCounts counts;
  std::string note;  // a non-fatal remark for the report (e.g. the first failed status)
};

// The work of one worker. Runs in the child process or in the thread; must call
// gate.arrive_and_wait() exactly once, between its preparation and its timed loop.
using WorkerBody = std::function<WorkerOutcome(unsigned worker, StartGate& gate)>;

struct WorkerResult {
  LoopCounts counts;
  double seconds = 0;   // from the common start to this worker's end
  double busy = 0;      // CPU time / wall time of the timed loop: < 1 when descheduled or asleep on a lock
  int cpu_start = -1;   // sched_getcpu() before preparation and after the loop
  int cpu_end = -1;
  LatencySummary latency;  // of its sampled operations
  std::string note;
  std::string error;    // non-empty if the worker failed
};

struct RunResult {
  std::vector<WorkerResult> workers;
  std::uint64_t ops = 0;  // sum over workers
  double seconds = 0;     // the common start to the last worker's end
  double mops() const { return seconds > 0 ? static_cast<double>(ops) / seconds / 1e6 : 0; }
  double min_busy() const;  // the least busy worker's busy fraction
  std::vector<std::string> errors;  // one line per failed, dead or hung worker
  LatencyHistogram latency;  // every worker's sampled operations, merged
};

enum class WorkerMode { processes, threads };

// Called by the parent about once a millisecond while forked workers run
// (from go until the last one exits), with the common start and deadline:
// observation of the shared table from outside the timed loops (e.g. sampling
// shmap's stats()). Whatever it costs is CPU time taken from the machine the
// workers run on, so a measurement and its baseline should probe alike.
using ParentProbe = std::function<void(std::int64_t start_ns, std::int64_t deadline_ns)>;

inline constexpr unsigned kMaxWorkers = 256;

// Runs plan.size() workers. `duration_s` bounds each timed loop; every
// `sample_period`-th operation's latency is recorded (0 = none). `probe`, if
// set, runs in the parent while forked workers run (not with threads). Never
// throws for a worker failure (see RunResult::errors); throws std::system_error
// if the control block cannot be mapped or a process cannot be forked.
RunResult run_workers(WorkerMode mode, const Machine& machine, const std::vector<Placement>& plan, double duration_s,
                      std::uint32_t sample_period, const WorkerBody& body, const ParentProbe& probe = {});

}  // namespace shmap::bench
