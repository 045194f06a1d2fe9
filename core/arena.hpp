// The arena: an offset-based allocator for variable-length records in which
// every step a thread takes leaves enough in the segment for a survivor to
// finish or undo it if the thread's process is killed there.
//
// HEAPS. Each registry entry (one per writing thread, registry.hpp) owns a
// heap: per size class a singly linked free list that only its thread reads
// or writes, with plain atomic stores. A freed block goes to the freeing
// thread's list, whoever allocated it. Single-writer lists need no CAS, so a
// dead thread's list is exactly what its head word says.
//
// EXCHANGE between heaps and with the bump region happens in batches, through
// steps whose outcome is written in the segment by the CAS that makes them:
//   carve   CAS the first word of the chunk at the bump offset from 0 to a
//           CarveClaim naming the entry, then advance the bump offset (anyone
//           who finds a claim at the bump offset advances it for the
//           claimer), then cut the chunk into free blocks on the local list.
//   donate  cut up to kBatchBlocks blocks off a local list, give the first
//           block a fresh odd generation (holder 0), CAS it into an empty
//           pool cell.
//   take    CAS a pooled batch's first header from holder 0 to the taker's
//           entry + 1, clear the cell, splice the batch onto the local list.
// Before each step the thread writes an intent in its entry (x_kind ...), so
// recovery (recover.cpp) can tell, from the intent and the word the CAS wrote,
// whether it happened.
//
// ALLOCATE(entry, klen, vlen): pop the class's local list (refilling it from
// the pool, then by carving, when empty); record the block in entry.pending
// before the pop; advance the generation to even (allocated) and store the
// header; release fence (site A1, the seqlock writer side).
// FREE(entry, ref): record {ref, gen} in entry.freeing; advance the generation
// to odd (free header), release fence (site F1); push onto the local list;
// clear entry.freeing. A local list past kLocalMax blocks (or any, once the
// bump region is exhausted) donates a batch to the pool.
//
// RESERVATION. The file is sparse; before a carver touches the page at the
// bump offset it makes sure the header's arena_reserved covers the chunk
// (fallocate of the file blocks, then a CAS raising the mark), so a full
// filesystem makes the carve fail (full_arena) instead of killing the
// process with SIGBUS. Every other write lands in carved bytes.
//
// GROWTH. The arena's size is the header's arena_bytes, which only grows:
// when the bump region cannot give a chunk, the carver extends the file
// (Mapping::grow_file: nothing is committed but one granule, nothing moves)
// and raises arena_bytes by CAS; a carver killed between the two leaves a
// longer file, which the next grower reuses. Every process maps the new part
// when it first meets an offset in it (in_bounds).
//
// RUNS. Index tables live in runs: page-aligned ranges carved from the bump
// offset like chunks, with a run claim (layout.hpp), and listed in the
// header's runs[]; they never hold records.
#pragma once

#include <cstdint>
#include <string_view>

#include "layout.hpp"
#include "segment.hpp"

namespace shmap::detail {

inline constexpr std::uint32_t kLocalMax = 64;      // a local list longer than this donates a batch
inline constexpr std::uint64_t kCarveBytes = 2048;  // bytes carved at once (at least one block)

class Arena {
 public:
  Arena() = default;
  Arena(Mapping* mapping, RegistryEntry* entries)
      : mapping_(mapping),
        header_(mapping->header()),
        base_(mapping->arena()),
        entries_(entries),
        segment_(mapping->name) {}

  // Returns the ref of a block holding a fresh record header for (klen, vlen),
  // recorded in entries[e].pending, or 0 if neither the local list, the pool
  // nor the bump region has a block of its class. The key and value words are
  // the caller's to fill. Only entry e's thread may call this. Lock-free.
  std::uint64_t allocate(std::uint32_t e, std::uint32_t klen, std::uint32_t vlen);

  // Frees block `ref`, which entry e owns (unlinked by e's CAS, or e's
  // unpublished pending block). Records entries[e].freeing first and clears
  // entries[e].pending if it names `ref`. Lock-free.
  void free(std::uint32_t e, std::uint64_t ref);
  // The part of free() after entries[e].freeing names `ref` (recovery).
  void free_recorded(std::uint32_t e, std::uint64_t ref);

