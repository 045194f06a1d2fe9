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
//
// MEMORY POLICIES (--membind): where the pages of the measured table go.
//   firsttouch      no policy: each page lands on the node of the CPU that first
//                   touches it (for a preloaded table, the unpinned parent's)
//   bind:N          every page on NUMA node N (logical index); refused if the
//                   topology has no node N
//   interleave      pages round-robin over the nodes the measurement's workers
//                   are pinned to; over every node when no worker is pinned
//   interleave:all  pages round-robin over every node
// plan_membind turns a policy, a topology and a placement into the node set;
// applying it (hwloc) is Machine's job (topology.hpp).
#pragma once

#include <cstdint>
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

// One NUMA node, at its hwloc logical index in Topology::nodes.
struct NumaInfo {
  unsigned os_index = 0;          // the kernel's node number (mbind, move_pages)
  std::uint64_t local_bytes = 0;  // memory local to the node, as hwloc reports it
};

struct Topology {
  unsigned packages = 0;
  unsigned numa_nodes = 0;
  unsigned cores = 0;
  std::vector<PuInfo> pus;      // in hwloc logical order
  std::vector<NumaInfo> nodes;  // numa_nodes of them, in logical order
  std::string cpu_model;        // hwloc "CPUModel" info of the first package, if any
};

// The PU whose kernel CPU number is `os_index`, or null.
const PuInfo* find_pu(const Topology& topo, unsigned os_index);

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

enum class MemPolicyKind { firsttouch, bind, interleave };

struct MemPolicy {
  MemPolicyKind kind = MemPolicyKind::firsttouch;
  unsigned node = 0;       // bind: the NUMA node's logical index
  bool all_nodes = false;  // interleave: every node, not only the workers'
};

// "firsttouch", "bind:N", "interleave" or "interleave:all".
std::optional<MemPolicy> parse_mem_policy(std::string_view s);
std::string to_string(const MemPolicy& p);

// The nodes a measurement's pages go to.
struct MemPlan {
  MemPolicyKind kind = MemPolicyKind::firsttouch;
  std::vector<unsigned> nodes;  // logical NUMA indexes, ascending, no duplicates; empty for firsttouch
};

// The node set of `policy` for workers placed by `placement`. Deterministic; no
// hwloc call. Throws std::invalid_argument when bind:N names a node `topo` lacks.
MemPlan plan_membind(const Topology& topo, const MemPolicy& policy, const std::vector<Placement>& placement);

// "first touch", "bind to NUMA 1", "interleave over NUMA 0,2".
std::string describe(const MemPlan& p);

}  // namespace shmap::bench
