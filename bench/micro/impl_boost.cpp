// Boost.Interprocess (header-only, Debian libboost-dev 1.74): the usual way
// to share a map between processes today. A managed_shared_memory segment
// holds a boost::unordered_map of fixed-size keys and values (its allocator is
// the segment's, so the nodes live in shared memory with offset pointers)
// and an interprocess_sharable_mutex: gets take it shared, writes exclusive.
// Here the threads of one process share it; the multi-process comparison is
// the driver's (bench/driver).
//
// The segment is named /shmap-micro-bip.<pid>.<n> and unlinked as soon as it
// is mapped. Memory per entry is the segment's used bytes (nodes, buckets,
// allocator headers) over the keys.
#include <unistd.h>

#include <boost/interprocess/allocators/allocator.hpp>
#include <boost/interprocess/managed_shared_memory.hpp>
#include <boost/interprocess/sync/interprocess_sharable_mutex.hpp>
#include <boost/interprocess/sync/scoped_lock.hpp>
#include <boost/interprocess/sync/sharable_lock.hpp>
#include <boost/unordered_map.hpp>
#include <random>

#include "micro.hpp"

namespace shmap::micro {
namespace {

namespace bip = boost::interprocess;

std::atomic<std::uint64_t> g_segments{0};

template <std::size_t N>
struct Fixed {
  char bytes[N];
  static Fixed of(std::string_view s) {
    Fixed f;
    std::memcpy(f.bytes, s.data(), N);
    return f;
  }
  bool operator==(const Fixed& o) const { return std::memcmp(bytes, o.bytes, N) == 0; }
};

// The same byte hash std-* uses, over all N key bytes.
template <std::size_t N>
struct FixedHash {
  std::size_t operator()(const Fixed<N>& f) const { return std::hash<std::string_view>{}({f.bytes, N}); }
};

template <std::size_t K, std::size_t V>
class BoostTable {
 public:
  struct ThreadScope {};
  using Key = Fixed<K>;
  using Value = Fixed<V>;
  using Alloc = bip::allocator<std::pair<const Key, Value>, bip::managed_shared_memory::segment_manager>;
  using Map = boost::unordered_map<Key, Value, FixedHash<K>, std::equal_to<Key>, Alloc>;
  using Mutex = bip::interprocess_sharable_mutex;

  explicit BoostTable(const Case& c)
      : name_("/shmap-micro-bip." + std::to_string(::getpid()) + "." + std::to_string(std::random_device{}()) + "." +
              // Relaxed: only makes names unique within this process.
              std::to_string(g_segments.fetch_add(1, std::memory_order_relaxed))),
        // Nodes (key, value, next pointer, cached hash) plus allocator headers,
        // doubled, plus the bucket array. tmpfs commits only what is touched.
        segment_(bip::create_only, name_.c_str(), (std::size_t{64} << 20) + c.keys * (K + V + 48) * 2 + c.keys * 16) {
    bip::shared_memory_object::remove(name_.c_str());
    mu_ = segment_.construct<Mutex>(bip::anonymous_instance)();
    map_ = segment_.construct<Map>(bip::anonymous_instance)(c.keys, FixedHash<K>{}, std::equal_to<Key>{},
                                                            Alloc(segment_.get_segment_manager()));
  }

  long get(std::string_view key, char* out) const {
    const Key k = Key::of(key);
    bip::sharable_lock<Mutex> lock(*mu_);
    const auto it = map_->find(k);
    if (it == map_->end()) return -1;
    std::memcpy(out, it->second.bytes, V);
    return static_cast<long>(V);
  }
  bool insert(std::string_view key, std::string_view value) {
    const Key k = Key::of(key);
    const Value v = Value::of(value);
    bip::scoped_lock<Mutex> lock(*mu_);
    try {
      return map_->emplace(k, v).second;
    } catch (const bip::bad_alloc&) {
      return false;  // the segment is full
    }
  }
  Put assign(std::string_view key, std::string_view value) {
    const Key k = Key::of(key);
    const Value v = Value::of(value);
    bip::scoped_lock<Mutex> lock(*mu_);
    if (const auto it = map_->find(k); it != map_->end()) {
      it->second = v;
      return Put::assigned;
    }
    try {
      map_->emplace(k, v);
      return Put::inserted;
    } catch (const bip::bad_alloc&) {
      return Put::failed;
    }
  }
  bool erase(std::string_view key) {
    const Key k = Key::of(key);
    bip::scoped_lock<Mutex> lock(*mu_);
    return map_->erase(k) == 1;
  }
  bool fetch_add(std::string_view key, std::uint64_t delta) {
    if constexpr (V != 8) {
      return false;
    } else {
      const Key k = Key::of(key);
      bip::scoped_lock<Mutex> lock(*mu_);
      const auto it = map_->find(k);
      if (it == map_->end()) return false;
      store64(it->second.bytes, load64(it->second.bytes) + delta);
      return true;
    }
  }
  double footprint() const { return static_cast<double>(segment_.get_size() - segment_.get_free_memory()); }

 private:
  std::string name_;
  mutable bip::managed_shared_memory segment_;
  Mutex* mu_ = nullptr;
  Map* map_ = nullptr;
};

bool supported(std::uint32_t k, std::uint32_t v) {
  return (k == 8 && (v == 8 || v == 64 || v == 1024)) || ((k == 16 || k == 64) && v == 8);
}

void run(benchmark::State& st, const Case& c) {
  switch (c.key_bytes * 10000 + c.value_bytes) {
    case 8 * 10000 + 8: return run_case<BoostTable<8, 8>>(st, c);
    case 16 * 10000 + 8: return run_case<BoostTable<16, 8>>(st, c);
    case 64 * 10000 + 8: return run_case<BoostTable<64, 8>>(st, c);
    case 8 * 10000 + 64: return run_case<BoostTable<8, 64>>(st, c);
    case 8 * 10000 + 1024: return run_case<BoostTable<8, 1024>>(st, c);
    default: break;
  }
  fail(st, "boost-ipc: no instantiation for these key and value sizes");
  for (auto _ : st) {
  }
}

}  // namespace

std::vector<Impl> boost_impls() { return {{"boost-ipc", true, supported, run}}; }

}  // namespace shmap::micro
