#include "measure.hpp"

#include <signal.h>
#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstring>
#include <memory>
#include <mutex>
#include <shared_mutex>
#include <stdexcept>

#include "tables.hpp"
#include "topology.hpp"

namespace shmap::bench {

namespace {

template <class Table>
LoopCounts dispatch(WorkloadKind kind, Table& t, const OpStream& s, std::int64_t deadline_ns) {
  switch (kind) {
    case WorkloadKind::get:
    case WorkloadKind::get_miss: return run_loop<WorkloadKind::get>(t, s, deadline_ns);
    case WorkloadKind::insert: return run_loop<WorkloadKind::insert>(t, s, deadline_ns);
    case WorkloadKind::mixed: return run_loop<WorkloadKind::mixed>(t, s, deadline_ns);
  }
  throw std::logic_error("unknown workload kind");
}

std::string worker_tag(unsigned w) { return "worker " + std::to_string(w) + ": "; }

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

// ---------------------------------------------------------------------------
// shmap
// ---------------------------------------------------------------------------

// The segment being measured, for the signal handler: Ctrl-C must not leave a
// segment behind in /dev/shm.
char g_live_segment[96];

void remove_live_segment_and_die(int sig) {
  if (g_live_segment[0] != '\0') shm_unlink(g_live_segment);  // async-signal-safe
  signal(sig, SIG_DFL);
  raise(sig);
}

// Removes the segment when the measurement ends, however it ends.
struct SegmentGuard {
  std::string name;
  explicit SegmentGuard(std::string n) : name(std::move(n)) {
    const std::size_t len = std::min(name.size(), sizeof g_live_segment - 1);
    std::memcpy(g_live_segment, name.data(), len);
    g_live_segment[len] = '\0';
  }
  ~SegmentGuard() {
    g_live_segment[0] = '\0';
    try {
      shmap::Map::remove(name);
    } catch (...) {
    }
  }
  SegmentGuard(const SegmentGuard&) = delete;
  SegmentGuard& operator=(const SegmentGuard&) = delete;
};

void preload_shmap(shmap::Map& map, const KeySpace& ks) {
  std::string k(ks.key_bytes(), '\0'), v(ks.value_bytes(), '\0');
  for (std::uint64_t i = 0; i < ks.keys(); ++i) {
    ks.key(i, k.data());
    ks.value(i, v.data());
    const Status s = map.insert(k, v);
    if (s != Status::ok) {
      throw std::runtime_error("shmap preload: insert of key " + std::to_string(i) + " returned " + to_string(s));
    }
  }
}

// After the run: the map holds exactly the keys it should, with the right values
// (a sample), so a fast but wrong map cannot post a number.
void verify_shmap(const shmap::Map& map, const Workload& wl, const KeySpace& ks, const std::vector<OpStream>& streams,
                  Measurement& m) {
  std::uint64_t expected = ks.keys();
  if (wl.kind == WorkloadKind::insert) {
    expected = 0;
    for (const WorkerResult& r : m.run.workers) expected += r.counts.writes_ok;
  }
  if (map.size() != expected) {
    m.anomalies.push_back("size() is " + std::to_string(map.size()) + " after the run, expected " +
                          std::to_string(expected));
  }
  std::string out;
  const std::uint64_t step = std::max<std::uint64_t>(1, ks.keys() / 4096);
  std::uint64_t wrong = 0, missing = 0, present = 0;
  for (std::uint64_t i = 0; i < ks.keys(); i += step) {
    bool should_exist = true;
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
      // Mixes overwrite values with stream bytes: only their length is known.
      if (wl.kind == WorkloadKind::mixed ? out.size() != ks.value_bytes() : out != ks.value(i)) ++wrong;
    }
  }
  if (missing) m.anomalies.push_back("after the run " + std::to_string(missing) + " sampled keys are missing");
  if (present) m.anomalies.push_back("after the run " + std::to_string(present) + " sampled keys exist that were never inserted");
  if (wrong) m.anomalies.push_back("after the run " + std::to_string(wrong) + " sampled keys have a wrong value");
}

void measure_shmap(const Context& ctx, const Workload& wl, const std::vector<OpStream>& streams, Measurement& m) {
  static std::atomic<unsigned> counter{0};
  // Relaxed: only uniqueness of the number matters, and measurements run one at a time.
  const unsigned serial = counter.fetch_add(1, std::memory_order_relaxed);
  const std::string name = "/shmap-bench-" + std::to_string(getpid()) + "-" + std::to_string(serial);
  shmap::Map::remove(name);  // a stale segment of a killed earlier run with our pid
  const SegmentGuard guard(name);

  const std::int64_t t0 = now_ns();
  shmap::Options mo;
  mo.capacity = ctx.keys.keys();
  mo.hash_seed = fmix64(ctx.opts.seed ^ 0xb7e151628aed2a6bull);
  shmap::Map map = shmap::Map::create(name, mo);
  if (wl.preloaded()) preload_shmap(map, ctx.keys);
  m.setup_seconds = static_cast<double>(now_ns() - t0) / 1e9;

  m.run = run_workers(WorkerMode::processes, ctx.machine, m.plan, ctx.opts.duration_s,
                      [&](unsigned w, StartGate& gate) {
                        shmap::Map mine = shmap::Map::open(name);  // each worker maps it by name
                        ShmapTable t{mine};
                        const std::int64_t deadline = gate.arrive_and_wait();
                        WorkerOutcome o;
                        o.counts = dispatch(wl.kind, t, streams[w], deadline);
                        if (t.first_failure != Status::ok) o.note = std::string("first failure: ") + to_string(t.first_failure);
                        return o;
                      });
  check_counts(wl, ctx.keys, m);
  verify_shmap(map, wl, ctx.keys, streams, m);
}

// ---------------------------------------------------------------------------
// ideal-shm
// ---------------------------------------------------------------------------
template <class Ideal>
void measure_ideal(const Context& ctx, const Workload& wl, const std::vector<OpStream>& streams, Measurement& m) {
  const std::int64_t t0 = now_ns();
  Ideal table(ctx.keys.keys());
  if (wl.preloaded()) {
    for (std::uint64_t i = 0; i < ctx.keys.keys(); ++i) {
      std::uint64_t v = 0;
      ctx.keys.value(i, reinterpret_cast<char*>(&v));
      if (!table.insert(ctx.keys.key_word(i), v)) throw std::runtime_error(m.impl + " preload failed");
    }
  }
  m.setup_seconds = static_cast<double>(now_ns() - t0) / 1e9;
  m.run = run_workers(WorkerMode::processes, ctx.machine, m.plan, ctx.opts.duration_s,
                      [&](unsigned w, StartGate& gate) {
                        IdealTable<Ideal> t{table};  // the mapping is inherited through fork()
                        const std::int64_t deadline = gate.arrive_and_wait();
                        WorkerOutcome o;
                        o.counts = dispatch(wl.kind, t, streams[w], deadline);
                        return o;
                      });
  check_counts(wl, ctx.keys, m);
}

// ---------------------------------------------------------------------------
// std::unordered_map behind a mutex (threads of this process)
// ---------------------------------------------------------------------------
template <class Mutex>
void measure_std(const Context& ctx, const Workload& wl, const std::vector<OpStream>& streams, Measurement& m) {
  const std::int64_t t0 = now_ns();
  auto locked = std::make_unique<LockedStdMap<Mutex>>();
  locked->map.reserve(ctx.keys.keys());
  if (wl.preloaded()) {
    for (std::uint64_t i = 0; i < ctx.keys.keys(); ++i) locked->map.emplace(ctx.keys.key(i), ctx.keys.value(i));
  }
  m.setup_seconds = static_cast<double>(now_ns() - t0) / 1e9;
  m.run = run_workers(WorkerMode::threads, ctx.machine, m.plan, ctx.opts.duration_s,
                      [&](unsigned w, StartGate& gate) {
                        StdTable<Mutex> t{*locked};
                        const std::int64_t deadline = gate.arrive_and_wait();
                        WorkerOutcome o;
                        o.counts = dispatch(wl.kind, t, streams[w], deadline);
                        return o;
                      });
  check_counts(wl, ctx.keys, m);
}

}  // namespace

