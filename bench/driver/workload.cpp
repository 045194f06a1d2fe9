#include "workload.hpp"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <map>
#include <mutex>
#include <numeric>
#include <stdexcept>

namespace shmap::bench {

namespace {

// Fills n bytes with the repeated little-endian bytes of a word stream seeded by w.
void fill(char* dst, std::size_t n, std::uint64_t w) {
  for (std::size_t o = 0; o < n; o += 8) {
    std::memcpy(dst + o, &w, std::min<std::size_t>(8, n - o));
    w = fmix64(w + 0x9e3779b97f4a7c15ull);
  }
}

bool parse_percent(std::string_view s, unsigned& out) {
  const auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), out);
  return ec == std::errc() && p == s.data() + s.size() && out <= 100;
}

}  // namespace

std::optional<Workload> parse_workload(std::string_view s, double theta, unsigned counter_keys) {
  Workload w;
  w.name = std::string(s);
  w.theta = theta;
  w.counter_keys = counter_keys;
  std::string_view mix = s;
  if (s.starts_with("zipf")) {
    w.dist = KeyDist::zipf;
    if (s == "zipf") return w;
    if (!s.starts_with("zipf-")) return std::nullopt;
    mix = s.substr(5);
  }
  if (mix == "get") {
    w.kind = WorkloadKind::get;
  } else if (w.dist == KeyDist::uniform && mix == "get-miss") {
    w.kind = WorkloadKind::get_miss;
  } else if (w.dist == KeyDist::uniform && mix == "insert") {
    w.kind = WorkloadKind::insert;
    w.get_percent = 0;
  } else if (w.dist == KeyDist::uniform && mix == "counter") {
    w.kind = WorkloadKind::counter;
    w.get_percent = 0;
  } else if (w.dist == KeyDist::uniform && mix == "get-migrating") {
    w.kind = WorkloadKind::get_migrating;
  } else if (w.dist == KeyDist::uniform && mix == "get-with-writer") {
    w.kind = WorkloadKind::get_with_writer;
  } else if (w.dist == KeyDist::uniform && mix == "churn") {
    w.kind = WorkloadKind::churn;
    w.get_percent = 0;
  } else if (const auto slash = mix.find('/'); slash != std::string_view::npos) {
    unsigned r = 0, wr = 0;
    if (!parse_percent(mix.substr(0, slash), r) || !parse_percent(mix.substr(slash + 1), wr) || r + wr != 100) {
      return std::nullopt;
    }
    w.kind = WorkloadKind::mixed;
    w.get_percent = r;
  } else {
    return std::nullopt;
  }
  return w;
}

const char* workload_syntax() {
  return "get | get-miss | insert | R/W (R% get, W% insert_or_assign, R+W=100, e.g. 90/10) | zipf | "
         "zipf-R/W (e.g. zipf-90/10) | counter | get-migrating | get-with-writer | churn";
}

std::string Workload::description(std::uint64_t keys) const {
  const std::string n = std::to_string(keys);
  std::string dist = "uniform random";
  if (this->dist == KeyDist::zipf) {
    char buf[96];
    std::snprintf(buf, sizeof buf, "zipfian (theta %.2f, hottest key %.1f%% of picks)", theta,
                  100 / zeta(keys, theta));
    dist = buf;
  }
  switch (kind) {
    case WorkloadKind::get: return dist + " gets of " + n + " preloaded keys (all hits)";
    case WorkloadKind::get_miss: return "uniform random gets of absent keys, " + n + " keys preloaded (all misses)";
    case WorkloadKind::insert:
      return "each worker inserts its own slice of " + n + " fresh keys into an empty map sized for them";
    case WorkloadKind::mixed:
      return std::to_string(get_percent) + "% get, " + std::to_string(100 - get_percent) + "% insert_or_assign of " +
             dist + " keys among " + n + " preloaded";
    case WorkloadKind::counter:
      return "fetch_add(1) on " + std::to_string(counter_keys) + " hot counter keys (uniform among them), " + n +
             " keys preloaded";
    case WorkloadKind::get_migrating:
      return "worker 0 inserts fresh keys and erases each " + std::to_string(window_for(keys, 2)) +
             " inserts later (the index keeps migrating: a grow to the live keys' size, then same-size rebuilds; "
             "help_slots 16) while the others get uniform random keys of " +
             n + " preloaded (all hits)";
    case WorkloadKind::get_with_writer:
      return "worker 0 does insert_or_assign of uniform random preloaded keys (no migration, help_slots 16) while "
             "the others get uniform random keys of " +
             n + " preloaded (all hits)";
    case WorkloadKind::churn:
      return "each worker inserts fresh keys and erases each " + (window ? std::to_string(window) : n + "/workers") +
             " of its inserts later, into a map created for the live keys (an op is one insert or one erase)";
  }
  return name;
}

