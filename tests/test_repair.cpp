// repair(): rebuilds free lists and counters from the index when the map is
// quiet (forged damage: leaked bytes, broken lists, drifted counter shares),
// and refuses to run beside other attached processes or other writing threads
// of its handle (and makes them wait for nothing: they fail fast).
// recover(): writers SIGKILLed while attached are recovered online, by the
// next writable open or an explicit recover(), with other processes attached:
// exactly what they held goes back to the free lists.
#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <random>
#include <string>
#include <thread>

#include "support.hpp"

using shmap::errc;
using shmap::FsckReport;
using shmap::Map;
using shmap::ProcessInfo;
using shmap::RecoverReport;
using shmap::Status;
using shmap::detail::SegmentHeader;
using namespace shmap_test;

namespace {

std::string first_violation(const FsckReport& r) { return r.violations.empty() ? "clean" : r.violations.front(); }

bool mentions(const FsckReport& r, const std::string& needle) {
  return std::any_of(r.violations.begin(), r.violations.end(),
                     [&](const std::string& v) { return v.find(needle) != std::string::npos; });
}

std::size_t dead_entries(const std::vector<ProcessInfo>& ps) {
  return std::size_t(std::count_if(ps.begin(), ps.end(), [](const ProcessInfo& p) { return !p.alive; }));
}

std::size_t live_entries_of(const std::vector<ProcessInfo>& ps, pid_t pid) {
  return std::size_t(std::count_if(ps.begin(), ps.end(), [&](const ProcessInfo& p) { return p.pid == pid && p.alive; }));
}

// Another process with the map open through a writable handle (and a write
// of its own) until finish(), which lets it write once more and close the
// handle normally.
class AttachedChild {
 public:
  explicit AttachedChild(const std::string& name) {
    REQUIRE(::pipe(ready_) == 0);
    REQUIRE(::pipe(go_) == 0);
    pid_ = spawn([&] {
      ::close(ready_[0]);
      ::close(go_[1]);
      const std::string key = "attached-" + std::to_string(::getpid());
      Map cm = Map::open(name);
      if (cm.insert(key, "1") != Status::ok) return 2;
      const char c = 'r';
      if (!write_all(ready_[1], &c, 1)) return 3;
      char d = 0;
      if (!read_all(go_[0], &d, 1)) return 4;
      if (cm.insert_or_assign(key, "2") != Status::assigned) return 5;
      return 0;
    });
    ::close(ready_[1]);
    ready_[1] = -1;
    ::close(go_[0]);
    go_[0] = -1;
    char c = 0;
    if (!read_all(ready_[0], &c, 1)) {
      ::kill(pid_, SIGKILL);
      const int rc = wait_child(pid_);
      pid_ = -1;
      FAIL("the attached child did not start (exit " << rc << ")");
    }
  }
  AttachedChild(const AttachedChild&) = delete;
  AttachedChild& operator=(const AttachedChild&) = delete;
  ~AttachedChild() {
    if (pid_ > 0) {
      ::kill(pid_, SIGKILL);
      (void)wait_child(pid_);
    }
    for (int fd : {ready_[0], ready_[1], go_[0], go_[1]})
      if (fd >= 0) ::close(fd);
  }
  pid_t pid() const { return pid_; }
  std::string key() const { return "attached-" + std::to_string(pid_); }
  // Lets the child write again and close its handle; returns its exit code (0: all went well).
  int finish() {
    const char d = 'g';
    const bool sent = write_all(go_[1], &d, 1);
    const int rc = wait_child(pid_);
    pid_ = -1;
    return sent ? rc : -3;
  }

