// shmap: a lock-free concurrent hash map in a POSIX shared-memory segment.
//
// Any number of processes (and threads) create or open the same named map and
// insert, read, update and erase byte-string keys and values concurrently, with
// no lock anywhere: a process killed at any instruction cannot block the others.
//
// WHAT YOU GET
//   - Lock-free writers (insert, assign, erase, compare_exchange, fetch_add):
//     some operation always completes; no operation waits for another process.
//   - Reads never write shared memory: they copy the value out and validate it,
//     retrying if a writer recycled the record meanwhile. A map can be opened
//     read-only.
//   - Binary-safe keys and values (any bytes, NUL included, empty values).
//
//   - No preset size: the index grows (and rebuilds, dropping the slots of
//     erased keys, and shrinks) online while every process keeps working, and
//     the arena grows with it, up to Options::max_bytes.
//
// LIMITATIONS (see docs/api.md, "Caveats")
//   - Keys are at most kMaxKeyBytes bytes, values at most kMaxValueBytes bytes.
//   - The arena (records and index tables) is at most 32 GiB (records are
//     addressed in 8-byte units by a 32-bit reference), and an index table at
//     most 2^29 slots: about 400 million keys.
//   - Status::full_arena when the segment reached max_bytes (or the filesystem
//     is full) and no block of the record's size is free; Status::full_index
//     only when a migration cannot start (no room for a new table).
#pragma once

#include <sys/types.h>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <system_error>
#include <type_traits>
#include <vector>

namespace shmap {

inline constexpr std::size_t kMaxKeyBytes = 4095;
inline constexpr std::size_t kMaxValueBytes = (std::size_t{1} << 20) - 1;

// ---------------------------------------------------------------------------
// Errors: creation/opening failures and corrupt segments throw shmap::Error.
// Expected outcomes on the hot path (absent, exists, full, too long) are
// Status values, never exceptions.
// ---------------------------------------------------------------------------
enum class errc : int {
  already_exists = 1,  // create(): a segment of that name exists
  not_found,           // open(): no segment of that name
  bad_magic,           // not a shmap segment (wrong magic number)
  version_mismatch,    // another layout version
  abi_mismatch,        // built for another word size/endianness/struct layout
  truncated,           // the file is shorter than the header says / than a header
  corrupt,             // header checksum or geometry invalid, or a bad offset found
  init_timeout,        // the creator is alive but did not finish initializing in time
  creator_died,        // the creator died before finishing initialization
  invalid_argument,    // bad name or options
  read_only,           // a write through a map opened read-only
  too_many_processes,  // every process-registry entry belongs to a live process
  busy,                // repair needs the map to itself: other processes are attached, or a repair runs
};
// Failed OS calls throw shmap::Error with std::system_category() and errno
// (compare with std::errc::permission_denied, ...); the message names the call.

const std::error_category& error_category() noexcept;
std::error_code make_error_code(errc e) noexcept;

class Error : public std::system_error {
 public:
  // `what` is the whole message ("shmap: segment '/jobs': <cause>").
  Error(std::error_code code, std::string segment, std::string what);
  const char* what() const noexcept override { return what_.c_str(); }
  const std::string& segment() const noexcept { return segment_; }

