// Online migration of the index: grow, rebuild at the same size (dropping
// deleted slots), or shrink, while every process keeps reading and writing,
// and any of them may be killed at any instruction.
//
// STATES (the directory word, layout.hpp TablesWord):
//   STABLE(g)            table g is current; writers work in it.
//   MIGRATING(g -> g+1)  table g+1 (in a run chosen by the starter) is being
//                        filled from table g; writers help, then work in g+1.
//   STABLE(g+1)          promoted once every chunk of g is DONE; table g is
//                        then retired as soon as no live thread announces it.
//
// START (an insert that finds its table at 3/4 of its slots): size the next
// table for the live keys (2^k > live * 8/3, never below the first table: so
// after the move at most 3/8 of it is used, and at least as many inserts as
// there are live keys come before the next migration: O(1) amortized),
// take a FREE run big enough or carve a new one (arena.cpp, run claims), and
// CAS the directory STABLE(g) -> MIGRATING(g, run, size) (G1). Losing the CAS
// costs nothing: the run stays FREE. The run's state becomes TABLE(g+1) by
// CAS from FREE, done by the starter and repeated by every helper.
//
// CHUNKS. Table g is cut into chunks of 2^chunk_log2 slots; its header's
// cursor hands them out (fetch_add, modulo the count: after one pass every
// chunk is handed out again, so a chunk whose helper died is redone by the
// next). Moving a chunk, slot by slot:
//   EMPTY          CAS -> FROZEN_EMPTY: closed, no key can be inserted here
//   LIVE(K, R)     CAS -> FROZEN(LIVE(K, R)), then copy: walk K's probe in
//                  g+1; at K's slot stop (moved already); at the first EMPTY
//                  CAS EMPTY -> LIVE(K, R) (G2). A record changes owner (from
//                  the frozen slot to the new one) but no memory moves, so
//                  copies need no intent: redone, they find K's slot.
//   DELETED(K, T)  the key is dropped: CAS -> FROZEN|DELETED naming this
//                  entry, through publish (a slot intent), then T is freed:
//                  exactly one freezer wins, and recovery asks the slot.
//   frozen         nothing to freeze; a frozen LIVE slot is copied (again:
//                  its first freezer may have died before copying).
// When every slot of the chunk is frozen and copied, its chunk word is CASed
// 0 -> DONE (G3) and the table's done hint is incremented.
//
// PROMOTION. Whoever increments the done hint to the chunk count, and
// whoever takes the last chunk of a pass from the cursor, checks every chunk
// word; if all are DONE it CASes MIGRATING(g) -> STABLE(g+1) (G4). The hint
// only decides when to look: a helper killed between its DONE CAS and the
// increment leaves a low hint, and the next pass's last chunk checks again.
// Nothing waits for a counter a dead helper would have moved.
//
// RETIREMENT. Table g is retired once no live thread announces g or g - 1
// (index.hpp): its run's state is CASed TABLE(g) -> RETIRING(g) (G5: a
// reader that read the table meanwhile sees the state changed and starts
// again), its pages are punched out of the file (memory back to the system),
// and the state becomes FREE (G6), ready for a later table. Every step
// after G5 is redone by whoever finds the run RETIRING. A dead announcer
// does not pin a table: its entry is recovered first (its slot intent may
// name the table).
#include <algorithm>
#include <cstring>
#include <string>

#include "map_impl.hpp"

