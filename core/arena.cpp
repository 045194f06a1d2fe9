// The arena allocator; see arena.hpp for the protocol and recover.cpp for how a
// dead thread's step is finished or undone.
//
// Memory orders of the intent words: every store to an entry's intent, list
// head or counter share is a release store, so a survivor that reads them
// after the owner died sees them as a prefix of the owner's program order
// (the owner's earlier stores are visible whenever a later one is); the
// survivor's loads are acquire.
#include "arena.hpp"

#include <algorithm>
#include <atomic>
#include <string>

#include "fault.hpp"

namespace shmap::detail {
namespace {

std::uint64_t ref_gen(std::uint64_t ref, std::uint32_t gen) {
  return ref | (std::uint64_t(gen) << 32);
}

std::uint32_t blocks_per_carve(std::uint64_t block_bytes) {
  return std::uint32_t(std::clamp<std::uint64_t>(kCarveBytes / block_bytes, 1, kBatchBlocks));
}

}  // namespace

void Arena::corrupt(const char* what, std::uint64_t ref) const {
  throw_error(errc::corrupt, segment_, std::string(what) + " (arena ref " + std::to_string(ref) + ")");
}

bool Arena::exhausted() const noexcept {
  // Relaxed (both): a heuristic; it only decides how eagerly frees donate.
  const std::uint64_t top = atom(header_->arena_top.value).load(std::memory_order_relaxed);
  const std::uint64_t max = mapping_->max_arena_bytes();
  if (top > max || max - top < kCarveBytes) return true;
  // After a failed growth or reservation: what is left is what is reserved.
  return std::atomic_ref<std::uint64_t>(grow_failed_).load(std::memory_order_relaxed) != 0 &&
         reserved() - std::min(reserved(), top) < kCarveBytes;
}

std::uint64_t Arena::reserved() const noexcept {
  // Acquire: pairs with the release CAS in reserve(); the blocks are
  // allocated once the mark covers them.
  return std::min(atom(header_->arena_reserved).load(std::memory_order_acquire), bytes());
}

bool Arena::reserve(std::uint64_t end) {
  std::uint64_t cur = reserved();
  if (end <= cur) return true;
  const std::uint64_t size = bytes();
  if (end > size) return false;
  const std::uint64_t target = std::min(size, std::max(end, cur + kReserveAheadBytes));
  if (!reserve_range(cur, target - cur)) return false;
  SHMAP_FAULT("reserve: blocks allocated, mark not yet raised");
  // Release: pairs with reserved()'s acquire. Raise only (a racing reserver
  // with a smaller target loses the CAS and finds the larger mark).
  cur = atom(header_->arena_reserved).load(std::memory_order_relaxed);
  while (cur < target &&
         !atom(header_->arena_reserved)
              .compare_exchange_weak(cur, target, std::memory_order_release, std::memory_order_relaxed)) {
  }
  return true;
}

bool Arena::reserve_range(std::uint64_t offset, std::uint64_t bytes) {
  if (mapping_->reserve(mapping_->fixed.arena_offset + offset, bytes) == 0) return true;
  // Relaxed: process-local hint (see exhausted()).
  std::atomic_ref<std::uint64_t>(grow_failed_).store(1, std::memory_order_relaxed);
  return false;
}

std::uint64_t Arena::bytes() const noexcept {
  // Acquire: pairs with the grower's release CAS; the file is at least this
  // long once the size is published (grow_file returned first).
  const std::uint64_t n = atom(header_->arena_bytes).load(std::memory_order_acquire);
  return std::min(n, mapping_->max_arena_bytes());
}

bool Arena::in_bounds_slow(std::uint64_t ref, std::uint64_t bytes) const noexcept {
  const std::uint64_t off = ref * 8;
  const std::uint64_t size = this->bytes();
  if (ref == 0 || off < kArenaFirstOffset || off > size || bytes > size - off) return false;
  if (!mapping_->ensure_mapped(mapping_->fixed.arena_offset + off + bytes)) return false;
  const std::uint64_t lim = std::min(size, mapping_->mapped() - mapping_->fixed.arena_offset);
  // Release: process-local; orders this thread's mmap of the range (or its
  // acquire of mapped()) before any thread's use of the bound (the acquire
  // loads in in_bounds). A racing raise to a smaller value is harmless: the
  // next miss comes back here.
  std::atomic_ref<std::uint64_t>(limit_).store(lim, std::memory_order_release);
  return true;
}

bool Arena::grow(std::uint64_t end) {
  std::uint64_t cur = bytes();
  if (end <= cur) return true;
  const std::uint64_t max = mapping_->max_arena_bytes();
  const std::uint64_t offset = mapping_->fixed.arena_offset;
  if (end > max) return false;
  // Double (the file is sparse: only one granule is committed), within the cap.
  const std::uint64_t want = std::min(max, std::max(end, cur * 2));
  const std::uint64_t file_end =
      std::min((offset + want + kSegmentAlign - 1) / kSegmentAlign * kSegmentAlign, offset + max);
  if (mapping_->grow_file(file_end) != 0) {
    // Relaxed: process-local hint (see exhausted()).
    std::atomic_ref<std::uint64_t>(grow_failed_).store(1, std::memory_order_relaxed);
    return false;
  }
  SHMAP_FAULT("grow: file extended, size not yet raised");
  const std::uint64_t size = file_end - offset;
  // Release: pairs with bytes()'s acquire; raise only (a slower grower with a
  // smaller target loses the CAS and finds the larger size).
  while (cur < size && !atom(header_->arena_bytes)
                            .compare_exchange_weak(cur, size, std::memory_order_release, std::memory_order_acquire)) {
  }
  std::atomic_ref<std::uint64_t>(grow_failed_).store(0, std::memory_order_relaxed);  // Relaxed: as above.
  return true;
}

std::uint32_t Arena::chain_length(std::uint64_t ref, std::uint32_t limit) const {
  std::uint32_t n = 0;
  while (ref != 0) {
    if (++n > limit) corrupt("a free-block chain is longer than it can be (a cycle?)", ref);
    if (!in_bounds(ref, 16)) corrupt("a free-block link points outside the arena", ref);
    // Relaxed: the chain belongs to the caller (taken with an acquire CAS, or its own).
    ref = atom(block(ref)[1]).load(std::memory_order_relaxed);
  }
  return n;
}

std::uint64_t Arena::allocate(std::uint32_t ei, std::uint32_t klen, std::uint32_t vlen) {
  const std::uint32_t cls = size_class_of(RecordHeader::record_bytes_for(klen, vlen));
  const std::uint64_t block_bytes = size_class_bytes(cls);
  RegistryEntry& e = entries_[ei];
  // Relaxed: only this thread writes its list.
  std::uint64_t ref = atom32(e.head[cls]).load(std::memory_order_relaxed);
  if (ref == 0) {
    if (!take(ei, cls) && !carve(ei, cls)) return 0;
    // Relaxed: as above.
    ref = atom32(e.head[cls]).load(std::memory_order_relaxed);
  }
  if (!in_bounds(ref, block_bytes)) corrupt("free-list head out of bounds", ref);
  std::uint64_t* b = block(ref);
  // Relaxed: the block is on our own list; whoever freed it or handed it over
  // released it to us (F1 fence and our own push, or the take CAS).
  const std::uint64_t raw = atom(b[0]).load(std::memory_order_relaxed);
  const RecordHeader old{raw};
  if (old.is_allocated() || FreeHeader::cls_of(raw) != cls)
    corrupt("free-list block is not a free block of its size class", ref);
  // Relaxed: as above.
  const std::uint64_t next = atom(b[1]).load(std::memory_order_relaxed);
  // Release (intent): recovery sees `pending` whenever it sees the pop below.
  atom(e.pending).store(ref_gen(ref, old.gen()), std::memory_order_release);
  SHMAP_FAULT("allocate: pending recorded, not yet popped");
  // Release (list): see the file comment.
  atom32(e.head[cls]).store(static_cast<std::uint32_t>(next), std::memory_order_release);
  // Release: a length hint; recovery recounts the list.
  atom32(e.count[cls]).store(atom32(e.count[cls]).load(std::memory_order_relaxed) - 1, std::memory_order_release);
  SHMAP_FAULT("allocate: popped, header not yet written");

  const RecordHeader fresh =
      RecordHeader::make(RecordHeader::allocated_gen(old.gen()), klen, vlen);  // odd -> even, never 0
  // Site A1. The release fence orders the new generation before every later
  // store into the block (key, value); it pairs with the acquire fence in a
  // reader's validation (map_impl.hpp, R3): a reader that saw any of the new
  // bytes sees the new generation and discards its copy. The store itself is
  // a release too, pairing with the reader's acquire loads of the header (R1,
  // R3b): a reader that sees this generation also sees the unlink of the
  // block's previous incarnation (it happened before the free that handed
  // the block to us), so when it re-reads the slot word it finds it changed.
  atom(b[0]).store(fresh.raw, std::memory_order_release);
  std::atomic_thread_fence(std::memory_order_release);
  SHMAP_FAULT("allocate: header written");
  return ref;
}

void Arena::free(std::uint32_t ei, std::uint64_t ref) {
  if (!in_bounds(ref, 16)) corrupt("freeing a block out of bounds", ref);
  // Relaxed: the caller owns the block (its unlinking CAS acquired the
  // allocator's header store, or it allocated the block itself).
  const RecordHeader h{atom(block(ref)[0]).load(std::memory_order_relaxed)};
  if (!h.is_allocated()) corrupt("freeing a block that is already free", ref);
  RegistryEntry& e = entries_[ei];
  // Release (intent): `freeing` is visible before anything below.
  atom(e.freeing).store(ref_gen(ref, h.gen()), std::memory_order_release);
  // Relaxed: only this thread writes its own pending word; ordered by the next release.
  if ((atom(e.pending).load(std::memory_order_relaxed) & 0xffffffffu) == ref)
    atom(e.pending).store(0, std::memory_order_release);  // Release (intent).
  SHMAP_FAULT("free: recorded, generation not yet changed");
  free_recorded(ei, ref);
}

void Arena::free_recorded(std::uint32_t ei, std::uint64_t ref) {
  std::uint64_t* b = block(ref);
  // Relaxed: as in free().
  const RecordHeader h{atom(b[0]).load(std::memory_order_relaxed)};
  const std::uint32_t cls = size_class_of(h.record_bytes());
  if (!in_bounds(ref, size_class_bytes(cls))) corrupt("freeing a block that overruns the arena", ref);
  // Site F1: generation to odd, then a release fence so the link store below
  // cannot be seen without it; pairs with the reader's acquire fence (R3). The
  // store is a release too (pairs with R1/R3b loads): a reader that sees the
  // odd generation also sees our caller's unlinking CAS when it re-reads the slot.
  atom(b[0]).store(FreeHeader::make(h.gen() + 1, cls, 0), std::memory_order_release);
  std::atomic_thread_fence(std::memory_order_release);
  SHMAP_FAULT("free: generation odd, not yet pushed");
  push_local(ei, ref, cls);
  SHMAP_FAULT("free: pushed, intent not yet cleared");
  // Release (intent): cleared only after the push is visible.
  atom(entries_[ei].freeing).store(0, std::memory_order_release);
  donate(ei, cls, exhausted() ? 0 : kLocalMax);
}

void Arena::push_local(std::uint32_t ei, std::uint64_t ref, std::uint32_t cls) {
  RegistryEntry& e = entries_[ei];
  // Relaxed: our own list.
  const std::uint32_t head = atom32(e.head[cls]).load(std::memory_order_relaxed);
  // Relaxed: published by the release store of the head below.
  atom(block(ref)[1]).store(head, std::memory_order_relaxed);
  // Release (list): the link is visible before the new head.
  atom32(e.head[cls]).store(static_cast<std::uint32_t>(ref), std::memory_order_release);
  // Release: a length hint (recovery recounts).
  atom32(e.count[cls]).store(atom32(e.count[cls]).load(std::memory_order_relaxed) + 1, std::memory_order_release);
}

void Arena::donate(std::uint32_t ei, std::uint32_t cls, std::uint32_t keep) {
  RegistryEntry& e = entries_[ei];
  PoolClass& pool = header_->pool[cls];
  for (;;) {
    // Relaxed: our own list.
    const std::uint32_t count = atom32(e.count[cls]).load(std::memory_order_relaxed);
    if (count <= keep) return;
    std::uint32_t cell = kPoolCells;
    for (std::uint32_t i = 0; i < kPoolCells && cell == kPoolCells; ++i) {
      // Relaxed: a hint; the CAS below decides.
      if (atom(pool.cells[i]).load(std::memory_order_relaxed) == 0) cell = i;
    }
    if (cell == kPoolCells) return;  // the pool is full: keep the blocks
    const std::uint32_t k = std::min(count - keep, kBatchBlocks);
    // Relaxed (all list reads): our own list.
    const std::uint64_t first = atom32(e.head[cls]).load(std::memory_order_relaxed);
    if (first == 0) return;  // the length hint ran ahead of the list (only after damage)
    if (!in_bounds(first, size_class_bytes(cls))) corrupt("free-list head out of bounds", first);
    std::uint64_t last = first;
    std::uint32_t taken = 1;
    for (; taken < k; ++taken) {
      const std::uint64_t next = atom(block(last)[1]).load(std::memory_order_relaxed);
      if (next == 0) break;
      if (!in_bounds(next, 16)) corrupt("a free-list link points outside the arena", next);
      last = next;
    }
    const std::uint64_t rest = atom(block(last)[1]).load(std::memory_order_relaxed);
    const RecordHeader fh{atom(block(first)[0]).load(std::memory_order_relaxed)};
    const std::uint32_t gen = fh.gen() + 2;  // odd, new for this donation: no old cell can name it
    // Intent first (x_kind last, release: the arguments are visible with it).
    atom(e.x_ref).store(first, std::memory_order_relaxed);
    atom(e.x_gen).store(gen, std::memory_order_relaxed);
    atom(e.x_cls).store(cls | (std::uint64_t(taken) << 8), std::memory_order_relaxed);
    atom(e.x_kind).store(std::uint64_t(Exchange::donate), std::memory_order_release);
    SHMAP_FAULT("donate: intent recorded");
    // Release (list).
    atom32(e.head[cls]).store(static_cast<std::uint32_t>(rest), std::memory_order_release);
    atom32(e.count[cls]).store(count - taken, std::memory_order_release);  // Release: length hint.
    // Relaxed: published by the release header store below.
    atom(block(last)[1]).store(0, std::memory_order_relaxed);
    // Release: a taker's acquire CAS on this header sees the chain's links.
    atom(block(first)[0]).store(FreeHeader::make(gen, cls, 0), std::memory_order_release);
    SHMAP_FAULT("donate: batch cut, not yet in a cell");
    bool placed = false;
    for (std::uint32_t i = cell; i < kPoolCells && !placed; ++i) {
      std::uint64_t expected = 0;
      // Release: a taker that reads the cell (acquire) sees the batch header.
      placed = atom(pool.cells[i])
                   .compare_exchange_strong(expected, pool_cell(first, gen), std::memory_order_release,
                                            std::memory_order_relaxed);
    }
    if (!placed) {
      // No cell names generation `gen`, so nobody can take the batch: relink it.
      atom(block(last)[1]).store(rest, std::memory_order_relaxed);  // Relaxed: published below.
      atom32(e.head[cls]).store(static_cast<std::uint32_t>(first), std::memory_order_release);  // Release (list).
      atom32(e.count[cls]).store(count, std::memory_order_release);                             // Release: length hint.
    }
    SHMAP_FAULT("donate: placed, intent not yet cleared");
    atom(e.x_kind).store(0, std::memory_order_release);  // Release (intent).
    if (!placed) return;
  }
}

bool Arena::take(std::uint32_t ei, std::uint32_t cls) {
  RegistryEntry& e = entries_[ei];
  PoolClass& pool = header_->pool[cls];
  for (std::uint32_t i = 0; i < kPoolCells; ++i) {
    // Acquire: pairs with the donor's release CAS of the cell.
    std::uint64_t cell = atom(pool.cells[i]).load(std::memory_order_acquire);
    if (cell == 0) continue;
    const std::uint64_t first = cell & 0xffffffffu;
    const auto gen = static_cast<std::uint32_t>(cell >> 32);
    if (!in_bounds(first, size_class_bytes(cls))) corrupt("a pool cell points outside the arena", first);
    std::uint64_t expected = FreeHeader::make(gen, cls, 0);
    // Acquire: if the batch was taken, we see its taker's header, and clear
    // the cell only after it (recovery of a donor reads the cells, then the
    // header: a cleared cell must come with the taken header).
    if (atom(block(first)[0]).load(std::memory_order_acquire) != expected) {
      // Taken already (its taker died before clearing the cell): clear the hint.
      // Release: see the acquire above.
      atom(pool.cells[i]).compare_exchange_strong(cell, 0, std::memory_order_release, std::memory_order_relaxed);
      continue;
    }
    atom(e.x_ref).store(first, std::memory_order_relaxed);
    atom(e.x_gen).store(gen, std::memory_order_relaxed);
    atom(e.x_cls).store(cls, std::memory_order_relaxed);
    // Release (intent): the arguments above are visible with the kind.
    atom(e.x_kind).store(std::uint64_t(Exchange::take), std::memory_order_release);
    SHMAP_FAULT("take: intent recorded");
    // Acq_rel: acquire pairs with the donor's release header store (the
    // chain's links); release publishes our intent before our ownership.
    const bool won = atom(block(first)[0])
                         .compare_exchange_strong(expected, FreeHeader::make(gen, cls, ei + 1),
                                                  std::memory_order_acq_rel, std::memory_order_relaxed);
    if (won) {
      SHMAP_FAULT("take: batch taken, not yet on the list");
      // Release: a survivor that sees the cell cleared sees our header CAS
      // (recover.cpp, donate). A failure means someone cleared it.
      atom(pool.cells[i]).compare_exchange_strong(cell, 0, std::memory_order_release, std::memory_order_relaxed);
      const std::uint32_t n = chain_length(first, kBatchBlocks);
      atom32(e.head[cls]).store(static_cast<std::uint32_t>(first), std::memory_order_release);  // Release (list).
      atom32(e.count[cls]).store(n, std::memory_order_release);                                 // Release: length hint.
    }
    atom(e.x_kind).store(0, std::memory_order_release);  // Release (intent).
    if (won) return true;
  }
  return false;
}

void Arena::help_bump(std::uint64_t top) {
  if (top < kArenaFirstOffset || top % 8 != 0 || !in_bounds(top / 8, 8)) return;
  // Acquire: pairs with the claimer's release CAS of the claim word.
  const std::uint64_t w = atom(block(top / 8)[0]).load(std::memory_order_acquire);
  if (!CarveClaim::is_claim(w)) return;
  const std::uint64_t size = CarveClaim::bytes_of(w, top);
  if (size == 0 || size > bytes() - top) corrupt("a carve claim overruns the arena", top / 8);
  // Relaxed: the bump offset only hands out disjoint ranges; the chunk's
  // ownership is in its claim word.
  atom(header_->arena_top.value).compare_exchange_strong(top, top + size, std::memory_order_relaxed);
}

bool Arena::bump_word_free(std::uint64_t top) {
  // Acquire: see help_bump.
  const std::uint64_t w = atom(block(top / 8)[0]).load(std::memory_order_acquire);
  if (w == 0) return true;
  // Another carver's claim: advance the bump offset for it, then retry.
  if (CarveClaim::is_claim(w)) {
    help_bump(top);
    return false;
  }
  // A cut block: our `top` is stale (a claimer advances the bump offset
  // before it cuts, and the acquire load above makes that visible). If the
  // bump offset really is still here, the bytes past it are damaged.
  // Relaxed: compared only; ordered after the acquire load above.
  if (atom(header_->arena_top.value).load(std::memory_order_relaxed) == top)
    corrupt("the word at the arena bump offset is neither zero nor a carve claim", top / 8);
  return false;
}

bool Arena::carve(std::uint32_t ei, std::uint32_t cls) {
  RegistryEntry& e = entries_[ei];
  const std::uint64_t block_bytes = size_class_bytes(cls);
  for (;;) {
    // Relaxed: the claim CAS below decides.
    const std::uint64_t top = atom(header_->arena_top.value).load(std::memory_order_relaxed);
    const std::uint64_t arena = bytes();
    if (top < kArenaFirstOffset || top > arena || top % 8 != 0) corrupt("arena bump offset out of range", top / 8);
    const std::uint64_t want = blocks_per_carve(block_bytes) * block_bytes;
    if (want > arena - top && grow(top + want)) continue;
    if (block_bytes > arena - top) return false;
    const std::uint32_t n = std::min<std::uint64_t>(blocks_per_carve(block_bytes), (arena - top) / block_bytes);
    const std::uint64_t size = n * block_bytes;
    if (!reserve(top + size)) return false;  // before the claim word's page is touched
    if (!in_bounds(top / 8, size)) corrupt("the arena is not mapped where its size says it is", top / 8);
    std::uint64_t* claim = block(top / 8);
    if (!bump_word_free(top)) continue;
    // Relaxed: our own counter share.
    const std::uint32_t carved_after = atom32(e.carved[cls]).load(std::memory_order_relaxed) + n;
    atom(e.x_ref).store(top / 8, std::memory_order_relaxed);
    atom(e.x_gen).store(size, std::memory_order_relaxed);
    atom(e.x_cls).store(cls | (std::uint64_t(n) << 8), std::memory_order_relaxed);
    atom(e.x_aux).store(carved_after, std::memory_order_relaxed);
    // Release (intent): the arguments are visible with the kind.
    atom(e.x_kind).store(std::uint64_t(Exchange::carve), std::memory_order_release);
    std::uint64_t zero = 0;
    // Acq_rel: release publishes our intent before the claim (recovery reads
    // the claim word to decide); acquire orders our chunk writes after it.
    if (!atom(claim[0]).compare_exchange_strong(zero, CarveClaim::make(ei + 1, size), std::memory_order_acq_rel,
                                                std::memory_order_acquire)) {
      atom(e.x_kind).store(0, std::memory_order_release);  // Release (intent).
      continue;
    }
    SHMAP_FAULT("carve: claimed, bump offset not yet advanced");
    atom(e.x_kind).store(std::uint64_t(Exchange::carved), std::memory_order_release);  // Release (intent).
    help_bump(top);
    SHMAP_FAULT("carve: bump offset advanced, chunk not yet cut");
    cut_chunk(top, size, cls);
    SHMAP_FAULT("carve: chunk cut, not yet on the list");
    atom32(e.carved[cls]).store(carved_after, std::memory_order_release);  // Release: counter share.
    atom32(e.head[cls]).store(static_cast<std::uint32_t>(top / 8), std::memory_order_release);  // Release (list).
    atom32(e.count[cls]).store(n, std::memory_order_release);                                   // Release: length hint.
    atom(e.x_kind).store(0, std::memory_order_release);                                         // Release (intent).
    return true;
  }
}

bool Arena::carve_run(std::uint32_t ei, std::uint32_t slot, std::uint64_t pages) {
  RegistryEntry& e = entries_[ei];
  for (;;) {
    // Relaxed: the claim CAS below decides.
    const std::uint64_t top = atom(header_->arena_top.value).load(std::memory_order_relaxed);
    const std::uint64_t arena = bytes();
    if (top < kArenaFirstOffset || top > arena || top % 8 != 0) corrupt("arena bump offset out of range", top / 8);
    const std::uint64_t end = CarveClaim::run_start(top) + pages * kPageBytes;
    if (end > arena) {
      if (!grow(end)) return false;
      continue;
    }
    if (!reserve(end)) return false;  // before the claim word's page is touched
    if (!in_bounds(top / 8, end - top)) corrupt("the arena is not mapped where its size says it is", top / 8);
    std::uint64_t* claim = block(top / 8);
    if (!bump_word_free(top)) continue;
    atom(e.x_ref).store(top / 8, std::memory_order_relaxed);
    atom(e.x_gen).store(pages, std::memory_order_relaxed);
    atom(e.x_cls).store(slot, std::memory_order_relaxed);
    // Release (intent): the arguments are visible with the kind.
    atom(e.x_kind).store(std::uint64_t(Exchange::run_carve), std::memory_order_release);
    std::uint64_t zero = 0;
    // Acq_rel: as in carve(): our intent is visible before the claim, and our
    // writes to the run are ordered after it.
    if (!atom(claim[0]).compare_exchange_strong(zero, RunClaim::make(ei, pages), std::memory_order_acq_rel,
                                                std::memory_order_acquire)) {
      atom(e.x_kind).store(0, std::memory_order_release);  // Release (intent).
      continue;
    }
    SHMAP_FAULT("run: claimed, bump offset not yet advanced");
    atom(e.x_kind).store(std::uint64_t(Exchange::run_carved), std::memory_order_release);  // Release (intent).
    finish_run(ei, slot, top, pages);
    atom(e.x_kind).store(0, std::memory_order_release);  // Release (intent).
    return true;
  }
}

void Arena::finish_run(std::uint32_t ei, std::uint32_t slot, std::uint64_t top, std::uint64_t pages) {
  if (slot >= kRuns) corrupt("a run intent names no run slot", top / 8);
  help_bump(top);
  SHMAP_FAULT("run: bump offset advanced, not yet installed");
  // The claim word stays (in the padding before the run): see layout.hpp.
  const std::uint64_t start = CarveClaim::run_start(top);
  std::uint64_t reserving = RunGeom::reserving(ei).raw;
  // Release: pairs with the acquire load of the geometry (Tables::geom): the
  // run's bytes (zero since the file grew over them) are ours to hand over.
  atom(header_->runs[slot].geom)
      .compare_exchange_strong(reserving, RunGeom::make(start / kPageBytes, pages, (start - top) / 8).raw,
                               std::memory_order_release, std::memory_order_relaxed);
}

void Arena::cut_chunk(std::uint64_t offset, std::uint64_t size, std::uint32_t cls) {
  const std::uint64_t block_bytes = size_class_bytes(cls);
  if (!in_bounds(offset / 8, size) || size % block_bytes != 0)
    corrupt("a carved chunk does not fit the arena", offset / 8);
  // Last block first, so the claim word (the first block's header) is
  // replaced only when the whole chunk is cut.
  for (std::uint64_t at = offset + size; at > offset;) {
    at -= block_bytes;
    std::uint64_t* b = block(at / 8);
    const std::uint64_t next = at + block_bytes < offset + size ? (at + block_bytes) / 8 : 0;
    // Relaxed: the chunk is unpublished (ours by the claim); the release
    // stores of the list head publish it.
    atom(b[1]).store(next, std::memory_order_relaxed);
    // Release: the first header replaces the claim; recovery that sees it sees the whole chunk cut.
    atom(b[0]).store(FreeHeader::make(1, cls, 0), std::memory_order_release);
  }
}

}  // namespace shmap::detail
