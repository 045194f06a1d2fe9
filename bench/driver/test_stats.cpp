// The driver's statistics: the latency histogram's bucket arithmetic and
// quantiles, the zipfian generator against its target distribution, the
// permutation that scatters hot keys, and the workloads that use them.
#include <algorithm>
#include <catch2/catch.hpp>
#include <cmath>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "latency.hpp"
#include "workload.hpp"

using namespace shmap::bench;

TEST_CASE("Histogram buckets are exact below 128 and at most 1/64 of their values wide above", "[stats]") {
  using H = LatencyHistogram;
  for (std::uint64_t v = 0; v < 128; ++v) {
    CHECK(H::bucket(v) == v);
    CHECK(H::width(H::bucket(v)) == 1);
  }
  for (unsigned b = 0; b + 1 < H::kBuckets; ++b) {
    INFO("bucket " << b);
    REQUIRE(H::lower(b + 1) == H::lower(b) + H::width(b));  // contiguous, no gaps
    REQUIRE(H::bucket(H::lower(b)) == b);
    REQUIRE(H::bucket(H::lower(b) + H::width(b) - 1) == b);
    if (b >= 128) REQUIRE(H::width(b) * 64 <= H::lower(b));
  }
  CHECK(H::bucket(std::uint64_t{1} << 48) == H::kBuckets - 1);
  CHECK(H::bucket(~std::uint64_t{0}) == H::kBuckets - 1);
}

TEST_CASE("Histogram quantiles are within 1% of the exact order statistic", "[stats]") {
  auto h = std::make_unique<LatencyHistogram>();
  CHECK(h->quantile(0.5) == 0);
  for (std::uint64_t v = 1; v <= 100000; ++v) h->record(v);
  CHECK(h->samples == 100000);
  CHECK(h->max == 100000);
  CHECK(h->quantile(0.5) == Approx(50000).epsilon(0.01));
  CHECK(h->quantile(0.99) == Approx(99000).epsilon(0.01));
  CHECK(h->quantile(0.999) == Approx(99900).epsilon(0.01));
  CHECK(h->quantile(1.0) <= 100000);
  CHECK(h->quantile(0.00001) == 1);
}

TEST_CASE("Merging histograms adds their counts", "[stats]") {
  auto a = std::make_unique<LatencyHistogram>();
  auto b = std::make_unique<LatencyHistogram>();
  for (int i = 0; i < 90; ++i) a->record(100);
  for (int i = 0; i < 10; ++i) b->record(5000);
  a->merge(*b);
  CHECK(a->samples == 100);
  CHECK(a->max == 5000);
  CHECK(a->quantile(0.5) == 100);
  CHECK(a->quantile(0.95) == Approx(5000).epsilon(0.01));
}

TEST_CASE("format_ns picks a unit", "[stats]") {
  CHECK(format_ns(0) == "-");
  CHECK(format_ns(85.4) == "85ns");
  CHECK(format_ns(1240) == "1.24us");
  CHECK(format_ns(3.1e6) == "3.1ms");
}

TEST_CASE("zeta sums the inverse powers", "[stats]") {
  CHECK(zeta(1, 0.99) == 1.0);
  CHECK(zeta(2, 0.0) == 2.0);
  CHECK(zeta(3, 0.5) == Approx(1 + 1 / std::sqrt(2.0) + 1 / std::sqrt(3.0)));
}

