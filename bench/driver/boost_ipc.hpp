// The Boost.Interprocess baseline (boost-ipc): what multi-process users reach
// for today. A managed_shared_memory segment holds a boost::unordered_map of
// fixed 8-byte keys and values, allocated with the segment's allocator (nodes
// and buckets live in shared memory, linked by offset pointers), next to one
// interprocess_sharable_mutex: gets take it shared, writes exclusive. The
// parent creates and preloads the segment; every forked worker opens it by
// name, at its own address. Header-only Boost (Debian libboost-dev).
//
// Like std::unordered_map it is not safe against a process killed while it
// holds the lock (the mutex stays locked) or mid-update: it is the baseline,
// not a peer in safety.
#pragma once

#include <algorithm>
#include <boost/interprocess/allocators/allocator.hpp>
#include <boost/interprocess/managed_shared_memory.hpp>
#include <boost/interprocess/sync/interprocess_sharable_mutex.hpp>
#include <boost/interprocess/sync/scoped_lock.hpp>
#include <boost/interprocess/sync/sharable_lock.hpp>
#include <boost/unordered_map.hpp>
#include <cstdint>
#include <cstring>
#include <functional>
#include <stdexcept>
#include <string>
#include <string_view>

namespace shmap::bench {

class BoostIpcMap {
 public:
  // 8 bytes kept as bytes, hashed as bytes: the same hash std-* uses.
  struct Word {
    char bytes[8];
    static Word of(std::string_view s) {
      Word w{};
      std::memcpy(w.bytes, s.data(), std::min(s.size(), sizeof w.bytes));
      return w;
    }
    bool operator==(const Word& o) const { return std::memcmp(bytes, o.bytes, sizeof bytes) == 0; }
  };
  struct WordHash {
    std::size_t operator()(const Word& w) const { return std::hash<std::string_view>{}({w.bytes, sizeof w.bytes}); }
  };
  using Segment = boost::interprocess::managed_shared_memory;
  using Alloc = boost::interprocess::allocator<std::pair<const Word, Word>, Segment::segment_manager>;
  using Map = boost::unordered_map<Word, Word, WordHash, std::equal_to<Word>, Alloc>;
  using Mutex = boost::interprocess::interprocess_sharable_mutex;

  // Segment bytes for `keys` entries: nodes (key, value, next pointer) and
  // allocator headers (about 48 bytes measured), buckets, and slack; tmpfs
  // commits only what is touched.
  static std::size_t segment_bytes(std::uint64_t keys) { return (std::size_t{64} << 20) + keys * 128; }

  // Creates the segment `name` ("/shmap-bench-boost-..."), with an empty map
  // whose buckets are reserved for `capacity` keys. Throws
  // boost::interprocess::interprocess_exception.
  BoostIpcMap(boost::interprocess::create_only_t, const std::string& name, std::uint64_t capacity)
      : seg_(boost::interprocess::create_only, name.c_str(), segment_bytes(capacity)) {
    mu_ = seg_.construct<Mutex>("mutex")();
    map_ = seg_.construct<Map>("map")(0, WordHash{}, std::equal_to<Word>{}, Alloc(seg_.get_segment_manager()));
    map_->reserve(capacity);
  }
  // Opens the segment a parent created.
  BoostIpcMap(boost::interprocess::open_only_t, const std::string& name)
      : seg_(boost::interprocess::open_only, name.c_str()) {
    mu_ = seg_.find<Mutex>("mutex").first;
    map_ = seg_.find<Map>("map").first;
    if (mu_ == nullptr || map_ == nullptr) throw std::runtime_error("boost-ipc: segment " + name + " has no map");
  }

  static bool remove(const std::string& name) {
    return boost::interprocess::shared_memory_object::remove(name.c_str());
  }

  void* base() const { return seg_.get_address(); }
  std::size_t bytes() const { return seg_.get_size(); }
  std::size_t used_bytes() const { return seg_.get_size() - seg_.get_free_memory(); }

  bool get(std::string_view key, std::string& out) const {
    const Word k = Word::of(key);
    boost::interprocess::sharable_lock<Mutex> lock(*mu_);
    const auto it = map_->find(k);
    if (it == map_->end()) return false;
    out.assign(it->second.bytes, sizeof it->second.bytes);
    return true;
  }
  bool insert(std::string_view key, std::string_view value) {
    const Word k = Word::of(key), v = Word::of(value);
    boost::interprocess::scoped_lock<Mutex> lock(*mu_);
    try {
      return map_->emplace(k, v).second;
    } catch (const boost::interprocess::bad_alloc&) {
      return false;  // the segment is full
    }
  }
  bool assign(std::string_view key, std::string_view value) {
    const Word k = Word::of(key), v = Word::of(value);
    boost::interprocess::scoped_lock<Mutex> lock(*mu_);
    if (const auto it = map_->find(k); it != map_->end()) {
      it->second = v;
      return true;
    }
    try {
      return map_->emplace(k, v).second;
    } catch (const boost::interprocess::bad_alloc&) {
      return false;
    }
  }
  bool add(std::string_view key, std::int64_t delta) {
    const Word k = Word::of(key);
    boost::interprocess::scoped_lock<Mutex> lock(*mu_);
    const auto it = map_->find(k);
    if (it == map_->end()) return false;
    std::uint64_t v;
    std::memcpy(&v, it->second.bytes, sizeof v);
    v += static_cast<std::uint64_t>(delta);
    std::memcpy(it->second.bytes, &v, sizeof v);
    return true;
  }
  bool erase(std::string_view key) {
    const Word k = Word::of(key);
    boost::interprocess::scoped_lock<Mutex> lock(*mu_);
    return map_->erase(k) == 1;  // the node goes back to the segment's allocator
  }
  std::uint64_t size() const {
    boost::interprocess::sharable_lock<Mutex> lock(*mu_);
    return map_->size();
  }

 private:
  mutable Segment seg_;
  Mutex* mu_ = nullptr;
  Map* map_ = nullptr;
};

}  // namespace shmap::bench