 private:
  pid_t pid_ = -1;
  int ready_[2] = {-1, -1};
  int go_[2] = {-1, -1};
};

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
  const FsckReport before = m.fsck();
  REQUIRE(before.leaked_bytes == 48);
  const FsckReport r = m.repair();
  INFO(first_violation(r));
  CHECK(r.ok);
  CHECK(r.leaked_bytes == 0);
  // Exactly the leaked bytes became free (the rest of the chunk "k" was carved
  // from was free already, in the pool).
  CHECK(r.free_bytes == before.free_bytes + 48);
  CHECK(r.carved_bytes == before.carved_bytes);
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
  Map m = Map::create(g.name(), small_options());
  for (int i = 0; i < 50; ++i) REQUIRE(m.insert_or_assign("k" + std::to_string(i), "first") == Status::inserted);
  for (int i = 0; i < 50; ++i) REQUIRE(m.insert_or_assign("k" + std::to_string(i), "second") == Status::assigned);
  // Damage the (quiet) writer's own entry: its live share drifts, then its
  // free lists (which hold the replaced records) loop back on themselves.
  const std::uint32_t mine = own_entry(m);
  edit_segment(shm_file(g.name()), [&](char* base, std::size_t) {
    shmap::detail::RegistryEntry& e = registry_of(base)[mine];
    e.live += 7;
  });
  CHECK(m.size() == 57);
  const FsckReport drifted = m.fsck();
  CHECK(mentions(drifted, "live-key shares sum to 57, the index has 50 live slots"));
  int looped = 0;
  edit_entry(shm_file(g.name()), mine, [&](shmap::detail::RegistryEntry& e, char* base) {
    for (std::uint32_t c = 0; c < shmap::detail::kClasses; ++c) {
      const std::uint32_t head = e.head[c];
      if (head == 0) continue;
      arena_block(base, head)[1] = head;  // a cycle
      ++looped;
    }
  });
  REQUIRE(looped > 0);
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
    const RawTable t = current_table(base);
    for (std::uint64_t i = 0; i < t.size; ++i)
      if (t.slots[i]) t.slots[i] ^= std::uint64_t{1} << shmap::detail::SlotWord::kFpShift;  // wrong fingerprint
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

TEST_CASE("another thread writing through the same handle makes repair refuse until it exits") {
  SegmentGuard g;
  Map m = Map::create(g.name(), small_options());
  std::atomic<int> stage{0};
  bool wrote = false;
  std::thread t([&] {
    wrote = m.insert("from-thread", "x") == Status::ok;  // claims the thread's own entry
    stage.store(1);
    stage.notify_all();
    stage.wait(1);  // holds its entry until told to exit
  });
  stage.wait(0);
  CHECK(live_entries_of(m.processes(), ::getpid()) == 2);
  const auto refused = error_of([&] { (void)m.repair(); });
  stage.store(2);
  stage.notify_all();
  t.join();
  CHECK(wrote);
  REQUIRE(refused.has_value());
  CHECK(refused->code() == shmap::make_error_code(errc::busy));
  // The exited thread's entry went idle in the handle; repair releases it.
  const FsckReport r = m.repair();
  INFO(first_violation(r));
  CHECK(r.ok);
  CHECK(live_entries_of(m.processes(), ::getpid()) == 1);
  CHECK(m.get("from-thread") == "x");
  check_quiescent(m);
}

TEST_CASE("writers SIGKILLed at random moments are recovered online: the map ends clean with every key intact") {
  SegmentGuard g;
  // This process stays attached the whole time: every recovery below is online.
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
  // Each child's open recovered the writer killed before it; only the last
  // one (if it got as far as claiming an entry) is left.
  const std::size_t dead = dead_entries(m.processes());
  CHECK(dead <= 1);
  // A read-only view of that state: no damage, nothing leaked, and exactly
  // what recover() is about to return.
  shmap::Options ro;
  ro.read_only = true;
  const FsckReport before = Map::open(g.name(), ro).fsck();
  INFO("before recover: " << first_violation(before));
  CHECK(before.ok);
  CHECK(before.leaked_bytes == 0);
  CHECK(before.dead_entries == dead);
  const RecoverReport rec = m.recover();
  CHECK(rec.entries == dead);
  CHECK(rec.bytes_returned == before.recoverable_bytes);
  CHECK(dead_entries(m.processes()) == 0);
  const FsckReport r = m.fsck();
  INFO("before recover: " << first_violation(before) << "; after: " << first_violation(r));
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
  // Recovery was exact: a rebuild from the index finds no more free bytes.
  const FsckReport rebuilt = m.repair();
  INFO("after repair: " << first_violation(rebuilt));
  CHECK(rebuilt.ok);
  CHECK(rebuilt.free_bytes == r.free_bytes);
  CHECK(rebuilt.reachable_bytes == r.reachable_bytes);
}

TEST_CASE("repair cuts a free stretch larger than the largest size class into valid blocks") {
  SegmentGuard g;
  { Map m = Map::create(g.name(), small_options(1024, 16 << 20)); REQUIRE(m.insert("k", "v") == Status::ok); }
  // 3 MiB carved and never written (zero headers): more than the largest class.
  edit_header(shm_file(g.name()), [](SegmentHeader& h) { h.arena_top.value += 3 << 20; });
  Map m = Map::open(g.name());
  const FsckReport before = m.fsck();
  REQUIRE(before.leaked_bytes == (3u << 20));
  const FsckReport r = m.repair();
  INFO(first_violation(r));
  CHECK(r.ok);
  CHECK(r.leaked_bytes == 0);
  CHECK(r.free_bytes == before.free_bytes + (3u << 20));
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
// shows recoverable bytes (a kill between allocating and publishing, or
// between unlinking and freeing). Returns the recoverable bytes seen; checks
// that each fsck on the way finds no damage and no leak.
std::uint64_t kill_writers_until_recoverable(const std::string& name) {
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
    const FsckReport r = Map::open(name, ro).fsck();
    INFO("fsck after kill " << round << ": " << first_violation(r));
    REQUIRE(r.ok);
    REQUIRE(r.leaked_bytes == 0);
    if (r.recoverable_bytes > 0) return r.recoverable_bytes;
  }
  FAIL("200 SIGKILLed writers held nothing");
  return 0;
}

}  // namespace

