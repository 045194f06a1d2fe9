// The key hash: 64 bits, seeded per segment (so a hostile key set chosen for one
// segment does not collide in another). Multiply-fold mixing over 8-byte words;
// the index takes its slot from the low bits and the slot-word fingerprint from
// the high 8 bits.
#pragma once

#include <cstdint>
#include <cstring>
#include <string_view>

namespace shmap::detail {

[[gnu::always_inline]] inline std::uint64_t fold_mul(std::uint64_t a, std::uint64_t b) noexcept {
  const unsigned __int128 r = static_cast<unsigned __int128>(a) * b;
  return static_cast<std::uint64_t>(r) ^ static_cast<std::uint64_t>(r >> 64);
}

inline std::uint64_t load_le64(const char* p) noexcept {
  std::uint64_t w;
  std::memcpy(&w, p, 8);
  return w;
}

// Reads n (< 8) bytes into the low bytes of a zero-padded word.
inline std::uint64_t load_tail(const char* p, std::size_t n) noexcept {
  std::uint64_t w = 0;
  std::memcpy(&w, p, n);
  return w;
}

[[gnu::always_inline]] inline std::uint64_t hash_bytes(std::string_view key, std::uint64_t seed) noexcept {
  constexpr std::uint64_t k0 = 0x9e3779b97f4a7c15ull;
  constexpr std::uint64_t k1 = 0xd6e8feb86659fd93ull;
  constexpr std::uint64_t k2 = 0xa0761d6478bd642full;
  const char* p = key.data();
  std::size_t n = key.size();
  std::uint64_t h = seed ^ (n * k0);
  while (n >= 16) {
    h = fold_mul(load_le64(p) ^ h ^ k1, load_le64(p + 8) ^ k2);
    p += 16;
    n -= 16;
  }
  if (n >= 8) {
    h = fold_mul(load_le64(p) ^ h ^ k1, k2);
    p += 8;
    n -= 8;
  }
  if (n > 0) h = fold_mul(load_tail(p, n) ^ h ^ k2, k1);
  return fold_mul(h ^ k0, k1 ^ seed);
}

}  // namespace shmap::detail
