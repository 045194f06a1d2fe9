// Randomized model test: a long seeded sequence of mixed operations, each
// checked against std::unordered_map as it happens, then the whole contents.
// Set SHMAP_TEST_SEED to replay a run; the seed is printed on failure.
#include <cstdint>
#include <cstdlib>
#include <random>
#include <sstream>
#include <string>
#include <unordered_map>
#include <vector>

#include "support.hpp"

using shmap::Map;
using shmap::Status;
using namespace shmap_test;

namespace {

std::uint64_t test_seed() {
  if (const char* s = std::getenv("SHMAP_TEST_SEED")) return std::strtoull(s, nullptr, 0);
  std::random_device rd;
  return (std::uint64_t(rd()) << 32) ^ rd();
}

std::string printable(std::string_view s) {
  std::ostringstream o;
  o << '"';
  for (unsigned char c : s.substr(0, 64)) {
    if (c >= 0x20 && c < 0x7f && c != '\\' && c != '"') {
      o << c;
    } else {
      static const char* hex = "0123456789abcdef";
      o << "\\x" << hex[c >> 4] << hex[c & 15];
    }
  }
  if (s.size() > 64) o << "...(" << s.size() << " bytes)";
  o << '"';
  return o.str();
}

std::string random_bytes(std::mt19937_64& rng, std::size_t len) {
  std::string s(len, '\0');
  for (std::size_t i = 0; i < len; i += 8) {
    const std::uint64_t w = rng();
    std::memcpy(s.data() + i, &w, std::min<std::size_t>(8, len - i));
  }
  return s;
}

// Mostly small values, 8-byte ones often (so fetch_add and get_as find them),
// and a tail of large ones so updates move records between size classes.
std::string random_value(std::mt19937_64& rng) {
  const unsigned c = rng() % 100;
  std::size_t len;
  if (c < 15)
    len = 8;
  else if (c < 55)
    len = rng() % 17;
  else if (c < 85)
    len = 17 + rng() % 184;
  else if (c < 98)
    len = 201 + rng() % 2800;
  else
    len = 3000 + rng() % 20000;
  return random_bytes(rng, len);
}

std::vector<std::string> make_keys(std::mt19937_64& rng, std::size_t n) {
  std::vector<std::string> keys;
  keys.reserve(n);
  keys.emplace_back();  // the empty key
  for (std::size_t i = 1; i < n; ++i) {
    if (i % 10 == 0)
      keys.push_back(random_bytes(rng, 1 + rng() % 40) + std::to_string(i));  // binary, NULs likely
    else if (i % 97 == 0)
      keys.push_back(std::string(200 + i % 300, 'L') + std::to_string(i));  // long keys
    else
      keys.push_back("key-" + std::to_string(i));
  }
  return keys;
}

void run_model(std::uint64_t seed, std::size_t n_keys, int n_ops, std::uint64_t capacity) {
  SegmentGuard g;
  Map m = Map::create(g.name(), small_options(capacity));
  std::mt19937_64 rng(seed);
  const std::vector<std::string> keys = make_keys(rng, n_keys);
  std::unordered_map<std::string, std::string> model;
  std::string out = "initial";

  for (int i = 0; i < n_ops; ++i) {
    const std::string& key = keys[rng() % keys.size()];
    const auto found = model.find(key);
    const bool present = found != model.end();
    const unsigned dice = rng() % 100;
    std::ostringstream fail;

    if (dice < 20) {
      const std::string v = random_value(rng);
      const Status s = m.insert(key, v);
      const Status want = present ? Status::exists : Status::ok;
      if (s != want) fail << "insert returned " << shmap::to_string(s) << ", expected " << shmap::to_string(want);
      if (!present) model.emplace(key, v);
    } else if (dice < 40) {
      const std::string v = random_value(rng);
      const Status s = m.insert_or_assign(key, v);
      const Status want = present ? Status::assigned : Status::inserted;
      if (s != want) fail << "insert_or_assign returned " << shmap::to_string(s) << ", expected " << shmap::to_string(want);
      model[key] = v;
    } else if (dice < 52) {
      const bool erased = m.erase(key);
      if (erased != present) fail << "erase returned " << erased << ", expected " << present;
      model.erase(key);
    } else if (dice < 64) {
      const auto v = m.get(key);
      if (v.has_value() != present || (present && *v != found->second))
        fail << "get returned " << (v ? printable(*v) : "<absent>") << ", expected "
             << (present ? printable(found->second) : "<absent>");
    } else if (dice < 72) {
      const std::string before = out;
      const bool got = m.get(key, out);
      if (got != present) fail << "get(buffer) returned " << got << ", expected " << present;
      else if (present && out != found->second) fail << "get(buffer) read " << printable(out) << ", expected " << printable(found->second);
      else if (!present && out != before) fail << "get(buffer) changed the buffer of an absent key";
    } else if (dice < 76) {
      if (m.contains(key) != present) fail << "contains returned " << !present;
    } else if (dice < 86) {
      const std::string expected = (present && rng() % 10 < 7) ? found->second : random_value(rng);
      const std::string desired = random_value(rng);
      const Status s = m.compare_exchange(key, expected, desired);
      const Status want = !present ? Status::absent : found->second == expected ? Status::ok : Status::mismatch;
      if (s != want) fail << "compare_exchange returned " << shmap::to_string(s) << ", expected " << shmap::to_string(want);
      if (want == Status::ok) found->second = desired;
    } else if (dice < 95) {
      const std::int64_t delta = (rng() % 8 == 0) ? std::int64_t(rng()) : std::int64_t(rng() % 2001) - 1000;
      const auto r = m.fetch_add(key, delta);
      if (!present) {
        if (r.status != Status::inserted || r.previous != 0)
          fail << "fetch_add returned {" << shmap::to_string(r.status) << ", " << r.previous << "}, expected {inserted, 0}";
        model.emplace(key, i64_bytes(delta));
      } else if (found->second.size() == 8) {
        const std::int64_t prev = i64_of(found->second);
        if (r.status != Status::ok || r.previous != prev)
          fail << "fetch_add returned {" << shmap::to_string(r.status) << ", " << r.previous << "}, expected {ok, " << prev << "}";
        found->second = i64_bytes(std::int64_t(std::uint64_t(prev) + std::uint64_t(delta)));
      } else if (r.status != Status::wrong_size) {
        fail << "fetch_add on a " << found->second.size() << "-byte value returned " << shmap::to_string(r.status);
      }
    } else {
      std::int64_t v = 0;
      const Status s = m.get_as(key, v);
      const Status want = !present ? Status::absent : found->second.size() == 8 ? Status::ok : Status::wrong_size;
      if (s != want) fail << "get_as returned " << shmap::to_string(s) << ", expected " << shmap::to_string(want);
      else if (s == Status::ok && v != i64_of(found->second)) fail << "get_as read " << v;
    }

    if (i % 10000 == 0 && m.size() != model.size())
      fail << "size() is " << m.size() << ", the model holds " << model.size();
    if (!fail.str().empty()) FAIL("seed " << seed << ", op " << i << ", key " << printable(key) << ": " << fail.str());
  }

  CHECK(m.size() == model.size());
  std::unordered_map<std::string, std::string> walked;
  std::size_t duplicates = 0;
  m.for_each([&](std::string_view k, std::string_view v) {
    if (!walked.emplace(std::string(k), std::string(v)).second) ++duplicates;
  });
  CHECK(duplicates == 0);
  CHECK(walked.size() == model.size());
  CHECK(walked == model);
  for (const auto& [k, v] : model) {
    if (m.get(k) != v) FAIL("seed " << seed << ": final get of " << printable(k) << " differs from the model");
  }
  check_quiescent(m);
}

}  // namespace

TEST_CASE("a random sequence of 200k operations matches std::unordered_map op by op") {
  const std::uint64_t seed = test_seed();
  CAPTURE(seed);
  run_model(seed, 2500, 200000, std::uint64_t{1} << 17);
}

TEST_CASE("a random sequence on eight hot keys matches std::unordered_map op by op") {
  const std::uint64_t seed = test_seed();
  CAPTURE(seed);
  run_model(seed, 8, 20000, std::uint64_t{1} << 16);
}
