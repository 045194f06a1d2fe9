// The shared-memory layout of a shmap segment. Everything here lives inside the
// segment, which every process maps at a different address: no pointers, only
// offsets from the segment base (or arena base), each bounds-checked before use.
//
//   offset 0                 SegmentHeader (kHeaderBytes, page aligned)
//     immutable part         magic, layout version, ABI word, geometry, seed, checksum
//     state word             INITIALIZING -> READY
//     maintenance            owner of a running repair (0: none)
//     reserved               room for online growth
//     used slots             a hint for the used-slot limit (own cache line)
//     arena top              bump offset                (own cache line)
//     entries used           1 + highest registry entry ever claimed
//     pool[kClasses]         cells naming pooled batches of free blocks
//   registry_offset          RegistryEntry[kRegistryEntries]: one per writing
//                            thread: owner, intents, counter shares, its heap
//   index_offset             SlotWord[index_slots]      (power of two, page aligned)
//   arena_offset             arena_bytes of records     (page aligned, sparse)
//   total_bytes              rounded up to 2 MiB (hugetlbfs-friendly)
//
// Slot word (64 bits), see SlotWord below:
//   bit 63       reserved for online growth (a "frozen, being copied" mark)
//   bit 62       DELETED: the key was erased; the record still names the key
//   bits 40..61  tag: 22 low bits of (record generation >> 1)
//   bits 32..39  fingerprint: 8 high bits of the key hash
//   bits  0..31  ref: record offset from the arena base in 8-byte units
//   EMPTY = all zero. LIVE = ref != 0, DELETED clear. DELETED = ref != 0,
//   DELETED set: the slot still belongs to its key (so re-inserting the key
//   reuses it), and the record it refers to holds the key (a fresh key-only
//   record; only if the arena had no block for it, the old record).
//
// Record (8-byte aligned, in an arena block of its size class):
//   word 0   RecordHeader: gen (32) | key_len (12) | value_len (20)
//   key      key_len bytes, zero padded to 8
//   value    value_len bytes, zero padded to 8
// gen is even while the block holds a record, odd while it is free; every
// allocation and every free increments it, so it changes before any byte of the
// block is rewritten (the seqlock readers validate against). A free block's
// header is a FreeHeader (odd generation, size class, holder) and word 1 links
// it into a free list.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>

namespace shmap::detail {

inline constexpr std::uint64_t kMagic = 0x0150414d48530a00ull;  // "\0\nSHMAP\1" little endian
inline constexpr std::uint32_t kLayoutVersion = 2;
inline constexpr std::size_t kHeaderBytes = 16384;
inline constexpr std::size_t kPageBytes = 4096;
inline constexpr std::size_t kSegmentAlign = std::size_t{2} << 20;
inline constexpr std::size_t kCacheLine = 64;
inline constexpr std::uint64_t kArenaFirstOffset = 64;  // offset 0 means "no record"
inline constexpr std::uint64_t kMaxArenaBytes = std::uint64_t{1} << 35;  // 32-bit ref x 8 bytes

enum class SegmentState : std::uint32_t { initializing = 0x494e4954u, ready = 0x52454459u };

// ---------------------------------------------------------------------------
// Slot word
// ---------------------------------------------------------------------------
struct SlotWord {
  static constexpr int kRefBits = 32;
  static constexpr int kFpBits = 8;
  static constexpr int kTagBits = 22;
  static constexpr std::uint64_t kRefMask = (std::uint64_t{1} << kRefBits) - 1;
  static constexpr std::uint64_t kFpMask = (std::uint64_t{1} << kFpBits) - 1;
  static constexpr std::uint64_t kTagMask = (std::uint64_t{1} << kTagBits) - 1;
  static constexpr int kFpShift = kRefBits;
  static constexpr int kTagShift = kRefBits + kFpBits;
  static constexpr std::uint64_t kDeletedBit = std::uint64_t{1} << 62;
  static constexpr std::uint64_t kFrozenBit = std::uint64_t{1} << 63;
  static constexpr std::uint64_t kEmpty = 0;
  static_assert(kTagShift + kTagBits == 62, "slot word fields fill bits 0..61; 62 is DELETED, 63 reserved");

  std::uint64_t raw = kEmpty;

  static constexpr SlotWord live(std::uint64_t ref, std::uint32_t fp, std::uint32_t gen) {
    return SlotWord{(ref & kRefMask) | (std::uint64_t(fp & kFpMask) << kFpShift) |
                    (tag_of_gen(gen) << kTagShift)};
  }
  static constexpr std::uint64_t tag_of_gen(std::uint32_t gen) { return (gen >> 1) & kTagMask; }

