// The shared-memory layout of a shmap segment. Everything here lives inside the
// segment, which every process maps at a different address: no pointers, only
// offsets from the segment base (or arena base), each bounds-checked before use.
//
//   offset 0                 SegmentHeader (kHeaderBytes, page aligned)
//     immutable part         magic, layout version, ABI word, geometry, seed, checksum
//     state word             INITIALIZING -> READY
//     maintenance            owner of a running repair (0: none)
//     tables                 the index directory: current table, migration (own line)
//     arena bytes            the arena's current size (it grows)
//     runs[kRuns]            the arena runs that hold index tables
//     arena top              bump offset                (own cache line)
//     entries used           1 + highest registry entry ever claimed
//     pool[kClasses]         cells naming pooled batches of free blocks
//   registry_offset          RegistryEntry[kRegistryEntries]: one per writing
//                            thread: owner, intents, counter shares, its heap
//   arena_offset             the arena: records, and the runs that hold the
//                            index tables (sparse; grows at the end of the file)
//   file size                grows in kSegmentAlign steps up to max_bytes
//
// Index table (in a run, see RunGeom): line 0 the used-slot hint, line 1 the
// migration cursor, line 2 the done-chunk hint and the dropped-slot count,
// then 2^log2 slot words, then one word per migration chunk (DONE or 0).
//
// Slot word (64 bits), see SlotWord below:
//   bit 63       FROZEN: the slot is being (or was) moved to the next table
//   bit 62       DELETED: the key was erased; the record still names the key
//   bits 40..61  tag: 22 low bits of (record generation >> 1)
//   bits 32..39  fingerprint: 8 low bits of the key hash
//   bits  0..31  ref: record offset from the arena base in 8-byte units
//   EMPTY = all zero. LIVE = ref != 0, DELETED clear. DELETED = ref != 0,
//   DELETED set: the slot still belongs to its key (so re-inserting the key
//   reuses it), and the record it refers to holds the key (a fresh key-only
//   record; only if the arena had no block for it, the old record).
//   Frozen words: FROZEN | a LIVE word (the record is moved with its key),
//   FROZEN alone (an EMPTY slot closed to inserts), and FROZEN | DELETED with
//   ref 0 and the freezing entry in the tag bits (an erased key dropped by
//   the migration; the freezer frees its key-only record).
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
inline constexpr std::uint32_t kLayoutVersion = 4;
inline constexpr std::size_t kHeaderBytes = 16384;
inline constexpr std::size_t kPageBytes = 4096;
inline constexpr std::size_t kSegmentAlign = std::size_t{2} << 20;
// The arena's file blocks are allocated (fallocate) this far ahead of what
// carving needs, so that a reservation is one system call per this many
// bytes carved; a sparse arena commits at most this much beyond its use.
inline constexpr std::uint64_t kReserveAheadBytes = std::uint64_t{64} << 10;
inline constexpr std::size_t kCacheLine = 64;
inline constexpr std::uint64_t kArenaFirstOffset = 64;                   // offset 0 means "no record"
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
  static_assert(kTagShift + kTagBits == 62, "slot word fields fill bits 0..61; 62 is DELETED, 63 FROZEN");

  std::uint64_t raw = kEmpty;

  static constexpr SlotWord live(std::uint64_t ref, std::uint32_t fp, std::uint32_t gen) {
    return SlotWord{(ref & kRefMask) | (std::uint64_t(fp & kFpMask) << kFpShift) | (tag_of_gen(gen) << kTagShift)};
  }
  static constexpr std::uint64_t tag_of_gen(std::uint32_t gen) { return (gen >> 1) & kTagMask; }
  // An EMPTY slot closed to inserts by a migration.
  static constexpr SlotWord frozen_empty() { return SlotWord{kFrozenBit}; }
  // An erased key dropped by a migration: no record; `holder` (registry entry
  // + 1) is the one freezer whose CAS installed it, so recovery can tell.
  static constexpr SlotWord frozen_dropped(std::uint32_t holder) {
    return SlotWord{kFrozenBit | kDeletedBit | ((std::uint64_t(holder) & kTagMask) << kTagShift)};
  }

  constexpr bool is_empty() const { return raw == kEmpty; }
  constexpr bool is_frozen() const { return (raw & kFrozenBit) != 0; }
  constexpr bool has_record() const { return ref() != 0; }
  constexpr bool is_live() const { return has_record() && (raw & kDeletedBit) == 0; }
  constexpr bool is_deleted() const { return has_record() && (raw & kDeletedBit) != 0; }
  // Frozen and EMPTY (closed) or frozen and dropped: no key, nothing to move.
  constexpr bool is_frozen_keyless() const { return is_frozen() && !has_record(); }
  constexpr std::uint32_t dropped_holder() const { return std::uint32_t((raw >> kTagShift) & kTagMask); }
  // The same record, marked deleted (erase's transition LIVE -> DELETED).
  constexpr SlotWord deleted() const { return SlotWord{raw | kDeletedBit}; }
  constexpr SlotWord frozen() const { return SlotWord{raw | kFrozenBit}; }
  constexpr SlotWord unfrozen() const { return SlotWord{raw & ~kFrozenBit}; }
  constexpr std::uint64_t ref() const { return raw & kRefMask; }
  constexpr std::uint32_t fp() const { return std::uint32_t((raw >> kFpShift) & kFpMask); }
  constexpr std::uint64_t tag() const { return (raw >> kTagShift) & kTagMask; }
  constexpr bool matches_gen(std::uint32_t gen) const { return tag() == tag_of_gen(gen); }
  constexpr bool operator==(const SlotWord&) const = default;
};

