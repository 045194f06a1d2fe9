// Forked processes sharing one map by name. Every child opens the map itself,
// waits at a pipe start gate (no sleeps), reports through its exit code and
// through keys of the map, and leaves with _exit (never back into Catch).
#include <signal.h>
#include <sched.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cstdint>
#include <random>
#include <set>
#include <string>
#include <vector>

#include "support.hpp"

using shmap::errc;
using shmap::Map;
using shmap::Status;
using namespace shmap_test;

namespace {

constexpr int kProcs = 4;

std::string key_of(int k) { return "key-" + std::to_string(k); }

template <class T>
std::string pack(const std::vector<T>& v) {
  return std::string(reinterpret_cast<const char*>(v.data()), v.size() * sizeof(T));
}

template <class T>
std::vector<T> unpack(const std::string& s) {
  std::vector<T> v(s.size() / sizeof(T));
  // An empty vector's data() may be null, which memcpy must not be given
  // even for zero bytes (a racer that won no key packs an empty list).
  if (!v.empty()) std::memcpy(v.data(), s.data(), v.size() * sizeof(T));
  return v;
}

}  // namespace

TEST_CASE("forked processes racing to create one name: exactly one wins and the others get already_exists") {
  constexpr int kRacers = 6;
  for (int round = 0; round < 10; ++round) {
    CAPTURE(round);
    SegmentGuard g;
    StartGate gate;
    std::vector<pid_t> pids;
    for (int c = 0; c < kRacers; ++c) {
      pids.push_back(spawn([&, c]() -> int {
        if (!gate.child_wait()) return 90;
        try {
          Map m = Map::create(g.name(), small_options());
          return m.insert("creator", std::to_string(c)) == Status::ok ? 0 : 3;
        } catch (const shmap::Error& e) {
          return e.code() == shmap::make_error_code(errc::already_exists) ? 1 : 2;
        }
      }));
    }
    REQUIRE(gate.release_when_ready(kRacers));
    std::vector<int> codes;
    for (pid_t p : pids) codes.push_back(wait_child(p));
    CAPTURE(codes);
    CHECK(std::count(codes.begin(), codes.end(), 0) == 1);
    CHECK(std::count(codes.begin(), codes.end(), 1) == kRacers - 1);
    const auto winner = std::find(codes.begin(), codes.end(), 0) - codes.begin();
    CHECK(Map::open(g.name()).get("creator") == std::to_string(winner));
  }
}

TEST_CASE("disjoint writers in forked processes all land with their exact values") {
  const int per_child = 20000 / kSlowdown;
  SegmentGuard g;
  Map m = Map::create(g.name(), small_options(std::uint64_t(kProcs) * per_child + 1000, 64 << 20));
  const auto codes = run_children(kProcs, g.name(), [&](int c, Map& cm) {
    int failures = 0;
    for (int i = 0; i < per_child; ++i)
      if (cm.insert("c" + std::to_string(c) + "-" + std::to_string(i),
                    pattern_value(std::uint64_t(c) * per_child + i, std::size_t(i % 500))) != Status::ok)
        ++failures;
    return failures == 0 ? 0 : 1;
  });
  CHECK(codes == std::vector<int>(kProcs, 0));
  CHECK(m.size() == std::uint64_t(kProcs) * per_child);
  check_disjoint_writes(
      m, kProcs, per_child, [](int c, int i) { return "c" + std::to_string(c) + "-" + std::to_string(i); },
      [&](int c, int i) { return pattern_value(std::uint64_t(c) * per_child + i, std::size_t(i % 500)); });
  check_quiescent(m);
}

TEST_CASE("a fetch_add counter contended by forked processes sums exactly and hands out every previous value once") {
  const int iterations = 50000 / kSlowdown;
  SegmentGuard g;
  // Room for each child's list of previous values (up to 400 KB each).
  Map m = Map::create(g.name(), small_options(1024, 16 << 20));
  const auto codes = run_children(kProcs, g.name(), [&](int c, Map& cm) {
    std::vector<std::int64_t> prevs;
    prevs.reserve(std::size_t(iterations));
    int inserted = 0;
    for (int i = 0; i < iterations; ++i) {
      const auto r = cm.fetch_add("counter", 1);
      if (r.status == Status::inserted)
        ++inserted;
      else if (r.status != Status::ok)
        return 1;
      prevs.push_back(r.previous);
    }
    // Exit 10 + status when recording the results fails.
    if (const Status s = cm.insert("prevs-" + std::to_string(c), pack(prevs)); s != Status::ok) return 10 + int(s);
    if (const Status s = cm.insert("inserted-" + std::to_string(c), std::to_string(inserted)); s != Status::ok)
      return 10 + int(s);
    return 0;
  });
  CHECK(codes == std::vector<int>(kProcs, 0));
  const std::int64_t total = std::int64_t(kProcs) * iterations;
  std::int64_t value = 0;
  REQUIRE(m.get_as("counter", value) == Status::ok);
  CHECK(value == total);
  std::vector<std::int64_t> all;
  int inserts = 0;
  for (int c = 0; c < kProcs; ++c) {
    const auto p = m.get("prevs-" + std::to_string(c));
    REQUIRE(p.has_value());
    const auto v = unpack<std::int64_t>(*p);
    all.insert(all.end(), v.begin(), v.end());
    inserts += std::stoi(m.get("inserted-" + std::to_string(c)).value_or("-100"));
  }
  CHECK(inserts == 1);
  std::sort(all.begin(), all.end());
  REQUIRE(std::int64_t(all.size()) == total);
  bool sequence = true;
  for (std::int64_t i = 0; i < total; ++i) sequence = sequence && all[std::size_t(i)] == i;
  CHECK(sequence);
}

