// Map::Impl: the mapped segment plus the probe, read and write machinery that
// the operations (map.cpp) and the checker (fsck.cpp) share. See map.cpp for
// the protocol overview and docs/design.md for the full argument.
#pragma once

#include <atomic>
#include <chrono>
#include <memory>
#include <optional>
#include <cstring>
#include <string>
#include <thread>

#include "arena.hpp"
#include "fault.hpp"
#include "hash.hpp"
#include "layout.hpp"
#include "registry.hpp"
#include "segment.hpp"
#include "shmap/shmap.hpp"

namespace shmap {

using detail::atom;
using detail::RecordHeader;
using detail::SlotWord;

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
  std::uint64_t* index = nullptr;
  detail::RegistryEntry* registry = nullptr;
  std::uint64_t mask = 0;
  std::uint64_t seed = 0;
  std::uint64_t used_limit = 0;
  detail::Arena arena;
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
  std::uint32_t borrow_orphans(std::uint32_t self, std::uint32_t cls);
  // Allocation with the slow path: pool, carve, then recover dead entries and
  // borrow orphan heaps, then once more.
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

  // ---------------------------------------------------------------- reading
  enum class Seen { match, other_key, stale };

  // Reads the record that slot word `w` refers to, compares its key with `key`
  // (`words`: the key as zero-padded 8-byte words) and, on a match, hands the
  // value to `sink(const uint64_t* value_words, uint32_t value_len)`. The sink
  // must only read through relaxed atomics. `stale` means the record was
  // recycled meanwhile: the caller re-reads the slot word.
  template <class Sink>
  Seen read_record(SlotWord w, std::string_view key, Sink&& sink, std::uint64_t* validated = nullptr) const {
    if (!arena.in_bounds(w.ref(), 8)) arena.corrupt("slot word refers outside the arena", w.ref());
    std::uint64_t* r = arena.block(w.ref());
    // Site R1, acquire: the first read of the seqlock; keeps the key/value
    // loads below after it. (The record's contents were made visible by the
    // acquire load of `w`, which pairs with the publishing CAS, site W1.)
    const RecordHeader h1{atom(r[0]).load(std::memory_order_acquire)};
    if (!h1.is_allocated() || !w.matches_gen(h1.gen())) return Seen::stale;
    if (h1.key_len() != key.size()) return Seen::other_key;  // h1 is one atomic read: no validation needed
    if (!arena.in_bounds(w.ref(), h1.record_bytes())) arena.corrupt("record overruns the arena", w.ref());

    bool equal = true;
    const std::size_t full = key.size() / 8;
    for (std::size_t i = 0; i < full && equal; ++i) {
      // Relaxed: validated by R3 below.
      equal = atom(r[1 + i]).load(std::memory_order_relaxed) == detail::load_le64(key.data() + 8 * i);
    }
    if (equal && key.size() % 8 != 0) {
      // Relaxed: validated by R3 below.
      equal = atom(r[1 + full]).load(std::memory_order_relaxed) ==
              detail::load_tail(key.data() + 8 * full, key.size() % 8);
    }
    if (equal) sink(r + 1 + RecordHeader::pad8(key.size()) / 8, h1.value_len());
    // Site R3, acquire fence, then re-read the generation: pairs with the
    // release fences after every generation change (arena.cpp A1, F1). If any
    // load above saw a byte written after such a change, this load sees the
    // changed generation.
    std::atomic_thread_fence(std::memory_order_acquire);
    // Acquire (site R3b): pairs with the release stores of a new generation
    // (A1, F1); if the generation moved, the caller's re-read of the slot word
    // sees the unlink that preceded the free.
    const std::uint64_t h2 = atom(r[0]).load(std::memory_order_acquire);
    if (h2 != h1.raw) return Seen::stale;
    if (validated) *validated = h2;
    return equal ? Seen::match : Seen::other_key;
  }

  // A record goes stale only after its slot word was replaced, and the
  // acquire/release pairs R1/R3b with A1/F1 guarantee that the re-read slot
  // word shows it. A slot word that stays the same while its record keeps
  // failing validation is therefore corruption, not contention: after this many
  // such rounds (ABA-wrapped republication resolves in one) we say so instead
  // of spinning forever.
  static constexpr int kMaxStaleRounds = 64;
  void stale_round(SlotWord before, SlotWord after, int& rounds) const {
    if (before != after) {
      rounds = 0;
    } else if (++rounds > kMaxStaleRounds) {
      arena.corrupt("slot word refers to a record whose generation never matches", before.ref());
    }
  }

  struct Probe {
    std::uint64_t hash;
    std::uint32_t fp;
  };
  Probe probe_of(std::string_view key) const {
    const std::uint64_t h = detail::hash_bytes(key, seed);
    return {h, static_cast<std::uint32_t>(h >> 56)};
  }

