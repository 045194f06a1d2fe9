#include "measure.hpp"

#include <fcntl.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstring>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <random>
#include <shared_mutex>
#include <stdexcept>
#include <system_error>

#include "boost_ipc.hpp"
#include "tables.hpp"
#include "topology.hpp"

namespace shmap::bench {

namespace {

LatencySampler sampler_of(const StartGate& gate) { return {gate.histogram(), gate.sample_period()}; }

// The writer of a one-writer workload is not sampled: the latency columns are
// the readers' gets.
LatencySampler sampler_for(const Workload& wl, unsigned w, const StartGate& gate) {
  if (wl.one_writer() && w == 0) return {};
  return sampler_of(gate);
}

// Keys live when the run ends: the present set (if preloaded) and the churning
// workers' windows; the insert workload's are what its workers inserted.
std::uint64_t expected_live(const Workload& wl, const KeySpace& ks, unsigned workers) {
  return (wl.preloaded() ? ks.keys() : 0) + wl.live_fresh(ks.keys(), workers);
}

std::string worker_tag(unsigned w) { return "worker " + std::to_string(w) + ": "; }

std::uint64_t writes_ok(const Measurement& m) {
  std::uint64_t n = 0;
  for (const WorkerResult& r : m.run.workers) n += r.counts.writes_ok;
  return n;
}

// Outcomes that contradict the workload: a get of a preloaded key that misses,
// a get-miss that hits, a write that fails on a map sized for every key.
void check_counts(const Workload& wl, const KeySpace& ks, Measurement& m) {
  for (unsigned w = 0; w < m.run.workers.size(); ++w) {
    const LoopCounts& c = m.run.workers[w].counts;
    if (wl.kind == WorkloadKind::get_miss) {
      if (c.hits) m.anomalies.push_back(worker_tag(w) + std::to_string(c.hits) + " gets of absent keys found a value");
    } else if (c.misses) {
      m.anomalies.push_back(worker_tag(w) + std::to_string(c.misses) + " gets of preloaded keys missed");
    }
    if (c.writes_failed) {
      m.anomalies.push_back(worker_tag(w) + std::to_string(c.writes_failed) + " writes failed" +
                            (m.run.workers[w].note.empty() ? "" : " (" + m.run.workers[w].note + ")"));
    }
    // The loop sums the length of every value it read.
    if (c.sink != c.hits * ks.value_bytes()) {
      m.anomalies.push_back(worker_tag(w) + "some gets returned a value of the wrong length");
    }
  }
  for (const std::string& e : m.run.errors) m.anomalies.push_back(e);
}

// Counter workload: the counters, read back by the parent after the run, must
// sum to exactly the increments the workers report (every table's add is
// atomic or under its lock, so nothing may be lost).
template <class Table>
void check_counters(Table& t, const Workload& wl, const KeySpace& ks, Measurement& m) {
  if (wl.kind != WorkloadKind::counter) return;
  std::uint64_t total = 0;
  std::string out;
  for (std::uint64_t i = 0; i < wl.counter_keys; ++i) {
    if (!t.get(ks.key(i), out) || out.size() != sizeof(std::uint64_t)) {
      m.anomalies.push_back("after the run counter key " + std::to_string(i) + " is missing or not 8 bytes");
      return;
    }
    std::uint64_t v;
    std::memcpy(&v, out.data(), sizeof v);
    total += v;
  }
  if (total != writes_ok(m)) {
    m.anomalies.push_back("after the run the counters sum to " + std::to_string(total) + " but the workers added " +
                          std::to_string(writes_ok(m)));
  }
}

// The value key i is preloaded with: its own, or 8 zero bytes for a counter.
std::string_view preload_value(const Workload& wl, const KeySpace& ks, std::uint64_t i, std::string& buf) {
  static constexpr char kZero[sizeof(std::uint64_t)] = {};
  if (wl.counter_key(i)) return {kZero, sizeof kZero};
  buf.resize(ks.value_bytes());
  ks.value(i, buf.data());
  return buf;
}

// The churn streams' starting windows (workload.hpp, FreshKeys): fresh keys
// [0, window) of each churning worker, inserted untimed before the run so
// the first erases find their keys.
template <class Table>
void preload_windows(Table& t, const std::vector<OpStream>& streams) {
  for (const OpStream& s : streams) {
    if (!s.fresh) continue;
    const FreshKeys& f = *s.fresh;
    std::string k(f.ks.key_bytes(), '\0'), v(f.ks.value_bytes(), '\0');
    for (std::uint64_t n = 0; n < f.window; ++n) {
      f.ks.key(f.index(n), k.data());
      f.ks.value(f.index(n), v.data());
      if (!t.insert(k, v)) throw std::runtime_error("preload of a churn window failed");
    }
  }
}

// After a churn run: each churning worker's last `window` keys are present
// with their values and a sample of the keys it erased is absent (the window
// moved exactly as far as the worker says it went).
template <class Table>
void verify_windows(Table& t, const std::vector<OpStream>& streams, Measurement& m) {
  std::string k, out;
  std::uint64_t missing = 0, present = 0, wrong = 0;
  for (unsigned w = 0; w < streams.size() && w < m.run.workers.size(); ++w) {
    if (!streams[w].fresh) continue;
    const FreshKeys& f = *streams[w].fresh;
    const std::uint64_t ops = m.run.workers[w].counts.ops;
    if (ops % 2 != 0) {
      m.anomalies.push_back(worker_tag(w) + "stopped between an insert and its erase");
      continue;
    }
    k.resize(f.ks.key_bytes());
    // Up to 2048 of the live keys, [pairs, pairs + window), and 2048 of the erased ones, [0, pairs).
    const std::uint64_t pairs = ops / 2;
    for (std::uint64_t n = pairs; n < pairs + f.window; n += std::max<std::uint64_t>(1, f.window / 2048)) {
      f.ks.key(f.index(n), k.data());
      if (!t.get(k, out)) {
        ++missing;
      } else if (out != f.ks.value(f.index(n))) {
        ++wrong;
      }
    }
    for (std::uint64_t n = 0; n < pairs; n += std::max<std::uint64_t>(1, pairs / 2048)) {
      f.ks.key(f.index(n), k.data());
      if (t.get(k, out)) ++present;
    }
  }
  if (missing)
    m.anomalies.push_back("after the run " + std::to_string(missing) +
                          " sampled keys of the churn windows are missing");
  if (present)
    m.anomalies.push_back("after the run " + std::to_string(present) + " sampled erased churn keys are present");
  if (wrong) m.anomalies.push_back("after the run " + std::to_string(wrong) + " sampled churn keys have a wrong value");
}

// ---------------------------------------------------------------------------
// Shared segments: cleanup on signals, memory binding
// ---------------------------------------------------------------------------

// The segment being measured, for the signal handler: Ctrl-C must not leave a
// segment behind in /dev/shm.
char g_live_segment[96];

void remove_live_segment_and_die(int sig) {
  if (g_live_segment[0] != '\0') shm_unlink(g_live_segment);  // async-signal-safe
  signal(sig, SIG_DFL);
  raise(sig);
}

// Removes the segment (a POSIX shm name) when the measurement ends, however it ends.
class SegmentGuard {
 public:
  SegmentGuard(std::string name, std::function<void(const std::string&)> remove)
      : name_(std::move(name)), remove_(std::move(remove)) {
    const std::size_t len = std::min(name_.size(), sizeof g_live_segment - 1);
    std::memcpy(g_live_segment, name_.data(), len);
    g_live_segment[len] = '\0';
  }
  ~SegmentGuard() {
    g_live_segment[0] = '\0';
    try {
      remove_(name_);
    } catch (...) {
    }
  }
  SegmentGuard(const SegmentGuard&) = delete;
  SegmentGuard& operator=(const SegmentGuard&) = delete;

