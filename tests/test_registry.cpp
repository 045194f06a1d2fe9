// The registry: one entry per thread writing through a writable handle (the
// opening thread's claimed at open, lowest entry first, reused by the next
// thread of the handle once its thread exits, all released with the handle),
// a process killed while attached is recovered by the next open, inherited
// handles re-attach under the child's pid, and read-only handles never register.
#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <string>
#include <thread>
#include <vector>

#include "support.hpp"

using shmap::Map;
using shmap::ProcessInfo;
using shmap::Status;
using namespace shmap_test;

namespace {

std::size_t count_pid(const std::vector<ProcessInfo>& ps, pid_t pid) {
  return std::size_t(std::count_if(ps.begin(), ps.end(), [&](const ProcessInfo& p) { return p.pid == pid; }));
}

}  // namespace

TEST_CASE("a writable handle is listed with this process's pid while it is open, and not after") {
  SegmentGuard g;
  {
    Map m = Map::create(g.name(), small_options());
    const auto ps = m.processes();
    REQUIRE(ps.size() == 1);
    CHECK(ps[0].pid == ::getpid());
    CHECK(ps[0].alive);
    CHECK(ps[0].attached_unix_ns > 0);
    {
      Map second = Map::open(g.name());
      CHECK(count_pid(m.processes(), ::getpid()) == 2);
    }
    CHECK(count_pid(m.processes(), ::getpid()) == 1);
  }
  shmap::Options ro;
  ro.read_only = true;
  CHECK(Map::open(g.name(), ro).processes().empty());
}

TEST_CASE("each thread writing through a handle claims its own entry, lowest first, listed with its tid") {
  SegmentGuard g;
  {
    Map m = Map::create(g.name(), small_options());
    const auto at_open = m.processes();
    REQUIRE(at_open.size() == 1);
    CHECK(at_open[0].entry == 0);
    CHECK(at_open[0].pid == ::getpid());
    CHECK(at_open[0].tid == ::gettid());
    CHECK(at_open[0].alive);
    CHECK_FALSE(at_open[0].recovering);

    // Reading claims nothing; the thread's first write claims the next entry.
    std::vector<ProcessInfo> after_read, after_write;
    pid_t first_tid = 0;
    std::thread([&] {
      first_tid = ::gettid();
      (void)m.get("from-thread");
      after_read = m.processes();
      (void)m.insert("from-thread", "1");
      after_write = m.processes();
    }).join();
    CHECK(after_read.size() == 1);
    REQUIRE(after_write.size() == 2);
    CHECK(after_write[1].entry == 1);
    CHECK(after_write[1].pid == ::getpid());
    CHECK(after_write[1].tid == first_tid);
    CHECK(after_write[1].alive);

    // The exited thread's entry stays with the handle, and the next thread
    // that writes through the handle takes it over instead of a new one.
    CHECK(m.processes().size() == 2);
    std::vector<ProcessInfo> reused;
    pid_t second_tid = 0;
    std::thread([&] {
      second_tid = ::gettid();
      (void)m.insert("from-second-thread", "2");
      reused = m.processes();
    }).join();
    REQUIRE(reused.size() == 2);
    CHECK(reused[1].entry == 1);
    CHECK(reused[1].tid == second_tid);

    // Another handle's opening thread claims the lowest free entry.
    {
      Map second = Map::open(g.name());
      const auto ps = second.processes();
      REQUIRE(ps.size() == 3);
      CHECK(ps[2].entry == 2);
      CHECK(ps[2].tid == ::gettid());
    }
    CHECK(m.processes().size() == 2);
    CHECK(m.get("from-thread") == "1");
    CHECK(m.get("from-second-thread") == "2");
  }
  // Destroying the handle released every entry it held.
  shmap::Options ro;
  ro.read_only = true;
  CHECK(Map::open(g.name(), ro).processes().empty());
}

TEST_CASE("a read-only handle does not register") {
  SegmentGuard g;
  Map writer = Map::create(g.name(), small_options());
  shmap::Options ro;
  ro.read_only = true;
  Map reader = Map::open(g.name(), ro);
  CHECK(writer.processes().size() == 1);
  CHECK(reader.processes().size() == 1);
}

TEST_CASE("a process killed while attached is listed as dead, then recovered by the next open") {
  SegmentGuard g;
  Map m = Map::create(g.name(), small_options());
  int ready[2];
  REQUIRE(::pipe(ready) == 0);
  const pid_t child = ::fork();
  REQUIRE(child >= 0);
  if (child == 0) {
    try {
      Map cm = Map::open(g.name());
      (void)cm.insert("child", "was here");
      const char c = 'r';
      (void)!::write(ready[1], &c, 1);
      for (;;) ::pause();
    } catch (...) {
      _exit(3);
    }
  }
  char c = 0;
  REQUIRE(::read(ready[0], &c, 1) == 1);
  ::close(ready[0]);
  ::close(ready[1]);
  CHECK(count_pid(m.processes(), child) == 1);
  REQUIRE(::kill(child, SIGKILL) == 0);
  REQUIRE(wait_child(child) == 128 + SIGKILL);
  const auto after_kill = m.processes();
  REQUIRE(count_pid(after_kill, child) == 1);
  for (const auto& p : after_kill)
    if (p.pid == child) CHECK_FALSE(p.alive);
  { Map reopened = Map::open(g.name()); }
  CHECK(count_pid(m.processes(), child) == 0);
  CHECK(count_pid(m.processes(), ::getpid()) == 1);
}

TEST_CASE("a handle inherited through fork attaches under the child's pid at its first write") {
  SegmentGuard g;
  Map m = Map::create(g.name(), small_options());
  const pid_t child = spawn([&] {
    (void)m.insert("from-child", "x");
    const auto ps = m.processes();
    const bool child_listed = count_pid(ps, ::getpid()) == 1;
    const bool parent_kept = count_pid(ps, ::getppid()) == 1;
    return child_listed && parent_kept ? 0 : 1;
  });
  CHECK(wait_child(child) == 0);
  // The child left with _exit (no destructors): its entry stays until reaped,
  // and the parent's entry was never touched by the child.
  CHECK(count_pid(m.processes(), ::getpid()) == 1);
  CHECK(count_pid(m.processes(), child) == 1);
  { Map reopened = Map::open(g.name()); }
  CHECK(count_pid(m.processes(), child) == 0);
  CHECK(count_pid(m.processes(), ::getpid()) == 1);
  CHECK(m.get("from-child") == "x");
}

TEST_CASE("attaching when every registry entry belongs to a live process fails with too_many_processes") {
  SegmentGuard g;
  Map first = Map::create(g.name(), small_options());
  std::vector<Map> handles;
  for (std::uint32_t i = 1; i < shmap::detail::kRegistryEntries; ++i) handles.push_back(Map::open(g.name()));
  REQUIRE(first.processes().size() == shmap::detail::kRegistryEntries);
  REQUIRE_SHMAP_ERROR(Map::open(g.name()), shmap::errc::too_many_processes, g.name());
  handles.pop_back();
  CHECK_NOTHROW(Map::open(g.name()));
}