  constexpr bool is_empty() const { return raw == kEmpty; }
  constexpr bool has_record() const { return ref() != 0; }
  constexpr bool is_live() const { return has_record() && (raw & kDeletedBit) == 0; }
  constexpr bool is_deleted() const { return has_record() && (raw & kDeletedBit) != 0; }
  // The same record, marked deleted (erase's transition LIVE -> DELETED).
  constexpr SlotWord deleted() const { return SlotWord{raw | kDeletedBit}; }
  constexpr std::uint64_t ref() const { return raw & kRefMask; }
  constexpr std::uint32_t fp() const { return std::uint32_t((raw >> kFpShift) & kFpMask); }
  constexpr std::uint64_t tag() const { return (raw >> kTagShift) & kTagMask; }
  constexpr bool matches_gen(std::uint32_t gen) const { return tag() == tag_of_gen(gen); }
  constexpr bool operator==(const SlotWord&) const = default;
};

// ---------------------------------------------------------------------------
// Record header (word 0 of every arena block)
// ---------------------------------------------------------------------------
struct RecordHeader {
  static constexpr int kKeyLenBits = 12;
  static constexpr int kValueLenBits = 20;
  static constexpr std::uint64_t kKeyLenMask = (std::uint64_t{1} << kKeyLenBits) - 1;
  static constexpr std::uint64_t kValueLenMask = (std::uint64_t{1} << kValueLenBits) - 1;

  std::uint64_t raw = 0;

