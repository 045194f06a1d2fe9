// Map::Impl: the engine behind every operation. A handle's mapped segment,
// its arena and index directory, the reader that finds a key across tables
// (find), the one write loop (mutate), the slot CAS with its intent
// (publish), and the migration steps (migrate.cpp) that writers help with.
//
// OPERATIONS (linearization points; docs/design.md argues each)
//   get/contains  find(): the probe of the current table, and of the next
//                 one while a migration moves keys to it. [the acquire load
//                 of the slot word that yields the answer; for a key found
//                 only in a frozen slot, the load of the EMPTY slot of the
//                 next table that shows it was not moved yet]
//   insert        at the first EMPTY slot, publish a fully written record by
//                 CAS EMPTY -> LIVE. [the successful CAS; "exists": the load of
//                 K's live slot word]
//   assign/cas/   CAS LIVE(old) -> LIVE(new), then free the old record.
//   fetch_add     [the successful CAS; "mismatch": the load of the slot word]
//   erase         CAS LIVE -> DELETED(fresh key-only record), then free the
//                 old record. [the CAS]
// While a migration runs, every write first helps it by one chunk, then
// settles its key in the old table (freezes the key's slot there, or the
// EMPTY slot that ends its probe sequence, and moves a live record to the
// next table), then runs in the next table: so a key changes only in the
// newest table that holds it, and a frozen slot names the key's last value
// in the old one until the move.
#pragma once

#include <atomic>
#include <chrono>
#include <cstring>
#include <memory>
#include <optional>
#include <string>
#include <thread>

#include "arena.hpp"
#include "fault.hpp"
#include "hash.hpp"
#include "index.hpp"
#include "layout.hpp"
#include "record.hpp"
#include "registry.hpp"
#include "segment.hpp"
#include "shmap/shmap.hpp"

namespace shmap {

using detail::atom;
using detail::Index;
using detail::KeyHash;
using detail::Probe;
using detail::RecordHeader;
using detail::Seen;
using detail::SlotWord;
using detail::TablesWord;

// Process-local bookkeeping of the registry entries a handle's threads hold.
// Shared with the threads' thread_local caches through weak pointers, so a
// thread that outlives the handle does not touch it.
struct HandleEntries {
  static constexpr std::uint32_t kWords = detail::kRegistryEntries / 64;
  std::atomic<std::uint64_t> owned[kWords] = {};  // claimed through this handle
  std::atomic<std::uint64_t> idle[kWords] = {};   // owned, and no live thread uses it
};

// The registry entry of the calling thread for handle `id` (0: none yet).
// Defined in map.cpp.
std::uint32_t* thread_entry(std::uint64_t id, std::uint64_t epoch, const std::shared_ptr<HandleEntries>& entries);

struct Map::Impl {
  detail::Mapping mapping;
  detail::SegmentHeader* header = nullptr;
  detail::RegistryEntry* registry = nullptr;
  std::uint64_t seed = 0;
  detail::Arena arena;
  detail::Tables tables;
  // Unique per handle in this process (never reused), keys the thread caches.
  std::uint64_t id = 0;
  std::shared_ptr<HandleEntries> entries = std::make_shared<HandleEntries>();

  // `open_timeout`: how long a writable open waits for a repair another
  // process is running (repair takes one pass over the map; open is a
  // blocking lifecycle call, operations never wait).
  Impl(detail::Mapping m, std::chrono::milliseconds open_timeout);
  ~Impl();
  Impl(const Impl&) = delete;
  Impl& operator=(const Impl&) = delete;

  // The calling thread's registry entry, claimed at its first write (entries
  // of threads that exited are reused first). Throws read_only, busy (a
  // repair runs), too_many_processes.
  std::uint32_t writer() {
    if (mapping.read_only) detail::throw_error(errc::read_only, mapping.name, "opened read-only; writes are refused");
    std::uint32_t* slot = thread_entry(id, detail::fork_epoch(), entries);
    if (*slot == 0) *slot = claim_entry() + 1;
    return *slot - 1;
  }
  // A new entry for the calling thread: an idle one of this handle, else a
  // registry claim (recovering dead processes' entries if none is free).
  std::uint32_t claim_entry();
  // Releases every entry this handle holds in this process, after moving
  // their free lists to the pool (destructor, repair).
  void release_idle(bool only_idle);

