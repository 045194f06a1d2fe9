// The process registry: which processes have the map open for writing.
//
// One RegistryEntry per attached, writable Map handle. Attaching claims a free
// entry with one CAS of the owner word {pid, low bits of the process start
// time}; detaching (the handle's destructor) CASes it back to 0. A process
// killed while attached leaves its entry; survivors find it by checking the
// pid *and* its start time (so a reused pid is not mistaken for the dead
// owner) and release it (`reap_dead`, run at every open). Read-only handles do
// not attach: they write nothing shared.
//
// A child forked after open keeps the parent's handle; the first write through
// it attaches the child under its own pid (fork_epoch() changes in every
// child), and the child's destructor never releases the parent's entry.
//
// Today the registry identifies attached processes; the crash-safety issue adds
// per-entry intent records so that reaping a dead entry also returns the
// memory it was allocating or freeing.
#pragma once

#include <cstdint>
#include <string_view>
#include <vector>

#include "layout.hpp"
#include "shmap/shmap.hpp"

namespace shmap::detail {

// This process's identity as an owner word (recomputed after fork).
Owner self_owner() noexcept;
// Changes in every forked child; a handle compares it to notice it was inherited.
std::uint64_t fork_epoch() noexcept;

// Claims a free entry for `me`, releasing dead owners' entries first if none
// is free. Returns the entry index; throws errc::too_many_processes when all
// entries belong to live processes. Lock-free.
// Refuses (errc::busy, entry released again) while a live process runs
// repair(); a dead repairer's mark is cleared.
std::uint32_t attach(SegmentHeader* header, RegistryEntry* entries, std::uint32_t count, Owner me,
                     std::string_view segment);
bool owner_alive(Owner o) noexcept;
// Releases entry `index` if `me` still owns it. Lock-free.
void detach(RegistryEntry* entries, std::uint32_t index, Owner me) noexcept;
// Releases the entries of owners that are no longer alive; returns how many.
std::uint32_t reap_dead(RegistryEntry* entries, std::uint32_t count) noexcept;
// The entries in use (read-only).
std::vector<ProcessInfo> list(RegistryEntry* entries, std::uint32_t count);

}  // namespace shmap::detail
