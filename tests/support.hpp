// Helpers shared by the shmap test suites: unique segment names that are always
// removed, temporary directories, forging of segment headers, value encodings
// that let a reader detect a torn or foreign value, and Catch2 printers.
#pragma once

#include <fcntl.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <catch2/catch.hpp>
#include <cerrno>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <functional>
#include <optional>
#include <random>
#include <stdexcept>
#include <string>
#include <string_view>
#include <system_error>
#include <utility>
#include <vector>

#include "layout.hpp"
#include "segment.hpp"
#include "shmap/shmap.hpp"

#if defined(__SANITIZE_THREAD__)
#define SHMAP_TEST_TSAN 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define SHMAP_TEST_TSAN 1
#endif
#endif
#if defined(__SANITIZE_ADDRESS__)
#define SHMAP_TEST_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define SHMAP_TEST_ASAN 1
#endif
#endif

namespace Catch {
template <>
struct StringMaker<shmap::Status> {
  static std::string convert(shmap::Status s) { return shmap::to_string(s); }
};
template <>
struct StringMaker<std::error_code> {
  static std::string convert(const std::error_code& e) {
    return std::string(e.category().name()) + ":" + std::to_string(e.value()) + " (" + e.message() + ")";
  }
};
}  // namespace Catch

namespace shmap_test {

// Iteration counts are scaled down where instrumentation makes each operation
// an order of magnitude slower, so every test stays within a few seconds.
#if defined(SHMAP_TEST_TSAN)
inline constexpr int kSlowdown = 2;
#else
inline constexpr int kSlowdown = 1;
#endif
// The 10-million-operation churn runs a tenth of that under ASan (a Debug
// build, some 10x slower per operation): the same pattern, fewer rounds.
#if defined(SHMAP_TEST_ASAN)
inline constexpr std::uint64_t kChurnSlowdown = 10;
#else
inline constexpr std::uint64_t kChurnSlowdown = 1;
#endif

// "/shmap-test-<pid>-<random>-<n>": unique across concurrently running test
// processes and within one process, so parallel ctest runs never collide. The
// pid alone is not enough: a suite forks tens of thousands of children, pids
// wrap (pid_max is 32768 on many machines), and a child SIGKILLed on purpose
// can leave a segment behind under a pid that a later test process reuses.
// 64 fresh random bits per name make such a leftover harmless.
inline std::string unique_name() {
  static std::atomic<unsigned> counter{0};
  std::random_device rd;
  char nonce[17];
  std::snprintf(nonce, sizeof nonce, "%08x%08x", rd(), rd());
  // Relaxed: only the uniqueness of the returned value matters.
  return "/shmap-test-" + std::to_string(::getpid()) + "-" + nonce + "-" +
         std::to_string(counter.fetch_add(1, std::memory_order_relaxed));
}

// The file behind a POSIX shm name ("/x" -> "/dev/shm/x").
inline std::string shm_file(const std::string& name) {
  return "/dev/shm" + name;
}

// Removes the segment when the test ends, however it ends.
class SegmentGuard {
 public:
  SegmentGuard() : name_(unique_name()) {}
  explicit SegmentGuard(std::string name) : name_(std::move(name)) {}
  SegmentGuard(const SegmentGuard&) = delete;
  SegmentGuard& operator=(const SegmentGuard&) = delete;
  ~SegmentGuard() {
    try {
      shmap::Map::remove(name_);
    } catch (...) {
      // remove() refuses files that are not shmap segments (forged garbage):
      // unlink those directly.
      ::unlink(file().c_str());
    }
  }
  const std::string& name() const { return name_; }
  std::string file() const {
    return name_.front() == '/' && name_.find('/', 1) == std::string::npos ? shm_file(name_) : name_;
  }

