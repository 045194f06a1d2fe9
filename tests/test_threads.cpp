// Threaded races on one map (8+ std::threads released together by a latch, no
// sleeps), outcomes checked exactly. This executable never forks: it also runs
// under ThreadSanitizer.
#include <algorithm>
#include <atomic>
#include <cstdint>
#include <exception>
#include <latch>
#include <random>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "support.hpp"

using shmap::errc;
using shmap::Map;
using shmap::Status;
using namespace shmap_test;

namespace {

constexpr int kThreads = 8;

// Runs body(t) on n threads that all start at once; rethrows the first
// exception a thread threw (Catch assertions are not thread-safe, so bodies
// record outcomes and the test checks them after the join).
template <class F>
void run_threads(int n, F&& body) {
  std::latch start(n);
  std::vector<std::exception_ptr> errors(std::size_t(n), nullptr);
  std::vector<std::thread> threads;
  threads.reserve(std::size_t(n));
  for (int t = 0; t < n; ++t) {
    threads.emplace_back([&, t] {
      start.arrive_and_wait();
      try {
        body(t);
      } catch (...) {
        errors[std::size_t(t)] = std::current_exception();
      }
    });
  }
  for (auto& th : threads) th.join();
  for (auto& e : errors)
    if (e) std::rethrow_exception(e);
}

std::string key_of(int k) {
  return "key-" + std::to_string(k);
}

}  // namespace

TEST_CASE("disjoint writers in eight threads all land with their exact values") {
  const int per_thread = 12000 / kSlowdown;
  SegmentGuard g;
  Map m = Map::create(g.name(), small_options(std::uint64_t(kThreads) * per_thread + 1000, 64 << 20));
  std::vector<int> failures(kThreads, 0);
  run_threads(kThreads, [&](int t) {
    for (int i = 0; i < per_thread; ++i) {
      const std::string k = "t" + std::to_string(t) + "-" + std::to_string(i);
      if (m.insert(k, pattern_value(std::uint64_t(t) * per_thread + i, std::size_t(i % 300))) != Status::ok)
        ++failures[std::size_t(t)];
    }
  });
  for (int t = 0; t < kThreads; ++t) CHECK(failures[std::size_t(t)] == 0);
  CHECK(m.size() == std::uint64_t(kThreads) * per_thread);
  check_disjoint_writes(
      m, kThreads, per_thread, [](int t, int i) { return "t" + std::to_string(t) + "-" + std::to_string(i); },
      [&](int t, int i) { return pattern_value(std::uint64_t(t) * per_thread + i, std::size_t(i % 300)); });
  check_quiescent(m);
}

TEST_CASE("threads racing to insert the same keys produce exactly one ok per key and keep the winner's value") {
  const int n_keys = 12000 / kSlowdown;
  SegmentGuard g;
  Map m = Map::create(g.name(), small_options(std::uint64_t(n_keys) * 2));
  std::vector<std::vector<char>> won(kThreads, std::vector<char>(std::size_t(n_keys), 0));
  std::vector<int> unexpected(kThreads, 0);
  run_threads(kThreads, [&](int t) {
    // Half the threads walk the keys forward and half backward, so every key
    // sees both head-on races and late arrivals.
    for (int j = 0; j < n_keys; ++j) {
      const int k = (t % 2 == 0) ? j : n_keys - 1 - j;
      const Status s = m.insert(key_of(k), "winner-" + std::to_string(t) + "-" + std::to_string(k));
      if (s == Status::ok)
        won[std::size_t(t)][std::size_t(k)] = 1;
      else if (s != Status::exists)
        ++unexpected[std::size_t(t)];
    }
  });
  for (int t = 0; t < kThreads; ++t) CHECK(unexpected[std::size_t(t)] == 0);
  check_one_winner_per_key(m, won, n_keys, key_of, [](int winner, int k) {
    return "winner-" + std::to_string(winner) + "-" + std::to_string(k);
  });
  CHECK(m.size() == std::uint64_t(n_keys));
  check_quiescent(m);
}

TEST_CASE("threads racing to erase the same keys produce exactly one successful erase per key") {
  const int n_keys = 8000 / kSlowdown;
  SegmentGuard g;
  Map m = Map::create(g.name(), small_options(std::uint64_t(n_keys) * 2));
  for (int k = 0; k < n_keys; ++k) REQUIRE(m.insert(key_of(k), pattern_value(std::uint64_t(k), 40)) == Status::ok);
  std::vector<std::vector<char>> erased(kThreads, std::vector<char>(std::size_t(n_keys), 0));
  run_threads(kThreads, [&](int t) {
    for (int j = 0; j < n_keys; ++j) {
      const int k = (t % 2 == 0) ? j : n_keys - 1 - j;
      if (m.erase(key_of(k))) erased[std::size_t(t)][std::size_t(k)] = 1;
    }
  });
  int bad = 0;
  for (int k = 0; k < n_keys; ++k) {
    int n = 0;
    for (int t = 0; t < kThreads; ++t) n += erased[std::size_t(t)][std::size_t(k)];
    if (n != 1) ++bad;
  }
  CHECK(bad == 0);
  CHECK(m.size() == 0);
  check_quiescent(m);
}

