// Segment lifecycle: create/open/open_or_create/remove, options, permissions,
// and every way open() refuses a segment it cannot trust (forged by editing the
// bytes of a valid segment with the structs of core/layout.hpp).
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <cstdint>
#include <random>
#include <set>
#include <string>

#include "support.hpp"

using shmap::errc;
using shmap::Map;
using shmap::Options;
using shmap::Status;
using shmap::detail::SegmentHeader;
using namespace shmap_test;
using namespace std::chrono_literals;

namespace {

// A valid segment with one entry, closed again, ready to be forged.
void make_closed_segment(const std::string& name, std::uint64_t capacity = 1024) {
  Map m = Map::create(name, small_options(capacity));
  REQUIRE(m.insert("k", "v") == Status::ok);
}

// Marks the segment as still initializing by `pid` started at `start_time`.
void forge_initializing(const std::string& file, std::int64_t pid, std::uint64_t start_time) {
  edit_header(file, [&](SegmentHeader& h) {
    h.state = static_cast<std::uint32_t>(shmap::detail::SegmentState::initializing);
    h.fixed.creator_pid = pid;
    h.fixed.creator_start_time = start_time;
  });
}

double ms_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
}

}  // namespace

TEST_CASE("create makes a new empty map that open finds by name") {
  SegmentGuard g;
  {
    Map m = Map::create(g.name(), small_options());
    CHECK(m.size() == 0);
    CHECK(m.name() == g.name());
    CHECK_FALSE(m.read_only());
    REQUIRE(m.insert("alpha", "1") == Status::ok);
  }
  Map again = Map::open(g.name());
  CHECK(again.size() == 1);
  CHECK(again.get("alpha") == std::optional<std::string>("1"));
}

TEST_CASE("create of an existing name fails with already_exists naming the segment") {
  SegmentGuard g;
  Map first = Map::create(g.name(), small_options());
  REQUIRE(first.insert("kept", "yes") == Status::ok);
  REQUIRE_SHMAP_ERROR(Map::create(g.name(), small_options()), errc::already_exists, g.name());
  CHECK(first.get("kept") == std::optional<std::string>("yes"));
}

TEST_CASE("open of a missing name fails with not_found naming the segment") {
  const std::string name = unique_name();
  REQUIRE_SHMAP_ERROR(Map::open(name), errc::not_found, name);
  REQUIRE_SHMAP_ERROR(Map::info(name), errc::not_found, name);
  CHECK_FALSE(file_exists(shm_file(name)));
}

TEST_CASE("open_or_create creates a missing segment with the given options") {
  SegmentGuard g;
  Options o = small_options(3000);
  o.hash_seed = 42;
  Map m = Map::open_or_create(g.name(), o);
  CHECK(m.size() == 0);
  const shmap::Info i = m.info();
  CHECK(i.capacity == 3000);
  CHECK(i.hash_seed == 42);
  CHECK(file_exists(shm_file(g.name())));
}

TEST_CASE("open_or_create opens an existing segment and keeps its entries and geometry") {
  SegmentGuard g;
  {
    Map m = Map::create(g.name(), small_options(1000));
    REQUIRE(m.insert("a", "b") == Status::ok);
  }
  Map m = Map::open_or_create(g.name(), small_options(50000));
  CHECK(m.info().capacity == 1000);
  CHECK(m.size() == 1);
  CHECK(m.get("a") == std::optional<std::string>("b"));
}

TEST_CASE("remove unlinks the name and reports whether it existed") {
  const std::string name = unique_name();
  { Map m = Map::create(name, small_options()); }
  REQUIRE(file_exists(shm_file(name)));
  CHECK(Map::remove(name));
  CHECK_FALSE(file_exists(shm_file(name)));
  CHECK_FALSE(Map::remove(name));
  REQUIRE_SHMAP_ERROR(Map::open(name), errc::not_found, name);
}

