// The arena allocator; see arena.hpp for the protocol.
#include "arena.hpp"

#include <atomic>
#include <string>

#include "fault.hpp"
#include "segment.hpp"

namespace shmap::detail {

void Arena::corrupt(const char* what, std::uint64_t ref) const {
  throw_error(errc::corrupt, segment_, std::string(what) + " (arena ref " + std::to_string(ref) + ")");
}

std::uint64_t Arena::allocate(std::uint32_t klen, std::uint32_t vlen) {
  const std::uint32_t cls = size_class_of(RecordHeader::record_bytes_for(klen, vlen));
  const std::uint64_t block_bytes = size_class_bytes(cls);
  SizeClass& sc = header_->classes[cls];

  std::uint64_t ref = 0;
  RecordHeader old{};
  // Acquire: pairs with the release CAS in free() (site F2), so the link word
  // and generation the pusher stored are visible before we read them.
  FreeHead head{atom(sc.head).load(std::memory_order_acquire)};
  while (head.ref() != 0) {
    if (!in_bounds(head.ref(), block_bytes)) corrupt("free-list head out of bounds", head.ref());
    // Relaxed: if the block was popped (and perhaps rewritten) since we loaded
    // `head`, the tag has moved on and the CAS below fails, discarding `next`.
    const std::uint64_t next = atom(block(head.ref())[1]).load(std::memory_order_relaxed);
    const FreeHead popped = FreeHead::make(next, head.tag() + 1);
    // Acquire on both outcomes: on success we own the block and read its header;
    // on failure `head` is reloaded and must again see its pusher's link (F2).
    if (atom(sc.head).compare_exchange_weak(head.raw, popped.raw, std::memory_order_acquire,
                                            std::memory_order_acquire)) {
      ref = head.ref();
      SHMAP_FAULT("allocate: popped a free block");
      // Relaxed: the block is ours now; the acquire above ordered this load.
      old = RecordHeader{atom(block(ref)[0]).load(std::memory_order_relaxed)};
      if (old.is_allocated() || size_class_of(old.record_bytes()) != cls)
        corrupt("free-list block is not a free block of its size class", ref);
      break;
    }
  }
  if (ref == 0) {
    // Relaxed: the bump offset only hands out disjoint ranges; nothing is
    // published through it.
    std::uint64_t top = atom(header_->arena_top.value).load(std::memory_order_relaxed);
    do {
      if (top < kArenaFirstOffset || top > bytes_ || top % 8 != 0) corrupt("arena bump offset out of range", top / 8);
      if (block_bytes > bytes_ - top) return 0;
    } while (!atom(header_->arena_top.value)
                  .compare_exchange_weak(top, top + block_bytes, std::memory_order_relaxed,
                                         std::memory_order_relaxed));
    ref = top / 8;
    SHMAP_FAULT("allocate: carved a new block");
    // Relaxed: statistics counter.
    atom(sc.carved).fetch_add(1, std::memory_order_relaxed);
    old = RecordHeader::make(1, 0, 0);  // a never-used block starts as "free, generation 1"
  }
  // Relaxed: statistics counter.
  atom(sc.in_use).fetch_add(1, std::memory_order_relaxed);
  SHMAP_FAULT("allocate: counted, header not yet written");

  const RecordHeader fresh = RecordHeader::make(old.gen() + 1, klen, vlen);  // odd -> even
  // Site A1. The release fence orders the new generation before every later
  // store into the block (key, value); it pairs with the acquire fence in a
  // reader's validation (map.cpp, R3): a reader that saw any of the new bytes
  // sees the new generation and discards its copy. The store itself is a
  // release too, pairing with the reader's acquire loads of the header (R1,
  // R3): a reader that sees this generation also sees the unlink of the
  // block's previous incarnation (it happened before the free that our pop
  // acquired), so when it re-reads the slot word it finds it changed.
  atom(block(ref)[0]).store(fresh.raw, std::memory_order_release);
  std::atomic_thread_fence(std::memory_order_release);
  SHMAP_FAULT("allocate: header written");
  return ref;
}

void Arena::free(std::uint64_t ref) {
  if (!in_bounds(ref, 16)) corrupt("freeing a block out of bounds", ref);
  std::uint64_t* b = block(ref);
  // Relaxed: the caller unlinked this block with an acquire CAS, which made its
  // allocator's header store visible.
  const RecordHeader h{atom(b[0]).load(std::memory_order_relaxed)};
  if (!h.is_allocated()) corrupt("freeing a block that is already free", ref);
  const std::uint32_t cls = size_class_of(h.record_bytes());
  if (!in_bounds(ref, size_class_bytes(cls))) corrupt("freeing a block that overruns the arena", ref);
  SizeClass& sc = header_->classes[cls];

  // Site F1: generation to odd, then a release fence so the link store below
  // cannot be seen without it; pairs with the reader's acquire fence (R3). The
  // store is a release too (pairs with R1/R3 loads): a reader that sees the odd
  // generation also sees our caller's unlinking CAS when it re-reads the slot.
  SHMAP_FAULT("free: before the generation change");
  atom(b[0]).store(h.next_gen().raw, std::memory_order_release);
  std::atomic_thread_fence(std::memory_order_release);
  SHMAP_FAULT("free: generation odd, not yet pushed");

  // Relaxed: the CAS below publishes; a stale value only makes it fail.
  FreeHead head{atom(sc.head).load(std::memory_order_relaxed)};
  FreeHead pushed{};
  do {
    // Relaxed: published by the release CAS that follows.
    atom(b[1]).store(head.ref(), std::memory_order_relaxed);
    pushed = FreeHead::make(ref, head.tag() + 1);
    // Site F2, release: publishes the link word and the odd generation to the
    // next popper's acquire load/CAS in allocate().
  } while (!atom(sc.head).compare_exchange_weak(head.raw, pushed.raw, std::memory_order_release,
                                                std::memory_order_relaxed));
  SHMAP_FAULT("free: pushed, not yet counted");
  // Relaxed: statistics counter.
  atom(sc.in_use).fetch_sub(1, std::memory_order_relaxed);
}

}  // namespace shmap::detail
