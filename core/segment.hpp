// Segment lifecycle: naming, race-free creation, validation on open, and the
// process's mapping of a file that grows.
#pragma once

#include <atomic>
#include <cstdint>
#include <string>
#include <string_view>

#include "layout.hpp"
#include "shmap/shmap.hpp"

namespace shmap::detail {

// "/jobs" (one leading slash, no other) is a POSIX shm name and maps to
// /dev/shm/jobs; anything else is a filesystem path. Throws errc::invalid_argument.
std::string segment_path(std::string_view name);

// Checksum of the immutable header part, stored in SegmentHeader::checksum.
std::uint64_t header_checksum(const HeaderFixed& fixed) noexcept;

// Start time of a process (clock ticks since boot, /proc/<pid>/stat field 22);
// 0 if the process does not exist.
std::uint64_t process_start_time(std::int64_t pid) noexcept;

// Unlinks `name` after checking that it is a shmap segment (magic number), so
// a typo cannot delete an unrelated file. False if it did not exist.
bool remove_segment(std::string_view name);

// True unless there is definite evidence that the process `pid` that started at
// `start_time` is gone: no such pid, or a readable start time that differs
// under `start_mask` (a reused pid). Start time 0 means unknown (any start).
// An unreadable /proc entry counts as alive.
bool process_alive(std::int64_t pid, std::uint64_t start_time, std::uint64_t start_mask = ~std::uint64_t{0}) noexcept;

[[noreturn]] void throw_error(errc code, std::string_view segment, const std::string& what);
[[noreturn]] void throw_system(std::string_view segment, const std::string& call, int err);

// A process's view of a segment. The segment file grows (the arena extends
// it); every process reserves address space for the largest size the file
// may reach (HeaderFixed::max_bytes) once, at open, and maps the file into
// the front of that reserve, extending the mapping in place when it first
// meets an offset past it. Nothing is ever moved or unmapped while the handle
// lives, so a pointer another thread of this process holds stays valid.
struct Mapping {
  std::string name;
  std::string path;
  void* base = nullptr;                // start of the reserve (the segment's byte 0)
  std::size_t reserved = 0;            // bytes of address space reserved
  int fd = -1;                         // kept open: the mapping grows, the file grows
  std::uint64_t granule = kPageBytes;  // the filesystem's allocation unit (hugetlbfs: 2 MiB)
  bool read_only = false;
  // A private copy of the immutable header, taken once and validated: offsets
  // are never re-read from shared memory, where a hostile writer could change
  // them after validation.
  HeaderFixed fixed{};

  SegmentHeader* header() const { return static_cast<SegmentHeader*>(base); }
  char* arena() const { return static_cast<char*>(base) + fixed.arena_offset; }
  RegistryEntry* registry() const {
    return reinterpret_cast<RegistryEntry*>(static_cast<char*>(base) + fixed.registry_offset);
  }
  // The largest arena size the reserve can map.
  std::uint64_t max_arena_bytes() const { return reserved - fixed.arena_offset; }

  // Bytes of the file mapped so far (from byte 0). Relaxed: process-local,
  // only ever raised after the range is mapped.
  std::uint64_t mapped() const noexcept { return mapped_.load(std::memory_order_acquire); }
  // Maps the file up to at least byte `end` (at most the reserve). False if
  // the file is shorter than `end` (it was truncated underneath us) or the
  // mapping fails. The fast path (already mapped) is one load; growing the
  // mapping is serialized by a process-local mutex, so a range is mapped once.
  bool ensure_mapped(std::uint64_t end) noexcept;
  // Makes the file at least `end` bytes long without committing its pages
  // (fallocate of its last granule; never shrinks it). 0, or the errno (ENOSPC:
  // the filesystem is full).
  int grow_file(std::uint64_t end) noexcept;
  // Allocates the file blocks of [offset, offset + bytes) (fallocate, file
  // size kept), widened to whole granules, so that touching those pages can
  // never fault for want of space. 0, or the errno (ENOSPC: the filesystem is
  // full). 0 also where the filesystem has no fallocate: pages are then
  // committed on touch, as without this call.
  int reserve(std::uint64_t offset, std::uint64_t bytes) noexcept;
  // Returns the pages of [offset, offset + bytes) to the filesystem (hole
  // punch; the range then reads as zeros). 0, or the errno.
  int punch(std::uint64_t offset, std::uint64_t bytes) noexcept;

  Mapping() = default;
  Mapping(const Mapping&) = delete;
  Mapping& operator=(const Mapping&) = delete;
  Mapping(Mapping&& o) noexcept;
  Mapping& operator=(Mapping&& o) noexcept;
  ~Mapping();

 private:
  std::atomic<std::uint64_t> mapped_{0};
  void release() noexcept;
};

// Creates, initializes and publishes a new segment under `name` (O_EXCL semantics).
Mapping create_segment(std::string_view name, const Options& opts);
// Opens and validates an existing segment. Throws errc::not_found if missing.
Mapping open_segment(std::string_view name, const Options& opts);

}  // namespace shmap::detail