 private:
  std::string name_;
};

class TempDir {
 public:
  TempDir() {
    std::string tmpl = (std::filesystem::temp_directory_path() / "shmap-test-XXXXXX").string();
    if (::mkdtemp(tmpl.data()) == nullptr) throw std::system_error(errno, std::generic_category(), "mkdtemp");
    path_ = tmpl;
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  const std::string& path() const { return path_; }
  std::string file(std::string_view leaf) const { return path_ + "/" + std::string(leaf); }

 private:
  std::string path_;
};

// Options for a test map. The segment is capped (max_bytes) so that a test
// that fills a map until it is full fills a bounded one, not the filesystem.
inline constexpr std::uint64_t kTestMaxBytes = std::uint64_t{256} << 20;
inline shmap::Options small_options(std::uint64_t capacity = 1024, std::uint64_t arena_bytes = 0,
                                    std::uint64_t max_bytes = kTestMaxBytes) {
  shmap::Options o;
  o.capacity = capacity;
  o.arena_bytes = arena_bytes;
  o.max_bytes = max_bytes;
  return o;
}

// The smallest segment (one 2 MiB granule, which cannot grow): its arena of
// about 1 MiB fills quickly, for the tests of a full arena.
inline constexpr std::uint64_t kMinSegmentBytes = std::uint64_t{2} << 20;
inline shmap::Options full_arena_options(std::uint64_t capacity = 1000) {
  return small_options(capacity, 64 << 10, kMinSegmentBytes);
}

// Uses up the arena's bump region (the part never carved) with "filler-<i>"
// records of whatever sizes fit, so that nothing new can be carved: no chunk
// for a size class without free blocks, and no run for a new index table.
// Leaves about `leave` bytes (at most `leave` + 40). Returns how many
// fillers it inserted. The map must be quiet.
inline int eat_bump(shmap::Map& m, std::uint64_t leave = 0) {
  namespace d = shmap::detail;
  int fillers = 0;
  for (;;) {
    const shmap::Stats s = m.stats();
    const std::uint64_t left = s.arena_bytes - s.arena_carved - d::kArenaFirstOffset;
    if (left <= leave + 40) return fillers;
    const std::string key = "filler-" + std::to_string(fillers);
    // The largest value whose block fits what is left beyond `leave` (one
    // block per carve for blocks of 2 KiB and more; smaller ones are carved
    // in 2 KiB chunks, so keep to one block of at least that).
    std::uint64_t want = std::min<std::uint64_t>(left - leave, shmap::kMaxValueBytes);
    while (want > 0 && d::size_class_bytes(d::size_class_of(d::RecordHeader::record_bytes_for(key.size(), want))) >
                           std::max<std::uint64_t>(left - leave, 0))
      want = want * 15 / 16;
    if (d::size_class_bytes(d::size_class_of(d::RecordHeader::record_bytes_for(key.size(), want))) < 2048)
      return fillers;
    if (m.insert(key, std::string(want, 'f')) != shmap::Status::ok) return fillers;
    ++fillers;
  }
}

// Runs f and returns the shmap::Error it threw, or nothing if it did not throw.
// Any other exception propagates (and fails the test).
template <class F>
std::optional<shmap::Error> error_of(F&& f) {
  try {
    f();
  } catch (const shmap::Error& e) {
    return e;
  }
  return std::nullopt;
}

// Requires `expr` to throw shmap::Error with `code` whose message and segment()
// name the segment.
#define REQUIRE_SHMAP_ERROR(expr, expected_errc, segment_name)                                         \
  do {                                                                                                 \
    const auto shmap_err_ = ::shmap_test::error_of([&] { (void)(expr); });                             \
    INFO("expected shmap::Error " #expected_errc " from: " #expr);                                     \
    REQUIRE(shmap_err_.has_value());                                                                   \
    CHECK(shmap_err_->code() == ::shmap::make_error_code(expected_errc));                              \
    CHECK_THAT(std::string(shmap_err_->what()), Catch::Matchers::Contains(std::string(segment_name))); \
    CHECK(shmap_err_->segment() == std::string(segment_name));                                         \
  } while (0)

// Maps a segment file read-write, lets `edit` change its header, and by default
// recomputes the header checksum so that only the edited field is wrong.
inline void edit_header(const std::string& file, const std::function<void(shmap::detail::SegmentHeader&)>& edit,
                        bool fix_checksum = true) {
  const int fd = ::open(file.c_str(), O_RDWR);
  if (fd < 0) throw std::system_error(errno, std::generic_category(), "open " + file);
  void* p = ::mmap(nullptr, shmap::detail::kHeaderBytes, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  const int err = errno;
  ::close(fd);
  if (p == MAP_FAILED) throw std::system_error(err, std::generic_category(), "mmap " + file);
  auto* h = static_cast<shmap::detail::SegmentHeader*>(p);
  edit(*h);
  if (fix_checksum) h->checksum = shmap::detail::header_checksum(h->fixed);
  ::munmap(p, shmap::detail::kHeaderBytes);
}

// Maps a whole segment file read-write for forging index words and records.
inline void edit_segment(const std::string& file, const std::function<void(char* base, std::size_t bytes)>& edit) {
  const int fd = ::open(file.c_str(), O_RDWR);
  if (fd < 0) throw std::system_error(errno, std::generic_category(), "open " + file);
  struct stat st {};
  if (::fstat(fd, &st) != 0) {
    const int err = errno;
    ::close(fd);
    throw std::system_error(err, std::generic_category(), "fstat " + file);
  }
  void* p = ::mmap(nullptr, std::size_t(st.st_size), PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  const int err = errno;
  ::close(fd);
  if (p == MAP_FAILED) throw std::system_error(err, std::generic_category(), "mmap " + file);
  edit(static_cast<char*>(p), std::size_t(st.st_size));
  ::munmap(p, std::size_t(st.st_size));
}

// The registry entries (core/layout.hpp: one per writing thread, with its
// heap, intents and counter shares) of a whole segment mapped at `base`
// (edit_segment).
inline shmap::detail::RegistryEntry* registry_of(char* base) {
  auto* h = reinterpret_cast<shmap::detail::SegmentHeader*>(base);
  return reinterpret_cast<shmap::detail::RegistryEntry*>(base + h->fixed.registry_offset);
}

// The current index table of a whole segment mapped at `base` (edit_segment):
// its slot words and how many (core/layout.hpp: the directory word names a
// run, whose table header is followed by the slots).
struct RawTable {
  std::uint64_t* slots;
  std::uint64_t size;
  std::uint64_t mask() const { return size - 1; }
  // The home slot of a key hash in this table (high bits, core/index.hpp).
  std::uint64_t home(std::uint64_t hash) const { return hash >> (64 - __builtin_ctzll(size)); }
};
inline RawTable current_table(char* base) {
  auto* h = reinterpret_cast<shmap::detail::SegmentHeader*>(base);
  const shmap::detail::TablesWord t{h->tables};
  const shmap::detail::RunGeom g{h->runs[t.cur_run()].geom};
  return {reinterpret_cast<std::uint64_t*>(base + h->fixed.arena_offset + g.start() + shmap::detail::kTableHeaderBytes),
          std::uint64_t{1} << t.cur_log2()};
}

// The words of the arena block `ref` (arena offset / 8) of a segment mapped at `base`.
inline std::uint64_t* arena_block(char* base, std::uint64_t ref) {
  auto* h = reinterpret_cast<shmap::detail::SegmentHeader*>(base);
  return reinterpret_cast<std::uint64_t*>(base + h->fixed.arena_offset + ref * 8);
}

// Lets `edit` change registry entry `e` of a segment file (its free lists,
// intents or counter shares); `base` is the whole segment, for arena_block().
inline void edit_entry(const std::string& file, std::uint32_t e,
                       const std::function<void(shmap::detail::RegistryEntry&, char* base)>& edit) {
  edit_segment(file, [&](char* base, std::size_t) {
    REQUIRE(e < shmap::detail::kRegistryEntries);
    edit(registry_of(base)[e], base);
  });
}

// The registry entry of the only thread writing through `m` in this process.
inline std::uint32_t own_entry(const shmap::Map& m) {
  std::optional<std::uint32_t> mine;
  for (const shmap::ProcessInfo& p : m.processes()) {
    if (p.pid != ::getpid()) continue;
    REQUIRE_FALSE(mine.has_value());  // one writing thread, one entry
    mine = p.entry;
  }
  REQUIRE(mine.has_value());
  return *mine;
}

inline void truncate_file(const std::string& file, off_t bytes) {
  if (::truncate(file.c_str(), bytes) != 0) throw std::system_error(errno, std::generic_category(), "truncate " + file);
}

inline off_t file_size(const std::string& file) {
  struct stat st {};
  if (::stat(file.c_str(), &st) != 0) throw std::system_error(errno, std::generic_category(), "stat " + file);
  return st.st_size;
}

inline mode_t file_mode(const std::string& file) {
  struct stat st {};
  if (::stat(file.c_str(), &st) != 0) throw std::system_error(errno, std::generic_category(), "stat " + file);
  return st.st_mode & 07777;
}

inline bool file_exists(const std::string& file) {
  struct stat st {};
  return ::stat(file.c_str(), &st) == 0;
}

// Deterministic bytes (every byte value occurs) for a value of `len` bytes.
inline std::string pattern_value(std::uint64_t seed, std::size_t len) {
  std::string s(len, '\0');
  std::uint64_t x = seed * 0x9e3779b97f4a7c15ull + 0x632be59bd9b4e019ull;
  for (std::size_t i = 0; i < len; ++i) {
    x ^= x >> 29;
    x *= 0xbf58476d1ce4e5b9ull;
    x ^= x >> 32;
    s[i] = static_cast<char>(x);
  }
  return s;
}

inline std::uint64_t fnv1a(std::string_view bytes) {
  std::uint64_t h = 0xcbf29ce484222325ull;
  for (unsigned char c : bytes) {
    h ^= c;
    h *= 0x100000001b3ull;
  }
  return h;
}

// A self-checking value: (key id, writer id, version) followed by a payload whose
// length varies with the version (so updates cross size classes) and a checksum
// over everything before it. A torn or misdirected value fails decode().
struct Tagged {
  std::uint32_t key = 0;
  std::uint32_t writer = 0;
  std::uint64_t version = 0;
};

inline std::string encode_tagged(const Tagged& t, std::size_t payload_len) {
  std::string v(16 + payload_len + 8, '\0');
  std::memcpy(v.data(), &t.key, 4);
  std::memcpy(v.data() + 4, &t.writer, 4);
  std::memcpy(v.data() + 8, &t.version, 8);
  const std::string payload = pattern_value(t.version * 131 + t.key * 7 + t.writer, payload_len);
  std::memcpy(v.data() + 16, payload.data(), payload_len);
  const std::uint64_t sum = fnv1a(std::string_view(v.data(), 16 + payload_len));
  std::memcpy(v.data() + 16 + payload_len, &sum, 8);
  return v;
}

inline std::optional<Tagged> decode_tagged(std::string_view v) {
  if (v.size() < 24) return std::nullopt;
  Tagged t;
  std::memcpy(&t.key, v.data(), 4);
  std::memcpy(&t.writer, v.data() + 4, 4);
  std::memcpy(&t.version, v.data() + 8, 8);
  std::uint64_t sum = 0;
  std::memcpy(&sum, v.data() + v.size() - 8, 8);
  if (sum != fnv1a(v.substr(0, v.size() - 8))) return std::nullopt;
  const std::size_t payload_len = v.size() - 24;
  if (v.substr(16, payload_len) != pattern_value(t.version * 131 + t.key * 7 + t.writer, payload_len))
    return std::nullopt;
  return t;
}

inline std::string i64_bytes(std::int64_t v) {
  return std::string(reinterpret_cast<const char*>(&v), sizeof v);
}

inline std::int64_t i64_of(std::string_view b) {
  std::int64_t v = 0;
  std::memcpy(&v, b.data(), sizeof v);
  return v;
}

inline std::uint64_t sum_in_use(const shmap::Stats& s) {
  std::uint64_t n = 0;
  for (const auto& c : s.classes) n += c.in_use;
  return n;
}

// Invariants that hold whenever no write is in flight: the counters agree with
// an index scan, every claimed slot (live, or deleted: a deleted slot keeps a
// record naming its key, see core/layout.hpp) holds exactly one arena block so
// nothing leaked, and the per-class counters add up. A migration may be
// running (writes helped it part of the way): fsck then counts each key once
// across the two tables.
inline void check_quiescent(const shmap::Map& map) {
  const shmap::Stats s = map.stats();
  const std::uint64_t n = map.size();
  CHECK(s.live_keys == n);
  CHECK(s.live_slots + s.deleted_slots + s.empty_slots + s.frozen_slots == s.index_slots);
  CHECK(s.load_factor == Approx(double(s.live_slots + s.deleted_slots + s.frozen_slots) / double(s.index_slots)));
  if (!s.migrating) {
    CHECK(s.frozen_slots == 0);
    CHECK(s.live_slots == n);
    CHECK(sum_in_use(s) == s.live_slots + s.deleted_slots);
  }
  std::uint64_t carved_bytes = 0;
  for (const auto& c : s.classes) {
    CHECK(c.carved > 0);
    CHECK(c.free == c.carved - c.in_use);
    carved_bytes += c.carved * c.block_bytes;
  }
  CHECK(s.arena_carved >= carved_bytes + s.index_run_bytes);
  CHECK(s.arena_carved <= s.arena_bytes);
  std::uint64_t walked = 0;
  map.for_each([&](std::string_view, std::string_view) { ++walked; });
  CHECK(walked == n);
  // The full invariant check: no duplicate key, probe invariant, free lists,
  // every carved byte reachable or free, counters.
  const shmap::FsckReport f = map.fsck();
  INFO("fsck: " << (f.violations.empty() ? std::string("clean") : f.violations.front()));
  CHECK(f.ok);
  CHECK(f.leaked_bytes == 0);
  CHECK(f.live_keys == n);
  CHECK(sum_in_use(s) == f.reachable_blocks);
}

// Checks that every key k in [0, n_keys) has exactly one winner in `won`
// (won[w][k] != 0) and that the map holds expected(winner, k) for it.
template <class KeyOf, class Expected>
void check_one_winner_per_key(const shmap::Map& m, const std::vector<std::vector<char>>& won, int n_keys,
                              KeyOf&& key_of, Expected&& expected) {
  int bad_counts = 0, bad_values = 0;
  for (int k = 0; k < n_keys; ++k) {
    int winners = 0, winner = -1;
    for (std::size_t w = 0; w < won.size(); ++w)
      if (won[w][std::size_t(k)]) {
        ++winners;
        winner = int(w);
      }
    if (winners != 1) {
      ++bad_counts;
      continue;
    }
    if (m.get(key_of(k)) != expected(winner, k)) ++bad_values;
  }
  CHECK(bad_counts == 0);
  CHECK(bad_values == 0);
}

// Checks that writer w's i-th key (name(w, i)) holds value(w, i) for every
// w < writers and i < per_writer.
template <class Name, class Value>
void check_disjoint_writes(const shmap::Map& m, int writers, int per_writer, Name&& name, Value&& value) {
  int wrong = 0;
  for (int w = 0; w < writers; ++w)
    for (int i = 0; i < per_writer; ++i)
      if (m.get(name(w, i)) != value(w, i)) ++wrong;
  CHECK(wrong == 0);
}

// Forked children: run `body` in a child and leave with its result via _exit,
// never returning into Catch. An exception becomes exit code 98.
template <class F>
pid_t spawn(F&& body) {
  const pid_t pid = ::fork();
  if (pid < 0) throw std::system_error(errno, std::generic_category(), "fork");
  if (pid == 0) {
    int rc = 97;
    try {
      rc = body();
    } catch (...) {
      rc = 98;
    }
    ::_exit(rc);
  }
  return pid;
}

// Exit code of a child, or 128 + signal number if it was killed.
inline int wait_child(pid_t pid) {
  int status = 0;
  pid_t r;
  do {
    r = ::waitpid(pid, &status, 0);
  } while (r < 0 && errno == EINTR);
  if (r != pid) return -1;
  if (WIFEXITED(status)) return WEXITSTATUS(status);
  if (WIFSIGNALED(status)) return 128 + WTERMSIG(status);
  return -2;
}

inline bool write_all(int fd, const void* data, std::size_t n) {
  const char* p = static_cast<const char*>(data);
  while (n > 0) {
    const ssize_t w = ::write(fd, p, n);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) return false;
    p += w;
    n -= std::size_t(w);
  }
  return true;
}

inline bool read_all(int fd, void* data, std::size_t n) {
  char* p = static_cast<char*>(data);
  while (n > 0) {
    const ssize_t r = ::read(fd, p, n);
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) return false;
    p += r;
    n -= std::size_t(r);
  }
  return true;
}

// A start line for forked children, made of two pipes (no sleeps): each child
// reports ready, then blocks until the parent closes the "go" pipe, which
// releases every child at once.
class StartGate {
 public:
  StartGate() {
    if (::pipe(ready_) != 0 || ::pipe(go_) != 0) throw std::system_error(errno, std::generic_category(), "pipe");
  }
  StartGate(const StartGate&) = delete;
  StartGate& operator=(const StartGate&) = delete;
  ~StartGate() {
    for (int fd : {ready_[0], ready_[1], go_[0], go_[1]})
      if (fd >= 0) ::close(fd);
  }
  // In a child: announce readiness and wait for the start.
  bool child_wait() {
    ::close(go_[1]);
    go_[1] = -1;
    const char c = 'r';
    if (!write_all(ready_[1], &c, 1)) return false;
    char buf;
    ssize_t r;
    do {
      r = ::read(go_[0], &buf, 1);
    } while (r < 0 && errno == EINTR);
    return r == 0;
  }
  // In the parent, once every child is forked: wait until n children are
  // ready, then release them all. A child that died early ends the wait (EOF)
  // instead of hanging it, because the parent drops its own write end first.
  bool release_when_ready(int n) {
    ::close(ready_[1]);
    ready_[1] = -1;
    for (int i = 0; i < n; ++i) {
      char c;
      if (!read_all(ready_[0], &c, 1)) return false;
    }
    ::close(go_[1]);
    go_[1] = -1;
    return true;
  }

 private:
  int ready_[2] = {-1, -1};
  int go_[2] = {-1, -1};
};

// Forks n children that each open `name`, wait at the gate, then run
// body(child index, map) and exit with its result; returns their exit codes
// and, if `seconds` is given, the seconds from the release to the last exit.
template <class F>
std::vector<int> run_children(int n, const std::string& name, F&& body, double* seconds = nullptr) {
  StartGate gate;
  std::vector<pid_t> pids;
  for (int c = 0; c < n; ++c) {
    pids.push_back(spawn([&, c]() -> int {
      shmap::Map m = shmap::Map::open(name);
      if (!gate.child_wait()) return 90;
      return body(c, m);
    }));
  }
  const bool released = gate.release_when_ready(n);
  const auto t0 = std::chrono::steady_clock::now();
  std::vector<int> codes;
  for (pid_t p : pids) codes.push_back(wait_child(p));
  if (seconds) *seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  CHECK(released);
  return codes;
}

}  // namespace shmap_test