static_assert(SlotWord::frozen_dropped(1024).dropped_holder() == 1024 && !SlotWord::frozen_dropped(7).has_record(),
              "a dropped slot names its freezer and no record");
static_assert(SlotWord::frozen_empty().is_frozen_keyless() && !SlotWord::frozen_empty().is_empty(),
              "a closed EMPTY slot is not EMPTY: inserts and readers must see the difference");

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
  // ever 0 in its generation half (a claim's mark).
  static constexpr std::uint32_t allocated_gen(std::uint32_t free_gen) { return free_gen + 1 == 0 ? 2 : free_gen + 1; }
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

// ---------------------------------------------------------------------------
// Claims: the first word of a range past the bump offset, CASed from 0 by the
// thread that takes the range (generation half 0, which no block header has).
//   carve claim  bit 31 clear: holder (entry + 1, 12 bits at 20..31; entries
//                are below 2^11, so bit 31 stays clear) and the chunk's size
//                in 8-byte units (20 bits).
//   run claim    bit 31 set: holder (entry index, 10 bits at 21..30) and the
//                run's size in pages (21 bits); the run starts at the first
//                page boundary past the claim word, which stays in the
//                padding before it (a claim word is never reset to 0: a
//                stale claimer's CAS from 0 would take the range again).
// ---------------------------------------------------------------------------
struct CarveClaim {
  static constexpr std::uint64_t make(std::uint32_t holder, std::uint64_t bytes) {
    return (std::uint64_t(holder & 0x7ffu) << 20) | ((bytes / 8) & 0xfffffu);
  }
  static constexpr bool is_claim(std::uint64_t raw) { return raw != 0 && (raw >> 32) == 0; }
  static constexpr bool is_run(std::uint64_t raw) { return (raw & 0x80000000u) != 0; }
  // The start of the run a run claim at arena offset `at` makes.
  static constexpr std::uint64_t run_start(std::uint64_t at) {
    return (at + 8 + kPageBytes - 1) / kPageBytes * kPageBytes;
  }
  // The bytes a claim at arena offset `at` covers.
  static constexpr std::uint64_t bytes_of(std::uint64_t raw, std::uint64_t at) {
    if (!is_run(raw)) return (raw & 0xfffffu) * 8;
    return run_start(at) - at + (raw & 0x1fffffu) * kPageBytes;
  }
};

struct RunClaim {
  static constexpr std::uint64_t kMaxPages = (std::uint64_t{1} << 21) - 1;
  static constexpr std::uint64_t make(std::uint32_t entry, std::uint64_t pages) {
    return 0x80000000u | (std::uint64_t(entry & 0x3ffu) << 21) | (pages & kMaxPages);
  }
};
static_assert(CarveClaim::is_run(RunClaim::make(1023, 5)) && !CarveClaim::is_run(CarveClaim::make(1024, 2048)),
              "carve and run claims are told apart by bit 31");
static_assert(CarveClaim::run_start(4096) == 8192 && CarveClaim::run_start(4088) == 4096 &&
                  CarveClaim::run_start(4092) == 8192,
              "a run starts past its claim word");

