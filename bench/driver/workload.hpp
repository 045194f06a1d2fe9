// Workloads, the key space they draw from, and the per-worker operation streams
// that are generated before the timed region.
//
// Key i (0 <= i < 2N) of the key space is a fixed byte string of --key-bytes
// bytes; keys [0, N) are the "present" set (preloaded for get and mixes, and
// sliced between workers for insert), keys [N, 2N) are never inserted (get-miss).
// Keys from 2N on are "fresh": churn and the get-migrating writer insert and
// erase them (a disjoint range per worker), so they never collide with the
// present set the readers check.
// The first 8 bytes of a key are a bijective mix of i, so keys are unique, look
// uniformly random to any hash, and are never all-zero (the ideal table's EMPTY).
//
// Key popularity is uniform, or zipfian: rank r (0 = hottest) is drawn with
// probability proportional to 1/(r+1)^theta (Zipf below) and mapped to a key
// index by a permutation (AffinePermutation), so the hot keys are not the
// first ones preloaded, which sit next to each other in an arena.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "../common/splitmix64.hpp"

namespace shmap::bench {

enum class WorkloadKind {
  get,       // uniform random gets of present keys (all hits)
  get_miss,  // uniform random gets of absent keys (all misses)
  insert,    // every worker inserts its own disjoint slice of the keys into an empty map
  mixed,     // present keys: get with probability get_percent, else insert_or_assign
  counter,   // fetch_add(1) on one of the first counter_keys present keys (uniform among them)
  // Worker 0 inserts fresh keys and erases each `window` inserts later (so the
  // index keeps rebuilding at the same size: a migration runs for a good part
  // of the time); the other workers get uniform random present keys.
  get_migrating,
  // Its baseline: worker 0 does insert_or_assign of uniform random present keys
  // (no key is added or dropped: no migration); the others get as above.
  get_with_writer,
  // Every worker inserts fresh keys and erases each `window` inserts later:
  // `window` live keys per worker, into a map created for all of them.
  churn,
};

enum class KeyDist { uniform, zipf };

struct Workload {
  std::string name;  // as given on the command line: "get", "90/10", "zipf", ...
  WorkloadKind kind = WorkloadKind::get;
  unsigned get_percent = 100;       // mixed only
  KeyDist dist = KeyDist::uniform;  // get and mixed
  double theta = 0.99;              // zipf only
  unsigned counter_keys = 8;        // counter only: keys [0, counter_keys) are the counters
  // churn and get-migrating: live fresh keys per churning worker (each key is
  // erased `window` inserts after its insert); 0 = derived (window_for).
  std::uint64_t window = 0;

  bool preloaded() const { return kind != WorkloadKind::insert && kind != WorkloadKind::churn; }
  bool reads() const {
    return kind != WorkloadKind::insert && kind != WorkloadKind::counter && kind != WorkloadKind::churn;
  }
  bool writes() const { return kind != WorkloadKind::get && kind != WorkloadKind::get_miss; }
  // Worker 0 writes while the others read: measured only with 2 or more
  // workers, and reported as the readers' gets/s.
  bool one_writer() const { return kind == WorkloadKind::get_migrating || kind == WorkloadKind::get_with_writer; }
  // Inserts keys beyond the key space (from 2N on).
  bool fresh_keys() const { return kind == WorkloadKind::get_migrating || kind == WorkloadKind::churn; }
  // The live window of each churning worker with `workers` workers: `window`
  // if given, else churn: keys / workers (the live set is --keys, like the
  // get workload's map), get-migrating: 1000.
  std::uint64_t window_for(std::uint64_t keys, unsigned workers) const;
  // Fresh keys live at once with `workers` workers: the windows of the churning workers.
  std::uint64_t live_fresh(std::uint64_t keys, unsigned workers) const;
  // Key i is a counter: preloaded with an 8-byte zero instead of its value.
  bool counter_key(std::uint64_t i) const { return kind == WorkloadKind::counter && i < counter_keys; }
  std::string description(std::uint64_t keys) const;
};

// "get", "get-miss", "insert", "R/W" with R + W = 100 (R% get, W%
// insert_or_assign), "zipf" (zipfian gets), "zipf-R/W" (a zipfian mix),
// "counter", "get-migrating", "get-with-writer" or "churn". `theta` and
// `counter_keys` parameterize zipf and counter (the window is set by the caller).
std::optional<Workload> parse_workload(std::string_view s, double theta = 0.99, unsigned counter_keys = 8);
// The names parse_workload accepts, for --help and error messages.
const char* workload_syntax();

using benchutil::SplitMix64;  // bench/common/splitmix64.hpp

// zeta(n, theta) = sum over i = 1..n of 1 / i^theta. O(n); memoized (thread-safe).
double zeta(std::uint64_t n, double theta);

// Zipfian ranks in [0, n): P(r) = 1 / ((r + 1)^theta * zeta(n, theta)), 0 <= theta < 1,
// drawn by the method of Gray et al., "Quickly generating billion-record
// synthetic databases" (SIGMOD 1994), as YCSB's ZipfianGenerator does: O(n)
// setup, O(1) per draw, exact for ranks 0 and 1 and a close approximation of
// the distribution's tail beyond.
class Zipf {
 public:
  Zipf(std::uint64_t n, double theta);
  // Maps u, uniform in [0, 1), to a rank.
  std::uint64_t operator()(double u) const;
  // The exact probability of rank r under the target distribution.
  double probability(std::uint64_t r) const;
  std::uint64_t n() const { return n_; }

