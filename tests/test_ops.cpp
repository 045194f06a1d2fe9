// Single-threaded operations: every operation's results, binary safety, size
// limits, typed helpers, fetch_add, full index and full arena, size classes.
#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <limits>
#include <map>
#include <string>
#include <vector>

#include "hash.hpp"
#include "support.hpp"

using shmap::FetchResult;
using shmap::kMaxKeyBytes;
using shmap::kMaxValueBytes;
using shmap::Map;
using shmap::Status;
using namespace shmap_test;

namespace {

std::optional<std::string> some(std::string_view s) { return std::string(s); }

// Keys whose home slot in an index of `slots` slots is `home`, under the
// core's probe (home = the high bits of the hash, fingerprint = the low 8;
// core/index.hpp). Only used
// to pick keys: should the probe change, the tests stay valid, just less sharp.
std::vector<std::string> keys_with_home(std::uint64_t seed, std::uint64_t slots, std::uint64_t home, std::size_t n) {
  std::vector<std::string> keys;
  for (std::uint64_t i = 0; keys.size() < n; ++i) {
    std::string k = "wrap-" + std::to_string(i);
    if ((shmap::detail::hash_bytes(k, seed) >> (64 - __builtin_ctzll(slots))) == home) keys.push_back(std::move(k));
  }
  return keys;
}

std::map<std::string, std::string> snapshot(const Map& m) {
  std::map<std::string, std::string> out;
  m.for_each([&](std::string_view k, std::string_view v) {
    const bool fresh = out.emplace(std::string(k), std::string(v)).second;
    CHECK(fresh);
  });
  return out;
}

}  // namespace

TEST_CASE("insert adds an absent key and reports exists for a present one without changing it") {
  SegmentGuard g;
  Map m = Map::create(g.name(), small_options());
  CHECK(m.insert("key", "first") == Status::ok);
  CHECK(m.insert("key", "second") == Status::exists);
  CHECK(m.get("key") == some("first"));
  CHECK(m.size() == 1);
}

TEST_CASE("insert_or_assign reports inserted for a new key and assigned for an existing one") {
  SegmentGuard g;
  Map m = Map::create(g.name(), small_options());
  CHECK(m.insert_or_assign("key", "first") == Status::inserted);
  CHECK(m.get("key") == some("first"));
  CHECK(m.insert_or_assign("key", "second") == Status::assigned);
  CHECK(m.get("key") == some("second"));
  CHECK(m.insert_or_assign("key", "second") == Status::assigned);
  CHECK(m.size() == 1);
  check_quiescent(m);
}

TEST_CASE("get returns the value of a present key and nothing for an absent one") {
  SegmentGuard g;
  Map m = Map::create(g.name(), small_options());
  REQUIRE(m.insert("present", "value") == Status::ok);
  CHECK(m.get("present") == some("value"));
  CHECK(m.get("absent") == std::nullopt);
  CHECK(m.get("presen") == std::nullopt);
  CHECK(m.get("present!") == std::nullopt);
}

TEST_CASE("get into a buffer reuses its capacity and leaves it unchanged when the key is absent") {
  SegmentGuard g;
  Map m = Map::create(g.name(), small_options());
  REQUIRE(m.insert("short", "abc") == Status::ok);
  REQUIRE(m.insert("long", std::string(300, 'L')) == Status::ok);
  std::string out = "sentinel";
  out.reserve(1000);
  const char* const buffer = out.data();
  const std::size_t capacity = out.capacity();

  CHECK_FALSE(m.get("absent", out));
  CHECK(out == "sentinel");

  REQUIRE(m.get("long", out));
  CHECK(out == std::string(300, 'L'));
  CHECK(out.data() == buffer);
  CHECK(out.capacity() == capacity);

  REQUIRE(m.get("short", out));
  CHECK(out == "abc");
  CHECK(out.data() == buffer);

  CHECK_FALSE(m.get("absent", out));
  CHECK(out == "abc");
}

TEST_CASE("get into a buffer grows it when the value does not fit") {
  SegmentGuard g;
  Map m = Map::create(g.name(), small_options());
  const std::string big = pattern_value(1, 5000);
  REQUIRE(m.insert("big", big) == Status::ok);
  std::string out = "x";
  REQUIRE(m.get("big", out));
  CHECK(out == big);
}

TEST_CASE("get_bytes copies a value that fits and reports the full length of one that does not") {
  SegmentGuard g;
  Map m = Map::create(g.name(), small_options());
  REQUIRE(m.insert("k", "0123456789") == Status::ok);
  char buf[16] = {};
  std::size_t len = 0;
  REQUIRE(m.get_bytes("k", buf, sizeof buf, len));
  CHECK(len == 10);
  CHECK(std::string_view(buf, len) == "0123456789");
  len = 0;
  CHECK(m.get_bytes("k", buf, 4, len));
  CHECK(len == 10);
  len = 77;
  CHECK_FALSE(m.get_bytes("absent", buf, sizeof buf, len));
  CHECK(len == 77);
}

TEST_CASE("contains reports presence exactly") {
  SegmentGuard g;
  Map m = Map::create(g.name(), small_options());
  CHECK_FALSE(m.contains("k"));
  REQUIRE(m.insert("k", "") == Status::ok);
  CHECK(m.contains("k"));
  CHECK_FALSE(m.contains("K"));
  REQUIRE(m.erase("k"));
  CHECK_FALSE(m.contains("k"));
}