// The pool: per size class, kPoolCells cells, each 0 or {ref (32) | gen (32)}
// of the first block of a batch (a chain of at most kBatchBlocks free blocks)
// that a thread handed over. A cell is a hint: the batch belongs to whoever
// CASes the first block's header from FreeHeader(gen, cls, 0) to its own holder.
inline constexpr std::uint32_t kPoolCells = 16;
inline constexpr std::uint32_t kBatchBlocks = 32;
struct alignas(kCacheLine) PoolClass {
  std::uint64_t cells[kPoolCells];
};
constexpr std::uint64_t pool_cell(std::uint64_t ref, std::uint32_t gen) {
  return (std::uint64_t(gen) << 32) | ref;
}

// ---------------------------------------------------------------------------
// The index directory. Index tables live in runs: page-aligned ranges of the
// arena, carved once and reused for later tables (never for records). The
// header lists them in runs[]; each has a geometry word (fixed once set) and a
// state word.
// ---------------------------------------------------------------------------
inline constexpr std::uint32_t kRuns = 64;
inline constexpr std::uint32_t kMinTableLog2 = 4;   // 16 slots
inline constexpr std::uint32_t kMaxTableLog2 = 29;  // a table and its chunk words fit the largest run
inline constexpr std::uint64_t kTableHeaderBytes = 3 * kCacheLine;

// Bytes a table of 2^log2 slots needs in its run, with chunks of 2^chunk_log2 slots.
constexpr std::uint64_t table_chunks(std::uint32_t log2, std::uint32_t chunk_log2) {
  return log2 > chunk_log2 ? std::uint64_t{1} << (log2 - chunk_log2) : 1;
}
constexpr std::uint64_t table_bytes(std::uint32_t log2, std::uint32_t chunk_log2) {
  return kTableHeaderBytes + 8 * (std::uint64_t{1} << log2) + 8 * table_chunks(log2, chunk_log2);
}
constexpr std::uint64_t table_pages(std::uint32_t log2, std::uint32_t chunk_log2) {
  return (table_bytes(log2, chunk_log2) + kPageBytes - 1) / kPageBytes;
}
static_assert(table_pages(kMaxTableLog2, 4) <= RunClaim::kMaxPages, "the largest table fits a run claim");

// A run's geometry: 0 (unused run slot); or bit 63 set with an entry index in
// bits 0..9 (a thread is carving it); or start page (23 bits: arena offset /
// 4096), pages (21 bits) and the padding before the start that its claim
// covered, in 8-byte units (10 bits: 8 to 4096 bytes).
struct RunGeom {
  std::uint64_t raw = 0;
  static constexpr std::uint64_t kReserving = std::uint64_t{1} << 63;
  static constexpr RunGeom reserving(std::uint32_t entry) { return RunGeom{kReserving | (entry & 0x3ffu)}; }
  static constexpr RunGeom make(std::uint64_t start_page, std::uint64_t pages, std::uint64_t pad8) {
    return RunGeom{(start_page & 0x7fffffu) | ((pages & 0x1fffffu) << 23) | ((pad8 & 0x3ffu) << 44)};
  }
  constexpr bool is_unused() const { return raw == 0; }
  constexpr bool is_reserving() const { return (raw & kReserving) != 0; }
  constexpr bool is_set() const { return raw != 0 && !is_reserving(); }
  constexpr std::uint32_t reserver() const { return std::uint32_t(raw & 0x3ffu); }
  constexpr std::uint64_t start() const { return (raw & 0x7fffffu) * kPageBytes; }  // arena offset
  constexpr std::uint64_t pages() const { return (raw >> 23) & 0x1fffffu; }
  constexpr std::uint64_t bytes() const { return pages() * kPageBytes; }
  constexpr std::uint64_t claimed_from() const { return start() - ((raw >> 44) & 0x3ffu) * 8; }
};

// A run's state: FREE (zero: its bytes are zero and it can take a new table),
// TABLE(gen, log2) (it holds index table `gen`), RETIRING(gen, log2, holder)
// (table `gen` is retired: no thread writes it any more; the registry entry
// `holder` - 1 is returning its memory, then makes it FREE; only the holder,
// or a survivor recovering the holder's entry, may: zeroing a run that
// another retirer already freed and a starter reused would wipe a live table).
struct RunState {
  enum Kind : std::uint64_t { free = 0, table = 1, retiring = 2 };
  std::uint64_t raw = 0;
  static constexpr std::uint64_t kGenMask = (std::uint64_t{1} << 34) - 1;
  static constexpr RunState make(Kind k, std::uint64_t gen, std::uint32_t log2, std::uint32_t holder = 0) {
    return RunState{(std::uint64_t(k) << 62) | (gen & kGenMask) | (std::uint64_t(log2 & 63u) << 34) |
                    (std::uint64_t(holder & 0x7ffu) << 40)};
  }
  constexpr Kind kind() const { return Kind(raw >> 62); }
  constexpr std::uint64_t gen() const { return raw & kGenMask; }
  constexpr std::uint32_t log2() const { return std::uint32_t((raw >> 34) & 63u); }
  constexpr std::uint32_t holder() const { return std::uint32_t((raw >> 40) & 0x7ffu); }
  constexpr bool operator==(const RunState&) const = default;
};

