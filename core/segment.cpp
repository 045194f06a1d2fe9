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
// header, and the geometry (offsets, table sizes, arena bounds). Each failure
// has its own errc and a message naming the segment.
//
// THE FILE GROWS. A process reserves address space for the largest the file
// may become (HeaderFixed::max_bytes) and maps the file into its front; the
// arena grows the file (fallocate of its new last granule, which never
// shrinks a file and commits one granule), and each process maps the new
// part in place when it first meets an offset past its mapping.
#include "segment.hpp"

#include <fcntl.h>
#include <pthread.h>
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
#include <mutex>
#include <random>
#include <sstream>
#include <thread>

#include "hash.hpp"

namespace shmap::detail {
namespace {

constexpr std::uint64_t kMaxCapacity = std::uint64_t{1} << 28;
constexpr std::uint64_t kMinArenaBytes = 4096;

std::uint64_t round_up(std::uint64_t n, std::uint64_t align) {
  return (n + align - 1) / align * align;
}

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
  std::uint64_t capacity, min_log2, chunk_log2, run_pages, arena_bytes, total_bytes, max_bytes;
};

constexpr std::uint64_t kArenaOffset = kHeaderBytes + std::uint64_t{kRegistryEntries} * sizeof(RegistryEntry);
constexpr std::uint64_t kMaxSegmentBytes =
    (kArenaOffset + kMaxArenaBytes + kSegmentAlign - 1) / kSegmentAlign * kSegmentAlign;
static_assert(kArenaOffset % kPageBytes == 0, "the arena starts page aligned");
// The first table's run starts at arena offset kFirstRunOffset (page aligned);
// it covers [kArenaFirstOffset, kFirstRunOffset) as a claimed run would.
constexpr std::uint64_t kFirstRunOffset = CarveClaim::run_start(kArenaFirstOffset);

std::uint32_t log2_of(std::uint64_t pow2) {
  return std::uint32_t(63 - __builtin_clzll(pow2));
}

Geometry plan(std::string_view name, const Options& opts, std::uint64_t fs_bytes) {
  Geometry g{};
  if (opts.capacity == 0 || opts.capacity > kMaxCapacity)
    throw_error(errc::invalid_argument, name,
                "capacity must be between 1 and " + std::to_string(kMaxCapacity) + " keys, not " +
                    std::to_string(opts.capacity));
  if (opts.help_slots < 16 || opts.help_slots > (1u << 20) || (opts.help_slots & (opts.help_slots - 1)) != 0)
    throw_error(errc::invalid_argument, name,
                "help_slots must be a power of two from 16 to 2^20, not " + std::to_string(opts.help_slots));
  g.capacity = opts.capacity;
  g.min_log2 = log2_of(next_pow2(std::max<std::uint64_t>(16, (opts.capacity * 4 + 2) / 3)));
  g.chunk_log2 = log2_of(opts.help_slots);
  g.run_pages = table_pages(std::uint32_t(g.min_log2), std::uint32_t(g.chunk_log2));
  std::uint64_t records = opts.arena_bytes;
  if (records == 0) records = std::min(kMaxArenaBytes / 2, std::max<std::uint64_t>(1u << 20, opts.capacity * 256));
  if (records < kMinArenaBytes || records > kMaxArenaBytes)
    throw_error(errc::invalid_argument, name,
                "arena_bytes must be between " + std::to_string(kMinArenaBytes) + " and " +
                    std::to_string(kMaxArenaBytes) + ", not " + std::to_string(records));
  const std::uint64_t first_top = kFirstRunOffset + g.run_pages * kPageBytes;
  if (first_top + records > kMaxArenaBytes)
    throw_error(errc::invalid_argument, name, "the first index table and arena_bytes exceed the 32 GiB arena");
  g.total_bytes = round_up(kArenaOffset + first_top + records, kSegmentAlign);
  g.arena_bytes = g.total_bytes - kArenaOffset;
  // The default cap: what the filesystem holds (its total size), within what
  // 32-bit record references address.
  std::uint64_t max = opts.max_bytes != 0 ? opts.max_bytes : (fs_bytes != 0 ? fs_bytes : kMaxSegmentBytes);
  max = std::min(round_up(max, kSegmentAlign), kMaxSegmentBytes);
  if (opts.max_bytes != 0 && max < g.total_bytes)
    throw_error(errc::invalid_argument, name,
                "max_bytes (" + std::to_string(opts.max_bytes) + ") is smaller than the segment's initial size (" +
                    std::to_string(g.total_bytes) + " bytes)");
  g.max_bytes = std::max(max, g.total_bytes);
  if (opts.mode & ~07777u) throw_error(errc::invalid_argument, name, "mode must be permission bits (<= 07777)");
  return g;
}

// Arena bytes whose file blocks create allocates: the first table and the
// first kReserveAheadBytes of records (all of a smaller arena).
std::uint64_t initial_reserve(const Geometry& g) {
  return std::min(g.arena_bytes, kFirstRunOffset + g.run_pages * kPageBytes + kReserveAheadBytes);
}

void init_header(SegmentHeader* h, const Geometry& g, const Options& opts) {
  HeaderFixed& f = h->fixed;
  f.magic = kMagic;
  f.layout_version = kLayoutVersion;
  f.header_bytes = kHeaderBytes;
  f.abi = abi_word();
  f.total_bytes = g.total_bytes;
  f.max_bytes = g.max_bytes;
  f.capacity = g.capacity;
  f.registry_offset = kHeaderBytes;
  f.registry_entries = kRegistryEntries;
  f.arena_offset = kArenaOffset;
  f.arena_bytes = g.arena_bytes;
  f.min_log2 = std::uint32_t(g.min_log2);
  f.chunk_log2 = std::uint32_t(g.chunk_log2);
  f.hash_seed = opts.hash_seed ? *opts.hash_seed : random_seed();
  f.creator_pid = ::getpid();
  f.creator_start_time = process_start_time(f.creator_pid);
  f.created_unix_ns = now_unix_ns();
  f.mode = opts.mode;
  f.flags = 0;
  h->checksum = header_checksum(f);
  // The first table: run 0, claimed from the first arena byte to the end of
  // its pages (the segment is private until link(2), so no claim protocol).
  // Relaxed (all): published by the release store of READY below.
  atom(h->runs[0].geom)
      .store(RunGeom::make(kFirstRunOffset / kPageBytes, g.run_pages, (kFirstRunOffset - kArenaFirstOffset) / 8).raw,
             std::memory_order_relaxed);
  atom(h->runs[0].state)
      .store(RunState::make(RunState::table, 0, std::uint32_t(g.min_log2)).raw, std::memory_order_relaxed);
  atom(h->tables).store(TablesWord::stable(0, 0, std::uint32_t(g.min_log2)).raw, std::memory_order_relaxed);
  atom(h->arena_bytes).store(g.arena_bytes, std::memory_order_relaxed);
  atom(h->arena_reserved).store(initial_reserve(g), std::memory_order_relaxed);
  atom(h->arena_top.value).store(kFirstRunOffset + g.run_pages * kPageBytes, std::memory_order_relaxed);
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
HeaderFixed validate_header(std::string_view name, SegmentHeader* h, std::uint64_t file_bytes, const Options& opts) {
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
                  "still initializing after " + std::to_string(opts.open_timeout.count()) + " ms (creator pid " +
                      std::to_string(pid) + " is alive)");
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
      f.arena_offset == kArenaOffset && f.total_bytes <= file_bytes && f.total_bytes <= f.max_bytes &&
      f.max_bytes <= kMaxSegmentBytes && f.max_bytes % kSegmentAlign == 0 && f.total_bytes > f.arena_offset &&
      f.arena_bytes == f.total_bytes - f.arena_offset && f.arena_bytes >= kMinArenaBytes &&
      f.min_log2 >= kMinTableLog2 && f.min_log2 <= kMaxTableLog2 && f.chunk_log2 >= 4 && f.chunk_log2 <= 20 &&
      f.capacity >= 1 && f.capacity <= (std::uint64_t{1} << f.min_log2);
  if (!geometry_ok) throw_error(errc::corrupt, name, "header geometry is inconsistent (offsets or sizes out of range)");
  // The arena's current size (it grows; not covered by the checksum).
  // Relaxed: a size, checked against the file here and at every use.
  const std::uint64_t arena_now = atom(h->arena_bytes).load(std::memory_order_relaxed);
  if (arena_now < f.arena_bytes || arena_now > f.max_bytes - f.arena_offset)
    throw_error(errc::corrupt, name, "the arena's current size (" + std::to_string(arena_now) + ") is out of range");
  if (file_bytes < f.arena_offset + arena_now)
    throw_error(errc::truncated, name,
                "file is " + std::to_string(file_bytes) + " bytes, the arena needs " +
                    std::to_string(f.arena_offset + arena_now));
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
      reserved(o.reserved),
      fd(o.fd),
      granule(o.granule),
      read_only(o.read_only),
      fixed(o.fixed) {
  // Relaxed: a move happens before the mapping is shared with other threads.
  mapped_.store(o.mapped_.load(std::memory_order_relaxed), std::memory_order_relaxed);
  o.base = nullptr;
  o.reserved = 0;
  o.fd = -1;
}

Mapping& Mapping::operator=(Mapping&& o) noexcept {
  if (this != &o) {
    release();
    name = std::move(o.name);
    path = std::move(o.path);
    base = o.base;
    reserved = o.reserved;
    fd = o.fd;
    granule = o.granule;
    read_only = o.read_only;
    fixed = o.fixed;
    // Relaxed: as in the move constructor.
    mapped_.store(o.mapped_.load(std::memory_order_relaxed), std::memory_order_relaxed);
    o.base = nullptr;
    o.reserved = 0;
    o.fd = -1;
  }
  return *this;
}

void Mapping::release() noexcept {
  if (base) ::munmap(base, reserved);
  if (fd >= 0) ::close(fd);
  base = nullptr;
  fd = -1;
}

Mapping::~Mapping() {
  release();
}

namespace {

// Serializes the growth of this process's mappings (the slow path of
// ensure_mapped, a few times per doubling of the arena): two threads that
// both saw the old size would otherwise map the same range twice. Mapping it
// again over itself is harmless to the kernel (the same file pages), but a
// concurrent reader of that range is then reading memory that is being
// replaced, which ThreadSanitizer reports and no contract should rely on.
// Process-local; never held across a step in shared memory. Taken around
// fork() so that a child never inherits it locked.
std::mutex g_map_growth;
const bool g_map_growth_atfork = [] {
  return ::pthread_atfork([] { g_map_growth.lock(); }, [] { g_map_growth.unlock(); }, [] { g_map_growth.unlock(); }) ==
         0;
}();

}  // namespace

bool Mapping::ensure_mapped(std::uint64_t end) noexcept {
  (void)g_map_growth_atfork;
  std::uint64_t have = mapped();
  if (end <= have) return true;
  if (end > reserved) return false;
  const std::lock_guard<std::mutex> serial(g_map_growth);
  have = mapped();  // another thread may have mapped it meanwhile
  if (end <= have) return true;
  struct stat st {};
  if (::fstat(fd, &st) != 0) return false;
  const auto file = static_cast<std::uint64_t>(st.st_size) / kPageBytes * kPageBytes;
  const std::uint64_t target = std::min({round_up(end, kSegmentAlign), file, std::uint64_t(reserved)});
  if (target < end) return false;  // the file is shorter than what the header says it holds
  void* p = ::mmap(static_cast<char*>(base) + have, target - have, read_only ? PROT_READ : PROT_READ | PROT_WRITE,
                   MAP_SHARED | MAP_FIXED, fd, static_cast<off_t>(have));
  if (p == MAP_FAILED) return false;
  // Release: publishes the new mapping to this process's other threads (the
  // acquire in mapped()); the kernel made it usable before mmap returned.
  while (have < target &&
         !mapped_.compare_exchange_weak(have, target, std::memory_order_release, std::memory_order_acquire)) {
  }
  return true;
}

int Mapping::grow_file(std::uint64_t end) noexcept {
  const std::uint64_t unit = std::max<std::uint64_t>(granule, kPageBytes);
  if (end < unit || end % unit != 0) return EINVAL;
  if (::fallocate(fd, 0, static_cast<off_t>(end - unit), static_cast<off_t>(unit)) == 0) return 0;
  const int err = errno;
  if (err != EOPNOTSUPP && err != ENOSYS) return err;
  // No fallocate here: extend with ftruncate, only ever upwards. (Two
  // processes racing here could shrink it; filesystems without fallocate are
  // documented as unsupported for growth.)
  struct stat st {};
  if (::fstat(fd, &st) != 0) return errno;
  if (static_cast<std::uint64_t>(st.st_size) >= end) return 0;
  return ::ftruncate(fd, static_cast<off_t>(end)) == 0 ? 0 : errno;
}

int Mapping::reserve(std::uint64_t offset, std::uint64_t bytes) noexcept {
  if (bytes == 0) return 0;
  const std::uint64_t unit = std::max<std::uint64_t>(granule, kPageBytes);
  const std::uint64_t from = offset / unit * unit, to = round_up(offset + bytes, unit);
  for (;;) {
    if (::fallocate(fd, FALLOC_FL_KEEP_SIZE, static_cast<off_t>(from), static_cast<off_t>(to - from)) == 0) return 0;
    if (errno == EINTR) continue;
    return errno == EOPNOTSUPP || errno == ENOSYS ? 0 : errno;
  }
}

int Mapping::punch(std::uint64_t offset, std::uint64_t bytes) noexcept {
  const std::uint64_t unit = std::max<std::uint64_t>(granule, kPageBytes);
  const std::uint64_t from = round_up(offset, unit);
  const std::uint64_t to = (offset + bytes) / unit * unit;
  if (to <= from) return 0;
  return ::fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, static_cast<off_t>(from),
                     static_cast<off_t>(to - from)) == 0
             ? 0
             : errno;
}

namespace {

// Reserves address space for the whole life of the segment and maps the
// first `file_bytes` of the file into its front.
void reserve_and_map(Mapping& m, std::uint64_t file_bytes) {
  const std::uint64_t reserve = std::max(m.fixed.max_bytes, round_up(file_bytes, kSegmentAlign));
  void* r = ::mmap(nullptr, reserve, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  if (r == MAP_FAILED) throw_system(m.name, "reserving " + std::to_string(reserve) + " bytes of address space", errno);
  const std::uint64_t initial = file_bytes / kPageBytes * kPageBytes;
  void* p = ::mmap(r, initial, m.read_only ? PROT_READ : PROT_READ | PROT_WRITE, MAP_SHARED | MAP_FIXED, m.fd, 0);
  if (p == MAP_FAILED) {
    const int err = errno;
    ::munmap(r, reserve);
    throw_system(m.name, "mmap of " + std::to_string(initial) + " bytes", err);
  }
  m.base = r;
  m.reserved = reserve;
  if (!m.ensure_mapped(initial)) {
    // Cannot happen: the range is mapped already; ensure_mapped just records it.
    throw_error(errc::truncated, m.name, "the file shrank while it was being mapped");
  }
}

std::uint64_t granule_of(int fd) {
  struct stat st {};
  if (::fstat(fd, &st) != 0) return kPageBytes;
  return std::clamp<std::uint64_t>(static_cast<std::uint64_t>(st.st_blksize), kPageBytes, kSegmentAlign);
}

}  // namespace

Mapping create_segment(std::string_view name, const Options& opts) {
  const std::string path = segment_path(name);
  if (opts.read_only) throw_error(errc::invalid_argument, name, "cannot create a segment read-only");
  const std::string dir = dir_of(path);

  struct statvfs fs {};
  if (::statvfs(dir.c_str(), &fs) != 0) {
    if (errno == ENOENT) throw_error(errc::invalid_argument, name, "directory '" + dir + "' does not exist");
    throw_system(name, "statvfs('" + dir + "')", errno);
  }
  const Geometry g = plan(name, opts, std::uint64_t(fs.f_blocks) * fs.f_frsize);
  // Checked against the space free now, so that an arena_bytes the
  // filesystem cannot hold is refused at once. The pages themselves are
  // reserved as they are needed (fallocate, ahead of carving): when other
  // files fill the filesystem later, writers get full_arena, not SIGBUS.
  const std::uint64_t fs_free = std::uint64_t(fs.f_bavail) * fs.f_frsize;
  if (fs.f_blocks != 0 && g.total_bytes > fs_free)
    throw_error(errc::invalid_argument, name,
                "needs " + std::to_string(g.total_bytes) + " bytes but the filesystem at '" + dir + "' has only " +
                    std::to_string(fs_free) + " free");

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
  Mapping m;
  m.name = std::string(name);
  m.path = path;
  m.fd = raw;  // owned by m from here on
  auto drop_temp = [&] {
    if (!temp_path.empty()) ::unlink(temp_path.c_str());
  };
  if (::fchmod(m.fd, opts.mode) != 0 || ::ftruncate(m.fd, static_cast<off_t>(g.total_bytes)) != 0) {
    const int err = errno;
    drop_temp();
    throw_system(name, "sizing the segment to " + std::to_string(g.total_bytes) + " bytes", err);
  }
  m.granule = granule_of(m.fd);
  m.fixed.max_bytes = g.max_bytes;
  // The header, the first table and the first records get their file blocks
  // now, so no later touch of them can fault for want of space (registry
  // entries are reserved as they are first claimed: registry.cpp).
  int reserve_err = m.reserve(0, kHeaderBytes);
  if (reserve_err == 0) reserve_err = m.reserve(kArenaOffset, initial_reserve(g));
  if (reserve_err != 0) {
    drop_temp();
    throw_system(name,
                 "reserving the header, the first index table and " + std::to_string(kReserveAheadBytes) +
                     " arena bytes in '" + dir + "' (fallocate)",
                 reserve_err);
  }
  try {
    reserve_and_map(m, g.total_bytes);
  } catch (...) {
    drop_temp();
    throw;
  }
  init_header(m.header(), g, opts);
  m.fixed = m.header()->fixed;

  // Publish under the name: link(2) is atomic and fails if the name exists.
  int rc;
  if (temp_path.empty()) {
    const std::string self = "/proc/self/fd/" + std::to_string(m.fd);
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
  Mapping m;
  m.name = std::string(name);
  m.path = path;
  m.read_only = opts.read_only;
  m.fd = raw;  // owned by m from here on
  struct stat st {};
  if (::fstat(m.fd, &st) != 0) throw_system(name, "fstat", errno);
  if (!S_ISREG(st.st_mode)) throw_error(errc::invalid_argument, name, "'" + path + "' is not a regular file");
  const auto file_bytes = static_cast<std::uint64_t>(st.st_size);

  std::uint64_t magic = 0;
  if (file_bytes >= sizeof magic) {
    if (::pread(m.fd, &magic, sizeof magic, 0) != static_cast<ssize_t>(sizeof magic))
      throw_system(name, "pread of the header", errno);
    if (magic != kMagic)
      throw_error(errc::bad_magic, name, "not a shmap segment: magic is " + hex(magic) + ", expected " + hex(kMagic));
  }
  if (file_bytes < kHeaderBytes)
    throw_error(errc::truncated, name,
                "file is " + std::to_string(file_bytes) + " bytes, smaller than a shmap header (" +
                    std::to_string(kHeaderBytes) + ")");
  m.granule = granule_of(m.fd);

  // Validate through a temporary mapping of the file as it is, then reserve
  // the address space the validated header asks for and map it there.
  {
    const std::uint64_t probe = file_bytes / kPageBytes * kPageBytes;
    void* p = map_fd(name, m.fd, probe, opts.read_only);
    HeaderFixed f{};
    try {
      f = validate_header(name, static_cast<SegmentHeader*>(p), file_bytes, opts);
    } catch (...) {
      ::munmap(p, probe);
      throw;
    }
    ::munmap(p, probe);
    m.fixed = f;
  }
  reserve_and_map(m, file_bytes);
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
