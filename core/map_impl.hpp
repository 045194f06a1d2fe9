// Map::Impl: the mapped segment plus the probe, read and write machinery that
// the operations (map.cpp) and the checker (fsck.cpp) share. See map.cpp for
// the protocol overview and docs/design.md for the full argument.
#pragma once

#include <atomic>
#include <chrono>
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

struct Map::Impl {
  detail::Mapping mapping;
  detail::SegmentHeader* header = nullptr;
  std::uint64_t* index = nullptr;
  std::uint64_t mask = 0;
  std::uint64_t seed = 0;
  std::uint64_t used_limit = 0;
  detail::Arena arena;

  // `open_timeout`: how long a writable open waits for a repair another
  // process is running (repair takes one pass over the map; open is a
  // blocking lifecycle call, operations never wait).
  Impl(detail::Mapping m, std::chrono::milliseconds open_timeout) : mapping(std::move(m)) {
    header = mapping.header();
    const detail::HeaderFixed& f = mapping.fixed;
    index = mapping.index();
    mask = f.index_slots - 1;
    seed = f.hash_seed;
    used_limit = f.used_limit;
    arena = detail::Arena(header, mapping.arena(), f.arena_bytes, mapping.name);
    if (!mapping.read_only) {
      reaped_at_open = detail::reap_dead(mapping.registry(), detail::kRegistryEntries);
      const auto deadline = std::chrono::steady_clock::now() + open_timeout;
      for (;;) {
        try {
          attach_for(detail::fork_epoch());
          break;
        } catch (const Error& e) {
          // attach() gave its entry back before throwing busy: nothing is held
          // while we wait, and a repairer that dies is detected by attach().
          if (e.code() != make_error_code(errc::busy) || std::chrono::steady_clock::now() >= deadline) throw;
          std::this_thread::sleep_for(std::chrono::milliseconds(1));
        }
      }
    }
  }

  ~Impl() {
    // Relaxed: process-local; the handle is being destroyed by its last user.
    const std::uint64_t a = attached.load(std::memory_order_relaxed);
    if (a != 0 && (a >> 32) == (detail::fork_epoch() & 0xffffffffu))
      detail::detach(mapping.registry(), static_cast<std::uint32_t>(a), detail::self_owner());
  }
  Impl(const Impl&) = delete;
  Impl& operator=(const Impl&) = delete;

  // Entries of dead processes this handle's open released.
  std::uint32_t reaped_at_open = 0;

  // Process-local: {fork epoch (32) | registry entry (32)} of this handle's
  // registration in this process; 0 when not attached (read-only handles).
  std::atomic<std::uint64_t> attached{0};

  // Claims a registry entry for this process. Of threads racing here (only
  // right after a fork) one keeps its entry and the others give theirs back.
  void attach_for(std::uint64_t epoch) {
    const std::uint32_t entry =
        detail::attach(header, mapping.registry(), detail::kRegistryEntries, detail::self_owner(), mapping.name);
    const std::uint64_t mine = ((epoch & 0xffffffffu) << 32) | entry;
    // Relaxed: process-local bookkeeping; the registry entry itself is published by attach().
    std::uint64_t seen = attached.load(std::memory_order_relaxed);
    while ((seen >> 32) != (epoch & 0xffffffffu)) {
      // Relaxed: as above.
      if (attached.compare_exchange_weak(seen, mine, std::memory_order_relaxed)) return;
    }
    detail::detach(mapping.registry(), entry, detail::self_owner());
  }

