// The harness's data model: the three key spaces, self-checking values, and
// the shared region through which workers tell the supervisor what the map
// acknowledged.
//
// KEYS. "<space>:<id>" padded with '.' to exactly --key-bytes bytes, where
// space is 'o' (owned), 'c' (counters) or 'h' (churn). A key read back from the
// map (for_each) is parsed and re-encoded, so a corrupted key is detected.
//
// VALUES (owned and churn spaces).
//    bytes 0..7    key id (little-endian)
//    bytes 8..15   version (owned: 1, 2, 3, ...; churn: any tag)
//    bytes 16..23  checksum of space, key id, version and payload
//    bytes 24..    payload, --value-bytes bytes, a function of (space, id, version)
// The value is a pure function of (space, id, version), so a writer can rebuild
// the exact bytes it stored (the `expected` of a compare_exchange) and a torn
// value (words of two versions) fails the checksum. Counter values are the
// 8-byte integers fetch_add keeps.
//
// SHARED REGION. One MAP_SHARED|MAP_ANONYMOUS mapping made before the first
// fork, so the supervisor and every worker incarnation see the same words:
//    Control       stop flag, violation count, the first violation messages
//    WorkerStats   per worker slot: operations done, per kind
//    WriterState   per writer slot: the owned key being written, and per
//                  counter key the increments attempted and acknowledged
//    owned_acked   per owned key: the last version its writer saw succeed
// Slots belong to a role index, not to a process: a respawned worker continues
// its predecessor's counts. Only one incarnation of a slot runs at a time (the
// supervisor reaps the old one before forking the new), so every per-slot word
// has a single writer.
#pragma once

#include <sys/mman.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstdint>
#include <cstring>
#include <memory>
#include <new>
#include <string>
#include <string_view>
#include <system_error>
#include <vector>

#include "options.hpp"

