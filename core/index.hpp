// The index: tables of slot words, and the directory that says which table is
// current.
//
// A TABLE is 2^log2 64-bit slot words in a run of the arena (layout.hpp:
// TableHeader, then the slots, then one word per migration chunk). A key with
// hash h has its home at h >> (64 - log2) (the high bits, so a table keeps
// keys in hash order up to displacement) and its fingerprint in the low 8
// bits; a probe walks consecutive slots from the home, wrapping at the end.
// Within one table a slot moves EMPTY -> LIVE(K) -> ... and, once claimed for
// key K, stays K's (LIVE or DELETED) until the table is migrated: every
// writer of K meets K's slot before the first EMPTY slot of K's probe
// sequence, so one CAS decides racing inserters, and a key has one slot.
//
// THE DIRECTORY is one header word (TablesWord): the generation g of the
// current table, its run and size, and, while a migration runs, the run and
// size of table g + 1. Tables are found from it through the runs[] geometry
// words, which never change once set; this process caches each run's base.
//
// READERS VALIDATE, WRITERS ANNOUNCE. A retired table's run is returned to
// the system (hole punch) and later reused for another table, so a reader
// that loaded a table pointer might read zeros or another table from it.
// A reader re-reads the directory word after its reads (valid_since): if it
// is unchanged, no promotion happened, and only a table behind a promotion
// is ever retired; if it changed, the reader checks that each table it read
// still has its run in the state TABLE(generation), which retirement changes
// (RETIRING) before it releases a byte. Either way a changed answer sends
// the reader back to the start. (The hole punch is a system call: the
// retirer's state store is globally visible before the kernel unmaps the
// pages, and the reader's acquire loads stay in program order, so a reader
// whose reads saw released pages sees the new state.) Writers CAS into
// tables, which a stale pointer must never do: a writer announces the
// generation it works in (RegistryEntry::op_gen, seq_cst, re-checked against
// the directory) and a table is retired only when no live thread announces
// it (migrate.cpp).
#pragma once

#include <array>
#include <atomic>
#include <cstdint>
#include <optional>
#include <string_view>

#include "arena.hpp"
#include "hash.hpp"
#include "layout.hpp"
#include "segment.hpp"

namespace shmap::detail {

// One table, as this process sees it.
struct Index {
  std::uint64_t* slots = nullptr;
  TableHeader* head = nullptr;
  std::uint64_t* chunk_words = nullptr;  // one per migration chunk of this table
  std::uint64_t gen = 0;
  std::uint32_t run = 0;
  std::uint32_t log2 = 0;
  std::uint32_t chunk_log2 = 0;
  std::uint32_t shift = 0;  // 64 - log2
  std::uint64_t mask = 0;

  bool valid() const { return slots != nullptr; }
  std::uint64_t size() const { return mask + 1; }
  std::uint64_t home(std::uint64_t hash) const { return hash >> shift; }
  std::uint64_t next(std::uint64_t pos) const { return (pos + 1) & mask; }
  std::uint64_t chunks() const { return table_chunks(log2, chunk_log2); }
  std::uint64_t chunk_slots() const { return std::min<std::uint64_t>(size(), std::uint64_t{1} << chunk_log2); }
  // Claimed slots at which an insert starts a migration, and at which it
  // gives up (full_index) when no migration can start.
  std::uint64_t trigger_limit() const { return size() - size() / 4; }
  std::uint64_t hard_limit() const { return size() - size() / 8; }

  std::uint64_t& slot(std::uint64_t pos) const { return slots[pos]; }
  SlotWord load(std::uint64_t pos) const {
    // Site R0, acquire: pairs with the CAS that stored this word (W1, or a
    // freeze or copy during migration), so the record it names is visible.
    return SlotWord{atom(slots[pos]).load(std::memory_order_acquire)};
  }
  std::uint64_t used() const {
    // Relaxed: an occupancy hint; nothing is published through it.
    return atom(head->used).load(std::memory_order_relaxed);
  }
  void count_used(std::uint64_t n) const {
    // Relaxed: as above.
    if (n) atom(head->used).fetch_add(n, std::memory_order_relaxed);
  }
};

// A probe sequence: from the home of a hash, every slot once.
struct Probe {
  std::uint64_t pos;
  std::uint64_t n = 0;
  std::uint64_t mask;
  Probe(const Index& ix, std::uint64_t hash) : pos(ix.home(hash)), mask(ix.mask) {}
  bool more() const { return n <= mask; }
  void advance() {
    ++n;
    pos = (pos + 1) & mask;
  }
};

struct KeyHash {
  std::uint64_t hash;
  std::uint32_t fp;
};
[[gnu::always_inline]] inline KeyHash key_hash(std::string_view key, std::uint64_t seed) {
  const std::uint64_t h = hash_bytes(key, seed);
  return {h, static_cast<std::uint32_t>(h & SlotWord::kFpMask)};
}

// The directory as one handle sees it: the tables word, the runs, and this
// process's cache of run bases.
class Tables {
 public:
  Tables() = default;
  Tables(Mapping* mapping, Arena* arena)
      : mapping_(mapping), arena_(arena), header_(mapping->header()), chunk_log2_(mapping->fixed.chunk_log2) {}
  Tables(const Tables&) = delete;
  Tables& operator=(const Tables&) = delete;

