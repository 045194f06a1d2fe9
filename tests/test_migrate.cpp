// Online migration in one process: growth from a tiny table, same-size
// rebuilds that reclaim deleted slots, shrinking, the memory that comes back,
// reads and walks during a migration, and fsck on every migration state
// (including forged ones).
#include <sys/stat.h>

#include <cstdint>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "hash.hpp"
#include "support.hpp"

using shmap::FsckReport;
using shmap::Map;
using shmap::Status;
using namespace shmap_test;

namespace {

// Bytes of memory the segment's file holds (tmpfs pages allocated).
std::uint64_t resident_bytes(const std::string& name) {
  struct stat st {};
  REQUIRE(::stat(shm_file(name).c_str(), &st) == 0);
  return std::uint64_t(st.st_blocks) * 512;
}

std::string session(std::uint64_t i) {
  return "session:" + std::to_string(i);
}

// A map that moves one 16-slot chunk per write, so that a migration of a
// table of 64 slots or more spans several writes.
shmap::Options slow_migration(std::uint64_t capacity) {
  shmap::Options o = small_options(capacity);
  o.help_slots = 16;
  return o;
}

// Inserts keys "g<i>" until a migration is running (it started and is not
// yet done). Returns how many keys that took.
int insert_until_migrating(Map& m) {
  int i = 0;
  while (!m.stats().migrating) {
    REQUIRE(m.insert("g" + std::to_string(i), pattern_value(std::uint64_t(i), 24)) == Status::ok);
    ++i;
    REQUIRE(i < 100000);
  }
  return i;
}

bool mentions(const FsckReport& r, const std::string& what) {
  for (const std::string& v : r.violations)
    if (v.find(what) != std::string::npos) return true;
  return false;
}

}  // namespace

TEST_CASE(
    "a churning session table of at most 500 live keys takes 10 million fresh inserts and erases in bounded memory") {
  // The pre-fork server pattern: insert a new session key, erase the one from
  // 500 requests ago. Every insert and erase must succeed; deleted slots are
  // reclaimed by same-size rebuilds of the index, so neither the index nor
  // the arena grows after warm-up.
  const std::uint64_t pairs = 10'000'000 / kChurnSlowdown;
  SegmentGuard g;
  Map m = Map::create(g.name(), small_options(1000));
  std::uint64_t failures = 0;
  std::uint64_t warm_resident = 0, warm_arena = 0, peak_resident = 0;
  for (std::uint64_t i = 0; i < pairs; ++i) {
    if (m.insert(session(i), "v") != Status::ok) ++failures;
    if (i >= 500 && !m.erase(session(i - 500))) ++failures;
    if (i == 100'000) {
      warm_resident = resident_bytes(g.name());
      warm_arena = m.stats().arena_bytes;
    }
    if (i > 100'000 && i % 100'000 == 0) peak_resident = std::max(peak_resident, resident_bytes(g.name()));
  }
  CHECK(failures == 0);
  CHECK(m.size() == 500);
  const shmap::Stats s = m.stats();
  const std::uint64_t end_resident = resident_bytes(g.name());
  WARN("churn: " << pairs << " insert+erase pairs, " << s.migrations << " migrations, " << s.reclaimed_slots
                 << " deleted slots reclaimed; resident " << warm_resident << " bytes after 100k pairs, peak "
                 << peak_resident << ", " << end_resident << " at the end; index " << s.index_slots << " slots");
  // The bound: the header and touched registry lines, two index runs of
  // 2048 slots, and the records of 500 keys with their deleted slots' key
  // records: well under 512 KiB.
  CHECK(end_resident <= (512u << 10));
  CHECK(peak_resident <= (512u << 10));
  CHECK(s.arena_bytes == warm_arena);
  CHECK(s.index_slots == 2048);  // never below the capacity's table, never above what 500 keys need
  CHECK(s.migrations > pairs / 2000);
  CHECK(s.reclaimed_slots > pairs / 2);
  for (std::uint64_t i = pairs - 500; i < pairs; ++i) CHECK(m.contains(session(i)));
  CHECK_FALSE(m.contains(session(pairs - 501)));
  check_quiescent(m);
}