namespace shmap::stress {

// The counter space: few keys, so writers contend on every fetch_add.
inline constexpr std::uint64_t kCounterKeys = 8;
inline constexpr std::size_t kValueHeaderBytes = 24;

enum class Space : char { owned = 'o', counter = 'c', churn = 'h' };

struct KeySpaces {
  std::uint64_t owned = 0;
  std::uint64_t counters = 0;
  std::uint64_t churn = 0;
  std::uint64_t total() const noexcept { return owned + counters + churn; }
};

inline constexpr std::uint64_t kGrowWindows = 64;

inline KeySpaces key_spaces(const Options& o) {
  KeySpaces k;
  const bool all = o.workload == Workload::mixed || o.workload == Workload::grow;
  if (all || o.workload == Workload::owned) k.owned = o.keys;
  if (all || o.workload == Workload::counters) k.counters = kCounterKeys;
  if (all || o.workload == Workload::churn) k.churn = o.keys;
  // grow: churn over a window of `keys` ids that slides through 64 times as
  // many, so fresh keys keep coming and erased ones are not revisited soon:
  // their deleted slots pile up and same-size rebuilds keep running.
  if (o.workload == Workload::grow) k.churn = o.keys * kGrowWindows;
  return k;
}

inline std::size_t decimal_digits(std::uint64_t n) {
  std::size_t d = 1;
  while (n >= 10) {
    n /= 10;
    ++d;
  }
  return d;
}

// The shortest --key-bytes that holds every key of `keys` ids per space.
inline std::size_t min_key_bytes(std::uint64_t keys) {
  const std::uint64_t largest = std::max<std::uint64_t>(keys, kCounterKeys) - 1;
  return 2 + decimal_digits(largest);
}

inline void make_key(std::string& out, Space s, std::uint64_t id, std::uint32_t key_bytes) {
  out.assign(1, static_cast<char>(s));
  out += ':';
  out += std::to_string(id);
  out.resize(key_bytes, '.');
}

inline std::string make_key(Space s, std::uint64_t id, std::uint32_t key_bytes) {
  std::string k;
  make_key(k, s, id, key_bytes);
  return k;
}

struct ParsedKey {
  Space space;
  std::uint64_t id;
};

// Parses a key read from the map. False if it is not exactly a key this
// harness writes (wrong length, unknown space, id out of range, bad padding).
inline bool parse_key(std::string_view key, std::uint32_t key_bytes, const KeySpaces& spaces, ParsedKey& out) {
  if (key.size() != key_bytes || key.size() < 3 || key[1] != ':') return false;
  std::uint64_t limit = 0;
  switch (key[0]) {
    case 'o':
      out.space = Space::owned, limit = spaces.owned;
      break;
    case 'c':
      out.space = Space::counter, limit = spaces.counters;
      break;
    case 'h':
      out.space = Space::churn, limit = spaces.churn;
      break;
    default:
      return false;
  }
  std::uint64_t id = 0;
  std::size_t i = 2;
  for (; i < key.size() && key[i] >= '0' && key[i] <= '9' && i < 2 + 20; ++i) id = id * 10 + (key[i] - '0');
  if (i == 2 || id >= limit) return false;
  out.id = id;
  return make_key(out.space, id, key_bytes) == key;  // canonical digits and '.' padding
}

// splitmix64's finalizer: a bijective 64-bit mix.
inline std::uint64_t mix64(std::uint64_t x) noexcept {
  x ^= x >> 30;
  x *= 0xbf58476d1ce4e5b9ULL;
  x ^= x >> 27;
  x *= 0x94d049bb133111ebULL;
  x ^= x >> 31;
  return x;
}

inline std::uint64_t load_u64(const char* p) noexcept {
  std::uint64_t w;
  std::memcpy(&w, p, 8);
  return w;
}

inline std::uint64_t value_checksum(Space s, std::uint64_t id, std::uint64_t version, const char* payload,
                                    std::size_t n) noexcept {
  std::uint64_t h = mix64(static_cast<std::uint64_t>(s) ^ 0x5354524553535631ULL);
  h = mix64(h ^ id);
  h = mix64(h ^ version);
  std::size_t i = 0;
  for (; i + 8 <= n; i += 8) h = mix64(h ^ load_u64(payload + i));
  if (i < n) {
    std::uint64_t tail = 0;
    std::memcpy(&tail, payload + i, n - i);
    h = mix64(h ^ tail);
  }
  return mix64(h ^ n);
}

// The value of (space, id, version): always the same bytes.
inline void encode_value(std::string& out, Space s, std::uint64_t id, std::uint64_t version,
                         std::uint32_t payload_bytes) {
  out.resize(kValueHeaderBytes + payload_bytes);
  char* p = out.data();
  std::memcpy(p, &id, 8);
  std::memcpy(p + 8, &version, 8);
  char* payload = p + kValueHeaderBytes;
  const std::uint64_t base = mix64(id * 0x9e3779b97f4a7c15ULL ^ mix64(version) ^ static_cast<std::uint64_t>(s));
  for (std::uint32_t i = 0; i < payload_bytes; i += 8) {
    const std::uint64_t w = mix64(base + i);
    std::memcpy(payload + i, &w, std::min<std::uint32_t>(8, payload_bytes - i));
  }
  const std::uint64_t sum = value_checksum(s, id, version, payload, payload_bytes);
  std::memcpy(p + 16, &sum, 8);
}

// Checks a value read under key (s, id). Returns an empty string when it is a
// well-formed value of that key (and sets `version`), else what is wrong.
inline std::string check_value(std::string_view v, Space s, std::uint64_t id, std::uint32_t payload_bytes,
                               std::uint64_t& version) {
  if (v.size() != kValueHeaderBytes + payload_bytes)
    return "value has " + std::to_string(v.size()) + " bytes, expected " +
           std::to_string(kValueHeaderBytes + payload_bytes);
  const std::uint64_t vid = load_u64(v.data());
  const std::uint64_t ver = load_u64(v.data() + 8);
  const std::uint64_t sum = load_u64(v.data() + 16);
  if (sum != value_checksum(s, vid, ver, v.data() + kValueHeaderBytes, payload_bytes))
    return "checksum mismatch (a torn value, or bytes of another space)";
  if (vid != id) return "well-formed value of key id " + std::to_string(vid) + " under key id " + std::to_string(id);
  version = ver;
  return {};
}

// Operation kinds counted per worker slot.
enum OpKind : unsigned {
  kOwnedInsert,
  kOwnedAssign,
  kOwnedCas,
  kOwnedGet,
  kCounterAdd,
  kCounterGet,
  kChurnInsert,
  kChurnAssign,
  kChurnErase,
  kChurnGet,
  kWalk,
  kOpKinds
};
inline constexpr const char* kOpNames[kOpKinds] = {"owned_insert", "owned_assign", "owned_cas",    "owned_get",
                                                   "counter_add",  "counter_get",  "churn_insert", "churn_assign",
                                                   "churn_erase",  "churn_get",    "walk"};

static_assert(std::atomic<std::uint64_t>::is_always_lock_free && std::atomic<std::uint32_t>::is_always_lock_free,
              "the shared region is used by several processes: its atomics must be lock-free, not a "
              "process-local lock");

inline constexpr std::size_t kMaxMessages = 32;
inline constexpr std::size_t kMessageBytes = 248;

struct Message {
  std::atomic<std::uint32_t> ready;  // 1 once `text` is complete
  char text[kMessageBytes];
};

struct alignas(64) Control {
  std::atomic<std::uint32_t> stop;        // set by the supervisor: finish the operation at hand and exit
  std::atomic<std::uint64_t> violations;  // every violation found, by anyone
  Message messages[kMaxMessages];         // the first kMaxMessages of them
};

struct alignas(64) WorkerStats {
  std::atomic<std::uint64_t> ops[kOpKinds];
};

struct alignas(64) WriterState {
  std::atomic<std::uint64_t> owned_inflight;                  // 1 + id of the owned key being written; 0 between writes
  std::atomic<std::uint64_t> counter_attempts[kCounterKeys];  // raised before each fetch_add(+1)
  std::atomic<std::uint64_t> counter_acked[kCounterKeys];     // raised after each fetch_add that succeeded
};

class SharedRegion {
 public:
  SharedRegion(unsigned writers, unsigned readers, std::uint64_t owned_keys)
      : writers_(writers), slots_(writers + readers), owned_keys_(owned_keys) {
    const std::size_t stats_off = round64(sizeof(Control));
    const std::size_t writer_off = stats_off + sizeof(WorkerStats) * slots_;
    const std::size_t acked_off = writer_off + sizeof(WriterState) * writers_;
    bytes_ = acked_off + sizeof(std::atomic<std::uint64_t>) * std::max<std::uint64_t>(owned_keys_, 1);
    void* p = ::mmap(nullptr, bytes_, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) throw std::system_error(errno, std::generic_category(), "mmap of the shared region");
    base_ = static_cast<char*>(p);
    // The mapping is zero-filled; constructing the atomics in place makes them objects.
    control_ = new (base_) Control{};
    stats_ = reinterpret_cast<WorkerStats*>(base_ + stats_off);
    for (unsigned i = 0; i < slots_; ++i) new (&stats_[i]) WorkerStats{};
    writer_ = reinterpret_cast<WriterState*>(base_ + writer_off);
    for (unsigned i = 0; i < writers_; ++i) new (&writer_[i]) WriterState{};
    acked_ = reinterpret_cast<std::atomic<std::uint64_t>*>(base_ + acked_off);
    for (std::uint64_t i = 0; i < owned_keys_; ++i) new (&acked_[i]) std::atomic<std::uint64_t>(0);
  }
  ~SharedRegion() { ::munmap(base_, bytes_); }
  SharedRegion(const SharedRegion&) = delete;
  SharedRegion& operator=(const SharedRegion&) = delete;

