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
// that loaded a table pointer might read garbage from it: readers take
// retire_seq before and after (an acquire pair around their reads), and a
// retirement increments it before it releases the memory, so a changed
// value sends the reader back to the start. Writers CAS into tables, which a
// stale pointer must never do: a writer announces the generation it works in
// (RegistryEntry::op_gen, seq_cst, re-checked against the directory) and a
// table is retired only when no live thread announces it (migrate.cpp).
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
  std::uint64_t mask = 0;

  bool valid() const { return slots != nullptr; }
  std::uint64_t size() const { return mask + 1; }
  std::uint64_t home(std::uint64_t hash) const { return hash >> (64 - log2); }
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
inline KeyHash key_hash(std::string_view key, std::uint64_t seed) {
  const std::uint64_t h = hash_bytes(key, seed);
  return {h, static_cast<std::uint32_t>(h & SlotWord::kFpMask)};
}

// The directory as one handle sees it: the tables word, the runs, and this
// process's cache of run bases.
class Tables {
 public:
  Tables() = default;
  Tables(Mapping* mapping, Arena* arena) : mapping_(mapping), arena_(arena), header_(mapping->header()) {}
  Tables(const Tables&) = delete;
  Tables& operator=(const Tables&) = delete;

  TablesWord load(std::memory_order order = std::memory_order_acquire) const {
    // Acquire (by default): pairs with the release or seq_cst CAS that
    // installed the word (migrate.cpp: start, promote), so the run geometry
    // and state written before it are visible.
    return TablesWord{atom(header_->tables).load(order)};
  }
  std::uint64_t retire_seq() const {
    // Acquire: a reader's first and last load around its reads of a table
    // (index.hpp file comment); pairs with the retirer's seq_cst increment,
    // made before the retired table's memory is released.
    return atom(header_->retire_seq).load(std::memory_order_acquire);
  }

  // The current table of `t`, and (while migrating) the next one. Throws
  // Error(corrupt) if the word names a run that cannot hold the table.
  Index cur(TablesWord t) const { return table(t.cur_run(), t.cur_log2(), t.gen()); }
  Index next(TablesWord t) const { return table(t.next_run(), t.next_log2(), t.gen() + 1); }
  Index table(std::uint32_t run, std::uint32_t log2, std::uint64_t gen) const;
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
  // Per run: its base address in this process (0 until first use) and its
  // validated geometry. Immutable once set (a run's geometry never changes),
  // so racing fillers store the same values.
  mutable std::array<std::uint64_t, kRuns> base_{};
  mutable std::array<std::uint64_t, kRuns> pages_{};
  Index make(std::uint32_t run, std::uint32_t log2, std::uint64_t gen, char* base) const;
  char* run_base(std::uint32_t run) const;
};

}  // namespace shmap::detail
