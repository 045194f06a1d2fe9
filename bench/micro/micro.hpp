// shmap-micro: Google Benchmark micro suite comparing shmap with baselines
// under identical key sets and access patterns (bench/micro/README.md).
//
// SHAPE OF ONE BENCHMARK
//   <op>/<impl>/k<key bytes>/v<value bytes>/n<keys>/real_time/threads:<T>
// Every benchmark is one Case {op, impl, key bytes, value bytes, keys} run by
// run_case<Table>(), a template over the implementation's adapter (the Table
// interface below), so every implementation runs the same loop on the same
// pre-generated key streams. Only the operation loop is timed.
//
//   thread 0:  prepare() -- builds or reuses the table and the streams
//   all:       barrier, then `for (auto _ : state)` over the thread's stream
//   all:       count wrong results (a get hit that misses, a wrong value,
//              a write that did not take effect); any makes the run fail
//
// KEYS. Key i is `key_bytes` bytes whose first word is a bijection of i onto
// [1, 2^63): keys are distinct, look uniformly random to any hash, are never
// zero (the ideal tables' EMPTY) and leave bit 63 free (their DELETED flag).
// Keys [0, n) are the preloaded set, [n, 2n) are never inserted (get_miss).
// The value of key k is `value_bytes` bytes whose first word is
// word0(k) ^ kValueTag, so a get checks its result with one compare. Updates
// write the same bytes, so the check holds under any interleaving (a torn or
// stale value of another key still fails it).
//
// TABLE INTERFACE (each adapter; all calls may run on any benchmark thread
// unless the implementation is registered single-threaded):
//   explicit Table(const Case&)                 empty, sized for c.keys keys
//   long get(sv key, char* out) const           value length copied to out (cap kOutBytes), -1 if absent
//   bool insert(sv key, sv value)               true if it inserted (the key was absent)
//   Put  assign(sv key, sv value)               insert_or_assign: inserted, assigned or failed
//   bool erase(sv key)                          true if it erased the key
//   bool fetch_add(sv key, std::uint64_t d)     true if the key was present and its 8-byte value got d added
//   double footprint() const                    bytes the table holds, or < 0: measure the heap instead
//   struct ThreadScope                          constructed on each benchmark thread (libcds attaches)
#pragma once

#include <benchmark/benchmark.h>
#include <malloc.h>

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <cstring>
#include <exception>
#include <map>
#include <memory>
#include <stdexcept>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "../common/splitmix64.hpp"