TEST_CASE("Zipf draws ranks with the target frequencies", "[stats]") {
  const std::uint64_t n = 1000;
  const Zipf z(n, 0.99);
  SplitMix64 rng{42};
  const int draws = 2'000'000;
  std::vector<std::uint64_t> freq(n);
  for (int i = 0; i < draws; ++i) {
    const std::uint64_t r = z(unit_interval(rng.next()));
    REQUIRE(r < n);
    ++freq[r];
  }
  // Ranks 0 and 1 are exact in Gray et al.'s method; the rest approximate the tail.
  CHECK(static_cast<double>(freq[0]) / draws == Approx(z.probability(0)).epsilon(0.02));
  CHECK(static_cast<double>(freq[1]) / draws == Approx(z.probability(1)).epsilon(0.03));
  double top10 = 0, top100 = 0;
  std::uint64_t got10 = 0, got100 = 0;
  for (std::uint64_t r = 0; r < 100; ++r) {
    if (r < 10) {
      top10 += z.probability(r);
      got10 += freq[r];
    }
    top100 += z.probability(r);
    got100 += freq[r];
  }
  CHECK(static_cast<double>(got10) / draws == Approx(top10).epsilon(0.05));
  CHECK(static_cast<double>(got100) / draws == Approx(top100).epsilon(0.05));
  CHECK(freq[0] > freq[1]);
  CHECK(freq[1] > freq[10]);
  CHECK(freq[10] > freq[500]);
}

TEST_CASE("Zipf with theta 0 is uniform", "[stats]") {
  const Zipf z(100, 0.0);
  SplitMix64 rng{7};
  std::vector<int> decile(10);
  for (int i = 0; i < 1'000'000; ++i) ++decile[z(unit_interval(rng.next())) / 10];
  for (const int d : decile) CHECK(d == Approx(100000).epsilon(0.03));
}

TEST_CASE("Zipf over one or two keys stays in range", "[stats]") {
  SplitMix64 rng{3};
  const Zipf one(1, 0.99), two(2, 0.99);
  for (int i = 0; i < 1000; ++i) {
    const double u = unit_interval(rng.next());
    CHECK(one(u) == 0);
    CHECK(two(u) < 2);
  }
  CHECK_THROWS(Zipf(0, 0.5));
  CHECK_THROWS(Zipf(10, 1.0));
}

TEST_CASE("The affine permutation is a bijection and scatters consecutive ranks", "[stats]") {
  for (const std::uint64_t n : {1ull, 2ull, 7ull, 1000ull, 1024ull, 65536ull, 99991ull}) {
    INFO("n = " << n);
    const AffinePermutation p(n, 5);
    std::vector<bool> seen(n);
    for (std::uint64_t i = 0; i < n; ++i) {
      const std::uint64_t j = p(i);
      REQUIRE(j < n);
      REQUIRE_FALSE(seen[j]);
      seen[j] = true;
    }
  }
  const AffinePermutation p(1000000, 1);
  const auto gap = static_cast<std::int64_t>(p(1)) - static_cast<std::int64_t>(p(0));
  CHECK(std::abs(gap) > 100000);
}

TEST_CASE("Workload names parse to their kind and key distribution", "[stats]") {
  const auto z = parse_workload("zipf", 0.9, 8);
  REQUIRE(z);
  CHECK(z->kind == WorkloadKind::get);
  CHECK(z->dist == KeyDist::zipf);
  CHECK(z->theta == 0.9);
  const auto zm = parse_workload("zipf-90/10");
  REQUIRE(zm);
  CHECK(zm->kind == WorkloadKind::mixed);
  CHECK(zm->get_percent == 90);
  CHECK(zm->dist == KeyDist::zipf);
  const auto c = parse_workload("counter", 0.99, 4);
  REQUIRE(c);
  CHECK(c->kind == WorkloadKind::counter);
  CHECK(c->counter_keys == 4);
  CHECK(c->writes());
  CHECK_FALSE(c->reads());
  CHECK(c->counter_key(3));
  CHECK_FALSE(c->counter_key(4));
  CHECK_FALSE(parse_workload("90/10")->counter_key(0));
  for (const char* bad : {"zipf-", "zipf-get-miss", "zipf-insert", "zipf-counter", "zipfy", "90/20", "count"}) {
    CHECK_FALSE(parse_workload(bad));
  }
}

