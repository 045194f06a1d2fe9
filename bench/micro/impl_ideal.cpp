// The "ideal" tables: what a hash table in shared memory costs with none of
// shmap's safety. 8-byte keys and values only.
//
// ideal-inline    linear probing over 16-byte slots {key, value} inline in a
//                 MAP_SHARED anonymous mapping: one cache miss per get. The
//                 ceiling for any shared-memory table.
// ideal-indirect  shmap's shape: 8-byte slot words {deleted | fingerprint |
//                 record number} pointing to 24-byte records {header, key,
//                 value} bump-allocated in an arena (the same mapping): two
//                 dependent misses per get. The ceiling for shmap's layout.
//
// WHAT THEY DO NOT DO (why they are a ceiling): no validation, no generation
// checks, no crash consistency, no bounds checks, no record reuse. A reader
// can see a value mid-update or a key whose value is not written yet; a
// record is never freed (an erased key keeps its record and a re-insert
// revives it, so the arena holds at most one record per distinct key).
// Erase follows Click's scheme like shmap: the slot stays the key's and gets a
// DELETED flag (bit 63: keys never use it), a re-insert clears the flag.
//
// Every shared word is accessed through std::atomic_ref so that the threaded
// runs have no data race in the C++ model; the relaxed ones compile to plain
// moves on x86-64.
#include <sys/mman.h>

#include <atomic>
#include <bit>
#include <cerrno>
#include <system_error>

#include "micro.hpp"

namespace shmap::micro {
namespace {

inline constexpr std::uint64_t kDeleted = std::uint64_t{1} << 63;

std::atomic_ref<std::uint64_t> at(std::uint64_t& w) { return std::atomic_ref<std::uint64_t>(w); }

// Shared anonymous memory, zero-filled.
class SharedMapping {
 public:
  explicit SharedMapping(std::size_t bytes) : bytes_(bytes) {
    void* p = ::mmap(nullptr, bytes_, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) throw std::system_error(errno, std::generic_category(), "mmap of an ideal table");
    base_ = static_cast<char*>(p);
  }
  ~SharedMapping() { ::munmap(base_, bytes_); }
  SharedMapping(const SharedMapping&) = delete;
  SharedMapping& operator=(const SharedMapping&) = delete;
  char* base() const { return base_; }
  std::size_t bytes() const { return bytes_; }

 private:
  std::size_t bytes_;
  char* base_ = nullptr;
};

// Slots like shmap's index: the next power of two >= 4/3 of the keys.
std::uint64_t slot_count(std::uint64_t keys) { return std::bit_ceil(std::max<std::uint64_t>(keys + keys / 3, 16)); }

// Fibonacci hashing: the top bits of key * 2^64/phi.
constexpr std::uint64_t kPhi = 0x9e3779b97f4a7c15ull;

class IdealInline {
 public:
  struct ThreadScope {};
  struct Slot {
    std::uint64_t key;  // 0 EMPTY, key, or key | kDeleted
    std::uint64_t value;
  };
  static_assert(sizeof(Slot) == 16, "inline slots hold an 8-byte key and an 8-byte value, nothing else");

  explicit IdealInline(const Case& c)
      : slots_(slot_count(c.keys)), shift_(64 - std::countr_zero(slots_)), mem_(slots_ * sizeof(Slot)) {}

  long get(std::string_view key, char* out) const {
    const std::uint64_t k = load64(key.data());
    for (std::uint64_t i = home(k);; i = next(i)) {
      // Relaxed: unvalidated by design; the value load below is not ordered with it.
      const std::uint64_t w = at(slot(i).key).load(std::memory_order_relaxed);
      if (w == k) {
        // Relaxed: may see a value mid-update (no safety).
        store64(out, at(slot(i).value).load(std::memory_order_relaxed));
        return 8;
      }
      if (w == 0 || w == (k | kDeleted)) return -1;
    }
  }

  bool insert(std::string_view key, std::string_view value) {
    const std::uint64_t k = load64(key.data());
    const std::uint64_t v = load64(value.data());
    std::uint64_t i = home(k);
    for (std::uint64_t probes = 0; probes < slots_;) {
      // Relaxed: as in get.
      std::uint64_t w = at(slot(i).key).load(std::memory_order_relaxed);
      if (w == k) return false;
      if (w == (k | kDeleted) || w == 0) {
        // Relaxed: a revived or claimed slot's value is not ordered with its key (no safety).
        if (w != 0) at(slot(i).value).store(v, std::memory_order_relaxed);
        // Relaxed CAS: claims or revives the slot against other writers only.
        if (at(slot(i).key).compare_exchange_strong(w, k, std::memory_order_relaxed)) {
          if (w == 0) at(slot(i).value).store(v, std::memory_order_relaxed);  // Relaxed: as above.
          return true;
        }
        continue;  // lost a race for this slot: look at it again
      }
      i = next(i);
      ++probes;
    }
    return false;  // full
  }

