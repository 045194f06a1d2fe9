// The implementations the driver measures, behind one small adapter interface,
// and the timed loop that drives them.
//
// Adapter interface (one adapter object per worker):
//   bool get(std::string_view key, std::string& out)            copies the value into out; false if absent
//   bool insert(std::string_view key, std::string_view value)   true if inserted
//   bool assign(std::string_view key, std::string_view value)   insert_or_assign; true if it took effect
//   bool add(std::string_view key, std::int64_t delta)          adds to the 8-byte integer value of a
//                                                              present key; true if it took effect
//   bool erase(std::string_view key)                            true if this call erased the key (churn)
#pragma once

#include <sys/mman.h>

#include <algorithm>
#include <atomic>
#include <bit>
#include <cstdint>
#include <cstring>
#include <mutex>
#include <new>
#include <shared_mutex>
#include <stdexcept>
#include <string>
#include <string_view>
#include <system_error>
#include <unordered_map>

#include "latency.hpp"
#include "runner.hpp"
#include "shmap/shmap.hpp"
#include "workload.hpp"

namespace shmap::bench {

// Operations between two reads of the clock.
inline constexpr std::size_t kClockEvery = 256;

// Where a worker records sampled latencies: every `period`-th operation (a
// power of two; 0 = none) is timed into `hist`, the worker's histogram in the
// shared results region.
struct LatencySampler {
  LatencyHistogram* hist = nullptr;
  std::uint32_t period = 0;
};

// One operation of the stream.
template <WorkloadKind Kind, class Table>
[[gnu::always_inline]] inline void run_op(Table& table, const OpStream& s, std::size_t i, std::string& out,
                                          LoopCounts& c) {
  if constexpr (Kind == WorkloadKind::insert) {
    if (table.insert(s.key(i), s.value(i))) ++c.writes_ok; else ++c.writes_failed;
  } else if constexpr (Kind == WorkloadKind::counter) {
    if (table.add(s.key(i), 1)) ++c.writes_ok; else ++c.writes_failed;
  } else if constexpr (Kind == WorkloadKind::churn) {
    // Table is a ChurnTable: even operations insert a fresh key, odd ones
    // erase the key inserted `window` pairs earlier; both must take effect.
    if (table.step(i))
      ++c.writes_ok;
    else
      ++c.writes_failed;
  } else if constexpr (Kind == WorkloadKind::mixed) {
    if (s.is_write[i]) {
      if (table.assign(s.key(i), s.value(i))) ++c.writes_ok; else ++c.writes_failed;
    } else if (table.get(s.key(i), out)) {
      c.hit(out);
    } else {
      ++c.misses;
    }
  } else {
    if (table.get(s.key(i), out)) {
      c.hit(out);
    } else {
      ++c.misses;
    }
  }
}

// Operations [i, end) of the stream: the plain inner loop. Not inlined, so the
// loop with sampling and the loop without run the very same machine code for
// their blocks: the fastest tables are memory-latency bound, and their
// throughput follows how many operations fit in the out-of-order window, so
// any difference in the inner loop's code generation would show up as a
// "sampling cost" (measured: ideal-shm get ran a third slower when this loop
// was inlined into the sampling variant, even timing 1 op in 2^20).
template <WorkloadKind Kind, class Table>
[[gnu::noinline]] void run_block(Table& table, const OpStream& s, std::size_t i, std::size_t end, std::string& out,
                                 LoopCounts& c) {
  for (; i < end; ++i) run_op<Kind>(table, s, i, out, c);
}

// The timed loop. Runs the stream (cycling if it is cyclic) until the deadline
// on CLOCK_MONOTONIC, or the end of a non-cyclic stream.
//
// The stream runs in blocks of kClockEvery operations (with Sample: of
// min(period, kClockEvery)), the clock read between blocks. With Sample, the
// first operation of every (period / block)-th block is timed on its own
// (latency.hpp) before the block's plain inner loop.
template <WorkloadKind Kind, bool Sample, class Table>
LoopCounts run_loop(Table& table, const OpStream& s, std::int64_t deadline_ns, LatencySampler sampler) {
  LoopCounts c;
  std::string out;
  out.reserve(std::max<std::size_t>(s.value_bytes, 32));
  const std::int64_t cpu0 = thread_cpu_ns();
  const std::size_t block = Sample ? std::min<std::size_t>(sampler.period, kClockEvery) : kClockEvery;
  const std::size_t blocks_per_sample = Sample ? sampler.period / block : 0;
  std::size_t countdown = 1;  // the first block is sampled
  std::size_t i = 0, since_clock = 0;
  while (s.count > 0) {  // i < s.count at the top of every block
    const std::size_t begin = i;
    const std::size_t end = std::min(i + block, s.count);
    if constexpr (Sample) {
      if (--countdown == 0) {
        countdown = blocks_per_sample;
        const std::uint64_t t0 = tick_begin();
        run_op<Kind>(table, s, i, out, c);
        sampler.hist->record(tick_end() - t0);
        ++i;
      }
    }
    run_block<Kind>(table, s, i, end, out, c);
    i = end;
    c.ops += end - begin;
    since_clock += end - begin;
    if (i == s.count) {
      if (!s.cyclic) break;
      i = 0;
    }
    if (since_clock >= kClockEvery) {
      since_clock = 0;
      if (now_ns() >= deadline_ns) break;
    }
  }
  c.end_ns = now_ns();
  c.cpu_ns = thread_cpu_ns() - cpu0;
  return c;
}

template <WorkloadKind Kind, class Table>
LoopCounts run_sampled(Table& t, const OpStream& s, std::int64_t deadline_ns, LatencySampler sampler) {
  if (sampler.period > 0 && sampler.hist != nullptr) return run_loop<Kind, true>(t, s, deadline_ns, sampler);
  return run_loop<Kind, false>(t, s, deadline_ns, sampler);
}

// The churn loop's adapter: generates the fresh keys of a stream's FreshKeys
// (workload.hpp) in order, into buffers it reuses, and runs them on Table.
template <class Table>
struct ChurnTable {
  Table& t;
  const FreshKeys& fresh;
  std::uint64_t pair = 0;  // pairs done
  std::string key, value;