  void require_writable() {
    if (mapping.read_only) detail::throw_error(errc::read_only, mapping.name, "opened read-only; writes are refused");
    const std::uint64_t epoch = detail::fork_epoch();
    // Relaxed: process-local; a handle inherited through fork re-attaches once.
    if ((attached.load(std::memory_order_relaxed) >> 32) != (epoch & 0xffffffffu)) attach_for(epoch);
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

  // A record being prepared by one writer: allocated lazily, reused across CAS
  // retries, freed if never published.
  struct Pending {
    Impl* self;
    std::uint64_t ref = 0;
    std::uint32_t gen = 0;
    explicit Pending(Impl* s) : self(s) {}
    Pending(const Pending&) = delete;
    Pending& operator=(const Pending&) = delete;
    ~Pending() {
      if (!ref) return;
      try {
        self->arena.free(ref);
      } catch (const Error&) {
        // The block's header was found corrupt: leaking it is the only safe
        // choice here; the error surfaces at the next operation that meets it.
      }
    }
    // Allocates and fills the record once. False if the arena is full.
    bool make(std::string_view key, std::string_view value) {
      if (ref) return true;
      ref = self->arena.allocate(static_cast<std::uint32_t>(key.size()), static_cast<std::uint32_t>(value.size()));
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
    void published() { ref = 0; }
  };

  // Claimed slots are counted after the claiming CAS, and an insert into an
  // EMPTY slot is refused while the count is at the limit. So `full_index` is
  // never caused by another insert that then fails (no reservation to give
  // back), and concurrent claimers can overshoot the limit by at most one slot
  // each, which the 1/8 of slots above the limit absorbs.
  bool below_used_limit() const {
    // Relaxed: an occupancy bound only; nothing is published through it.
    return atom(header->used_slots.value).load(std::memory_order_relaxed) < used_limit;
  }
  void count_used_slot() {
    // Relaxed: as above.
    atom(header->used_slots.value).fetch_add(1, std::memory_order_relaxed);
  }
  void count_live(std::int64_t d) {
    // Relaxed: a statistics counter, read by size().
    atom(header->live_keys.value).fetch_add(static_cast<std::uint64_t>(d), std::memory_order_relaxed);
  }

  // Site W1: every publishing or unlinking CAS on a slot word. Release: the
  // record written before it (header, key, value) is visible to whoever
  // acquires the new word (R0). Acquire: on success we may read and free the
  // record the old word referred to (its header was released by its own W1);
  // on failure we re-examine the freshly loaded word's record.
  static bool cas_slot(std::uint64_t& slot, SlotWord& expected, SlotWord desired) {
    return atom(slot).compare_exchange_strong(expected.raw, desired.raw, std::memory_order_acq_rel,
                                              std::memory_order_acquire);
  }

  enum class Found { keep, replace, erase };

  // Claims `slot` (EMPTY, or DELETED naming this key) for the pending record.
  // Returns true on success; on failure `w` holds the word that beat us.
  bool claim(std::uint64_t& slot, SlotWord& w, Pending& pending, std::uint32_t fp) {
    const SlotWord old = w;
    if (old.is_empty() && !below_used_limit()) return false;
    if (!cas_slot(slot, w, pending.word(fp))) return false;
    SHMAP_FAULT("insert: slot claimed, not yet counted");
    pending.published();
    count_live(+1);
    if (old.is_empty()) count_used_slot();
    SHMAP_FAULT("insert: counted, old deleted record not yet freed");
    if (old.is_deleted()) arena.free(old.ref());
    return true;
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
          if (claim(slot, w, pending, p.fp)) return Status::inserted;
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
          if (claim(slot, w, pending, p.fp)) return Status::inserted;
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
        const SlotWord old = w;
        if (cas_slot(slot, w, desired)) {
          SHMAP_FAULT("update/erase: slot swapped, not yet counted");
          if (action == Found::erase) count_live(-1);
          if (desired.ref() != old.ref()) {
            pending.published();
            SHMAP_FAULT("update/erase: old record unlinked, not yet freed");
            arena.free(old.ref());
          }
          return action == Found::erase ? Status::ok : Status::assigned;
        }
      }
    }
    return insert_if_absent ? Status::full_index : Status::absent;
  }
};

}  // namespace shmap
