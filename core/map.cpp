// The map operations: thin wrappers over the engine (map_impl.hpp), the
// registry entry cache of a handle's threads, for_each, stats and info.
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstring>
#include <string>
#include <vector>

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

Map::Impl::Impl(detail::Mapping m, std::chrono::milliseconds open_timeout)
    : mapping(std::move(m)),
      header(mapping.header()),
      registry(mapping.registry()),
      seed(mapping.fixed.hash_seed),
      arena(&mapping, mapping.registry()),
      tables(&mapping, &arena) {
  // The directory must name tables that exist (a corrupt one fails the open).
  const TablesWord t = tables.load();
  if (!t.valid()) detail::throw_error(errc::corrupt, mapping.name, "the index directory word is not valid");
  (void)tables.cur(t);
  if (t.migrating()) (void)tables.next(t);
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

Map::Impl::~Impl() {
  release_idle(false);
}

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
    e = detail::attach(mapping, self);
  } catch (const Error& err) {
    if (err.code() != make_error_code(errc::too_many_processes)) throw;
    // Entries of dead processes are released by recovering them; that needs
    // an entry of our own, so borrow nothing and just retry after.
    recover_dead(detail::kRegistryEntries);
    e = detail::attach(mapping, self);
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

bool Map::remove(std::string_view name) {
  return detail::remove_segment(name);
}

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
    detail::copy_words(out.data(), v, len);
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
    if (n <= cap) detail::copy_words(static_cast<char*>(dst), v, n);
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
  if (s != Status::ok) return false;
  impl_->after_erase(pending.e);
  return true;
}