TEST_CASE("erase removes a present key once and then reports false") {
  SegmentGuard g;
  Map m = Map::create(g.name(), small_options());
  REQUIRE(m.insert("a", "1") == Status::ok);
  REQUIRE(m.insert("b", "2") == Status::ok);
  CHECK(m.erase("a"));
  CHECK_FALSE(m.erase("a"));
  CHECK_FALSE(m.erase("never"));
  CHECK(m.get("a") == std::nullopt);
  CHECK(m.get("b") == some("2"));
  CHECK(m.size() == 1);
  check_quiescent(m);
}

TEST_CASE("an erased key can be inserted again with a new value") {
  SegmentGuard g;
  Map m = Map::create(g.name(), small_options());
  REQUIRE(m.insert("k", "old") == Status::ok);
  REQUIRE(m.erase("k"));
  CHECK(m.insert("k", "new") == Status::ok);
  CHECK(m.get("k") == some("new"));
  REQUIRE(m.erase("k"));
  CHECK(m.insert_or_assign("k", "newer") == Status::inserted);
  CHECK(m.get("k") == some("newer"));
  CHECK(m.size() == 1);
  check_quiescent(m);
}

TEST_CASE("compare_exchange replaces the value when it equals expected") {
  SegmentGuard g;
  Map m = Map::create(g.name(), small_options());
  REQUIRE(m.insert("k", "v1") == Status::ok);
  CHECK(m.compare_exchange("k", "v1", "v2") == Status::ok);
  CHECK(m.get("k") == some("v2"));
  CHECK(m.compare_exchange("k", "v2", "v2") == Status::ok);
  CHECK(m.get("k") == some("v2"));
  CHECK(m.size() == 1);
  check_quiescent(m);
}

TEST_CASE("compare_exchange reports mismatch and keeps the value when it differs from expected") {
  SegmentGuard g;
  Map m = Map::create(g.name(), small_options());
  REQUIRE(m.insert("k", "v1") == Status::ok);
  CHECK(m.compare_exchange("k", "v", "x") == Status::mismatch);
  CHECK(m.compare_exchange("k", "v1 ", "x") == Status::mismatch);
  CHECK(m.compare_exchange("k", "", "x") == Status::mismatch);
  CHECK(m.get("k") == some("v1"));
  check_quiescent(m);
}

TEST_CASE("compare_exchange reports absent for a missing key and inserts nothing") {
  SegmentGuard g;
  Map m = Map::create(g.name(), small_options());
  CHECK(m.compare_exchange("k", "", "x") == Status::absent);
  CHECK_FALSE(m.contains("k"));
  REQUIRE(m.insert("k", "v") == Status::ok);
  REQUIRE(m.erase("k"));
  CHECK(m.compare_exchange("k", "v", "x") == Status::absent);
  CHECK_FALSE(m.contains("k"));
  CHECK(m.size() == 0);
  check_quiescent(m);
}

TEST_CASE("compare_exchange can change the value's length and size class") {
  SegmentGuard g;
  Map m = Map::create(g.name(), small_options());
  const std::string big = pattern_value(3, 3000);
  REQUIRE(m.insert("k", "s") == Status::ok);
  CHECK(m.compare_exchange("k", "s", big) == Status::ok);
  CHECK(m.get("k") == big);
  CHECK(m.compare_exchange("k", big, "") == Status::ok);
  CHECK(m.get("k") == some(""));
  check_quiescent(m);
}

TEST_CASE("compare_exchange with an over-long desired value reports value_too_long") {
  SegmentGuard g;
  Map m = Map::create(g.name(), small_options());
  REQUIRE(m.insert("k", "v") == Status::ok);
  CHECK(m.compare_exchange("k", "v", std::string(kMaxValueBytes + 1, 'x')) == Status::value_too_long);
  CHECK(m.get("k") == some("v"));
}

TEST_CASE("size counts live keys through inserts, assigns and erases") {
  SegmentGuard g;
  Map m = Map::create(g.name(), small_options());
  CHECK(m.size() == 0);
  for (int i = 0; i < 50; ++i) REQUIRE(m.insert("k" + std::to_string(i), "v") == Status::ok);
  CHECK(m.size() == 50);
  for (int i = 0; i < 50; ++i) REQUIRE(m.insert_or_assign("k" + std::to_string(i), "w") == Status::assigned);
  CHECK(m.size() == 50);
  for (int i = 0; i < 20; ++i) REQUIRE(m.erase("k" + std::to_string(i)));
  CHECK(m.size() == 30);
  CHECK(m.insert("k0", "again") == Status::ok);
  CHECK(m.size() == 31);
  check_quiescent(m);
}

TEST_CASE("for_each visits exactly the live entries once each") {
  SegmentGuard g;
  Map m = Map::create(g.name(), small_options());
  std::map<std::string, std::string> expected;
  for (int i = 0; i < 500; ++i) {
    const std::string k = "key-" + std::to_string(i);
    const std::string v = pattern_value(i, i % 97);
    REQUIRE(m.insert(k, v) == Status::ok);
    expected[k] = v;
  }
  for (int i = 0; i < 500; i += 5) {
    REQUIRE(m.erase("key-" + std::to_string(i)));
    expected.erase("key-" + std::to_string(i));
  }
  for (int i = 1; i < 500; i += 7) {
    const std::string k = "key-" + std::to_string(i);
    const std::string v = "updated-" + std::to_string(i);
    REQUIRE(succeeded(m.insert_or_assign(k, v)));
    expected[k] = v;
  }
  CHECK(snapshot(m) == expected);
}