TEST_CASE("remove refuses to unlink a file that is not a shmap segment, with bad_magic") {
  TempDir dir;
  const std::string path = dir.file("precious.txt");
  {
    const int fd = ::open(path.c_str(), O_CREAT | O_EXCL | O_WRONLY, 0600);
    REQUIRE(fd >= 0);
    const bool written = write_all(fd, "user data, not a map\n", 21);
    ::close(fd);
    REQUIRE(written);
  }
  REQUIRE_SHMAP_ERROR(Map::remove(path), errc::bad_magic, path);
  CHECK(file_exists(path));
}

TEST_CASE("a map stays usable after its name is removed") {
  const std::string name = unique_name();
  Map m = Map::create(name, small_options());
  REQUIRE(m.insert("before", "1") == Status::ok);
  REQUIRE(Map::remove(name));
  CHECK(m.get("before") == std::optional<std::string>("1"));
  CHECK(m.insert("after", "2") == Status::ok);
  CHECK(m.get("after") == std::optional<std::string>("2"));
  CHECK(m.size() == 2);
}

TEST_CASE("a name can be created again after it was removed") {
  SegmentGuard g;
  {
    Map m = Map::create(g.name(), small_options());
    REQUIRE(m.insert("old", "1") == Status::ok);
  }
  REQUIRE(Map::remove(g.name()));
  Map fresh = Map::create(g.name(), small_options());
  CHECK(fresh.size() == 0);
  CHECK_FALSE(fresh.contains("old"));
}

TEST_CASE("entries persist after every handle is closed until the segment is removed") {
  SegmentGuard g;
  {
    Map m = Map::create(g.name(), small_options());
    for (int i = 0; i < 100; ++i) REQUIRE(m.insert("k" + std::to_string(i), pattern_value(i, i)) == Status::ok);
  }
  Map m = Map::open(g.name());
  REQUIRE(m.size() == 100);
  for (int i = 0; i < 100; ++i) CHECK(m.get("k" + std::to_string(i)) == pattern_value(i, i));
}

TEST_CASE("a created shm segment has permissions 0600 by default") {
  SegmentGuard g;
  Map m = Map::create(g.name(), small_options());
  CHECK(file_mode(shm_file(g.name())) == 0600);
  CHECK(m.info().mode == 0600);
}

TEST_CASE("a custom mode is applied exactly, without the umask") {
  SegmentGuard g;
  const mode_t old = ::umask(022);
  Options o = small_options();
  o.mode = 0666;
  auto created = error_of([&] { Map m = Map::create(g.name(), o); });
  ::umask(old);
  REQUIRE_FALSE(created.has_value());
  CHECK(file_mode(shm_file(g.name())) == 0666);
  CHECK(Map::info(g.name()).mode == 0666);
}

TEST_CASE("a mode of 0640 is applied to a created segment") {
  SegmentGuard g;
  Options o = small_options();
  o.mode = 0640;
  Map m = Map::create(g.name(), o);
  CHECK(file_mode(shm_file(g.name())) == 0640);
}

TEST_CASE("a map can live in a file at a filesystem path") {
  TempDir dir;
  const std::string path = dir.file("map.shmap");
  {
    Map m = Map::create(path, small_options());
    REQUIRE(m.insert("file", "backed") == Status::ok);
    CHECK(m.info().path == path);
  }
  CHECK(file_exists(path));
  CHECK(file_mode(path) == 0600);
  {
    Map m = Map::open(path);
    CHECK(m.get("file") == std::optional<std::string>("backed"));
    REQUIRE_SHMAP_ERROR(Map::create(path, small_options()), errc::already_exists, path);
  }
  CHECK(Map::remove(path));
  CHECK_FALSE(file_exists(path));
  REQUIRE_SHMAP_ERROR(Map::open(path), errc::not_found, path);
}

TEST_CASE("a relative filesystem path is resolved against the working directory") {
  TempDir dir;
  const std::string rel = std::filesystem::relative(dir.file("rel.shmap")).string();
  {
    Map m = Map::create(rel, small_options());
    REQUIRE(m.insert("x", "y") == Status::ok);
  }
  CHECK(file_exists(dir.file("rel.shmap")));
  Map m = Map::open(dir.file("rel.shmap"));
  CHECK(m.get("x") == std::optional<std::string>("y"));
}