namespace shmap {

using detail::RunGeom;
using detail::RunState;

namespace {

constexpr std::uint64_t kDone = 1;

std::uint32_t ceil_log2(std::uint64_t n) {
  std::uint32_t l = 0;
  while ((std::uint64_t{1} << l) < n) ++l;
  return l;
}

// A scratch key buffer for copies (one per thread; copies never nest).
std::string& scratch_key() {
  thread_local std::string key;
  return key;
}

enum class Copied { inserted, present, stale_view };

}  // namespace

// ------------------------------------------------------------ announcements

void Map::Impl::Announce::announce(TablesWord t) {
  for (;;) {
    // Seq_cst: one side of the Dekker pair with try_retire (store our
    // generation, then re-read the directory; the retirer sees the promotion,
    // then reads our word). Either we see the newer directory, or the retirer
    // sees our announcement and leaves the tables we may touch alone.
    atom(m_.registry[e_].op_gen).store(t.gen() + 1, std::memory_order_seq_cst);
    SHMAP_FAULT("announce: stored, directory not yet re-read");
    const TablesWord again = m_.tables.load(std::memory_order_seq_cst);
    if (again.gen() == t.gen()) {
      if (!started_) first_ = t.gen();
      started_ = true;
      view_ = again;
      announced_ = t.gen();
      return;
    }
    t = again;
  }
}

Map::Impl::Announce::~Announce() {
  // Release: everything this operation did to the tables happens before a
  // retirer that reads the cleared word (its seq_cst load) releases them.
  atom(m_.registry[e_].op_gen).store(0, std::memory_order_release);
  // The directory moved on during this operation: our announcement may have
  // been the last that kept a past table.
  // Relaxed: a trigger only; try_retire re-reads everything it decides on.
  if (first_ != announced_ || m_.tables.load(std::memory_order_relaxed).gen() != announced_) {
    try {
      m_.try_retire(e_);
    } catch (const Error&) {
      // Damage met while retiring: the next operation that needs it reports it.
    }
  }
}

std::optional<Index> Map::Impl::next_table(std::uint64_t gen) const {
  const TablesWord t = tables.load();
  const std::uint64_t ahead = detail::gen_distance(t.gen(), gen);
  if (ahead == 0 && t.migrating()) return tables.next(t);
  if (ahead == 1) return tables.cur(t);
  if (ahead > 1 && detail::gen_before(gen, t.gen())) return tables.find_gen(detail::gen_after(gen));
  detail::throw_error(errc::corrupt, mapping.name,
                      "table " + std::to_string(gen) + " has frozen slots but the directory (generation " +
                          std::to_string(t.gen()) + ") has no migration from it");
}

// ------------------------------------------------------------ the slot CAS

bool Map::Impl::publish(std::uint32_t e, const Index& ix, std::uint64_t pos, SlotWord& expected, SlotWord desired,
                        std::int64_t live_delta, Pending* pending) {
  detail::RegistryEntry& r = me(e);
  const SlotWord old = expected;
  // Relaxed: our own entry.
  const std::uint64_t live_after = atom(r.live).load(std::memory_order_relaxed) + std::uint64_t(live_delta);
  // Release (both): a survivor that reads op_slot of an earlier intent and
  // then these words of a later one (recover.cpp, decide) sees, through
  // them, everything this thread did before: the earlier op's free.
  atom(r.op_expected).store(old.raw, std::memory_order_release);
  atom(r.op_desired).store(desired.raw, std::memory_order_release);
  // Relaxed (both): published by the release store of op_slot.
  atom(r.op_live_after).store(live_after, std::memory_order_relaxed);
  atom(r.op_table).store(ix.gen, std::memory_order_relaxed);
  atom(r.op_slot).store(pos + 1, std::memory_order_release);  // Release (intent).
  SHMAP_FAULT("publish: intent recorded, slot not yet swapped");
  // Site W1 (see the declaration).
  if (!atom(ix.slot(pos))
           .compare_exchange_strong(expected.raw, desired.raw, std::memory_order_acq_rel, std::memory_order_acquire)) {
    atom(r.op_slot).store(0, std::memory_order_release);  // Release (intent).
    return false;
  }
  SHMAP_FAULT("publish: slot swapped, shares not yet counted");
  atom(r.live).store(live_after, std::memory_order_release);  // Release (share).
  const bool unlinked = old.has_record() && old.ref() != desired.ref();
  if (unlinked) {
    // Relaxed: the acquire CAS above made the old record's header visible.
    const RecordHeader h{atom(arena.block(old.ref())[0]).load(std::memory_order_relaxed)};
    atom(r.freeing).store(old.ref() | (std::uint64_t(h.gen()) << 32), std::memory_order_release);  // Release (intent).
  }
  if (pending && desired.ref() != 0 && desired.ref() == pending->ref) {
    pending->ref = 0;
    atom(r.pending).store(0, std::memory_order_release);  // Release (intent): published.
  }
  SHMAP_FAULT("publish: counted, intent not yet cleared");
  atom(r.op_slot).store(0, std::memory_order_release);  // Release (intent).
  if (unlinked) {
    SHMAP_FAULT("publish: old record unlinked, not yet freed");
    arena.free_recorded(e, old.ref());
  }
  return true;
}

// ------------------------------------------------------------ start

namespace {

// The smallest FREE run with at least `pages` pages; kRuns if none.
std::uint32_t pick_free_run(const detail::Tables& tables, std::uint64_t pages, std::uint32_t avoid) {
  std::uint32_t best = detail::kRuns;
  std::uint64_t best_pages = ~std::uint64_t{0};
  for (std::uint32_t k = 0; k < detail::kRuns; ++k) {
    if (k == avoid) continue;
    const RunGeom g = tables.geom(k);
    if (!g.is_set() || g.pages() < pages || g.pages() >= best_pages) continue;
    // Relaxed: a candidate; the directory CAS decides, and a FREE run is
    // zero (its retirer's release CAS to FREE is acquired by the helpers'
    // state CAS before they write it).
    if (tables.run_state(k, std::memory_order_relaxed).kind() != RunState::free) continue;
    best = k;
    best_pages = g.pages();
  }
  return best;
}

}  // namespace

bool Map::Impl::start_migration(std::uint32_t e, TablesWord t, const Index& cur) {
  try_retire(e);  // a free run for the new table, if a past one can go
  const std::int64_t live = std::max<std::int64_t>(0, live_keys());
  const std::uint32_t min_log2 = mapping.fixed.min_log2;
  const std::uint32_t log2 = std::clamp<std::uint32_t>(
      ceil_log2(std::max<std::uint64_t>(1, std::uint64_t(live) * 8 / 3)), min_log2, detail::kMaxTableLog2);
  const std::uint64_t pages = detail::table_pages(log2, mapping.fixed.chunk_log2);
  std::uint32_t k = pick_free_run(tables, pages, cur.run);
  if (k != detail::kRuns) {
    // A retired run's pages were punched: allocate their file blocks again
    // before the table is written (a full filesystem: no migration now). A
    // starter that then loses the directory CAS leaves them allocated in a
    // FREE run, which the next table to take that run uses.
    const RunGeom g = tables.geom(k);
    if (!arena.reserve_range(g.start(), g.bytes())) return false;
  }
  if (k == detail::kRuns) {
    // Carve a new run into an unused run slot (reserved first, so a carver
    // killed midway is found by recovery: RunGeom::reserving).
    for (std::uint32_t j = 0; j < detail::kRuns && k == detail::kRuns; ++j) {
      std::uint64_t unused = 0;
      // Relaxed: the slot is ours by this CAS; what we write into it is
      // published by the release CAS that installs the geometry.
      if (atom(tables.run(j).geom)
              .compare_exchange_strong(unused, RunGeom::reserving(e).raw, std::memory_order_relaxed))
        k = j;
    }
    if (k == detail::kRuns) return false;  // every run slot holds a run, none free and big enough
    SHMAP_FAULT("migrate: run slot reserved, not yet carved");
    if (!arena.carve_run(e, k, pages)) {
      std::uint64_t mine = RunGeom::reserving(e).raw;
      // Relaxed: giving the slot back; nothing was written to it.
      atom(tables.run(k).geom).compare_exchange_strong(mine, 0, std::memory_order_relaxed);
      return false;
    }
  }
  SHMAP_FAULT("migrate: run chosen, directory not yet changed");
  std::uint64_t expected = t.raw;
  // Site G1, seq_cst: pairs with every acquire load of the directory (readers
  // then find the run's geometry, installed with a release before), and is
  // the promotion-side store of the Dekker pair with announcements.
  const bool won =
      atom(header->tables).compare_exchange_strong(expected, t.migrating_to(k, log2).raw, std::memory_order_seq_cst);
  if (!won) return expected != t.raw;
  SHMAP_FAULT("migrate: directory migrating, run state not yet set");
  std::uint64_t free_state = 0;
  // Release: the run's state names the table the directory names.
  atom(tables.run(k).state)
      .compare_exchange_strong(free_state, RunState::make(RunState::table, detail::gen_after(t.gen()), log2).raw,
                               std::memory_order_release, std::memory_order_relaxed);
  return true;
}

// ------------------------------------------------------------ moving keys

namespace {

// Copies the frozen live record `w` (given unfrozen) of `from` into `to`.
Copied copy_into(const Map::Impl& m, const Index& to, SlotWord w) {
  std::string& key = scratch_key();
  // Stale: the record was recycled, which happens only after it was moved
  // and then replaced in the new table: the key is there already.
  if (!detail::read_key(m.arena, w, key)) return Copied::present;
  const KeyHash kh = m.hash_of(key);
  if (kh.fp != w.fp()) m.arena.corrupt("a slot's fingerprint does not match its key's hash", w.ref());
  for (Probe p(to, kh.hash); p.more(); p.advance()) {
    SlotWord x = to.load(p.pos);  // Site R0 (index.hpp).
    int rounds = 0;
    for (;;) {
      if (x.is_frozen()) return Copied::stale_view;  // `to` is migrating on: our migration was promoted long ago
      if (x.is_empty()) {
        // Site G2, acq_rel: release: a reader that acquires the new word sees
        // the record (published by its W1, which we acquired with the old
        // slot word); acquire on failure: we re-examine the winner's word.
        if (atom(to.slot(p.pos))
                .compare_exchange_strong(x.raw, w.raw, std::memory_order_acq_rel, std::memory_order_acquire)) {
          SHMAP_FAULT("migrate: key copied");
          return Copied::inserted;
        }
        continue;
      }
      if (!x.has_record() || x.fp() != kh.fp) break;
      const Seen seen = detail::read_record(m.arena, x, key, [](const std::uint64_t*, std::uint32_t) {});
      if (seen == Seen::match) return Copied::present;
      if (seen == Seen::other_key) break;
      const SlotWord before = x;
      x = to.load(p.pos);  // Site R0 again: the record was recycled, the slot changed.
      m.stale_round(before, x, rounds);
    }
  }
  m.arena.corrupt("a migration's new table has no free slot", w.ref());
}

}  // namespace

bool Map::Impl::settle(std::uint32_t e, const Index& from, const Index& to, std::string_view key, const KeyHash& kh) {
  const auto ignore = [](const std::uint64_t*, std::uint32_t) {};
  for (Probe p(from, kh.hash); p.more(); p.advance()) {
    SlotWord w = from.load(p.pos);  // Site R0 (index.hpp).
    int rounds = 0;
    for (;;) {
      if (w.is_empty()) {
        // Acquire (both): closing an EMPTY slot publishes nothing; on failure
        // we re-examine the word that beat us (its W1 released its record).
        if (atom(from.slot(p.pos))
                .compare_exchange_strong(w.raw, SlotWord::frozen_empty().raw, std::memory_order_acquire,
                                         std::memory_order_acquire)) {
          SHMAP_FAULT("settle: probe end closed");
          return true;
        }
        continue;
      }
      if (w.is_frozen()) {
        if (w == SlotWord::frozen_empty()) return true;
        if (!w.has_record() || w.fp() != kh.fp) break;  // dropped, or another key's
        const Seen seen = detail::read_record(arena, w.unfrozen(), key, ignore);
        if (seen == Seen::match) return copy_into(*this, to, w.unfrozen()) != Copied::stale_view;
        break;  // another key, or recycled (moved: the key is in `to` already)
      }
      if (!w.has_record() || w.fp() != kh.fp) break;
      const Seen seen = detail::read_record(arena, w, key, ignore);
      if (seen == Seen::other_key) break;
      if (seen == Seen::stale) {
        const SlotWord before = w;
        w = from.load(p.pos);  // Site R0 again.
        stale_round(before, w, rounds);
        continue;
      }
      if (w.is_live()) {
        // Site G2's freeze, acq_rel: acquire: we copy the record's key (its
        // W1 released it; the freeze continues that release sequence, so a
        // reader acquiring the frozen word sees the record too).
        if (!atom(from.slot(p.pos))
                 .compare_exchange_strong(w.raw, w.frozen().raw, std::memory_order_acq_rel, std::memory_order_acquire))
          continue;
        SHMAP_FAULT("settle: key frozen, not yet copied");
        return copy_into(*this, to, w) != Copied::stale_view;
      }
      // DELETED(K): drop it; the freezer frees the key-only record.
      if (publish(e, from, p.pos, w, SlotWord::frozen_dropped(e + 1), 0, nullptr)) return true;
    }
  }
  return true;  // the whole table walked: no slot for the key, and no EMPTY to close
}

void Map::Impl::help(std::uint32_t e, TablesWord t, const Index& from, const Index& to) {
  std::uint64_t free_state = 0;
  // Relaxed load first (the common case: set already). Release CAS: as in
  // start_migration (the starter may have died before it).
  if (tables.run_state(to.run, std::memory_order_relaxed).kind() == RunState::free)
    atom(tables.run(to.run).state)
        .compare_exchange_strong(free_state, RunState::make(RunState::table, to.gen, to.log2).raw,
                                 std::memory_order_release, std::memory_order_relaxed);
  const std::uint64_t n = from.chunks();
  // Relaxed: the cursor only spreads the work; the chunk words decide.
  const std::uint64_t c = atom(from.head->cursor).fetch_add(1, std::memory_order_relaxed);
  const std::uint64_t i = c % n;
  SHMAP_FAULT("migrate: chunk taken");
  bool check = c % n == n - 1;
  // Acquire: pairs with the release DONE CAS (G3): a done chunk's copies are visible.
  if (atom(from.chunk_words[i]).load(std::memory_order_acquire) != kDone) {
    std::uint64_t copies = 0, dropped = 0;
    const std::uint64_t first = i * from.chunk_slots(), last = first + from.chunk_slots();
    for (std::uint64_t pos = first; pos < last; ++pos) {
      SlotWord w = from.load(pos);  // Site R0 (index.hpp).
      for (;;) {
        if (w.is_frozen()) {
          if (w.has_record()) {
            const Copied c2 = copy_into(*this, to, w.unfrozen());
            if (c2 == Copied::stale_view) return;
            if (c2 == Copied::inserted) ++copies;
          }
          break;
        }
        if (w.is_empty()) {
          // Acquire (both): as in settle.
          if (atom(from.slot(pos))
                  .compare_exchange_strong(w.raw, SlotWord::frozen_empty().raw, std::memory_order_acquire,
                                           std::memory_order_acquire))
            break;
          continue;
        }
        if (!w.has_record()) arena.corrupt("a slot word is neither EMPTY nor names a record", pos);
        if (w.is_live()) {
          // Acq_rel: as in settle.
          if (!atom(from.slot(pos))
                   .compare_exchange_strong(w.raw, w.frozen().raw, std::memory_order_acq_rel,
                                            std::memory_order_acquire))
            continue;
          SHMAP_FAULT("migrate: key frozen, not yet copied");
          const Copied c2 = copy_into(*this, to, w);
          if (c2 == Copied::stale_view) return;
          if (c2 == Copied::inserted) ++copies;
          break;
        }
        if (publish(e, from, pos, w, SlotWord::frozen_dropped(e + 1), 0, nullptr)) {
          ++dropped;
          break;
        }
      }
    }
    SHMAP_FAULT("migrate: chunk moved, not yet marked done");
    std::uint64_t zero = 0;
    // Site G3, release: the chunk's freezes and copies happen before a
    // promoter that acquires DONE (so a promoted table has every key).
    if (atom(from.chunk_words[i])
            .compare_exchange_strong(zero, kDone, std::memory_order_release, std::memory_order_relaxed)) {
      SHMAP_FAULT("migrate: chunk done, hints not yet counted");
      to.count_used(copies);
      // Relaxed (both): statistics and a hint.
      if (dropped) atom(from.head->dropped).fetch_add(dropped, std::memory_order_relaxed);
      if (atom(from.head->done).fetch_add(1, std::memory_order_relaxed) + 1 >= n) check = true;
    }
  }
  if (!check) return;
  for (std::uint64_t j = 0; j < n; ++j)
    if (atom(from.chunk_words[j]).load(std::memory_order_acquire) != kDone) return;  // Acquire: see G3.
  std::uint64_t expected = t.raw;
  // Site G4, seq_cst: the promotion. Readers acquire it; announcers and
  // retirers order against it (the Dekker pair in Announce).
  if (!atom(header->tables).compare_exchange_strong(expected, t.promoted().raw, std::memory_order_seq_cst)) return;
  SHMAP_FAULT("migrate: promoted");
  detail::IndexCounters& k = header->counters;
  // Relaxed (all): statistics.
  if (to.log2 > from.log2) atom(k.grown).fetch_add(1, std::memory_order_relaxed);
  if (to.log2 < from.log2) atom(k.shrunk).fetch_add(1, std::memory_order_relaxed);
  atom(k.dropped).fetch_add(atom(from.head->dropped).load(std::memory_order_relaxed), std::memory_order_relaxed);
}

void Map::Impl::help_until_promoted(std::uint32_t e, TablesWord t) {
  const Index from = tables.cur(t), to = tables.next(t);
  // Each round moves a chunk or finds it done; a full pass of done chunks
  // ends in a promotion check, so this ends once the chunks are all done,
  // whoever else is (or was) working on them.
  while (tables.load() == t) help(e, t, from, to);
}

// ------------------------------------------------------------ retirement

namespace {

// Zeroes [offset, offset + bytes) of the arena: hole-punched where the
// filesystem allows (the memory goes back), the rest written.
void zero_run(detail::Arena& arena, std::uint64_t offset, std::uint64_t bytes) {
  detail::Mapping& mp = arena.mapping();
  const std::uint64_t file_off = mp.fixed.arena_offset + offset;
  const std::uint64_t unit = std::max<std::uint64_t>(mp.granule, detail::kPageBytes);
  std::uint64_t from = (file_off + unit - 1) / unit * unit, to = (file_off + bytes) / unit * unit;
  if (to <= from || mp.punch(from, to - from) != 0) from = to = file_off;
  SHMAP_FAULT("retire: pages returned");
  // The unpunched edges (or everything): write zeros. Relaxed stores: a
  // stale reader may read here (it validates and retries, index.hpp).
  auto clear = [&](std::uint64_t a, std::uint64_t b) {
    auto* w = reinterpret_cast<std::uint64_t*>(arena.at(a - mp.fixed.arena_offset));
    for (std::uint64_t i = 0; i < (b - a) / 8; ++i)
      if (atom(w[i]).load(std::memory_order_relaxed) != 0) atom(w[i]).store(0, std::memory_order_relaxed);
  };
  if (from > file_off) clear(file_off, from);
  if (file_off + bytes > to) clear(std::max(to, file_off), file_off + bytes);
}

}  // namespace

void Map::Impl::retire_run(std::uint32_t k, RunState s, std::uint32_t as) {
  const RunGeom g = tables.geom(k);
  if (!g.is_set()) arena.corrupt("a retired table's run has no geometry", k);
  const RunState mine = RunState::make(RunState::retiring, s.gen(), s.log2(), as + 1);
  if (s.kind() == RunState::table) {
    std::uint64_t expected = s.raw;
    // Site G5, seq_cst: after the pin check (try_retire); before any byte of
    // the run is released, so a reader whose reads saw released (zero) pages
    // sees the new state when it validates (index.hpp: its acquire loads stay
    // in program order, and this store is globally visible before the
    // punch's page-table changes). The state names us: we alone release it.
    if (!atom(tables.run(k).state).compare_exchange_strong(expected, mine.raw, std::memory_order_seq_cst)) return;
    SHMAP_FAULT("retire: run retiring");
  } else if (s != mine) {
    return;  // another retirer's (try_retire recovers it if that one died)
  }
  zero_run(arena, g.start(), g.bytes());
  std::uint64_t expected = mine.raw;
  // Site G6, release: the zeroed run happens before the next table's use of
  // it (a starter's directory CAS G1 follows its load of FREE; every user of
  // the new table acquires G1).
  if (atom(tables.run(k).state)
          .compare_exchange_strong(expected, 0, std::memory_order_release, std::memory_order_relaxed))
    // Relaxed: statistics.
    atom(header->counters.retired).fetch_add(1, std::memory_order_relaxed);
}

void Map::Impl::try_retire(std::uint32_t self) {
  for (std::uint32_t k = 0; k < detail::kRuns; ++k) {
    const RunState s = tables.run_state(k);
    if (s.kind() == RunState::retiring) {
      // A retirement another thread began: its holder finishes it, or, if
      // the holder died, whoever recovers the holder's entry (recover.cpp).
      const std::uint32_t holder = s.holder();
      if (holder == self + 1)
        retire_run(k, s, self);
      else if (holder >= 1 && holder <= detail::kRegistryEntries)
        (void)recover_entry(self, holder - 1);
      continue;
    }
    if (s.kind() != RunState::table) continue;
    // Seq_cst: the retirer's side of the Dekker pair (see Announce).
    const TablesWord t = tables.load(std::memory_order_seq_cst);
    const std::uint64_t g = s.gen();
    if (!detail::gen_before(g, t.gen())) continue;  // current, or the migration's next table
    bool pinned = false;
    const std::uint32_t n = detail::entries_in_use(header);
    for (std::uint32_t j = 0; j < n && !pinned; ++j) {
      // Seq_cst: see above.
      const std::uint64_t a = atom(registry[j].op_gen).load(std::memory_order_seq_cst);
      // a = 1 + the announced generation: it pins that one and the next.
      if (a == 0 || ((a - 1) != g && (a & detail::kGenMask) != g)) continue;
      if (j == self) continue;  // our own operation does not touch past tables
      // Relaxed: an entry claims its owner word before it ever announces
      // (and the seq_cst load above acquired that claim), so an announcement
      // on a free entry is a leftover of damage, not a pin.
      if (atom(registry[j].owner).load(std::memory_order_relaxed) == 0) continue;
      // A dead announcer does not pin: recover its entry (its intents may
      // name this table), then look again.
      if (!recover_entry(self, j) || [&] {
            const std::uint64_t a2 = atom(registry[j].op_gen).load(std::memory_order_seq_cst);  // Seq_cst: as above.
            return a2 != 0 && ((a2 - 1) == g || (a2 & detail::kGenMask) == g);
          }())
        pinned = true;
    }
    if (!pinned) retire_run(k, s, self);
  }
}

void Map::Impl::after_erase(std::uint32_t e) {
  thread_local std::uint32_t erases = 0;
  if (++erases % 256 != 0) return;
  // Relaxed: a trigger only; start_migration decides on an announced view.
  const TablesWord t = tables.load(std::memory_order_relaxed);
  if (t.migrating() || t.cur_log2() <= mapping.fixed.min_log2) return;
  const std::int64_t live = live_keys();
  if (live > 0 && (std::uint64_t(live) << 4) >= (std::uint64_t{1} << t.cur_log2())) return;
  Announce op(*this, e);
  const TablesWord v = op.view();
  if (!v.migrating()) (void)start_migration(e, v, tables.cur(v));
}

void Map::Impl::settle_index(std::uint32_t e) {
  Announce op(*this, e);
  for (;;) {
    const TablesWord t = op.view();
    if (!t.migrating()) break;
    help_until_promoted(e, t);
    op.refresh();
  }
}

}  // namespace shmap