TEST_CASE("for_each on an empty map calls nothing") {
  SegmentGuard g;
  Map m = Map::create(g.name(), small_options());
  REQUIRE(m.insert("gone", "x") == Status::ok);
  REQUIRE(m.erase("gone"));
  int calls = 0;
  m.for_each([&](std::string_view, std::string_view) { ++calls; });
  CHECK(calls == 0);
}

TEST_CASE("an exception thrown by the for_each callback propagates and leaves the map usable") {
  SegmentGuard g;
  Map m = Map::create(g.name(), small_options());
  for (int i = 0; i < 10; ++i) REQUIRE(m.insert("k" + std::to_string(i), "v") == Status::ok);
  struct Stop {};
  int calls = 0;
  CHECK_THROWS_AS(m.for_each([&](std::string_view, std::string_view) {
    if (++calls == 3) throw Stop{};
  }),
                  Stop);
  CHECK(calls == 3);
  CHECK(m.insert("more", "v") == Status::ok);
  CHECK(m.size() == 11);
  check_quiescent(m);
}

TEST_CASE("stats count live and deleted slots and the load factor") {
  SegmentGuard g;
  Map m = Map::create(g.name(), small_options(1000));
  for (int i = 0; i < 10; ++i) REQUIRE(m.insert("k" + std::to_string(i), "12345678") == Status::ok);
  for (int i = 0; i < 3; ++i) REQUIRE(m.erase("k" + std::to_string(i)));
  const shmap::Stats s = m.stats();
  CHECK(s.index_slots == 2048);
  CHECK(s.live_keys == 7);
  CHECK(s.live_slots == 7);
  CHECK(s.deleted_slots == 3);
  CHECK(s.empty_slots == 2048 - 10);
  CHECK(s.load_factor == Approx(10.0 / 2048.0));
  CHECK(s.arena_bytes == m.info().arena_bytes);
  check_quiescent(m);
}

TEST_CASE("stats report arena use per size class") {
  SegmentGuard g;
  Map m = Map::create(g.name(), small_options(1000));
  CHECK(m.stats().classes.empty());
  // 2-byte keys and 8-byte values: 24-byte records.
  for (int i = 0; i < 10; ++i) REQUIRE(m.insert("k" + std::to_string(i), "12345678") == Status::ok);
  // 2-byte key, 1000-byte value: a 1016-byte record in the 1024-byte class.
  REQUIRE(m.insert("kb", std::string(1000, 'b')) == Status::ok);
  for (int i = 0; i < 4; ++i) REQUIRE(m.erase("k" + std::to_string(i)));

  const shmap::Stats s = m.stats();
  auto cls = [&](std::uint32_t bytes) {
    auto it = std::find_if(s.classes.begin(), s.classes.end(),
                           [&](const shmap::SizeClassStats& c) { return c.block_bytes == bytes; });
    REQUIRE(it != s.classes.end());
    return *it;
  };
  const shmap::SizeClassStats small = cls(24);
  CHECK(small.in_use == 6);
  CHECK(small.carved >= 10);
  CHECK(small.free == small.carved - 6);
  const shmap::SizeClassStats big = cls(1024);
  CHECK(big.in_use == 1);
  CHECK(big.carved >= 1);
  CHECK(s.arena_carved >= small.carved * 24 + big.carved * 1024);
  check_quiescent(m);
}

TEST_CASE("keys and values may contain NUL bytes") {
  SegmentGuard g;
  Map m = Map::create(g.name(), small_options());
  const std::string k1("a\0b", 3), k2("a\0c", 3), k3("a", 1), k4("a\0", 2), k5("\0", 1);
  const std::string v("\0x\0\0y\0", 6);
  REQUIRE(m.insert(k1, v) == Status::ok);
  REQUIRE(m.insert(k2, "two") == Status::ok);
  REQUIRE(m.insert(k3, "three") == Status::ok);
  REQUIRE(m.insert(k4, "four") == Status::ok);
  REQUIRE(m.insert(k5, std::string(1, '\0')) == Status::ok);
  CHECK(m.size() == 5);
  CHECK(m.get(k1) == v);
  CHECK(m.get(k2) == some("two"));
  CHECK(m.get(k3) == some("three"));
  CHECK(m.get(k4) == some("four"));
  CHECK(m.get(k5) == std::string(1, '\0'));
  CHECK(m.get(std::string("a\0d", 3)) == std::nullopt);
  CHECK(m.get(std::string("\0\0", 2)) == std::nullopt);
  const auto all = snapshot(m);
  CHECK(all.size() == 5);
  CHECK(all.at(k1) == v);
}

TEST_CASE("keys and values may contain every byte value") {
  SegmentGuard g;
  Map m = Map::create(g.name(), small_options());
  std::string every(256, '\0');
  for (int i = 0; i < 256; ++i) every[std::size_t(i)] = static_cast<char>(i);
  std::string reversed(every.rbegin(), every.rend());
  REQUIRE(m.insert(every, reversed) == Status::ok);
  CHECK(m.get(every) == reversed);
  for (int i = 0; i < 256; ++i) REQUIRE(m.insert(std::string(1, static_cast<char>(i)), every.substr(std::size_t(i))) == Status::ok);
  CHECK(m.size() == 257);
  for (int i = 0; i < 256; ++i) CHECK(m.get(std::string(1, static_cast<char>(i))) == every.substr(std::size_t(i)));
}

