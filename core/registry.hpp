// The registry: which threads of which processes write to the map.
//
// One RegistryEntry per writing thread of an attached writable Map handle. It
// is also that thread's heap and intent log (arena.hpp, recover.cpp). A thread
// claims an entry at its first write through a handle (the opening thread at
// open) with one CAS of the owner word {pid, low bits of the process start
// time}; entries are released when the handle is destroyed (a thread that
// exits leaves its entry to the next thread of the same handle). Entries are
// claimed lowest first, and `entries_used` bounds every scan.
//
// A process killed while attached leaves its entries; survivors find them by
// checking the pid *and* its start time (so a reused pid is not mistaken for
// the dead owner), claim them with the borrower bit set, finish or undo the
// step each was in, and release them (recover.cpp). A released entry keeps its
// free lists (an "orphan" heap): the next thread that claims it adopts them,
// and a thread short of blocks borrows orphans to move their lists to the pool.
//
// A child forked after open keeps the parent's handle; its threads claim
// entries under the child's pid (fork_epoch() changes in every child), and the
// child never releases the parent's entries.
#pragma once

#include <cstdint>
#include <string_view>
#include <vector>

#include "layout.hpp"
#include "shmap/shmap.hpp"

namespace shmap::detail {

struct Mapping;

// This process's identity as an owner word (recomputed after fork).
Owner self_owner() noexcept;
// Changes in every forked child; a handle compares it to notice it was inherited.
std::uint64_t fork_epoch() noexcept;

// Claims a free entry (lowest first) for `me`. Returns the entry index;
// throws errc::too_many_processes when every entry is taken. Lock-free.
// Refuses (errc::busy, entry released again) while a live process runs
// repair(); a dead repairer's mark is cleared. An entry at or past
// entries_in_use() has its page's file blocks allocated before it is read
// (a full filesystem is an Error with ENOSPC, never a SIGBUS).
std::uint32_t attach(Mapping& m, Owner me);
bool owner_alive(Owner o) noexcept;
// Releases entry `index` if `owner` still owns it. Lock-free.
void detach(RegistryEntry* entries, std::uint32_t index, Owner owner) noexcept;
// 1 + the highest entry ever claimed: every scan of the registry stops there.
std::uint32_t entries_in_use(SegmentHeader* header) noexcept;
// The entries in use (read-only).
std::vector<ProcessInfo> list(SegmentHeader* header, RegistryEntry* entries);

}  // namespace shmap::detail