  detail::RegistryEntry& me(std::uint32_t e) const { return registry[e]; }

  // Recovery (recover.cpp).
  // `repairing`: the caller holds the maintenance mark (repair), which the
  // borrow would otherwise take for a running repair and back off from.
  // Entries whose recovery meets damage are left as they were and counted in
  // `damaged` (the first error in *damage); the others are recovered.
  RecoverReport recover_dead(std::uint32_t self, bool repairing = false, std::optional<Error>* damage = nullptr);
  // Recovers entry j if its owner is dead. True if j is free of a dead owner
  // afterwards (recovered now or by someone else); false if it is held by a
  // live thread or its recovery met damage.
  bool recover_entry(std::uint32_t self, std::uint32_t j);
  std::uint32_t borrow_orphans(std::uint32_t self, std::uint32_t cls);
  // Allocation with the slow path: pool, carve (growing the arena), then
  // recover dead entries and borrow orphan heaps, then once more.
  std::uint64_t allocate(std::uint32_t e, std::uint32_t klen, std::uint32_t vlen) {
    if (const std::uint64_t ref = arena.allocate(e, klen, vlen)) return ref;
    const std::uint32_t cls = detail::size_class_of(RecordHeader::record_bytes_for(klen, vlen));
    recover_dead(e);
    borrow_orphans(e, cls);
    return arena.allocate(e, klen, vlen);
  }

  // Sum of every entry's `live` share: the live keys.
  std::int64_t live_keys() const;

  // Blocks in the pooled batch `cell` of class `cls` (0 if it is not pooled
  // any more). Racy by nature (a statistic); never throws or loops.
  std::uint64_t pooled_length(std::uint64_t cell, std::uint32_t cls) const {
    const std::uint64_t first = cell & 0xffffffffu;
    const auto gen = static_cast<std::uint32_t>(cell >> 32);
    const std::uint64_t pooled = detail::FreeHeader::make(gen, cls, 0);
    if (!arena.in_bounds(first, 16)) return 0;
    // Relaxed (all): re-validated by the header re-read below.
    if (atom(arena.block(first)[0]).load(std::memory_order_relaxed) != pooled) return 0;
    std::uint64_t n = 0;
    for (std::uint64_t ref = first; ref != 0 && n < detail::kBatchBlocks && arena.in_bounds(ref, 16); ++n)
      ref = atom(arena.block(ref)[1]).load(std::memory_order_relaxed);
    std::atomic_thread_fence(std::memory_order_acquire);  // Acquire: orders the walk before the re-check.
    return atom(arena.block(first)[0]).load(std::memory_order_relaxed) == pooled ? n : 0;
  }

  KeyHash hash_of(std::string_view key) const { return detail::key_hash(key, seed); }

  // A record goes stale only after its slot word was replaced, and the
  // acquire/release pairs R1/R3b with A1/F1 guarantee that the re-read slot
  // word shows it. A slot word that stays the same while its record keeps
  // failing validation is therefore corruption, not contention: after this many
  // such rounds (ABA-wrapped republication resolves in one) we say so instead
  // of spinning forever. (Frozen slots never change: readers do not re-read
  // them, see probe.)
  static constexpr int kMaxStaleRounds = 64;
  void stale_round(SlotWord before, SlotWord after, int& rounds) const {
    if (before != after) {
      rounds = 0;
    } else if (++rounds > kMaxStaleRounds) [[unlikely]] {
      arena.corrupt("slot word refers to a record whose generation never matches", before.ref());
    }
  }

  // ---------------------------------------------------------------- reading
  // What one table says about a key:
  //   found    its slot holds it LIVE, unfrozen: the answer
  //   deleted  its slot holds it DELETED, unfrozen: absent, the answer
  //   none     no slot for it before an unfrozen EMPTY slot: absent here
  //            (and nowhere newer, unless an older table forwarded to us)
  //   forward  the answer is in the next table: the key's slot, or the EMPTY
  //            slot ending its probe, is frozen; or a frozen slot on the way
  //            could have been the key's (its record was recycled, or it was
  //            dropped) and a later unfrozen EMPTY proves nothing
  //   moving   as forward, and its frozen slot holds it LIVE: the sink has
  //            its value, which is the answer unless the next table has a
  //            slot for it (the move has not happened yet)
  enum class Probed { found, deleted, none, forward, moving };