TEST_CASE("forked processes racing to insert the same keys produce exactly one winner per key") {
  const int n_keys = 20000 / kSlowdown;
  SegmentGuard g;
  Map m = Map::create(g.name(), small_options(std::uint64_t(n_keys) + 1000));
  const auto codes = run_children(kProcs, g.name(), [&](int c, Map& cm) {
    std::vector<std::uint32_t> won;
    for (int j = 0; j < n_keys; ++j) {
      const int k = (c % 2 == 0) ? j : n_keys - 1 - j;
      const Status s = cm.insert(key_of(k), "winner-" + std::to_string(c));
      if (s == Status::ok)
        won.push_back(std::uint32_t(k));
      else if (s != Status::exists)
        return 1;
    }
    return cm.insert("won-" + std::to_string(c), pack(won)) == Status::ok ? 0 : 2;
  });
  CHECK(codes == std::vector<int>(kProcs, 0));
  std::vector<int> winner(std::size_t(n_keys), -1);
  int duplicates = 0, out_of_range = 0, wrong_value = 0;
  for (int c = 0; c < kProcs; ++c) {
    const auto w = m.get("won-" + std::to_string(c));
    REQUIRE(w.has_value());
    for (std::uint32_t k : unpack<std::uint32_t>(*w)) {
      if (k >= std::uint32_t(n_keys)) {
        ++out_of_range;
        continue;
      }
      if (winner[k] != -1) ++duplicates;
      winner[k] = c;
    }
  }
  CHECK(duplicates == 0);
  CHECK(out_of_range == 0);
  CHECK(std::count(winner.begin(), winner.end(), -1) == 0);
  for (int k = 0; k < n_keys; ++k)
    if (winner[std::size_t(k)] >= 0 && m.get(key_of(k)) != "winner-" + std::to_string(winner[std::size_t(k)]))
      ++wrong_value;
  CHECK(wrong_value == 0);
  CHECK(m.size() == std::uint64_t(n_keys) + kProcs);
}

TEST_CASE("a child process that opens the map after the parent wrote sees everything") {
  SegmentGuard g;
  Map m = Map::create(g.name(), small_options(4096, 16 << 20));
  for (int i = 0; i < 1000; ++i) REQUIRE(m.insert(key_of(i), pattern_value(i, std::size_t(i * 7 % 3000))) == Status::ok);
  for (int i = 0; i < 1000; i += 10) REQUIRE(m.erase(key_of(i)));
  REQUIRE(m.fetch_add("counter", 41).status == Status::inserted);

  const pid_t child = spawn([&]() -> int {
    Map cm = Map::open(g.name());
    if (cm.size() != 901) return 1;
    for (int i = 0; i < 1000; ++i) {
      const auto v = cm.get(key_of(i));
      if (i % 10 == 0 ? v.has_value() : v != pattern_value(i, std::size_t(i * 7 % 3000))) return 2;
    }
    std::size_t walked = 0;
    cm.for_each([&](std::string_view, std::string_view) { ++walked; });
    if (walked != 901) return 3;
    if (cm.fetch_add("counter", 1).previous != 41) return 4;
    if (cm.insert("from-child", "hello parent") != Status::ok) return 5;
    return 0;
  });
  CHECK(wait_child(child) == 0);
  CHECK(m.get("from-child") == std::optional<std::string>("hello parent"));
  std::int64_t counter = 0;
  REQUIRE(m.get_as("counter", counter) == Status::ok);
  CHECK(counter == 42);
  CHECK(m.size() == 902);
}

