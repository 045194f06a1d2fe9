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

  unsigned workers() const { return procs * threads; }
};

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

// True for the implementations whose workers are threads of one process.
bool threaded(const std::string& impl);

// `streams` holds one stream per worker (plan.size() of them). The table's
// memory follows opts.membind for this plan (see topology.hpp for how).
Measurement measure(const Context& ctx, const std::string& impl, const Workload& wl, unsigned repeat,
                    const std::vector<Placement>& plan, const std::vector<OpStream>& streams);

}  // namespace shmap::bench