  // The probe of one table, frozen slots included.
  template <class Sink>
  Probed probe(const Index& ix, std::string_view key, const KeyHash& kh, Sink&& sink) const {
    bool uncertain = false;
    for (Probe p(ix, kh.hash); p.more(); p.advance()) {
      SlotWord stale{};
      int rounds = 0;
      for (;;) {
        const SlotWord w = ix.load(p.pos);  // Site R0 (index.hpp).
        if (w.is_empty()) return uncertain ? Probed::forward : Probed::none;
        if (w.is_frozen()) {
          if (!w.has_record()) {
            if (w == SlotWord::frozen_empty()) return Probed::forward;
            uncertain = true;  // a dropped slot: maybe the key's
            break;
          }
          if (w.fp() != kh.fp) break;
          const Seen seen = detail::read_record(arena, w.unfrozen(), key, sink);
          if (seen == Seen::match) return Probed::moving;
          if (seen == Seen::stale) uncertain = true;  // moved and recycled: maybe the key's
          break;
        }
        if (!w.has_record() || w.fp() != kh.fp) break;
        const bool live = w.is_live();
        const Seen seen = detail::read_record(arena, w, key, [&](const std::uint64_t* v, std::uint32_t len) {
          if (live) sink(v, len);
        });
        // K's slot is unique: a DELETED slot naming K means K is absent.
        if (seen == Seen::match) return live ? Probed::found : Probed::deleted;
        if (seen == Seen::other_key) break;
        stale_round(stale, w, rounds);  // recycled: the slot word changed (or it is damage)
        stale = w;
      }
    }
    return uncertain ? Probed::forward : Probed::none;
  }

  // The common case of probe, on plain values: a table that no migration
  // touches. It gives up (forward) at the first frozen slot; the caller then
  // runs the general probe. Kept small so that get stays at the cost of its
  // cache misses.
  template <class Sink>
  Probed probe_stable(const std::uint64_t* slots, std::uint64_t mask, std::uint64_t pos, std::string_view key,
                      std::uint32_t fp, Sink& sink) const {
    SlotWord stale{};
    int rounds = 0;
    for (std::uint64_t n = 0;;) {
      // Site R0, acquire (see Index::load).
      const SlotWord w{atom(const_cast<std::uint64_t&>(slots[pos])).load(std::memory_order_acquire)};
      if (w.is_empty()) return Probed::none;
      if (w.is_frozen()) [[unlikely]]
        return Probed::forward;
      if (w.has_record() && w.fp() == fp) {
        const bool live = w.is_live();
        const Seen seen = detail::read_record(arena, w, key, [&](const std::uint64_t* v, std::uint32_t len) {
          if (live) sink(v, len);
        });
        if (seen == Seen::match) return live ? Probed::found : Probed::deleted;
        if (seen == Seen::stale) [[unlikely]] {
          stale_round(stale, w, rounds);  // recycled: re-read this slot
          stale = w;
          continue;
        }
      }
      if (++n > mask) return Probed::none;
      pos = (pos + 1) & mask;
    }
  }

  // The table after `gen`, from the directory as it is now; nothing if it was
  // retired meanwhile (the caller then starts again).
  std::optional<Index> next_table(std::uint64_t gen) const;

  // Finds `key`; on a match the sink gets the validated value (possibly more
  // than once: the last call holds the answer). Lock-free, writes no shared
  // memory.
  template <class Sink>
  bool find(std::string_view key, Sink&& sink) const {
    if (key.size() > kMaxKeyBytes) return false;
    const KeyHash kh = hash_of(key);
    const TablesWord t = tables.load();
    if (!t.migrating()) [[likely]] {
      const Index ix = tables.cur(t);
      const Probed r = probe_stable(ix.slots, ix.mask, ix.home(kh.hash), key, kh.fp, sink);
      if (r != Probed::forward && tables.valid_since(t)) [[likely]]
        return r == Probed::found;
    }
    return find_slow(key, kh, sink);
  }