  static constexpr RecordHeader make(std::uint32_t gen, std::uint32_t klen, std::uint32_t vlen) {
    return RecordHeader{(std::uint64_t(gen) << 32) | (std::uint64_t(klen & kKeyLenMask) << kValueLenBits) |
                        (vlen & kValueLenMask)};
  }
  constexpr std::uint32_t gen() const { return std::uint32_t(raw >> 32); }
  constexpr std::uint32_t key_len() const { return std::uint32_t((raw >> kValueLenBits) & kKeyLenMask); }
  constexpr std::uint32_t value_len() const { return std::uint32_t(raw & kValueLenMask); }
  constexpr bool is_allocated() const { return (gen() & 1u) == 0; }
  // The generation an allocation gives a free block of generation `free_gen`
  // (odd): the next even one, skipping 0 on wrap, so that no block header is
  // ever 0 in its generation half (a CarveClaim's mark).
  static constexpr std::uint32_t allocated_gen(std::uint32_t free_gen) {
    return free_gen + 1 == 0 ? 2 : free_gen + 1;
  }
  // Total record bytes (header + padded key + padded value).
  constexpr std::uint64_t record_bytes() const { return record_bytes_for(key_len(), value_len()); }
  static constexpr std::uint64_t pad8(std::uint64_t n) { return (n + 7) & ~std::uint64_t{7}; }
  static constexpr std::uint64_t record_bytes_for(std::uint64_t klen, std::uint64_t vlen) {
    return 8 + pad8(klen) + pad8(vlen);
  }
};

// ---------------------------------------------------------------------------
// Size classes: 16..64 bytes in steps of 8, then four classes per doubling.
// ---------------------------------------------------------------------------
inline constexpr std::uint32_t kSmallClasses = 7;  // 16, 24, ..., 64

constexpr std::uint32_t size_class_of(std::uint64_t bytes) {
  if (bytes <= 16) return 0;
  if (bytes <= 64) return std::uint32_t((bytes + 7) / 8 - 2);
  const std::uint64_t s = bytes - 1;
  const int lg = 63 - __builtin_clzll(s);  // >= 6
  const std::uint32_t sub = std::uint32_t((s >> (lg - 2)) & 3);
  return kSmallClasses + std::uint32_t(lg - 6) * 4 + sub;
}

constexpr std::uint64_t size_class_bytes(std::uint32_t cls) {
  if (cls < kSmallClasses) return 16 + 8 * std::uint64_t(cls);
  const std::uint32_t k = cls - kSmallClasses;
  const std::uint32_t lg = 6 + k / 4;
  const std::uint32_t sub = k % 4;
  return std::uint64_t(5 + sub) << (lg - 2);
}

inline constexpr std::uint64_t kMaxRecordBytes =
    RecordHeader::record_bytes_for(RecordHeader::kKeyLenMask, RecordHeader::kValueLenMask);
inline constexpr std::uint32_t kClasses = size_class_of(kMaxRecordBytes) + 1;

static_assert(RecordHeader::allocated_gen(0xffffffffu) == 2 && RecordHeader::allocated_gen(1) == 2 &&
                  RecordHeader::allocated_gen(7) == 8,
              "allocation makes a free (odd) generation even, never 0");
static_assert(size_class_bytes(size_class_of(24)) == 24, "8-byte key + 8-byte value records must not be padded");
static_assert(size_class_bytes(size_class_of(65)) == 80 && size_class_bytes(size_class_of(129)) == 160,
              "size classes grow by a quarter per step past 64 bytes");
static_assert(size_class_bytes(kClasses - 1) >= kMaxRecordBytes, "the largest record must fit the largest class");

// ---------------------------------------------------------------------------
// Free blocks. A free block's header keeps an odd generation and, in its low
// 32 bits, its size class and a holder (0, or registry entry + 1 of the thread
// that took it from the pool): FreeHeader below. Word 1 links it into a list.
// ---------------------------------------------------------------------------
struct FreeHeader {
  static constexpr std::uint64_t make(std::uint32_t gen, std::uint32_t cls, std::uint32_t holder) {
    return (std::uint64_t(gen) << 32) | (std::uint64_t(holder & 0xffffu) << 8) | (cls & 0xffu);
  }
  static constexpr std::uint32_t cls_of(std::uint64_t raw) { return std::uint32_t(raw & 0xffu); }
};

// The size class of the block whose header is `raw` (allocated or free).
constexpr std::uint32_t block_class(std::uint64_t raw) {
  const RecordHeader h{raw};
  return h.is_allocated() ? size_class_of(h.record_bytes()) : FreeHeader::cls_of(raw);
}

// A carve claim: the first word of a chunk past the bump offset, CASed from 0
// by the carving thread (gen 0, which no block header has): holder (entry + 1,
// 12 bits) and the chunk's size in 8-byte units (20 bits).
struct CarveClaim {
  static constexpr std::uint64_t make(std::uint32_t holder, std::uint64_t bytes) {
    return (std::uint64_t(holder & 0xfffu) << 20) | ((bytes / 8) & 0xfffffu);
  }
  static constexpr bool is_claim(std::uint64_t raw) { return raw != 0 && (raw >> 32) == 0; }
  static constexpr std::uint64_t bytes_of(std::uint64_t raw) { return (raw & 0xfffffu) * 8; }
};

// The pool: per size class, kPoolCells cells, each 0 or {ref (32) | gen (32)}
// of the first block of a batch (a chain of at most kBatchBlocks free blocks)
// that a thread handed over. A cell is a hint: the batch belongs to whoever
// CASes the first block's header from FreeHeader(gen, cls, 0) to its own holder.
inline constexpr std::uint32_t kPoolCells = 16;
inline constexpr std::uint32_t kBatchBlocks = 32;
struct alignas(kCacheLine) PoolClass {
  std::uint64_t cells[kPoolCells];
};
constexpr std::uint64_t pool_cell(std::uint64_t ref, std::uint32_t gen) { return (std::uint64_t(gen) << 32) | ref; }

// ---------------------------------------------------------------------------
// Registry: one entry per writing thread of an attached process, which is
// also that thread's heap (local free lists) and its intent log.
// ---------------------------------------------------------------------------
inline constexpr std::uint32_t kRegistryEntries = 1024;

// The owner word: 0 = free; else bit 63 set, bit 62 set while a survivor
// recovers or borrows the entry, bits 32..61 the low 30 bits of the process
// start time (clock ticks since boot), bits 0..31 the pid. One CAS claims an
// entry with the whole identity, so a reused pid is not taken for a dead owner.
struct Owner {
  std::uint64_t raw = 0;
  static constexpr std::uint64_t kValid = std::uint64_t{1} << 63;
  static constexpr std::uint64_t kBorrowed = std::uint64_t{1} << 62;
  static constexpr std::uint64_t kStartMask = 0x3fffffffull;
  static constexpr Owner make(std::uint32_t pid, std::uint64_t start_time) {
    return Owner{kValid | ((start_time & kStartMask) << 32) | pid};
  }
  constexpr bool is_free() const { return raw == 0; }
  constexpr bool borrowed() const { return (raw & kBorrowed) != 0; }
  constexpr Owner as_borrower() const { return Owner{raw | kBorrowed}; }
  constexpr std::uint32_t pid() const { return std::uint32_t(raw); }
  constexpr std::uint32_t start_low() const { return std::uint32_t((raw >> 32) & kStartMask); }
};

// Exchange intents (RegistryEntry::x_kind).
enum class Exchange : std::uint64_t { none = 0, take = 1, donate = 2, carve = 3, carved = 4 };

struct alignas(kCacheLine) RegistryEntry {
  // Line 0: identity.
  std::uint64_t owner;             // Owner, atomic
  std::uint64_t attached_unix_ns;  // written by the owner after claiming
  std::uint64_t tid;               // the writing thread's id (informational)
  std::uint64_t reserved0[5];
  // Line 1: the slot intent and the block intents (docs/design.md, "Recovery").
  std::uint64_t op_slot;        // index position + 1 of the slot CAS in flight; 0 none
  std::uint64_t op_expected;    // its expected slot word
  std::uint64_t op_desired;     // its new slot word
  std::uint64_t op_live_after;  // `live` once it took effect
  std::uint64_t op_used_after;  // `used` once it took effect
  std::uint64_t pending;        // {ref | gen << 32} of the block held unpublished (gen as popped); 0 none
  std::uint64_t freeing;        // {ref | gen << 32} of the block being freed (gen while allocated); 0 none
  std::uint64_t reserved1;
  // Line 2: the exchange intent and this entry's share of the counters.
  std::uint64_t x_kind;  // Exchange
  std::uint64_t x_ref;   // take/donate: first block's ref; carve: chunk offset / 8
  std::uint64_t x_gen;   // take/donate: the batch's pool generation; carve: chunk bytes
  std::uint64_t x_cls;   // size class | blocks << 8
  std::uint64_t x_aux;   // carve: `carved` of the class once it took effect
  std::uint64_t live;    // net live keys added by this entry's writes (int64)
  std::uint64_t used;    // slots claimed by this entry's writes
  std::uint64_t reserved2;
  // Lines 3..14: the heap: per size class a free list only this entry's
  // thread touches, its length, and the blocks this entry carved.
  std::uint32_t head[kClasses];
  std::uint32_t count[kClasses];
  std::uint32_t carved[kClasses];
  std::uint64_t reserved3[8];
};
static_assert(sizeof(RegistryEntry) == 1024, "a registry entry is one KiB");

struct alignas(kCacheLine) CacheLineCounter {
  std::uint64_t value;
};

// Immutable after creation; covered by `checksum`.
struct HeaderFixed {
  std::uint64_t magic;
  std::uint32_t layout_version;
  std::uint32_t header_bytes;
  std::uint64_t abi;
  std::uint64_t total_bytes;
  std::uint64_t capacity;
  std::uint64_t registry_offset;
  std::uint64_t registry_entries;
  std::uint64_t index_offset;
  std::uint64_t index_slots;
  std::uint64_t used_limit;
  std::uint64_t arena_offset;
  std::uint64_t arena_bytes;
  std::uint64_t hash_seed;
  std::int64_t creator_pid;
  std::uint64_t creator_start_time;  // /proc/<pid>/stat field 22, to detect pid reuse
  std::uint64_t created_unix_ns;
  std::uint32_t mode;
  std::uint32_t flags;
};

struct SegmentHeader {
  HeaderFixed fixed;
  std::uint64_t checksum;  // hash of `fixed`
  std::uint32_t state;     // SegmentState, atomic
  std::uint32_t pad0;
  // Reserved for the process registry and for online growth (index generation,
  // migration cursor). Zero in layout version 2.
  // Owner word (Owner) of a process running repair(), 0 otherwise. While it is
  // set by a live process, attaching is refused (errc::busy).
  std::uint64_t maintenance;
  std::uint64_t reserved[63];
  CacheLineCounter used_slots;  // claimed slots, a hint for the used-slot limit (exact: sum of entries' `used`)
  CacheLineCounter arena_top;   // next unused arena offset (bytes from arena base)
  CacheLineCounter entries_used;  // 1 + the highest registry entry ever claimed
  PoolClass pool[kClasses];
};

static_assert(sizeof(SegmentHeader) <= kHeaderBytes, "the header must fit its reserved pages");
static_assert(kHeaderBytes % kPageBytes == 0, "the index must start page aligned");

// One word that changes whenever the binary layout of a segment changes: a
// segment built by a process with another word size, endianness or struct
// layout is refused on open.
constexpr std::uint64_t abi_word() {
  std::uint64_t w = 0;
  w = w * 131 + sizeof(void*);
  w = w * 131 + sizeof(std::uint64_t);
  w = w * 131 + alignof(std::uint64_t);
  w = w * 131 + sizeof(HeaderFixed);
  w = w * 131 + sizeof(SegmentHeader);
  w = w * 131 + sizeof(PoolClass);
  w = w * 131 + sizeof(RegistryEntry);
  w = w * 131 + kClasses;
  w = w * 131 + SlotWord::kRefBits * 7 + SlotWord::kFpBits * 3 + SlotWord::kTagBits;
  w = w * 131 + RecordHeader::kKeyLenBits * 5 + RecordHeader::kValueLenBits;
  w = w * 131 + kCacheLine;
#if __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
  w = w * 131 + 1;
#else
  w = w * 131 + 2;
#endif
  return w;
}

// Atomic access to a word of shared memory (the segment is plain bytes, so we
// use atomic_ref; every shared word is 8-byte aligned).
inline std::atomic_ref<std::uint64_t> atom(std::uint64_t& w) { return std::atomic_ref<std::uint64_t>(w); }
inline std::atomic_ref<std::uint32_t> atom32(std::uint32_t& w) { return std::atomic_ref<std::uint32_t>(w); }

static_assert(std::atomic_ref<std::uint64_t>::is_always_lock_free,
              "shared words must be lock-free atomics: a lock would be per process");

}  // namespace shmap::detail