 private:
  std::string segment_;
  std::string what_;
};

enum class Status : std::uint8_t {
  ok,              // done: insert inserted, compare_exchange swapped, fetch_add added, get_as read
  inserted,        // insert_or_assign/fetch_add: the key was absent and is now inserted
  assigned,        // insert_or_assign: the key existed and its value was replaced
  exists,          // insert: the key is already present; nothing changed
  absent,          // the key is not present; nothing changed
  mismatch,        // compare_exchange: the current value differs from `expected`
  wrong_size,      // fetch_add/get_as: the stored value is not sizeof(T) bytes
  full_index,      // no free index slot; nothing changed
  full_arena,      // no arena room for the record; nothing changed
  key_too_long,    // key longer than kMaxKeyBytes; nothing changed
  value_too_long,  // value longer than kMaxValueBytes; nothing changed
};

// A short English name for a status ("full_index", ...), for messages.
const char* to_string(Status s) noexcept;

// True for the statuses that mean the write took effect.
constexpr bool succeeded(Status s) noexcept {
  return s == Status::ok || s == Status::inserted || s == Status::assigned;
}

struct Options {
  // Keys the map is expected to hold (1 to 2^28): a size hint. The first
  // index table gets the next power of two >= max(16, capacity*4/3) slots, so
  // `capacity` keys fit without a migration; the index grows past it online,
  // and never shrinks below it.
  std::uint64_t capacity = 1u << 16;
  // Bytes of arena for records at creation (besides the first index table).
  // 0 derives 256 bytes per key of capacity (at least 1 MiB). The arena grows
  // past it as records need room. The file is sparse: arena pages are
  // allocated from the filesystem (fallocate) 64 KiB ahead of use, so a full
  // filesystem is full_arena; index tables are allocated whole.
  std::uint64_t arena_bytes = 0;
  // The largest the segment file may grow to, in bytes (rounded up to 2 MiB;
  // at most the 32 GiB arena plus the header and registry). 0: the size of
  // the filesystem that holds it. Each process reserves this much address
  // space (not memory) for its mapping.
  std::uint64_t max_bytes = 0;
  // Slots of the old table that one write moves while a migration runs (a
  // power of two, 16 to 2^20): the extra work a write may do. Larger means
  // fewer, longer pauses.
  std::uint32_t help_slots = 1024;
  // Permission bits of a created segment (the umask is not applied).
  mode_t mode = 0600;
  // Hash seed; random when not given.
  std::optional<std::uint64_t> hash_seed;
  // How long open() waits for a segment that is still initializing, and a
  // writable open() for a repair that another process is running.
  std::chrono::milliseconds open_timeout{5000};
  // Map the segment read-only (open() only): writes throw Error(errc::read_only)
  // (after the key/value length checks, which return their Status first).
  bool read_only = false;
  // A writable open first recovers the registry entries of processes that
  // died attached (recover()), so what they were writing is returned to the
  // free lists. Online: other processes keep working meanwhile. Costs one
  // liveness check (a /proc read) per attached thread of other processes.
  bool recover_on_open = true;
};

// The result of Map::recover().
struct RecoverReport {
  std::uint32_t entries = 0;          // registry entries of dead processes recovered
  std::uint64_t blocks_returned = 0;  // blocks they held that went back to the free lists
  std::uint64_t bytes_returned = 0;
  std::uint32_t orphans_borrowed = 0;  // released heaps whose lists were moved to the pool
  std::uint32_t damaged = 0;           // dead entries whose intents are damaged: left for repair()
};

struct SizeClassStats {
  std::uint32_t block_bytes = 0;  // size of one block of this class
  std::uint64_t carved = 0;       // blocks ever cut from the arena for this class
  std::uint64_t in_use = 0;       // blocks holding a record (or being written)
  std::uint64_t free = 0;         // carved - in_use: blocks on the free list
};

struct Stats {
  std::uint64_t live_keys = 0;      // live counter maintained by writers
  std::uint64_t index_slots = 0;    // slots in the current index table
  std::uint64_t used_limit = 0;     // claimed slots at which an insert starts a migration
  std::uint64_t live_slots = 0;     // current table: slots referring to a record (index scan)
  std::uint64_t deleted_slots = 0;  // current table: slots holding a deleted marker
  std::uint64_t empty_slots = 0;    // current table: never-claimed slots
  std::uint64_t frozen_slots = 0;   // current table: slots a running migration has frozen
  double load_factor = 0;           // (live + deleted + frozen) / index_slots
  // The index's history and state.
  std::uint64_t table_generation = 0;       // migrations so far (the current table's number)
  bool migrating = false;                   // a migration to the next table runs
  std::uint64_t next_index_slots = 0;       // while migrating: the next table's slots
  std::uint64_t migration_chunks = 0;       // while migrating: chunks of the current table ...
  std::uint64_t migration_chunks_done = 0;  // ... and how many are moved
  std::uint64_t migrations = 0;             // migrations completed (grown + shrunk + same-size rebuilds)
  std::uint64_t grown = 0;
  std::uint64_t shrunk = 0;
  std::uint64_t reclaimed_slots = 0;    // deleted slots dropped by migrations
  std::uint64_t retired_tables = 0;     // old tables whose memory was returned
  std::uint64_t index_runs = 0;         // arena runs that hold (or held) index tables
  std::uint64_t index_run_bytes = 0;    // arena bytes they claim (free runs are punched: no memory)
  std::uint64_t index_table_bytes = 0;  // ... of which runs holding tables now
  std::uint64_t arena_bytes = 0;        // the arena's current size (records and index runs)
  std::uint64_t max_bytes = 0;          // the segment's size cap
  std::uint64_t arena_carved = 0;       // bytes cut from the arena so far
  std::vector<SizeClassStats> classes;  // only classes with carved > 0
};

// The result of Map::fsck(): every invariant of the segment checked.
struct FsckReport {
  bool ok = true;                       // no violation found
  std::vector<std::string> violations;  // one line each (capped at 100; `violation_count` has all)
  std::uint64_t violation_count = 0;
  std::uint64_t live_keys = 0;              // live keys (LIVE slots; while migrating, counted once per key)
  std::uint64_t deleted_slots = 0;          // DELETED slots (likewise)
  std::uint64_t migration_chunks = 0;       // while migrating: chunks of the old table ...
  std::uint64_t migration_chunks_done = 0;  // ... and how many are marked DONE
  std::uint64_t unretired_tables = 0;       // past tables not yet retired (a live thread announced them)
  std::uint64_t index_run_bytes = 0;        // arena bytes claimed by the runs that hold (or held) index tables
  std::uint64_t reachable_blocks = 0;       // blocks referred to by a slot
  std::uint64_t reachable_bytes = 0;
  std::uint64_t free_blocks = 0;  // blocks on a free list (a thread's heap or the pool)
  std::uint64_t free_bytes = 0;
  std::uint64_t held_bytes = 0;    // bytes a live writer's intent holds (in flight)
  std::uint64_t carved_bytes = 0;  // bytes cut from the arena
  // Registry entries of processes that died or exited attached, not yet
  // recovered: no violation (recover(), or any writable open, recovers them).
  std::uint32_t dead_entries = 0;
  // Bytes their intents hold (blocks mid-allocation, mid-free or in a batch
  // in transfer, a chunk being cut): what recovering them returns.
  std::uint64_t recoverable_bytes = 0;
  // Carved bytes neither reachable, free, held nor recoverable: damage.
  std::uint64_t leaked_bytes = 0;
};

// A registry entry in use: one per thread that wrote through a writable Map
// handle (the opening thread claims its entry at open).
struct ProcessInfo {
  std::uint32_t entry = 0;  // registry entry index
  std::int64_t pid = 0;
  std::int64_t tid = 0;              // the writing thread (Linux thread id)
  std::uint32_t start_time_low = 0;  // low 30 bits of its start time (clock ticks since boot)
  std::uint64_t attached_unix_ns = 0;
  bool alive = false;       // false: killed while attached, not yet recovered
  bool recovering = false;  // a survivor holds the entry to recover or drain it
};

// Facts of a segment, readable without writing anything.
struct Info {
  std::string name;
  std::string path;
  std::uint32_t layout_version = 0;
  std::uint64_t total_bytes = 0;       // the segment's size now (header, registry, arena)
  std::uint64_t max_bytes = 0;         // the size it may grow to
  std::uint64_t capacity = 0;          // Options::capacity at creation
  std::uint64_t index_slots = 0;       // slots in the current index table
  std::uint64_t min_index_slots = 0;   // the first table's slots: the index never shrinks below
  std::uint64_t table_generation = 0;  // migrations so far
  std::uint64_t help_slots = 0;        // Options::help_slots at creation
  std::uint64_t arena_bytes = 0;       // the arena's current size
  std::uint64_t hash_seed = 0;
  std::uint32_t mode = 0;
  std::int64_t creator_pid = 0;
  std::uint64_t created_unix_ns = 0;
};

template <class T>
struct FetchResult {
  Status status = Status::absent;  // inserted (previous = 0), ok, wrong_size, full_*, key_too_long
  T previous{};
};

class Map {
 public:
  // Lifecycle. All throw shmap::Error naming the segment and the cause.
  // `name` is a POSIX shm name ("/jobs": one leading slash, no other) or a
  // filesystem path (anything else), so a map can live in a file or on hugetlbfs.

