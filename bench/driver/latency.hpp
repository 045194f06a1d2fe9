// Per-operation latency: the clock the timed loops sample with, and the
// log-linear histogram each worker fills in the shared-memory results region.
//
// HISTOGRAM LAYOUT (HDR-like): values are clock ticks. Values below 128 have a
// bucket each; above, every power of two [2^k, 2^(k+1)) is cut into 64 equal
// buckets, so a bucket is at most 1/64 (1.6%) of its values wide and its
// midpoint, which quantiles report, is within 0.8% of any value in it. Values
// of 2^48 ticks (a day) and more land in the last bucket. 2752 buckets of 8
// bytes: 22 KiB per worker, all zero when empty, so a zero-filled mapping is an
// empty histogram and the parent merges by adding.
//
// CLOCK: rdtsc on x86-64 (the TSC is constant-rate and synchronized across CPUs
// on machines that report constant_tsc/nonstop_tsc; the driver calibrates it
// against CLOCK_MONOTONIC at start), CLOCK_MONOTONIC elsewhere. A sampled
// operation is fenced (lfence; rdtsc; lfence ... rdtscp; lfence) so the
// operation cannot drift out of its interval; the measured interval therefore
// includes the fences and the clock reads (the "floor" printed at start).
//
// COST: a timed operation runs alone (the fences, and rdtsc itself, drain the
// out-of-order window, so the operations around it no longer overlap their
// cache misses with it): about two memory latencies per sample. Measured on the
// 2-core dev VM (the driver's run_loop in one process, sampled and unsampled
// runs of 0.2 s alternating, median of 12 paired ratios, 1M keys, 1 worker),
// throughput with sampling / without, over get, 90/10, zipf and counter:
//   1 in 64:   ideal-shm 0.86-0.95, shmap 0.94-1.00
//   1 in 256:  ideal-shm 0.97-0.98, shmap 0.96-1.03 (within the noise)
// Hence the default period of 256 (--latency-sample).
#pragma once

#include <bit>
#include <cstdint>
#include <string>
#include <type_traits>

#if defined(__x86_64__)
#include <x86intrin.h>
#endif

namespace shmap::bench {

struct alignas(64) LatencyHistogram {
  static constexpr unsigned kExact = 128;   // values below get a bucket each
  static constexpr unsigned kSubBits = 6;   // 64 buckets per power of two above
  static constexpr unsigned kMaxBits = 48;  // values from 2^48 on share the last bucket
  static constexpr unsigned kBuckets = (kMaxBits - kSubBits + 1) << kSubBits;

  std::uint64_t counts[kBuckets] = {};
  std::uint64_t samples = 0;
  std::uint64_t max = 0;  // the largest value recorded, exact

  static constexpr unsigned bucket(std::uint64_t v) {
    if (v < kExact) return static_cast<unsigned>(v);
    if (v >> kMaxBits) return kBuckets - 1;
    const unsigned shift = static_cast<unsigned>(std::bit_width(v)) - 1 - kSubBits;  // >= 1
    return (shift << kSubBits) + static_cast<unsigned>(v >> shift);
  }
  // The smallest value of bucket b, and how many values it holds.
  static std::uint64_t lower(unsigned b) {
    if (b < kExact) return b;
    const unsigned shift = (b >> kSubBits) - 1;
    return static_cast<std::uint64_t>(b - (shift << kSubBits)) << shift;
  }
  static std::uint64_t width(unsigned b) { return b < kExact ? 1 : std::uint64_t{1} << ((b >> kSubBits) - 1); }

  void record(std::uint64_t v) {
    ++counts[bucket(v)];
    ++samples;
    if (v > max) max = v;
  }
  void merge(const LatencyHistogram& o);
  // The q-quantile (0 < q <= 1) of the recorded values: the midpoint of the
  // bucket holding the ceil(q * samples)-th smallest (exact below 128); 0 if empty.
  double quantile(double q) const;
};
static_assert(std::is_trivially_copyable_v<LatencyHistogram>,
              "histograms live in shared memory and are copied out bytewise");
static_assert(LatencyHistogram::bucket((std::uint64_t{1} << LatencyHistogram::kMaxBits) - 1) ==
                  LatencyHistogram::kBuckets - 1,
              "the largest in-range value must take the last bucket");

// The calibrated latency clock.
struct TickClock {
  const char* source = "clock_gettime(CLOCK_MONOTONIC)";
  double ticks_per_ns = 1;
  double floor_ns = 0;  // median of an empty sampled interval (fences + clock reads)
};

// Calibrates on first use (about 50 ms); later calls return the same value.
// Call it in the parent before forking so every worker inherits it.
const TickClock& tick_clock();

std::int64_t monotonic_ns();

inline std::uint64_t tick_begin() {
#if defined(__x86_64__)
  _mm_lfence();  // earlier instructions finish before the clock is read
  const std::uint64_t t = __rdtsc();
  _mm_lfence();  // the operation does not start before the clock is read
  return t;
#else
  return static_cast<std::uint64_t>(monotonic_ns());
#endif
}

inline std::uint64_t tick_end() {
#if defined(__x86_64__)
  unsigned aux;
  const std::uint64_t t = __rdtscp(&aux);  // waits for the operation's instructions
  _mm_lfence();                            // later instructions do not start before
  return t;
#else
  return static_cast<std::uint64_t>(monotonic_ns());
#endif
}

// Percentiles of a histogram in nanoseconds.
struct LatencySummary {
  std::uint64_t samples = 0;
  double p50_ns = 0, p90_ns = 0, p99_ns = 0, p999_ns = 0, max_ns = 0;
};
LatencySummary summarize(const LatencyHistogram& h);

// "85ns", "1.24us", "3.1ms"; "-" for no samples.
std::string format_ns(double ns);

}  // namespace shmap::bench
