// Segment lifecycle: naming, race-free creation, validation on open, mapping.
#pragma once

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

struct Mapping {
  std::string name;
  std::string path;
  void* base = nullptr;
  std::size_t bytes = 0;
  bool read_only = false;
  // A private copy of the immutable header, taken once and validated: offsets
  // are never re-read from shared memory, where a hostile writer could change
  // them after validation.
  HeaderFixed fixed{};

  SegmentHeader* header() const { return static_cast<SegmentHeader*>(base); }
  std::uint64_t* index() const {
    return reinterpret_cast<std::uint64_t*>(static_cast<char*>(base) + fixed.index_offset);
  }
  char* arena() const { return static_cast<char*>(base) + fixed.arena_offset; }
  RegistryEntry* registry() const {
    return reinterpret_cast<RegistryEntry*>(static_cast<char*>(base) + fixed.registry_offset);
  }

  Mapping() = default;
  Mapping(const Mapping&) = delete;
  Mapping& operator=(const Mapping&) = delete;
  Mapping(Mapping&& o) noexcept;
  Mapping& operator=(Mapping&& o) noexcept;
  ~Mapping();
};

// Creates, initializes and publishes a new segment under `name` (O_EXCL semantics).
Mapping create_segment(std::string_view name, const Options& opts);
// Opens and validates an existing segment. Throws errc::not_found if missing.
Mapping open_segment(std::string_view name, const Options& opts);

}  // namespace shmap::detail