TEST_CASE("info reports the geometry, seed, mode and creator of a segment") {
  SegmentGuard g;
  Options o = small_options(1000, 1 << 20);
  o.hash_seed = 0x1234567890abcdefull;
  const auto before = std::chrono::system_clock::now();
  Map m = Map::create(g.name(), o);
  const shmap::Info i = Map::info(g.name());
  CHECK(i.name == g.name());
  CHECK(i.path == shm_file(g.name()));
  CHECK(i.layout_version == shmap::detail::kLayoutVersion);
  CHECK(i.capacity == 1000);
  CHECK(i.index_slots == 2048);
  CHECK(i.min_index_slots == 2048);
  CHECK(i.table_generation == 0);
  CHECK(i.help_slots == 1024);
  // The arena holds the first index table and 1 MiB for records, rounded up
  // to the 2 MiB segment granule.
  CHECK(i.arena_bytes >= (1u << 20) + 2048 * 8);
  CHECK(i.arena_bytes < (1u << 20) + 2048 * 8 + (std::uint64_t{2} << 20));
  CHECK(i.hash_seed == 0x1234567890abcdefull);
  CHECK(i.mode == 0600);
  CHECK(i.creator_pid == ::getpid());
  CHECK(i.total_bytes == std::uint64_t(file_size(shm_file(g.name()))));
  CHECK(i.total_bytes == i.arena_bytes + shmap::detail::kHeaderBytes +
                             shmap::detail::kRegistryEntries * sizeof(shmap::detail::RegistryEntry));
  CHECK(i.total_bytes % (std::uint64_t{2} << 20) == 0);
  CHECK(i.max_bytes >= i.total_bytes);
  const auto unix_ns = [](std::chrono::system_clock::time_point t) {
    return std::uint64_t(std::chrono::duration_cast<std::chrono::nanoseconds>(t.time_since_epoch()).count());
  };
  CHECK(i.created_unix_ns >= unix_ns(before));
  CHECK(i.created_unix_ns <= unix_ns(std::chrono::system_clock::now()));
  const shmap::Info mi = m.info();
  CHECK(mi.total_bytes == i.total_bytes);
  CHECK(mi.hash_seed == i.hash_seed);
}

TEST_CASE("the first index table has the next power of two at or above capacity times 4/3 slots") {
  for (const auto& [capacity, slots] : {std::pair<std::uint64_t, std::uint64_t>{1000, 2048}, {3000, 4096},
                                        {6144, 8192}, {6145, 16384}, {100000, 262144}}) {
    CAPTURE(capacity);
    SegmentGuard g;
    Map m = Map::create(g.name(), small_options(capacity));
    CHECK(m.info().index_slots == slots);
    CHECK(m.stats().index_slots == slots);
    CHECK(m.stats().used_limit >= capacity);
    CHECK(m.stats().used_limit <= slots);
  }
}

TEST_CASE("the default arena holds 256 bytes per key of capacity besides the first index table, and at least 1 MiB") {
  SegmentGuard small, large;
  const std::uint64_t granule = std::uint64_t{2} << 20;
  const std::uint64_t a = Map::create(small.name(), small_options(1000)).info().arena_bytes;
  CHECK(a >= (1u << 20) + 2048 * 8);
  CHECK(a < (1u << 20) + 2048 * 8 + granule);
  const std::uint64_t b = Map::create(large.name(), small_options(1u << 16)).info().arena_bytes;
  CHECK(b >= (256u << 16) + (1u << 17) * 8);
  CHECK(b < (256u << 16) + (1u << 17) * 8 + granule);
}

