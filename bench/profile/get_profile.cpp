// shmap-get-profile: the get path of shmap next to the ideal tables, one
// implementation per run, in a loop that a profiler can isolate:
//   valgrind --tool=callgrind --cache-sim=yes --toggle-collect='*timed_gets*'
//            shmap-get-profile shmap 1000000 200000
// It prints its own Mops/s; callgrind gives instructions, data reads and
// writes, and D1/LL misses of the loop (divide by the get count).
// Implementations: shmap (get_bytes into a buffer), ideal-inline (16-byte
// inline slots), ideal-indirect (8-byte slot -> 24-byte record). 8-byte keys
// and values, uniform random keys of the preloaded set.
#include <sys/mman.h>
#include <unistd.h>

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <string_view>
#include <vector>

#include "shmap/shmap.hpp"

namespace {

std::uint64_t mix(std::uint64_t x) {
  x ^= x >> 33;
  x *= 0xff51afd7ed558ccdull;
  x ^= x >> 33;
  x *= 0xc4ceb9fe1a85ec53ull;
  return x ^ (x >> 33);
}

void* shared(std::size_t bytes) {
  void* p = ::mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
  if (p == MAP_FAILED) std::abort();
  return p;
}

struct IdealInline {  // key 0 = empty
  std::uint64_t* slots;
  std::uint64_t mask;
  explicit IdealInline(std::uint64_t n) {
    std::uint64_t s = 16;
    while (s < n * 4 / 3) s <<= 1;
    mask = s - 1;
    slots = static_cast<std::uint64_t*>(shared(s * 16));
  }
  void put(std::uint64_t k, std::uint64_t v) {
    for (std::uint64_t i = mix(k) & mask;; i = (i + 1) & mask)
      if (slots[2 * i] == 0 || slots[2 * i] == k) {
        slots[2 * i] = k;
        slots[2 * i + 1] = v;
        return;
      }
  }
  bool get(std::uint64_t k, std::uint64_t& v) const {
    for (std::uint64_t i = mix(k) & mask;; i = (i + 1) & mask) {
      if (slots[2 * i] == k) {
        v = slots[2 * i + 1];
        return true;
      }
      if (slots[2 * i] == 0) return false;
    }
  }
};

struct IdealIndirect {  // slot = record offset / 8 (0 empty); record = {header, key, value}
  std::uint64_t* slots;
  std::uint64_t* arena;
  std::uint64_t mask, top = 1;
  explicit IdealIndirect(std::uint64_t n) {
    std::uint64_t s = 16;
    while (s < n * 4 / 3) s <<= 1;
    mask = s - 1;
    slots = static_cast<std::uint64_t*>(shared(s * 8));
    arena = static_cast<std::uint64_t*>(shared((n + 2) * 24));
  }
  void put(std::uint64_t k, std::uint64_t v) {
    for (std::uint64_t i = mix(k) & mask;; i = (i + 1) & mask)
      if (slots[i] == 0) {
        arena[top] = 2;
        arena[top + 1] = k;
        arena[top + 2] = v;
        slots[i] = top;
        top += 3;
        return;
      }
  }
  bool get(std::uint64_t k, std::uint64_t& v) const {
    for (std::uint64_t i = mix(k) & mask;; i = (i + 1) & mask) {
      const std::uint64_t r = slots[i];
      if (r == 0) return false;
      if (arena[r + 1] == k) {
        v = arena[r + 2];
        return true;
      }
    }
  }
};

template <class Get>
__attribute__((noinline)) std::uint64_t timed_gets(const std::vector<std::uint64_t>& stream, Get&& get) {
  std::uint64_t sum = 0;
  for (std::uint64_t k : stream) sum += get(k);
  return sum;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) {
    std::fprintf(stderr, "usage: %s shmap|ideal-inline|ideal-indirect [keys] [gets]\n", argv[0]);
    return 2;
  }
  const std::string impl = argv[1];
  const std::uint64_t n = argc > 2 ? std::strtoull(argv[2], nullptr, 10) : 1000000;
  const std::uint64_t gets = argc > 3 ? std::strtoull(argv[3], nullptr, 10) : 2000000;
  std::vector<std::uint64_t> keys(n), stream(gets);
  for (std::uint64_t i = 0; i < n; ++i) keys[i] = mix(i + 1) | 1;
  for (std::uint64_t i = 0; i < gets; ++i) stream[i] = keys[mix(i ^ 0x5eed) % n];
  std::uint64_t sum = 0;
  if (impl == "shmap") {
    shmap::Options o;
    o.capacity = n;
    o.arena_bytes = n * 32 + (1 << 20);
    const std::string name = "/shmap-get-profile." + std::to_string(::getpid());
    shmap::Map m = shmap::Map::create(name, o);
    shmap::Map::remove(name);
    for (std::uint64_t k : keys)
      if (m.insert(std::string_view(reinterpret_cast<const char*>(&k), 8),
                   std::string_view(reinterpret_cast<const char*>(&k), 8)) != shmap::Status::ok)
        return 1;
    const auto t0 = std::chrono::steady_clock::now();
    sum = timed_gets(stream, [&](std::uint64_t k) {
      std::uint64_t v = 0;
      std::size_t len = 0;
      m.get_bytes(std::string_view(reinterpret_cast<const char*>(&k), 8), &v, 8, len);
      return v;
    });
    const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    std::printf("%s: %.2f Mops/s\n", impl.c_str(), double(gets) / s / 1e6);
  } else if (impl == "ideal-inline" || impl == "ideal-indirect") {
    auto run = [&](auto& t) {
      for (std::uint64_t k : keys) t.put(k, k);
      const auto t0 = std::chrono::steady_clock::now();
      sum = timed_gets(stream, [&](std::uint64_t k) {
        std::uint64_t v = 0;
        t.get(k, v);
        return v;
      });
      const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      std::printf("%s: %.2f Mops/s\n", impl.c_str(), double(gets) / s / 1e6);
    };
    if (impl == "ideal-inline") {
      IdealInline t(n);
      run(t);
    } else {
      IdealIndirect t(n);
      run(t);
    }
  } else {
    std::fprintf(stderr, "unknown implementation %s\n", impl.c_str());
    return 2;
  }
  std::uint64_t expect = 0;
  for (std::uint64_t k : stream) expect += k;
  if (sum != expect) {
    std::fprintf(stderr, "wrong results\n");
    return 1;
  }
  return 0;
}
