// The process registry; see registry.hpp.
#include "registry.hpp"

#include <pthread.h>
#include <unistd.h>


#include <atomic>
#include <chrono>
#include <string>

#include "segment.hpp"

namespace shmap::detail {
namespace {

std::atomic<std::uint64_t> g_fork_epoch{1};
std::atomic<std::uint64_t> g_self{0};

Owner compute_self() noexcept {
  const auto pid = static_cast<std::uint32_t>(::getpid());
  return Owner::make(pid, process_start_time(pid));
}

void on_fork_child() noexcept {
  // Relaxed: the child is single-threaded right after fork. No I/O here (the
  // parent may have been multithreaded): self_owner() recomputes lazily.
  g_fork_epoch.fetch_add(1, std::memory_order_relaxed);
  g_self.store(0, std::memory_order_relaxed);
}

const bool g_atfork_registered = [] { return ::pthread_atfork(nullptr, nullptr, on_fork_child) == 0; }();

}  // namespace

// Dead only on definite evidence: no such pid, or a readable start time that
// differs (a reused pid). A /proc entry we cannot read (hidepid, no /proc) or
// an owner that could not read its own start time counts as alive: recovering
// a live writer's entry would corrupt the map. A zombie (killed, not yet
// reaped by its parent) still counts as alive until it is reaped.
bool owner_alive(Owner o) noexcept { return process_alive(o.pid(), o.start_low(), Owner::kStartMask); }

Owner self_owner() noexcept {
  // Relaxed: a process-local cache of an immutable (per process) value.
  std::uint64_t raw = g_self.load(std::memory_order_relaxed);
  if (raw == 0) {
    raw = compute_self().raw;
    g_self.store(raw, std::memory_order_relaxed);
  }
  return Owner{raw};
}

std::uint64_t fork_epoch() noexcept {
  (void)g_atfork_registered;
  // Relaxed: only compared for equality with a value this process stored.
  return g_fork_epoch.load(std::memory_order_relaxed);
}

std::uint32_t entries_in_use(SegmentHeader* header) noexcept {
  // Acquire: pairs with the release CAS in attach(), so an entry below the
  // mark is seen with its owner word claimed.
  const std::uint64_t n = atom(header->entries_used.value).load(std::memory_order_acquire);
  return n > kRegistryEntries ? kRegistryEntries : static_cast<std::uint32_t>(n);
}

std::uint32_t attach(Mapping& m, Owner me) {
  SegmentHeader* const header = m.header();
  RegistryEntry* const entries = m.registry();
  const std::string_view segment = m.name;
  // Entries below the mark were reserved by whoever claimed them first.
  const std::uint32_t reserved_below = entries_in_use(header);
  for (std::uint32_t index = 0; index < kRegistryEntries; ++index) {
    RegistryEntry& e = entries[index];
    if (index >= reserved_below) {
      const std::uint64_t at = m.fixed.registry_offset + std::uint64_t{index} * sizeof(RegistryEntry);
      if (const int err = m.reserve(at, sizeof(RegistryEntry)); err != 0)
        throw_system(segment, "reserving the file blocks of registry entry " + std::to_string(index), err);
    }
    std::uint64_t expected = 0;
    // Relaxed pre-check keeps the scan from writing to taken entries.
    if (atom(e.owner).load(std::memory_order_relaxed) != 0) continue;
    // Seq_cst: the claim and the maintenance check below form a Dekker pair
    // with repair()'s maintenance CAS and registry scan (repair.cpp, M1/M2):
    // either we see its mark, or it sees our entry. Also acquires the
    // previous owner's release in detach(), with its heap.
    if (!atom(e.owner).compare_exchange_strong(expected, me.raw, std::memory_order_seq_cst, std::memory_order_relaxed))
      continue;
    // Seq_cst: raised before the mark is read, so a repairer whose mark we
    // miss scans this entry (its M2 reads entries_used after its M1). Also
    // the release that entries_in_use() pairs with.
    std::uint64_t used = atom(header->entries_used.value).load(std::memory_order_relaxed);
    while (used < index + 1 &&
           !atom(header->entries_used.value)
                .compare_exchange_weak(used, index + 1, std::memory_order_seq_cst, std::memory_order_relaxed)) {
    }
    // Seq_cst: see the claim above.
    std::uint64_t mark = atom(header->maintenance).load(std::memory_order_seq_cst);
    if (mark != 0 && !owner_alive(Owner{mark})) {
      // Relaxed: a dead repairer's mark; losing this race to another clearer is fine.
      atom(header->maintenance).compare_exchange_strong(mark, 0, std::memory_order_relaxed);
      mark = 0;
    }
    if (mark != 0) {
      detach(entries, index, me);
      throw_error(errc::busy, segment,
                  "being repaired by pid " + std::to_string(Owner{mark}.pid()) + "; open it again when it is done");
    }
    const auto now = std::chrono::system_clock::now().time_since_epoch();
    // Relaxed: informational; read by list() after it sees the owner.
    atom(e.attached_unix_ns)
        .store(std::uint64_t(std::chrono::duration_cast<std::chrono::nanoseconds>(now).count()),
               std::memory_order_relaxed);
    // Relaxed: informational.
    atom(e.tid).store(static_cast<std::uint64_t>(::gettid()), std::memory_order_relaxed);
    return index;
  }
  throw_error(errc::too_many_processes, segment,
              "all " + std::to_string(kRegistryEntries) + " registry entries belong to live threads");
}

void detach(RegistryEntry* entries, std::uint32_t index, Owner owner) noexcept {
  std::uint64_t expected = owner.raw;
  // Release: our last stores to the entry (its heap, its counter shares)
  // happen before the next owner's acquire CAS in attach().
  atom(entries[index].owner).compare_exchange_strong(expected, 0, std::memory_order_release, std::memory_order_relaxed);
}

std::vector<ProcessInfo> list(SegmentHeader* header, RegistryEntry* entries) {
  std::vector<ProcessInfo> out;
  const std::uint32_t n = entries_in_use(header);
  for (std::uint32_t i = 0; i < n; ++i) {
    // Acquire: pairs with the claiming CAS, so attached_unix_ns is the owner's.
    const Owner o{atom(entries[i].owner).load(std::memory_order_acquire)};
    if (o.is_free()) continue;
    ProcessInfo p;
    p.entry = i;
    p.pid = o.pid();
    p.start_time_low = o.start_low();
    // Relaxed: informational.
    p.attached_unix_ns = atom(entries[i].attached_unix_ns).load(std::memory_order_relaxed);
    // Relaxed: informational.
    p.tid = static_cast<std::int64_t>(atom(entries[i].tid).load(std::memory_order_relaxed));
    p.recovering = o.borrowed();
    p.alive = owner_alive(o);
    out.push_back(p);
  }
  return out;
}

}  // namespace shmap::detail