TEST_CASE("a writable open recovers writers that died attached: the map is clean, nothing leaked") {
  SegmentGuard g;
  { Map m = Map::create(g.name(), small_options(1024, 8 << 20)); }
  REQUIRE(kill_writers_until_recoverable(g.name()) > 0);
  Map m = Map::open(g.name());
  const FsckReport r = m.fsck();
  INFO(first_violation(r));
  CHECK(r.ok);
  CHECK(r.leaked_bytes == 0);
  CHECK(dead_entries(m.processes()) == 0);
  check_quiescent(m);
}

TEST_CASE(
    "recover_on_open = false leaves the dead writer's entry for an explicit recover(), which returns exactly "
    "what fsck said it would, with another process attached") {
  SegmentGuard g;
  { Map m = Map::create(g.name(), small_options(1024, 8 << 20)); }
  AttachedChild holder(g.name());
  const std::uint64_t leaked = kill_writers_until_recoverable(g.name());
  shmap::Options no_auto;
  no_auto.recover_on_open = false;
  Map m = Map::open(g.name(), no_auto);
  const FsckReport before = m.fsck();
  INFO("before recover: " << first_violation(before));
  CHECK(before.ok);  // a dead attachment is not damage
  CHECK(before.leaked_bytes == 0);
  CHECK(before.recoverable_bytes == leaked);
  CHECK(before.dead_entries == 1);
  CHECK(dead_entries(m.processes()) == 1);
  const RecoverReport rec = m.recover();
  CHECK(rec.entries == 1);
  CHECK(rec.blocks_returned > 0);
  CHECK(rec.bytes_returned == leaked);
  const FsckReport r = m.fsck();
  INFO("after recover: " << first_violation(r));
  CHECK(r.ok);
  CHECK(r.leaked_bytes == 0);
  CHECK(r.free_bytes == before.free_bytes + leaked);
  CHECK(dead_entries(m.processes()) == 0);
  // Online: the other process stayed attached throughout, and keeps working.
  CHECK(live_entries_of(m.processes(), holder.pid()) == 1);
  const std::string holder_key = holder.key();
  CHECK(holder.finish() == 0);
  CHECK(m.get(holder_key) == "2");
  CHECK(m.recover().entries == 0);  // nothing left to recover
  check_quiescent(m);
}