TEST_CASE("threads racing compare_exchange from the same expected value produce exactly one winner per key") {
  const int n_keys = 4000 / kSlowdown;
  SegmentGuard g;
  Map m = Map::create(g.name(), small_options(std::uint64_t(n_keys) * 2));
  for (int k = 0; k < n_keys; ++k) REQUIRE(m.insert(key_of(k), "initial") == Status::ok);
  std::vector<std::vector<char>> won(kThreads, std::vector<char>(std::size_t(n_keys), 0));
  std::vector<int> unexpected(kThreads, 0);
  run_threads(kThreads, [&](int t) {
    for (int j = 0; j < n_keys; ++j) {
      const int k = (t % 2 == 0) ? j : n_keys - 1 - j;
      // Each thread's value has its own length, so winners differ in size class.
      const Status s = m.compare_exchange(key_of(k), "initial", std::string(std::size_t(t) * 40 + 1, char('a' + t)));
      if (s == Status::ok)
        won[std::size_t(t)][std::size_t(k)] = 1;
      else if (s != Status::mismatch)
        ++unexpected[std::size_t(t)];
    }
  });
  for (int t = 0; t < kThreads; ++t) CHECK(unexpected[std::size_t(t)] == 0);
  check_one_winner_per_key(m, won, n_keys, key_of, [](int winner, int) {
    return std::string(std::size_t(winner) * 40 + 1, char('a' + winner));
  });
  check_quiescent(m);
}

// kThreads threads insert keys "t<t>-<i>" with value_of(t, i) until one
// reports `stop`; checks that nothing else came back and that every insert
// acknowledged as ok reads back exactly. Returns how many inserts succeeded.
template <class ValueOf>
std::uint64_t fill_concurrently(Map& m, Status stop, ValueOf&& value_of) {
  std::vector<std::vector<int>> mine(kThreads);
  std::vector<int> unexpected(kThreads, 0);
  run_threads(kThreads, [&](int t) {
    for (int i = 0;; ++i) {
      const Status s = m.insert("t" + std::to_string(t) + "-" + std::to_string(i), value_of(t, i));
      if (s == stop) break;
      if (s != Status::ok) {
        ++unexpected[std::size_t(t)];
        break;
      }
      mine[std::size_t(t)].push_back(i);
    }
  });
  std::uint64_t total = 0;
  int wrong = 0;
  for (int t = 0; t < kThreads; ++t) {
    CHECK(unexpected[std::size_t(t)] == 0);
    total += mine[std::size_t(t)].size();
    for (int i : mine[std::size_t(t)])
      if (m.get("t" + std::to_string(t) + "-" + std::to_string(i)) != value_of(t, i)) ++wrong;
  }
  CHECK(wrong == 0);
  return total;
}

TEST_CASE("threads filling an index that cannot grow stop at 7/8 of its slots, overshooting by under one per thread") {
  // Many small rounds: the race that matters is the last few slots.
  for (int round = 0; round < 40; ++round) {
    CAPTURE(round);
    SegmentGuard g;
    // The smallest segment, its bump region used up but for 35 KiB: room for
    // the 16-byte records that fill the first table (2048 slots) to 7/8, with
    // a chunk per thread to spare, but not for the 36 KiB run of the next
    // table. The migration at 3/4 cannot start, so inserts go on to 7/8.
    Map m = Map::create(g.name(), full_arena_options(1000));
    const std::uint64_t fillers = std::uint64_t(eat_bump(m, 35 << 10));
    const std::uint64_t hard = m.stats().index_slots - m.stats().index_slots / 8;
    REQUIRE(m.stats().index_slots == 2048);
    const std::uint64_t erased = 0;
    const std::uint64_t total = fill_concurrently(m, Status::full_index, [](int, int) { return std::string(); });
    // Slots are counted after the claiming CAS (so no insert is refused for a
    // reservation another insert then gives back); claimers racing at the
    // limit can each pass the check once: at most kThreads - 1 over.
    REQUIRE(erased + fillers + total >= hard);
    REQUIRE(erased + fillers + total <= hard + kThreads - 1);
    CHECK(m.size() == total + fillers);
    CHECK(m.stats().live_slots == total + fillers);
    CHECK(m.stats().table_generation == 0);
    CHECK(m.insert("one-more", "") == Status::full_index);
    check_quiescent(m);
  }
}