void install_cleanup_handlers() {
  for (const int sig : {SIGINT, SIGTERM, SIGHUP, SIGSEGV, SIGBUS, SIGABRT, SIGFPE}) {
    signal(sig, remove_live_segment_and_die);
  }
}

bool threaded(const std::string& impl) { return impl.starts_with("std-"); }

bool applies(const std::string& impl, const Workload& wl, const KeySpace& ks, std::string* why) {
  if (impl.starts_with("ideal-") && (ks.key_bytes() != 8 || ks.value_bytes() != 8)) {
    if (why) *why = impl + " needs 8-byte keys and values";
    return false;
  }
  if (impl == "std-shared_mutex" && !wl.reads()) {
    if (why) *why = "std-shared_mutex only differs from std-mutex when there are reads";
    return false;
  }
  return true;
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
    if (impl == "shmap") {
      measure_shmap(ctx, wl, streams, m);
    } else if (impl == "ideal-shm") {
      measure_ideal<IdealShm>(ctx, wl, streams, m);
    } else if (impl == "ideal-indirect") {
      measure_ideal<IdealIndirectShm>(ctx, wl, streams, m);
    } else if (impl == "std-mutex") {
      measure_std<std::mutex>(ctx, wl, streams, m);
    } else if (impl == "std-shared_mutex") {
      measure_std<std::shared_mutex>(ctx, wl, streams, m);
    } else {
      throw std::invalid_argument("unknown implementation " + impl);
    }
  } catch (const std::exception& e) {
    m.anomalies.push_back(std::string("measurement failed: ") + e.what());
  }
  return m;
}

}  // namespace shmap::bench