  // Creates a new segment; fails with errc::already_exists if it exists. Of two
  // processes creating one name at once exactly one succeeds. The segment only
  // becomes visible under its name once fully initialized.
  static Map create(std::string_view name, const Options& opts = {});
  // Opens an existing segment; validates magic, version, ABI, size and header.
  static Map open(std::string_view name, const Options& opts = {});
  // Opens the segment, creating it with `opts` when it does not exist.
  static Map open_or_create(std::string_view name, const Options& opts = {});
  // Unlinks the name after checking the file starts with the shmap magic
  // number (errc::bad_magic otherwise: a typo must not delete another file).
  // Mappings that are open stay valid. False if it did not exist.
  static bool remove(std::string_view name);
  // Reads the header of a segment (validated as by open()).
  static Info info(std::string_view name);

  Map(Map&&) noexcept;
  Map& operator=(Map&&) noexcept;
  Map(const Map&) = delete;
  Map& operator=(const Map&) = delete;
  ~Map();

  // Every operation below is safe to call from any number of threads and
  // processes at once. Progress guarantees are per operation.

  // Insert-if-absent. Lock-free. Takes an arena block before claiming a slot
  // (and gives it back if the key turns out to exist or the index is full);
  // when both index and arena are full it reports full_arena.
  // Returns ok, exists, full_index, full_arena, key_too_long, value_too_long.
  [[nodiscard]] Status insert(std::string_view key, std::string_view value);