std::uint64_t Workload::window_for(std::uint64_t keys, unsigned workers) const {
  if (window > 0) return window;
  if (kind == WorkloadKind::churn) return std::max<std::uint64_t>(1, keys / std::max(workers, 1u));
  return 1000;
}

std::uint64_t Workload::live_fresh(std::uint64_t keys, unsigned workers) const {
  if (kind == WorkloadKind::churn) return window_for(keys, workers) * workers;
  if (kind == WorkloadKind::get_migrating) return window_for(keys, workers);
  return 0;
}

double zeta(std::uint64_t n, double theta) {
  static std::mutex mu;
  static std::map<std::pair<std::uint64_t, double>, double> memo;
  const std::lock_guard lock(mu);
  const auto [it, fresh] = memo.try_emplace({n, theta}, 0.0);
  if (fresh) {
    // Smallest terms first, for a sum accurate to the last bits.
    double sum = 0;
    for (std::uint64_t i = n; i >= 1; --i) sum += std::pow(static_cast<double>(i), -theta);
    it->second = sum;
  }
  return it->second;
}

Zipf::Zipf(std::uint64_t n, double theta) : n_(n), theta_(theta) {
  if (n == 0) throw std::invalid_argument("zipf: n must be at least 1");
  if (!(theta >= 0 && theta < 1)) throw std::invalid_argument("zipf: theta must be in [0, 1)");
  alpha_ = 1 / (1 - theta);
  zetan_ = zeta(n, theta);
  half_pow_theta_ = std::pow(0.5, theta);
  const double zeta2 = 1 + half_pow_theta_;
  eta_ = n < 3 ? 0 : (1 - std::pow(2.0 / static_cast<double>(n), 1 - theta)) / (1 - zeta2 / zetan_);
}

std::uint64_t Zipf::operator()(double u) const {
  const double uz = u * zetan_;
  if (uz < 1 || n_ == 1) return 0;
  if (uz < 1 + half_pow_theta_ || n_ == 2) return 1;
  const auto r = static_cast<std::uint64_t>(static_cast<double>(n_) * std::pow(eta_ * u - eta_ + 1, alpha_));
  return std::min(r, n_ - 1);
}

double Zipf::probability(std::uint64_t r) const { return std::pow(static_cast<double>(r + 1), -theta_) / zetan_; }

AffinePermutation::AffinePermutation(std::uint64_t n, std::uint64_t seed) : n_(std::max<std::uint64_t>(n, 1)) {
  a_ = std::max<std::uint64_t>(1, static_cast<std::uint64_t>(static_cast<double>(n_) * 0.6180339887498949));
  while (std::gcd(a_, n_) != 1) ++a_;  // terminates: a_ = n_ + 1 is coprime to n_
  b_ = fmix64(seed ^ 0x082efa98ec4e6c89ull) % n_;
}

KeySpace::KeySpace(std::uint64_t keys, std::size_t key_bytes, std::size_t value_bytes, std::uint64_t seed)
    : keys_(keys), key_bytes_(key_bytes), value_bytes_(value_bytes) {
  if (keys == 0) throw std::invalid_argument("--keys must be at least 1");
  if (keys > (std::uint64_t{1} << 40)) throw std::invalid_argument("--keys must be at most 2^40");
  if (key_bytes == 0) throw std::invalid_argument("--key-bytes must be at least 1");
  // Keys of fewer than 8 bytes must still give 2*keys distinct strings.
  if (key_bytes < 8 && 2 * keys > (std::uint64_t{1} << (8 * key_bytes))) {
    throw std::invalid_argument("--key-bytes " + std::to_string(key_bytes) + " cannot hold " +
                                std::to_string(2 * keys) + " distinct keys (present + absent)");
  }
  base_ = 1 + (fmix64(seed ^ 0x243f6a8885a308d3ull) >> 2);
}

void KeySpace::key(std::uint64_t i, char* dst) const {
  if (key_bytes_ >= 8) {
    const std::uint64_t w = key_word(i);
    std::memcpy(dst, &w, 8);
    fill(dst + 8, key_bytes_ - 8, w ^ 0x13198a2e03707344ull);
  } else {
    // Multiplying by an odd constant permutes the low 8*key_bytes bits, so the
    // first 2*keys indexes (< 2^(8*key_bytes)) stay distinct.
    const std::uint64_t w = (base_ + i) * 0x9e3779b97f4a7c15ull;
    std::memcpy(dst, &w, key_bytes_);
  }
}

void KeySpace::value(std::uint64_t i, char* dst) const { fill(dst, value_bytes_, fmix64(base_ + i) ^ 0xa4093822299f31d0ull); }

