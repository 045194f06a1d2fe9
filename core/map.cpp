// The index and the map operations.
//
// INDEX. index_slots (a power of two) 64-bit slot words, linear probing from
// hash & mask, so a probe walks consecutive words of one cache line before it
// crosses to the next. A slot moves EMPTY -> LIVE(K) -> ... and once claimed
// for key K it stays K's until an index rebuild (a future issue): updates CAS
// one LIVE(K) word for another, erase CASes LIVE(K) -> DELETED, and DELETED is
// never reused. Hence every writer of K meets K's live slot before the first
// EMPTY slot of its probe sequence, which is what makes "exactly one live slot
// per key" hold without locks.
//
// OPERATIONS (linearization points in brackets; details in docs/design.md)
//   get/contains  load slot words (acquire) along the probe sequence; at a
//                 fingerprint match read the record optimistically and
//                 validate it. [the acquire load of the slot word that yields
//                 the returned record, or of the EMPTY slot for "absent"]
//   insert        at the first EMPTY slot, publish a fully written record by
//                 CAS EMPTY -> LIVE. [the successful CAS; "exists": the load of
//                 K's live slot word]
//   assign/cas/   CAS LIVE(old) -> LIVE(new), then free the old record.
//   fetch_add     [the successful CAS; "mismatch": the load of the slot word]
//   erase         CAS LIVE -> DELETED(fresh key-only record), then free the
//                 old record. [the CAS]
// Every CAS is bracketed by the writer's slot intent (map_impl.hpp, publish),
// from which recovery (recover.cpp) decides whether a dead writer's CAS happened.
//
// READS WRITE NOTHING SHARED. A record is immutable while it is published; it
// is freed only after it was unlinked, and its generation (header word) changes
// before any byte of it is rewritten. A reader copies what it needs, then
// checks with an acquire fence that the generation did not move (a seqlock
// with the allocator as the only writer); if it moved, the slot is re-read.
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstring>
#include <string>

#include "arena.hpp"
#include "hash.hpp"
#include "layout.hpp"
#include "segment.hpp"
#include "shmap/shmap.hpp"

#include "map_impl.hpp"

