// The checks the supervisor makes after every worker has stopped: the map's
// own invariants (fsck, and which of its findings the kills explain) and the
// harness's end-state checks of each key space.
#pragma once

#include <cstdint>
#include <set>
#include <string>
#include <vector>

#include "model.hpp"
#include "options.hpp"
#include "shmap/shmap.hpp"

namespace shmap::stress {

// Workers that ended abruptly (SIGKILL from the killer or at shutdown, or an
// unexpected death), and what a dead writer may have left in flight.
struct KillLedger {
  std::uint64_t writer_deaths = 0;
  std::uint64_t reader_deaths = 0;
  // Owned keys a writer was writing when it died: each may hold one version
  // more than acknowledged.
  std::set<std::uint64_t> owned_inflight;
};

// Runs fsck (into `before`: what the killed writers left behind: their
// registry entries not yet recovered, the blocks their steps in flight held),
// then recovers the map with Map::recover() (the online recovery every
// writable open also runs: each dead writer's step finished or undone, exactly
// what it held returned, its counter shares settled) and returns the fsck of
// the result. The map is quiet here (every worker reaped), so that fsck is
// exact: anything recovery did not return shows up in it.
FsckReport recover_and_fsck(Map& map, FsckReport& before);

// fsck's findings sorted into those the writer deaths explain and the rest.
struct FsckVerdict {
  FsckReport report;
  std::vector<std::string> explained;    // leaked bytes / counter drift within what the deaths allow
  std::vector<std::string> unexplained;  // real violations
  std::uint64_t unlisted = 0;            // violations fsck counted but did not list: unexplained
  std::uint64_t largest_block = 0;       // bytes of the largest block class in use
  std::uint64_t leak_bound = 0;          // writer deaths x largest_block

  bool real_failure() const noexcept { return !unexplained.empty() || unlisted > 0; }
  bool leaks() const noexcept { return !explained.empty(); }
};

// A finding is explained only when writers died, and only if it is one of
//   "<n> carved bytes are neither reachable, free, nor in flight"
//                                                         n <= deaths x largest block
//   "live-key shares sum to a, the index has b ..."       |a - b| <= deaths (a may be negative)
//   "used-slot shares sum to a, the index has b ..."      |a - b| <= deaths
//   "size class N: entries carved a blocks, reachable + free + in flight is b"
//                                                         |a - b| <= deaths
// where the size-class drifts are summed over the classes (each killed
// writer holds at most one block and has at most one update of each counter
// outstanding). Everything else is a real violation (a registry entry of a
// dead process still unrecovered among them: recovery ran before).
FsckVerdict judge_fsck(FsckReport report, std::uint64_t writer_deaths, std::uint64_t largest_block);

struct CounterResult {
  std::uint64_t value = 0;
  std::uint64_t acked = 0;
  std::uint64_t attempted = 0;
};

struct FinalCheck {
  std::uint64_t owned_acked_keys = 0;       // owned keys with an acknowledged version
  std::uint64_t owned_inflight_landed = 0;  // keys holding a killed writer's unacknowledged version
  std::uint64_t acked_versions = 0;         // sum of acknowledged owned versions
  std::vector<CounterResult> counters;
  std::uint64_t churn_present = 0;
  std::uint64_t entries = 0;  // entries seen by a for_each walk
};

// Checks the quiet map against what the workers acknowledged; each violation
// goes to `shared` (and the first few to stderr).
FinalCheck check_final_state(const Map& map, const Options& opts, const KeySpaces& spaces, SharedRegion& shared,
                             const KillLedger& kills);

}  // namespace shmap::stress