TEST_CASE("an empty value is stored and distinguished from an absent key") {
  SegmentGuard g;
  Map m = Map::create(g.name(), small_options());
  REQUIRE(m.insert("empty", "") == Status::ok);
  CHECK(m.contains("empty"));
  CHECK(m.get("empty") == some(""));
  std::string out = "stale";
  CHECK(m.get("empty", out));
  CHECK(out.empty());
  CHECK(m.compare_exchange("empty", "", "now full") == Status::ok);
  CHECK(m.insert_or_assign("empty", "") == Status::assigned);
  CHECK(m.get("empty") == some(""));
}

TEST_CASE("an empty key is a key like any other") {
  SegmentGuard g;
  Map m = Map::create(g.name(), small_options());
  CHECK_FALSE(m.contains(""));
  REQUIRE(m.insert("", "for the empty key") == Status::ok);
  CHECK(m.insert("", "again") == Status::exists);
  CHECK(m.get("") == some("for the empty key"));
  REQUIRE(m.insert(std::string(1, '\0'), "nul") == Status::ok);
  CHECK(m.get("") == some("for the empty key"));
  CHECK(m.size() == 2);
  CHECK(m.erase(""));
  CHECK_FALSE(m.contains(""));
  CHECK(m.contains(std::string(1, '\0')));
}

TEST_CASE("a key of kMaxKeyBytes is accepted and one byte more is key_too_long") {
  SegmentGuard g;
  Map m = Map::create(g.name(), small_options());
  const std::string longest(kMaxKeyBytes, 'k');
  const std::string too_long(kMaxKeyBytes + 1, 'k');
  CHECK(m.insert(longest, "v") == Status::ok);
  CHECK(m.get(longest) == some("v"));
  CHECK(m.insert_or_assign(longest, "w") == Status::assigned);

  CHECK(m.insert(too_long, "v") == Status::key_too_long);
  CHECK(m.insert_or_assign(too_long, "v") == Status::key_too_long);
  CHECK(m.compare_exchange(too_long, "v", "w") == Status::key_too_long);
  CHECK(m.fetch_add(too_long, 1).status == Status::key_too_long);
  CHECK(m.put<std::int64_t>(too_long, 1) == Status::key_too_long);
  CHECK(m.get(too_long) == std::nullopt);
  CHECK_FALSE(m.contains(too_long));
  CHECK_FALSE(m.erase(too_long));
  CHECK(m.size() == 1);
  CHECK(m.get(longest) == some("w"));
  check_quiescent(m);
}

TEST_CASE("a value of kMaxValueBytes is accepted and one byte more is value_too_long") {
  SegmentGuard g;
  Map m = Map::create(g.name(), small_options(64, 16 << 20));
  const std::string longest = pattern_value(9, kMaxValueBytes);
  const std::string too_long(kMaxValueBytes + 1, 'v');
  CHECK(m.insert("k", longest) == Status::ok);
  CHECK(m.get("k") == longest);

  CHECK(m.insert("other", too_long) == Status::value_too_long);
  CHECK(m.insert_or_assign("k", too_long) == Status::value_too_long);
  CHECK(m.insert_or_assign("other", too_long) == Status::value_too_long);
  CHECK(m.get("k") == longest);
  CHECK_FALSE(m.contains("other"));
  CHECK(m.size() == 1);
  check_quiescent(m);
}

TEST_CASE("put and get_as round-trip a trivially copyable struct") {
  struct Point {
    std::int32_t x;
    std::int32_t y;
    double weight;
  };
  SegmentGuard g;
  Map m = Map::create(g.name(), small_options());
  CHECK(m.put("p", Point{-3, 7, 2.5}) == Status::inserted);
  Point p{};
  REQUIRE(m.get_as("p", p) == Status::ok);
  CHECK(p.x == -3);
  CHECK(p.y == 7);
  CHECK(p.weight == 2.5);
  CHECK(m.put("p", Point{1, 2, 3.0}) == Status::assigned);
  REQUIRE(m.get_as("p", p) == Status::ok);
  CHECK(p.x == 1);
  CHECK(m.get("p")->size() == sizeof(Point));
}

TEST_CASE("get_as reports wrong_size for a value of another length and absent for a missing key") {
  SegmentGuard g;
  Map m = Map::create(g.name(), small_options());
  REQUIRE(m.insert("three", "abc") == Status::ok);
  REQUIRE(m.insert("sixteen", std::string(16, 's')) == Status::ok);
  std::int64_t v = 77;
  CHECK(m.get_as("three", v) == Status::wrong_size);
  CHECK(m.get_as("sixteen", v) == Status::wrong_size);
  v = 77;
  CHECK(m.get_as("missing", v) == Status::absent);
  CHECK(v == 77);
  std::uint8_t small = 0;
  CHECK(m.get_as("three", small) == Status::wrong_size);
}

TEST_CASE("fetch_add on an absent key inserts the delta and reports previous 0") {
  SegmentGuard g;
  Map m = Map::create(g.name(), small_options());
  const FetchResult<std::int64_t> r = m.fetch_add("ctr", 5);
  CHECK(r.status == Status::inserted);
  CHECK(r.previous == 0);
  std::int64_t v = 0;
  REQUIRE(m.get_as("ctr", v) == Status::ok);
  CHECK(v == 5);
  CHECK(m.get("ctr") == i64_bytes(5));
  CHECK(m.size() == 1);
}

