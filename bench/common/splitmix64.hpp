// SplitMix64, shared by the benchmark tools (bench/driver, bench/micro): the
// seed expander and per-worker stream generator (fast, 64-bit state, passes
// BigCrush).
#pragma once

#include <cstdint>

namespace shmap::benchutil {

struct SplitMix64 {
  std::uint64_t state;
  std::uint64_t next() {
    std::uint64_t z = (state += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
  }
  // Uniform in [0, n) (Lemire's multiply-shift; the bias is below 2^-40 for n < 2^24).
  std::uint64_t below(std::uint64_t n) {
    return static_cast<std::uint64_t>((static_cast<unsigned __int128>(next()) * n) >> 64);
  }
};

}  // namespace shmap::benchutil
