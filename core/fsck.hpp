// Pieces of fsck that repair reuses.
#pragma once

#include <cstdint>
#include <vector>

#include "shmap/shmap.hpp"

namespace shmap::detail {

struct Block {
  std::uint64_t offset;  // bytes from the arena base
  std::uint64_t bytes;   // the size class's block size
  std::uint32_t cls;
  bool reachable;
};

struct IndexScan {
  std::vector<Block> blocks;                       // every block a slot refers to
  std::vector<std::uint64_t> reachable_per_class;  // per size class
  FsckReport report;                               // index violations only; live_keys, deleted_slots
};

// The index part of fsck: validates every slot word and record and collects
// the reachable blocks. Read-only.
IndexScan scan_index(const Map::Impl& m);

}  // namespace shmap::detail
