// The arena: an offset-based, lock-free allocator for variable-length records.
//
// LAYOUT. A byte range of the segment, addressed by `ref` = offset / 8 (32 bits,
// so at most 32 GiB). Bytes [0, kArenaFirstOffset) are never handed out, so
// ref 0 means "no record". Every block starts with a RecordHeader word.
//
// ALLOCATE(klen, vlen)
//   1. class = size_class_of(record bytes)
//   2. pop the class's free list: a Treiber stack whose head is a FreeHead
//      {ref, tag}; the tag grows on every successful CAS, so a head that was
//      popped and pushed back meanwhile fails the CAS (ABA bound: 2^32 head
//      changes while one popper is stalled between its load and its CAS).
//   3. if empty, cut a new block from the bump offset (`arena_top`) by CAS;
//      if the bump offset would pass the arena end, report "full".
//   4. advance the block's generation to even (allocated), store the header,
//      then a release fence: every later store into the block is ordered after
//      the generation change (seqlock writer side).
// FREE(ref)
//   1. advance the generation to odd (free), release fence (same reason),
//   2. write the free-list link into word 1 and push with a release CAS.
//
// LIMITS. No per-process caches yet: every allocation touches its class's head
// cache line. A process that dies between steps leaks at most the one block it
// held; recovery of such blocks is the crash-safety issue's job.
#pragma once

#include <cstdint>
#include <string_view>

#include "layout.hpp"

namespace shmap::detail {

class Arena {
 public:
  Arena() = default;
  Arena(SegmentHeader* header, char* base, std::uint64_t bytes, std::string_view segment)
      : header_(header), base_(base), bytes_(bytes), segment_(segment) {}

  // Returns the ref of a block holding a fresh record header for (klen, vlen),
  // or 0 if the arena is full. The key and value words are the caller's to fill.
  // Lock-free.
  std::uint64_t allocate(std::uint32_t klen, std::uint32_t vlen);

  // Returns an allocated, unlinked block to its free list. Lock-free.
  void free(std::uint64_t ref);

  // True if [ref*8, ref*8 + bytes) lies inside the usable arena.
  bool in_bounds(std::uint64_t ref, std::uint64_t bytes) const noexcept {
    const std::uint64_t off = ref * 8;
    return ref != 0 && off >= kArenaFirstOffset && off <= bytes_ && bytes <= bytes_ - off;
  }

  std::uint64_t* block(std::uint64_t ref) const noexcept {
    return reinterpret_cast<std::uint64_t*>(base_ + ref * 8);
  }

  std::uint64_t bytes() const noexcept { return bytes_; }

  [[noreturn]] void corrupt(const char* what, std::uint64_t ref) const;

 private:
  SegmentHeader* header_ = nullptr;
  char* base_ = nullptr;
  std::uint64_t bytes_ = 0;
  std::string_view segment_;
};

}  // namespace shmap::detail
