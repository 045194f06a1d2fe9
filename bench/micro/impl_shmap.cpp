// shmap itself, through its public API only.
//
// Each table is a fresh segment named /shmap-micro.<pid>.<n>, unlinked as soon
// as it is created (the mapping stays valid), so a killed run leaves nothing
// in /dev/shm. Gets use get_bytes() into the caller's buffer: the lock-free
// copy-out that never allocates (get(key, std::string&) adds the string's
// bookkeeping, which the baselines' copy-outs do not have).
#include <unistd.h>

#include <atomic>
#include <random>
#include <string>

#include "micro.hpp"
#include "shmap/shmap.hpp"

namespace shmap::micro {
namespace {

std::atomic<std::uint64_t> g_segments{0};

Map create_map(const Case& c) {
  Options o;
  o.capacity = c.keys;
  // Records are 8 + pad8(key) + pad8(value) bytes in size classes at most
  // 1/4 apart; 1.5x that per key plus room for the threads' local free lists.
  const std::uint64_t record = 8 + round8(c.key_bytes) + round8(c.value_bytes);
  o.arena_bytes = std::min<std::uint64_t>(std::uint64_t{32} << 30, c.keys * record * 3 / 2 + (std::uint64_t{32} << 20));
  // Relaxed: only makes names unique within this process.
  // The pid alone can repeat (pids wrap, or another pid namespace shares /dev/shm): a random word too.
  const std::string name = "/shmap-micro." + std::to_string(::getpid()) + "." + std::to_string(std::random_device{}()) +
                           "." + std::to_string(g_segments.fetch_add(1, std::memory_order_relaxed));
  Map m = Map::create(name, o);
  Map::remove(name);
  return m;
}

class ShmapTable {
 public:
  struct ThreadScope {};

  explicit ShmapTable(const Case& c) : map_(create_map(c)) {}

  long get(std::string_view key, char* out) const {
    std::size_t len = 0;
    if (!map_.get_bytes(key, out, kOutBytes, len)) return -1;
    return static_cast<long>(len);
  }
  bool insert(std::string_view key, std::string_view value) { return map_.insert(key, value) == Status::ok; }
  Put assign(std::string_view key, std::string_view value) {
    switch (map_.insert_or_assign(key, value)) {
      case Status::inserted: return Put::inserted;
      case Status::assigned: return Put::assigned;
      default: return Put::failed;
    }
  }
  bool erase(std::string_view key) { return map_.erase(key); }
  bool fetch_add(std::string_view key, std::uint64_t delta) {
    return map_.fetch_add(key, static_cast<std::int64_t>(delta)).status == Status::ok;
  }
  // The brief's memory figure: arena bytes carved plus the index.
  double footprint() const {
    const Stats s = map_.stats();
    return static_cast<double>(s.arena_carved + s.index_slots * 8);
  }

 private:
  Map map_;
};

bool any_size(std::uint32_t, std::uint32_t) { return true; }

}  // namespace

std::vector<Impl> shmap_impls() { return {{"shmap", true, any_size, run_case<ShmapTable>}}; }

}  // namespace shmap::micro