TEST_CASE("max_bytes caps the segment and must hold its initial size") {
  SegmentGuard g, tiny;
  Options o = small_options(1000);
  o.max_bytes = std::uint64_t{64} << 20;
  CHECK(Map::create(g.name(), o).info().max_bytes == (std::uint64_t{64} << 20));
  o.max_bytes = 4096;
  REQUIRE_SHMAP_ERROR(Map::create(tiny.name(), o), errc::invalid_argument, tiny.name());
  CHECK_FALSE(file_exists(tiny.file()));
}

TEST_CASE("help_slots must be a power of two from 16 to 2^20") {
  for (const std::uint32_t bad : {0u, 8u, 100u, 1u << 21}) {
    CAPTURE(bad);
    SegmentGuard g;
    Options o = small_options(1000);
    o.help_slots = bad;
    REQUIRE_SHMAP_ERROR(Map::create(g.name(), o), errc::invalid_argument, g.name());
  }
  SegmentGuard g;
  Options o = small_options(1000);
  o.help_slots = 16;
  CHECK(Map::create(g.name(), o).info().help_slots == 16);
}

TEST_CASE("a random hash seed is chosen when none is given") {
  SegmentGuard a, b;
  const auto sa = Map::create(a.name(), small_options()).info().hash_seed;
  const auto sb = Map::create(b.name(), small_options()).info().hash_seed;
  CHECK(sa != sb);
}

TEST_CASE("a large arena is reserved sparse and commits only touched pages") {
  SegmentGuard g;
  const std::uint64_t arena = std::uint64_t{8} << 30;
  Map m = Map::create(g.name(), small_options(4096, arena, arena + (std::uint64_t{64} << 20)));
  for (int i = 0; i < 1000; ++i) REQUIRE(m.insert("k" + std::to_string(i), std::string(100, 'x')) == Status::ok);
  struct stat st {};
  REQUIRE(::stat(shm_file(g.name()).c_str(), &st) == 0);
  CHECK(std::uint64_t(st.st_size) >= arena);
  CHECK(std::uint64_t(st.st_blocks) * 512 < (std::uint64_t{32} << 20));
}

TEST_CASE("open refuses a segment with the wrong magic with bad_magic") {
  SegmentGuard g;
  make_closed_segment(g.name());
  edit_header(g.file(), [](SegmentHeader& h) { h.fixed.magic ^= 0xff; });
  REQUIRE_SHMAP_ERROR(Map::open(g.name()), errc::bad_magic, g.name());
  REQUIRE_SHMAP_ERROR(Map::info(g.name()), errc::bad_magic, g.name());
  REQUIRE_SHMAP_ERROR(Map::open_or_create(g.name(), small_options()), errc::bad_magic, g.name());
}

TEST_CASE("open refuses another layout version with version_mismatch") {
  SegmentGuard g;
  make_closed_segment(g.name());
  edit_header(g.file(), [](SegmentHeader& h) { h.fixed.layout_version = shmap::detail::kLayoutVersion + 1; });
  REQUIRE_SHMAP_ERROR(Map::open(g.name()), errc::version_mismatch, g.name());
}

TEST_CASE("open refuses another ABI word with abi_mismatch") {
  SegmentGuard g;
  make_closed_segment(g.name());
  edit_header(g.file(), [](SegmentHeader& h) { h.fixed.abi ^= 1; });
  REQUIRE_SHMAP_ERROR(Map::open(g.name()), errc::abi_mismatch, g.name());
}

TEST_CASE("open refuses a file shorter than a header with truncated") {
  SegmentGuard g;
  make_closed_segment(g.name());
  truncate_file(g.file(), 100);
  REQUIRE_SHMAP_ERROR(Map::open(g.name()), errc::truncated, g.name());
}

TEST_CASE("open refuses a file shorter than the header's total size with truncated") {
  SegmentGuard g;
  make_closed_segment(g.name());
  const off_t full = file_size(g.file());
  truncate_file(g.file(), full - 4096);
  REQUIRE_SHMAP_ERROR(Map::open(g.name()), errc::truncated, g.name());
  truncate_file(g.file(), shmap::detail::kHeaderBytes);
  REQUIRE_SHMAP_ERROR(Map::open(g.name()), errc::truncated, g.name());
}