// The tables word: the one word that says which table is current and whether
// a migration to the next one runs. gen (34 bits) counts migrations; cur and
// next name runs (6 bits each) and their tables' sizes (log2, 6 bits each).
// Bit 63 marks a valid word (an all-zero header is not a directory).
struct TablesWord {
  std::uint64_t raw = 0;
  static constexpr std::uint64_t kGenMask = (std::uint64_t{1} << 34) - 1;
  static constexpr std::uint64_t kMigrating = std::uint64_t{1} << 34;
  static constexpr std::uint64_t kValid = std::uint64_t{1} << 63;
  static constexpr TablesWord stable(std::uint64_t gen, std::uint32_t run, std::uint32_t log2) {
    return TablesWord{kValid | (gen & kGenMask) | (std::uint64_t(run & 63u) << 35) | (std::uint64_t(log2 & 63u) << 41)};
  }
  constexpr TablesWord migrating_to(std::uint32_t run, std::uint32_t log2) const {
    return TablesWord{(raw & ~(std::uint64_t{0xfff} << 47)) | kMigrating | (std::uint64_t(run & 63u) << 47) |
                      (std::uint64_t(log2 & 63u) << 53)};
  }
  // The word after the migration: the next table is current.
  constexpr TablesWord promoted() const { return stable(gen() + 1, next_run(), next_log2()); }
  constexpr bool valid() const { return (raw & kValid) != 0; }
  constexpr std::uint64_t gen() const { return raw & kGenMask; }
  constexpr bool migrating() const { return (raw & kMigrating) != 0; }
  constexpr std::uint32_t cur_run() const { return std::uint32_t((raw >> 35) & 63u); }
  constexpr std::uint32_t cur_log2() const { return std::uint32_t((raw >> 41) & 63u); }
  constexpr std::uint32_t next_run() const { return std::uint32_t((raw >> 47) & 63u); }
  constexpr std::uint32_t next_log2() const { return std::uint32_t((raw >> 53) & 63u); }
  constexpr bool operator==(const TablesWord&) const = default;
};
static_assert(TablesWord::stable(5, 63, 29).migrating_to(62, 28).promoted() == TablesWord::stable(6, 62, 28),
              "a promotion makes the next table current, one generation on");

// Table generations are 34-bit counters (TablesWord, RunState) compared
// modulo 2^34: the generations in use at any time lie within a few dozen of
// the current one, so the distance forwards tells past from current from
// next, across the wrap after 2^34 migrations.
inline constexpr std::uint64_t kGenMask = TablesWord::kGenMask;
constexpr std::uint64_t gen_after(std::uint64_t g) {
  return (g + 1) & kGenMask;
}
// How many generations `later` is after `earlier` (0: the same; a huge value:
// `later` is in fact before `earlier`).
constexpr std::uint64_t gen_distance(std::uint64_t later, std::uint64_t earlier) {
  return (later - earlier) & kGenMask;
}
constexpr bool gen_before(std::uint64_t a, std::uint64_t b) {
  const std::uint64_t d = gen_distance(b, a);
  return d != 0 && d < (kGenMask >> 1);
}
static_assert(gen_after(kGenMask) == 0 && gen_before(kGenMask, 0) && !gen_before(0, kGenMask) &&
                  gen_distance(1, kGenMask) == 2,
              "generations wrap modulo 2^34");

struct RunSlot {
  std::uint64_t geom;   // RunGeom, atomic
  std::uint64_t state;  // RunState, atomic
};

