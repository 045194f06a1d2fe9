// The record codec and the one optimistic reader.
//
// A record is immutable while a slot names its incarnation (the tag of its
// generation): a writer only ever fills a private block and publishes it with
// a slot CAS, and a block's generation changes (arena.cpp, A1/F1) before any
// of its bytes are rewritten. A reader therefore copies what it needs out of
// a record and then checks, with an acquire fence, that the generation did
// not move: a seqlock whose only writer is the allocator. Every word of a
// record is read and written through relaxed atomics, so there is no data
// race in the C++ model; the fence pairs make the copies valid.
//
//   read_record(arena, w, key, sink)
//     R1  h1 = header.load(acquire); stale if odd or its tag is not w's
//         compare the key words (relaxed); on a match hand the value words
//         to the sink (relaxed loads)
//     R3  atomic_thread_fence(acquire)
//     R3b h2 = header.load(acquire); stale if h2 != h1
#pragma once

#include <atomic>
#include <cstdint>
#include <cstring>
#include <string>
#include <string_view>

#include "arena.hpp"
#include "hash.hpp"
#include "layout.hpp"

namespace shmap::detail {

[[gnu::always_inline]] inline std::uint64_t load_word(const std::uint64_t* w) {
  // Relaxed: every caller validates with a generation re-read (R3/R3b) or
  // owns the block.
  return atom(const_cast<std::uint64_t&>(*w)).load(std::memory_order_relaxed);
}

// Copies `len` bytes of record words into dst (relaxed loads: validated by the caller).
[[gnu::always_inline]] inline void copy_words(char* dst, const std::uint64_t* v, std::size_t len) {
  const std::size_t full = len / 8;
  for (std::size_t i = 0; i < full; ++i) {
    const std::uint64_t w = load_word(v + i);
    std::memcpy(dst + 8 * i, &w, 8);
  }
  if (len % 8 != 0) {
    const std::uint64_t w = load_word(v + full);
    std::memcpy(dst + 8 * full, &w, len % 8);
  }
}

// True if the `len` bytes of record words equal `bytes` (relaxed loads:
// validated by the caller). Tail words are zero padded, so comparing whole
// words is exact.
[[gnu::always_inline]] inline bool equal_words(const std::uint64_t* v, std::size_t len, std::string_view bytes) {
  if (len != bytes.size()) return false;
  const std::size_t full = len / 8;
  for (std::size_t i = 0; i < full; ++i)
    if (load_word(v + i) != load_le64(bytes.data() + 8 * i)) return false;
  if (len % 8 != 0) return load_word(v + full) == load_tail(bytes.data() + 8 * full, len % 8);
  return true;
}

// Writes `bytes` into the words of a private (unpublished) block, zero padding
// the tail word.
inline void write_words(std::uint64_t* dst, std::string_view bytes) {
  const std::size_t full = bytes.size() / 8;
  for (std::size_t i = 0; i < full; ++i) {
    // Relaxed: the block is unpublished; the publishing CAS (W1) releases it.
    atom(dst[i]).store(load_le64(bytes.data() + 8 * i), std::memory_order_relaxed);
  }
  if (bytes.size() % 8 != 0) {
    // Relaxed: as above. The tail word is zero padded, which key comparison relies on.
    atom(dst[full]).store(load_tail(bytes.data() + 8 * full, bytes.size() % 8), std::memory_order_relaxed);
  }
}

// The value words of a record with a key of `klen` bytes.
[[gnu::always_inline]] inline const std::uint64_t* value_words(const std::uint64_t* r, std::uint32_t klen) {
  return r + 1 + RecordHeader::pad8(klen) / 8;
}

enum class Seen { match, other_key, stale };

// Reads the record that slot word `w` refers to, compares its key with `key`
// and, on a match, hands the value to `sink(const uint64_t* value_words,
// uint32_t value_len)`. The sink must only read through relaxed atomics (it
// may see a torn value; the result then says `stale` and the caller retries).
// `validated` receives the header the copy was validated against. Throws
// Error(corrupt) if the slot word or the record points outside the arena.
template <class Sink>
[[gnu::always_inline]] inline Seen read_record(const Arena& arena, SlotWord w, std::string_view key, Sink&& sink,
                                               std::uint64_t* validated = nullptr) {
  if (!arena.record_in_bounds(w.ref(), 8)) arena.corrupt("slot word refers outside the arena", w.ref());
  std::uint64_t* r = arena.block(w.ref());
  // Site R1, acquire: the first read of the seqlock; keeps the key/value
  // loads below after it. (The record's contents were made visible by the
  // acquire load of `w`, which pairs with the publishing CAS, site W1.)
  const RecordHeader h1{atom(r[0]).load(std::memory_order_acquire)};
  if (!h1.is_allocated() || !w.matches_gen(h1.gen())) return Seen::stale;
  if (h1.key_len() != key.size()) return Seen::other_key;  // h1 is one atomic read: no validation needed
  if (!arena.record_in_bounds(w.ref(), h1.record_bytes())) arena.corrupt("record overruns the arena", w.ref());
  const bool equal = equal_words(r + 1, key.size(), key);
  if (equal) sink(value_words(r, h1.key_len()), h1.value_len());
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

// Copies the key of the record `w` refers to into `key` (validated as in
// read_record). False if the record is stale (recycled since `w` was read).
inline bool read_key(const Arena& arena, SlotWord w, std::string& key) {
  if (!arena.in_bounds(w.ref(), 8)) arena.corrupt("slot word refers outside the arena", w.ref());
  std::uint64_t* r = arena.block(w.ref());
  // Site R1 (see read_record).
  const RecordHeader h1{atom(r[0]).load(std::memory_order_acquire)};
  if (!h1.is_allocated() || !w.matches_gen(h1.gen())) return false;
  if (!arena.in_bounds(w.ref(), h1.record_bytes())) arena.corrupt("record overruns the arena", w.ref());
  key.resize(h1.key_len());
  copy_words(key.data(), r + 1, h1.key_len());
  // Site R3 (see read_record).
  std::atomic_thread_fence(std::memory_order_acquire);
  // Site R3b (see read_record).
  return atom(r[0]).load(std::memory_order_acquire) == h1.raw;
}

// Copies key and value of the record `w` refers to (validated as in read_record).
inline bool read_entry(const Arena& arena, SlotWord w, std::string& key, std::string& value) {
  if (!arena.in_bounds(w.ref(), 8)) arena.corrupt("slot word refers outside the arena", w.ref());
  std::uint64_t* r = arena.block(w.ref());
  // Site R1 (see read_record).
  const RecordHeader h1{atom(r[0]).load(std::memory_order_acquire)};
  if (!h1.is_allocated() || !w.matches_gen(h1.gen())) return false;
  if (!arena.in_bounds(w.ref(), h1.record_bytes())) arena.corrupt("record overruns the arena", w.ref());
  key.resize(h1.key_len());
  copy_words(key.data(), r + 1, h1.key_len());
  value.resize(h1.value_len());
  copy_words(value.data(), value_words(r, h1.key_len()), h1.value_len());
  // Site R3 (see read_record).
  std::atomic_thread_fence(std::memory_order_acquire);
  // Site R3b (see read_record).
  return atom(r[0]).load(std::memory_order_acquire) == h1.raw;
}

}  // namespace shmap::detail