  Put assign(std::string_view key, std::string_view value) {
    const std::uint64_t k = load64(key.data());
    if (Slot* s = find(k)) {
      // Relaxed: last writer wins; readers do not validate.
      at(s->value).store(load64(value.data()), std::memory_order_relaxed);
      return Put::assigned;
    }
    return insert(key, value) ? Put::inserted : Put::failed;
  }

  bool erase(std::string_view key) {
    const std::uint64_t k = load64(key.data());
    Slot* s = find(k);
    std::uint64_t w = k;
    // Relaxed CAS: only one eraser wins; nothing is published.
    return s != nullptr && at(s->key).compare_exchange_strong(w, k | kDeleted, std::memory_order_relaxed);
  }

  bool fetch_add(std::string_view key, std::uint64_t delta) {
    Slot* s = find(load64(key.data()));
    // Relaxed RMW: exact under contention, ordered with nothing else.
    if (s != nullptr) at(s->value).fetch_add(delta, std::memory_order_relaxed);
    return s != nullptr;
  }

  double footprint() const { return static_cast<double>(mem_.bytes()); }

 private:
  Slot* find(std::uint64_t k) const {
    for (std::uint64_t i = home(k);; i = next(i)) {
      // Relaxed: as in get.
      const std::uint64_t w = at(slot(i).key).load(std::memory_order_relaxed);
      if (w == k) return &slot(i);
      if (w == 0 || w == (k | kDeleted)) return nullptr;
    }
  }
  Slot& slot(std::uint64_t i) const { return reinterpret_cast<Slot*>(mem_.base())[i]; }
  std::uint64_t home(std::uint64_t k) const { return (k * kPhi) >> shift_; }
  std::uint64_t next(std::uint64_t i) const { return (i + 1) & (slots_ - 1); }

  std::uint64_t slots_;
  int shift_;
  SharedMapping mem_;
};

class IdealIndirect {
 public:
  struct ThreadScope {};
  struct Record {
    std::uint64_t header;  // lengths, written once, never validated
    std::uint64_t key;
    std::uint64_t value;
  };
  static_assert(sizeof(Record) == 24, "records mirror shmap's 24-byte record for 8-byte keys and values");

  explicit IdealIndirect(const Case& c)
      : slots_(slot_count(c.keys)),
        shift_(64 - std::countr_zero(slots_)),
        records_(std::max<std::uint64_t>(c.keys, 1)),
        mem_(64 + slots_ * 8 + records_ * sizeof(Record)) {}

  long get(std::string_view key, char* out) const {
    const std::uint64_t k = load64(key.data());
    const std::uint64_t w = find(k);
    if (w == 0 || (w & kDeleted) != 0) return -1;
    // Relaxed: may see a value mid-update (no safety); the record itself was
    // acquired through its slot word in find().
    store64(out, at(record(w).value).load(std::memory_order_relaxed));
    return 8;
  }

  bool insert(std::string_view key, std::string_view value) {
    const std::uint64_t k = load64(key.data());
    const std::uint64_t v = load64(value.data());
    const std::uint64_t h = k * kPhi;
    const std::uint64_t fp = fingerprint(h);
    std::uint64_t mine = 0;  // record number + 1, taken at the first EMPTY slot
    std::uint64_t i = h >> shift_;
    for (std::uint64_t probes = 0; probes < slots_;) {
      // Acquire: pairs with the release CASes below, so a matching record's key is readable.
      std::uint64_t w = at(index()[i]).load(std::memory_order_acquire);
      if (w == 0) {
        if (mine == 0) {
          // Relaxed: a bump counter; the record is published by the CAS below.
          mine = at(bump()).fetch_add(1, std::memory_order_relaxed) + 1;
          if (mine > records_) return false;  // out of records (the number is lost: no safety)
          Record& r = record(mine);
          r.header = (std::uint64_t{8} << 32) | 8;
          r.key = k;
          r.value = v;
        }
        // Release: publishes the record written above to the acquire loads of slot words.
        if (at(index()[i]).compare_exchange_strong(w, (fp << 32) | mine, std::memory_order_release,
                                                   std::memory_order_acquire)) {
          return true;
        }
        continue;  // lost the slot: look at it again
      }
      if (((w >> 32) & 0xffff) == fp && record(w).key == k) {
        if ((w & kDeleted) == 0) return false;  // present
        // Relaxed: the revived value is published by the release CAS below.
        at(record(w).value).store(v, std::memory_order_relaxed);
        // Release: publishes the value above; pairs with the acquire loads of slot words.
        if (at(index()[i]).compare_exchange_strong(w, w & ~kDeleted, std::memory_order_release,
                                                   std::memory_order_acquire)) {
          return true;
        }
        continue;
      }
      i = (i + 1) & (slots_ - 1);
      ++probes;
    }
    return false;  // full
  }