  ChurnTable(Table& table, const FreshKeys& f)
      : t(table), fresh(f), key(f.ks.key_bytes(), '\0'), value(f.ks.value_bytes(), '\0') {}

  // Operation i of the loop: the loop runs them in order, and wraps at an
  // even count, so i's parity says which half of the pair it is.
  bool step(std::size_t i) {
    if ((i & 1) == 0) {
      const std::uint64_t k = fresh.index(pair + fresh.window);
      fresh.ks.key(k, key.data());
      fresh.ks.value(k, value.data());
      return t.insert(key, value);
    }
    fresh.ks.key(fresh.index(pair++), key.data());
    return t.erase(key);
  }
};

// The loop of a stream (OpStream::loop).
template <class Table>
LoopCounts dispatch(const OpStream& s, Table& t, std::int64_t deadline_ns, LatencySampler sampler) {
  switch (s.loop) {
    case WorkloadKind::get:
    case WorkloadKind::get_miss: return run_sampled<WorkloadKind::get>(t, s, deadline_ns, sampler);
    case WorkloadKind::insert: return run_sampled<WorkloadKind::insert>(t, s, deadline_ns, sampler);
    case WorkloadKind::mixed: return run_sampled<WorkloadKind::mixed>(t, s, deadline_ns, sampler);
    case WorkloadKind::counter: return run_sampled<WorkloadKind::counter>(t, s, deadline_ns, sampler);
    case WorkloadKind::churn: {
      ChurnTable<Table> churn(t, *s.fresh);
      return run_sampled<WorkloadKind::churn>(churn, s, deadline_ns, sampler);
    }
    case WorkloadKind::get_migrating:
    case WorkloadKind::get_with_writer:
      break;  // workloads, never a stream's loop
  }
  throw std::logic_error("no timed loop for this stream");
}

// ---------------------------------------------------------------------------
// shmap
// ---------------------------------------------------------------------------
struct ShmapTable {
  shmap::Map& map;
  Status first_failure = Status::ok;  // the first unexpected status, for the report