  // Insert or replace. Lock-free. Returns inserted, assigned, full_index,
  // full_arena, key_too_long, value_too_long.
  [[nodiscard]] Status insert_or_assign(std::string_view key, std::string_view value);

  // Copies the value out. Lock-free, writes no shared memory. Allocates the string.
  std::optional<std::string> get(std::string_view key) const;
  // Copies the value into `out` (reusing its capacity: a hot loop allocates
  // nothing once `out` is large enough). Returns false if absent; `out` is then
  // unchanged, except that it is cleared if the key was erased while its value
  // was being copied (a torn copy is never left behind).
  bool get(std::string_view key, std::string& out) const;
  // Lock-free, writes no shared memory, never allocates.
  bool contains(std::string_view key) const;

  // Removes the key. Lock-free. Returns true if this call erased it.
  bool erase(std::string_view key);

  // Replaces the value with `desired` only if it currently equals `expected`.
  // Lock-free. Returns ok, mismatch, absent, full_arena, key_too_long, value_too_long.
  [[nodiscard]] Status compare_exchange(std::string_view key, std::string_view expected, std::string_view desired);

  // Adds `delta` to an 8-byte integer value (two's complement wrap-around), an
  // absent key counting as 0. Lock-free and exact under contention. Returns
  // {inserted, 0}, {ok, previous}, or {wrong_size|full_*|key_too_long, 0}.
  FetchResult<std::int64_t> fetch_add(std::string_view key, std::int64_t delta);