TEST_CASE("a map created with a 16-slot index grows online to hold 200,000 keys, each readable with its value") {
  SegmentGuard g;
  Map m = Map::create(g.name(), small_options(12));
  REQUIRE(m.stats().index_slots == 16);
  const int n = 200'000 / kSlowdown;
  for (int i = 0; i < n; ++i) {
    const Status st = m.insert("key" + std::to_string(i), pattern_value(std::uint64_t(i), std::size_t(i % 64)));
    if (st != Status::ok) FAIL("insert " << i << ": " << shmap::to_string(st));
  }
  const shmap::Stats s = m.stats();
  CHECK(m.size() == std::uint64_t(n));
  CHECK(s.index_slots >= std::uint64_t(n) * 4 / 3);
  CHECK(s.grown >= 10);
  CHECK(s.migrations == s.table_generation);
  CHECK(s.retired_tables == s.migrations);  // every past table's memory went back
  CHECK(s.arena_bytes > m.info().arena_bytes / 2);
  int wrong = 0;
  for (int i = 0; i < n; ++i)
    if (m.get("key" + std::to_string(i)) != pattern_value(std::uint64_t(i), std::size_t(i % 64))) ++wrong;
  CHECK(wrong == 0);
  check_quiescent(m);
}

TEST_CASE("a map whose live keys fall far below its index size shrinks, and the big table's memory goes back") {
  SegmentGuard g;
  Map m = Map::create(g.name(), small_options(16));
  const int n = 100'000 / kSlowdown;
  for (int i = 0; i < n; ++i) REQUIRE(m.insert("big" + std::to_string(i), "v") == Status::ok);
  const shmap::Stats big = m.stats();
  const std::uint64_t big_resident = resident_bytes(g.name());
  // The erases start a migration to a small table once the live keys fall
  // below 1/16 of it; the writes that follow move it along.
  for (int i = 100; i < n; ++i) REQUIRE(m.erase("big" + std::to_string(i)));
  for (int i = 0; i < n / 10; ++i) {
    REQUIRE(m.insert("small" + std::to_string(i), "v") == Status::ok);
    REQUIRE(m.erase("small" + std::to_string(i)));
  }
  const shmap::Stats s = m.stats();
  CHECK(s.shrunk >= 1);
  CHECK_FALSE(s.migrating);
  CHECK(s.index_slots < big.index_slots / 16);
  const std::uint64_t small_resident = resident_bytes(g.name());
  // What the index gave back is the big table's run, less the small one's;
  // the records the erases and new keys carved meanwhile (key-only records
  // of erased keys, which the migration freed onto free lists) stay.
  const std::uint64_t index_back = big.index_table_bytes - s.index_table_bytes;
  const std::uint64_t carved = s.arena_carved - big.arena_carved - (s.index_run_bytes - big.index_run_bytes);
  WARN("shrink: " << big.index_slots << " slots, " << big_resident << " bytes resident -> " << s.index_slots
                  << " slots, " << small_resident << " bytes resident; the index gave back " << index_back
                  << " bytes, records carved meanwhile " << carved);
  CHECK(index_back + s.index_table_bytes >= big.index_slots * 8);
  CHECK(small_resident + index_back <= big_resident + carved + (64u << 10));
  for (int i = 0; i < 100; ++i) CHECK(m.contains("big" + std::to_string(i)));
  CHECK(m.size() == 100);
  check_quiescent(m);
}

TEST_CASE("every key stays readable after each write while migrations run, in this handle and in another") {
  SegmentGuard g;
  Map m = Map::create(g.name(), slow_migration(16));
  shmap::Options ro;
  ro.read_only = true;
  const Map reader = Map::open(g.name(), ro);
  int wrong = 0;
  bool saw_migration = false;
  for (int i = 0; i < 3000; ++i) {
    REQUIRE(m.insert("k" + std::to_string(i), std::to_string(i)) == Status::ok);
    if (i % 3 == 0) REQUIRE(m.erase("k" + std::to_string(i)));
    saw_migration = saw_migration || m.stats().migrating;
    // Check a sample each round, and everything every 97 rounds.
    for (int j = (i % 97 == 0 ? 0 : std::max(0, i - 20)); j <= i; ++j) {
      const std::optional<std::string> want = j % 3 == 0 ? std::nullopt : std::optional<std::string>(std::to_string(j));
      if (m.get("k" + std::to_string(j)) != want || reader.get("k" + std::to_string(j)) != want) ++wrong;
    }
  }
  CHECK(saw_migration);
  CHECK(wrong == 0);
  check_quiescent(m);
}