Status Map::compare_exchange(std::string_view key, std::string_view expected, std::string_view desired) {
  if (const Status s = check_sizes(key, desired); s != Status::ok) return s;
  Impl::Pending pending(impl_.get(), impl_->writer());
  Status verdict = Status::ok;
  const Status s = impl_->mutate(
      key, false, pending, [](Impl::Pending&) { return false; },
      [&](const std::uint64_t* v, std::uint32_t len) {
        if (!detail::equal_words(v, len, expected)) {
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
      key, true, pending,
      [&](Impl::Pending& p) {
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
        detail::copy_words(reinterpret_cast<char*>(&previous), v, 8);
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

namespace {

// One table's part of a for_each batch: the keys located from the home of
// `lo` up to the first EMPTY (or closed) slot, with their hashes. Every key
// of the table whose hash lies in [lo, *hi) is among them (a key lies at or
// after its home, before the first EMPTY slot). False if a frozen slot shows
// a migration the caller's view does not know (`newest` table only).
struct Candidate {
  std::uint64_t hash;
  std::string key;
  bool operator<(const Candidate& o) const { return hash != o.hash ? hash < o.hash : key < o.key; }
  bool operator==(const Candidate& o) const { return hash == o.hash && key == o.key; }
};

bool collect(const Map::Impl& m, const Index& ix, std::uint64_t lo, bool newest, std::vector<Candidate>& out,
             std::uint64_t& hi, bool& to_end) {
  to_end = false;
  const std::uint32_t shift = 64 - ix.log2;
  const std::uint64_t start = ix.home(lo);
  std::uint64_t pos = start;
  std::string key;
  bool wrapped = false;
  std::uint64_t n = 0;
  for (; n <= ix.mask; ++n, pos = ix.next(pos)) {
    if (pos == 0 && n > 0) wrapped = true;
    SlotWord w = ix.load(pos);  // Site R0 (index.hpp).
    if (w.is_empty() || w == SlotWord::frozen_empty()) break;
    if (w.is_frozen() && newest) return false;
    int rounds = 0;
    for (;;) {
      if (!w.is_live() && !(w.is_frozen() && w.has_record())) break;  // deleted or dropped: not an entry
      const SlotWord rec = w.unfrozen();
      if (detail::read_key(m.arena, rec, key)) {
        const KeyHash kh = m.hash_of(key);
        if (kh.hash >= lo) out.push_back({kh.hash, key});
        break;
      }
      if (w.is_frozen()) break;  // moved and recycled: the key is in the next table
      const SlotWord before = w;
      w = ix.load(pos);  // Site R0 again: the record was recycled, the slot changed.
      m.stale_round(before, w, rounds);
      if (w.is_frozen() && newest) return false;
    }
  }
  if (n > ix.mask || wrapped) {
    to_end = true;  // the cluster runs past the last slot: its keys reach the end of the hash space
    return true;
  }
  const std::uint64_t end = std::max(pos, start + 1);
  to_end = end > ix.mask;
  if (!to_end) hi = end << shift;
  return true;
}

}  // namespace

void Map::for_each(const std::function<void(std::string_view, std::string_view)>& fn) const {
  const Impl& m = *impl_;
  std::vector<Candidate> batch;
  std::string value;
  // Keys are visited in hash order, one batch of hashes [lo, hi) at a time:
  // a batch is complete for every table of the view it was read under
  // (collect), and checked against retirement (valid_since) before any of it
  // is visited, so a migration or a retirement between batches costs
  // nothing and no key is seen twice; each key's value comes from find.
  std::uint64_t lo = 0;
  for (;;) {
    batch.clear();
    const TablesWord t = m.tables.load();
    std::uint64_t hi = ~std::uint64_t{0};
    bool to_end = true;
    const auto take = [&](const Index& ix, bool newest) {
      std::uint64_t h = 0;
      bool end = false;
      if (!collect(m, ix, lo, newest, batch, h, end)) return false;
      if (!end) {
        to_end = false;
        hi = std::min(hi, h);
      }
      return true;
    };
    const bool ok = take(m.tables.cur(t), !t.migrating()) && (!t.migrating() || take(m.tables.next(t), true));
    if (!ok && m.tables.load() == t)
      detail::throw_error(errc::corrupt, m.mapping.name, "a table has frozen slots but the directory migrates none");
    if (!ok || !m.tables.valid_since(t)) continue;  // the view moved on: read the batch again
    if (to_end) hi = ~std::uint64_t{0};
    std::sort(batch.begin(), batch.end());
    batch.erase(std::unique(batch.begin(), batch.end()), batch.end());
    for (const Candidate& c : batch) {
      if (!to_end && c.hash >= hi) break;
      if (get(c.key, value)) fn(c.key, value);
    }
    if (to_end) return;
    lo = hi;
  }
}

Stats Map::stats() const {
  const Impl& m = *impl_;
  Stats s;
  s.live_keys = size();
  TablesWord t;
  for (;;) {
    t = m.tables.load();
    const Index cur = m.tables.cur(t);
    s.index_slots = cur.size();
    s.used_limit = cur.trigger_limit();
    s.live_slots = s.deleted_slots = s.empty_slots = s.frozen_slots = 0;
    for (std::uint64_t pos = 0; pos <= cur.mask; ++pos) {
      // Relaxed: a census; no record is read through these words.
      const SlotWord w{atom(cur.slot(pos)).load(std::memory_order_relaxed)};
      if (w.is_frozen())
        ++s.frozen_slots;
      else if (w.is_empty())
        ++s.empty_slots;
      else if (w.is_live())
        ++s.live_slots;
      else
        ++s.deleted_slots;
    }
    s.table_generation = t.gen();
    s.migrating = t.migrating();
    s.migration_chunks = s.migration_chunks_done = s.next_index_slots = 0;
    if (t.migrating()) {
      const Index next = m.tables.next(t);
      s.next_index_slots = next.size();
      s.migration_chunks = cur.chunks();
      for (std::uint64_t i = 0; i < cur.chunks(); ++i)
        // Relaxed: a statistic.
        if (atom(cur.chunk_words[i]).load(std::memory_order_relaxed) != 0) ++s.migration_chunks_done;
    }
    if (m.tables.valid_since(t)) break;
  }
  s.load_factor = double(s.live_slots + s.deleted_slots + s.frozen_slots) / double(s.index_slots);
  const detail::IndexCounters& k = m.header->counters;
  // Relaxed (all): statistics.
  s.migrations = t.gen();
  s.grown = atom(const_cast<std::uint64_t&>(k.grown)).load(std::memory_order_relaxed);
  s.shrunk = atom(const_cast<std::uint64_t&>(k.shrunk)).load(std::memory_order_relaxed);
  s.reclaimed_slots = atom(const_cast<std::uint64_t&>(k.dropped)).load(std::memory_order_relaxed);
  s.retired_tables = atom(const_cast<std::uint64_t&>(k.retired)).load(std::memory_order_relaxed);
  for (std::uint32_t r = 0; r < detail::kRuns; ++r) {
    const detail::RunGeom g = m.tables.geom(r);
    if (!g.is_set()) continue;
    ++s.index_runs;
    const std::uint64_t claimed = g.start() + g.bytes() - g.claimed_from();
    s.index_run_bytes += claimed;
    if (m.tables.run_state(r, std::memory_order_relaxed).kind() == detail::RunState::table)
      s.index_table_bytes += claimed;
  }
  s.arena_bytes = m.arena.bytes();
  s.max_bytes = m.mapping.fixed.max_bytes;
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
  i.arena_bytes = impl_->arena.bytes();
  i.total_bytes = f.arena_offset + i.arena_bytes;
  i.max_bytes = f.max_bytes;
  i.capacity = f.capacity;
  const TablesWord t = impl_->tables.load();
  i.index_slots = std::uint64_t{1} << t.cur_log2();
  i.table_generation = t.gen();
  i.min_index_slots = std::uint64_t{1} << f.min_log2;
  i.help_slots = std::uint64_t{1} << f.chunk_log2;
  i.hash_seed = f.hash_seed;
  i.mode = f.mode;
  i.creator_pid = f.creator_pid;
  i.created_unix_ns = f.created_unix_ns;
  return i;
}

std::vector<ProcessInfo> Map::processes() const {
  return detail::list(impl_->header, impl_->registry);
}

const std::string& Map::name() const noexcept {
  return impl_->mapping.name;
}
bool Map::read_only() const noexcept {
  return impl_->mapping.read_only;
}

}  // namespace shmap