TEST_CASE("an open that finds a dead writer while other processes are attached recovers it online, and they keep "
          "working") {
  SegmentGuard g;
  Map same_process = Map::create(g.name(), small_options(1024, 8 << 20));
  REQUIRE(same_process.insert("held", "1") == Status::ok);
  AttachedChild other(g.name());
  REQUIRE(kill_writers_until_recoverable(g.name()) > 0);
  Map m = Map::open(g.name());  // others are attached: recovered online all the same
  const FsckReport r = same_process.fsck();
  INFO(first_violation(r));
  CHECK(r.ok);
  CHECK(r.leaked_bytes == 0);
  const auto ps = m.processes();
  CHECK(dead_entries(ps) == 0);
  CHECK(live_entries_of(ps, other.pid()) == 1);
  CHECK(live_entries_of(ps, ::getpid()) == 2);
  CHECK(same_process.insert_or_assign("held", "2") == Status::assigned);
  const std::string other_key = other.key();
  CHECK(other.finish() == 0);
  CHECK(m.get(other_key) == "2");
  CHECK(m.get("held") == "2");
  check_quiescent(m);
}

TEST_CASE("repair recovers a dead writer's entry itself, and takes over one whose intents are damaged") {
  SegmentGuard g;
  { Map m = Map::create(g.name(), small_options()); REQUIRE(m.insert("k", "v") == Status::ok); }
  // A writer dies attached; nobody recovers it before the repair.
  const pid_t child = spawn([&]() -> int {
    Map cm = Map::open(g.name());
    if (cm.insert("from-child", "x") != Status::ok) return 1;
    ::raise(SIGKILL);
    return 2;
  });
  REQUIRE(wait_child(child) == 128 + SIGKILL);
  shmap::Options manual;
  manual.recover_on_open = false;
  {
    Map m = Map::open(g.name(), manual);
    const FsckReport r = m.repair();
    INFO(first_violation(r));
    CHECK(r.ok);
    CHECK(m.get("from-child") == "x");
    for (const auto& p : m.processes()) CHECK(p.alive);
  }
  // Now one whose exchange intent is damaged: recovery cannot undo it, an
  // open still succeeds, and repair rebuilds around it.
  const pid_t child2 = spawn([&]() -> int {
    Map cm = Map::open(g.name());
    if (cm.insert("from-child-2", "y") != Status::ok) return 1;
    ::raise(SIGKILL);
    return 2;
  });
  REQUIRE(wait_child(child2) == 128 + SIGKILL);
  std::uint32_t dead_entry = shmap::detail::kRegistryEntries;
  {
    Map probe = Map::open(g.name(), manual);
    for (const auto& p : probe.processes())
      if (!p.alive) dead_entry = p.entry;
  }
  REQUIRE(dead_entry < shmap::detail::kRegistryEntries);
  edit_entry(g.file(), dead_entry, [](shmap::detail::RegistryEntry& e, char*) { e.x_kind = 99; });
  Map m = Map::open(g.name());  // its recovery meets the damage; the open succeeds
  REQUIRE_SHMAP_ERROR(m.recover(), errc::corrupt, g.name());
  CHECK_FALSE(m.fsck().ok);
  const FsckReport r = m.repair();
  INFO(first_violation(r));
  CHECK(r.ok);
  CHECK(r.leaked_bytes == 0);
  CHECK(m.get("from-child-2") == "y");
  CHECK(m.get("k") == "v");
  (void)m.recover();  // nothing left to recover, and no error
  check_quiescent(m);
}