TEST_CASE("a migration left half done answers every operation, for_each sees each key once, and fsck counts it") {
  SegmentGuard g;
  Map m = Map::create(g.name(), slow_migration(100));  // 256 slots, 16 chunks of 16
  const int n = insert_until_migrating(m);
  const shmap::Stats s = m.stats();
  REQUIRE(s.migrating);
  CHECK(s.migration_chunks == 16);
  CHECK(s.migration_chunks_done >= 1);
  CHECK(s.migration_chunks_done < 16);
  CHECK(s.next_index_slots > s.index_slots);
  CHECK(s.frozen_slots > 0);
  for (int i = 0; i < n; ++i) CHECK(m.get("g" + std::to_string(i)) == pattern_value(std::uint64_t(i), 24));
  std::map<std::string, int> seen;
  m.for_each([&](std::string_view k, std::string_view) { ++seen[std::string(k)]; });
  CHECK(seen.size() == std::size_t(n));
  for (const auto& [k, c] : seen) CHECK(c == 1);
  const FsckReport f = m.fsck();
  INFO((f.violations.empty() ? std::string("clean") : f.violations.front()));
  CHECK(f.ok);
  CHECK(f.live_keys == std::uint64_t(n));
  CHECK(f.migration_chunks == 16);
  CHECK(f.migration_chunks_done == s.migration_chunks_done);
  CHECK(f.leaked_bytes == 0);
  // Every kind of write, each helping the migration along.
  CHECK(m.insert("g0", "x") == Status::exists);
  CHECK(m.insert_or_assign("g1", "assigned") == Status::assigned);
  CHECK(m.compare_exchange("g2", pattern_value(2, 24), "swapped") == Status::ok);
  CHECK(m.erase("g3"));
  CHECK(m.fetch_add("counter", 7).status == Status::inserted);
  CHECK(m.get("g1") == "assigned");
  CHECK(m.get("g2") == "swapped");
  CHECK_FALSE(m.contains("g3"));
  check_quiescent(m);
  // recover() finishes it.
  (void)m.recover();
  CHECK_FALSE(m.stats().migrating);
  CHECK(m.fsck().unretired_tables == 0);
  check_quiescent(m);
}

TEST_CASE("for_each sees each entry present for the whole walk exactly once while its callback drives migrations") {
  SegmentGuard g;
  Map m = Map::create(g.name(), slow_migration(16));
  const int n = 2000;
  for (int i = 0; i < n; ++i) REQUIRE(m.insert("old" + std::to_string(i), "v") == Status::ok);
  std::map<std::string, int> seen;
  int inserted = 0;
  const std::uint64_t gen_before = m.stats().table_generation;
  m.for_each([&](std::string_view k, std::string_view) {
    ++seen[std::string(k)];
    // Each visit adds three keys and erases one of them: the index grows and
    // rebuilds under the walk.
    for (int j = 0; j < 3; ++j) REQUIRE(m.insert("new" + std::to_string(inserted++), "w") == Status::ok);
    REQUIRE(m.erase("new" + std::to_string(inserted - 2)));
  });
  CHECK(m.stats().table_generation > gen_before + 2);
  for (int i = 0; i < n; ++i) CHECK(seen["old" + std::to_string(i)] == 1);
  for (const auto& [k, c] : seen) CHECK(c == 1);
  check_quiescent(m);
}

TEST_CASE("repair finishes a running migration and rebuilds a clean map") {
  SegmentGuard g;
  Map m = Map::create(g.name(), slow_migration(100));
  const int n = insert_until_migrating(m);
  const FsckReport r = m.repair();
  INFO((r.violations.empty() ? std::string("clean") : r.violations.front()));
  CHECK(r.ok);
  CHECK_FALSE(m.stats().migrating);
  CHECK(r.unretired_tables == 0);
  for (int i = 0; i < n; ++i) CHECK(m.get("g" + std::to_string(i)) == pattern_value(std::uint64_t(i), 24));
  check_quiescent(m);
}

