// repair(): rebuilds free lists and counters from the index when the map is
// quiet, returns what killed writers leaked, and refuses to run beside other
// attached processes (and makes them wait for nothing: they fail fast).
#include <signal.h>
#include <unistd.h>

#include <random>
#include <string>

#include "support.hpp"

using shmap::errc;
using shmap::FsckReport;
using shmap::Map;
using shmap::Status;
using shmap::detail::SegmentHeader;
using namespace shmap_test;

namespace {

std::string first_violation(const FsckReport& r) { return r.violations.empty() ? "clean" : r.violations.front(); }

}  // namespace

TEST_CASE("repair returns leaked bytes to the free lists and the map then reuses them") {
  SegmentGuard g;
  {
    Map m = Map::create(g.name(), small_options());
    REQUIRE(m.insert("k", "v") == Status::ok);
  }
  // A writer killed between carving a block and publishing it leaves this.
  edit_header(shm_file(g.name()), [](SegmentHeader& h) { h.arena_top.value += 48; });
  Map m = Map::open(g.name());
  REQUIRE(m.fsck().leaked_bytes == 48);
  const FsckReport r = m.repair();
  INFO(first_violation(r));
  CHECK(r.ok);
  CHECK(r.leaked_bytes == 0);
  CHECK(r.free_bytes == 48);
  CHECK(m.get("k") == "v");
  // A 48-byte record (8 header + 8 key + 32 value) takes the reclaimed block:
  // nothing new is carved.
  const std::uint64_t carved = m.stats().arena_carved;
  REQUIRE(m.insert("kkkkkkkk", std::string(32, 'x')) == Status::ok);
  CHECK(m.stats().arena_carved == carved);
  check_quiescent(m);
}

TEST_CASE("repair fixes broken free lists and drifted counters") {
  SegmentGuard g;
  {
    Map m = Map::create(g.name(), small_options());
    for (int i = 0; i < 50; ++i) REQUIRE(m.insert_or_assign("k" + std::to_string(i), "first") == Status::inserted);
    for (int i = 0; i < 50; ++i) REQUIRE(m.insert_or_assign("k" + std::to_string(i), "second") == Status::assigned);
  }
  edit_segment(shm_file(g.name()), [](char* base, std::size_t) {
    auto* h = reinterpret_cast<SegmentHeader*>(base);
    h->live_keys.value += 7;
    h->used_slots.value -= 3;
    for (auto& sc : h->classes) {
      const shmap::detail::FreeHead head{sc.head};
      if (head.ref() == 0) continue;
      auto* node = reinterpret_cast<std::uint64_t*>(base + h->fixed.arena_offset + head.ref() * 8);
      node[1] = head.ref();  // a cycle
    }
  });
  Map m = Map::open(g.name());
  REQUIRE_FALSE(m.fsck().ok);
  const FsckReport r = m.repair();
  INFO(first_violation(r));
  CHECK(r.ok);
  CHECK(m.size() == 50);
  for (int i = 0; i < 50; ++i) CHECK(m.get("k" + std::to_string(i)) == "second");
  check_quiescent(m);
}

TEST_CASE("repair refuses damage to the index itself and writes nothing") {
  SegmentGuard g;
  { Map m = Map::create(g.name(), small_options()); REQUIRE(m.insert("k", "v") == Status::ok); }
  edit_segment(shm_file(g.name()), [](char* base, std::size_t) {
    auto* h = reinterpret_cast<SegmentHeader*>(base);
    auto* index = reinterpret_cast<std::uint64_t*>(base + h->fixed.index_offset);
    for (std::uint64_t i = 0; i < h->fixed.index_slots; ++i)
      if (index[i]) index[i] ^= std::uint64_t{1} << shmap::detail::SlotWord::kFpShift;  // wrong fingerprint
  });
  Map m = Map::open(g.name());
  const std::uint64_t top_before = m.stats().arena_carved;
  REQUIRE_SHMAP_ERROR(m.repair(), errc::corrupt, g.name());
  CHECK(m.stats().arena_carved == top_before);
}