TEST_CASE("fetch_add returns each previous value and accumulates deltas, negative included") {
  SegmentGuard g;
  Map m = Map::create(g.name(), small_options());
  REQUIRE(m.put<std::int64_t>("ctr", 10) == Status::inserted);
  auto r = m.fetch_add("ctr", 1);
  CHECK(r.status == Status::ok);
  CHECK(r.previous == 10);
  r = m.fetch_add("ctr", -30);
  CHECK(r.status == Status::ok);
  CHECK(r.previous == 11);
  r = m.fetch_add("ctr", 0);
  CHECK(r.status == Status::ok);
  CHECK(r.previous == -19);
  std::int64_t v = 0;
  REQUIRE(m.get_as("ctr", v) == Status::ok);
  CHECK(v == -19);
  check_quiescent(m);
}

TEST_CASE("fetch_add wraps around in two's complement at INT64_MAX") {
  SegmentGuard g;
  Map m = Map::create(g.name(), small_options());
  constexpr std::int64_t max = std::numeric_limits<std::int64_t>::max();
  constexpr std::int64_t min = std::numeric_limits<std::int64_t>::min();
  REQUIRE(m.put<std::int64_t>("ctr", max) == Status::inserted);
  auto r = m.fetch_add("ctr", 1);
  CHECK(r.status == Status::ok);
  CHECK(r.previous == max);
  std::int64_t v = 0;
  REQUIRE(m.get_as("ctr", v) == Status::ok);
  CHECK(v == min);
  r = m.fetch_add("ctr", -1);
  CHECK(r.previous == min);
  REQUIRE(m.get_as("ctr", v) == Status::ok);
  CHECK(v == max);
  r = m.fetch_add("ctr", min);
  REQUIRE(m.get_as("ctr", v) == Status::ok);
  CHECK(v == -1);
}

TEST_CASE("fetch_add reports wrong_size on a value that is not 8 bytes and leaves it unchanged") {
  SegmentGuard g;
  Map m = Map::create(g.name(), small_options());
  REQUIRE(m.insert("four", "1234") == Status::ok);
  REQUIRE(m.insert("empty", "") == Status::ok);
  REQUIRE(m.insert("nine", "123456789") == Status::ok);
  for (const char* k : {"four", "empty", "nine"}) {
    CAPTURE(k);
    const auto r = m.fetch_add(k, 1);
    CHECK(r.status == Status::wrong_size);
    CHECK(r.previous == 0);
  }
  CHECK(m.get("four") == some("1234"));
  CHECK(m.get("empty") == some(""));
  CHECK(m.get("nine") == some("123456789"));
  check_quiescent(m);
}

TEST_CASE("an index grows past its first table and keeps every entry readable") {
  SegmentGuard g;
  Map m = Map::create(g.name(), small_options(100));
  const std::uint64_t first = m.stats().index_slots;
  REQUIRE(first == 256);
  for (int i = 0; i < 5000; ++i) REQUIRE(m.insert("key-" + std::to_string(i), "value-" + std::to_string(i)) == Status::ok);
  CHECK(m.size() == 5000);
  const shmap::Stats s = m.stats();
  CHECK(s.index_slots > first);
  CHECK(s.grown >= 1);
  CHECK(s.migrations == s.table_generation);
  CHECK(s.live_slots == 5000);
  CHECK(s.deleted_slots == 0);
  for (int i = 0; i < 5000; ++i) {
    const auto v = m.get("key-" + std::to_string(i));
    if (v != "value-" + std::to_string(i)) FAIL("key-" << i << " reads " << (v ? *v : "<absent>"));
  }
  check_quiescent(m);
}

namespace {

// A map whose arena is full and whose index cannot get a new table, but
// with free blocks for new records: `n` records of 1000 bytes (1024-byte
// blocks) are inserted and erased (each erase takes a small key-only record
// and frees a 1024-byte block), then the bump region left over is used up
// but for 4 KiB (eat_bump). Returns how many fillers that took.
int fill_then_erase(Map& m, int n) {
  for (int i = 0; i < n; ++i) REQUIRE(m.insert("old-" + std::to_string(i), pattern_value(i, 1000)) == Status::ok);
  for (int i = 0; i < n; ++i) REQUIRE(m.erase("old-" + std::to_string(i)));
  return eat_bump(m, 4096);  // room for small records, none for a table's run (20 KiB and more)
}

}  // namespace

TEST_CASE("with no room for a new table, an index fills to 7/8 and then reports full_index, keeping every entry") {
  SegmentGuard g;
  Map m = Map::create(g.name(), full_arena_options(1000));
  const int erased = 900;
  const int fillers = fill_then_erase(m, erased);
  const shmap::Stats before = m.stats();
  REQUIRE(before.deleted_slots == std::uint64_t(erased));
  // New keys of the freed blocks' class: each takes a slot; at 3/4 a
  // migration would drop the deleted slots, but there is no arena room for
  // its table, so inserts go on to 7/8 of the slots and then stop.
  int inserted = 0;
  Status last = Status::ok;
  while ((last = m.insert("new-" + std::to_string(inserted), pattern_value(inserted, 1000))) == Status::ok) ++inserted;
  CHECK(last == Status::full_index);
  const shmap::Stats s = m.stats();
  CHECK(s.table_generation == before.table_generation);
  CHECK(std::uint64_t(inserted + erased + fillers) == s.index_slots - s.index_slots / 8);
  CHECK(m.size() == std::uint64_t(inserted + fillers));
  for (int i = 0; i < inserted; ++i) CHECK(m.get("new-" + std::to_string(i)) == pattern_value(i, 1000));
  check_quiescent(m);
}