  // Finds `key`; on a match calls sink with the validated value. Lock-free.
  template <class Sink>
  bool find(std::string_view key, Sink&& sink) const {
    if (key.size() > kMaxKeyBytes) return false;
    const Probe p = probe_of(key);
    std::uint64_t pos = p.hash & mask;
    for (std::uint64_t n = 0; n <= mask; ++n, pos = (pos + 1) & mask) {
      SlotWord previous{};
      int rounds = 0;
      for (;;) {
        // Site R0, acquire: pairs with the publishing CAS (W1) that stored this
        // word, so the record's header, key and value are visible.
        const SlotWord w{atom(index[pos]).load(std::memory_order_acquire)};
        stale_round(previous, w, rounds);
        previous = w;
        if (w.is_empty()) return false;
        if (!w.has_record() || w.fp() != p.fp) break;
        const bool live = w.is_live();
        const Seen seen = read_record(w, key, [&](const std::uint64_t* v, std::uint32_t len) {
          if (live) sink(v, len);
        });
        // K's slot is unique: a DELETED slot naming K means K is absent.
        if (seen == Seen::match) return live;
        if (seen == Seen::other_key) break;
      }
    }
    return false;
  }

  // ---------------------------------------------------------------- writing
  static void write_words(std::uint64_t* dst, std::string_view bytes) {
    const std::size_t full = bytes.size() / 8;
    for (std::size_t i = 0; i < full; ++i) {
      // Relaxed: the block is unpublished; the publishing CAS (W1) releases it.
      atom(dst[i]).store(detail::load_le64(bytes.data() + 8 * i), std::memory_order_relaxed);
    }
    if (bytes.size() % 8 != 0) {
      // Relaxed: as above. The tail word is zero padded, which key comparison relies on.
      atom(dst[full]).store(detail::load_tail(bytes.data() + 8 * full, bytes.size() % 8), std::memory_order_relaxed);
    }
  }

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
      write_words(r + 1, key);
      SHMAP_FAULT("prepare: key written, value not yet");
      write_words(r + 1 + RecordHeader::pad8(key.size()) / 8, value);
      SHMAP_FAULT("prepare: record written, not yet published");
      return true;
    }
    // Rewrites the value of an unpublished record of the same value length.
    void rewrite_value(std::string_view key, std::string_view value) {
      write_words(self->arena.block(ref) + 1 + RecordHeader::pad8(key.size()) / 8, value);
    }
    SlotWord word(std::uint32_t fp) const { return SlotWord::live(ref, fp, gen); }
  };

  // Slots claimed are counted (in the entry's `used` share, and in the shared
  // `used_slots` hint) after the claiming CAS, and an insert into an EMPTY
  // slot is refused while the hint is at the limit. So `full_index` is never
  // caused by another insert that then fails (no reservation to give back),
  // and concurrent claimers can overshoot the limit by at most one slot each
  // (plus one per writer killed between its CAS and the hint), which the 1/8
  // of slots above the limit absorbs.
  bool below_used_limit() const {
    // Relaxed: an occupancy bound only; nothing is published through it.
    return atom(header->used_slots.value).load(std::memory_order_relaxed) < used_limit;
  }

  // Site W1: every publishing or unlinking CAS on a slot word, bracketed by
  // the entry's slot intent (recover.cpp decides from it whether a dead
  // writer's CAS took effect).
  //   before: op_expected, op_desired and the counter shares the entry will
  //           have afterwards, then op_slot (release: the intent is complete
  //           whenever op_slot is seen);
  //   CAS:    release: the record written before it (header, key, value) is
  //           visible to whoever acquires the new word (R0); acquire: on
  //           success we may read and free the record the old word referred
  //           to (its header was released by its own W1); on failure we
  //           re-examine the freshly loaded word's record;
  //   after:  on failure op_slot = 0; on success the shares, then `freeing`
  //           for the unlinked record, `pending` cleared (published), op_slot
  //           cleared, then the free. Each a release store.
  // Returns true on success; on failure `expected` holds the word that beat us.
  bool publish(std::uint32_t e, std::uint64_t pos, SlotWord& expected, SlotWord desired, std::int64_t live_delta,
               Pending& pending) {
    detail::RegistryEntry& r = me(e);
    const SlotWord old = expected;
    // Relaxed (loads): our own entry.
    const std::uint64_t live_after = atom(r.live).load(std::memory_order_relaxed) + std::uint64_t(live_delta);
    const std::uint64_t used_after = atom(r.used).load(std::memory_order_relaxed) + (old.is_empty() ? 1 : 0);
    // Release (both): a survivor that reads op_slot of an earlier intent and
    // then these words of a later one (recover.cpp, decide) sees, through
    // them, everything this thread did before: the earlier op's free.
    atom(r.op_expected).store(old.raw, std::memory_order_release);
    atom(r.op_desired).store(desired.raw, std::memory_order_release);
    // Relaxed (both): published by the release store of op_slot.
    atom(r.op_live_after).store(live_after, std::memory_order_relaxed);
    atom(r.op_used_after).store(used_after, std::memory_order_relaxed);
    atom(r.op_slot).store(pos + 1, std::memory_order_release);  // Release (intent).
    SHMAP_FAULT("publish: intent recorded, slot not yet swapped");
    if (!atom(index[pos]).compare_exchange_strong(expected.raw, desired.raw, std::memory_order_acq_rel,
                                                  std::memory_order_acquire)) {
      atom(r.op_slot).store(0, std::memory_order_release);  // Release (intent).
      return false;
    }
    SHMAP_FAULT("publish: slot swapped, shares not yet counted");
    atom(r.live).store(live_after, std::memory_order_release);  // Release (share).
    atom(r.used).store(used_after, std::memory_order_release);  // Release (share).
    // Relaxed: the shared hint for the used-slot limit.
    if (old.is_empty()) atom(header->used_slots.value).fetch_add(1, std::memory_order_relaxed);
    const bool unlinked = old.has_record() && old.ref() != desired.ref();
    if (unlinked) {
      // Relaxed: the acquire CAS above made the old record's header visible.
      const RecordHeader h{atom(arena.block(old.ref())[0]).load(std::memory_order_relaxed)};
      atom(r.freeing).store(old.ref() | (std::uint64_t(h.gen()) << 32), std::memory_order_release);  // Release (intent).
    }
    if (desired.ref() == pending.ref) {
      pending.ref = 0;
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

  enum class Found { keep, replace, erase };

  // Claims `slot` (EMPTY, or DELETED naming this key) for the pending record.
  bool claim(std::uint32_t e, std::uint64_t pos, SlotWord& w, Pending& pending, std::uint32_t fp) {
    if (w.is_empty() && !below_used_limit()) return false;
    return publish(e, pos, w, pending.word(fp), +1, pending);
  }

  // The one write loop behind every mutating operation.
  //   make_new(pending) -> bool prepares the record to insert when the key is
  //     absent (false: the arena is full).
  //   on_found(value_words, value_len) -> Found decides what to do with the
  //     key's live record; for replace it has filled `pending`; for erase it
  //     may have filled `pending` with a key-only record to shrink the deleted
  //     entry to.
  // Returns inserted, assigned (replace), ok (erase), exists (keep), absent,
  // full_index or full_arena.
  template <class MakeNew, class OnFound>
  Status mutate(std::string_view key, bool insert_if_absent, Pending& pending, MakeNew&& make_new,
                OnFound&& on_found) {
    const std::uint32_t e = pending.e;
    const Probe p = probe_of(key);
    std::uint64_t pos = p.hash & mask;
    for (std::uint64_t n = 0; n <= mask; ++n, pos = (pos + 1) & mask) {
      std::uint64_t& slot = index[pos];
      // Site R0 (see find).
      SlotWord w{atom(slot).load(std::memory_order_acquire)};
      int rounds = 0;
      for (;;) {
        if (w.is_empty()) {
          if (!insert_if_absent) return Status::absent;
          if (!make_new(pending)) return Status::full_arena;
          if (claim(e, pos, w, pending, p.fp)) return Status::inserted;
          if (w.is_empty()) return Status::full_index;  // at the used-slot limit
          continue;  // `w` now holds the word that beat us
        }
        if (!w.has_record() || w.fp() != p.fp) break;
        const bool live = w.is_live();
        Found action = Found::keep;
        std::uint64_t validated = 0;
        const Seen seen = read_record(
            w, key, [&](const std::uint64_t* v, std::uint32_t len) { if (live) action = on_found(v, len); },
            &validated);
        if (seen == Seen::other_key) break;
        if (seen == Seen::stale) {
          // Site R0 again: the record was recycled, so the slot changed.
          const SlotWord before = w;
          w = SlotWord{atom(slot).load(std::memory_order_acquire)};
          stale_round(before, w, rounds);
          continue;
        }
        if (!live) {  // K's slot, K erased: K is absent, and this is where it goes
          if (!insert_if_absent) return Status::absent;
          if (!make_new(pending)) return Status::full_arena;
          if (claim(e, pos, w, pending, p.fp)) return Status::inserted;
          continue;
        }
        if (action == Found::keep) return Status::exists;
        SlotWord desired = pending.word(p.fp);
        if (action == Found::erase) desired = pending.ref ? desired.deleted() : w.deleted();
        // ABA guard: the slot word carries only 22 bits of the record's
        // generation, the header all 32. Re-checking the full generation right
        // before the CAS shrinks the window in which a stalled writer could
        // meet a recycled block with a wrapped tag from "read, decide, prepare"
        // to these two instructions (docs/design.md, "The ABA bound").
        // Acquire (R3b): as in read_record.
        if (atom(arena.block(w.ref())[0]).load(std::memory_order_acquire) != validated) {
          const SlotWord before = w;
          // Site R0 again.
          w = SlotWord{atom(slot).load(std::memory_order_acquire)};
          stale_round(before, w, rounds);
          continue;
        }
        if (publish(e, pos, w, desired, action == Found::erase ? -1 : 0, pending)) {
          return action == Found::erase ? Status::ok : Status::assigned;
        }
      }
    }
    return insert_if_absent ? Status::full_index : Status::absent;
  }
};

}  // namespace shmap