  bool get(std::string_view key, std::string& out) { return map.get(key, out); }
  bool insert(std::string_view key, std::string_view value) { return note(map.insert(key, value)); }
  bool assign(std::string_view key, std::string_view value) {
    return note(map.insert_or_assign(key, value));
  }
  bool add(std::string_view key, std::int64_t delta) { return note(map.fetch_add(key, delta).status); }
  bool erase(std::string_view key) { return map.erase(key); }

 private:
  bool note(Status s) {
    if (succeeded(s)) return true;
    if (first_failure == Status::ok) first_failure = s;
    return false;
  }
};

// ---------------------------------------------------------------------------
// std::unordered_map behind a mutex: the in-process baseline. It lives in one
// process's heap, so it can only be shared by threads, never by processes.
// ---------------------------------------------------------------------------
struct StringHash {
  using is_transparent = void;  // heterogeneous lookup: find(string_view) allocates nothing
  std::size_t operator()(std::string_view s) const noexcept { return std::hash<std::string_view>{}(s); }
};
using StdMap = std::unordered_map<std::string, std::string, StringHash, std::equal_to<>>;

// Mutex is std::mutex (every operation exclusive) or std::shared_mutex (gets
// take the lock shared).
template <class Mutex>
struct LockedStdMap {
  StdMap map;
  Mutex mu;
};

template <class Mutex>
struct StdTable {
  LockedStdMap<Mutex>& m;

  bool get(std::string_view key, std::string& out) {
    if constexpr (std::is_same_v<Mutex, std::shared_mutex>) {
      std::shared_lock lock(m.mu);
      return find_copy(key, out);
    } else {
      std::lock_guard lock(m.mu);
      return find_copy(key, out);
    }
  }
  bool insert(std::string_view key, std::string_view value) {
    std::lock_guard lock(m.mu);
    return m.map.try_emplace(std::string(key), value).second;
  }
  bool assign(std::string_view key, std::string_view value) {
    std::lock_guard lock(m.mu);
    if (auto it = m.map.find(key); it != m.map.end()) {
      it->second.assign(value);  // reuses the value's capacity: no allocation
    } else {
      m.map.try_emplace(std::string(key), value);
    }
    return true;
  }
  bool add(std::string_view key, std::int64_t delta) {
    std::lock_guard lock(m.mu);
    const auto it = m.map.find(key);
    if (it == m.map.end() || it->second.size() != sizeof(std::int64_t)) return false;
    std::int64_t v;
    std::memcpy(&v, it->second.data(), sizeof v);
    v = static_cast<std::int64_t>(static_cast<std::uint64_t>(v) + static_cast<std::uint64_t>(delta));
    std::memcpy(it->second.data(), &v, sizeof v);
    return true;
  }
  bool erase(std::string_view key) {
    std::lock_guard lock(m.mu);
    const auto it = m.map.find(key);
    if (it == m.map.end()) return false;
    m.map.erase(it);
    return true;
  }

 private:
  bool find_copy(std::string_view key, std::string& out) {
    const auto it = m.map.find(key);
    if (it == m.map.end()) return false;
    out.assign(it->second);
    return true;
  }
};

// ---------------------------------------------------------------------------
// The ideal table: the ceiling for get. A linear-probing array of 16-byte slots
// {8-byte key, 8-byte value} inline, in a MAP_SHARED mapping inherited by the
// forked workers. No safety at all: no record indirection, no validation, no
// generation checks, no crash consistency; a reader can see a key whose value
// is being replaced. Only 8-byte keys and values. Key word 0 means EMPTY (the
// key space never produces it). The table is sized like shmap's index (the
// next power of two >= capacity * 4/3).
//
// Loads are relaxed atomics (the same plain MOV on x86-64, but no data race in
// the C++ model); a slot is claimed with a relaxed CAS on its key word so two
// inserting processes cannot both take it, and values are relaxed stores.
// ---------------------------------------------------------------------------
class IdealShm {
 public:
  struct Slot {
    std::uint64_t key;
    std::uint64_t value;
  };
  static_assert(sizeof(Slot) == 16, "the ideal table keeps 16-byte inline slots");

