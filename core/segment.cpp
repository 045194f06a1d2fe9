// Segment lifecycle.
//
// CREATION IS ATOMIC BY CONSTRUCTION. A creator builds the whole segment in an
// unnamed file (O_TMPFILE in the target directory; a uniquely named temporary
// file where the filesystem lacks O_TMPFILE), sizes it, writes the header with
// state READY, and only then gives it its name with link(2), which fails with
// EEXIST if the name is taken. So of two racing creators exactly one wins, and
// no opener can ever see a half-built segment under the name. A creator that
// dies before the link leaves nothing behind (O_TMPFILE) or only its uniquely
// named temporary file.
//
// The header still carries a state word and the creator's pid + start time: an
// opener that meets a segment whose state is not READY (written by a tool, or a
// future layout that initializes in place) waits up to Options::open_timeout and
// reports errc::creator_died as soon as the recorded creator is gone.
//
// OPENING VALIDATES EVERYTHING before the first access through an offset: magic,
// layout version, ABI word, state, header checksum, file size against the
// header, and the geometry (offsets, power-of-two index, arena bounds). Each
// failure has its own errc and a message naming the segment.
#include "segment.hpp"

#include <fcntl.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <random>
#include <sstream>
#include <thread>

#include "hash.hpp"

namespace shmap::detail {
namespace {

constexpr std::uint64_t kMaxCapacity = std::uint64_t{1} << 31;
constexpr std::uint64_t kMinArenaBytes = 4096;

std::uint64_t round_up(std::uint64_t n, std::uint64_t align) { return (n + align - 1) / align * align; }

std::uint64_t next_pow2(std::uint64_t n) {
  std::uint64_t p = 1;
  while (p < n) p <<= 1;
  return p;
}

std::uint64_t random_seed() {
  std::uint64_t seed = 0;
  if (getrandom(&seed, sizeof seed, 0) != sizeof seed) {
    std::random_device rd;
    seed = (std::uint64_t(rd()) << 32) ^ rd();
  }
  return seed;
}

std::uint64_t now_unix_ns() {
  using namespace std::chrono;
  return std::uint64_t(duration_cast<nanoseconds>(system_clock::now().time_since_epoch()).count());
}

std::string dir_of(const std::string& path) {
  const auto slash = path.rfind('/');
  if (slash == std::string::npos) return ".";
  if (slash == 0) return "/";
  return path.substr(0, slash);
}

struct Fd {
  int fd = -1;
  explicit Fd(int f) : fd(f) {}
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  ~Fd() {
    if (fd >= 0) ::close(fd);
  }
};

struct Geometry {
  std::uint64_t capacity, index_slots, used_limit, registry_offset, index_offset, arena_offset, arena_bytes,
      total_bytes;
};

Geometry plan(std::string_view name, const Options& opts) {
  Geometry g{};
  if (opts.capacity == 0 || opts.capacity > kMaxCapacity)
    throw_error(errc::invalid_argument, name,
                "capacity must be between 1 and " + std::to_string(kMaxCapacity) + " keys, not " +
                    std::to_string(opts.capacity));
  g.capacity = opts.capacity;
  g.index_slots = next_pow2(std::max<std::uint64_t>(16, (opts.capacity * 4 + 2) / 3));
  g.used_limit = g.index_slots - g.index_slots / 8;
  std::uint64_t arena = opts.arena_bytes;
  if (arena == 0) arena = std::min(kMaxArenaBytes, std::max<std::uint64_t>(1u << 20, opts.capacity * 256));
  if (arena < kMinArenaBytes || arena > kMaxArenaBytes)
    throw_error(errc::invalid_argument, name,
                "arena_bytes must be between " + std::to_string(kMinArenaBytes) + " and " +
                    std::to_string(kMaxArenaBytes) + ", not " + std::to_string(arena));
  g.arena_bytes = round_up(arena, 8);
  g.registry_offset = kHeaderBytes;
  g.index_offset = kHeaderBytes + std::uint64_t{kRegistryEntries} * sizeof(RegistryEntry);
  g.arena_offset = round_up(g.index_offset + g.index_slots * 8, kPageBytes);
  g.total_bytes = round_up(g.arena_offset + g.arena_bytes, kSegmentAlign);
  if (opts.mode & ~07777u)
    throw_error(errc::invalid_argument, name, "mode must be permission bits (<= 07777)");
  return g;
}

void init_header(SegmentHeader* h, const Geometry& g, const Options& opts) {
  HeaderFixed& f = h->fixed;
  f.magic = kMagic;
  f.layout_version = kLayoutVersion;
  f.header_bytes = kHeaderBytes;
  f.abi = abi_word();
  f.total_bytes = g.total_bytes;
  f.capacity = g.capacity;
  f.registry_offset = g.registry_offset;
  f.registry_entries = kRegistryEntries;
  f.index_offset = g.index_offset;
  f.index_slots = g.index_slots;
  f.used_limit = g.used_limit;
  f.arena_offset = g.arena_offset;
  f.arena_bytes = g.arena_bytes;
  f.hash_seed = opts.hash_seed ? *opts.hash_seed : random_seed();
  f.creator_pid = ::getpid();
  f.creator_start_time = process_start_time(f.creator_pid);
  f.created_unix_ns = now_unix_ns();
  f.mode = opts.mode;
  f.flags = 0;
  h->checksum = header_checksum(f);
  atom(h->arena_top.value).store(kArenaFirstOffset, std::memory_order_relaxed);
  // Release: orders every header store above before READY. Pairs with the
  // acquire load of `state` in validate_header() (for in-place initializers; our
  // own segments are additionally published by link(2) after this store).
  atom32(h->state).store(static_cast<std::uint32_t>(SegmentState::ready), std::memory_order_release);
}

void* map_fd(std::string_view name, int fd, std::size_t bytes, bool read_only) {
  void* p = ::mmap(nullptr, bytes, read_only ? PROT_READ : PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  if (p == MAP_FAILED) throw_system(name, "mmap of " + std::to_string(bytes) + " bytes", errno);
  return p;
}

std::string hex(std::uint64_t v) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "0x%016llx", static_cast<unsigned long long>(v));
  return buf;
}

// Validates a mapped header and returns the validated private copy of its
// immutable part; `file_bytes` is the file size.
HeaderFixed validate_header(std::string_view name, SegmentHeader* h, std::uint64_t file_bytes,
                            const Options& opts) {
  HeaderFixed f = h->fixed;
  if (f.magic != kMagic)
    throw_error(errc::bad_magic, name, "not a shmap segment: magic is " + hex(f.magic) + ", expected " + hex(kMagic));
  if (f.layout_version != kLayoutVersion)
    throw_error(errc::version_mismatch, name,
                "layout version " + std::to_string(f.layout_version) + ", this library reads version " +
                    std::to_string(kLayoutVersion));
  if (f.abi != abi_word())
    throw_error(errc::abi_mismatch, name,
                "built for another ABI (word size, endianness or struct layout): ABI word " + hex(f.abi) +
                    ", this process has " + hex(abi_word()));

  const auto deadline = std::chrono::steady_clock::now() + opts.open_timeout;
  for (;;) {
    // Acquire: pairs with the release store of READY in init_header(); every
    // header field is visible once READY is.
    const std::uint32_t state = atom32(h->state).load(std::memory_order_acquire);
    if (state == static_cast<std::uint32_t>(SegmentState::ready)) break;
    if (state != static_cast<std::uint32_t>(SegmentState::initializing))
      throw_error(errc::corrupt, name, "unknown state word " + hex(state));
    // Relaxed: the creator may still be writing the header; these two words are
    // only used to ask whether it is alive.
    const auto pid = static_cast<std::int64_t>(
        atom(reinterpret_cast<std::uint64_t&>(h->fixed.creator_pid)).load(std::memory_order_relaxed));
    // Relaxed: as above.
    const std::uint64_t start = atom(h->fixed.creator_start_time).load(std::memory_order_relaxed);
    if (!process_alive(pid, start))
      throw_error(errc::creator_died, name,
                  "still initializing, and its creator (pid " + std::to_string(pid) +
                      ") is gone: remove the segment and create it again");
    if (std::chrono::steady_clock::now() >= deadline)
      throw_error(errc::init_timeout, name,
                  "still initializing after " + std::to_string(opts.open_timeout.count()) +
                      " ms (creator pid " + std::to_string(pid) + " is alive)");
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  f = h->fixed;  // READY: the header is complete and immutable from here on

  if (h->checksum != header_checksum(f))
    throw_error(errc::corrupt, name, "header checksum mismatch: the header was overwritten");
  if (file_bytes < f.total_bytes)
    throw_error(errc::truncated, name,
                "file is " + std::to_string(file_bytes) + " bytes, the header says " + std::to_string(f.total_bytes));
  if (f.flags != 0) throw_error(errc::corrupt, name, "unknown header flags " + hex(f.flags));
  // Every sum below is bounded before it is formed, so none can wrap: the
  // checksum is not a secret, and a hostile header must still be refused.
  const bool geometry_ok =
      f.header_bytes == kHeaderBytes && f.registry_offset == kHeaderBytes && f.registry_entries == kRegistryEntries &&
      f.index_offset == kHeaderBytes + std::uint64_t{kRegistryEntries} * sizeof(RegistryEntry) &&
      f.total_bytes <= file_bytes &&
      f.index_slots >= 16 && f.index_slots <= (std::uint64_t{1} << 32) &&
      (f.index_slots & (f.index_slots - 1)) == 0 && f.used_limit <= f.index_slots &&
      f.capacity <= f.index_slots && f.index_slots * 8 <= f.total_bytes - f.index_offset &&
      f.arena_offset % kPageBytes == 0 && f.arena_offset >= f.index_offset + f.index_slots * 8 &&
      f.arena_offset <= f.total_bytes && f.arena_bytes >= kMinArenaBytes && f.arena_bytes <= kMaxArenaBytes &&
      f.arena_bytes % 8 == 0 && f.arena_bytes <= f.total_bytes - f.arena_offset;
  if (!geometry_ok) throw_error(errc::corrupt, name, "header geometry is inconsistent (offsets or sizes out of range)");
  return f;
}

}  // namespace

std::string segment_path(std::string_view name) {
  if (name.empty()) throw_error(errc::invalid_argument, name, "empty segment name");
  if (name.find('\0') != std::string_view::npos)
    throw_error(errc::invalid_argument, name, "segment name contains a NUL byte");
  if (name.size() > 4000) throw_error(errc::invalid_argument, name, "segment name too long");
  const bool shm_name = name.front() == '/' && name.find('/', 1) == std::string_view::npos;
  if (shm_name) {
    if (name.size() == 1 || name.size() > 255)
      throw_error(errc::invalid_argument, name, "POSIX shm names are '/' followed by 1 to 254 characters");
    if (name == "/." || name == "/..") throw_error(errc::invalid_argument, name, "not a valid shm name");
    return "/dev/shm" + std::string(name);
  }
  if (name.back() == '/') throw_error(errc::invalid_argument, name, "a segment path must name a file, not a directory");
  return std::string(name);
}

std::uint64_t header_checksum(const HeaderFixed& fixed) noexcept {
  return hash_bytes(std::string_view(reinterpret_cast<const char*>(&fixed), sizeof fixed), 0x5eed5eed5eed5eedull);
}

std::uint64_t process_start_time(std::int64_t pid) noexcept try {
  if (pid <= 0) return 0;
  std::ifstream in("/proc/" + std::to_string(pid) + "/stat");
  if (!in) return 0;
  std::string line;
  std::getline(in, line);
  const auto close = line.rfind(')');
  if (close == std::string::npos) return 0;
  std::istringstream rest(line.substr(close + 2));
  std::string field;
  // Fields after "(comm)" start at field 3 (state); starttime is field 22.
  for (int i = 3; i <= 22; ++i) {
    if (!(rest >> field)) return 0;
  }
  return std::strtoull(field.c_str(), nullptr, 10);
} catch (...) {
  return 0;
}

bool process_alive(std::int64_t pid, std::uint64_t start_time, std::uint64_t start_mask) noexcept {
  if (pid <= 0) return false;
  if (::kill(static_cast<pid_t>(pid), 0) != 0 && errno == ESRCH) return false;
  const std::uint64_t now = process_start_time(pid);
  if (now == 0 || start_time == 0) return true;
  return (now & start_mask) == start_time;
}

Mapping::Mapping(Mapping&& o) noexcept
    : name(std::move(o.name)),
      path(std::move(o.path)),
      base(o.base),
      bytes(o.bytes),
      read_only(o.read_only),
      fixed(o.fixed) {
  o.base = nullptr;
  o.bytes = 0;
}

Mapping& Mapping::operator=(Mapping&& o) noexcept {
  if (this != &o) {
    if (base) ::munmap(base, bytes);
    name = std::move(o.name);
    path = std::move(o.path);
    base = o.base;
    bytes = o.bytes;
    read_only = o.read_only;
    fixed = o.fixed;
    o.base = nullptr;
    o.bytes = 0;
  }
  return *this;
}

Mapping::~Mapping() {
  if (base) ::munmap(base, bytes);
}

Mapping create_segment(std::string_view name, const Options& opts) {
  const std::string path = segment_path(name);
  if (opts.read_only) throw_error(errc::invalid_argument, name, "cannot create a segment read-only");
  const Geometry g = plan(name, opts);
  const std::string dir = dir_of(path);

  struct statvfs fs {};
  if (::statvfs(dir.c_str(), &fs) != 0) {
    if (errno == ENOENT) throw_error(errc::invalid_argument, name, "directory '" + dir + "' does not exist");
    throw_system(name, "statvfs('" + dir + "')", errno);
  }
  // Checked against the space free now: pages are committed on touch, and a
  // full filesystem would kill the writer touching a new page with SIGBUS.
  // (Other files can still fill it later; see the caveats in docs/api.md.)
  const std::uint64_t fs_free = std::uint64_t(fs.f_bavail) * fs.f_frsize;
  if (fs.f_blocks != 0 && g.total_bytes > fs_free)
    throw_error(errc::invalid_argument, name,
                "needs " + std::to_string(g.total_bytes) + " bytes but the filesystem at '" + dir + "' has only " +
                    std::to_string(fs_free) + " free (pages are committed on touch; a full filesystem would kill " +
                    "writers with SIGBUS)");

  // An unnamed file first; a uniquely named temporary where O_TMPFILE is unsupported.
  std::string temp_path;
  int raw = ::open(dir.c_str(), O_TMPFILE | O_RDWR | O_CLOEXEC, opts.mode);
  if (raw < 0) {
    if (errno != EOPNOTSUPP && errno != EISDIR && errno != EINVAL && errno != ENOENT)
      throw_system(name, "open(O_TMPFILE) in '" + dir + "'", errno);
    static std::atomic<unsigned> counter{0};
    // Relaxed: only uniqueness of the counter value matters.
    temp_path = path + ".shmap-init." + std::to_string(::getpid()) + "." +
                std::to_string(counter.fetch_add(1, std::memory_order_relaxed));
    raw = ::open(temp_path.c_str(), O_CREAT | O_EXCL | O_RDWR | O_CLOEXEC, opts.mode);
    if (raw < 0) throw_system(name, "open('" + temp_path + "')", errno);
  }
  Fd fd(raw);
  auto drop_temp = [&] {
    if (!temp_path.empty()) ::unlink(temp_path.c_str());
  };
  if (::fchmod(fd.fd, opts.mode) != 0 || ::ftruncate(fd.fd, static_cast<off_t>(g.total_bytes)) != 0) {
    const int err = errno;
    drop_temp();
    throw_system(name, "sizing the segment to " + std::to_string(g.total_bytes) + " bytes", err);
  }
  Mapping m;
  m.name = std::string(name);
  m.path = path;
  m.bytes = g.total_bytes;
  try {
    m.base = map_fd(name, fd.fd, g.total_bytes, false);
  } catch (...) {
    drop_temp();
    throw;
  }
  init_header(m.header(), g, opts);
  m.fixed = m.header()->fixed;

  // Publish under the name: link(2) is atomic and fails if the name exists.
  int rc;
  if (temp_path.empty()) {
    const std::string self = "/proc/self/fd/" + std::to_string(fd.fd);
    rc = ::linkat(AT_FDCWD, self.c_str(), AT_FDCWD, path.c_str(), AT_SYMLINK_FOLLOW);
  } else {
    rc = ::link(temp_path.c_str(), path.c_str());
  }
  const int err = errno;
  drop_temp();
  if (rc != 0) {
    if (err == EEXIST) throw_error(errc::already_exists, name, "already exists (" + path + ")");
    if (err == ENOENT) throw_error(errc::invalid_argument, name, "directory '" + dir + "' does not exist");
    throw_system(name, "link to '" + path + "'", err);
  }
  return m;
}

Mapping open_segment(std::string_view name, const Options& opts) {
  const std::string path = segment_path(name);
  const int raw = ::open(path.c_str(), (opts.read_only ? O_RDONLY : O_RDWR) | O_CLOEXEC);
  if (raw < 0) {
    if (errno == ENOENT) throw_error(errc::not_found, name, "does not exist (" + path + ")");
    throw_system(name, "open('" + path + "')", errno);
  }
  Fd fd(raw);
  struct stat st {};
  if (::fstat(fd.fd, &st) != 0) throw_system(name, "fstat", errno);
  if (!S_ISREG(st.st_mode)) throw_error(errc::invalid_argument, name, "'" + path + "' is not a regular file");
  const auto file_bytes = static_cast<std::uint64_t>(st.st_size);

  std::uint64_t magic = 0;
  if (file_bytes >= sizeof magic) {
    if (::pread(fd.fd, &magic, sizeof magic, 0) != static_cast<ssize_t>(sizeof magic))
      throw_system(name, "pread of the header", errno);
    if (magic != kMagic)
      throw_error(errc::bad_magic, name, "not a shmap segment: magic is " + hex(magic) + ", expected " + hex(kMagic));
  }
  if (file_bytes < kHeaderBytes)
    throw_error(errc::truncated, name,
                "file is " + std::to_string(file_bytes) + " bytes, smaller than a shmap header (" +
                    std::to_string(kHeaderBytes) + ")");

  Mapping m;
  m.name = std::string(name);
  m.path = path;
  m.read_only = opts.read_only;
  m.bytes = file_bytes;
  m.base = map_fd(name, fd.fd, file_bytes, opts.read_only);
  m.fixed = validate_header(name, m.header(), file_bytes, opts);
  return m;
}

bool remove_segment(std::string_view name) {
  const std::string path = segment_path(name);
  const int raw = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
  if (raw < 0) {
    if (errno == ENOENT) return false;
    throw_system(name, "open('" + path + "')", errno);
  }
  {
    Fd fd(raw);
    std::uint64_t magic = 0;
    if (::pread(fd.fd, &magic, sizeof magic, 0) != static_cast<ssize_t>(sizeof magic) || magic != kMagic)
      throw_error(errc::bad_magic, name,
                  "refusing to remove '" + path + "': it is not a shmap segment (no shmap magic number)");
  }
  if (::unlink(path.c_str()) == 0) return true;
  if (errno == ENOENT) return false;
  throw_system(name, "unlink('" + path + "')", errno);
}

}  // namespace shmap::detail