TEST_CASE("a file longer than its segment opens and keeps working") {
  SegmentGuard g;
  make_closed_segment(g.name());
  truncate_file(g.file(), file_size(g.file()) + (1 << 20));
  Map m = Map::open(g.name());
  CHECK(m.get("k") == std::optional<std::string>("v"));
  CHECK(m.insert("more", "x") == Status::ok);
}

TEST_CASE("open refuses a file of garbage bytes with bad_magic") {
  SegmentGuard g;
  {
    const int fd = ::open(g.file().c_str(), O_CREAT | O_EXCL | O_WRONLY, 0600);
    REQUIRE(fd >= 0);
    const std::string junk = pattern_value(7, 4 << 20);
    const bool written = write_all(fd, junk.data(), junk.size());
    ::close(fd);
    REQUIRE(written);
  }
  REQUIRE_SHMAP_ERROR(Map::open(g.name()), errc::bad_magic, g.name());
}

TEST_CASE("open refuses a header whose checksum does not match with corrupt") {
  SegmentGuard g;
  make_closed_segment(g.name());
  edit_header(g.file(), [](SegmentHeader& h) { h.checksum ^= 1; }, false);
  REQUIRE_SHMAP_ERROR(Map::open(g.name()), errc::corrupt, g.name());
}

TEST_CASE("open refuses a header field changed without its checksum with corrupt") {
  SegmentGuard g;
  make_closed_segment(g.name());
  edit_header(g.file(), [](SegmentHeader& h) { h.fixed.hash_seed += 1; }, false);
  REQUIRE_SHMAP_ERROR(Map::open(g.name()), errc::corrupt, g.name());
}

TEST_CASE("open refuses an inconsistent header geometry with corrupt even when the checksum matches") {
  SegmentGuard g;
  make_closed_segment(g.name());
  SECTION("a smallest table below 16 slots") {
    edit_header(g.file(), [](SegmentHeader& h) { h.fixed.min_log2 = 3; });
  }
  SECTION("a smallest table above the largest") {
    edit_header(g.file(), [](SegmentHeader& h) { h.fixed.min_log2 = 40; });
  }
  SECTION("a migration chunk of more than 2^20 slots") {
    edit_header(g.file(), [](SegmentHeader& h) { h.fixed.chunk_log2 = 21; });
  }
  SECTION("arena reaching past the end of the segment") {
    edit_header(g.file(), [](SegmentHeader& h) { h.fixed.arena_bytes = h.fixed.total_bytes; });
  }
  SECTION("arena offset outside the segment") {
    edit_header(g.file(), [](SegmentHeader& h) { h.fixed.arena_offset = h.fixed.total_bytes + 4096; });
  }
  SECTION("a size cap below the initial size") {
    edit_header(g.file(), [](SegmentHeader& h) { h.fixed.max_bytes = h.fixed.total_bytes - (std::uint64_t{2} << 20); });
  }
  SECTION("a size cap past what 32-bit references address") {
    edit_header(g.file(), [](SegmentHeader& h) { h.fixed.max_bytes = std::uint64_t{64} << 30; });
  }
  SECTION("capacity larger than the first table") {
    edit_header(g.file(), [](SegmentHeader& h) { h.fixed.capacity = (std::uint64_t{1} << h.fixed.min_log2) + 1; });
  }
  SECTION("header size not the layout's") {
    edit_header(g.file(), [](SegmentHeader& h) { h.fixed.header_bytes = 64; });
  }
  REQUIRE_SHMAP_ERROR(Map::open(g.name()), errc::corrupt, g.name());
}

TEST_CASE("open refuses an unknown state word with corrupt") {
  SegmentGuard g;
  make_closed_segment(g.name());
  edit_header(g.file(), [](SegmentHeader& h) { h.state = 0xdeadbeefu; });
  REQUIRE_SHMAP_ERROR(Map::open(g.name()), errc::corrupt, g.name());
}