namespace shmap::micro {

enum class Op { get_hit, get_miss, update, mixed, fetch_add, insert, erase };

inline const char* op_name(Op op) {
  switch (op) {
    case Op::get_hit:
      return "get_hit";
    case Op::get_miss:
      return "get_miss";
    case Op::update:
      return "update";
    case Op::mixed:
      return "mixed_90_10";
    case Op::fetch_add:
      return "fetch_add";
    case Op::insert:
      return "insert";
    case Op::erase:
      return "erase";
  }
  return "?";
}

struct Case {
  Op op = Op::get_hit;
  std::string impl;
  std::uint32_t key_bytes = 8;
  std::uint32_t value_bytes = 8;
  std::uint64_t keys = 0;
};

enum class Put { failed, inserted, assigned };

// The largest value any benchmark reads back (the 1024-byte sweep point).
inline constexpr std::size_t kOutBytes = 1024;
inline constexpr std::uint64_t kValueTag = 0x5bd1e9955bd1e995ull;
// Mixed: this many of every 100 operations (drawn at random) are writes.
inline constexpr unsigned kMixedWritePercent = 10;

inline std::uint64_t load64(const void* p) {
  std::uint64_t w;
  std::memcpy(&w, p, sizeof w);
  return w;
}
inline void store64(void* p, std::uint64_t w) {
  std::memcpy(p, &w, sizeof w);
}
inline std::uint64_t round8(std::uint64_t x) {
  return (x + 7) & ~std::uint64_t{7};
}

// A bijection of [0, 2^63) that maps 0 to 0 (xorshifts and odd multiplies mod 2^63).
constexpr std::uint64_t mix63(std::uint64_t x) {
  constexpr std::uint64_t kMask = (std::uint64_t{1} << 63) - 1;
  x ^= x >> 31;
  x = (x * 0x7fb5d329728ea185ull) & kMask;
  x ^= x >> 27;
  x = (x * 0x81dadef4bc2dd44dull) & kMask;
  x ^= x >> 33;
  return x;
}
// First word of key i: in [1, 2^63), distinct for distinct i.
constexpr std::uint64_t key_word(std::uint64_t i) {
  return mix63(i + 1);
}

// Writes key i (key_bytes >= 8) to out.
inline void write_key(std::uint64_t i, std::uint32_t key_bytes, char* out) {
  const std::uint64_t w = key_word(i);
  store64(out, w);
  for (std::uint32_t at = 8; at < key_bytes; at += 8) {
    const std::uint64_t fill = w * (2 * at + 1) + at;
    std::memcpy(out + at, &fill, std::min<std::uint32_t>(8, key_bytes - at));
  }
}

// Writes the value of the key starting at `key` (value_bytes >= 8) to out.
inline void write_value(const char* key, std::uint32_t value_bytes, char* out) {
  std::memset(out, 0x5a, value_bytes);
  store64(out, load64(key) ^ kValueTag);
}

using benchutil::SplitMix64;  // bench/common/splitmix64.hpp

// One thread's operations: the key bytes in operation order (read
// sequentially by the timed loop: no key generation, no indirection), and for
// mixed which of them are writes.
struct Stream {
  std::vector<char> bytes;
  std::vector<std::uint8_t> write;
  std::size_t count = 0;
  std::uint32_t key_bytes = 0;
  const char* key(std::size_t j) const { return bytes.data() + j * key_bytes; }
};

enum class StreamKind {
  hit,    // uniform random preloaded keys
  mixed,  // the same, with kMixedWritePercent% writes drawn at random
  miss,   // uniform random never-inserted keys
  slice,  // thread t's share of a random permutation of the preloaded keys (insert, erase)
};

// The stream of thread t of `threads` for the current configuration, built on
// first use. Only thread 0 calls this (in prepare), before the start barrier.
const Stream& stream(StreamKind kind, std::uint32_t key_bytes, std::uint64_t keys, int threads, int t);

// Tables preloaded for one configuration, shared by its benchmarks and their
// repetitions (type-erased; the shared_ptr keeps the right deleter).
std::shared_ptr<void>& cached_table(const std::string& key);
// Drops every cached stream and table when `c` is another key/value/map size
// than the previous benchmark's, so memory holds one configuration at a time.
void enter_configuration(const Case& c);
// Destroys every cached table (main, before libcds's garbage collector goes).
void drop_all_caches();

// Bytes the process heap holds (glibc: every arena, plus mmapped chunks).
inline double heap_bytes() {
  const struct mallinfo2 mi = mallinfo2();
  return static_cast<double>(mi.uordblks + mi.hblkhd);
}

// Marks the run failed: skipped with the message, and the exit status becomes 1.
void fail(benchmark::State& st, const std::string& message);
bool any_failed();

// A reusable barrier for the threads of one run (the count is passed at every
// wait: all threads of a run pass the same one).
class SpinBarrier {
 public:
  void wait(int n) {
    if (n <= 1) return;
    // Acquire: pairs with the last arriver's release increment below, so a
    // thread reads the generation it is waiting to see change.
    const std::uint32_t gen = gen_.load(std::memory_order_acquire);
    // Acq_rel: the last arriver acquires every earlier arriver's writes
    // (made before its increment) before it releases them all below.
    if (count_.fetch_add(1, std::memory_order_acq_rel) + 1 == static_cast<std::uint32_t>(n)) {
      // Relaxed: ordered before the release increment that frees the waiters.
      count_.store(0, std::memory_order_relaxed);
      // Release: publishes every arriver's writes (and the reset) to the waiters' acquire load below.
      gen_.fetch_add(1, std::memory_order_release);
      return;
    }
    // Acquire: pairs with the release increment above.
    while (gen_.load(std::memory_order_acquire) == gen) std::this_thread::yield();
  }