  explicit IdealShm(std::uint64_t capacity) {
    slots_ = std::bit_ceil(std::max<std::uint64_t>(capacity + capacity / 3, 16));
    shift_ = 64 - std::countr_zero(slots_);
    bytes_ = slots_ * sizeof(Slot);
    void* p = mmap(nullptr, bytes_, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) throw std::system_error(errno, std::generic_category(), "mmap of the ideal table");
    base_ = static_cast<Slot*>(p);  // zero-filled: every slot EMPTY
  }
  ~IdealShm() { munmap(base_, bytes_); }
  IdealShm(const IdealShm&) = delete;
  IdealShm& operator=(const IdealShm&) = delete;

  std::uint64_t slots() const { return slots_; }

  bool get(std::uint64_t key, std::uint64_t& value) const {
    for (std::uint64_t i = home(key);; i = (i + 1) & (slots_ - 1)) {
      // Relaxed: no ordering with the value store; a torn pair is the "no safety" in the name.
      const std::uint64_t k = std::atomic_ref<std::uint64_t>(base_[i].key).load(std::memory_order_relaxed);
      if (k == key) {
        // Relaxed: the value may be mid-update by a concurrent assign; ideal means unvalidated.
        value = std::atomic_ref<std::uint64_t>(base_[i].value).load(std::memory_order_relaxed);
        return true;
      }
      if (k == 0) return false;
    }
  }

  // Inserts if absent; false if present or the table is full.
  bool insert(std::uint64_t key, std::uint64_t value) {
    std::uint64_t i = home(key);
    for (std::uint64_t probes = 0; probes < slots_; ++probes, i = (i + 1) & (slots_ - 1)) {
      std::uint64_t k = std::atomic_ref<std::uint64_t>(base_[i].key).load(std::memory_order_relaxed);
      if (k == 0) {
        // Relaxed CAS: claims the slot against other inserters; readers are not
        // ordered against it (they may see the key before its value: no safety).
        if (std::atomic_ref<std::uint64_t>(base_[i].key).compare_exchange_strong(k, key, std::memory_order_relaxed)) {
          // Relaxed: the value store is not ordered with the claim (see above).
          std::atomic_ref<std::uint64_t>(base_[i].value).store(value, std::memory_order_relaxed);
          return true;
        }
      }
      if (k == key) return false;
    }
    return false;
  }

  // Replaces the value of a present key; false if absent.
  bool assign(std::uint64_t key, std::uint64_t value) {
    for (std::uint64_t i = home(key);; i = (i + 1) & (slots_ - 1)) {
      // Relaxed: key words only change from EMPTY to a key, and writers are unordered by design.
      const std::uint64_t k = std::atomic_ref<std::uint64_t>(base_[i].key).load(std::memory_order_relaxed);
      if (k == key) {
        // Relaxed: a plain last-writer-wins store; no reader validates it.
        std::atomic_ref<std::uint64_t>(base_[i].value).store(value, std::memory_order_relaxed);
        return true;
      }
      if (k == 0) return false;
    }
  }

  // Adds to the value of a present key; false if absent.
  bool add(std::uint64_t key, std::uint64_t delta) {
    for (std::uint64_t i = home(key);; i = (i + 1) & (slots_ - 1)) {
      // Relaxed: as in assign.
      const std::uint64_t k = std::atomic_ref<std::uint64_t>(base_[i].key).load(std::memory_order_relaxed);
      if (k == key) {
        // Relaxed: an atomic read-modify-write is exact without ordering; nothing is published.
        std::atomic_ref<std::uint64_t>(base_[i].value).fetch_add(delta, std::memory_order_relaxed);
        return true;
      }
      if (k == 0) return false;
    }
  }