  Control& control() noexcept { return *control_; }
  WorkerStats& stats(unsigned slot) noexcept { return stats_[slot]; }
  WriterState& writer(unsigned w) noexcept { return writer_[w]; }
  std::atomic<std::uint64_t>& owned_acked(std::uint64_t id) noexcept { return acked_[id]; }
  unsigned writers() const noexcept { return writers_; }
  unsigned slots() const noexcept { return slots_; }

  // Counts a violation and keeps its message if it is among the first
  // kMaxMessages. Returns the violation's index (0 for the first).
  std::uint64_t record_violation(std::string_view text) noexcept {
    // Relaxed: a count; the messages are read by the supervisor after every worker exited.
    const std::uint64_t i = control_->violations.fetch_add(1, std::memory_order_relaxed);
    if (i < kMaxMessages) {
      Message& m = control_->messages[i];
      const std::size_t n = std::min(text.size(), kMessageBytes - 1);
      std::memcpy(m.text, text.data(), n);
      m.text[n] = '\0';
      // Release: pairs with the acquire load in messages(); a worker killed
      // before this store leaves its message out rather than half written.
      m.ready.store(1, std::memory_order_release);
    }
    return i;
  }

  std::uint64_t violations() const noexcept {
    // Relaxed: a count for the progress line and the verdict.
    return control_->violations.load(std::memory_order_relaxed);
  }

  std::vector<std::string> messages() const {
    std::vector<std::string> out;
    for (const Message& m : control_->messages)
      // Acquire: pairs with the release store in record_violation().
      if (m.ready.load(std::memory_order_acquire)) out.emplace_back(m.text);
    return out;
  }

  std::uint64_t ops(OpKind k) const noexcept {
    std::uint64_t n = 0;
    // Relaxed: progress counters, each with a single writer.
    for (unsigned s = 0; s < slots_; ++s) n += stats_[s].ops[k].load(std::memory_order_relaxed);
    return n;
  }

  std::uint64_t total_ops() const noexcept {
    std::uint64_t n = 0;
    for (unsigned k = 0; k < kOpKinds; ++k) n += ops(static_cast<OpKind>(k));
    return n;
  }

 private:
  static std::size_t round64(std::size_t n) { return (n + 63) / 64 * 64; }

  unsigned writers_;
  unsigned slots_;
  std::uint64_t owned_keys_;
  std::size_t bytes_ = 0;
  char* base_ = nullptr;
  Control* control_ = nullptr;
  WorkerStats* stats_ = nullptr;
  WriterState* writer_ = nullptr;
  std::atomic<std::uint64_t>* acked_ = nullptr;
};

// A small, fast generator (splitmix64): the seeded streams of every worker and
// of the killer.
class Rng {
 public:
  explicit Rng(std::uint64_t seed) : s_(seed) {}
  std::uint64_t next() noexcept { return mix64(s_ += 0x9e3779b97f4a7c15ULL); }
  // Uniform in [0, n), n > 0.
  std::uint64_t below(std::uint64_t n) noexcept {
    return static_cast<std::uint64_t>((static_cast<unsigned __int128>(next()) * n) >> 64);
  }
  // Uniform in [0, 1).
  double unit() noexcept { return static_cast<double>(next() >> 11) * 0x1.0p-53; }

 private:
  std::uint64_t s_;
};

}  // namespace shmap::stress
