// Segments corrupted behind the library's back (index words, record headers,
// arena metadata: a thread's free-list head, a pool cell, the bump offset,
// forged with the structs of core/layout.hpp): every offset read
// from shared memory is bounds-checked, so each case must end in a
// shmap::Error(errc::corrupt) naming the segment, never a wild read or a hang.
#include <cstdint>
#include <functional>
#include <string>

#include "support.hpp"

using shmap::errc;
using shmap::Map;
using shmap::Status;
using shmap::detail::HeaderFixed;
using shmap::detail::RecordHeader;
using shmap::detail::SegmentHeader;
using shmap::detail::SlotWord;
using namespace shmap_test;

namespace {

// Applies f to every claimed (non-empty) slot word of the index.
void edit_slots(const std::string& file, const std::function<void(SlotWord&, const HeaderFixed&)>& f) {
  edit_segment(file, [&](char* base, std::size_t) {
    auto* h = reinterpret_cast<SegmentHeader*>(base);
    const RawTable t = current_table(base);
    std::uint64_t* index = t.slots;
    for (std::uint64_t i = 0; i < t.size; ++i) {
      if (index[i] == 0) continue;
      SlotWord w{index[i]};
      f(w, h->fixed);
      index[i] = w.raw;
    }
  });
}

// Applies f to the record header of every claimed slot.
void edit_records(const std::string& file, const std::function<void(RecordHeader&)>& f) {
  edit_segment(file, [&](char* base, std::size_t) {
    auto* h = reinterpret_cast<SegmentHeader*>(base);
    const RawTable t = current_table(base);
    std::uint64_t* index = t.slots;
    for (std::uint64_t i = 0; i < t.size; ++i) {
      const SlotWord w{index[i]};
      if (!w.has_record()) continue;
      auto* rec = reinterpret_cast<RecordHeader*>(base + h->fixed.arena_offset + w.ref() * 8);
      f(*rec);
    }
  });
}

void make_one_entry(const std::string& name, std::uint64_t arena_bytes = 1 << 20) {
  Map m = Map::create(name, small_options(1024, arena_bytes));
  REQUIRE(m.insert("k", "v") == Status::ok);
}

}  // namespace

TEST_CASE("a slot word that refers outside the arena is reported as corrupt by every operation that meets it") {
  SegmentGuard g;
  make_one_entry(g.name());
  edit_slots(g.file(), [](SlotWord& w, const HeaderFixed& f) {
    w.raw = (w.raw & ~SlotWord::kRefMask) | ((f.arena_bytes / 8 + 16) & SlotWord::kRefMask);
  });
  Map m = Map::open(g.name());
  REQUIRE_SHMAP_ERROR(m.get("k"), errc::corrupt, g.name());
  REQUIRE_SHMAP_ERROR(m.contains("k"), errc::corrupt, g.name());
  REQUIRE_SHMAP_ERROR(m.insert_or_assign("k", "w"), errc::corrupt, g.name());
  REQUIRE_SHMAP_ERROR(m.erase("k"), errc::corrupt, g.name());
  REQUIRE_SHMAP_ERROR(m.compare_exchange("k", "v", "w"), errc::corrupt, g.name());
  REQUIRE_SHMAP_ERROR(m.fetch_add("k", 1), errc::corrupt, g.name());
  REQUIRE_SHMAP_ERROR(m.for_each([](std::string_view, std::string_view) {}), errc::corrupt, g.name());
}

TEST_CASE("a record whose value length overruns the arena is reported as corrupt") {
  SegmentGuard g;
  make_one_entry(g.name(), 64 << 10);
  edit_records(g.file(), [](RecordHeader& r) {
    r = RecordHeader::make(r.gen(), r.key_len(), std::uint32_t(RecordHeader::kValueLenMask));
  });
  Map m = Map::open(g.name());
  REQUIRE_SHMAP_ERROR(m.get("k"), errc::corrupt, g.name());
  REQUIRE_SHMAP_ERROR(m.for_each([](std::string_view, std::string_view) {}), errc::corrupt, g.name());
}

TEST_CASE("a slot word whose record generation never matches is reported as corrupt instead of retried forever") {
  SegmentGuard g;
  make_one_entry(g.name());
  edit_slots(g.file(), [](SlotWord& w, const HeaderFixed&) { w.raw ^= std::uint64_t{1} << SlotWord::kTagShift; });
  Map m = Map::open(g.name());
  REQUIRE_SHMAP_ERROR(m.get("k"), errc::corrupt, g.name());
  REQUIRE_SHMAP_ERROR(m.insert_or_assign("k", "w"), errc::corrupt, g.name());
  REQUIRE_SHMAP_ERROR(m.for_each([](std::string_view, std::string_view) {}), errc::corrupt, g.name());
}

TEST_CASE("a thread's free-list head outside the arena is reported as corrupt by the next allocation of its class") {
  SegmentGuard g;
  make_one_entry(g.name());
  // "k2" + an 8-byte value is a 24-byte record.
  const std::uint32_t cls = shmap::detail::size_class_of(RecordHeader::record_bytes_for(2, 8));
  // Entry 0 is the heap the next opening thread adopts (entries are claimed
  // lowest first): its list of the class now starts outside the arena.
  edit_entry(g.file(), 0, [&](shmap::detail::RegistryEntry& e, char* base) {
    const auto& fixed = reinterpret_cast<SegmentHeader*>(base)->fixed;
    e.head[cls] = static_cast<std::uint32_t>(fixed.arena_bytes / 8 + 16);
    e.count[cls] = 1;
  });
  Map m = Map::open(g.name());
  REQUIRE(own_entry(m) == 0);
  REQUIRE_SHMAP_ERROR(m.insert("k2", "12345678"), errc::corrupt, g.name());
  CHECK(m.get("k") == std::optional<std::string>("v"));
}

TEST_CASE("a pool cell naming a batch outside the arena is reported as corrupt by the next take of its class") {
  SegmentGuard g;
  make_one_entry(g.name());
  const std::uint32_t cls = shmap::detail::size_class_of(RecordHeader::record_bytes_for(2, 8));
  // The closing handle handed its list of the class (the rest of the chunk
  // "k" was carved from) to the pool: point that cell outside the arena.
  int forged = 0;
  edit_segment(g.file(), [&](char* base, std::size_t) {
    auto* h = reinterpret_cast<SegmentHeader*>(base);
    REQUIRE(registry_of(base)[0].head[cls] == 0);  // the opener's list is empty: it must take from the pool
    for (std::uint64_t& cell : h->pool[cls].cells) {
      if (cell == 0) continue;
      cell = shmap::detail::pool_cell(h->fixed.arena_bytes / 8 + 16, static_cast<std::uint32_t>(cell >> 32));
      ++forged;
    }
  });
  REQUIRE(forged == 1);
  Map m = Map::open(g.name());
  REQUIRE_SHMAP_ERROR(m.insert("k2", "12345678"), errc::corrupt, g.name());
  CHECK(m.get("k") == std::optional<std::string>("v"));
}

TEST_CASE("an arena bump offset beyond the arena is reported as corrupt by the next carve") {
  SegmentGuard g;
  make_one_entry(g.name());
  edit_header(g.file(), [](SegmentHeader& h) { h.arena_top.value = h.fixed.arena_bytes + 4096; });
  Map m = Map::open(g.name());
  REQUIRE_SHMAP_ERROR(m.insert("big", std::string(3000, 'b')), errc::corrupt, g.name());
  CHECK(m.get("k") == std::optional<std::string>("v"));
}
