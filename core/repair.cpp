// repair: rebuilds the arena's free lists and the counters from the index,
// with the map to itself.
//
// EXCLUSION without a lock that anyone waits on:
//   M1  CAS header.maintenance 0 -> our owner word (seq_cst); a dead
//       repairer's mark is taken over.
//   M2  recover dead processes' entries, release this handle's idle ones,
//       then scan the registry (seq_cst loads): any entry held other than
//       the calling thread's -> clear the mark, errc::busy.
// An attacher claims its entry (seq_cst CAS) and then reads the mark (seq_cst)
// (registry.cpp). Both sides store then load with seq_cst, so at least one
// sees the other: either the attacher sees the mark and backs out, or the
// repairer sees the entry and refuses. Nobody blocks: both sides fail fast.
//
// REBUILD (the map is quiet: no other attached writer; readers through
// read-only handles may still be reading, and see only published records,
// which are not touched):
//   0. the index scan of fsck collects every reachable block; any index
//      damage (bad slot word, duplicate key, overlapping records, records
//      beyond the bump offset) -> errc::corrupt, nothing written;
//   1. every free list is emptied (every entry's heap and the pool; the
//      entries' counter shares and intents zeroed), so a repair killed from
//      here on leaves only leaked memory and zeroed counter shares (and a
//      dead mark, which the next attacher clears), which the next repair
//      rebuilds;
//   2. every carved byte not in a reachable block is cut into free blocks:
//      along the old block boundaries while the old headers say where they
//      are, then greedily (largest class first, no remainder under 16 bytes);
//      each gets an odd generation past its old one, so a stale slot word
//      naming an old block start can never validate;
//   3. the free lists and the counter shares are installed in the calling
//      thread's entry, and the excess handed to the pool.
#include <algorithm>
#include <string>
#include <vector>

#include "fault.hpp"
#include "fsck.hpp"
#include "map_impl.hpp"

namespace shmap {
namespace {

// The largest block size that fits `remaining` bytes exactly or leaves at
// least 16 (every multiple of 8 from 16 up is a sum of classes).
std::uint32_t class_to_cut(std::uint64_t remaining) {
  if (remaining <= 64) return detail::size_class_of(remaining);
  std::uint32_t cls = std::min(detail::size_class_of(remaining), detail::kClasses - 1);
  auto fits = [&](std::uint32_t c) {
    const std::uint64_t b = detail::size_class_bytes(c);
    return b <= remaining && (b == remaining || remaining - b >= 16);
  };
  while (cls > 0 && !fits(cls)) --cls;
  return cls;
}

// The size class of the old block starting at `b` if its header is plausible
// and the block fits in `remaining` bytes; kClasses otherwise.
std::uint32_t old_block_class(const std::uint64_t* b, std::uint64_t remaining) {
  // Relaxed: no writer is attached (see the file comment).
  const std::uint64_t raw = atom(const_cast<std::uint64_t&>(b[0])).load(std::memory_order_relaxed);
  if (raw == 0 || detail::CarveClaim::is_claim(raw)) return detail::kClasses;  // carved, never written
  const std::uint32_t cls = detail::block_class(raw);
  if (cls >= detail::kClasses || detail::size_class_bytes(cls) > remaining) return detail::kClasses;
  const std::uint64_t rest = remaining - detail::size_class_bytes(cls);
  return rest == 0 || rest >= 16 ? cls : detail::kClasses;
}

class MaintenanceMark {
 public:
  MaintenanceMark(Map::Impl& m, detail::Owner me) : m_(m), me_(me) {
    SHMAP_FAULT("repair: before taking the maintenance mark");
    std::uint64_t expected = 0;
    // Site M1, seq_cst: see the file comment.
    while (!atom(m_.header->maintenance).compare_exchange_strong(expected, me.raw, std::memory_order_seq_cst)) {
      if (detail::owner_alive(detail::Owner{expected}))
        detail::throw_error(errc::busy, m_.mapping.name,
                            "a repair by pid " + std::to_string(detail::Owner{expected}.pid()) + " is running");
    }
  }
  ~MaintenanceMark() {
    std::uint64_t expected = me_.raw;
    // Release: the rebuilt lists and counters happen before the next attacher's
    // seq_cst load of the mark.
    atom(m_.header->maintenance).compare_exchange_strong(expected, 0, std::memory_order_release);
  }
  MaintenanceMark(const MaintenanceMark&) = delete;
  MaintenanceMark& operator=(const MaintenanceMark&) = delete;

