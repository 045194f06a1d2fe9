// The machine as hwloc sees it, reduced to the value the planner needs, and the
// calls that bind a process or thread to a planned PU.
#pragma once

#include <memory>
#include <string>
#include <string_view>

#include "planner.hpp"

struct hwloc_topology;

namespace shmap::bench {

// Owns a loaded hwloc topology. Thread-safe for binding once loaded; after
// fork() the child's copy is usable as is (hwloc keeps no kernel handle).
class Machine {
 public:
  // The running machine, or, when `synthetic` is not empty, an hwloc synthetic
  // description such as "package:2 numa:2 core:4 pu:2" (for --plan-only and
  // for tests). Throws std::runtime_error naming the hwloc call that failed.
  explicit Machine(std::string_view synthetic = {});
  ~Machine();
  Machine(const Machine&) = delete;
  Machine& operator=(const Machine&) = delete;

  const Topology& topology() const { return topo_; }
  bool synthetic() const { return synthetic_; }

  // Binds the calling process (whole process) or thread to the placement's PU.
  // No-op for an unbound placement. Returns false (errno set) if hwloc refused.
  bool bind_process(const Placement& p) const;
  bool bind_thread(const Placement& p) const;

 private:
  bool bind(const Placement& p, int flags) const;
  hwloc_topology* h_ = nullptr;
  Topology topo_;
  bool synthetic_ = false;
};

// Converts a loaded hwloc topology into the planner's value type.
Topology topology_from_hwloc(hwloc_topology* h);

// "1 package, 1 NUMA node, 2 cores, 2 PUs (Intel(R) Xeon(R) ...)"
std::string summary(const Topology& t);

}  // namespace shmap::bench