TEST_CASE("threads filling the arena at once keep every inserted entry and leak no block") {
  SegmentGuard g;
  Map m = Map::create(g.name(), full_arena_options(20000));
  // Two value sizes, so two classes compete for the last bump bytes.
  const std::uint64_t total = fill_concurrently(m, Status::full_arena, [](int t, int i) {
    return pattern_value(std::uint64_t(t) * 100000 + std::uint64_t(i), i % 2 ? 1000 : 300);
  });
  CHECK(total > 0);
  CHECK(m.size() == total);
  check_quiescent(m);
}

TEST_CASE("contended fetch_add on a few keys sums exactly and hands out every previous value once") {
  constexpr int kKeys = 4;
  constexpr std::int64_t kDelta = 3;
  const int iterations = 40000 / kSlowdown;
  SegmentGuard g;
  Map m = Map::create(g.name(), small_options());
  // prev[t][k]: previous values thread t saw on key k; inserted[t][k]: its inserts.
  std::vector<std::vector<std::vector<std::int64_t>>> prev(kThreads, std::vector<std::vector<std::int64_t>>(kKeys));
  std::vector<std::vector<int>> inserted(kThreads, std::vector<int>(kKeys, 0));
  std::vector<int> unexpected(kThreads, 0);
  run_threads(kThreads, [&](int t) {
    for (int i = 0; i < iterations; ++i) {
      const int k = (i + t) % kKeys;
      const auto r = m.fetch_add("ctr-" + std::to_string(k), kDelta);
      if (r.status == Status::inserted) {
        ++inserted[std::size_t(t)][std::size_t(k)];
        prev[std::size_t(t)][std::size_t(k)].push_back(r.previous);
      } else if (r.status == Status::ok) {
        prev[std::size_t(t)][std::size_t(k)].push_back(r.previous);
      } else {
        ++unexpected[std::size_t(t)];
      }
    }
  });
  for (int t = 0; t < kThreads; ++t) CHECK(unexpected[std::size_t(t)] == 0);
  for (int k = 0; k < kKeys; ++k) {
    CAPTURE(k);
    int inserts = 0;
    std::vector<std::int64_t> all;
    for (int t = 0; t < kThreads; ++t) {
      inserts += inserted[std::size_t(t)][std::size_t(k)];
      const auto& p = prev[std::size_t(t)][std::size_t(k)];
      all.insert(all.end(), p.begin(), p.end());
    }
    CHECK(inserts == 1);
    std::sort(all.begin(), all.end());
    const std::int64_t adds = std::int64_t(kThreads) * iterations / kKeys;
    REQUIRE(std::int64_t(all.size()) == adds);
    bool sequence = true;
    for (std::int64_t i = 0; i < adds; ++i) sequence = sequence && all[std::size_t(i)] == i * kDelta;
    CHECK(sequence);
    std::int64_t total = 0;
    REQUIRE(m.get_as("ctr-" + std::to_string(k), total) == Status::ok);
    CHECK(total == adds * kDelta);
  }
  CHECK(m.size() == kKeys);
  check_quiescent(m);
}

TEST_CASE("compare_exchange retry loops from many threads lose no increment") {
  const int iterations = 3000 / kSlowdown;
  SegmentGuard g;
  Map m = Map::create(g.name(), small_options());
  REQUIRE(m.insert("n", "0") == Status::ok);
  std::vector<int> unexpected(kThreads, 0);
  run_threads(kThreads, [&](int t) {
    std::string cur;
    for (int i = 0; i < iterations; ++i) {
      for (;;) {
        if (!m.get("n", cur)) {
          ++unexpected[std::size_t(t)];
          return;
        }
        // Pad with a run of dots whose length follows the count, so the record
        // keeps moving between size classes while threads race on it.
        const std::uint64_t n = std::stoull(cur.substr(0, cur.find('.'))) + 1;
        const std::string next = std::to_string(n) + std::string(n % 200, '.');
        const Status s = m.compare_exchange("n", cur, next);
        if (s == Status::ok) break;
        if (s != Status::mismatch) {
          ++unexpected[std::size_t(t)];
          return;
        }
      }
    }
  });
  for (int t = 0; t < kThreads; ++t) CHECK(unexpected[std::size_t(t)] == 0);
  const std::uint64_t expected = std::uint64_t(kThreads) * iterations;
  CHECK(m.get("n") == std::to_string(expected) + std::string(expected % 200, '.'));
  check_quiescent(m);
}

