// The machine as hwloc sees it, reduced to the value the planner needs, and the
// calls that apply a plan: bind a process or thread to a planned PU, bind the
// pages of a shared mapping to planned NUMA nodes, and find out afterwards
// where the pages actually are.
//
// HOW --membind IS APPLIED, AND WHY THIS WAY
// Every table measured in shared memory (shmap's segment, the ideal tables'
// MAP_SHARED | MAP_ANONYMOUS mappings, the Boost.Interprocess segment) is a
// tmpfs (shmem) object. For shmem, a page is placed when it is first
// allocated, by whichever process faults it, under:
//   1. the object's shared policy, if a range of it has one: mbind(2) on any
//      MAP_SHARED mapping of the object stores the policy in the object (its
//      inode), not in the mapping, so it outlives the mapping and governs the
//      faults of every process and every mapping of that range;
//   2. otherwise the faulting thread's own policy (set_mempolicy(2)).
// A policy set on the creating process only (hwloc_set_membind around create
// and preload) therefore misses every page a worker touches first: the
// records a 90/10 mix or an insert run allocates, and whatever the preload
// did not reach. So the driver installs the policy on the object with
// hwloc_set_area_membind (mbind) over the whole mapping, before the preload:
// for shmap through a mapping of its own of the segment file, made right after
// Map::create and unmapped at once (shmap::Map does not expose its base), for
// the other tables on their own mapping. The few pages Map::create itself
// writes (header, registry) exist before that call, and MIGRATE cannot move
// them while the Map's own mapping maps them too (mbind moves only pages
// mapped once), so the parent thread also carries the policy while it runs
// Map::create (ThreadMembind). STRICT is not used, so a page that cannot move
// does not fail the run: census() reports where the pages really are instead.
// The std-* maps live in the parent's heap: they get the thread policy for
// their preload and their worker threads inherit it (best effort: malloc may
// reuse pages placed earlier).
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

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

  // Installs `plan` on the pages of [addr, addr + len) of a MAP_SHARED mapping
  // (so on the shared object: see above), migrating pages that already exist
  // where the kernel can. True for firsttouch (nothing to do). On failure
  // returns false with `error` naming the hwloc call and errno.
  bool bind_area(void* addr, std::size_t len, const MemPlan& plan, std::string& error) const;

  // The policy seen through the mapping [addr, addr + len), sampled at up to 16
  // pages: "bind NUMA 0", "interleave NUMA 0,1", "default", or "mixed: ..." when
  // the samples differ. Seen through a mapping other than the one mbind was
  // called on, it shows whether the policy lives in the object.
  std::string area_policy(const void* addr, std::size_t len) const;

  hwloc_topology* handle() const { return h_; }

 private:
  bool bind(const Placement& p, int flags) const;
  hwloc_topology* h_ = nullptr;
  Topology topo_;
  bool synthetic_ = false;
};

// Sets the calling thread's memory policy to `plan` for its lifetime and then
// restores the previous one. Threads created meanwhile inherit the policy.
class ThreadMembind {
 public:
  ThreadMembind(const Machine& m, const MemPlan& plan);
  ~ThreadMembind();
  ThreadMembind(const ThreadMembind&) = delete;
  ThreadMembind& operator=(const ThreadMembind&) = delete;
  bool ok() const { return error_.empty(); }
  const std::string& error() const { return error_; }

 private:
  const Machine& m_;
  bool active_ = false;
  void* old_nodes_ = nullptr;  // hwloc_nodeset_t of the previous policy
  int old_policy_ = 0;
  std::string error_;
};

// Where the resident pages of a mapping are.
struct PageCensus {
  std::uint64_t resident_pages = 0;    // pages of the range in the page cache (mincore)
  std::uint64_t page_bytes = 0;
  std::uint64_t sampled = 0;           // resident pages whose node was asked (up to 4096, evenly spread)
  std::vector<std::uint64_t> on_node;  // sampled pages per NUMA node, by logical index
  std::uint64_t unknown = 0;           // sampled pages the kernel gave no node for
  std::string policy;                  // Machine::area_policy of the range
  std::string error;                   // non-empty if the census could not be taken
};

// Counts where the resident pages of [addr, addr + len) are: mincore(2) for
// residency, then a read of each sampled page (which maps an existing page and
// never allocates one) and move_pages(2) with no target to ask its node. Never
// commits a page that was not resident. `addr` must be page aligned.
PageCensus census(const Machine& m, const void* addr, std::size_t len);

// The same for a file (a shmap segment): maps it read-only, counts, unmaps.
PageCensus census_file(const Machine& m, const std::string& path);

// "40.2 MiB resident; NUMA 0: 100% of 4096 sampled pages; policy bind NUMA 0"
std::string describe(const PageCensus& c);

// Converts a loaded hwloc topology into the planner's value type.
Topology topology_from_hwloc(hwloc_topology* h);

// "1 package, 1 NUMA node, 2 cores, 2 PUs (Intel(R) Xeon(R) ...)"
std::string summary(const Topology& t);

// One line per NUMA node: "NUMA 0 (os 0): PUs 0-1, 13.2 GiB".
std::vector<std::string> describe_nodes(const Topology& t);

}  // namespace shmap::bench
