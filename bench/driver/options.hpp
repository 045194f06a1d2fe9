// Command-line options of shmap-bench.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "planner.hpp"
#include "workload.hpp"

namespace shmap::bench {

struct Options {
  unsigned procs = 2;
  std::uint64_t keys = 1'000'000;
  std::size_t key_bytes = 8;
  std::size_t value_bytes = 8;
  double duration_s = 2.0;
  std::vector<Workload> workloads;  // default get, insert, 90/10
  std::vector<std::string> impls;   // default: all that apply
  std::string json_path = "bench-results.json";
  std::uint64_t seed = 1;
  PinPolicy pin = PinPolicy::compact;
  MemPolicy membind;                 // default first touch
  std::uint32_t latency_sample = 256;  // time every N-th operation (a power of two); 0 = none
  double zipf_theta = 0.99;
  unsigned counter_keys = 8;
  std::uint64_t churn_window = 0;      // churn: live keys per worker; 0 = --keys / workers
  std::uint64_t writer_window = 1000;  // get-migrating: the writer's live fresh keys
  unsigned repeat = 3;
  bool plan_only = false;
  std::string synthetic;  // hwloc synthetic topology for --plan-only
};

// The implementation names --impls accepts.
const std::vector<std::string>& all_impls();

// Parses argv. On --help prints the usage to stdout and returns nullopt with
// exit_code 0; on a bad option prints the error to stderr and returns nullopt
// with exit_code 2.
std::optional<Options> parse_options(int argc, char** argv, int& exit_code);

}  // namespace shmap::bench
