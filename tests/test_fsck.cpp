// fsck: clean on every map the operations can produce, and each kind of
// damage forged behind the library's back is reported (and named).
#include <cstdint>
#include <string>

#include "support.hpp"

using shmap::FsckReport;
using shmap::Map;
using shmap::Status;
using shmap::detail::SegmentHeader;
using shmap::detail::SlotWord;
using namespace shmap_test;

namespace {

bool mentions(const FsckReport& r, const std::string& needle) {
  for (const auto& v : r.violations)
    if (v.find(needle) != std::string::npos) return true;
  return false;
}

// A map with live, replaced, erased and re-inserted keys across size classes.
void populate(Map& m) {
  for (int i = 0; i < 600; ++i) REQUIRE(m.insert_or_assign("k" + std::to_string(i), pattern_value(i, i % 200)) == Status::inserted);
  for (int i = 0; i < 600; i += 3) REQUIRE(m.erase("k" + std::to_string(i)));
  for (int i = 0; i < 600; i += 5) REQUIRE(shmap::succeeded(m.insert_or_assign("k" + std::to_string(i), "again")));
  for (int i = 0; i < 50; ++i) REQUIRE(shmap::succeeded(m.fetch_add("counter", 1).status));
}


}  // namespace

TEST_CASE("fsck finds a map built by inserts, updates, erases and re-inserts clean, with nothing leaked") {
  SegmentGuard g;
  Map m = Map::create(g.name(), small_options(2048));
  populate(m);
  const FsckReport r = m.fsck();
  INFO((r.violations.empty() ? std::string() : r.violations.front()));
  CHECK(r.ok);
  CHECK(r.violation_count == 0);
  CHECK(r.leaked_bytes == 0);
  CHECK(r.live_keys == m.size());
  CHECK(r.reachable_bytes + r.free_bytes + r.index_run_bytes == r.carved_bytes);
  CHECK(r.reachable_blocks == r.live_keys + r.deleted_slots);
}

TEST_CASE("fsck runs on a read-only mapping") {
  SegmentGuard g;
  {
    Map m = Map::create(g.name(), small_options(2048));
    populate(m);
  }
  shmap::Options ro;
  ro.read_only = true;
  CHECK(Map::open(g.name(), ro).fsck().ok);
}

TEST_CASE("fsck reports carved bytes that are neither reachable, free, nor in flight as leaked") {
  SegmentGuard g;
  { Map m = Map::create(g.name(), small_options()); REQUIRE(m.insert("k", "v") == Status::ok); }
  // A writer killed between carving a block and publishing it leaves exactly this.
  edit_header(shm_file(g.name()), [](SegmentHeader& h) { h.arena_top.value += 48; });
  const FsckReport r = Map::open(g.name()).fsck();
  CHECK_FALSE(r.ok);
  CHECK(r.leaked_bytes == 48);
  CHECK(mentions(r, "48 carved bytes are neither reachable, free, nor in flight"));
}

TEST_CASE("fsck reports two slots referring to one record") {
  SegmentGuard g;
  { Map m = Map::create(g.name(), small_options()); REQUIRE(m.insert("k", "v") == Status::ok); }
  edit_segment(shm_file(g.name()), [](char* base, std::size_t) {
    const RawTable t = current_table(base);
    std::uint64_t* index = t.slots;
    std::uint64_t live = 0;
    for (std::uint64_t i = 0; i < t.size; ++i)
      if (index[i]) live = i;
    index[(live + 5) & t.mask()] = index[live];
  });
  const FsckReport r = Map::open(g.name()).fsck();
  CHECK_FALSE(r.ok);
  CHECK(mentions(r, "referred to by two slots"));
}

TEST_CASE("fsck reports a fingerprint that does not match the key's hash") {
  SegmentGuard g;
  { Map m = Map::create(g.name(), small_options()); REQUIRE(m.insert("k", "v") == Status::ok); }
  edit_segment(shm_file(g.name()), [](char* base, std::size_t) {
    const RawTable t = current_table(base);
    std::uint64_t* index = t.slots;
    for (std::uint64_t i = 0; i < t.size; ++i)
      if (index[i]) index[i] ^= std::uint64_t{1} << SlotWord::kFpShift;
  });
  const FsckReport r = Map::open(g.name()).fsck();
  CHECK_FALSE(r.ok);
  CHECK(mentions(r, "fingerprint"));
}

TEST_CASE("fsck reports a key stored past an EMPTY slot of its probe sequence") {
  SegmentGuard g;
  { Map m = Map::create(g.name(), small_options()); REQUIRE(m.insert("k", "v") == Status::ok); }
  edit_segment(shm_file(g.name()), [](char* base, std::size_t) {
    const RawTable t = current_table(base);
    std::uint64_t* index = t.slots;
    const std::uint64_t mask = t.mask();
    for (std::uint64_t i = 0; i < t.size; ++i) {
      if (!index[i]) continue;
      index[(i + 3) & mask] = index[i];  // moved two EMPTY slots further along
      index[i] = 0;
      break;
    }
  });
  const FsckReport r = Map::open(g.name()).fsck();
  CHECK_FALSE(r.ok);
  CHECK(mentions(r, "EMPTY slot"));
}