std::string KeySpace::key(std::uint64_t i) const {
  std::string s(key_bytes_, '\0');
  key(i, s.data());
  return s;
}

std::string KeySpace::value(std::uint64_t i) const {
  std::string s(value_bytes_, '\0');
  value(i, s.data());
  return s;
}

std::size_t stream_length(const KeySpace& ks) {
  const std::size_t per_op = ks.key_bytes() + ks.value_bytes() + 9;
  return std::clamp<std::size_t>((std::size_t{64} << 20) / per_op, 4096, std::size_t{1} << 20);
}

std::pair<std::uint64_t, std::uint64_t> insert_slice(std::uint64_t keys, unsigned workers, unsigned w) {
  return {keys * w / workers, keys * (w + 1) / workers};
}

OpStream make_stream(const KeySpace& ks, const Workload& wl, unsigned workers, unsigned w, std::uint64_t seed) {
  OpStream s;
  s.key_bytes = ks.key_bytes();
  s.value_bytes = ks.value_bytes();
  SplitMix64 rng{seed ^ fmix64(0x452821e638d01377ull + w)};

  auto reserve = [&](std::size_t n, bool values) {
    s.count = n;
    s.keys.resize(n * s.key_bytes);
    if (values) s.values.resize(n * s.value_bytes);
  };
  auto put_key = [&](std::size_t op, std::uint64_t i) {
    ks.key(i, s.keys.data() + op * s.key_bytes);
  };
  // The key index of the next get or mix operation. Zipfian ranks go through a
  // permutation seeded by `seed` alone, so every worker of a measurement shares
  // one popularity order.
  std::optional<Zipf> zipf;
  std::optional<AffinePermutation> scatter;
  if (wl.dist == KeyDist::zipf && (wl.kind == WorkloadKind::get || wl.kind == WorkloadKind::mixed)) {
    zipf.emplace(ks.keys(), wl.theta);
    scatter.emplace(ks.keys(), seed);
  }
  auto pick = [&]() -> std::uint64_t {
    if (zipf) return (*scatter)((*zipf)(unit_interval(rng.next())));
    return rng.below(ks.keys());
  };

  // get-migrating and get-with-writer: worker 0 is the writer, the others read.
  WorkloadKind kind = wl.kind;
  if (wl.one_writer()) {
    if (w > 0) {
      kind = WorkloadKind::get;
    } else if (wl.kind == WorkloadKind::get_with_writer) {
      kind = WorkloadKind::mixed;  // a mix with no gets: insert_or_assign of present keys
    } else {
      kind = WorkloadKind::churn;
    }
  }
  s.loop = kind == WorkloadKind::get_miss ? WorkloadKind::get : kind;

  switch (kind) {
    case WorkloadKind::get:
    case WorkloadKind::get_miss: {
      reserve(stream_length(ks), false);
      const std::uint64_t first = kind == WorkloadKind::get ? 0 : ks.keys();
      for (std::size_t op = 0; op < s.count; ++op) put_key(op, first + pick());
      break;
    }
    case WorkloadKind::counter: {
      reserve(stream_length(ks), false);
      for (std::size_t op = 0; op < s.count; ++op) put_key(op, rng.below(wl.counter_keys));
      break;
    }
    case WorkloadKind::mixed: {
      reserve(stream_length(ks), true);
      s.is_write.resize(s.count);
      for (std::size_t op = 0; op < s.count; ++op) {
        put_key(op, pick());
        s.is_write[op] = wl.kind == WorkloadKind::get_with_writer || rng.below(100) >= wl.get_percent ? 1 : 0;
        fill(s.values.data() + op * s.value_bytes, s.value_bytes, rng.next());
      }
      break;
    }
    case WorkloadKind::insert: {
      const auto [first, last] = insert_slice(ks.keys(), workers, w);
      reserve(static_cast<std::size_t>(last - first), true);
      s.cyclic = false;
      for (std::uint64_t i = first; i < last; ++i) {
        put_key(static_cast<std::size_t>(i - first), i);
        ks.value(i, s.values.data() + (i - first) * s.value_bytes);
      }
      break;
    }
    case WorkloadKind::churn: {
      // Every worker of churn churns; of get-migrating only worker 0.
      const bool all = wl.kind == WorkloadKind::churn;
      s.fresh = FreshKeys{ks, all ? workers : 1u, all ? w : 0u, wl.window_for(ks.keys(), workers)};
      s.count = std::size_t{1} << 20;  // even, and a multiple of every block: the loop stops between pairs
      break;
    }
    case WorkloadKind::get_migrating:
    case WorkloadKind::get_with_writer:
      break;  // mapped to the loops above
  }
  return s;
}

}  // namespace shmap::bench
