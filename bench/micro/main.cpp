// shmap-micro's main: the benchmark plan, the stream and table caches, and
// the exit status (1 if any benchmark produced a wrong result or failed to
// set up, which Google Benchmark alone reports but does not fail on).
//
// Plan (README.md): every op for 8-byte keys and values at 1K and 1M keys,
// then key size, value size and (behind --shmap_big) map size swept one at a
// time around 8/8/1M. Benchmarks run in registration order, configuration by
// configuration and, within an operation, implementation after
// implementation, so drift on a shared machine spreads over all of them.
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "micro.hpp"

namespace shmap::micro {
namespace {

std::atomic<bool> g_failed{false};

std::map<std::string, Stream>& streams() {
  static std::map<std::string, Stream> m;
  return m;
}
std::map<std::string, std::shared_ptr<void>>& tables() {
  static std::map<std::string, std::shared_ptr<void>> m;
  return m;
}
std::string& current_configuration() {
  static std::string s;
  return s;
}

Stream make_stream(StreamKind kind, std::uint32_t key_bytes, std::uint64_t keys, int threads, int t) {
  Stream s;
  s.key_bytes = key_bytes;
  if (kind == StreamKind::slice) {
    // One random permutation of [0, n) for every thread count; thread t takes
    // positions [t*m, (t+1)*m).
    std::vector<std::uint32_t> perm(keys);
    for (std::uint64_t i = 0; i < keys; ++i) perm[i] = static_cast<std::uint32_t>(i);
    SplitMix64 rng{0x51ce5eedull ^ keys};
    for (std::uint64_t i = keys - 1; i > 0; --i) std::swap(perm[i], perm[rng.below(i + 1)]);
    const std::uint64_t m = keys / static_cast<std::uint64_t>(threads);
    s.count = m;
    s.bytes.resize(m * key_bytes);
    for (std::uint64_t j = 0; j < m; ++j) {
      write_key(perm[static_cast<std::uint64_t>(t) * m + j], key_bytes, s.bytes.data() + j * key_bytes);
    }
    return s;
  }
  // At most 2^20 operations or 32 MiB of keys per thread, cycled.
  s.count = std::min<std::size_t>(std::size_t{1} << 20, (std::size_t{32} << 20) / key_bytes);
  s.bytes.resize(s.count * key_bytes);
  SplitMix64 rng{0x9e3779b97f4a7c15ull * (static_cast<std::uint64_t>(kind) + 1) + static_cast<std::uint64_t>(t) * 1000 +
                 static_cast<std::uint64_t>(threads)};
  const std::uint64_t base = kind == StreamKind::miss ? keys : 0;
  for (std::size_t j = 0; j < s.count; ++j) {
    write_key(base + rng.below(keys), key_bytes, s.bytes.data() + j * key_bytes);
  }
  if (kind == StreamKind::mixed) {
    s.write.resize(s.count);
    for (std::size_t j = 0; j < s.count; ++j) s.write[j] = rng.below(100) < kMixedWritePercent;
  }
  return s;
}

}  // namespace

const Stream& stream(StreamKind kind, std::uint32_t key_bytes, std::uint64_t keys, int threads, int t) {
  const std::string key = std::to_string(static_cast<int>(kind)) + "/" + std::to_string(key_bytes) + "/" +
                          std::to_string(keys) + "/" + std::to_string(threads) + "/" + std::to_string(t);
  auto it = streams().find(key);
  if (it == streams().end()) it = streams().emplace(key, make_stream(kind, key_bytes, keys, threads, t)).first;
  return it->second;
}

std::shared_ptr<void>& cached_table(const std::string& key) { return tables()[key]; }

void enter_configuration(const Case& c) {
  const std::string config =
      std::to_string(c.key_bytes) + "/" + std::to_string(c.value_bytes) + "/" + std::to_string(c.keys);
  if (config == current_configuration()) return;
  drop_all_caches();
  current_configuration() = config;
}

void drop_all_caches() {
  tables().clear();
  streams().clear();
  current_configuration().clear();
}

void fail(benchmark::State& st, const std::string& message) {
  // Relaxed: read by main after every benchmark thread has been joined.
  g_failed.store(true, std::memory_order_relaxed);
  st.SkipWithError(message.c_str());  // copied: the run keeps the first thread's message
}

// Relaxed: see fail().
bool any_failed() { return g_failed.load(std::memory_order_relaxed); }

SpinBarrier& barrier() {
  static SpinBarrier b;
  return b;
}

namespace {

struct Point {
  std::uint32_t key_bytes;
  std::uint32_t value_bytes;
  std::uint64_t keys;
  std::vector<Op> ops;
};

std::string case_name(const Case& c) {
  return std::string(op_name(c.op)) + "/" + c.impl + "/k" + std::to_string(c.key_bytes) + "/v" +
         std::to_string(c.value_bytes) + "/n" + std::to_string(c.keys);
}

void register_plan(bool big) {
  const std::vector<Op> all = {Op::get_hit, Op::get_miss, Op::update, Op::mixed, Op::fetch_add, Op::insert, Op::erase};
  std::vector<Op> no_counters = all;  // fetch_add needs 8-byte values
  std::erase(no_counters, Op::fetch_add);
  std::vector<Point> plan = {
      {8, 8, 1'000, all},       {8, 8, 1'000'000, all},          {16, 8, 1'000'000, all},
      {64, 8, 1'000'000, all},  {8, 64, 1'000'000, no_counters}, {8, 1024, 1'000'000, no_counters},
  };
  if (big) plan.push_back({8, 8, 16'000'000, {Op::get_hit, Op::get_miss, Op::update}});

  std::vector<Impl> impls;
  for (auto group : {shmap_impls(), ideal_impls(), std_impls(), cds_impls(), boost_impls()}) {
    impls.insert(impls.end(), group.begin(), group.end());
  }
  for (const Point& p : plan) {
    for (Op op : p.ops) {
      for (const Impl& impl : impls) {
        if (!impl.supports(p.key_bytes, p.value_bytes)) continue;
        const Case c{op, impl.name, p.key_bytes, p.value_bytes, p.keys};
        auto* b = benchmark::RegisterBenchmark(case_name(c).c_str(),
                                               [c, run = impl.run](benchmark::State& st) { run(st, c); });
        // Real time: items_per_second is then the aggregate throughput of all
        // threads, and time a thread spends asleep on a lock counts.
        b->UseRealTime()->Threads(1);
        if (impl.threaded) b->Threads(2);
      }
    }
  }
}

bool env_big() {
  const char* e = std::getenv("SHMAP_MICRO_BIG");
  return e != nullptr && *e != '\0' && std::strcmp(e, "0") != 0;
}

}  // namespace
}  // namespace shmap::micro

int main(int argc, char** argv) {
  using namespace shmap::micro;
  bool big = env_big();
  // Our own flag, removed before Google Benchmark parses the rest.
  int kept = 1;
  for (int i = 1; i < argc; ++i) {
    if (std::strcmp(argv[i], "--shmap_big") == 0 || std::strcmp(argv[i], "--shmap_big=true") == 0) {
      big = true;
    } else {
      if (std::strcmp(argv[i], "--help") == 0) {
        std::printf(
            "shmap-micro: shmap against ideal tables, std::unordered_map, libcds and Boost.Interprocess\n"
            "  --shmap_big    also run 16M-key get_hit/get_miss/update on 8-byte keys and values\n"
            "                 (needs several GB of RAM and /dev/shm; or set SHMAP_MICRO_BIG=1)\n"
            "Benchmark names: <op>/<impl>/k<key bytes>/v<value bytes>/n<keys>/real_time/threads:<T>\n"
            "See bench/micro/README.md. Google Benchmark's flags follow.\n\n");
      }
      argv[kept++] = argv[i];
    }
  }
  argc = kept;

  CdsRuntime cds;
  register_plan(big);
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  drop_all_caches();  // before libcds's garbage collector is destroyed
  if (any_failed()) {
    std::fprintf(stderr, "shmap-micro: at least one benchmark failed (wrong results or setup), see ERROR above\n");
    return 1;
  }
  return 0;
}
