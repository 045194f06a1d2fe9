// std::unordered_map<std::string, std::string>: what people write first.
//
// std-unordered      no lock, single thread only.
// std-shared_mutex   behind a std::shared_mutex; gets take it shared, every
//                    write exclusive.
// Both use a transparent hash, so find(string_view) allocates nothing, and an
// update assigns into the existing value string (no allocation once its
// capacity fits). Memory per entry is measured as the heap growth over the
// preload (malloc's own overhead included).
#include <mutex>
#include <shared_mutex>
#include <unordered_map>

#include "micro.hpp"

namespace shmap::micro {
namespace {

struct StringHash {
  using is_transparent = void;
  std::size_t operator()(std::string_view s) const noexcept { return std::hash<std::string_view>{}(s); }
};
using StdMap = std::unordered_map<std::string, std::string, StringHash, std::equal_to<>>;

struct NoLock {
  void lock() {}
  void unlock() {}
  void lock_shared() {}
  void unlock_shared() {}
};

template <class Mutex>
class StdTable {
 public:
  struct ThreadScope {};

  explicit StdTable(const Case& c) { map_.reserve(c.keys); }

  long get(std::string_view key, char* out) const {
    std::shared_lock lock(mu_);
    const auto it = map_.find(key);
    if (it == map_.end()) return -1;
    std::memcpy(out, it->second.data(), it->second.size());
    return static_cast<long>(it->second.size());
  }
  bool insert(std::string_view key, std::string_view value) {
    std::unique_lock lock(mu_);
    return map_.try_emplace(std::string(key), value).second;
  }
  Put assign(std::string_view key, std::string_view value) {
    std::unique_lock lock(mu_);
    if (const auto it = map_.find(key); it != map_.end()) {
      it->second.assign(value);
      return Put::assigned;
    }
    map_.try_emplace(std::string(key), value);
    return Put::inserted;
  }
  bool erase(std::string_view key) {
    std::unique_lock lock(mu_);
    const auto it = map_.find(key);
    if (it == map_.end()) return false;
    map_.erase(it);
    return true;
  }
  bool fetch_add(std::string_view key, std::uint64_t delta) {
    std::unique_lock lock(mu_);
    const auto it = map_.find(key);
    if (it == map_.end() || it->second.size() != 8) return false;
    store64(it->second.data(), load64(it->second.data()) + delta);
    return true;
  }
  double footprint() const { return -1; }

 private:
  mutable Mutex mu_;
  StdMap map_;
};

bool any_size(std::uint32_t, std::uint32_t) { return true; }

}  // namespace

std::vector<Impl> std_impls() {
  return {{"std-unordered", false, any_size, run_case<StdTable<NoLock>>},
          {"std-shared_mutex", true, any_size, run_case<StdTable<std::shared_mutex>>}};
}

}  // namespace shmap::micro