namespace shmap {

using detail::atom;
using detail::RecordHeader;
using detail::SlotWord;

namespace {

Status check_sizes(std::string_view key, std::string_view value) {
  if (key.size() > kMaxKeyBytes) return Status::key_too_long;
  if (value.size() > kMaxValueBytes) return Status::value_too_long;
  return Status::ok;
}

// Copies `len` bytes of value words into dst (relaxed loads: validated by the caller).
void copy_value(char* dst, const std::uint64_t* v, std::size_t len) {
  const std::size_t full = len / 8;
  for (std::size_t i = 0; i < full; ++i) {
    // Relaxed: validated by the reader's R3.
    const std::uint64_t w = atom(const_cast<std::uint64_t&>(v[i])).load(std::memory_order_relaxed);
    std::memcpy(dst + 8 * i, &w, 8);
  }
  if (len % 8 != 0) {
    // Relaxed: validated by the reader's R3.
    const std::uint64_t w = atom(const_cast<std::uint64_t&>(v[full])).load(std::memory_order_relaxed);
    std::memcpy(dst + 8 * full, &w, len % 8);
  }
}

bool equal_value(const std::uint64_t* v, std::size_t len, std::string_view expected) {
  if (len != expected.size()) return false;
  const std::size_t full = len / 8;
  for (std::size_t i = 0; i < full; ++i) {
    // Relaxed: validated by the reader's R3.
    if (atom(const_cast<std::uint64_t&>(v[i])).load(std::memory_order_relaxed) !=
        detail::load_le64(expected.data() + 8 * i))
      return false;
  }
  if (len % 8 != 0) {
    // Relaxed: validated by the reader's R3.
    return atom(const_cast<std::uint64_t&>(v[full])).load(std::memory_order_relaxed) ==
           detail::load_tail(expected.data() + 8 * full, len % 8);
  }
  return true;
}

}  // namespace

// ------------------------------------------------------------ registry entries

namespace {

std::atomic<std::uint64_t> g_next_handle_id{1};

struct ThreadEntry {
  std::uint64_t id;
  std::uint64_t epoch;
  std::uint32_t entry;  // entry + 1; 0 while unclaimed
  std::weak_ptr<HandleEntries> entries;
};

// The calling thread's entries, one per handle it wrote through. When the
// thread exits, its entries go idle in their handles (if still open), for the
// next thread of that handle.
struct ThreadEntries {
  std::vector<ThreadEntry> v;
  ~ThreadEntries() {
    const std::uint64_t epoch = detail::fork_epoch();
    for (ThreadEntry& t : v) {
      if (t.entry == 0 || t.epoch != epoch) continue;
      if (const auto h = t.entries.lock()) {
        const std::uint32_t e = t.entry - 1;
        // Acq_rel: publishes this thread's last stores to the entry to the
        // next thread of the handle that takes it (claim_entry's acquire).
        h->idle[e / 64].fetch_or(std::uint64_t{1} << (e % 64), std::memory_order_acq_rel);
      }
    }
  }
};
thread_local ThreadEntries t_entries;

}  // namespace

std::uint32_t* thread_entry(std::uint64_t id, std::uint64_t epoch, const std::shared_ptr<HandleEntries>& entries) {
  std::vector<ThreadEntry>& v = t_entries.v;
  for (ThreadEntry& t : v)
    if (t.id == id && t.epoch == epoch) return &t.entry;
  // Forget handles that are gone, or entries of the parent before a fork.
  std::erase_if(v, [&](const ThreadEntry& t) { return t.epoch != epoch || t.entries.expired(); });
  v.push_back(ThreadEntry{id, epoch, 0, entries});
  return &v.back().entry;
}

Map::Impl::Impl(detail::Mapping m, std::chrono::milliseconds open_timeout) : mapping(std::move(m)) {
  header = mapping.header();
  const detail::HeaderFixed& f = mapping.fixed;
  index = mapping.index();
  registry = mapping.registry();
  mask = f.index_slots - 1;
  seed = f.hash_seed;
  used_limit = f.used_limit;
  arena = detail::Arena(header, mapping.arena(), f.arena_bytes, registry, mapping.name);
  // Relaxed: a process-local unique number.
  id = g_next_handle_id.fetch_add(1, std::memory_order_relaxed);
  if (mapping.read_only) return;
  // The opening thread claims its entry now, so a writable open waits for a
  // repair in progress (operations never wait).
  const auto deadline = std::chrono::steady_clock::now() + open_timeout;
  for (;;) {
    try {
      (void)writer();
      return;
    } catch (const Error& e) {
      // attach() gave its entry back before throwing busy: nothing is held
      // while we wait, and a repairer that dies is detected by attach().
      if (e.code() != make_error_code(errc::busy) || std::chrono::steady_clock::now() >= deadline) throw;
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
  }
}

Map::Impl::~Impl() { release_idle(false); }

std::uint32_t Map::Impl::claim_entry() {
  const detail::Owner self = detail::self_owner();
  for (std::uint32_t w = 0; w < HandleEntries::kWords; ++w) {
    // Acquire: pairs with the exiting thread's acq_rel fetch_or, so its last
    // stores to the entry are visible to us, the entry's next writer.
    std::uint64_t bits = entries->idle[w].load(std::memory_order_acquire);
    while (bits != 0) {
      const std::uint64_t bit = bits & (~bits + 1);
      // Acq_rel: as above; exactly one thread takes an idle entry.
      if (!entries->idle[w].compare_exchange_weak(bits, bits & ~bit, std::memory_order_acq_rel)) continue;
      const auto e = static_cast<std::uint32_t>(w * 64 + std::uint32_t(__builtin_ctzll(bit)));
      // Relaxed: we compare with our own identity (after a fork, the parent's entries are not ours).
      if (atom(registry[e].owner).load(std::memory_order_relaxed) == self.raw) {
        // Relaxed: informational (processes() lists the writing thread).
        atom(registry[e].tid).store(static_cast<std::uint64_t>(::gettid()), std::memory_order_relaxed);
        return e;
      }
      bits = entries->idle[w].load(std::memory_order_acquire);  // Acquire: as above.
    }
  }
  std::uint32_t e = 0;
  try {
    e = detail::attach(header, registry, self, mapping.name);
  } catch (const Error& err) {
    if (err.code() != make_error_code(errc::too_many_processes)) throw;
    // Entries of dead processes are released by recovering them; that needs
    // an entry of our own, so borrow nothing and just retry after.
    recover_dead(detail::kRegistryEntries);
    e = detail::attach(header, registry, self, mapping.name);
  }
  // Relaxed: process-local bookkeeping.
  entries->owned[e / 64].fetch_or(std::uint64_t{1} << (e % 64), std::memory_order_relaxed);
  return e;
}

void Map::Impl::release_idle(bool only_idle) {
  const detail::Owner self = detail::self_owner();
  for (std::uint32_t w = 0; w < HandleEntries::kWords; ++w) {
    // Acq_rel: takes the bits (and, for idle ones, the exiting threads' stores).
    const std::uint64_t bits = only_idle ? entries->idle[w].exchange(0, std::memory_order_acq_rel)
                                         : entries->owned[w].exchange(0, std::memory_order_acq_rel);
    if (only_idle) entries->owned[w].fetch_and(~bits, std::memory_order_relaxed);  // Relaxed: bookkeeping.
    for (std::uint64_t b = bits; b != 0; b &= b - 1) {
      const auto e = static_cast<std::uint32_t>(w * 64 + std::uint32_t(__builtin_ctzll(b)));
      // Relaxed: we compare with our own identity.
      if (atom(registry[e].owner).load(std::memory_order_relaxed) != self.raw) continue;
      try {
        for (std::uint32_t c = 0; c < detail::kClasses; ++c) arena.donate(e, c, 0);
      } catch (const Error&) {
        // A corrupt list: leave it with the entry; fsck reports it.
      }
      detail::detach(registry, e, self);
    }
  }
}

std::int64_t Map::Impl::live_keys() const {
  std::int64_t sum = 0;
  const std::uint32_t n = detail::entries_in_use(header);
  for (std::uint32_t e = 0; e < n; ++e) {
    // Relaxed: a statistic (exact when no write is in flight).
    sum += static_cast<std::int64_t>(atom(registry[e].live).load(std::memory_order_relaxed));
  }
  return sum;
}

Map::Map(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Map::Map(Map&&) noexcept = default;
Map& Map::operator=(Map&&) noexcept = default;
Map::~Map() = default;

Map Map::create(std::string_view name, const Options& opts) {
  return Map(std::make_unique<Impl>(detail::create_segment(name, opts), opts.open_timeout));
}

Map Map::open(std::string_view name, const Options& opts) {
  Map map(std::make_unique<Impl>(detail::open_segment(name, opts), opts.open_timeout));
  if (opts.recover_on_open && !opts.read_only) {
    // A dead entry that recovery cannot undo (damage) is left, counted, and
    // the open still succeeds: fsck reports it, repair rebuilds it.
    Impl& m = *map.impl_;
    const std::uint32_t self = m.writer();
    (void)m.recover_dead(self);
    (void)m.borrow_orphans(self, detail::kClasses);
  }
  return map;
}

Map Map::open_or_create(std::string_view name, const Options& opts) {
  // A racing creator or remover can make each step fail in turn; a few rounds
  // settle it (each failure means another process made progress).
  for (int attempt = 0;; ++attempt) {
    try {
      return open(name, opts);
    } catch (const Error& e) {
      if (e.code() != make_error_code(errc::not_found) || attempt >= 8) throw;
    }
    if (opts.read_only) detail::throw_error(errc::not_found, name, "does not exist and cannot be created read-only");
    try {
      return create(name, opts);
    } catch (const Error& e) {
      if (e.code() != make_error_code(errc::already_exists) || attempt >= 8) throw;
    }
  }
}

bool Map::remove(std::string_view name) { return detail::remove_segment(name); }

Info Map::info(std::string_view name) {
  Options opts;
  opts.read_only = true;
  return open(name, opts).info();
}

Status Map::insert(std::string_view key, std::string_view value) {
  if (const Status s = check_sizes(key, value); s != Status::ok) return s;
  Impl::Pending pending(impl_.get(), impl_->writer());
  const Status s = impl_->mutate(
      key, true, pending, [&](Impl::Pending& p) { return p.make(key, value); },
      [](const std::uint64_t*, std::uint32_t) { return Impl::Found::keep; });
  return s == Status::inserted ? Status::ok : s;
}

Status Map::insert_or_assign(std::string_view key, std::string_view value) {
  if (const Status s = check_sizes(key, value); s != Status::ok) return s;
  Impl::Pending pending(impl_.get(), impl_->writer());
  bool arena_full = false;
  const Status s = impl_->mutate(
      key, true, pending, [&](Impl::Pending& p) { return p.make(key, value); },
      [&](const std::uint64_t*, std::uint32_t) {
        if (!pending.make(key, value)) {
          arena_full = true;
          return Impl::Found::keep;
        }
        return Impl::Found::replace;
      });
  return arena_full && s == Status::exists ? Status::full_arena : s;
}

bool Map::get(std::string_view key, std::string& out) const {
  // `key` may point into `out` (m.get(s, s)): copying the value would then
  // overwrite the key before a retry compares it again.
  if (!key.empty() && key.data() >= out.data() && key.data() < out.data() + out.capacity()) {
    const std::string own_key(key);
    return get(own_key, out);
  }
  bool copied = false;
  const bool found = impl_->find(key, [&](const std::uint64_t* v, std::uint32_t len) {
    out.resize(len);
    copy_value(out.data(), v, len);
    copied = true;
  });
  // A copy that failed validation may have overwritten `out` before the key
  // turned out to be gone: clear it rather than leave a torn value behind.
  if (!found && copied) out.clear();
  return found;
}

std::optional<std::string> Map::get(std::string_view key) const {
  std::string out;
  if (!get(key, out)) return std::nullopt;
  return out;
}

bool Map::get_bytes(std::string_view key, void* dst, std::size_t cap, std::size_t& len) const {
  return impl_->find(key, [&](const std::uint64_t* v, std::uint32_t n) {
    len = n;
    if (n <= cap) copy_value(static_cast<char*>(dst), v, n);
  });
}

bool Map::contains(std::string_view key) const {
  return impl_->find(key, [](const std::uint64_t*, std::uint32_t) {});
}

bool Map::erase(std::string_view key) {
  if (key.size() > kMaxKeyBytes) return false;
  Impl::Pending pending(impl_.get(), impl_->writer());
  const Status s = impl_->mutate(
      key, false, pending, [](Impl::Pending&) { return false; },
      [&](const std::uint64_t*, std::uint32_t) {
        // The deleted entry gets a fresh key-only record, so the erasing CAS
        // installs a word no other writer can install (recovery tells from it
        // whether a dead eraser's CAS happened) and a large value's block is
        // freed. If the arena cannot give one, the old record is marked in place.
        if (!pending.ref) (void)pending.make(key, {});
        return Impl::Found::erase;
      });
  return s == Status::ok;
}

Status Map::compare_exchange(std::string_view key, std::string_view expected, std::string_view desired) {
  if (const Status s = check_sizes(key, desired); s != Status::ok) return s;
  Impl::Pending pending(impl_.get(), impl_->writer());
  Status verdict = Status::ok;
  const Status s = impl_->mutate(
      key, false, pending, [](Impl::Pending&) { return false; },
      [&](const std::uint64_t* v, std::uint32_t len) {
        if (!equal_value(v, len, expected)) {
          verdict = Status::mismatch;
          return Impl::Found::keep;
        }
        if (!pending.make(key, desired)) {
          verdict = Status::full_arena;
          return Impl::Found::keep;
        }
        verdict = Status::ok;
        return Impl::Found::replace;
      });
  if (s == Status::assigned) return Status::ok;
  if (s == Status::exists) return verdict;
  return s;
}

FetchResult<std::int64_t> Map::fetch_add(std::string_view key, std::int64_t delta) {
  if (key.size() > kMaxKeyBytes) return {Status::key_too_long, 0};
  Impl::Pending pending(impl_.get(), impl_->writer());
  std::int64_t previous = 0;
  Status verdict = Status::ok;
  auto as_bytes = [](const std::int64_t& x) { return std::string_view(reinterpret_cast<const char*>(&x), 8); };
  std::int64_t fresh = delta;
  const Status s = impl_->mutate(
      key, true, pending, [&](Impl::Pending& p) {
        fresh = delta;
        if (p.ref) {
          p.rewrite_value(key, as_bytes(fresh));
          return true;
        }
        return p.make(key, as_bytes(fresh));
      },
      [&](const std::uint64_t* v, std::uint32_t len) {
        if (len != 8) {
          verdict = Status::wrong_size;
          return Impl::Found::keep;
        }
        copy_value(reinterpret_cast<char*>(&previous), v, 8);
        fresh = static_cast<std::int64_t>(static_cast<std::uint64_t>(previous) + static_cast<std::uint64_t>(delta));
        if (pending.ref) {
          pending.rewrite_value(key, as_bytes(fresh));
        } else if (!pending.make(key, as_bytes(fresh))) {
          verdict = Status::full_arena;
          return Impl::Found::keep;
        }
        verdict = Status::ok;
        return Impl::Found::replace;
      });
  if (s == Status::inserted) return {Status::inserted, 0};
  if (s == Status::assigned) return {Status::ok, previous};
  if (s == Status::exists) return {verdict, 0};
  return {s, 0};
}

std::uint64_t Map::size() const noexcept {
  const std::int64_t live = impl_->live_keys();
  return live < 0 ? 0 : static_cast<std::uint64_t>(live);
}

void Map::for_each(const std::function<void(std::string_view, std::string_view)>& fn) const {
  const Impl& m = *impl_;
  std::string key, value;
  for (std::uint64_t pos = 0; pos <= m.mask; ++pos) {
    SlotWord previous{};
    int rounds = 0;
    for (;;) {
      // Site R0 (see find).
      const SlotWord w{atom(m.index[pos]).load(std::memory_order_acquire)};
      if (!w.is_live()) break;
      m.stale_round(previous, w, rounds);
      previous = w;
      if (!m.arena.in_bounds(w.ref(), 8)) m.arena.corrupt("slot word refers outside the arena", w.ref());
      std::uint64_t* r = m.arena.block(w.ref());
      // Site R1 (see read_record).
      const RecordHeader h1{atom(r[0]).load(std::memory_order_acquire)};
      if (!h1.is_allocated() || !w.matches_gen(h1.gen())) continue;
      if (!m.arena.in_bounds(w.ref(), h1.record_bytes())) m.arena.corrupt("record overruns the arena", w.ref());
      key.resize(h1.key_len());
      copy_value(key.data(), r + 1, h1.key_len());
      value.resize(h1.value_len());
      copy_value(value.data(), r + 1 + RecordHeader::pad8(h1.key_len()) / 8, h1.value_len());
      // Site R3 (see read_record).
      std::atomic_thread_fence(std::memory_order_acquire);
      // Site R3b (see read_record).
      if (atom(r[0]).load(std::memory_order_acquire) != h1.raw) continue;
      fn(key, value);
      break;
    }
  }
}

Stats Map::stats() const {
  const Impl& m = *impl_;
  const detail::HeaderFixed& f = m.mapping.fixed;
  Stats s;
  s.live_keys = size();
  s.index_slots = f.index_slots;
  s.used_limit = f.used_limit;
  for (std::uint64_t pos = 0; pos <= m.mask; ++pos) {
    // Relaxed: a census; no record is read through these words.
    const SlotWord w{atom(m.index[pos]).load(std::memory_order_relaxed)};
    if (w.is_empty()) ++s.empty_slots;
    else if (w.is_live()) ++s.live_slots;
    else ++s.deleted_slots;
  }
  s.load_factor = double(s.live_slots + s.deleted_slots) / double(f.index_slots);
  s.arena_bytes = f.arena_bytes;
  // Relaxed: statistics.
  const std::uint64_t top = atom(m.header->arena_top.value).load(std::memory_order_relaxed);
  s.arena_carved = top > detail::kArenaFirstOffset ? top - detail::kArenaFirstOffset : 0;
  std::vector<std::uint64_t> carved(detail::kClasses, 0), free(detail::kClasses, 0);
  const std::uint32_t n = detail::entries_in_use(m.header);
  for (std::uint32_t e = 0; e < n; ++e) {
    for (std::uint32_t c = 0; c < detail::kClasses; ++c) {
      // Relaxed: statistics; each share is its own thread's.
      carved[c] += detail::atom32(m.registry[e].carved[c]).load(std::memory_order_relaxed);
      free[c] += detail::atom32(m.registry[e].count[c]).load(std::memory_order_relaxed);
    }
  }
  for (std::uint32_t c = 0; c < detail::kClasses; ++c) {
    for (std::uint32_t i = 0; i < detail::kPoolCells; ++i) {
      // Acquire: pairs with the donor's release CAS; the batch length is
      // read only if its header still says "pooled" afterwards.
      const std::uint64_t cell = atom(m.header->pool[c].cells[i]).load(std::memory_order_acquire);
      if (cell != 0) free[c] += m.pooled_length(cell, c);
    }
    if (carved[c] == 0) continue;
    SizeClassStats cs;
    cs.block_bytes = static_cast<std::uint32_t>(detail::size_class_bytes(c));
    cs.carved = carved[c];
    cs.free = std::min(free[c], carved[c]);
    cs.in_use = carved[c] - cs.free;
    s.classes.push_back(cs);
  }
  return s;
}

Info Map::info() const {
  const detail::HeaderFixed& f = impl_->mapping.fixed;
  Info i;
  i.name = impl_->mapping.name;
  i.path = impl_->mapping.path;
  i.layout_version = f.layout_version;
  i.total_bytes = f.total_bytes;
  i.capacity = f.capacity;
  i.index_slots = f.index_slots;
  i.arena_bytes = f.arena_bytes;
  i.hash_seed = f.hash_seed;
  i.mode = f.mode;
  i.creator_pid = f.creator_pid;
  i.created_unix_ns = f.created_unix_ns;
  return i;
}

std::vector<ProcessInfo> Map::processes() const { return detail::list(impl_->header, impl_->registry); }

const std::string& Map::name() const noexcept { return impl_->mapping.name; }
bool Map::read_only() const noexcept { return impl_->mapping.read_only; }

}  // namespace shmap