TEST_CASE("readers never see a torn value or a version going backward while writers update") {
  constexpr int kWriters = 4, kReaders = 4, kKeys = 64;
  const std::uint64_t versions = 1500 / kSlowdown;
  SegmentGuard g;
  Map m = Map::create(g.name(), small_options(4096, 16 << 20));
  for (int k = 0; k < kKeys; ++k)
    REQUIRE(m.insert(key_of(k), encode_tagged({std::uint32_t(k), std::uint32_t(k % kWriters), 0}, 5)) == Status::ok);

  std::atomic<int> writers_left{kWriters};
  std::vector<int> writer_errors(kWriters, 0);
  std::vector<int> torn(kReaders, 0), backward(kReaders, 0), missing(kReaders, 0);
  std::vector<std::uint64_t> reads(kReaders, 0);

  run_threads(kWriters + kReaders, [&](int t) {
    if (t < kWriters) {
      // Writer t owns keys k with k % kWriters == t, so each key's versions are
      // written in order by one thread; it alternates assign and CAS.
      for (std::uint64_t v = 1; v <= versions; ++v) {
        for (int k = t; k < kKeys; k += kWriters) {
          const std::size_t len = std::size_t((v * 37 + std::uint64_t(k)) % 700);
          const std::string next = encode_tagged({std::uint32_t(k), std::uint32_t(t), v}, len);
          Status s;
          if (v % 2 == 0) {
            // v is even, so v - 1 >= 1 was written by this thread's assign.
            const std::size_t prev_len = std::size_t(((v - 1) * 37 + std::uint64_t(k)) % 700);
            const std::string prev = encode_tagged({std::uint32_t(k), std::uint32_t(t), v - 1}, prev_len);
            s = m.compare_exchange(key_of(k), prev, next);
            if (s != Status::ok) ++writer_errors[std::size_t(t)];
          } else {
            s = m.insert_or_assign(key_of(k), next);
            if (s != Status::assigned) ++writer_errors[std::size_t(t)];
          }
        }
      }
      // Release: the readers' acquire load of the count sees all our writes done.
      writers_left.fetch_sub(1, std::memory_order_release);
    } else {
      const int r = t - kWriters;
      std::vector<std::uint64_t> last(kKeys, 0);
      std::mt19937 rng{unsigned(r)};
      std::string buf;
      // Acquire: pairs with the writers' release decrement.
      while (writers_left.load(std::memory_order_acquire) > 0) {
        for (int j = 0; j < 64; ++j) {
          const int k = int(rng() % kKeys);
          std::optional<std::string> v;
          if (j % 2 == 0) {
            v = m.get(key_of(k));
          } else if (m.get(key_of(k), buf)) {
            v = buf;
          }
          ++reads[std::size_t(r)];
          if (!v) {
            ++missing[std::size_t(r)];
            continue;
          }
          const auto d = decode_tagged(*v);
          if (!d || d->key != std::uint32_t(k) || d->writer != std::uint32_t(k % kWriters)) {
            ++torn[std::size_t(r)];
            continue;
          }
          if (d->version < last[std::size_t(k)]) ++backward[std::size_t(r)];
          last[std::size_t(k)] = d->version;
        }
      }
    }
  });
  for (int t = 0; t < kWriters; ++t) CHECK(writer_errors[std::size_t(t)] == 0);
  for (int r = 0; r < kReaders; ++r) {
    CAPTURE(r, reads[std::size_t(r)]);
    CHECK(reads[std::size_t(r)] > 0);
    CHECK(torn[std::size_t(r)] == 0);
    CHECK(backward[std::size_t(r)] == 0);
    CHECK(missing[std::size_t(r)] == 0);
  }
  for (int k = 0; k < kKeys; ++k) {
    const auto v = m.get(key_of(k));
    REQUIRE(v.has_value());
    const auto d = decode_tagged(*v);
    REQUIRE(d.has_value());
    CHECK(d->version == versions);
  }
  CHECK(m.size() == kKeys);
  check_quiescent(m);
}

TEST_CASE("readers through a read-only mapping keep working while writers update") {
  constexpr int kWriters = 4, kReaders = 4, kKeys = 64;
  const int rounds = 400 / kSlowdown;
  SegmentGuard g;
  Map w = Map::create(g.name(), small_options(4096, 16 << 20));
  for (int k = 0; k < kKeys; ++k)
    REQUIRE(w.insert(key_of(k), encode_tagged({std::uint32_t(k), std::uint32_t(k % kWriters), 0}, 10)) == Status::ok);
  shmap::Options ro;
  ro.read_only = true;
  // Pages mapped without PROT_WRITE: a reader that wrote shared memory would
  // die of SIGSEGV here.
  Map r = Map::open(g.name(), ro);
  REQUIRE(r.read_only());

  std::atomic<int> writers_left{kWriters};
  std::vector<int> writer_errors(kWriters, 0), reader_errors(kReaders, 0), walks(kReaders, 0);
  run_threads(kWriters + kReaders, [&](int t) {
    if (t < kWriters) {
      for (int v = 1; v <= rounds; ++v)
        for (int k = t; k < kKeys; k += kWriters)
          if (w.insert_or_assign(key_of(k), encode_tagged({std::uint32_t(k), std::uint32_t(t), std::uint64_t(v)},
                                                          std::size_t((v * 31 + k) % 500))) != Status::assigned)
            ++writer_errors[std::size_t(t)];
      // Release: pairs with the readers' acquire load.
      writers_left.fetch_sub(1, std::memory_order_release);
      return;
    }
    const int i = t - kWriters;
    std::string buf;
    // Acquire: pairs with the writers' release decrement.
    do {
      for (int k = 0; k < kKeys; ++k) {
        if (!r.get(key_of(k), buf) || !r.contains(key_of(k))) {
          ++reader_errors[std::size_t(i)];
          continue;
        }
        const auto d = decode_tagged(buf);
        if (!d || d->key != std::uint32_t(k)) ++reader_errors[std::size_t(i)];
      }
      std::size_t seen = 0;
      r.for_each([&](std::string_view, std::string_view v) {
        ++seen;
        if (!decode_tagged(v)) ++reader_errors[std::size_t(i)];
      });
      if (seen != kKeys) ++reader_errors[std::size_t(i)];
      if (r.stats().live_slots != kKeys) ++reader_errors[std::size_t(i)];
      ++walks[std::size_t(i)];
    } while (writers_left.load(std::memory_order_acquire) > 0);
  });
  for (int t = 0; t < kWriters; ++t) CHECK(writer_errors[std::size_t(t)] == 0);
  for (int i = 0; i < kReaders; ++i) {
    CAPTURE(i, walks[std::size_t(i)]);
    CHECK(reader_errors[std::size_t(i)] == 0);
  }
}