TEST_CASE("open waits for an initializing segment whose creator is alive, then fails with init_timeout") {
  SegmentGuard g;
  make_closed_segment(g.name());
  forge_initializing(g.file(), ::getpid(), shmap::detail::process_start_time(::getpid()));
  Options o;
  o.open_timeout = 200ms;
  const auto t0 = std::chrono::steady_clock::now();
  REQUIRE_SHMAP_ERROR(Map::open(g.name(), o), errc::init_timeout, g.name());
  const double waited = ms_since(t0);
  CHECK(waited >= 200.0);
  CHECK(waited < 3000.0);
}

TEST_CASE("open reports creator_died at once for an initializing segment whose creator exited") {
  SegmentGuard g;
  make_closed_segment(g.name());
  int hold[2];
  REQUIRE(::pipe(hold) == 0);
  const pid_t child = spawn([&] {
    ::close(hold[1]);
    char c;
    while (::read(hold[0], &c, 1) > 0) {
    }
    return 0;
  });
  ::close(hold[0]);
  const std::uint64_t start = shmap::detail::process_start_time(child);
  ::close(hold[1]);
  REQUIRE(wait_child(child) == 0);
  REQUIRE(start != 0);
  forge_initializing(g.file(), child, start);
  Options o;
  o.open_timeout = 10000ms;
  const auto t0 = std::chrono::steady_clock::now();
  REQUIRE_SHMAP_ERROR(Map::open(g.name(), o), errc::creator_died, g.name());
  CHECK(ms_since(t0) < 2000.0);
}

TEST_CASE("open reports creator_died when the creator's pid now belongs to another process") {
  SegmentGuard g;
  make_closed_segment(g.name());
  // Our own pid with a start time we never had: the recorded creator was an
  // earlier process that had this pid.
  forge_initializing(g.file(), ::getpid(), shmap::detail::process_start_time(::getpid()) + 12345);
  Options o;
  o.open_timeout = 10000ms;
  const auto t0 = std::chrono::steady_clock::now();
  REQUIRE_SHMAP_ERROR(Map::open(g.name(), o), errc::creator_died, g.name());
  CHECK(ms_since(t0) < 2000.0);
}

TEST_CASE("open succeeds when an initializing segment becomes ready within the timeout") {
  SegmentGuard g;
  make_closed_segment(g.name());
  forge_initializing(g.file(), ::getpid(), shmap::detail::process_start_time(::getpid()));
  const std::string file = g.file();
  // The child finishes "initialization" after a short delay, so that open()
  // most likely waits; the outcome must be the same whether it waits or not.
  const pid_t child = spawn([&] {
    const auto until = std::chrono::steady_clock::now() + 50ms;
    while (std::chrono::steady_clock::now() < until) {
    }
    edit_header(file, [](SegmentHeader& h) {
      std::atomic_ref<std::uint32_t>(h.state).store(static_cast<std::uint32_t>(shmap::detail::SegmentState::ready),
                                                     std::memory_order_release);
    });
    return 0;
  });
  Options o;
  o.open_timeout = 20000ms;
  auto opened = error_of([&] {
    Map m = Map::open(g.name(), o);
    CHECK(m.get("k") == std::optional<std::string>("v"));
  });
  CHECK(wait_child(child) == 0);
  CHECK_FALSE(opened.has_value());
}

TEST_CASE("invalid segment names are refused with invalid_argument") {
  std::string name;
  SECTION("empty") { name = ""; }
  SECTION("a lone slash") { name = "/"; }
  SECTION("a directory path") { name = "/a/"; }
  SECTION("an shm name longer than NAME_MAX") { name = "/" + std::string(300, 'n'); }
  REQUIRE_SHMAP_ERROR(Map::create(name, small_options()), errc::invalid_argument, name);
  REQUIRE_SHMAP_ERROR(Map::open(name), errc::invalid_argument, name);
  REQUIRE_SHMAP_ERROR(Map::open_or_create(name, small_options()), errc::invalid_argument, name);
  REQUIRE_SHMAP_ERROR(Map::remove(name), errc::invalid_argument, name);
}