 private:
  Map::Impl& m_;
  detail::Owner me_;
};

// Recovers dead processes' entries, releases this handle's idle entries,
// and refuses if any entry but `mine` is held by a live owner. Returns the
// entries still held by dead owners (their recovery met damage): the rebuild
// zeroes them and releases them.
std::vector<std::uint32_t> require_alone(Map::Impl& m, std::uint32_t mine) {
  (void)m.recover_dead(mine, true);
  m.release_idle(true);
  std::string others;
  std::vector<std::uint32_t> dead;
  // Every entry, not only those below entries_used: an attacher raises that
  // mark after its claim. Their pages are reserved first (a read of a hole
  // would allocate a page, and a full filesystem would fault).
  if (const int err = m.mapping.reserve(m.mapping.fixed.registry_offset,
                                        std::uint64_t{detail::kRegistryEntries} * sizeof(detail::RegistryEntry));
      err != 0)
    detail::throw_system(m.mapping.name, "reserving the registry's file blocks", err);
  for (std::uint32_t i = 0; i < detail::kRegistryEntries; ++i) {
    // Site M2, seq_cst: see the file comment.
    const detail::Owner o{atom(m.registry[i].owner).load(std::memory_order_seq_cst)};
    if (o.is_free() || i == mine) continue;
    if (!detail::owner_alive(o)) {
      dead.push_back(i);
      continue;
    }
    others += (others.empty() ? "" : ", ") + std::to_string(o.pid());
  }
  if (!others.empty())
    detail::throw_error(errc::busy, m.mapping.name,
                        "repair needs the map to itself; other writing threads are attached (pids " + others + ")");
  return dead;
}

}  // namespace

FsckReport Map::repair() {
  Impl& m = *impl_;
  const std::uint32_t mine = m.writer();
  const MaintenanceMark mark(m, detail::self_owner());
  const std::vector<std::uint32_t> dead = require_alone(m, mine);
  // A migration in progress is finished first, and past tables retired, so
  // the rebuild sees one table (the runs stay: they are index memory).
  m.settle_index(mine);
  m.try_retire(mine);

  detail::IndexScan scan = detail::scan_index(m);
  if (!scan.report.ok)
    detail::throw_error(errc::corrupt, m.mapping.name,
                        "the index itself is damaged, which repair cannot rebuild: " + scan.report.violations.front());

  // Relaxed (all below): no other writer is attached; the release of the
  // maintenance mark publishes the result to the next attacher.
  std::uint64_t top = atom(m.header->arena_top.value).load(std::memory_order_relaxed);
  if (top < detail::kArenaFirstOffset || top > m.arena.bytes() || top % 8 != 0)
    detail::throw_error(errc::corrupt, m.mapping.name, "arena bump offset out of range; repair cannot rebuild it");

  // The reservation mark must cover the carved range and lie within the
  // arena (fsck reports either as damage): allocate the carved range's file
  // blocks (cheap where they are) and move a damaged mark to the bump offset.
  const std::uint64_t reserved = atom(m.header->arena_reserved).load(std::memory_order_relaxed);
  if (reserved < top || reserved > m.arena.bytes()) {
    if (!m.arena.reserve_range(0, top))
      detail::throw_error(errc::corrupt, m.mapping.name,
                          "the arena's reservation mark is damaged and the filesystem has no room to reserve the " +
                              std::to_string(top) + " carved bytes again");
    atom(m.header->arena_reserved).store(top, std::memory_order_relaxed);
  }

  // A chunk claimed at the bump offset whose claimer died before advancing
  // it (recovery normally finishes that): take it into the carved range.
  if (top < m.arena.reserved()) {
    const std::uint64_t w = atom(m.arena.block(top / 8)[0]).load(std::memory_order_relaxed);
    if (detail::CarveClaim::is_claim(w) && !detail::CarveClaim::is_run(w) &&
        detail::CarveClaim::bytes_of(w, top) <= m.arena.bytes() - top) {
      atom(m.arena.block(top / 8)[0]).store(0, std::memory_order_relaxed);
      top += detail::CarveClaim::bytes_of(w, top);
      atom(m.header->arena_top.value).store(top, std::memory_order_relaxed);
    }
  }

  std::vector<detail::Block>& live = scan.blocks;
  std::sort(live.begin(), live.end(),
            [](const detail::Block& a, const detail::Block& b) { return a.offset < b.offset; });
  // Everything repair would build on is checked before the first write.
  for (std::size_t i = 0; i < live.size(); ++i) {
    if (live[i].offset + live[i].bytes > top || (i > 0 && live[i].offset < live[i - 1].offset + live[i - 1].bytes))
      detail::throw_error(errc::corrupt, m.mapping.name,
                          "reachable records overlap or lie beyond the bump offset; repair cannot rebuild that");
  }

  // Step 1: empty every free list first: every heap (the orphans' and ours)
  // and the pool. From here on a crash leaves only leaked memory (nothing can
  // be allocated from the bytes we rewrite next), and the next repair
  // rebuilds it all.
  const std::uint32_t entries = detail::entries_in_use(m.header);
  for (std::uint32_t e = 0; e < entries; ++e) {
    detail::RegistryEntry& r = m.registry[e];
    for (std::uint32_t c = 0; c < detail::kClasses; ++c) {
      detail::atom32(r.head[c]).store(0, std::memory_order_relaxed);
      detail::atom32(r.count[c]).store(0, std::memory_order_relaxed);
      detail::atom32(r.carved[c]).store(0, std::memory_order_relaxed);
    }
    for (std::uint64_t* w : {&r.op_slot, &r.pending, &r.freeing, &r.x_kind, &r.live, &r.op_gen})
      atom(*w).store(0, std::memory_order_relaxed);
  }
  for (std::uint32_t c = 0; c < detail::kClasses; ++c)
    for (std::uint64_t& cell : m.header->pool[c].cells) atom(cell).store(0, std::memory_order_relaxed);
  SHMAP_FAULT("repair: free lists emptied");

  std::vector<std::uint64_t> free_heads(detail::kClasses, 0);
  std::vector<std::uint64_t> free_count(detail::kClasses, 0);

  // Step 2: cut the unreachable bytes into free blocks. Old blocks are kept
  // where their headers say where they are (so every old block start gets a
  // new generation and a stale slot word naming it can never validate); the
  // rest (after a block carved but never written) is cut greedily.
  auto cut_gap = [&](std::uint64_t from, std::uint64_t to) {
    bool follow_old = true;
    while (to - from >= 16) {
      std::uint64_t* b = m.arena.block(from / 8);
      std::uint32_t cls = follow_old ? old_block_class(b, to - from) : detail::kClasses;
      if (cls == detail::kClasses) {
        follow_old = false;
        cls = class_to_cut(to - from);
      }
      const RecordHeader old{atom(b[0]).load(std::memory_order_relaxed)};
      const std::uint32_t gen = (old.gen() | 1u) + 2u;  // odd, past any incarnation
      // Release store and fence, as at F1 (arena.cpp): a read-only reader still
      // holding a stale slot word for this block sees the new generation
      // before any byte we write next, and discards its copy.
      atom(b[0]).store(detail::FreeHeader::make(gen, cls, 0), std::memory_order_release);
      std::atomic_thread_fence(std::memory_order_release);
      atom(b[1]).store(free_heads[cls], std::memory_order_relaxed);
      free_heads[cls] = from / 8;
      ++free_count[cls];
      from += detail::size_class_bytes(cls);
    }
  };
  std::uint64_t cursor = detail::kArenaFirstOffset;
  for (const detail::Block& b : live) {
    if (b.offset > cursor) cut_gap(cursor, b.offset);
    cursor = std::max(cursor, b.offset + b.bytes);
  }
  if (top > cursor) cut_gap(cursor, top);
  SHMAP_FAULT("repair: gaps cut, lists not yet installed");

  // Step 3: install the lists and the counters in our entry, then hand the
  // excess to the pool.
  detail::RegistryEntry& r = m.registry[mine];
  std::uint64_t claimed = scan.report.live_keys + scan.report.deleted_slots;
  for (std::uint32_t c = 0; c < detail::kClasses; ++c) {
    detail::atom32(r.head[c]).store(static_cast<std::uint32_t>(free_heads[c]), std::memory_order_relaxed);
    detail::atom32(r.count[c]).store(static_cast<std::uint32_t>(free_count[c]), std::memory_order_relaxed);
    detail::atom32(r.carved[c])
        .store(static_cast<std::uint32_t>(scan.reachable_per_class[c] + free_count[c]), std::memory_order_relaxed);
  }
  atom(r.live).store(scan.report.live_keys, std::memory_order_relaxed);
  atom(m.tables.cur(m.tables.load()).head->used).store(claimed, std::memory_order_relaxed);
  // Entries of dead owners whose recovery met damage: zeroed in step 1, and
  // released now (a CAS: a survivor that borrowed one meanwhile backs off
  // from our mark and puts it back).
  for (const std::uint32_t e : dead) {
    std::uint64_t owner = atom(m.registry[e].owner).load(std::memory_order_relaxed);
    if (owner != 0 && !detail::owner_alive(detail::Owner{owner}))
      atom(m.registry[e].owner).compare_exchange_strong(owner, 0, std::memory_order_release, std::memory_order_relaxed);
  }
  for (std::uint32_t c = 0; c < detail::kClasses; ++c) m.arena.donate(mine, c, detail::kLocalMax);
  return fsck();
}

}  // namespace shmap
