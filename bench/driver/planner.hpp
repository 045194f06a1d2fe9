// Placement planner: which processing unit (and so which core, NUMA node and
// package) each benchmark worker is pinned to.
//
// A pure function of a Topology value and a policy, with no hwloc call, so a test
// can drive it with hand-written or hwloc-synthetic topologies (2 NUMA nodes x 4
// cores, 4 x 8, ...) on a one-node machine.
//
// POLICIES
//   compact  fill one NUMA node's cores before the next node's, one worker per
//            core; SMT siblings are used only once every core has a worker.
//   scatter  round-robin over packages, and over the NUMA nodes within them:
//            each worker goes to the next node in that order, on its next
//            unused core; SMT siblings again last.
//   none     no binding: the scheduler places every worker.
// With more workers than processing units the plan wraps around, and the
// placements say which ones share a unit.
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace shmap::bench {

// One processing unit (hardware thread). Indexes are hwloc logical indexes,
// except os_index, which the kernel uses (sched_setaffinity, /proc/cpuinfo).
struct PuInfo {
  unsigned os_index = 0;
  unsigned core = 0;      // logical index of its core (the PU's own index if the topology has no cores)
  unsigned smt_rank = 0;  // 0 for the first PU of its core, 1 for its first sibling, ...
  unsigned numa = 0;      // logical index of its NUMA node
  unsigned package = 0;   // logical index of its package
};

struct Topology {
  unsigned packages = 0;
  unsigned numa_nodes = 0;
  unsigned cores = 0;
  std::vector<PuInfo> pus;  // in hwloc logical order
  std::string cpu_model;    // hwloc "CPUModel" info of the first package, if any
};

enum class PinPolicy { compact, scatter, none };

std::optional<PinPolicy> parse_pin_policy(std::string_view s);
const char* to_string(PinPolicy p);

struct Placement {
  unsigned worker = 0;
  std::optional<PuInfo> pu;  // empty when unbound (policy none or no PUs)
  bool shared = false;       // another worker has the same PU (more workers than PUs)
};

// The placement of workers 0..workers-1. Deterministic; needs only `topo`.
std::vector<Placement> plan_placement(const Topology& topo, PinPolicy policy, unsigned workers);

// "PU 1 (core 1, NUMA 0, package 0)" or "unbound".
std::string describe(const Placement& p);

}  // namespace shmap::bench
