// Forked processes while the index migrates: growth from 16 slots under four
// inserting processes, reader processes that must never miss a key, and
// writers SIGKILLed at random in the middle of growth.
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdint>
#include <random>
#include <string>
#include <vector>

#include "support.hpp"

using shmap::FsckReport;
using shmap::Map;
using shmap::Status;
using namespace shmap_test;

namespace {

constexpr int kProcs = 4;

std::string key(int p, int i) {
  return "p" + std::to_string(p) + "-" + std::to_string(i);
}
std::string value(int p, int i) {
  return pattern_value(std::uint64_t(p) * 10'000'000 + std::uint64_t(i), 8 + i % 17);
}

// Forks n children that open `name`, wait at the gate, run body(c, map), and
// exit with its result. Returns the exit codes and the seconds from the
// release to the last exit.
template <class F>
std::pair<std::vector<int>, double> race(int n, const std::string& name, F&& body) {
  double seconds = 0;
  std::vector<int> codes = run_children(n, name, std::forward<F>(body), &seconds);
  return {codes, seconds};
}

}  // namespace

TEST_CASE("four processes growing a 16-slot map to a million keys at once leave every key with its value") {
  const int per_proc = 250'000 / kSlowdown;
  const auto fill = [&](int c, Map& m) -> int {
    for (int i = 0; i < per_proc; ++i)
      if (m.insert(key(c, i), value(c, i)) != Status::ok) return 1;
    return 0;
  };
  SegmentGuard grown, presized;
  Map m = Map::create(grown.name(), small_options(12, 0, std::uint64_t{1} << 30));
  REQUIRE(m.stats().index_slots == 16);
  const auto [codes, seconds] = race(kProcs, grown.name(), fill);
  for (int c : codes) CHECK(c == 0);
  // The same inserts into a map sized for them from the start, for the time.
  Map p = Map::create(presized.name(), small_options(std::uint64_t(kProcs) * per_proc, 0, std::uint64_t{1} << 30));
  const auto [pcodes, pseconds] = race(kProcs, presized.name(), fill);
  for (int c : pcodes) CHECK(c == 0);
  const shmap::Stats s = m.stats();
  WARN("growth: " << kProcs * per_proc << " keys from 4 processes into a 16-slot map in " << seconds << " s ("
                  << s.migrations << " migrations, " << s.index_slots << " slots at the end); into a presized map "
                  << pseconds << " s");
  CHECK(m.size() == std::uint64_t(kProcs) * per_proc);
  CHECK(s.index_slots > std::uint64_t(kProcs) * per_proc);  // from 16 slots
  CHECK(s.grown >= 5);
  int wrong = 0;
  for (int c = 0; c < kProcs; ++c)
    for (int i = 0; i < per_proc; ++i)
      if (m.get(key(c, i)) != value(c, i)) ++wrong;
  CHECK(wrong == 0);
  const FsckReport f = m.fsck();
  INFO((f.violations.empty() ? std::string("clean") : f.violations.front()));
  CHECK(f.ok);
  CHECK(f.leaked_bytes == 0);
  CHECK(f.unretired_tables == 0);
}

TEST_CASE("reader processes never miss a key while writer processes grow and rebuild the map") {
  constexpr int kStable = 400;
  const int rounds = 60'000 / kSlowdown;
  SegmentGuard g;
  shmap::Options o = small_options(12);
  o.help_slots = 16;  // migrations span many writes: readers meet them half done
  Map m = Map::create(g.name(), o);
  for (int k = 0; k < kStable; ++k) REQUIRE(m.insert("stable" + std::to_string(k), pattern_value(k, 20)) == Status::ok);
  // Two writers grow their keys to 3000 each, churn them, then erase them
  // (growth, same-size rebuilds, a shrink); two readers read the stable keys
  // (through read-only handles) until the writers' "done" counter says 2.
  const auto [codes, seconds] = race(kProcs, g.name(), [&](int c, Map& w) -> int {
    if (c < 2) {
      const std::string p = "w" + std::to_string(c) + "-";
      for (int i = 0; i < rounds; ++i) {
        if (w.insert(p + std::to_string(i), "x") != Status::ok) return 1;
        if (i >= 3000 && !w.erase(p + std::to_string(i - 3000))) return 2;
      }
      for (int i = rounds - 3000; i < rounds; ++i)
        if (!w.erase(p + std::to_string(i))) return 3;
      return shmap::succeeded(w.fetch_add("done", 1).status) ? 0 : 4;
    }
    shmap::Options ro;
    ro.read_only = true;
    const Map r = Map::open(g.name(), ro);
    std::string v;
    std::int64_t done = 0;
    std::uint64_t reads = 0;
    while ((r.get_as("done", done) == Status::ok ? done : 0) < 2) {
      for (int k = 0; k < kStable; ++k, ++reads)
        if (!r.get("stable" + std::to_string(k), v) || v != pattern_value(k, 20)) return 10;
    }
    return reads > 0 ? 0 : 11;
  });
  for (int c : codes) CHECK(c == 0);
  const shmap::Stats s = m.stats();
  WARN("readers during migration: " << s.migrations << " migrations (" << s.grown << " grown, " << s.shrunk
                                    << " shrunk) in " << seconds << " s, no key missed");
  CHECK(s.migrations >= 10);
  CHECK(m.size() == std::uint64_t(kStable) + 1);
  check_quiescent(m);
}