TEST_CASE("a full index still answers every operation that needs no new slot") {
  SegmentGuard g;
  Map m = Map::create(g.name(), full_arena_options(1000));
  const int erased = 900;
  const int fillers = fill_then_erase(m, erased);
  int n = 0;
  while (m.insert("key-" + std::to_string(n), pattern_value(n, 1000)) == Status::ok) ++n;
  REQUIRE(n > 10);

  CHECK(m.insert("key-0", "x") == Status::exists);
  CHECK(m.insert_or_assign("key-1", pattern_value(1, 990)) == Status::assigned);
  CHECK(m.get("key-1") == pattern_value(1, 990));
  CHECK(m.compare_exchange("key-2", pattern_value(2, 1000), pattern_value(2, 991)) == Status::ok);
  CHECK(m.get("key-2") == pattern_value(2, 991));
  CHECK(m.insert_or_assign("brand-new", pattern_value(7, 1000)) == Status::full_index);
  CHECK(m.fetch_add("brand-new", 1).status == Status::full_index);
  CHECK_FALSE(m.contains("brand-new"));

  CHECK(m.erase("key-3"));
  CHECK(m.get("key-3") == std::nullopt);
  CHECK(m.size() == std::uint64_t(n - 1 + fillers));
  CHECK(m.stats().deleted_slots == std::uint64_t(erased) + 1);
  CHECK(m.insert("another-new", pattern_value(0, 1000)) == Status::full_index);
  CHECK_FALSE(m.contains("another-new"));
  // A deleted slot still belongs to its key (core/layout.hpp), so the erased
  // key itself fits again.
  CHECK(m.insert("key-3", pattern_value(3, 1000)) == Status::ok);
  CHECK(m.get("key-3") == pattern_value(3, 1000));
  for (int i = 4; i < n; ++i) CHECK(m.contains("key-" + std::to_string(i)));
  check_quiescent(m);
}

TEST_CASE("a segment at max_bytes reports full_arena and keeps the map intact") {
  SegmentGuard g;
  Map m = Map::create(g.name(), full_arena_options(1000));
  std::vector<std::string> keys;
  Status last = Status::ok;
  for (int i = 0; i < 100000; ++i) {
    const std::string k = "k" + std::to_string(i);
    last = m.insert(k, pattern_value(i, 1000));
    if (last != Status::ok) break;
    keys.push_back(k);
  }
  CHECK(last == Status::full_arena);
  const shmap::Stats s = m.stats();
  CHECK(s.arena_bytes + shmap::detail::kHeaderBytes +
            shmap::detail::kRegistryEntries * sizeof(shmap::detail::RegistryEntry) ==
        kMinSegmentBytes);
  // 1024-byte blocks: the arena minus the index table and one carve chunk.
  CHECK(keys.size() * 1024 <= s.arena_bytes);
  CHECK(keys.size() * 1024 + s.index_table_bytes + 8192 >= s.arena_bytes);
  CHECK(m.size() == keys.size());
  for (std::size_t i = 0; i < keys.size(); ++i) CHECK(m.get(keys[i]) == pattern_value(i, 1000));
  CHECK(s.live_slots == keys.size());
  CHECK(s.deleted_slots == 0);
  check_quiescent(m);
}

TEST_CASE("an arena grows past its initial size up to max_bytes") {
  SegmentGuard g;
  Map m = Map::create(g.name(), small_options(1000, 64 << 10, std::uint64_t{16} << 20));
  const std::uint64_t initial = m.info().arena_bytes;
  int n = 0;
  while (m.insert("k" + std::to_string(n), pattern_value(n, 1000)) == Status::ok) ++n;
  const shmap::Info i = m.info();
  CHECK(i.arena_bytes > initial);
  CHECK(i.total_bytes == (std::uint64_t{16} << 20));
  CHECK(i.total_bytes == std::uint64_t(file_size(shm_file(g.name()))));
  CHECK(std::uint64_t(n) * 1024 > i.arena_bytes / 2);
  for (int k = 0; k < n; k += 7) CHECK(m.get("k" + std::to_string(k)) == pattern_value(k, 1000));
  check_quiescent(m);
}

TEST_CASE("an assign that does not fit a full arena reports full_arena and keeps the old value") {
  SegmentGuard g;
  Map m = Map::create(g.name(), full_arena_options(1000));
  int n = 0;
  while (m.insert("k" + std::to_string(n), pattern_value(n, 1000)) == Status::ok) ++n;
  CHECK(m.insert_or_assign("k0", pattern_value(0, 4000)) == Status::full_arena);
  CHECK(m.get("k0") == pattern_value(0, 1000));
  CHECK(m.compare_exchange("k1", pattern_value(1, 1000), pattern_value(1, 4000)) == Status::full_arena);
  CHECK(m.get("k1") == pattern_value(1, 1000));
  CHECK(m.size() == std::uint64_t(n));
  check_quiescent(m);
}