TEST_CASE("readers in other processes never see a torn value or a version going backward") {
  constexpr int kWriters = 2, kReaders = 2, kKeys = 32;
  const std::uint64_t versions = 1500 / kSlowdown;
  SegmentGuard g;
  Map m = Map::create(g.name(), small_options(4096, 16 << 20));
  for (int k = 0; k < kKeys; ++k)
    REQUIRE(m.insert(key_of(k), encode_tagged({std::uint32_t(k), std::uint32_t(k % kWriters), 0}, 3)) == Status::ok);

  // Exit codes: 0 fine, 1 a write failed, 2 torn or foreign value, 3 version
  // went backward, 4 key missing, 5 no read happened.
  const auto codes = run_children(kWriters + kReaders, g.name(), [&](int c, Map& cm) -> int {
    if (c < kWriters) {
      for (std::uint64_t v = 1; v <= versions; ++v)
        for (int k = c; k < kKeys; k += kWriters)
          if (cm.insert_or_assign(key_of(k), encode_tagged({std::uint32_t(k), std::uint32_t(c), v},
                                                           std::size_t((v * 53 + std::uint64_t(k)) % 900))) !=
              Status::assigned)
            return 1;
      const auto r = cm.fetch_add("writers-done", 1);
      return r.status == Status::inserted || r.status == Status::ok ? 0 : 1;
    }
    std::vector<std::uint64_t> last(kKeys, 0);
    std::mt19937 rng{unsigned(c)};
    std::string buf;
    std::uint64_t reads = 0;
    for (;;) {
      std::int64_t done = 0;
      const bool finished = cm.get_as("writers-done", done) == Status::ok && done == kWriters;
      for (int j = 0; j < 64; ++j) {
        const int k = int(rng() % kKeys);
        if (!cm.get(key_of(k), buf)) return 4;
        ++reads;
        const auto d = decode_tagged(buf);
        if (!d || d->key != std::uint32_t(k) || d->writer != std::uint32_t(k % kWriters)) return 2;
        if (d->version < last[std::size_t(k)]) return 3;
        last[std::size_t(k)] = d->version;
      }
      if (finished) break;
    }
    return reads > 0 ? 0 : 5;
  });
  CHECK(codes == std::vector<int>(kWriters + kReaders, 0));
  for (int k = 0; k < kKeys; ++k) {
    const auto v = m.get(key_of(k));
    REQUIRE(v.has_value());
    const auto d = decode_tagged(*v);
    REQUIRE(d.has_value());
    CHECK(d->version == versions);
  }
}

TEST_CASE("a process killed in the middle of writes leaves the map readable and writable by the others") {
  constexpr int kKeys = 64;
  SegmentGuard g;
  Map m = Map::create(g.name(), small_options(std::uint64_t{1} << 18, 64 << 20));
  const std::string name = g.name();
  const pid_t victim = spawn([&]() -> int {
    Map cm = Map::open(name);
    std::mt19937 rng(7);
    for (std::uint64_t i = 1; i < 100000000; ++i) {
      const int k = int(rng() % kKeys);
      if (rng() % 4 == 0)
        cm.erase(key_of(k));
      else
        (void)cm.insert_or_assign(key_of(k), encode_tagged({std::uint32_t(k), 0, i}, rng() % 2000));
      if (i % 64 == 0) (void)cm.fetch_add("progress", 1);
    }
    return 0;
  });
  // Wait (without sleeping) until the victim is busy writing, then kill it.
  std::int64_t progress = 0;
  while (m.get_as("progress", progress) != Status::ok || progress < 200) {
    int status = 0;
    if (::waitpid(victim, &status, WNOHANG) == victim) FAIL("the writer exited before it was killed, status " << status);
    ::sched_yield();
  }
  REQUIRE(::kill(victim, SIGKILL) == 0);
  CHECK(wait_child(victim) == 128 + SIGKILL);

  std::set<std::string> seen;
  int malformed = 0, duplicates = 0;
  m.for_each([&](std::string_view k, std::string_view v) {
    if (!seen.insert(std::string(k)).second) ++duplicates;
    if (k.substr(0, 4) != "key-") return;
    const auto d = decode_tagged(v);
    if (!d || key_of(int(d->key)) != k) ++malformed;
  });
  CHECK(duplicates == 0);
  CHECK(malformed == 0);
  int failures = 0;
  for (int k = 0; k < kKeys; ++k) {
    const std::string v = encode_tagged({std::uint32_t(k), 1, 1}, 10);
    if (!succeeded(m.insert_or_assign(key_of(k), v)) || m.get(key_of(k)) != v) ++failures;
    if (k % 2 == 0 && (!m.erase(key_of(k)) || m.contains(key_of(k)))) ++failures;
  }
  CHECK(failures == 0);
  CHECK(m.insert("after-the-kill", "fine") == Status::ok);
}