TEST_CASE("a segment name containing a NUL byte is refused with invalid_argument") {
  const std::string base = unique_name();
  const std::string name = base + std::string(1, '\0') + "tail";
  const auto e = error_of([&] { Map m = Map::create(name, small_options()); });
  REQUIRE(e.has_value());
  CHECK(e->code() == shmap::make_error_code(errc::invalid_argument));
  CHECK_FALSE(file_exists(shm_file(base)));
  if (file_exists(shm_file(base))) Map::remove(base);
}

TEST_CASE("create in a directory that does not exist fails with invalid_argument naming the segment") {
  TempDir dir;
  const std::string path = dir.file("missing/map.shmap");
  REQUIRE_SHMAP_ERROR(Map::create(path, small_options()), errc::invalid_argument, path);
}

TEST_CASE("a mode with bits outside the permission bits is refused with invalid_argument") {
  const std::string name = unique_name();
  Options o = small_options();
  o.mode = 0100600;
  REQUIRE_SHMAP_ERROR(Map::create(name, o), errc::invalid_argument, name);
  CHECK_FALSE(file_exists(shm_file(name)));
}

TEST_CASE("a failed OS call is reported with the system category and errno, naming the segment") {
  TempDir dir;
  const auto e = error_of([&] { Map m = Map::open(dir.path()); });
  REQUIRE(e.has_value());
  CHECK(&e->code().category() == &std::system_category());
  CHECK(e->code() == std::errc::is_a_directory);
  CHECK_THAT(std::string(e->what()), Catch::Matchers::Contains(dir.path()));
  CHECK(e->segment() == dir.path());
}

TEST_CASE("create refuses a zero capacity with invalid_argument") {
  const std::string name = unique_name();
  REQUIRE_SHMAP_ERROR(Map::create(name, small_options(0)), errc::invalid_argument, name);
  CHECK_FALSE(file_exists(shm_file(name)));
}

TEST_CASE("create refuses a capacity whose index cannot be addressed with invalid_argument") {
  const std::string name = unique_name();
  REQUIRE_SHMAP_ERROR(Map::create(name, small_options(UINT64_MAX)), errc::invalid_argument, name);
  REQUIRE_SHMAP_ERROR(Map::create(name, small_options(std::uint64_t{1} << 40)), errc::invalid_argument, name);
  CHECK_FALSE(file_exists(shm_file(name)));
}

TEST_CASE("create refuses an arena larger than the 32 GiB limit with invalid_argument") {
  const std::string name = unique_name();
  REQUIRE_SHMAP_ERROR(Map::create(name, small_options(1024, shmap::detail::kMaxArenaBytes + 8)),
                      errc::invalid_argument, name);
  REQUIRE_SHMAP_ERROR(Map::create(name, small_options(1024, UINT64_MAX)), errc::invalid_argument, name);
  CHECK_FALSE(file_exists(shm_file(name)));
}

TEST_CASE("a create that loses to an existing name leaves no temporary file behind") {
  TempDir dir;
  const std::string path = dir.file("taken.shmap");
  { Map m = Map::create(path, small_options()); }
  for (int i = 0; i < 3; ++i)
    REQUIRE_SHMAP_ERROR(Map::create(path, small_options()), errc::already_exists, path);
  std::size_t files = 0;
  for (const auto& entry : std::filesystem::directory_iterator(dir.path())) {
    CAPTURE(entry.path().string());
    ++files;
  }
  CHECK(files == 1);
}