TEST_CASE("stats and info report the table generation, a running migration and reclaimed slots") {
  SegmentGuard g;
  Map m = Map::create(g.name(), small_options(16));
  CHECK(m.stats().table_generation == 0);
  CHECK(m.info().table_generation == 0);
  for (int i = 0; i < 100; ++i) REQUIRE(m.insert("k" + std::to_string(i), "v") == Status::ok);
  for (int i = 0; i < 90; ++i) REQUIRE(m.erase("k" + std::to_string(i)));
  for (int i = 100; i < 300; ++i) {
    REQUIRE(m.insert("k" + std::to_string(i), "v") == Status::ok);
    REQUIRE(m.erase("k" + std::to_string(i)));
  }
  const shmap::Stats s = m.stats();
  CHECK(s.table_generation > 0);
  CHECK(m.info().table_generation == s.table_generation);
  CHECK(m.info().index_slots == s.index_slots);
  CHECK(s.reclaimed_slots > 0);
  CHECK(s.grown > 0);
  CHECK(s.retired_tables == s.migrations);
  CHECK(s.index_runs >= 2);
  CHECK(s.index_table_bytes > 0);
  CHECK(s.max_bytes == kTestMaxBytes);
  CHECK_FALSE(s.migrating);
}

TEST_CASE("segments of layout versions 2 and 3 are refused with version_mismatch") {
  // 2: before online migration; 3: before the arena's reservation mark.
  for (const std::uint32_t old : {2u, 3u}) {
    SegmentGuard g;
    { Map m = Map::create(g.name(), small_options()); }
    edit_header(g.file(), [&](shmap::detail::SegmentHeader& h) { h.fixed.layout_version = old; });
    REQUIRE_SHMAP_ERROR(Map::open(g.name()), shmap::errc::version_mismatch, g.name());
    const auto e = error_of([&] { (void)Map::open(g.name()); });
    REQUIRE(e.has_value());
    CHECK(std::string(e->what()).find("layout version " + std::to_string(old) + ", this library reads version 4") !=
          std::string::npos);
  }
}

// ------------------------------------------------------------------ fsck on forged migration states

namespace {

// A quiet map of 64 slots (4 chunks) in the middle of a migration.
void make_half_migrated(const std::string& name) {
  Map m = Map::create(name, slow_migration(40));
  (void)insert_until_migrating(m);
  REQUIRE(m.stats().migration_chunks_done == 1);
  REQUIRE(m.fsck().ok);
}

struct RawMigration {
  RawTable from, to;
  std::uint64_t* chunks;  // the old table's chunk words
};
RawMigration raw_migration(char* base) {
  auto* h = reinterpret_cast<shmap::detail::SegmentHeader*>(base);
  const shmap::detail::TablesWord t{h->tables};
  REQUIRE(t.migrating());
  const auto table_at = [&](std::uint32_t run, std::uint32_t log2) {
    const shmap::detail::RunGeom g{h->runs[run].geom};
    return RawTable{
        reinterpret_cast<std::uint64_t*>(base + h->fixed.arena_offset + g.start() + shmap::detail::kTableHeaderBytes),
        std::uint64_t{1} << log2};
  };
  RawMigration r{table_at(t.cur_run(), t.cur_log2()), table_at(t.next_run(), t.next_log2()), nullptr};
  r.chunks = r.from.slots + r.from.size;
  return r;
}

FsckReport fsck_of(const std::string& name) {
  shmap::Options ro;
  ro.read_only = true;
  return Map::open(name, ro).fsck();
}

}  // namespace

TEST_CASE("fsck reports a chunk marked DONE that still has unfrozen slots") {
  SegmentGuard g;
  make_half_migrated(g.name());
  edit_segment(g.file(), [](char* base, std::size_t) {
    RawMigration r = raw_migration(base);
    REQUIRE(r.chunks[3] == 0);
    r.chunks[3] = 1;
  });
  const FsckReport f = fsck_of(g.name());
  CHECK_FALSE(f.ok);
  CHECK(mentions(f, "chunk 3 is DONE but has unfrozen slots"));
}