  // find, in general: across a migration, and again after a retirement.
  template <class Sink>
  [[gnu::noinline]] bool find_slow(std::string_view key, const KeyHash& kh, Sink& sink) const {
    for (;;) {
      const TablesWord t = tables.load();
      const Index ix = tables.cur(t);
      const Probed r = probe(ix, key, kh, sink);
      int found = r == Probed::found;
      if (r == Probed::forward || r == Probed::moving) found = find_on(ix.gen, r == Probed::moving, key, kh, sink);
      if (found != kRetry && tables.valid_since(t)) return found != 0;
    }
  }

  static constexpr int kRetry = 2;
  // The slow part of find: tables after `gen` (the key is moving, or may be).
  // 1 found, 0 absent, kRetry if a table it read was retired meanwhile. Out
  // of line: the fast path keeps its registers.
  template <class Sink>
  int find_on(std::uint64_t gen, bool moving, std::string_view key, const KeyHash& kh, Sink&& sink) const {
    for (;;) {
      const std::optional<Index> nx = next_table(gen);
      if (!nx) return kRetry;
      const Probed r = probe(*nx, key, kh, sink);
      // Its run's state was set before the first slot that sent us here was
      // frozen (help), so a change means retirement.
      if (!tables.still_holds(*nx)) return kRetry;
      if (r == Probed::found) return 1;
      if (r == Probed::deleted) return 0;
      if (r == Probed::none) return moving ? 1 : 0;
      moving = moving || r == Probed::moving;
      gen = nx->gen;
    }
  }

  // ---------------------------------------------------------------- writing
  // An operation's announcement (index.hpp): the table generation it works
  // in, stored in the entry before the directory is trusted, and cleared at
  // the end. While it is set, that table and the next are not retired.
  class Announce {
   public:
    Announce(Impl& m, std::uint32_t e) : m_(m), e_(e) { announce(m_.tables.load()); }
    ~Announce();
    Announce(const Announce&) = delete;
    Announce& operator=(const Announce&) = delete;
    TablesWord view() const { return view_; }
    // Re-reads the directory (after meeting a frozen slot, or helping);
    // re-announces if the generation moved on.
    void refresh() {
      const TablesWord t = m_.tables.load();
      if (t.gen() != announced_) {
        announce(t);
      } else {
        view_ = t;
      }
    }

   private:
    void announce(TablesWord t);
    Impl& m_;
    std::uint32_t e_;
    std::uint64_t announced_ = 0;  // the generation announced now
    std::uint64_t first_ = 0;      // ... and at the start of the operation
    bool started_ = false;
    TablesWord view_{};
  };

  // A record being prepared by one writer (entry `e`): allocated lazily,
  // reused across CAS retries, freed if never published. The arena records it
  // in the entry's `pending` intent.
  struct Pending {
    Impl* self;
    std::uint32_t e;
    std::uint64_t ref = 0;
    std::uint32_t gen = 0;
    Pending(Impl* s, std::uint32_t entry) : self(s), e(entry) {}
    Pending(const Pending&) = delete;
    Pending& operator=(const Pending&) = delete;
    ~Pending() {
      if (!ref) return;
      try {
        self->arena.free(e, ref);
      } catch (const Error&) {
        // The block's header was found corrupt: leaking it is the only safe
        // choice here; the error surfaces at the next operation that meets it.
      }
    }
    // Allocates and fills the record once. False if the arena is full.
    bool make(std::string_view key, std::string_view value) {
      if (ref) return true;
      ref = self->allocate(e, static_cast<std::uint32_t>(key.size()), static_cast<std::uint32_t>(value.size()));
      if (!ref) return false;
      std::uint64_t* r = self->arena.block(ref);
      // Relaxed: we own the block; we only need the generation we stored.
      gen = RecordHeader{atom(r[0]).load(std::memory_order_relaxed)}.gen();
      detail::write_words(r + 1, key);
      SHMAP_FAULT("prepare: key written, value not yet");
      detail::write_words(r + 1 + RecordHeader::pad8(key.size()) / 8, value);
      SHMAP_FAULT("prepare: record written, not yet published");
      return true;
    }
    // Rewrites the value of an unpublished record of the same value length.
    void rewrite_value(std::string_view key, std::string_view value) {
      detail::write_words(self->arena.block(ref) + 1 + RecordHeader::pad8(key.size()) / 8, value);
    }
    SlotWord word(std::uint32_t fp) const { return SlotWord::live(ref, fp, gen); }
  };