TEST_CASE("a full arena accepts a record again once an erase frees a block of its class") {
  SegmentGuard g;
  Map m = Map::create(g.name(), full_arena_options(1000));
  // A 16-byte record first: its carve leaves this thread 16-byte blocks for
  // the key-only record the erase below takes (so it frees the erased block).
  REQUIRE(m.insert("t", "") == Status::ok);
  int n = 0;
  while (m.insert("k" + std::to_string(n), pattern_value(n, 1000)) == Status::ok) ++n;
  REQUIRE(m.insert("late", pattern_value(99, 1000)) == Status::full_arena);
  REQUIRE(m.erase("k5"));
  CHECK(m.insert("late", pattern_value(99, 1000)) == Status::ok);
  CHECK(m.get("late") == pattern_value(99, 1000));
  CHECK(m.insert("later", pattern_value(98, 1000)) == Status::full_arena);
  for (int i = 0; i < n; ++i)
    if (i != 5) CHECK(m.get("k" + std::to_string(i)) == pattern_value(i, 1000));
  CHECK(m.size() == std::uint64_t(n) + 1);
  check_quiescent(m);
}

TEST_CASE("updates that need a new record on a full arena report full_arena and keep the old value") {
  SegmentGuard g;
  Map m = Map::create(g.name(), full_arena_options(1000));
  REQUIRE(m.put<std::int64_t>("ctr", 7) == Status::inserted);
  REQUIRE(m.insert("small", "12345678") == Status::ok);
  int n = 0;
  while (m.insert("big" + std::to_string(n), pattern_value(n, 1000)) == Status::ok) ++n;
  // Use up the bump space left over for small records too.
  int tiny = 0;
  while (m.insert("t" + std::to_string(tiny), "") == Status::ok) ++tiny;
  // And the free blocks of the updates' own size class (24 bytes: a key of at
  // most 8 bytes and an 8-byte value): the chunk "ctr" and "small" were carved
  // from left the rest of its blocks on this thread's free list.
  int same_class = 0;
  while (m.insert("c" + std::to_string(same_class), "12345678") == Status::ok) ++same_class;
  const auto r = m.fetch_add("ctr", 1);
  CHECK(r.status == Status::full_arena);
  CHECK(r.previous == 0);
  std::int64_t v = 0;
  REQUIRE(m.get_as("ctr", v) == Status::ok);
  CHECK(v == 7);
  CHECK(m.insert_or_assign("small", "87654321") == Status::full_arena);
  CHECK(m.compare_exchange("small", "12345678", "87654321") == Status::full_arena);
  CHECK(m.get("small") == some("12345678"));
  CHECK(m.size() == std::uint64_t(2 + n + tiny + same_class));
  check_quiescent(m);
}

TEST_CASE("a record with the longest key and the longest value round-trips") {
  SegmentGuard g;
  Map m = Map::create(g.name(), small_options(64, 16 << 20));
  const std::string key = pattern_value(1, kMaxKeyBytes);
  const std::string value = pattern_value(2, kMaxValueBytes);
  REQUIRE(m.insert(key, value) == Status::ok);
  CHECK(m.get(key) == value);
  std::size_t seen = 0;
  m.for_each([&](std::string_view k, std::string_view v) {
    ++seen;
    CHECK(k == key);
    CHECK(v == value);
  });
  CHECK(seen == 1);
  CHECK(m.erase(key));
  CHECK_FALSE(m.contains(key));
  check_quiescent(m);
}

TEST_CASE("values of every size from 0 to 5000 bytes round-trip exactly") {
  SegmentGuard g;
  Map m = Map::create(g.name(), small_options(8192, 64 << 20));
  for (std::size_t len = 0; len <= 5000; ++len)
    REQUIRE(m.insert("v" + std::to_string(len), pattern_value(len, len)) == Status::ok);
  std::string out;
  std::size_t bad = 0;
  for (std::size_t len = 0; len <= 5000; ++len) {
    if (!m.get("v" + std::to_string(len), out) || out != pattern_value(len, len)) ++bad;
  }
  CHECK(bad == 0);
  CHECK(m.size() == 5001);
  check_quiescent(m);
}

TEST_CASE("values near the 1 MiB limit round-trip exactly") {
  SegmentGuard g;
  Map m = Map::create(g.name(), small_options(64, 16 << 20));
  const std::size_t sizes[] = {kMaxValueBytes, kMaxValueBytes - 1, 1u << 19, 1000000, 777777};
  for (std::size_t len : sizes) REQUIRE(m.insert("big" + std::to_string(len), pattern_value(len, len)) == Status::ok);
  for (std::size_t len : sizes) CHECK(m.get("big" + std::to_string(len)) == pattern_value(len, len));
  check_quiescent(m);
}

TEST_CASE("updating a value across size classes keeps exactly one record for the key") {
  SegmentGuard g;
  Map m = Map::create(g.name(), small_options(64, 16 << 20));
  REQUIRE(m.insert("k", "") == Status::ok);
  const std::size_t sizes[] = {1, 8, 9, 56, 57, 100, 5000, 10, kMaxValueBytes, 0, 64, 65, 4096, 3};
  for (std::size_t len : sizes) {
    CAPTURE(len);
    REQUIRE(m.insert_or_assign("k", pattern_value(len + 1, len)) == Status::assigned);
    CHECK(m.get("k") == pattern_value(len + 1, len));
    CHECK(m.size() == 1);
    CHECK(sum_in_use(m.stats()) == 1);
  }
  check_quiescent(m);
}