  // Pushes a free block (odd generation) onto e's list for its class.
  void push_local(std::uint32_t e, std::uint64_t ref, std::uint32_t cls);
  // Hands batches of e's list of class `cls` to the pool while it holds more
  // than `keep` blocks and a cell is empty. Only e's thread (or a survivor
  // holding e) may call this.
  void donate(std::uint32_t e, std::uint32_t cls, std::uint32_t keep);
  // Takes a pooled batch of class `cls` onto e's (empty) local list.
  bool take(std::uint32_t e, std::uint32_t cls);
  // Carves a chunk of class `cls` onto e's (empty) local list.
  bool carve(std::uint32_t e, std::uint32_t cls);
  // Carves a run of `pages` pages for an index table into run slot `slot`
  // (which e reserved: RunGeom::reserving(e)) and installs its geometry there.
  // Recorded in e's exchange intent (run_carve, run_carved). False if the
  // arena cannot grow to hold it.
  bool carve_run(std::uint32_t e, std::uint32_t slot, std::uint64_t pages);
  // The steps of carve_run after its claim won (recovery finishes them).
  void finish_run(std::uint32_t e, std::uint32_t slot, std::uint64_t top, std::uint64_t pages);
  // Grows the arena so that it holds at least `end` bytes. False if max_bytes
  // or the filesystem does not allow it.
  bool grow(std::uint64_t end);
  // Makes sure arena bytes [0, end) (end <= bytes()) have their file blocks
  // allocated, reserving up to kReserveAheadBytes more, and raises the
  // header's arena_reserved. False if the filesystem is full (ENOSPC): the
  // caller must not touch those pages. Lock-free; a reserver killed anywhere
  // leaves at most allocated blocks the mark does not cover yet.
  bool reserve(std::uint64_t end);
  // Allocates the file blocks of the arena range [offset, offset + bytes)
  // without the mark (a retired run's pages, punched, before its reuse).
  bool reserve_range(std::uint64_t offset, std::uint64_t bytes);
  // The arena bytes whose file blocks are allocated (the header's mark).
  std::uint64_t reserved() const noexcept;
  // Cuts the claimed chunk [offset, offset + bytes) into free blocks of class
  // `cls` linked in address order (the first header is written last, over the
  // claim). Idempotent.
  void cut_chunk(std::uint64_t offset, std::uint64_t bytes, std::uint32_t cls);
  // Advances the bump offset past a claimed chunk at `top`, if still there.
  void help_bump(std::uint64_t top);

  // Once the bump region cannot give a block of some class, frees hand every
  // block to the pool rather than keep kLocalMax per class.
  bool exhausted() const noexcept;

  // The length of the chain starting at `ref` (at most `limit` nodes, else corrupt).
  std::uint32_t chain_length(std::uint64_t ref, std::uint32_t limit) const;

  // True if [ref*8, ref*8 + bytes) lies inside the arena (and is then mapped
  // in this process). The fast path compares with what this process has
  // mapped; past it, the slow path reads the arena's current size and maps
  // the new part.
  bool in_bounds(std::uint64_t ref, std::uint64_t bytes) const noexcept {
    const std::uint64_t off = ref * 8;
    // Acquire: pairs with the release store in in_bounds_slow, after the
    // range was mapped (a plain load on x86-64); re-checked by the slow path.
    const std::uint64_t lim = std::atomic_ref<std::uint64_t>(limit_).load(std::memory_order_acquire);
    if (ref != 0 && off >= kArenaFirstOffset && off <= lim && bytes <= lim - off) return true;
    return in_bounds_slow(ref, bytes);
  }
  // in_bounds for a record of at most kMaxRecordBytes (the read path): one
  // compare while this process has mapped more than a largest record (the
  // unsigned differences wrap for ref 0 and offsets below the first record).
  bool record_in_bounds(std::uint64_t ref, std::uint64_t bytes) const noexcept {
    // Acquire: as in in_bounds.
    const std::uint64_t lim = std::atomic_ref<std::uint64_t>(limit_).load(std::memory_order_acquire);
    if (lim > kArenaFirstOffset + kMaxRecordBytes && ref * 8 - kArenaFirstOffset <= lim - kArenaFirstOffset - bytes)
        [[likely]]
      return true;
    return in_bounds(ref, bytes);
  }
  // The same for an arena byte range [offset, offset + bytes).
  bool range_in_bounds(std::uint64_t offset, std::uint64_t bytes) const noexcept {
    return offset % 8 == 0 && in_bounds(offset / 8, bytes);
  }

  std::uint64_t* block(std::uint64_t ref) const noexcept { return reinterpret_cast<std::uint64_t*>(base_ + ref * 8); }
  char* at(std::uint64_t offset) const noexcept { return base_ + offset; }
  // The arena's current size (it only grows), at most what the reserve maps.
  std::uint64_t bytes() const noexcept;
  Mapping& mapping() const noexcept { return *mapping_; }

  [[noreturn]] void corrupt(const char* what, std::uint64_t ref) const;

 private:
  bool in_bounds_slow(std::uint64_t ref, std::uint64_t bytes) const noexcept;
  // True if the word at the bump offset `top` (reserved and mapped) is 0, so
  // a claim may be tried there; false to retry (another carver's claim,
  // helped past; or a stale `top`). Throws corrupt on anything else.
  bool bump_word_free(std::uint64_t top);

  Mapping* mapping_ = nullptr;
  SegmentHeader* header_ = nullptr;
  char* base_ = nullptr;
  mutable std::uint64_t limit_ = 0;        // arena bytes this process has mapped (atomic_ref)
  mutable std::uint64_t grow_failed_ = 0;  // the last growth or reservation failed (full filesystem or cap; atomic_ref)
  RegistryEntry* entries_ = nullptr;
  std::string_view segment_;
};

}  // namespace shmap::detail