  // Site W1: every publishing or unlinking CAS on a slot word, bracketed by
  // the entry's slot intent (recover.cpp decides from it whether a dead
  // writer's CAS took effect).
  //   before: op_expected, op_desired, op_table and the live share the
  //           entry will have afterwards, then op_slot (release: the intent
  //           is complete whenever op_slot is seen);
  //   CAS:    release: the record written before it (header, key, value) is
  //           visible to whoever acquires the new word (R0); acquire: on
  //           success we may read and free the record the old word referred
  //           to (its header was released by its own W1); on failure we
  //           re-examine the freshly loaded word's record;
  //   after:  on failure op_slot = 0; on success the share, then `freeing`
  //           for the unlinked record, `pending` cleared (published), op_slot
  //           cleared, then the free. Each a release store.
  // Returns true on success; on failure `expected` holds the word that beat us.
  bool publish(std::uint32_t e, const Index& ix, std::uint64_t pos, SlotWord& expected, SlotWord desired,
               std::int64_t live_delta, Pending* pending);

  // Claims slot `pos` of `ix` (EMPTY, or DELETED naming this key) for the
  // pending record.
  bool claim(std::uint32_t e, const Index& ix, std::uint64_t pos, SlotWord& w, Pending& pending, std::uint32_t fp) {
    if (!publish(e, ix, pos, w, pending.word(fp), +1, &pending)) return false;
    if (w.is_empty()) ix.count_used(1);
    return true;
  }

  enum class Found { keep, replace, erase };
  // What mutate_in ran into: done (the status is the answer), retry (a
  // frozen slot: the table is being migrated, so the view is stale), or full
  // (an insert found the table at `limit`).
  enum class Step { done, retry, full };
  struct Outcome {
    Step step;
    Status status;
  };

  // The write loop in one table. make_new(pending) prepares the record to
  // insert when the key is absent (false: the arena is full). on_found(value
  // words, value len) decides what to do with the key's live record; for
  // replace it has filled `pending`; for erase it may have filled `pending`
  // with a key-only record to shrink the deleted entry to.
  template <class MakeNew, class OnFound>
  Outcome mutate_in(std::uint32_t e, const Index& ix, std::string_view key, const KeyHash& kh, bool insert_if_absent,
                    Pending& pending, std::uint64_t limit, MakeNew& make_new, OnFound& on_found) {
    for (Probe p(ix, kh.hash); p.more(); p.advance()) {
      SlotWord w = ix.load(p.pos);  // Site R0 (index.hpp).
      int rounds = 0;
      for (;;) {
        if (w.is_frozen()) return {Step::retry, Status::ok};
        if (w.is_empty()) {
          if (!insert_if_absent) return {Step::done, Status::absent};
          if (!make_new(pending)) return {Step::done, Status::full_arena};
          if (ix.used() >= limit) return {Step::full, Status::full_index};
          if (claim(e, ix, p.pos, w, pending, kh.fp)) return {Step::done, Status::inserted};
          continue;  // `w` now holds the word that beat us
        }
        if (!w.has_record() || w.fp() != kh.fp) break;
        const bool live = w.is_live();
        Found action = Found::keep;
        std::uint64_t validated = 0;
        const Seen seen = detail::read_record(
            arena, w, key,
            [&](const std::uint64_t* v, std::uint32_t len) {
              if (live) action = on_found(v, len);
            },
            &validated);
        if (seen == Seen::other_key) break;
        if (seen == Seen::stale) {
          // The record was recycled, so the slot changed.
          const SlotWord before = w;
          w = ix.load(p.pos);  // Site R0 again.
          stale_round(before, w, rounds);
          continue;
        }
        if (!live) {  // K's slot, K erased: K is absent, and this is where it goes
          if (!insert_if_absent) return {Step::done, Status::absent};
          if (!make_new(pending)) return {Step::done, Status::full_arena};
          if (claim(e, ix, p.pos, w, pending, kh.fp)) return {Step::done, Status::inserted};
          continue;
        }
        if (action == Found::keep) return {Step::done, Status::exists};
        SlotWord desired = pending.word(kh.fp);
        if (action == Found::erase) desired = pending.ref ? desired.deleted() : w.deleted();
        // ABA guard: the slot word carries only 22 bits of the record's
        // generation, the header all 32. Re-checking the full generation right
        // before the CAS shrinks the window in which a stalled writer could
        // meet a recycled block with a wrapped tag from "read, decide, prepare"
        // to these two instructions (docs/design.md, "The ABA bound").
        // Acquire (R3b): as in read_record.
        if (atom(arena.block(w.ref())[0]).load(std::memory_order_acquire) != validated) {
          const SlotWord before = w;
          w = ix.load(p.pos);  // Site R0 again.
          stale_round(before, w, rounds);
          continue;
        }
        if (publish(e, ix, p.pos, w, desired, action == Found::erase ? -1 : 0, &pending)) {
          return {Step::done, action == Found::erase ? Status::ok : Status::assigned};
        }
      }
    }
    if (insert_if_absent) return {Step::full, Status::full_index};
    return {Step::done, Status::absent};
  }