  // Typed helpers for trivially copyable values (stored as their object bytes).
  template <class T>
  [[nodiscard]] Status put(std::string_view key, const T& value) {
    static_assert(std::is_trivially_copyable_v<T>, "put<T> stores the object bytes of T");
    return insert_or_assign(key, std::string_view(reinterpret_cast<const char*>(&value), sizeof(T)));
  }
  // Returns ok, absent, or wrong_size when the stored value is not sizeof(T) bytes.
  template <class T>
  [[nodiscard]] Status get_as(std::string_view key, T& out) const {
    static_assert(std::is_trivially_copyable_v<T>, "get_as<T> reads the object bytes of T");
    alignas(T) unsigned char bytes[sizeof(T)];
    std::size_t n = 0;
    if (!get_bytes(key, bytes, sizeof(T), n)) return Status::absent;
    if (n != sizeof(T)) return Status::wrong_size;
    std::memcpy(&out, bytes, sizeof(T));
    return Status::ok;
  }

  // Live keys (a counter; exact when no write is in flight). Wait-free.
  std::uint64_t size() const noexcept;

  // Calls fn(key, value) for every entry. Weakly consistent: an entry present
  // for the whole walk is seen exactly once, and no key is seen twice (a key
  // keeps its slot); one inserted or erased during the walk may or may not be
  // seen. Lock-free per entry, writes no shared memory; reuses one key and one
  // value buffer (grown as needed). Exceptions from fn propagate.
  void for_each(const std::function<void(std::string_view key, std::string_view value)>& fn) const;

  // Scans the index and reads the arena counters. Writes no shared memory.
  Stats stats() const;
  // Checks every invariant: slot words, record bounds and generations,
  // fingerprints, no duplicate keys, each key before the first EMPTY slot of
  // its probe sequence, free lists well formed, every carved byte reachable or
  // free (the rest is reported as leaked), counters. Writes no shared memory;
  // allocates O(live keys). Exact on a quiet map; with writers running it can
  // report blocks in flight as leaked and counters as off.
  FsckReport fsck() const;
  // Recovers the registry entries of processes that died attached: each dead
  // thread's step in flight (an allocation, a slot CAS, a free, a batch
  // exchange) is finished or undone from its intent record, exactly the
  // blocks it held go back to the free lists (once), and its share of the
  // counters is settled. Online: other processes keep reading and writing.
  // Also moves the free lists of released heaps to the shared pool. Writes
  // also run it when their allocation runs short, and a writable open runs it
  // (Options::recover_on_open). A writable handle. Lock-free. An entry whose
  // intents are damaged is left as it was (repair() rebuilds around it) and,
  // after every other entry is recovered, reported by Error(errc::corrupt).
  RecoverReport recover();
  // Rebuilds the arena's free lists and counters from the index: every carved
  // byte that no slot refers to becomes free, and the counters are recomputed.
  // For damage, not for crashes (recover() handles those online). Needs the
  // map to itself: throws Error(errc::busy) if a thread of any other process,
  // or another thread through this handle, is attached, or another repair
  // runs; other processes cannot attach while it runs. Refuses
  // (errc::corrupt) damage it cannot rebuild (bad slot words, duplicate keys).
  // Returns the fsck report of the repaired map. Blocking; a writable handle.
  FsckReport repair();
  Info info() const;
  // The registry entries in use: one per thread writing through a writable
  // handle (read-only handles do not register: they write nothing shared),
  // released when the handle is destroyed; entries of processes that died
  // attached are listed as not alive until recover() (or the next writable
  // open) recovers them. Writes no shared memory.
  std::vector<ProcessInfo> processes() const;
  const std::string& name() const noexcept;
  bool read_only() const noexcept;

  // Copies the value into `dst` if it is at most `cap` bytes and sets `len` to
  // its length. Returns false if absent. On false, and on true with len > cap,
  // `dst` may hold bytes of a discarded copy. Lock-free, never allocates.
  bool get_bytes(std::string_view key, void* dst, std::size_t cap, std::size_t& len) const;

  struct Impl;

 private:
  explicit Map(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace shmap

namespace std {
template <>
struct is_error_code_enum<shmap::errc> : true_type {};
}  // namespace std