TEST_CASE("a second map opened on the same name sees every write of the first, and the reverse") {
  SegmentGuard g;
  Map a = Map::create(g.name(), small_options());
  Map b = Map::open(g.name());
  for (int i = 0; i < 200; ++i) REQUIRE(a.insert("a" + std::to_string(i), pattern_value(i, i)) == Status::ok);
  for (int i = 0; i < 200; ++i) CHECK(b.get("a" + std::to_string(i)) == pattern_value(i, i));
  CHECK(b.size() == 200);
  REQUIRE(b.insert_or_assign("a0", "from b") == Status::assigned);
  REQUIRE(b.erase("a1"));
  REQUIRE(b.fetch_add("ctr", 3).status == Status::inserted);
  CHECK(a.get("a0") == some("from b"));
  CHECK_FALSE(a.contains("a1"));
  CHECK(a.fetch_add("ctr", 1).previous == 3);
  CHECK(a.size() == 200);
  CHECK(snapshot(a) == snapshot(b));
}

TEST_CASE("keys that are prefixes of each other are distinct") {
  SegmentGuard g;
  Map m = Map::create(g.name(), small_options());
  std::string k;
  for (int len = 0; len <= 40; ++len) {
    REQUIRE(m.insert(k, std::to_string(len)) == Status::ok);
    k.push_back('p');
  }
  k.clear();
  for (int len = 0; len <= 40; ++len) {
    CHECK(m.get(k) == std::to_string(len));
    k.push_back('p');
  }
}

TEST_CASE("a map filled to its capacity never reports full") {
  SegmentGuard g;
  Map m = Map::create(g.name(), small_options(5000));
  for (int i = 0; i < 5000; ++i) {
    const Status s = m.insert("key-" + std::to_string(i), pattern_value(i, 40));
    if (s != Status::ok) FAIL("insert " << i << " of 5000 returned " << shmap::to_string(s));
  }
  CHECK(m.size() == 5000);
  check_quiescent(m);
}

TEST_CASE("keys whose probe sequences wrap past the end of the index are found, erased and re-inserted") {
  SegmentGuard g;
  shmap::Options o = small_options(12);
  o.hash_seed = 12345;
  Map m = Map::create(g.name(), o);
  const std::uint64_t slots = m.info().index_slots;
  REQUIRE(slots == 16);
  std::vector<std::string> keys = keys_with_home(12345, slots, slots - 1, 6);
  for (auto& k : keys_with_home(12345, slots, 0, 2)) keys.push_back(k);
  for (std::size_t i = 0; i < keys.size(); ++i) REQUIRE(m.insert(keys[i], "v" + std::to_string(i)) == Status::ok);
  for (std::size_t i = 0; i < keys.size(); ++i) CHECK(m.get(keys[i]) == "v" + std::to_string(i));
  CHECK(m.erase(keys[2]));
  CHECK(m.erase(keys[6]));
  for (std::size_t i = 0; i < keys.size(); ++i) {
    CAPTURE(i);
    if (i == 2 || i == 6)
      CHECK_FALSE(m.contains(keys[i]));
    else
      CHECK(m.get(keys[i]) == "v" + std::to_string(i));
  }
  CHECK(snapshot(m).size() == keys.size() - 2);
  CHECK(m.insert(keys[6], "back") == Status::ok);
  CHECK(m.insert(keys[2], "back") == Status::ok);
  for (std::size_t i = 0; i < keys.size(); ++i)
    CHECK(m.insert_or_assign(keys[i], "w" + std::to_string(i)) == Status::assigned);
  for (std::size_t i = 0; i < keys.size(); ++i) CHECK(m.get(keys[i]) == "w" + std::to_string(i));
  CHECK(m.size() == keys.size());
  check_quiescent(m);
}

TEST_CASE("keys with the same home slot and fingerprint are told apart by their bytes") {
  SegmentGuard g;
  shmap::Options o = small_options(1000);
  o.hash_seed = 777;
  Map m = Map::create(g.name(), o);
  const std::uint64_t mask = m.info().index_slots - 1;
  // Same length, same home slot, same 8-bit fingerprint: only the key bytes differ.
  std::map<std::pair<std::uint64_t, std::uint64_t>, std::vector<std::string>> buckets;
  std::vector<std::string> twins;
  for (std::uint64_t i = 0; twins.empty(); ++i) {
    char buf[16];
    std::snprintf(buf, sizeof buf, "c%07llu", static_cast<unsigned long long>(i));
    const std::uint64_t h = shmap::detail::hash_bytes(buf, 777);
    auto& b = buckets[{h >> (64 - __builtin_popcountll(mask)), h & 0xff}];
    b.emplace_back(buf);
    if (b.size() == 3) twins = b;
  }
  for (std::size_t i = 0; i < twins.size(); ++i) REQUIRE(m.insert(twins[i], "t" + std::to_string(i)) == Status::ok);
  for (std::size_t i = 0; i < twins.size(); ++i) CHECK(m.get(twins[i]) == "t" + std::to_string(i));
  CHECK(m.insert(twins[1], "again") == Status::exists);
  CHECK(m.erase(twins[0]));
  CHECK_FALSE(m.contains(twins[0]));
  CHECK(m.get(twins[1]) == some("t1"));
  CHECK(m.get(twins[2]) == some("t2"));
  CHECK(m.compare_exchange(twins[2], "t2", "swapped") == Status::ok);
  CHECK(m.get(twins[1]) == some("t1"));
  CHECK(m.get(twins[2]) == some("swapped"));
  CHECK(m.size() == 2);
  check_quiescent(m);
}