TEST_CASE("insert, assign, erase and compare_exchange churn on shared keys keeps every key's history consistent") {
  constexpr int kKeys = 32;
  const int ops = 20000 / kSlowdown;
  SegmentGuard g;
  Map m = Map::create(g.name(), small_options(std::uint64_t{1} << 15, 32 << 20));

  struct PerThread {
    std::vector<std::int64_t> adds = std::vector<std::int64_t>(kKeys, 0);
    std::vector<std::int64_t> removes = std::vector<std::int64_t>(kKeys, 0);
    std::set<std::pair<int, std::uint64_t>> written;  // (key, version) values this thread stored
    int malformed = 0;
    int unexpected = 0;
  };
  std::vector<PerThread> per(kThreads);

  run_threads(kThreads, [&](int t) {
    PerThread& me = per[std::size_t(t)];
    std::mt19937_64 rng(std::uint64_t(t) * 7919 + 1);
    std::string buf;
    for (int i = 0; i < ops; ++i) {
      const int k = int(rng() % kKeys);
      const std::uint64_t version = std::uint64_t(i) + 1;
      const std::string v = encode_tagged({std::uint32_t(k), std::uint32_t(t), version}, std::size_t(rng() % 400));
      switch (rng() % 5) {
        case 0: {
          const Status s = m.insert(key_of(k), v);
          if (s == Status::ok) {
            ++me.adds[std::size_t(k)];
            me.written.emplace(k, version);
          } else if (s != Status::exists) {
            ++me.unexpected;
          }
          break;
        }
        case 1: {
          const Status s = m.insert_or_assign(key_of(k), v);
          if (s == Status::inserted) ++me.adds[std::size_t(k)];
          if (s == Status::inserted || s == Status::assigned)
            me.written.emplace(k, version);
          else
            ++me.unexpected;
          break;
        }
        case 2:
          if (m.erase(key_of(k))) ++me.removes[std::size_t(k)];
          break;
        case 3: {
          if (!m.get(key_of(k), buf)) break;
          const auto d = decode_tagged(buf);
          if (!d || d->key != std::uint32_t(k)) {
            ++me.malformed;
            break;
          }
          const Status s = m.compare_exchange(key_of(k), buf, v);
          if (s == Status::ok)
            me.written.emplace(k, version);
          else if (s != Status::mismatch && s != Status::absent)
            ++me.unexpected;
          break;
        }
        default: {
          const auto got = m.get(key_of(k));
          if (got) {
            const auto d = decode_tagged(*got);
            if (!d || d->key != std::uint32_t(k)) ++me.malformed;
          }
        }
      }
    }
  });

  std::uint64_t present = 0;
  for (int t = 0; t < kThreads; ++t) {
    CHECK(per[std::size_t(t)].malformed == 0);
    CHECK(per[std::size_t(t)].unexpected == 0);
  }
  for (int k = 0; k < kKeys; ++k) {
    CAPTURE(k);
    std::int64_t adds = 0, removes = 0;
    for (const auto& p : per) {
      adds += p.adds[std::size_t(k)];
      removes += p.removes[std::size_t(k)];
    }
    // Inserts and erases of one key alternate, so their difference is whether
    // the key is present now.
    const auto v = m.get(key_of(k));
    CHECK(adds - removes == (v ? 1 : 0));
    if (!v) continue;
    ++present;
    const auto d = decode_tagged(*v);
    REQUIRE(d.has_value());
    CHECK(d->key == std::uint32_t(k));
    REQUIRE(d->writer < std::uint32_t(kThreads));
    CHECK(per[d->writer].written.count({k, d->version}) == 1);
  }
  CHECK(m.size() == present);
  check_quiescent(m);
}