// A table's first cache lines inside its run.
struct alignas(kCacheLine) TableHeader {
  std::uint64_t used;  // claimed slots (a hint for the migration trigger)
  std::uint64_t pad0[7];
  std::uint64_t cursor;  // migration work handed out, in chunks (fetch_add)
  std::uint64_t pad1[7];
  std::uint64_t done;     // chunks marked DONE (a hint; the chunk words decide)
  std::uint64_t dropped;  // deleted slots this table's migration dropped
  std::uint64_t pad2[6];
};
static_assert(sizeof(TableHeader) == kTableHeaderBytes, "the slots start three cache lines into a run");

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
enum class Exchange : std::uint64_t {
  none = 0,
  take = 1,
  donate = 2,
  carve = 3,
  carved = 4,
  run_carve = 5,
  run_carved = 6
};

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
  std::uint64_t op_table;       // the generation of the table the CAS is made in
  std::uint64_t pending;        // {ref | gen << 32} of the block held unpublished (gen as popped); 0 none
  std::uint64_t freeing;        // {ref | gen << 32} of the block being freed (gen while allocated); 0 none
  std::uint64_t op_gen;         // announcement: 1 + the table generation this thread's operation
                                // may touch (that table and the next); 0 between operations
  // Line 2: the exchange intent and this entry's share of the counters.
  std::uint64_t x_kind;  // Exchange
  std::uint64_t x_ref;   // take/donate: first block's ref; carve/run: claim offset / 8
  std::uint64_t x_gen;   // take/donate: the batch's pool generation; carve: chunk bytes; run: pages
  std::uint64_t x_cls;   // size class | blocks << 8; run: run slot
  std::uint64_t x_aux;   // carve: `carved` of the class once it took effect
  std::uint64_t live;    // net live keys added by this entry's writes (int64)
  std::uint64_t reserved2[2];
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
  std::uint64_t total_bytes;  // the file size at creation (the arena grows it)
  std::uint64_t max_bytes;    // the file may grow to this size (the mapping reserve)
  std::uint64_t capacity;     // Options::capacity: the keys the first table holds
  std::uint64_t registry_offset;
  std::uint64_t registry_entries;
  std::uint64_t arena_offset;
  std::uint64_t arena_bytes;  // the arena's size at creation
  std::uint32_t min_log2;     // the smallest table (the first one): never shrunk below
  std::uint32_t chunk_log2;   // slots per migration chunk: the work of one helping write
  std::uint64_t hash_seed;
  std::int64_t creator_pid;
  std::uint64_t creator_start_time;  // /proc/<pid>/stat field 22, to detect pid reuse
  std::uint64_t created_unix_ns;
  std::uint32_t mode;
  std::uint32_t flags;
};

// Counters of the index's history (statistics only).
struct alignas(kCacheLine) IndexCounters {
  std::uint64_t migrations;  // migrations completed (promotions)
  std::uint64_t grown;       // ... to a larger table
  std::uint64_t shrunk;      // ... to a smaller one
  std::uint64_t dropped;     // deleted slots dropped by migrations
  std::uint64_t retired;     // tables whose memory was returned
  std::uint64_t pad[3];
};

struct SegmentHeader {
  HeaderFixed fixed;
  std::uint64_t checksum;  // hash of `fixed`
  std::uint32_t state;     // SegmentState, atomic
  std::uint32_t pad0;
  // Owner word (Owner) of a process running repair(), 0 otherwise. While it is
  // set by a live process, attaching is refused (errc::busy).
  std::uint64_t maintenance;
  // The index directory: read by every operation, written once per migration.
  alignas(kCacheLine) std::uint64_t tables;  // TablesWord
  std::uint64_t arena_bytes;                 // the arena's current size (grows; the file covers it)
  // Arena bytes [0, arena_reserved) have their file blocks allocated
  // (fallocate): carving never touches a page past it, so a full filesystem
  // is a failed reservation, never a SIGBUS. Only grows.
  std::uint64_t arena_reserved;
  std::uint64_t pad1[5];
  RunSlot runs[kRuns];
  IndexCounters counters;
  CacheLineCounter arena_top;     // next unused arena offset (bytes from arena base)
  CacheLineCounter entries_used;  // 1 + the highest registry entry ever claimed
  PoolClass pool[kClasses];
};

static_assert(sizeof(SegmentHeader) <= kHeaderBytes, "the header must fit its reserved pages");
static_assert(kHeaderBytes % kPageBytes == 0, "the registry must start page aligned");
static_assert(offsetof(SegmentHeader, tables) % kCacheLine == 0, "the directory has a cache line of its own");

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
  w = w * 131 + sizeof(TableHeader);
  w = w * 131 + kClasses;
  w = w * 131 + kRuns;
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
inline std::atomic_ref<std::uint64_t> atom(std::uint64_t& w) {
  return std::atomic_ref<std::uint64_t>(w);
}
inline std::atomic_ref<std::uint32_t> atom32(std::uint32_t& w) {
  return std::atomic_ref<std::uint32_t>(w);
}

static_assert(std::atomic_ref<std::uint64_t>::is_always_lock_free,
              "shared words must be lock-free atomics: a lock would be per process");

}  // namespace shmap::detail