TEST_CASE("repair refuses while another process has the map open, and nobody waits") {
  SegmentGuard g;
  Map m = Map::create(g.name(), small_options());
  int ready[2], done[2];
  REQUIRE(::pipe(ready) == 0);
  REQUIRE(::pipe(done) == 0);
  const pid_t child = ::fork();
  REQUIRE(child >= 0);
  if (child == 0) {
    int rc = 0;
    try {
      Map cm = Map::open(g.name());
      const char c = 'r';
      rc = ::write(ready[1], &c, 1) == 1 ? 0 : 2;
      char d = 0;
      if (::read(done[0], &d, 1) != 1) rc = 3;
    } catch (...) {
      rc = 4;
    }
    _exit(rc);
  }
  char c = 0;
  REQUIRE(::read(ready[0], &c, 1) == 1);
  REQUIRE_SHMAP_ERROR(m.repair(), errc::busy, g.name());
  const char d = 'd';
  REQUIRE(::write(done[1], &d, 1) == 1);
  CHECK(wait_child(child) == 0);
  for (int fd : {ready[0], ready[1], done[0], done[1]}) ::close(fd);
  CHECK(m.repair().ok);  // the child detached when it closed its handle
}

TEST_CASE("a second handle in the same process also makes repair refuse") {
  SegmentGuard g;
  Map m = Map::create(g.name(), small_options());
  Map other = Map::open(g.name());
  REQUIRE_SHMAP_ERROR(m.repair(), errc::busy, g.name());
}

TEST_CASE("after writers are SIGKILLed at random moments, repair leaves a clean map with every key intact") {
  SegmentGuard g;
  Map m = Map::create(g.name(), small_options(4096, 8 << 20));
  std::mt19937_64 rng(12345);
  const int rounds = 30 / kSlowdown;
  for (int round = 0; round < rounds; ++round) {
    const pid_t child = ::fork();
    REQUIRE(child >= 0);
    if (child == 0) {
      Map cm = Map::open(g.name());
      for (std::uint64_t i = 0;; ++i) {
        const std::string key = "k" + std::to_string(i % 500);
        switch (i % 4) {
          case 0: (void)cm.insert_or_assign(key, pattern_value(i, std::size_t(i % 700))); break;
          case 1: cm.erase(key); break;
          case 2: (void)cm.fetch_add("counter", 1); break;
          default: (void)cm.insert(key, pattern_value(i, 24)); break;
        }
      }
    }
    ::usleep(static_cast<useconds_t>(1000 + rng() % 20000));
    REQUIRE(::kill(child, SIGKILL) == 0);
    REQUIRE(wait_child(child) == 128 + SIGKILL);
  }
  // The killed writers' entries are released by repair's own reaping.
  const FsckReport before = m.fsck();
  WARN("before repair: fsck " << (before.ok ? "clean" : "reported damage") << ", leaked " << before.leaked_bytes
                               << " bytes: " << first_violation(before));
  const FsckReport r = m.repair();
  INFO("before repair: " << first_violation(before) << "; after: " << first_violation(r));
  CHECK(r.ok);
  CHECK(r.leaked_bytes == 0);
  // Every key still reads back as a well-formed value.
  int bad = 0;
  m.for_each([&](std::string_view key, std::string_view value) {
    if (key != "counter" && key.substr(0, 1) != "k") ++bad;
    if (key == "counter" && value.size() != 8) ++bad;
  });
  CHECK(bad == 0);
  check_quiescent(m);
}