TEST_CASE("fsck reports a thread's free list that loops back on itself") {
  SegmentGuard g;
  Map m = Map::create(g.name(), small_options());
  REQUIRE(m.insert_or_assign("k", "v1") == Status::inserted);
  REQUIRE(m.insert_or_assign("k", "v2") == Status::assigned);  // frees the first record onto this thread's list
  const std::uint32_t cls = shmap::detail::size_class_of(shmap::detail::RecordHeader::record_bytes_for(1, 2));
  // The writer is quiet (no write in flight): its heap is exactly its lists.
  int looped = 0;
  edit_entry(shm_file(g.name()), own_entry(m), [&](shmap::detail::RegistryEntry& e, char* base) {
    for (std::uint32_t c = 0; c < shmap::detail::kClasses; ++c) {
      const std::uint32_t head = e.head[c];
      if (head == 0) continue;
      arena_block(base, head)[1] = head;  // link to itself
      ++looped;
      CHECK(c == cls);
    }
  });
  REQUIRE(looped == 1);
  const FsckReport r = m.fsck();
  CHECK_FALSE(r.ok);
  INFO("first violation: " << (r.violations.empty() ? std::string("none") : r.violations.front()) << "; "
                             << r.violation_count << " in all");
  CHECK(mentions(r, "free list of entry " + std::to_string(own_entry(m)) + ", class " + std::to_string(cls)));
  CHECK(mentions(r, "cycle"));
}

TEST_CASE("fsck reports a pooled batch that loops back on itself") {
  SegmentGuard g;
  { Map m = Map::create(g.name(), small_options()); REQUIRE(m.insert("k", "v") == Status::ok); }
  // Closing the handle handed the rest of the carved chunk to the pool.
  int looped = 0;
  edit_segment(shm_file(g.name()), [&](char* base, std::size_t) {
    auto* h = reinterpret_cast<SegmentHeader*>(base);
    for (auto& pc : h->pool)
      for (std::uint64_t cell : pc.cells) {
        if (cell == 0) continue;
        const std::uint64_t first = cell & 0xffffffffu;
        arena_block(base, first)[1] = first;
        ++looped;
      }
  });
  REQUIRE(looped == 1);
  shmap::Options ro;
  ro.read_only = true;
  const FsckReport r = Map::open(g.name(), ro).fsck();
  CHECK_FALSE(r.ok);
  CHECK(mentions(r, "pooled batch"));
  CHECK(mentions(r, "cycle"));
}

TEST_CASE("fsck reports counter shares that disagree with the index") {
  SegmentGuard g;
  { Map m = Map::create(g.name(), small_options()); REQUIRE(m.insert("k", "v") == Status::ok); }
  edit_entry(shm_file(g.name()), 0, [](shmap::detail::RegistryEntry& e, char*) { e.live += 1; });
  Map m = Map::open(g.name());
  CHECK(m.size() == 2);  // size() is the sum of the live shares
  const FsckReport r = m.fsck();
  CHECK_FALSE(r.ok);
  CHECK(mentions(r, "live-key shares sum to 2, the index has 1 live slots"));
}

TEST_CASE("fsck reports a negative live-key share sum as such") {
  SegmentGuard g;
  { Map m = Map::create(g.name(), small_options()); REQUIRE(m.insert("k", "v") == Status::ok); }
  edit_entry(shm_file(g.name()), 0, [](shmap::detail::RegistryEntry& e, char*) { e.live -= 3; });
  const FsckReport r = Map::open(g.name()).fsck();
  CHECK_FALSE(r.ok);
  CHECK(mentions(r, "live-key shares sum to -2, the index has 1 live slots"));
}

TEST_CASE("fsck reports a carved count that disagrees with the blocks of its class") {
  SegmentGuard g;
  { Map m = Map::create(g.name(), small_options()); REQUIRE(m.insert("k", "v") == Status::ok); }
  const std::uint32_t cls = shmap::detail::size_class_of(shmap::detail::RecordHeader::record_bytes_for(1, 1));
  std::uint32_t carved = 0;
  edit_entry(shm_file(g.name()), 0, [&](shmap::detail::RegistryEntry& e, char*) {
    carved = e.carved[cls];
    e.carved[cls] += 1;
  });
  REQUIRE(carved > 0);
  const FsckReport r = Map::open(g.name()).fsck();
  CHECK_FALSE(r.ok);
  CHECK(mentions(r, "size class " + std::to_string(cls) + ": entries carved " + std::to_string(carved + 1) +
                        " blocks, reachable + free + in flight is " + std::to_string(carved)));
}