TEST_CASE("writers killed at random while the map grows lose no acknowledged key") {
  const int rounds_of_kills = 12 / kSlowdown;
  // Under ASan (a Debug build, some 10x slower) each writer inserts a quarter
  // as many keys, so the test stays well inside its timeout on two busy
  // cores; every round still grows the index and kills one writer mid-way.
  const int per_writer = 40000 / int(kChurnSlowdown > 1 ? 4 : 1);
  SegmentGuard g;
  shmap::Options o = small_options(12);
  o.help_slots = 32;
  Map m = Map::create(g.name(), o);
  std::mt19937_64 rng(20261202);
  int kills = 0, next_writer = 0;
  std::vector<std::pair<int, int>> acked;  // {writer, count acknowledged}
  for (int round = 0; round < rounds_of_kills; ++round) {
    // Three writers insert their own keys and acknowledge each one on a pipe;
    // one of them is killed after a random delay measured in acknowledgements.
    int pipes[3][2];
    std::vector<pid_t> pids;
    std::vector<int> ids;
    for (int w = 0; w < 3; ++w) {
      REQUIRE(::pipe(pipes[w]) == 0);
      const int id = next_writer++;
      ids.push_back(id);
      pids.push_back(spawn([&, w, id]() -> int {
        ::close(pipes[w][0]);
        Map c = Map::open(g.name());
        for (int i = 0; i < per_writer; ++i) {
          if (c.insert(key(id, i), value(id, i)) != Status::ok) return 1;
          if (!write_all(pipes[w][1], &i, sizeof i)) return 2;
        }
        return 0;
      }));
      ::close(pipes[w][1]);
    }
    const int victim = int(rng() % 3);
    const int kill_after = per_writer / 20 + int(rng() % std::uint64_t(per_writer / 2));
    for (int w = 0; w < 3; ++w) {
      int last = -1, i = 0;
      while (read_all(pipes[w][0], &i, sizeof i)) {
        last = i;
        if (w == victim && last + 1 == kill_after) {
          ::kill(pids[std::size_t(w)], SIGKILL);
          ++kills;
          break;
        }
      }
      ::close(pipes[w][0]);
      acked.push_back({ids[std::size_t(w)], last + 1});
    }
    for (int w = 0; w < 3; ++w) {
      const int code = wait_child(pids[std::size_t(w)]);
      if (w == victim)
        CHECK((code == 128 + SIGKILL || code == 0));
      else
        CHECK(code == 0);
    }
  }
  // A survivor recovers the dead writers and finishes what they left.
  (void)m.recover();
  for (const auto& p : m.processes()) CHECK(p.alive);
  int lost = 0;
  for (const auto& [id, n] : acked)
    for (int i = 0; i < n; ++i)
      if (m.get(key(id, i)) != value(id, i)) ++lost;
  CHECK(lost == 0);
  const FsckReport f = m.fsck();
  INFO((f.violations.empty() ? std::string("clean") : f.violations.front()));
  CHECK(f.ok);
  CHECK(f.leaked_bytes == 0);
  CHECK(f.unretired_tables == 0);
  CHECK_FALSE(m.stats().migrating);
  WARN("random kills during growth: " << kills << " writers killed, " << m.stats().migrations
                                      << " migrations, no acknowledged key lost");
  check_quiescent(m);
}