  Put assign(std::string_view key, std::string_view value) {
    const std::uint64_t w = find(load64(key.data()));
    if (w != 0 && (w & kDeleted) == 0) {
      // Relaxed: in-place last writer wins; readers do not validate.
      at(record(w).value).store(load64(value.data()), std::memory_order_relaxed);
      return Put::assigned;
    }
    return insert(key, value) ? Put::inserted : Put::failed;
  }

  bool erase(std::string_view key) {
    const std::uint64_t k = load64(key.data());
    const std::uint64_t h = k * kPhi;
    const std::uint64_t fp = fingerprint(h);
    for (std::uint64_t i = h >> shift_;; i = (i + 1) & (slots_ - 1)) {
      // Acquire: as in insert.
      std::uint64_t w = at(index()[i]).load(std::memory_order_acquire);
      if (w == 0) return false;
      if (((w >> 32) & 0xffff) != fp || record(w).key != k) continue;
      if ((w & kDeleted) != 0) return false;
      // Relaxed CAS: only one eraser wins; nothing is published (the record stays).
      return at(index()[i]).compare_exchange_strong(w, w | kDeleted, std::memory_order_relaxed);
    }
  }

  bool fetch_add(std::string_view key, std::uint64_t delta) {
    const std::uint64_t w = find(load64(key.data()));
    if (w == 0 || (w & kDeleted) != 0) return false;
    // Relaxed RMW: exact under contention, ordered with nothing else.
    at(record(w).value).fetch_add(delta, std::memory_order_relaxed);
    return true;
  }

  // The index plus the records in use (what shmap's footprint counts).
  double footprint() const {
    // Relaxed: a statistic read after the preload.
    const std::uint64_t used = std::min(at(bump()).load(std::memory_order_relaxed), records_);
    return static_cast<double>(slots_ * 8 + used * sizeof(Record));
  }

 private:
  // The slot word of key k (its DELETED flag included), or 0.
  std::uint64_t find(std::uint64_t k) const {
    const std::uint64_t h = k * kPhi;
    const std::uint64_t fp = fingerprint(h);
    for (std::uint64_t i = h >> shift_;; i = (i + 1) & (slots_ - 1)) {
      // Acquire: pairs with insert's release CASes (free on x86-64), so the record is written.
      const std::uint64_t w = at(index()[i]).load(std::memory_order_acquire);
      if (w == 0) return 0;
      // Relaxed: keys of published records never change.
      if (((w >> 32) & 0xffff) == fp && at(record(w).key).load(std::memory_order_relaxed) == k) return w;
    }
  }
  // 16 bits below the index bits of the Fibonacci hash.
  std::uint64_t fingerprint(std::uint64_t h) const { return (h >> (shift_ - 16)) & 0xffff; }
  std::uint64_t& bump() const { return *reinterpret_cast<std::uint64_t*>(mem_.base()); }
  std::uint64_t* index() const { return reinterpret_cast<std::uint64_t*>(mem_.base() + 64); }
  Record& record(std::uint64_t w) const {
    return reinterpret_cast<Record*>(mem_.base() + 64 + slots_ * 8)[(w & 0xffffffffull) - 1];
  }

  std::uint64_t slots_;
  int shift_;
  std::uint64_t records_;
  SharedMapping mem_;
};

bool eight_by_eight(std::uint32_t k, std::uint32_t v) { return k == 8 && v == 8; }

}  // namespace

std::vector<Impl> ideal_impls() {
  return {{"ideal-inline", true, eight_by_eight, run_case<IdealInline>},
          {"ideal-indirect", true, eight_by_eight, run_case<IdealIndirect>}};
}

}  // namespace shmap::micro