 private:
  std::string name_;
  std::function<void(const std::string&)> remove_;
};

std::string unique_name(const char* kind) {
  static std::atomic<unsigned> counter{0};
  // Relaxed: only uniqueness of the number matters, and measurements run one at a time.
  const unsigned serial = counter.fetch_add(1, std::memory_order_relaxed);
  // The pid alone can repeat (pids wrap, or another pid namespace shares /dev/shm): a random word too.
  return std::string("/shmap-bench-") + kind + std::to_string(getpid()) + "-" + std::to_string(std::random_device{}()) +
         "-" + std::to_string(serial);
}

void bind_area_or_throw(const Machine& machine, void* addr, std::size_t len, const MemPlan& plan) {
  std::string error;
  if (!machine.bind_area(addr, len, plan, error)) throw std::runtime_error(error);
}

// Installs the plan on a segment file: maps it, binds the whole mapping (the
// policy goes to the tmpfs object and so governs every later fault, by any
// process: see topology.hpp), unmaps.
void bind_file_or_throw(const Machine& machine, const std::string& path, const MemPlan& plan) {
  if (plan.kind == MemPolicyKind::firsttouch) return;
  const int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  struct stat st {};
  if (fd < 0 || fstat(fd, &st) != 0) {
    const int err = errno;
    if (fd >= 0) close(fd);
    throw std::system_error(err, std::generic_category(), "--membind: open " + path);
  }
  const std::size_t len = static_cast<std::size_t>(st.st_size);
  void* p = mmap(nullptr, len, PROT_READ, MAP_SHARED, fd, 0);
  close(fd);
  if (p == MAP_FAILED) throw std::system_error(errno, std::generic_category(), "--membind: mmap " + path);
  std::string error;
  const bool ok = machine.bind_area(p, len, plan, error);
  munmap(p, len);
  if (!ok) throw std::runtime_error(error);
}

// Runs `f` with the calling thread's memory policy set to `plan`.
template <class F>
auto with_thread_membind(const Machine& machine, const MemPlan& plan, F&& f) {
  const ThreadMembind scope(machine, plan);
  if (!scope.ok()) throw std::runtime_error(scope.error());
  return f();
}

// ---------------------------------------------------------------------------
// shmap
// ---------------------------------------------------------------------------

void preload_shmap(shmap::Map& map, const Workload& wl, const KeySpace& ks) {
  std::string k(ks.key_bytes(), '\0'), buf;
  for (std::uint64_t i = 0; i < ks.keys(); ++i) {
    ks.key(i, k.data());
    const Status s = map.insert(k, preload_value(wl, ks, i, buf));
    if (s != Status::ok) {
      throw std::runtime_error("shmap preload: insert of key " + std::to_string(i) + " returned " + to_string(s));
    }
  }
}

// After the run: the map holds exactly the keys it should, with the right values
// (a sample), so a fast but wrong map cannot post a number.
void verify_shmap(shmap::Map& map, const Workload& wl, const KeySpace& ks, const std::vector<OpStream>& streams,
                  Measurement& m) {
  std::uint64_t expected = expected_live(wl, ks, static_cast<unsigned>(streams.size()));
  if (wl.kind == WorkloadKind::insert) expected = writes_ok(m);
  if (map.size() != expected) {
    m.anomalies.push_back("size() is " + std::to_string(map.size()) + " after the run, expected " +
                          std::to_string(expected));
  }
  std::string out;
  const std::uint64_t step = std::max<std::uint64_t>(1, ks.keys() / 4096);
  std::uint64_t wrong = 0, missing = 0, present = 0;
  for (std::uint64_t i = 0; i < ks.keys(); i += step) {
    bool should_exist = wl.preloaded();
    if (wl.kind == WorkloadKind::insert) {
      // Worker w inserted its slice in order: the first writes_ok keys of it.
      for (unsigned w = 0; w < streams.size(); ++w) {
        const auto [first, last] = insert_slice(ks.keys(), static_cast<unsigned>(streams.size()), w);
        if (i >= first && i < last) should_exist = i - first < m.run.workers[w].counts.ops;
      }
    }
    const bool found = map.get(ks.key(i), out);
    if (found && !should_exist) ++present;
    if (!found && should_exist) ++missing;
    if (found && should_exist) {
      // Mixes overwrite values with stream bytes and counters count: only their length is known.
      const bool assigned = wl.kind == WorkloadKind::mixed || wl.kind == WorkloadKind::get_with_writer;
      if (wl.counter_key(i)) {
        if (out.size() != sizeof(std::uint64_t)) ++wrong;
      } else if (assigned ? out.size() != ks.value_bytes() : out != ks.value(i)) {
        ++wrong;
      }
    }
  }
  if (missing) m.anomalies.push_back("after the run " + std::to_string(missing) + " sampled keys are missing");
  if (present) m.anomalies.push_back("after the run " + std::to_string(present) + " sampled keys exist that were never inserted");
  if (wrong) m.anomalies.push_back("after the run " + std::to_string(wrong) + " sampled keys have a wrong value");
  ShmapTable t{map};
  verify_windows(t, streams, m);
}

// fsck costs about 2.5 s per million keys on the dev VM: run it only on maps
// small enough (the ctest runs), where migrations happened.
constexpr std::uint64_t kFsckMaxKeys = 200'000;

// The segment file's allocated bytes: what it costs in memory (tmpfs) or on
// disk, holes (free index runs are punched) not counted.
std::uint64_t allocated_bytes(const std::string& path) {
  struct stat st {};
  if (stat(path.c_str(), &st) != 0) return 0;
  return static_cast<std::uint64_t>(st.st_blocks) * 512;
}

// Samples stats().migrating from the parent while the workers run. stats()
// scans the whole index (about 7 ms per 2^21 slots on the dev VM), so the
// samples are spaced to keep the parent under about 5% of one CPU: at least
// 10 ms apart, and 20 times the last sample's cost.
class MigratingSampler {
 public:
  explicit MigratingSampler(const shmap::Map& map) : map_(map) {}
  void operator()(std::int64_t start_ns, std::int64_t deadline_ns) {
    const std::int64_t now = now_ns();
    if (next_ns_ == 0) next_ns_ = start_ns + kMinGapNs;
    if (now < next_ns_ || now >= deadline_ns) return;
    const std::int64_t cpu0 = thread_cpu_ns();
    const bool migrating = map_.stats().migrating;
    const std::int64_t cost = thread_cpu_ns() - cpu0;
    ++samples_;
    migrating_samples_ += migrating ? 1 : 0;
    cpu_ns_ += cost;
    next_ns_ = now_ns() + std::max<std::int64_t>(kMinGapNs, 20 * cost);
  }
  void report(ShmapIndexReport& r) const {
    r.samples = samples_;
    r.migrating_samples = migrating_samples_;
    r.sample_cpu_s = static_cast<double>(cpu_ns_) / 1e9;
  }

