// Kill a writer at every step: built against shmap_faults (core compiled with
// SHMAP_FAULT_POINTS), a forked child runs one operation and SIGKILLs itself at
// its N-th fault point, for N = 1, 2, ... until the operation completes. After
// each death the parent recovers the map (repair: the map is quiet now) and
// checks that fsck is clean with zero leaked bytes, that the interrupted
// operation either took effect or did not (never half), that every other entry
// is intact, and that the map still works.
#include <signal.h>
#include <stdlib.h>
#include <unistd.h>

#include <functional>
#include <set>
#include <string>
#include <vector>

#include "support.hpp"

using shmap::FsckReport;
using shmap::Map;
using shmap::Status;
using namespace shmap_test;

namespace {

struct Scenario {
  std::string name;
  std::function<void(Map&)> op;        // run in the child
  std::string key;                     // the key the op writes
  std::optional<std::string> before;   // its value before (nullopt: absent)
  std::optional<std::string> after;    // its value after
};

const std::string kBig(300, 'B');

// The map every scenario starts from: bystanders, the scenario keys, and free
// blocks in the classes the operations allocate from (so both the pop and the
// carve paths of the allocator are reachable).
void setup(Map& m) {
  for (int i = 0; i < 40; ++i) REQUIRE(m.insert("bystander" + std::to_string(i), pattern_value(i, i * 7)) == Status::ok);
  REQUIRE(m.insert_or_assign("a", "old-a") == Status::inserted);
  REQUIRE(m.insert_or_assign("b", kBig) == Status::inserted);
  REQUIRE(m.insert_or_assign("c", "old-c") == Status::inserted);
  REQUIRE(m.fetch_add("ctr", 41).status == Status::inserted);
  REQUIRE(m.insert_or_assign("d", "gone") == Status::inserted);
  REQUIRE(m.erase("d"));
  // Leave one free block in the classes of "new-a"/"new-value" records.
  REQUIRE(m.insert_or_assign("scratch", "new-value-x") == Status::inserted);
  REQUIRE(m.insert_or_assign("scratch", "s") == Status::assigned);
}

std::vector<Scenario> scenarios() {
  return {
      {"insert a new key", [](Map& m) { (void)m.insert("n", "new-value"); }, "n", std::nullopt, "new-value"},
      {"insert over an erased key (its DELETED slot)", [](Map& m) { (void)m.insert("d", "again"); }, "d",
       std::nullopt, "again"},
      {"insert_or_assign an existing key", [](Map& m) { (void)m.insert_or_assign("a", "new-a-longer"); }, "a",
       "old-a", "new-a-longer"},
      {"erase a key with a large value (shrunk to a key-only record)", [](Map& m) { (void)m.erase("b"); }, "b", kBig,
       std::nullopt},
      {"compare_exchange a key", [](Map& m) { (void)m.compare_exchange("c", "old-c", "new-c"); }, "c", "old-c",
       "new-c"},
      {"fetch_add a counter", [](Map& m) { (void)m.fetch_add("ctr", 1); }, "ctr", i64_bytes(41), i64_bytes(42)},
  };
}

// Runs `s.op` in a child that dies at its n-th fault point. Returns the name of
// the point it died at, or "" if the operation completed.
std::string run_child(const std::string& name, const Scenario& s, int n) {
  int pipefd[2];
  REQUIRE(::pipe(pipefd) == 0);
  const pid_t child = ::fork();
  REQUIRE(child >= 0);
  if (child == 0) {
    ::close(pipefd[0]);
    ::setenv("SHMAP_KILL_AT", std::to_string(n).c_str(), 1);
    ::setenv("SHMAP_FAULT_FD", std::to_string(pipefd[1]).c_str(), 1);
    try {
      Map m = Map::open(name);
      s.op(m);
    } catch (...) {
      _exit(3);
    }
    _exit(0);
  }
  ::close(pipefd[1]);
  std::string point;
  char buf[256];
  ssize_t got;
  while ((got = ::read(pipefd[0], buf, sizeof buf)) > 0) point.append(buf, std::size_t(got));
  ::close(pipefd[0]);
  const int status = wait_child(child);
  if (status == 0) return "";
  REQUIRE(status == 128 + SIGKILL);
  REQUIRE(!point.empty());
  point.pop_back();  // the newline
  return point;
}

void check_recovered(Map& m, const Scenario& s, const std::string& point) {
  INFO("scenario: " << s.name << "; killed at: " << point);
  const FsckReport r = m.repair();
  INFO("fsck after repair: " << (r.violations.empty() ? std::string("clean") : r.violations.front()));
  REQUIRE(r.ok);
  CHECK(r.leaked_bytes == 0);
  const std::optional<std::string> now = m.get(s.key);
  CHECK((now == s.before || now == s.after));
  for (int i = 0; i < 40; ++i) CHECK(m.get("bystander" + std::to_string(i)) == pattern_value(i, i * 7));
  // Still fully usable.
  REQUIRE(m.insert_or_assign("probe", "works") == Status::inserted);
  CHECK(m.get("probe") == "works");
  CHECK(m.erase("probe"));
  check_quiescent(m);
}

}  // namespace