  // The one write loop behind every mutating operation: announces, helps a
  // running migration and settles the key in the old table, then runs
  // mutate_in in the table that holds the key's newest state; starts a
  // migration when an insert finds its table at the trigger limit. Returns
  // inserted, assigned (replace), ok (erase), exists (keep), absent,
  // full_index or full_arena.
  template <class MakeNew, class OnFound>
  Status mutate(std::string_view key, bool insert_if_absent, Pending& pending, MakeNew&& make_new, OnFound&& on_found) {
    const std::uint32_t e = pending.e;
    const KeyHash kh = hash_of(key);
    Announce op(*this, e);
    bool cannot_migrate = false;  // a migration could not start: fill to the hard limit
    for (;;) {
      const TablesWord t = op.view();
      Index target = tables.cur(t);
      if (t.migrating()) {
        const Index to = tables.next(t);
        help(e, t, target, to);
        if (!settle(e, target, to, key, kh)) {
          op.refresh();
          continue;
        }
        target = to;
      }
      const std::uint64_t limit = cannot_migrate ? target.hard_limit() : target.trigger_limit();
      const Outcome r = mutate_in(e, target, key, kh, insert_if_absent, pending, limit, make_new, on_found);
      if (r.step == Step::done) return r.status;
      if (r.step == Step::full) {
        if (t.migrating()) {
          help_until_promoted(e, t);
        } else if (cannot_migrate) {
          return Status::full_index;
        } else if (!start_migration(e, t, target)) {
          cannot_migrate = true;
          continue;
        }
      }
      const std::uint64_t before = t.gen();
      op.refresh();
      if (op.view().gen() != before) cannot_migrate = false;
    }
  }

  // ---------------------------------------------------------------- migration (migrate.cpp)
  // Starts a migration from `cur` (the current table of `t`) to a table
  // sized for the live keys. True if the directory changed (by us or anyone);
  // false if no run could be found or carved for the new table.
  bool start_migration(std::uint32_t e, TablesWord t, const Index& cur);
  // Moves one chunk of the migration `t` (from -> to) and promotes the next
  // table once every chunk is done.
  void help(std::uint32_t e, TablesWord t, const Index& from, const Index& to);
  void help_until_promoted(std::uint32_t e, TablesWord t);
  // Freezes the key's slot in `from` (or the EMPTY slot that ends its probe
  // sequence) and moves a live record to `to`. False if `to` is itself being
  // migrated (the caller's view is stale).
  bool settle(std::uint32_t e, const Index& from, const Index& to, std::string_view key, const KeyHash& kh);
  // Retires every past table no live thread announces: its memory goes back
  // to the filesystem and its run becomes free. Recovers dead announcers.
  void try_retire(std::uint32_t self);
  // Retires the table in run k whose state is `s` (a past table no one
  // announces) as registry entry `as`: G5 names `as` the holder, and only the
  // holder zeroes the run and frees it. With `s` already RETIRING held by
  // `as` (a survivor recovering `as`), finishes it.
  void retire_run(std::uint32_t k, detail::RunState s, std::uint32_t as);
  // Finishes any migration and retires every past table it can (repair,
  // recover, close).
  void settle_index(std::uint32_t e);
  // After a successful erase: every 256th erase of a thread checks whether
  // the live keys fell below 1/16 of the current table (and it is larger
  // than the first), and if so starts a migration to a smaller one.
  void after_erase(std::uint32_t e);
};

}  // namespace shmap
