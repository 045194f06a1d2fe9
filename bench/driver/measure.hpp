// One measurement: one implementation, one workload, one worker count, one
// repetition. Builds a fresh table (a fresh shmap segment, ideal table or
// std::unordered_map), preloads it untimed, runs the workers and checks what
// they saw.
#pragma once

#include <string>
#include <vector>

#include "options.hpp"
#include "planner.hpp"
#include "runner.hpp"
#include "topology.hpp"
#include "workload.hpp"

namespace shmap::bench {

class Machine;

// shmap's index and segment around one run (shmap and shmap-grow): what the
// migrations did while the workers ran, and what the segment costs after.
struct ShmapIndexReport {
  bool taken = false;
  std::uint64_t migrations_before = 0;  // stats().migrations after the preload, before go
  std::uint64_t migrations_after = 0;   // ... after the last worker ended
  std::uint64_t grown = 0, shrunk = 0;  // migrations during the run that grew / shrank the index
  std::uint64_t reclaimed_slots = 0;    // deleted slots the run's migrations dropped
  std::uint64_t index_slots = 0;        // after the run
  std::uint64_t index_table_bytes = 0;  // after the run
  std::uint64_t arena_bytes = 0;        // after the run
  std::uint64_t live_keys = 0;          // size() after the run
  std::uint64_t file_bytes = 0;         // the segment file's allocated bytes after the run (st_blocks * 512)
  // Samples of stats().migrating taken by the parent while the workers ran
  // (get-migrating and get-with-writer only), and the parent CPU time they took.
  unsigned samples = 0;
  unsigned migrating_samples = 0;
  double sample_cpu_s = 0;

  std::uint64_t migrations() const { return migrations_after - migrations_before; }
  double bytes_per_key() const {
    return live_keys ? static_cast<double>(file_bytes) / static_cast<double>(live_keys) : 0;
  }
};

struct Measurement {
  std::string impl;
  std::string workload;
  unsigned procs = 1;    // processes sharing the table
  unsigned threads = 1;  // threads per process
  unsigned repeat = 0;   // 0-based
  double setup_seconds = 0;             // creating and preloading the table (untimed)
  RunResult run;
  std::vector<Placement> plan;
  MemPlan mem;                          // --membind for this placement
  bool census_taken = false;            // the table is a shared mapping whose pages were counted
  PageCensus census;                    // where its pages were after the run
  std::vector<std::string> anomalies;   // failed workers and outcomes that contradict the workload
  ShmapIndexReport index;               // shmap and shmap-grow only

  unsigned workers() const { return procs * threads; }
};

// Workloads with one writer (Workload::one_writer): the readers' (workers 1
// and up) gets per second, in millions, over the span of the slowest reader,
// and the writer's (worker 0) operations per second.
double readers_mops(const Measurement& m);
double writer_mops(const Measurement& m);

struct Context {
  const Options& opts;
  const Machine& machine;
  const KeySpace& keys;
};

// Makes SIGINT, SIGTERM, SIGHUP and the crash signals remove the shmap segment
// being measured before the process dies of the signal.
void install_cleanup_handlers();

// Whether `impl` can run `wl` with these keys; if not, `why` says why.
bool applies(const std::string& impl, const Workload& wl, const KeySpace& ks, std::string* why);

// Whether a skipped combination is expected (not worth a "skipping" line):
// shmap-grow outside insert, std-shared_mutex on a workload without reads.
bool quiet_skip(const std::string& impl, const Workload& wl);

// True for the implementations whose workers are threads of one process.
bool threaded(const std::string& impl);

// True for shmap and its variants (shmap-grow): they get shmap's checks and
// index report.
bool is_shmap(const std::string& impl);

// `streams` holds one stream per worker (plan.size() of them). The table's
// memory follows opts.membind for this plan (see topology.hpp for how).
Measurement measure(const Context& ctx, const std::string& impl, const Workload& wl, unsigned repeat,
                    const std::vector<Placement>& plan, const std::vector<OpStream>& streams);

}  // namespace shmap::bench