TEST_CASE("for_each sees every key that stays present exactly once and no key twice while other keys churn") {
  constexpr int kStable = 500, kChurnKeys = 64, kChurners = 6, kWalkers = 2;
  const int churn_ops = 10000 / kSlowdown;
  SegmentGuard g;
  Map m = Map::create(g.name(), small_options(std::uint64_t{1} << 15));
  for (int i = 0; i < kStable; ++i)
    REQUIRE(m.insert("stable-" + std::to_string(i), pattern_value(std::uint64_t(i), std::size_t(i % 64))) ==
            Status::ok);

  std::atomic<int> churners_left{kChurners};
  std::vector<int> walks(kWalkers, 0), stable_wrong(kWalkers, 0), churn_malformed(kWalkers, 0);
  run_threads(kChurners + kWalkers, [&](int t) {
    if (t < kChurners) {
      std::mt19937 rng{unsigned(t)};
      for (int i = 0; i < churn_ops; ++i) {
        const int k = int(rng() % kChurnKeys);
        const std::string key = "churn-" + std::to_string(k);
        if (rng() % 2)
          (void)m.insert_or_assign(key,
                                   encode_tagged({std::uint32_t(k), std::uint32_t(t), std::uint64_t(i)}, rng() % 300));
        else
          m.erase(key);
      }
      // Release: pairs with the walkers' acquire load.
      churners_left.fetch_sub(1, std::memory_order_release);
      return;
    }
    const int w = t - kChurners;
    // Acquire: pairs with the churners' release decrement.
    do {
      std::vector<int> seen(kStable, 0);
      std::set<std::string> churn_seen;
      bool wrong = false;
      m.for_each([&](std::string_view k, std::string_view v) {
        if (k.substr(0, 7) == "stable-") {
          const int i = std::stoi(std::string(k.substr(7)));
          if (i < 0 || i >= kStable || v != pattern_value(std::uint64_t(i), std::size_t(i % 64)))
            wrong = true;
          else
            ++seen[std::size_t(i)];
        } else if (k.substr(0, 6) == "churn-") {
          // A key keeps its slot, so even a churning key is seen at most once.
          if (!churn_seen.insert(std::string(k)).second) wrong = true;
          const auto d = decode_tagged(v);
          if (!d || "churn-" + std::to_string(d->key) != k) ++churn_malformed[std::size_t(w)];
        } else {
          wrong = true;
        }
      });
      for (int c : seen) wrong = wrong || c != 1;
      if (wrong) ++stable_wrong[std::size_t(w)];
      ++walks[std::size_t(w)];
    } while (churners_left.load(std::memory_order_acquire) > 0 || walks[std::size_t(w)] < 3);
  });
  for (int w = 0; w < kWalkers; ++w) {
    CAPTURE(w, walks[std::size_t(w)]);
    CHECK(stable_wrong[std::size_t(w)] == 0);
    CHECK(churn_malformed[std::size_t(w)] == 0);
  }
  check_quiescent(m);
}

TEST_CASE("threads racing to create one name: exactly one succeeds and the others get already_exists") {
  for (int round = 0; round < 10; ++round) {
    CAPTURE(round);
    SegmentGuard g;
    std::vector<int> outcome(kThreads, -1);  // 0 created, 1 already_exists, 2 other
    run_threads(kThreads, [&](int t) {
      try {
        Map m = Map::create(g.name(), small_options());
        outcome[std::size_t(t)] = m.insert("creator", std::to_string(t)) == Status::ok ? 0 : 2;
      } catch (const shmap::Error& e) {
        outcome[std::size_t(t)] = e.code() == shmap::make_error_code(errc::already_exists) ? 1 : 2;
      }
    });
    CHECK(std::count(outcome.begin(), outcome.end(), 0) == 1);
    CHECK(std::count(outcome.begin(), outcome.end(), 1) == kThreads - 1);
    const auto winner = std::find(outcome.begin(), outcome.end(), 0) - outcome.begin();
    CHECK(Map::open(g.name()).get("creator") == std::to_string(winner));
  }
}

TEST_CASE("threads calling open_or_create on one name all share one map") {
  for (int round = 0; round < 10; ++round) {
    CAPTURE(round);
    SegmentGuard g;
    std::vector<int> failures(kThreads, 0);
    run_threads(kThreads, [&](int t) {
      Map m = Map::open_or_create(g.name(), small_options());
      if (m.insert("t" + std::to_string(t), "here") != Status::ok) ++failures[std::size_t(t)];
    });
    for (int t = 0; t < kThreads; ++t) CHECK(failures[std::size_t(t)] == 0);
    Map m = Map::open(g.name());
    CHECK(m.size() == std::uint64_t(kThreads));
    for (int t = 0; t < kThreads; ++t) CHECK(m.contains("t" + std::to_string(t)));
  }
}