TEST_CASE("fsck reports a frozen slot in a table no migration moves") {
  SegmentGuard g;
  {
    Map m = Map::create(g.name(), small_options(100));
    REQUIRE(m.insert("k", "v") == Status::ok);
  }
  edit_segment(g.file(), [](char* base, std::size_t) {
    const RawTable t = current_table(base);
    for (std::uint64_t i = 0; i < t.size; ++i)
      if (t.slots[i] == 0) {
        t.slots[i] = shmap::detail::SlotWord::frozen_empty().raw;
        break;
      }
  });
  const FsckReport f = fsck_of(g.name());
  CHECK_FALSE(f.ok);
  CHECK(mentions(f, "frozen, but the table is not being migrated"));
}

TEST_CASE("fsck reports a key with an unfrozen slot in the old table and a slot in the new one") {
  SegmentGuard g;
  make_half_migrated(g.name());
  bool forged = false;
  edit_segment(g.file(), [&](char* base, std::size_t) {
    RawMigration r = raw_migration(base);
    // Thaw a frozen live slot of the moved chunk: its key is in the new table too.
    for (std::uint64_t i = 0; i < 16 && !forged; ++i) {
      shmap::detail::SlotWord w{r.from.slots[i]};
      if (w.is_frozen() && w.has_record()) {
        r.from.slots[i] = w.unfrozen().raw;
        forged = true;
      }
    }
  });
  REQUIRE(forged);
  const FsckReport f = fsck_of(g.name());
  CHECK_FALSE(f.ok);
  CHECK(mentions(f, "unfrozen slot in the old table too"));
}

TEST_CASE("fsck reports a DONE chunk whose keys are missing from the new table") {
  SegmentGuard g;
  make_half_migrated(g.name());
  bool forged = false;
  edit_segment(g.file(), [&](char* base, std::size_t) {
    RawMigration r = raw_migration(base);
    // Remove the copy of one moved key from the new table (its slot becomes
    // a dropped one there would break the probe of others: take the last
    // key of a cluster by emptying the copy that sits alone).
    for (std::uint64_t i = 0; i < 16 && !forged; ++i) {
      const shmap::detail::SlotWord w{r.from.slots[i]};
      if (!w.is_frozen() || !w.has_record()) continue;
      for (std::uint64_t q = 0; q < r.to.size; ++q)
        if (r.to.slots[q] == w.unfrozen().raw && r.to.slots[(q + 1) & r.to.mask()] == 0) {
          r.to.slots[q] = 0;
          forged = true;
          break;
        }
    }
  });
  REQUIRE(forged);
  const FsckReport f = fsck_of(g.name());
  CHECK_FALSE(f.ok);
  CHECK(mentions(f, "keys of chunks marked DONE are missing from the next table"));
}

TEST_CASE("fsck reports overlapping index runs and a run state that disagrees with the directory") {
  SegmentGuard g;
  make_half_migrated(g.name());
  SECTION("two runs over one range") {
    edit_segment(g.file(), [](char* base, std::size_t) {
      auto* h = reinterpret_cast<shmap::detail::SegmentHeader*>(base);
      for (std::uint32_t k = 0; k < shmap::detail::kRuns; ++k)
        if (h->runs[k].geom == 0) {
          h->runs[k].geom = h->runs[0].geom;
          break;
        }
    });
    CHECK(mentions(fsck_of(g.name()), "two index runs overlap"));
  }
  SECTION("the current table's run says it holds another table") {
    edit_segment(g.file(), [](char* base, std::size_t) {
      auto* h = reinterpret_cast<shmap::detail::SegmentHeader*>(base);
      const shmap::detail::TablesWord t{h->tables};
      const shmap::detail::RunState s{h->runs[t.cur_run()].state};
      h->runs[t.cur_run()].state = shmap::detail::RunState::make(s.kind(), s.gen() + 5, s.log2()).raw;
    });
    CHECK(mentions(fsck_of(g.name()), "the directory's current table is"));
  }
  SECTION("a run slot reserved by a writer that is gone") {
    edit_segment(g.file(), [](char* base, std::size_t) {
      auto* h = reinterpret_cast<shmap::detail::SegmentHeader*>(base);
      for (std::uint32_t k = 0; k < shmap::detail::kRuns; ++k)
        if (h->runs[k].geom == 0) {
          h->runs[k].geom = shmap::detail::RunGeom::reserving(900).raw;
          break;
        }
    });
    CHECK(mentions(fsck_of(g.name()), "which is not attached"));
  }
}