 private:
  std::atomic<std::uint32_t> count_{0};
  std::atomic<std::uint32_t> gen_{0};
};
SpinBarrier& barrier();

// The state thread 0 prepares and every thread of a run reads after the
// start barrier. Cached tables stay owned by cached_table() (only thread 0's
// prepare drops them, between runs); an insert run's fresh table lives in
// `fresh` until thread 0 drops it after the loop. So nothing outlives main().
template <class Table>
struct Run {
  Table* table = nullptr;
  std::unique_ptr<Table> fresh;
  std::vector<const Stream*> streams;
  double bytes_per_entry = -1;
  std::uint64_t* expected_sum = nullptr;  // fetch_add: the sum of all counters so far
  std::string error;
};
template <class Table>
inline Run<Table> g_run;

// A preloaded table and what was measured when it was built.
template <class Table>
struct Loaded {
  std::unique_ptr<Table> table;
  double bytes_per_entry = -1;
  std::uint64_t expected_sum = 0;
};

// Builds a table preloaded with keys [0, n) and their values (fetch_add:
// 8-byte zero counters). Throws on a failed insert.
template <class Table>
std::shared_ptr<Loaded<Table>> build(const Case& c, bool counters) {
  auto l = std::make_shared<Loaded<Table>>();
  const double heap0 = heap_bytes();
  l->table = std::make_unique<Table>(c);
  const std::uint32_t vb = counters ? 8 : c.value_bytes;
  std::vector<char> key(c.key_bytes), value(vb);
  for (std::uint64_t i = 0; i < c.keys; ++i) {
    write_key(i, c.key_bytes, key.data());
    if (counters) {
      std::memset(value.data(), 0, vb);
    } else {
      write_value(key.data(), vb, value.data());
    }
    if (!l->table->insert({key.data(), c.key_bytes}, {value.data(), vb})) {
      throw std::runtime_error("preload: insert of key " + std::to_string(i) + " of " + std::to_string(c.keys) +
                               " failed");
    }
  }
  const double own = l->table->footprint();
  const double bytes = own >= 0 ? own : heap_bytes() - heap0;
  l->bytes_per_entry = bytes / static_cast<double>(c.keys);
  return l;
}

// Thread 0, before the start barrier: the table and streams of this run.
template <class Table>
void prepare(Run<Table>& r, const Case& c, int threads) {
  enter_configuration(c);
  const bool counters = c.op == Op::fetch_add;
  if (c.op == Op::insert) {
    r.fresh = std::make_unique<Table>(c);
    r.table = r.fresh.get();
  } else {
    // get_hit, get_miss, update and mixed leave the table as they found it
    // (updates write the same bytes), so they share one preloaded table;
    // fetch_add needs counters; erase puts back what it took after each run.
    const char* purpose = counters ? "counters" : c.op == Op::erase ? "erase" : "values";
    std::shared_ptr<void>& slot = cached_table(c.impl + "/" + purpose);
    if (!slot) slot = build<Table>(c, counters);
    auto* l = static_cast<Loaded<Table>*>(slot.get());
    r.table = l->table.get();
    r.bytes_per_entry = l->bytes_per_entry;
    r.expected_sum = &l->expected_sum;
  }
  const StreamKind kind = c.op == Op::get_miss                        ? StreamKind::miss
                          : c.op == Op::mixed                         ? StreamKind::mixed
                          : (c.op == Op::insert || c.op == Op::erase) ? StreamKind::slice
                                                                      : StreamKind::hit;
  for (int t = 0; t < threads; ++t) r.streams.push_back(&stream(kind, c.key_bytes, c.keys, threads, t));
}

// Thread 0, after the loop: every counter read back; their sum must be all
// increments ever made. Returns an error message or "".
template <class Table>
std::string check_counter_sum(Run<Table>& r, const Case& c, std::uint64_t increments) {
  std::vector<char> key(c.key_bytes);
  alignas(8) char out[kOutBytes];
  std::uint64_t sum = 0;
  for (std::uint64_t i = 0; i < c.keys; ++i) {
    write_key(i, c.key_bytes, key.data());
    if (r.table->get({key.data(), c.key_bytes}, out) != 8) return "fetch_add: a counter is missing or not 8 bytes";
    sum += load64(out);
  }
  const std::uint64_t expected = *r.expected_sum + increments;
  *r.expected_sum = sum;
  if (sum != expected) {
    return "fetch_add: the counters sum to " + std::to_string(sum) + ", expected " + std::to_string(expected);
  }
  return "";
}

// The benchmark body: every thread of the run calls it.
template <class Table>
void run_case(benchmark::State& st, const Case& c) {
  [[maybe_unused]] const typename Table::ThreadScope scope;
  const int t = st.thread_index();
  const int nt = st.threads();
  Run<Table>& r = g_run<Table>;
  if (t == 0) {
    r = Run<Table>{};
    try {
      prepare(r, c, nt);
    } catch (const std::exception& e) {
      r.error = std::string("setup failed: ") + e.what();
    }
  }
  barrier().wait(nt);
  if (!r.error.empty()) {
    fail(st, r.error);
    for (auto _ : st) {
    }
    if (t == 0) r.fresh.reset();
    return;
  }

  const Stream& s = *r.streams[static_cast<std::size_t>(t)];
  const std::uint32_t kb = c.key_bytes;
  const std::uint32_t vb = c.op == Op::fetch_add ? 8 : c.value_bytes;
  const long want = static_cast<long>(vb);
  alignas(64) char out[kOutBytes];
  std::memset(out, 0, sizeof out);  // defined before the first get (a miss leaves it untouched)
  std::string value(vb, '\0');
  char* v = value.data();
  std::uint64_t bad = 0;
  std::size_t j = 0;
  Table* tab = r.table;

  switch (c.op) {
    case Op::get_hit:
      for (auto _ : st) {
        const char* k = s.key(j);
        const long len = tab->get({k, kb}, out);
        benchmark::DoNotOptimize(len);
        bad += static_cast<std::uint64_t>((len != want) | (load64(out) != (load64(k) ^ kValueTag)));
        if (++j == s.count) j = 0;
      }
      break;
    case Op::get_miss:
      for (auto _ : st) {
        const long len = tab->get({s.key(j), kb}, out);
        benchmark::DoNotOptimize(len);
        bad += static_cast<std::uint64_t>(len >= 0);
        if (++j == s.count) j = 0;
      }
      break;
    case Op::update:
      write_value(s.key(0), vb, v);
      for (auto _ : st) {
        const char* k = s.key(j);
        store64(v, load64(k) ^ kValueTag);
        bad += static_cast<std::uint64_t>(tab->assign({k, kb}, {v, vb}) != Put::assigned);
        if (++j == s.count) j = 0;
      }
      break;
    case Op::mixed:
      write_value(s.key(0), vb, v);
      for (auto _ : st) {
        const char* k = s.key(j);
        if (s.write[j]) {
          store64(v, load64(k) ^ kValueTag);
          bad += static_cast<std::uint64_t>(tab->assign({k, kb}, {v, vb}) != Put::assigned);
        } else {
          const long len = tab->get({k, kb}, out);
          benchmark::DoNotOptimize(len);
          bad += static_cast<std::uint64_t>((len != want) | (load64(out) != (load64(k) ^ kValueTag)));
        }
        if (++j == s.count) j = 0;
      }
      break;
    case Op::fetch_add:
      for (auto _ : st) {
        bad += static_cast<std::uint64_t>(!tab->fetch_add({s.key(j), kb}, 1));
        if (++j == s.count) j = 0;
      }
      break;
    case Op::insert:
      // Each thread inserts its slice of the n keys into an empty table sized
      // for n; when the slices are done, the threads stop their timers and
      // thread 0 replaces the table with an empty one.
      for (auto _ : st) {
        const char* k = s.key(j);
        write_value(k, vb, v);
        bad += static_cast<std::uint64_t>(!tab->insert({k, kb}, {v, vb}));
        if (++j == s.count) {
          st.PauseTiming();
          barrier().wait(nt);
          if (t == 0) {
            r.fresh.reset();
            r.fresh = std::make_unique<Table>(c);
            r.table = r.fresh.get();
          }
          barrier().wait(nt);
          tab = r.table;
          j = 0;
          st.ResumeTiming();
        }
      }
      break;
    case Op::erase: {
      // Each thread erases its slice of the preloaded keys in a random order,
      // a quarter of the slice per round; between rounds the timers stop and
      // each thread puts back what it erased, so the table holds 3/4 n to n
      // keys and only erases are timed.
      const std::size_t chunk = std::max<std::size_t>(1, s.count / 4);
      std::size_t round_begin = 0;
      auto put_back = [&](std::size_t end) {
        for (std::size_t i = round_begin; i < end; ++i) {
          write_value(s.key(i), vb, v);
          bad += static_cast<std::uint64_t>(!tab->insert({s.key(i), kb}, {v, vb}));
        }
      };
      for (auto _ : st) {
        bad += static_cast<std::uint64_t>(!tab->erase({s.key(j), kb}));
        ++j;
        if (j - round_begin == chunk || j == s.count) {
          st.PauseTiming();
          barrier().wait(nt);
          put_back(j);
          barrier().wait(nt);
          if (j == s.count) j = 0;
          round_begin = j;
          st.ResumeTiming();
        }
      }
      put_back(j);  // untimed: the table is whole again for the next run
      break;
    }
  }

  st.SetItemsProcessed(static_cast<std::int64_t>(st.iterations()));
  if (bad != 0) {
    fail(st, std::to_string(bad) + " wrong results in " + std::to_string(st.iterations()) + " operations");
  }
  if (t == 0) {
    if (c.op == Op::fetch_add) {
      const std::string e =
          check_counter_sum(r, c, static_cast<std::uint64_t>(st.iterations()) * static_cast<std::uint64_t>(nt));
      if (!e.empty()) fail(st, e);
    }
    if (r.bytes_per_entry >= 0) {
      st.counters["bytes_per_entry"] = benchmark::Counter(r.bytes_per_entry);
      st.counters["overhead_per_entry"] =
          benchmark::Counter(r.bytes_per_entry - static_cast<double>(round8(kb) + round8(vb)));
    }
    // Other threads may still be putting back erased keys into a cached
    // table, but never touch an insert run's fresh table after the loop.
    r.fresh.reset();
  }
}

// An implementation as main() registers it.
struct Impl {
  const char* name;
  bool threaded;  // also run with 2 threads
  bool (*supports)(std::uint32_t key_bytes, std::uint32_t value_bytes);
  void (*run)(benchmark::State&, const Case&);
};

std::vector<Impl> shmap_impls();
std::vector<Impl> ideal_impls();
std::vector<Impl> std_impls();
std::vector<Impl> cds_impls();
std::vector<Impl> boost_impls();

// libcds needs its library initialized and a garbage collector for the whole
// run (impl_cds.cpp); main() holds one of these.
class CdsRuntime {
 public:
  CdsRuntime();
  ~CdsRuntime();
  CdsRuntime(const CdsRuntime&) = delete;
  CdsRuntime& operator=(const CdsRuntime&) = delete;

 private:
  struct State;
  std::unique_ptr<State> state_;
};

}  // namespace shmap::micro