TEST_CASE("A counter stream only touches the counter keys", "[stats]") {
  const KeySpace ks(1000, 8, 8, 1);
  const auto wl = parse_workload("counter", 0.99, 5);
  const OpStream s = make_stream(ks, *wl, 2, 1, 9);
  std::set<std::string> counters;
  for (std::uint64_t i = 0; i < 5; ++i) counters.insert(ks.key(i));
  std::set<std::string> used;
  for (std::size_t i = 0; i < s.count; ++i) {
    REQUIRE(counters.count(std::string(s.key(i))) == 1);
    used.insert(std::string(s.key(i)));
  }
  CHECK(used.size() == 5);
}

TEST_CASE("A zipf stream draws preloaded keys, the hottest at its probability", "[stats]") {
  const KeySpace ks(1000, 8, 8, 1);
  const auto wl = parse_workload("zipf");
  std::map<std::string, std::uint64_t> present;
  for (std::uint64_t i = 0; i < 1000; ++i) present[ks.key(i)] = 0;
  std::uint64_t total = 0;
  for (unsigned w = 0; w < 4; ++w) {
    // Every worker of one measurement shares the seed, so the hot keys are the same.
    const OpStream s = make_stream(ks, *wl, 4, w, 77);
    for (std::size_t i = 0; i < s.count; ++i) {
      const auto it = present.find(std::string(s.key(i)));
      REQUIRE(it != present.end());
      ++it->second;
      ++total;
    }
  }
  std::uint64_t hottest = 0;
  for (const auto& [k, c] : present) hottest = std::max(hottest, c);
  CHECK(static_cast<double>(hottest) / static_cast<double>(total) == Approx(1 / zeta(1000, 0.99)).epsilon(0.03));
}

TEST_CASE("The migration workloads give worker 0 the writer's stream and the others gets", "[stats]") {
  const KeySpace ks(1000, 8, 8, 1);
  const auto mig = parse_workload("get-migrating");
  REQUIRE(mig);
  CHECK(mig->one_writer());
  CHECK(mig->fresh_keys());
  CHECK(mig->window_for(1000, 2) == 1000);  // the default window: 1000 whatever --keys
  const OpStream writer = make_stream(ks, *mig, 2, 0, 5);
  CHECK(writer.loop == WorkloadKind::churn);
  REQUIRE(writer.fresh);
  CHECK(writer.count % 512 == 0);  // even and block-aligned: the loop stops between an insert and the next
  CHECK(make_stream(ks, *mig, 2, 1, 5).loop == WorkloadKind::get);
  const auto base = parse_workload("get-with-writer");
  REQUIRE(base);
  CHECK_FALSE(base->fresh_keys());
  const OpStream assigner = make_stream(ks, *base, 3, 0, 5);
  CHECK(assigner.loop == WorkloadKind::mixed);
  CHECK(std::all_of(assigner.is_write.begin(), assigner.is_write.end(), [](std::uint8_t w) { return w == 1; }));
  CHECK(make_stream(ks, *base, 3, 2, 5).loop == WorkloadKind::get);
  for (const char* bad : {"zipf-churn", "zipf-get-migrating", "churn/10"}) CHECK_FALSE(parse_workload(bad));
}

TEST_CASE("Churn keys are new for the whole run, disjoint between workers and outside the key space", "[stats]") {
  const KeySpace ks(1000, 8, 8, 1);
  const auto wl = parse_workload("churn");
  REQUIRE(wl);
  CHECK(wl->window_for(1000, 4) == 250);  // derived: the live set is --keys
  std::set<std::string> seen;
  for (std::uint64_t i = 0; i < 2 * ks.keys(); ++i) seen.insert(ks.key(i));
  for (unsigned w = 0; w < 4; ++w) {
    const OpStream s = make_stream(ks, *wl, 4, w, 5);
    REQUIRE(s.fresh);
    CHECK(s.fresh->window == 250);
    // Far more keys than one pass of the loop: a cycled key would re-find its old slot.
    for (std::uint64_t n = 0; n < 3 * s.count; n += 97) REQUIRE(seen.insert(ks.key(s.fresh->index(n))).second);
  }
}