TEST_CASE("threads with their own handles on one name see each other's writes") {
  const int per_thread = 4000 / kSlowdown;
  SegmentGuard g;
  { Map creator = Map::create(g.name(), small_options(std::uint64_t(kThreads) * per_thread + 1000)); }
  std::vector<int> missing(kThreads, 0), failed(kThreads, 0);
  std::latch written(kThreads);
  run_threads(kThreads, [&](int t) {
    // Every thread reaches the second latch even if its open fails, so a
    // failure is reported instead of hanging the others.
    std::optional<Map> m;
    try {
      m.emplace(Map::open(g.name()));
      for (int i = 0; i < per_thread; ++i)
        if (m->insert("t" + std::to_string(t) + "-" + std::to_string(i), std::to_string(i)) != Status::ok)
          ++failed[std::size_t(t)];
    } catch (...) {
      ++failed[std::size_t(t)];
    }
    written.arrive_and_wait();
    if (!m) return;
    const int other = (t + 1) % kThreads;
    for (int i = 0; i < per_thread; ++i)
      if (m->get("t" + std::to_string(other) + "-" + std::to_string(i)) != std::to_string(i)) ++missing[std::size_t(t)];
  });
  for (int t = 0; t < kThreads; ++t) {
    CHECK(failed[std::size_t(t)] == 0);
    CHECK(missing[std::size_t(t)] == 0);
  }
}

// ------------------------------------------------------------------ threads during migrations

TEST_CASE("eight threads inserting disjoint keys into a map that starts at 16 slots all land, each with its value") {
  const int per_thread = 20000 / kSlowdown;
  SegmentGuard g;
  shmap::Options o = small_options(12);
  o.help_slots = 64;
  Map m = Map::create(g.name(), o);
  std::vector<int> failures(kThreads, 0);
  run_threads(kThreads, [&](int t) {
    for (int i = 0; i < per_thread; ++i)
      if (m.insert("t" + std::to_string(t) + "-" + std::to_string(i),
                   pattern_value(std::uint64_t(t) * per_thread + i, 16)) != Status::ok)
        ++failures[std::size_t(t)];
  });
  for (int t = 0; t < kThreads; ++t) CHECK(failures[std::size_t(t)] == 0);
  CHECK(m.size() == std::uint64_t(kThreads) * per_thread);
  CHECK(m.stats().grown >= 8);
  check_disjoint_writes(
      m, kThreads, per_thread, [](int t, int i) { return "t" + std::to_string(t) + "-" + std::to_string(i); },
      [&](int t, int i) { return pattern_value(std::uint64_t(t) * per_thread + i, 16); });
  check_quiescent(m);
}

TEST_CASE(
    "reader threads never miss a key present throughout while writer threads grow, rebuild and shrink the index") {
  constexpr int kStable = 500;
  const int rounds = 30000 / kSlowdown;
  SegmentGuard g;
  shmap::Options o = small_options(12);
  o.help_slots = 16;  // migrations span many writes: readers meet them half done
  Map m = Map::create(g.name(), o);
  for (int k = 0; k < kStable; ++k) REQUIRE(m.insert("stable" + std::to_string(k), pattern_value(k, 12)) == Status::ok);
  std::atomic<int> writers_done{0};
  std::vector<std::uint64_t> misses(kThreads, 0), reads(kThreads, 0);
  std::vector<int> write_failures(kThreads, 0);
  run_threads(kThreads, [&](int t) {
    if (t < kThreads / 2) {
      // A writer: grows its own keys to 2000, then churns them (insert new,
      // erase old), then erases them all, so the index grows, rebuilds and
      // shrinks under the readers.
      const std::string p = "w" + std::to_string(t) + "-";
      for (int i = 0; i < rounds; ++i) {
        if (m.insert(p + std::to_string(i), "x") != Status::ok) ++write_failures[std::size_t(t)];
        if (i >= 2000 && !m.erase(p + std::to_string(i - 2000))) ++write_failures[std::size_t(t)];
      }
      for (int i = std::max(0, rounds - 2000); i < rounds; ++i)
        if (!m.erase(p + std::to_string(i))) ++write_failures[std::size_t(t)];
      writers_done.fetch_add(1);
    } else {
      std::string v;
      while (writers_done.load() < kThreads / 2) {
        for (int k = 0; k < kStable; ++k) {
          ++reads[std::size_t(t)];
          if (!m.get("stable" + std::to_string(k), v) || v != pattern_value(k, 12)) ++misses[std::size_t(t)];
        }
      }
    }
  });
  std::uint64_t total_reads = 0;
  for (int t = 0; t < kThreads; ++t) {
    CHECK(misses[std::size_t(t)] == 0);
    CHECK(write_failures[std::size_t(t)] == 0);
    total_reads += reads[std::size_t(t)];
  }
  const shmap::Stats s = m.stats();
  CHECK(s.migrations >= 10);
  CHECK(s.shrunk + s.grown >= 2);
  CHECK(total_reads > 0);
  CHECK(m.size() == std::uint64_t(kStable));
  check_quiescent(m);
}

