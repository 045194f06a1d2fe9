#include "workload.hpp"

#include <algorithm>
#include <charconv>
#include <cstring>
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

std::optional<Workload> parse_workload(std::string_view s) {
  Workload w;
  w.name = std::string(s);
  if (s == "get") {
    w.kind = WorkloadKind::get;
  } else if (s == "get-miss") {
    w.kind = WorkloadKind::get_miss;
  } else if (s == "insert") {
    w.kind = WorkloadKind::insert;
    w.get_percent = 0;
  } else if (const auto slash = s.find('/'); slash != std::string_view::npos) {
    unsigned r = 0, wr = 0;
    if (!parse_percent(s.substr(0, slash), r) || !parse_percent(s.substr(slash + 1), wr) || r + wr != 100) {
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
  return "get | get-miss | insert | R/W (R% get, W% insert_or_assign, R+W=100, e.g. 90/10)";
}

std::string Workload::description(std::uint64_t keys) const {
  const std::string n = std::to_string(keys);
  switch (kind) {
    case WorkloadKind::get: return "uniform random gets of " + n + " preloaded keys (all hits)";
    case WorkloadKind::get_miss: return "uniform random gets of absent keys, " + n + " keys preloaded (all misses)";
    case WorkloadKind::insert:
      return "each worker inserts its own slice of " + n + " fresh keys into an empty map sized for them";
    case WorkloadKind::mixed:
      return std::to_string(get_percent) + "% get, " + std::to_string(100 - get_percent) +
             "% insert_or_assign of uniform random keys among " + n + " preloaded";
  }
  return name;
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

  switch (wl.kind) {
    case WorkloadKind::get:
    case WorkloadKind::get_miss: {
      reserve(stream_length(ks), false);
      const std::uint64_t first = wl.kind == WorkloadKind::get ? 0 : ks.keys();
      for (std::size_t op = 0; op < s.count; ++op) put_key(op, first + rng.below(ks.keys()));
      break;
    }
    case WorkloadKind::mixed: {
      reserve(stream_length(ks), true);
      s.is_write.resize(s.count);
      for (std::size_t op = 0; op < s.count; ++op) {
        put_key(op, rng.below(ks.keys()));
        s.is_write[op] = rng.below(100) >= wl.get_percent ? 1 : 0;
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
  }
  return s;
}

}  // namespace shmap::bench