TEST_CASE("repair cuts a free stretch larger than the largest size class into valid blocks") {
  SegmentGuard g;
  { Map m = Map::create(g.name(), small_options(1024, 16 << 20)); REQUIRE(m.insert("k", "v") == Status::ok); }
  // 3 MiB carved and never written (zero headers): more than the largest class.
  edit_header(shm_file(g.name()), [](SegmentHeader& h) { h.arena_top.value += 3 << 20; });
  Map m = Map::open(g.name());
  REQUIRE(m.fsck().leaked_bytes == (3u << 20));
  const FsckReport r = m.repair();
  INFO(first_violation(r));
  CHECK(r.ok);
  CHECK(r.leaked_bytes == 0);
  CHECK(r.free_bytes == (3u << 20));
  CHECK(m.get("k") == "v");
  check_quiescent(m);
}

TEST_CASE("repair keeps old blocks where their headers say they are, and frees them exactly") {
  SegmentGuard g;
  Map m = Map::create(g.name(), small_options(1024, 16 << 20));
  for (int i = 0; i < 40; ++i) REQUIRE(m.insert_or_assign("big" + std::to_string(i), std::string(64 << 10, 'x')) == Status::inserted);
  for (int i = 0; i < 40; ++i) REQUIRE(m.insert_or_assign("big" + std::to_string(i), "small") == Status::assigned);
  const FsckReport before = m.fsck();
  REQUIRE(before.ok);
  const FsckReport r = m.repair();
  INFO(first_violation(r));
  CHECK(r.ok);
  CHECK(r.free_blocks == before.free_blocks);
  CHECK(r.free_bytes == before.free_bytes);
  check_quiescent(m);
}

namespace {

// Forks writers that churn on `name` and SIGKILLs them until a read-only fsck
// shows leaked bytes (a kill between allocating and publishing, or between
// unlinking and freeing). Returns the leaked bytes seen.
std::uint64_t kill_writers_until_leak(const std::string& name) {
  shmap::Options ro;
  ro.read_only = true;
  std::mt19937_64 rng(99);
  for (int round = 0; round < 200; ++round) {
    const pid_t child = ::fork();
    REQUIRE(child >= 0);
    if (child == 0) {
      Map cm = Map::open(name);
      for (std::uint64_t i = 0;; ++i) (void)cm.insert_or_assign("k" + std::to_string(i % 300), pattern_value(i, i % 200));
    }
    ::usleep(static_cast<useconds_t>(500 + rng() % 5000));
    REQUIRE(::kill(child, SIGKILL) == 0);
    REQUIRE(wait_child(child) == 128 + SIGKILL);
    const std::uint64_t leaked = Map::open(name, ro).fsck().leaked_bytes;
    if (leaked > 0) return leaked;
  }
  FAIL("200 SIGKILLed writers leaked nothing");
  return 0;
}

}  // namespace

TEST_CASE("a writable open that finds writers died attached, with nobody else attached, repairs the map") {
  SegmentGuard g;
  { Map m = Map::create(g.name(), small_options(1024, 8 << 20)); }
  REQUIRE(kill_writers_until_leak(g.name()) > 0);
  Map m = Map::open(g.name());
  const FsckReport r = m.fsck();
  INFO(first_violation(r));
  CHECK(r.ok);
  CHECK(r.leaked_bytes == 0);
  check_quiescent(m);
}

TEST_CASE("repair_on_open = false leaves what dead writers leaked for an explicit repair") {
  SegmentGuard g;
  { Map m = Map::create(g.name(), small_options(1024, 8 << 20)); }
  const std::uint64_t leaked = kill_writers_until_leak(g.name());
  shmap::Options no_auto;
  no_auto.repair_on_open = false;
  Map m = Map::open(g.name(), no_auto);
  CHECK(m.fsck().leaked_bytes == leaked);
  const FsckReport r = m.repair();
  CHECK(r.ok);
  CHECK(r.leaked_bytes == 0);
}

TEST_CASE("an open that finds a dead writer while another process is attached does not repair, and still opens") {
  SegmentGuard g;
  Map holder = Map::create(g.name(), small_options(1024, 8 << 20));
  const std::uint64_t leaked = kill_writers_until_leak(g.name());
  Map m = Map::open(g.name());  // holder is attached: repair is skipped (busy)
  CHECK(m.fsck().leaked_bytes == leaked);
}