  // The mapping, for --membind and the page census.
  void* base() const { return base_; }
  std::size_t bytes() const { return bytes_; }

 private:
  // Fibonacci hashing: the top bits of key * 2^64/phi.
  std::uint64_t home(std::uint64_t key) const { return (key * 0x9e3779b97f4a7c15ull) >> shift_; }

  Slot* base_ = nullptr;
  std::uint64_t slots_ = 0;
  int shift_ = 0;
  std::size_t bytes_ = 0;
};

// ---------------------------------------------------------------------------
// The indirect ideal table: shmap's shape without its safety. An index of
// 8-byte slot words {fingerprint | record number + 1} (0 = EMPTY), linear
// probing, pointing into an array of 24-byte records {header, key, value}
// (shmap's record size for 8-byte keys and values), bump-allocated in insert
// order like shmap's arena. A get costs the same two dependent cache misses as
// shmap's (slot word, then record) but validates nothing; an assign overwrites
// the value in place. The gap between this table and shmap is the price of
// shmap's safety protocol; the gap between ideal-shm and this one is the price
// of the indirection.
// ---------------------------------------------------------------------------
class IdealIndirectShm {
 public:
  struct Record {
    std::uint64_t header;  // lengths only, never validated
    std::uint64_t key;
    std::uint64_t value;
  };
  static_assert(sizeof(Record) == 24, "records mirror shmap's 24-byte record for 8-byte keys and values");

  explicit IdealIndirectShm(std::uint64_t capacity) : capacity_(std::max<std::uint64_t>(capacity, 1)) {
    slots_ = std::bit_ceil(std::max<std::uint64_t>(capacity + capacity / 3, 16));
    shift_ = 64 - std::countr_zero(slots_);
    records_offset_ = 64 + slots_ * 8;
    bytes_ = records_offset_ + capacity_ * sizeof(Record);
    void* p = mmap(nullptr, bytes_, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) throw std::system_error(errno, std::generic_category(), "mmap of the indirect ideal table");
    base_ = static_cast<char*>(p);  // zero-filled: every slot EMPTY, no record used
  }
  ~IdealIndirectShm() { munmap(base_, bytes_); }
  IdealIndirectShm(const IdealIndirectShm&) = delete;
  IdealIndirectShm& operator=(const IdealIndirectShm&) = delete;

  bool get(std::uint64_t key, std::uint64_t& value) const {
    Record* r = find(key);
    // Relaxed: records are never recycled; an assign may be mid-flight (unvalidated by design).
    if (r) value = std::atomic_ref<std::uint64_t>(r->value).load(std::memory_order_relaxed);
    return r != nullptr;
  }

  bool insert(std::uint64_t key, std::uint64_t value) {
    const std::uint64_t h = key * 0x9e3779b97f4a7c15ull;
    const std::uint64_t fp = fingerprint(h);
    std::uint64_t mine = 0;  // record number + 1, allocated on the first EMPTY slot
    std::uint64_t i = h >> shift_;
    for (std::uint64_t probes = 0; probes < slots_; ++probes, i = (i + 1) & (slots_ - 1)) {
      // Acquire: pairs with the release CAS below, so a matching record's key is readable.
      std::uint64_t w = std::atomic_ref<std::uint64_t>(index()[i]).load(std::memory_order_acquire);
      if (w == 0) {
        if (mine == 0) {
          // Relaxed: a bump counter; the record is published by the CAS below.
          mine = std::atomic_ref<std::uint64_t>(next_record()).fetch_add(1, std::memory_order_relaxed) + 1;
          if (mine > capacity_) return false;  // out of records (a lost record number, as no safety)
          Record& r = record(mine);
          r.header = (std::uint64_t{8} << 20) | 8;
          r.key = key;
          r.value = value;
        }
        // Release: publishes the record written above; pairs with the acquire loads of slot words.
        if (std::atomic_ref<std::uint64_t>(index()[i])
                .compare_exchange_strong(w, (fp << 32) | mine, std::memory_order_release, std::memory_order_acquire)) {
          return true;
        }
      }
      if ((w >> 32) == fp && record(w).key == key) return false;  // present (the record was acquired above)
    }
    return false;
  }

