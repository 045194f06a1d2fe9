#include "latency.hpp"

#include <time.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <vector>

namespace shmap::bench {

std::int64_t monotonic_ns() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return std::int64_t{ts.tv_sec} * 1'000'000'000 + ts.tv_nsec;
}

void LatencyHistogram::merge(const LatencyHistogram& o) {
  for (unsigned b = 0; b < kBuckets; ++b) counts[b] += o.counts[b];
  samples += o.samples;
  max = std::max(max, o.max);
}

double LatencyHistogram::quantile(double q) const {
  if (samples == 0) return 0;
  const auto rank = std::max<std::uint64_t>(1, static_cast<std::uint64_t>(std::ceil(q * static_cast<double>(samples))));
  std::uint64_t seen = 0;
  for (unsigned b = 0; b < kBuckets; ++b) {
    seen += counts[b];
    if (seen >= rank) {
      const double mid = static_cast<double>(lower(b)) + static_cast<double>(width(b) - 1) / 2;
      return std::min(mid, static_cast<double>(max));
    }
  }
  return static_cast<double>(max);
}

namespace {

TickClock calibrate() {
  TickClock c;
#if defined(__x86_64__)
  c.source = "rdtsc";
  // Spin rather than sleep: both clocks are read back to back at each end.
  const std::uint64_t t0 = tick_begin();
  const std::int64_t n0 = monotonic_ns();
  while (monotonic_ns() - n0 < 50'000'000) {
  }
  const std::uint64_t t1 = tick_end();
  const std::int64_t n1 = monotonic_ns();
  c.ticks_per_ns = static_cast<double>(t1 - t0) / static_cast<double>(n1 - n0);
#endif
  std::vector<std::uint64_t> empty(1001);
  for (std::uint64_t& e : empty) {
    const std::uint64_t t = tick_begin();
    e = tick_end() - t;
  }
  std::nth_element(empty.begin(), empty.begin() + 500, empty.end());
  c.floor_ns = static_cast<double>(empty[500]) / c.ticks_per_ns;
  return c;
}

}  // namespace

const TickClock& tick_clock() {
  static const TickClock c = calibrate();
  return c;
}

LatencySummary summarize(const LatencyHistogram& h) {
  const double k = 1 / tick_clock().ticks_per_ns;
  LatencySummary s;
  s.samples = h.samples;
  s.p50_ns = h.quantile(0.50) * k;
  s.p90_ns = h.quantile(0.90) * k;
  s.p99_ns = h.quantile(0.99) * k;
  s.p999_ns = h.quantile(0.999) * k;
  s.max_ns = static_cast<double>(h.max) * k;
  return s;
}

std::string format_ns(double ns) {
  char buf[32];
  if (ns <= 0) return "-";
  if (ns < 1e3) {
    std::snprintf(buf, sizeof buf, "%.0fns", ns);
  } else if (ns < 1e6) {
    std::snprintf(buf, sizeof buf, "%.3gus", ns / 1e3);
  } else if (ns < 1e9) {
    std::snprintf(buf, sizeof buf, "%.3gms", ns / 1e6);
  } else {
    std::snprintf(buf, sizeof buf, "%.3gs", ns / 1e9);
  }
  return buf;
}

}  // namespace shmap::bench