TEST_CASE("a read-only map reads and refuses every write with read_only") {
  SegmentGuard g;
  {
    Map m = Map::create(g.name(), small_options());
    REQUIRE(m.insert("k", "v") == Status::ok);
    REQUIRE(m.put<std::int64_t>("n", 5) == Status::inserted);
  }
  Options ro;
  ro.read_only = true;
  Map m = Map::open(g.name(), ro);
  CHECK(m.read_only());
  CHECK(m.get("k") == std::optional<std::string>("v"));
  CHECK(m.contains("k"));
  CHECK(m.size() == 2);
  std::int64_t n = 0;
  CHECK(m.get_as("n", n) == Status::ok);
  CHECK(n == 5);
  std::size_t walked = 0;
  m.for_each([&](std::string_view, std::string_view) { ++walked; });
  CHECK(walked == 2);
  CHECK(m.stats().live_slots == 2);

  REQUIRE_SHMAP_ERROR(m.insert("new", "x"), errc::read_only, g.name());
  REQUIRE_SHMAP_ERROR(m.insert_or_assign("k", "w"), errc::read_only, g.name());
  REQUIRE_SHMAP_ERROR(m.erase("k"), errc::read_only, g.name());
  REQUIRE_SHMAP_ERROR(m.compare_exchange("k", "v", "w"), errc::read_only, g.name());
  REQUIRE_SHMAP_ERROR(m.fetch_add("n", 1), errc::read_only, g.name());
  REQUIRE_SHMAP_ERROR(m.put<std::int64_t>("n", 6), errc::read_only, g.name());
  CHECK(m.get("k") == std::optional<std::string>("v"));
  CHECK(m.get_as("n", n) == Status::ok);
  CHECK(n == 5);
  CHECK_FALSE(m.contains("new"));
}

TEST_CASE("a read-only map sees writes made through a writable map") {
  SegmentGuard g;
  Map w = Map::create(g.name(), small_options());
  Options ro;
  ro.read_only = true;
  Map r = Map::open(g.name(), ro);
  REQUIRE(w.insert("late", "arrival") == Status::ok);
  CHECK(r.get("late") == std::optional<std::string>("arrival"));
}

TEST_CASE("moving a map transfers the open segment") {
  SegmentGuard g;
  Map a = Map::create(g.name(), small_options());
  REQUIRE(a.insert("x", "1") == Status::ok);
  Map b(std::move(a));
  CHECK(b.get("x") == std::optional<std::string>("1"));
  SegmentGuard g2;
  Map c = Map::create(g2.name(), small_options());
  c = std::move(b);
  CHECK(c.name() == g.name());
  CHECK(c.get("x") == std::optional<std::string>("1"));
  CHECK(c.insert("y", "2") == Status::ok);
}

TEST_CASE("every error code has its own message in the shmap category") {
  std::set<std::string> messages;
  for (int e = int(errc::already_exists); e <= int(errc::read_only); ++e) {
    const std::error_code code = shmap::make_error_code(static_cast<errc>(e));
    CHECK(&code.category() == &shmap::error_category());
    CHECK_FALSE(code.message().empty());
    messages.insert(code.message());
  }
  CHECK(messages.size() == std::size_t(int(errc::read_only) - int(errc::already_exists) + 1));
  CHECK(std::string(shmap::error_category().name()) == "shmap");
  const std::error_code implicit = errc::not_found;
  CHECK(implicit == shmap::make_error_code(errc::not_found));
}

TEST_CASE("every status has its own short name") {
  const Status all[] = {Status::ok,         Status::inserted,   Status::assigned,     Status::exists,
                        Status::absent,     Status::mismatch,   Status::wrong_size,   Status::full_index,
                        Status::full_arena, Status::key_too_long, Status::value_too_long};
  std::set<std::string> names;
  for (Status s : all) names.insert(shmap::to_string(s));
  CHECK(names.size() == std::size(all));
  CHECK(std::string(shmap::to_string(Status::full_index)) == "full_index");
  CHECK(std::string(shmap::to_string(Status::ok)) == "ok");
  CHECK(shmap::succeeded(Status::ok));
  CHECK(shmap::succeeded(Status::inserted));
  CHECK(shmap::succeeded(Status::assigned));
  CHECK_FALSE(shmap::succeeded(Status::exists));
  CHECK_FALSE(shmap::succeeded(Status::full_arena));
}