  bool assign(std::uint64_t key, std::uint64_t value) {
    Record* r = find(key);
    // Relaxed: in-place last-writer-wins; readers do not validate.
    if (r) std::atomic_ref<std::uint64_t>(r->value).store(value, std::memory_order_relaxed);
    return r != nullptr;
  }

  bool add(std::uint64_t key, std::uint64_t delta) {
    Record* r = find(key);
    // Relaxed: an atomic read-modify-write is exact without ordering; nothing is published.
    if (r) std::atomic_ref<std::uint64_t>(r->value).fetch_add(delta, std::memory_order_relaxed);
    return r != nullptr;
  }

  void* base() const { return base_; }
  std::size_t bytes() const { return bytes_; }

 private:
  // The record holding `key`, or null: get's and assign's probe.
  Record* find(std::uint64_t key) const {
    const std::uint64_t h = key * 0x9e3779b97f4a7c15ull;
    const std::uint64_t fp = fingerprint(h);
    for (std::uint64_t i = h >> shift_;; i = (i + 1) & (slots_ - 1)) {
      // Acquire: pairs with the release CAS in insert (free on x86-64), so the record is written.
      const std::uint64_t w = std::atomic_ref<std::uint64_t>(index()[i]).load(std::memory_order_acquire);
      if (w == 0) return nullptr;
      if ((w >> 32) != fp) continue;
      Record& r = record(w);
      // Relaxed: keys of published records never change.
      if (std::atomic_ref<std::uint64_t>(r.key).load(std::memory_order_relaxed) == key) return &r;
    }
  }

  // 8 bits below the index bits of the Fibonacci hash.
  std::uint64_t fingerprint(std::uint64_t h) const { return ((h >> (shift_ - 8)) & 0xff) + 1; }
  std::uint64_t& next_record() const { return *reinterpret_cast<std::uint64_t*>(base_); }
  std::uint64_t* index() const { return reinterpret_cast<std::uint64_t*>(base_ + 64); }
  Record& record(std::uint64_t w) const {
    return reinterpret_cast<Record*>(base_ + records_offset_)[(w & 0xffffffffull) - 1];
  }

  char* base_ = nullptr;
  std::uint64_t capacity_ = 0;
  std::uint64_t slots_ = 0;
  int shift_ = 0;
  std::uint64_t records_offset_ = 0;
  std::size_t bytes_ = 0;
};

// Adapts either ideal table to the driver's string interface.
template <class Ideal>
struct IdealTable {
  Ideal& t;

  bool get(std::string_view key, std::string& out) {
    std::uint64_t v;
    if (!t.get(word(key), v)) return false;
    out.assign(reinterpret_cast<const char*>(&v), sizeof v);  // the same copy-out shmap's get does
    return true;
  }
  bool insert(std::string_view key, std::string_view value) { return t.insert(word(key), word(value)); }
  bool assign(std::string_view key, std::string_view value) { return t.assign(word(key), word(value)); }
  bool add(std::string_view key, std::int64_t delta) { return t.add(word(key), static_cast<std::uint64_t>(delta)); }
  // The ideal tables have no deleted marker: churn does not apply to them
  // (measure.cpp, applies), so this is never reached.
  bool erase(std::string_view) { throw std::logic_error("the ideal tables cannot erase"); }

 private:
  // The ideal tables take 8-byte keys and values only (checked before they are used).
  static std::uint64_t word(std::string_view b) {
    std::uint64_t w = 0;
    std::memcpy(&w, b.data(), std::min(b.size(), sizeof w));
    return w;
  }
};

}  // namespace shmap::bench