 private:
  std::uint64_t n_;
  double theta_, alpha_, zetan_, eta_, half_pow_theta_;
};

// A bijection of [0, n): i -> (a*i + b) mod n, with a near n/phi and coprime to
// n, so consecutive ranks land far apart. Deterministic in (n, seed).
class AffinePermutation {
 public:
  AffinePermutation(std::uint64_t n, std::uint64_t seed);
  std::uint64_t operator()(std::uint64_t i) const {
    return static_cast<std::uint64_t>((static_cast<unsigned __int128>(a_) * i + b_) % n_);
  }

 private:
  std::uint64_t n_, a_, b_;
};

// Uniform double in [0, 1) from 53 random bits.
inline double unit_interval(std::uint64_t bits) {
  return static_cast<double>(bits >> 11) * 0x1.0p-53;
}

// The MurmurHash3 finalizer: a bijection on 64-bit words with fmix64(0) == 0.
constexpr std::uint64_t fmix64(std::uint64_t k) {
  k ^= k >> 33;
  k *= 0xff51afd7ed558ccdull;
  k ^= k >> 33;
  k *= 0xc4ceb9fe1a85ec53ull;
  k ^= k >> 33;
  return k;
}

class KeySpace {
 public:
  // Throws std::invalid_argument if key_bytes cannot hold 2*keys distinct keys.
  KeySpace(std::uint64_t keys, std::size_t key_bytes, std::size_t value_bytes, std::uint64_t seed);

  std::uint64_t keys() const { return keys_; }
  std::size_t key_bytes() const { return key_bytes_; }
  std::size_t value_bytes() const { return value_bytes_; }

  // Writes key i (key_bytes bytes) / the preloaded value of key i (value_bytes bytes).
  void key(std::uint64_t i, char* dst) const;
  void value(std::uint64_t i, char* dst) const;
  std::string key(std::uint64_t i) const;
  std::string value(std::uint64_t i) const;
  // Key i's first 8 bytes as a little-endian word (when key_bytes >= 8).
  std::uint64_t key_word(std::uint64_t i) const { return fmix64(base_ + i); }

 private:
  std::uint64_t keys_;
  std::size_t key_bytes_;
  std::size_t value_bytes_;
  std::uint64_t base_;  // in [1, 2^62]: base_ + i never wraps to 0
};

// The operations of one worker, laid out in the order it performs them so the
// timed loop reads them sequentially (no key generation, no indirection).
// The fresh keys of a churning worker (churn, the get-migrating writer),
// generated in its timed loop rather than laid out in a stream: a key
// inserted again after its erase would find its own slot (a key's slot stays
// its own, DELETED, until the table is migrated), so a cycled stream would
// stop claiming index slots and the migrations would stop; every key must be
// new for the whole run. Generating one costs two fmix64 (key and value), a
// few ns against a write's hundreds, the same for every implementation.
//
// Fresh key number n is key 2N + n * stride + slot of the key space: the
// workers' keys are disjoint and never a present or absent key. Pair g of the
// run (g = 0, 1, ...) inserts number g + window and then erases number g, so
// `window` keys are live throughout; numbers [0, window) are the window the
// parent inserts before the run.
struct FreshKeys {
  KeySpace ks;
  std::uint64_t stride = 1;  // churning workers
  std::uint64_t slot = 0;    // this worker's place among them
  std::uint64_t window = 0;

  std::uint64_t index(std::uint64_t n) const { return 2 * ks.keys() + n * stride + slot; }
};

// The operations of one worker, laid out in the order it performs them so the
// timed loop reads them sequentially (no key generation, no indirection).
struct OpStream {
  // The timed loop this stream runs (dispatch): get, insert, mixed, counter
  // or churn. A workload's workers can run different loops (get-migrating:
  // worker 0 churns, the others get).
  WorkloadKind loop = WorkloadKind::get;
  // churn loop only: the keys, generated in the loop; even operations insert,
  // odd ones erase, and `count` only sets how often the loop wraps (no bytes
  // are stored).
  std::optional<FreshKeys> fresh;
  std::size_t key_bytes = 0;
  std::size_t value_bytes = 0;
  std::size_t count = 0;               // operations in the stream
  bool cyclic = true;                  // restart at the end (duration-bound) or stop (insert: the slice is done)
  std::vector<char> keys;              // count * key_bytes
  std::vector<char> values;            // count * value_bytes, for writes
  std::vector<std::uint8_t> is_write;  // mixed only: 1 = insert_or_assign, 0 = get

  std::string_view key(std::size_t i) const { return {keys.data() + i * key_bytes, key_bytes}; }
  std::string_view value(std::size_t i) const { return {values.data() + i * value_bytes, value_bytes}; }
};

// Stream length for duration-bound workloads: about 64 MiB of keys and values per
// worker (at least 4096 ops, at most 2^20), cycled until the duration ends.
std::size_t stream_length(const KeySpace& ks);

// The stream of worker `w` of `workers`; the same (ks, workload, workers, w,
// seed) always gives the same stream, so every implementation sees the same keys.
OpStream make_stream(const KeySpace& ks, const Workload& wl, unsigned workers, unsigned w, std::uint64_t seed);

// The keys [first, last) worker w inserts in the insert workload.
std::pair<std::uint64_t, std::uint64_t> insert_slice(std::uint64_t keys, unsigned workers, unsigned w);

}  // namespace shmap::bench