TEST_CASE(
    "threads racing to insert the same keys while the index grows from 16 slots produce exactly one winner per key") {
  const int n_keys = 20000 / kSlowdown;
  SegmentGuard g;
  shmap::Options o = small_options(12);
  o.help_slots = 32;
  Map m = Map::create(g.name(), o);
  std::vector<std::vector<char>> won(kThreads, std::vector<char>(std::size_t(n_keys), 0));
  std::vector<int> unexpected(kThreads, 0);
  run_threads(kThreads, [&](int t) {
    for (int j = 0; j < n_keys; ++j) {
      const int k = (t % 2 == 0) ? j : n_keys - 1 - j;
      const Status s = m.insert(key_of(k), "winner-" + std::to_string(t) + "-" + std::to_string(k));
      if (s == Status::ok)
        won[std::size_t(t)][std::size_t(k)] = 1;
      else if (s != Status::exists)
        ++unexpected[std::size_t(t)];
    }
  });
  for (int t = 0; t < kThreads; ++t) CHECK(unexpected[std::size_t(t)] == 0);
  check_one_winner_per_key(m, won, n_keys, key_of, [](int winner, int k) {
    return "winner-" + std::to_string(winner) + "-" + std::to_string(k);
  });
  CHECK(m.size() == std::uint64_t(n_keys));
  CHECK(m.stats().grown >= 5);
  check_quiescent(m);
}

TEST_CASE("fetch_add counters stay exact while other threads drive migrations") {
  constexpr int kCounters = 8;
  const int adds = 20000 / kSlowdown;
  SegmentGuard g;
  shmap::Options o = small_options(12);
  o.help_slots = 16;
  Map m = Map::create(g.name(), o);
  std::vector<int> failures(kThreads, 0);
  run_threads(kThreads, [&](int t) {
    if (t % 2 == 0) {
      for (int i = 0; i < adds; ++i)
        if (!shmap::succeeded(m.fetch_add("ctr" + std::to_string(i % kCounters), t + 1).status))
          ++failures[std::size_t(t)];
    } else {
      const std::string p = "churn" + std::to_string(t) + "-";
      for (int i = 0; i < adds; ++i) {
        if (m.insert(p + std::to_string(i), "y") != Status::ok) ++failures[std::size_t(t)];
        if (i >= 700 && !m.erase(p + std::to_string(i - 700))) ++failures[std::size_t(t)];
      }
    }
  });
  for (int t = 0; t < kThreads; ++t) CHECK(failures[std::size_t(t)] == 0);
  // Counter c got, from each even thread t, (t + 1) once per i with i % 8 == c.
  for (int c = 0; c < kCounters; ++c) {
    std::int64_t expected = 0;
    for (int t = 0; t < kThreads; t += 2) expected += std::int64_t(t + 1) * ((adds - c + kCounters - 1) / kCounters);
    std::int64_t v = 0;
    REQUIRE(m.get_as("ctr" + std::to_string(c), v) == Status::ok);
    CHECK(v == expected);
  }
  CHECK(m.stats().migrations >= 10);
  check_quiescent(m);
}

TEST_CASE("threads churning their own keys across hundreds of migrations never lose one (concurrent retirers)") {
  // Every thread inserts fresh keys and erases its own key from 700 inserts
  // ago: same-size rebuilds all the time (about 24 per round), each ending in
  // a retirement that several threads try at once. A retirer that zeroed a
  // run another had already freed (and a new table taken) would wipe live
  // keys: the erases would then fail. Under TSan the rounds, not the
  // operations per round, are cut, so every round still migrates 20 times.
  const int rounds = kSlowdown == 1 ? 11 : 3;
  for (int round = 0; round < rounds; ++round) {
    CAPTURE(round);
    SegmentGuard g;
    shmap::Options o = small_options(12);
    o.help_slots = 16;
    Map m = Map::create(g.name(), o);
    std::vector<int> failures(kThreads, 0);
    run_threads(kThreads, [&](int t) {
      const std::string p = "c" + std::to_string(t) + "-";
      for (int i = 0; i < 20000; ++i) {
        if (m.insert(p + std::to_string(i), "y") != Status::ok) ++failures[std::size_t(t)];
        if (i >= 700 && !m.erase(p + std::to_string(i - 700))) ++failures[std::size_t(t)];
      }
    });
    for (int t = 0; t < kThreads; ++t) CHECK(failures[std::size_t(t)] == 0);
    CHECK(m.size() == std::uint64_t(kThreads) * 700);
    CHECK(m.stats().migrations >= 20);
    check_quiescent(m);
  }
}