  TablesWord load(std::memory_order order = std::memory_order_acquire) const {
    // Acquire (by default): pairs with the release or seq_cst CAS that
    // installed the word (migrate.cpp: start, promote), so the run geometry
    // and state written before it are visible.
    return TablesWord{atom(header_->tables).load(order)};
  }
  // True if table `ix` has not been retired since it was found: its run
  // still holds it (index.hpp file comment).
  bool still_holds(const Index& ix) const {
    return run_state(ix.run) == RunState::make(RunState::table, ix.gen, ix.log2);
  }
  // After reads of the tables that directory word `t` names: true if none of
  // them can have been retired meanwhile (the file comment).
  [[gnu::always_inline]] bool valid_since(TablesWord t) const {
    // Acquire: the re-read after the reads (they are acquire loads too, so
    // they stay before it); a promotion that precedes a retirement is seen.
    const TablesWord now = load();
    if (now == t) [[likely]]
      return true;
    return still_hold(t);
  }
  // valid_since once the directory changed: the tables of `t` still held.
  bool still_hold(TablesWord t) const;

  // The current table of `t`, and (while migrating) the next one. Throws
  // Error(corrupt) if the word names a run that cannot hold the table.
  Index cur(TablesWord t) const { return table(t.cur_run(), t.cur_log2(), t.gen()); }
  Index next(TablesWord t) const { return table(t.next_run(), t.next_log2(), gen_after(t.gen())); }
  [[gnu::always_inline]] Index table(std::uint32_t run, std::uint32_t log2, std::uint64_t gen) const {
    // The fast path of every operation: a run this process has validated.
    // Relaxed: process-local cache of immutable values (see fast_).
    // A hit needs the run and the size it was validated for (a run holds one
    // table size at a time in practice; a miss just validates again).
    const std::uint64_t f = std::atomic_ref<std::uint64_t>(fast_[run & (kRuns - 1)]).load(std::memory_order_relaxed);
    if ((f & 63u) == log2) [[likely]]
      return make(run, log2, gen, reinterpret_cast<char*>(f & ~std::uint64_t{kPageBytes - 1}));
    return table_slow(run, log2, gen);
  }
  // Table `gen` if a run still holds it (TABLE state): tables that are not
  // current any more but not yet retired. Empty if it was retired.
  std::optional<Index> find_gen(std::uint64_t gen) const;

  RunSlot& run(std::uint32_t k) const { return header_->runs[k]; }
  RunState run_state(std::uint32_t k, std::memory_order order = std::memory_order_acquire) const {
    // Acquire (by default): pairs with the release/seq_cst CASes of the state
    // (start, retire), so a FREE state comes with the zeroed run.
    return RunState{atom(header_->runs[k].state).load(order)};
  }
  // The geometry of run k if it is set and lies in the arena; 0 otherwise.
  RunGeom geom(std::uint32_t k) const;
  Mapping& mapping() const { return *mapping_; }
  Arena& arena() const { return *arena_; }
  SegmentHeader* header() const { return header_; }

 private:
  Mapping* mapping_ = nullptr;
  Arena* arena_ = nullptr;
  SegmentHeader* header_ = nullptr;
  std::uint32_t chunk_log2_ = 0;
  // Per run, once validated for a table of 2^log2 slots: its base address in
  // this process (page aligned) with log2 in the low 6 bits; 0 until first
  // use (log2 is at least 4, so 0 never hits). Immutable once set (a run's geometry never
  // changes), so racing fillers store the same value.
  mutable std::array<std::uint64_t, kRuns> fast_{};
  Index make(std::uint32_t run, std::uint32_t log2, std::uint64_t gen, char* base) const {
    Index ix;
    ix.head = reinterpret_cast<TableHeader*>(base);
    ix.slots = reinterpret_cast<std::uint64_t*>(base + kTableHeaderBytes);
    ix.log2 = log2;
    ix.shift = 64 - log2;
    ix.chunk_log2 = chunk_log2_;
    ix.mask = (std::uint64_t{1} << log2) - 1;
    ix.chunk_words = ix.slots + ix.size();
    ix.gen = gen;
    ix.run = run;
    return ix;
  }
  Index table_slow(std::uint32_t run, std::uint32_t log2, std::uint64_t gen) const;
};

}  // namespace shmap::detail