TEST_CASE("a writer killed at every fault point of insert, update, erase, allocation and free leaves a map that repair makes whole") {
  std::set<std::string> points_hit;
  int kills = 0;
  for (const Scenario& s : scenarios()) {
    for (int n = 1;; ++n) {
      REQUIRE(n < 100);  // every operation passes a handful of points
      SegmentGuard g;
      {
        Map m = Map::create(g.name(), small_options(1024, 1 << 20));
        setup(m);
      }
      const std::string point = run_child(g.name(), s, n);
      Map m = Map::open(g.name());
      if (point.empty()) {
        // Completed: the op took full effect.
        CHECK(m.get(s.key) == s.after);
        check_quiescent(m);
        break;
      }
      ++kills;
      points_hit.insert(point);
      check_recovered(m, s, point);
    }
  }
  // Every fault point compiled into core/ was exercised by some scenario.
  const std::set<std::string> all = {
      "allocate: popped a free block",
      "allocate: carved a new block",
      "allocate: counted, header not yet written",
      "allocate: header written",
      "prepare: key written, value not yet",
      "prepare: record written, not yet published",
      "insert: slot claimed, not yet counted",
      "insert: counted, old deleted record not yet freed",
      "update/erase: slot swapped, not yet counted",
      "update/erase: old record unlinked, not yet freed",
      "free: before the generation change",
      "free: generation odd, not yet pushed",
      "free: pushed, not yet counted",
  };
  std::string missing;
  for (const auto& p : all)
    if (!points_hit.count(p)) missing += "\n  " + p;
  INFO("fault points never reached:" << missing);
  CHECK(missing.empty());
  WARN("kill-at-every-step: " << kills << " kills at " << points_hit.size() << " distinct fault points");
}

TEST_CASE("a repair killed at any of its steps leaves a map that writers can use and the next repair makes whole") {
  std::set<std::string> points_hit;
  for (int n = 1;; ++n) {
    REQUIRE(n < 20);
    SegmentGuard g;
    {
      Map m = Map::create(g.name(), small_options(1024, 1 << 20));
      setup(m);
    }
    // Something to recover: 48 leaked bytes and a drifted counter.
    edit_header(shm_file(g.name()), [](shmap::detail::SegmentHeader& h) {
      h.arena_top.value += 48;
      h.live_keys.value += 1;
    });
    const std::string point = run_child(g.name(), Scenario{"repair", [](Map& m) { (void)m.repair(); }, "a",
                                                           "old-a", "old-a"}, n);
    if (point.empty()) break;
    points_hit.insert(point);
    INFO("repair killed at: " << point);
    // The next writer clears the dead repairer's mark and works on a map that
    // at most leaks: every entry is intact and new writes land. (Without the
    // automatic repair at open, which would otherwise run first here.)
    shmap::Options no_auto;
    no_auto.repair_on_open = false;
    Map m = Map::open(g.name(), no_auto);
    CHECK(m.get("a") == "old-a");
    for (int i = 0; i < 40; ++i) CHECK(m.get("bystander" + std::to_string(i)) == pattern_value(i, i * 7));
    for (int i = 0; i < 20; ++i) REQUIRE(m.insert_or_assign("after" + std::to_string(i), pattern_value(i, 24)) == Status::inserted);
    const FsckReport r = m.repair();
    INFO("fsck after the second repair: " << (r.violations.empty() ? std::string("clean") : r.violations.front()));
    CHECK(r.ok);
    CHECK(r.leaked_bytes == 0);
    for (int i = 0; i < 20; ++i) CHECK(m.get("after" + std::to_string(i)) == pattern_value(i, 24));
    check_quiescent(m);
  }
  CHECK(points_hit == std::set<std::string>{"repair: before taking the maintenance mark", "repair: free lists emptied",
                                            "repair: gaps cut, lists not yet installed"});
}