 private:
  static constexpr std::int64_t kMinGapNs = 10'000'000;
  const shmap::Map& map_;
  std::int64_t next_ns_ = 0;
  unsigned samples_ = 0, migrating_samples_ = 0;
  std::int64_t cpu_ns_ = 0;
};

void measure_shmap(const Context& ctx, const Workload& wl, const std::vector<OpStream>& streams, Measurement& m) {
  const std::string name = unique_name("");
  shmap::Map::remove(name);  // a stale segment of a killed earlier run with our pid
  const SegmentGuard guard(name, [](const std::string& n) { shmap::Map::remove(n); });
  const unsigned workers = static_cast<unsigned>(streams.size());
  const bool grow = m.impl == "shmap-grow";

  const std::int64_t t0 = now_ns();
  shmap::Options mo;
  // Presized for every key live at once (no migration needed), except
  // shmap-grow: the smallest first table (capacity 12: 16 slots) and the
  // default 1 MiB arena, so the index and the arena grow while the workers
  // insert.
  const std::uint64_t live = wl.kind == WorkloadKind::insert ? ctx.keys.keys() : expected_live(wl, ctx.keys, workers);
  mo.capacity = grow ? 12 : std::max<std::uint64_t>(1, live);
  // The smallest help: a migration spans as many writes as it can, so the
  // readers run next to it for as long as possible. The same for the
  // baseline, whose map does not migrate, so that both maps are alike.
  if (wl.one_writer()) mo.help_slots = 16;
  mo.hash_seed = fmix64(ctx.opts.seed ^ 0xb7e151628aed2a6bull);
  // The thread policy places the pages create itself writes; the policy on the
  // file places every other page, whoever touches it first.
  shmap::Map map = with_thread_membind(ctx.machine, m.mem, [&] { return shmap::Map::create(name, mo); });
  const std::string path = map.info().path;
  bind_file_or_throw(ctx.machine, path, m.mem);
  if (wl.preloaded()) preload_shmap(map, wl, ctx.keys);
  ShmapTable parent{map};
  preload_windows(parent, streams);
  const shmap::Stats before = map.stats();  // no worker writes before go: the run's starting point
  m.setup_seconds = static_cast<double>(now_ns() - t0) / 1e9;

  MigratingSampler sampler(map);
  ParentProbe probe;
  if (wl.one_writer()) probe = [&](std::int64_t start, std::int64_t deadline) { sampler(start, deadline); };
  m.run = run_workers(
      WorkerMode::processes, ctx.machine, m.plan, ctx.opts.duration_s, ctx.opts.latency_sample,
      [&](unsigned w, StartGate& gate) {
        shmap::Map mine = shmap::Map::open(name);  // each worker maps it by name
        ShmapTable t{mine};
        const std::int64_t deadline = gate.arrive_and_wait();
        WorkerOutcome o;
        o.counts = dispatch(streams[w], t, deadline, sampler_for(wl, w, gate));
        if (t.first_failure != Status::ok) o.note = std::string("first failure: ") + to_string(t.first_failure);
        return o;
      },
      probe);
  const shmap::Stats after = map.stats();
  ShmapIndexReport& ix = m.index;
  ix.taken = true;
  ix.migrations_before = before.migrations;
  ix.migrations_after = after.migrations;
  ix.grown = after.grown - before.grown;
  ix.shrunk = after.shrunk - before.shrunk;
  ix.reclaimed_slots = after.reclaimed_slots - before.reclaimed_slots;
  ix.index_slots = after.index_slots;
  ix.index_table_bytes = after.index_table_bytes;
  ix.arena_bytes = after.arena_bytes;
  ix.live_keys = map.size();
  ix.file_bytes = allocated_bytes(path);
  sampler.report(ix);

  check_counts(wl, ctx.keys, m);
  verify_shmap(map, wl, ctx.keys, streams, m);
  check_counters(parent, wl, ctx.keys, m);
  // A 16-slot table cannot hold more than 16 keys: the map must have grown.
  if (grow && ix.live_keys > 16 && (ix.grown == 0 || ix.index_slots <= 16)) {
    m.anomalies.push_back("shmap-grow holds " + std::to_string(ix.live_keys) + " keys but its index did not grow (" +
                          std::to_string(ix.index_slots) + " slots)");
  }
  if ((grow || wl.fresh_keys()) && ix.live_keys <= kFsckMaxKeys) {
    const shmap::FsckReport f = map.fsck();
    if (!f.ok) {
      m.anomalies.push_back("fsck after the run: " + std::to_string(f.violation_count) + " violations" +
                            (f.violations.empty() ? "" : ", first: " + f.violations.front()));
    }
  }
  m.census = census_file(ctx.machine, path);
  m.census_taken = true;
}

// ---------------------------------------------------------------------------
// ideal-shm, ideal-indirect
// ---------------------------------------------------------------------------
template <class Ideal>
void measure_ideal(const Context& ctx, const Workload& wl, const std::vector<OpStream>& streams, Measurement& m) {
  const std::int64_t t0 = now_ns();
  Ideal table(ctx.keys.keys());
  bind_area_or_throw(ctx.machine, table.base(), table.bytes(), m.mem);  // nothing is touched yet
  if (wl.preloaded()) {
    for (std::uint64_t i = 0; i < ctx.keys.keys(); ++i) {
      std::uint64_t v = 0;
      if (!wl.counter_key(i)) ctx.keys.value(i, reinterpret_cast<char*>(&v));
      if (!table.insert(ctx.keys.key_word(i), v)) throw std::runtime_error(m.impl + " preload failed");
    }
  }
  m.setup_seconds = static_cast<double>(now_ns() - t0) / 1e9;
  m.run = run_workers(WorkerMode::processes, ctx.machine, m.plan, ctx.opts.duration_s, ctx.opts.latency_sample,
                      [&](unsigned w, StartGate& gate) {
                        IdealTable<Ideal> t{table};  // the mapping is inherited through fork()
                        const std::int64_t deadline = gate.arrive_and_wait();
                        WorkerOutcome o;
                        o.counts = dispatch(streams[w], t, deadline, sampler_for(wl, w, gate));
                        return o;
                      });
  check_counts(wl, ctx.keys, m);
  IdealTable<Ideal> parent{table};
  check_counters(parent, wl, ctx.keys, m);
  m.census = census(ctx.machine, table.base(), table.bytes());
  m.census_taken = true;
}

// ---------------------------------------------------------------------------
// std::unordered_map behind a mutex (threads of this process)
// ---------------------------------------------------------------------------
template <class Mutex>
void measure_std(const Context& ctx, const Workload& wl, const std::vector<OpStream>& streams, Measurement& m) {
  // The heap has no object to hold a policy: the parent thread carries it while
  // it preloads, and the worker threads inherit it.
  const ThreadMembind scope(ctx.machine, m.mem);
  if (!scope.ok()) throw std::runtime_error(scope.error());
  const std::int64_t t0 = now_ns();
  auto locked = std::make_unique<LockedStdMap<Mutex>>();
  locked->map.reserve(ctx.keys.keys());
  if (wl.preloaded()) {
    std::string buf;
    for (std::uint64_t i = 0; i < ctx.keys.keys(); ++i) {
      locked->map.emplace(ctx.keys.key(i), preload_value(wl, ctx.keys, i, buf));
    }
  }
  StdTable<Mutex> parent{*locked};
  preload_windows(parent, streams);
  m.setup_seconds = static_cast<double>(now_ns() - t0) / 1e9;
  m.run = run_workers(WorkerMode::threads, ctx.machine, m.plan, ctx.opts.duration_s, ctx.opts.latency_sample,
                      [&](unsigned w, StartGate& gate) {
                        StdTable<Mutex> t{*locked};
                        const std::int64_t deadline = gate.arrive_and_wait();
                        WorkerOutcome o;
                        o.counts = dispatch(streams[w], t, deadline, sampler_for(wl, w, gate));
                        return o;
                      });
  check_counts(wl, ctx.keys, m);
  check_counters(parent, wl, ctx.keys, m);
  if (wl.kind == WorkloadKind::churn) {
    const std::uint64_t expected = expected_live(wl, ctx.keys, static_cast<unsigned>(streams.size()));
    if (locked->map.size() != expected) {
      m.anomalies.push_back("size() is " + std::to_string(locked->map.size()) + " after the run, expected " +
                            std::to_string(expected));
    }
    verify_windows(parent, streams, m);
  }
}

// ---------------------------------------------------------------------------
// boost-ipc: Boost.Interprocess unordered_map behind an interprocess_sharable_mutex
// ---------------------------------------------------------------------------
void measure_boost(const Context& ctx, const Workload& wl, const std::vector<OpStream>& streams, Measurement& m) {
  const std::string name = unique_name("boost-");
  BoostIpcMap::remove(name);
  const SegmentGuard guard(name, [](const std::string& n) { BoostIpcMap::remove(n); });

  const std::int64_t t0 = now_ns();
  std::optional<BoostIpcMap> table;
  with_thread_membind(ctx.machine, m.mem, [&] {
    table.emplace(boost::interprocess::create_only, name,
                  std::max(ctx.keys.keys(), expected_live(wl, ctx.keys, static_cast<unsigned>(streams.size()))));
    return 0;
  });
  bind_area_or_throw(ctx.machine, table->base(), table->bytes(), m.mem);
  if (wl.preloaded()) {
    std::string k(ctx.keys.key_bytes(), '\0'), buf;
    for (std::uint64_t i = 0; i < ctx.keys.keys(); ++i) {
      ctx.keys.key(i, k.data());
      if (!table->insert(k, preload_value(wl, ctx.keys, i, buf))) throw std::runtime_error("boost-ipc preload failed");
    }
  }
  preload_windows(*table, streams);
  m.setup_seconds = static_cast<double>(now_ns() - t0) / 1e9;
  m.run = run_workers(WorkerMode::processes, ctx.machine, m.plan, ctx.opts.duration_s, ctx.opts.latency_sample,
                      [&](unsigned w, StartGate& gate) {
                        BoostIpcMap mine(boost::interprocess::open_only, name);  // each worker maps it by name
                        const std::int64_t deadline = gate.arrive_and_wait();
                        WorkerOutcome o;
                        o.counts = dispatch(streams[w], mine, deadline, sampler_for(wl, w, gate));
                        return o;
                      });
  check_counts(wl, ctx.keys, m);
  const std::uint64_t expected = wl.kind == WorkloadKind::insert
                                     ? writes_ok(m)
                                     : expected_live(wl, ctx.keys, static_cast<unsigned>(streams.size()));
  if (table->size() != expected) {
    m.anomalies.push_back("size() is " + std::to_string(table->size()) + " after the run, expected " +
                          std::to_string(expected));
  }
  check_counters(*table, wl, ctx.keys, m);
  verify_windows(*table, streams, m);
  m.census = census_file(ctx.machine, "/dev/shm" + name);
  m.census_taken = true;
}

}  // namespace

void install_cleanup_handlers() {
  for (const int sig : {SIGINT, SIGTERM, SIGHUP, SIGSEGV, SIGBUS, SIGABRT, SIGFPE}) {
    signal(sig, remove_live_segment_and_die);
  }
}

bool threaded(const std::string& impl) { return impl.starts_with("std-"); }

bool is_shmap(const std::string& impl) {
  return impl == "shmap" || impl == "shmap-grow";
}

bool quiet_skip(const std::string& impl, const Workload& wl) {
  return (impl == "std-shared_mutex" && !wl.reads()) || (impl == "shmap-grow" && wl.kind != WorkloadKind::insert);
}

bool applies(const std::string& impl, const Workload& wl, const KeySpace& ks, std::string* why) {
  if (wl.fresh_keys() && ks.key_bytes() < 8) {
    if (why) *why = wl.name + " inserts fresh keys beyond the key space: needs keys of at least 8 bytes";
    return false;
  }
  if (impl == "shmap-grow" && wl.kind != WorkloadKind::insert) {
    if (why) *why = "shmap-grow (shmap grown from 16 slots) is measured on the insert workload only";
    return false;
  }
  if (wl.one_writer() && impl != "shmap") {
    if (why) *why = wl.name + " measures shmap's gets next to its own index migration: shmap only";
    return false;
  }
  if (wl.kind == WorkloadKind::churn && impl.starts_with("ideal-")) {
    if (why) *why = impl + " cannot erase (no deleted marker)";
    return false;
  }
  if ((impl.starts_with("ideal-") || impl == "boost-ipc") && (ks.key_bytes() != 8 || ks.value_bytes() != 8)) {
    if (why) *why = impl + " needs 8-byte keys and values";
    return false;
  }
  if (impl == "std-shared_mutex" && !wl.reads()) {
    if (why) *why = "std-shared_mutex only differs from std-mutex when there are reads";
    return false;
  }
  return true;
}

double readers_mops(const Measurement& m) {
  std::uint64_t ops = 0;
  double seconds = 0;
  for (std::size_t w = 1; w < m.run.workers.size(); ++w) {
    ops += m.run.workers[w].counts.ops;
    seconds = std::max(seconds, m.run.workers[w].seconds);
  }
  return seconds > 0 ? static_cast<double>(ops) / seconds / 1e6 : 0;
}

double writer_mops(const Measurement& m) {
  if (m.run.workers.empty() || m.run.workers[0].seconds <= 0) return 0;
  return static_cast<double>(m.run.workers[0].counts.ops) / m.run.workers[0].seconds / 1e6;
}

Measurement measure(const Context& ctx, const std::string& impl, const Workload& wl, unsigned repeat,
                    const std::vector<Placement>& plan, const std::vector<OpStream>& streams) {
  Measurement m;
  m.impl = impl;
  m.workload = wl.name;
  m.repeat = repeat;
  m.plan = plan;
  const unsigned n = static_cast<unsigned>(plan.size());
  m.procs = threaded(impl) ? 1 : n;
  m.threads = threaded(impl) ? n : 1;
  try {
    m.mem = plan_membind(ctx.machine.topology(), ctx.opts.membind, plan);
    if (is_shmap(impl)) {
      measure_shmap(ctx, wl, streams, m);
    } else if (impl == "ideal-shm") {
      measure_ideal<IdealShm>(ctx, wl, streams, m);
    } else if (impl == "ideal-indirect") {
      measure_ideal<IdealIndirectShm>(ctx, wl, streams, m);
    } else if (impl == "std-mutex") {
      measure_std<std::mutex>(ctx, wl, streams, m);
    } else if (impl == "std-shared_mutex") {
      measure_std<std::shared_mutex>(ctx, wl, streams, m);
    } else if (impl == "boost-ipc") {
      measure_boost(ctx, wl, streams, m);
    } else {
      throw std::invalid_argument("unknown implementation " + impl);
    }
  } catch (const std::exception& e) {
    m.anomalies.push_back(std::string("measurement failed: ") + e.what());
  }
  return m;
}

}  // namespace shmap::bench
