// fsck: checks every invariant of a segment without writing to it.
//
//   0. Directory: the tables word names runs that hold its tables; every run
//      lies in the carved arena, page aligned, overlapping no other; a run
//      being carved has a live (or dead, unrecovered) carver; run states are FREE, TABLE(g) for
//      the current, next or a past (not yet retired) table, or RETIRING.
//   1. Index, in the current table and (while migrating) the next: each slot
//      word is EMPTY, LIVE, DELETED or a frozen form; frozen words only in a
//      table being migrated; its ref lies in the arena; the record is
//      allocated (even generation) and its generation matches the slot's tag;
//      the record fits the arena and its size class; the fingerprint matches
//      the key's hash; no key has two slots in a table; every slot between a
//      key's home position and its slot is non-EMPTY (the probe invariant that
//      makes lookups find it). Across a migration: a key with a slot in the
//      next table has a frozen one (or none) in the old; a chunk marked DONE
//      has every slot frozen and every frozen live key in the next table;
//      a record is named by one slot, or by a frozen slot and its copy.
//   2. Free lists: every registry entry's heap (one list per size class) and
//      every pooled batch: each node in bounds, free (odd generation), of its
//      list's class, not also reachable, on one list only, no cycle; each
//      quiet entry's length hints right. An entry whose process died (or
//      exited) attached and that is not yet recovered is no violation: it is
//      counted (dead_entries), and what its intents hold is what recover()
//      would return (recoverable_bytes).
//   3. Arena: the reachable, free and held blocks (those a writer's intents
//      name: in flight for a live one, recoverable for a dead one) and the
//      index runs, sorted by offset, must not overlap and must lie below the
//      bump offset; the carved bytes they do not cover are reported as
//      leaked. A claim at the bump offset needs a carver (live or dead).
//   4. Counters: the entries' live shares against the index's live keys
//      (off by at most one per dead entry caught in a slot update, which
//      recovery settles), and their carved shares per class against
//      reachable + free + held.
// Exact on a quiet map. With writers running, counters can be off by the
// operations in flight.
#include "fsck.hpp"

#include <algorithm>
#include <cstdio>
#include <string>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "map_impl.hpp"

namespace shmap {
namespace {

using detail::Block;

class Checker {
 public:
  explicit Checker(const Map::Impl& m) : m_(m) {}

  FsckReport run() {
    check_index();
    check_free_lists();
    check_arena();
    check_counters();
    return std::move(r_);
  }

  detail::IndexScan index_only() {
    check_index();
    detail::IndexScan s;
    s.blocks = std::move(blocks_);
    s.blocks.insert(s.blocks.end(), runs_.begin(), runs_.end());
    s.reachable_per_class = std::move(reachable_per_class_);
    s.report = std::move(r_);
    return s;
  }

 private:
  const Map::Impl& m_;
  FsckReport r_;
  std::vector<Block> blocks_;
  std::vector<Block> runs_;                                          // index runs (claimed range)
  std::unordered_map<std::uint64_t, std::uint64_t> reachable_refs_;  // ref -> the (unfrozen) slot word naming it
  std::vector<std::uint64_t> reachable_per_class_ = std::vector<std::uint64_t>(detail::kClasses, 0);
  std::vector<std::uint64_t> free_per_class_ = std::vector<std::uint64_t>(detail::kClasses, 0);
  std::vector<std::uint64_t> held_per_class_ = std::vector<std::uint64_t>(detail::kClasses, 0);
  std::vector<std::uint64_t> carved_per_class_ = std::vector<std::uint64_t>(detail::kClasses, 0);
  std::unordered_set<std::uint64_t> seen_;                         // refs on a list or held
  std::uint64_t live_share_ = 0;                                   // sum (wrapping) of the entries' live shares
  std::pair<std::uint64_t, std::uint64_t> in_flight_chunk_{0, 0};  // {offset, bytes} a carver is cutting
  bool in_flight_dead_ = false;                                    // that carver is dead (its chunk is recoverable)
  bool recoverable_ = false;                                       // held blocks being added belong to a dead entry
  std::uint64_t dead_updaters_ = 0;  // dead entries with a slot intent (each may owe one live share)

  void violation(const std::string& what) {
    r_.ok = false;
    ++r_.violation_count;
    if (r_.violations.size() < 100) r_.violations.push_back(what);
  }

  std::uint64_t load(std::uint64_t& w) const {
    // Relaxed: fsck reads a snapshot and publishes nothing; with writers
    // running it is weakly consistent (see the file comment).
    return atom(w).load(std::memory_order_relaxed);
  }

  // Reads a record's bytes (key or value) as a string; relaxed word loads.
  std::string read_bytes(const std::uint64_t* words, std::size_t len) const {
    std::string out(len, '\0');
    for (std::size_t i = 0; i * 8 < len; ++i) {
      const std::uint64_t w = load(const_cast<std::uint64_t&>(words[i]));
      std::memcpy(out.data() + i * 8, &w, std::min<std::size_t>(8, len - i * 8));
    }
    return out;
  }

  // The tables fsck checks: the current one and, while migrating, the next.
  std::vector<Index> tables_;
  bool migrating_ = false;

  void check_directory() {
    const TablesWord t = m_.tables.load();
    if (!t.valid()) {
      violation("the index directory word is not valid");
      return;
    }
    migrating_ = t.migrating();
    try {
      tables_.push_back(m_.tables.cur(t));
      if (t.migrating()) tables_.push_back(m_.tables.next(t));
    } catch (const Error& e) {
      violation(e.what());
      tables_.clear();
    }
    if (t.migrating() && t.cur_run() == t.next_run()) violation("a migration's old and new tables share a run");
    std::vector<std::pair<std::uint64_t, std::uint64_t>> ranges;
    for (std::uint32_t k = 0; k < detail::kRuns; ++k) {
      const std::string where = "run " + std::to_string(k);
      const detail::RunGeom g{load(m_.header->runs[k].geom)};
      const detail::RunState s{load(m_.header->runs[k].state)};
      if (g.is_unused()) {
        if (s.raw != 0) violation(where + ": unused but its state is not FREE");
        continue;
      }
      if (g.is_reserving()) {
        const std::uint32_t j = g.reserver();
        const detail::Owner o{j < detail::kRegistryEntries ? load(m_.registry[j].owner) : 0};
        // A dead reserver's slot is given back by recovering its entry.
        if (o.is_free())
          violation(where + ": reserved by registry entry " + std::to_string(j) + ", which is not attached");
        continue;
      }
      if (!m_.tables.geom(k).is_set()) {
        violation(where + ": its geometry lies outside the arena");
        continue;
      }
      ranges.push_back({g.claimed_from(), g.start() + g.bytes()});
      runs_.push_back({g.claimed_from(), g.start() + g.bytes() - g.claimed_from(), 0, true});
      r_.index_run_bytes += g.start() + g.bytes() - g.claimed_from();
      const bool named = (k == t.cur_run()) || (t.migrating() && k == t.next_run());
      switch (s.kind()) {
        case detail::RunState::free:
          if (named && !(t.migrating() && k == t.next_run())) violation(where + ": FREE but the directory names it");
          break;
        case detail::RunState::table:
          if (k == t.cur_run() && (s.gen() != t.gen() || s.log2() != t.cur_log2()))
            violation(where + ": holds table " + std::to_string(s.gen()) + ", the directory's current table is " +
                      std::to_string(t.gen()));
          else if (t.migrating() && k == t.next_run() &&
                   (s.gen() != detail::gen_after(t.gen()) || s.log2() != t.next_log2()))
            violation(where + ": its state does not match the migration's next table");
          else if (!named && !detail::gen_before(s.gen(), t.gen()))
            violation(where + ": holds table " + std::to_string(s.gen()) + ", which the directory does not name");
          else if (!named)
            ++r_.unretired_tables;
          break;
        case detail::RunState::retiring:
          if (named) violation(where + ": retiring but the directory names it");
          break;
        default:
          violation(where + ": unknown state");
      }
    }
    std::sort(ranges.begin(), ranges.end());
    for (std::size_t i = 1; i < ranges.size(); ++i)
      if (ranges[i].first < ranges[i - 1].second) violation("two index runs overlap");
  }

  struct KeySlot {
    std::uint64_t pos;
    SlotWord w;
  };
  std::unordered_map<std::string, KeySlot> index_keys_;  // the newest table's keys

  void check_table(const Index& ix, bool source, std::unordered_map<std::string, KeySlot>* keys_out,
                   const std::unordered_map<std::string, KeySlot>* older) {
    const std::string which = "table " + std::to_string(ix.gen);
    std::unordered_map<std::string, KeySlot> keys;
    std::vector<char> chunk_all_frozen(ix.chunks(), 1);
    for (std::uint64_t pos = 0; pos <= ix.mask; ++pos) {
      const SlotWord w{load(ix.slot(pos))};
      const std::string where = which + ", slot " + std::to_string(pos);
      if (!w.is_frozen()) chunk_all_frozen[pos / ix.chunk_slots()] = 0;
      if (w.is_empty()) continue;
      if (w.is_frozen()) {
        if (!source) violation(where + ": frozen, but the table is not being migrated");
        if (!w.has_record()) {
          if (w == SlotWord::frozen_empty()) continue;
          const bool dropped = (w.raw & SlotWord::kDeletedBit) != 0 && w.fp() == 0 && w.dropped_holder() >= 1 &&
                               w.dropped_holder() <= detail::kRegistryEntries &&
                               w == SlotWord::frozen_dropped(w.dropped_holder());
          if (!dropped) violation(where + ": a frozen word with no record that is neither closed nor dropped");
          continue;
        }
        if (w.is_deleted()) violation(where + ": a frozen DELETED word still names a record");
      }
      if (!w.has_record()) {
        violation(where + ": not empty but refers to no record");
        continue;
      }
      const SlotWord rec = w.unfrozen();
      if (!m_.arena.in_bounds(rec.ref(), 8)) {
        violation(where + ": record ref " + std::to_string(rec.ref()) + " outside the arena");
        continue;
      }
      std::uint64_t* r = m_.arena.block(rec.ref());
      const RecordHeader h{load(r[0])};
      // A frozen slot whose record was recycled: the key was moved to the
      // next table and replaced or erased there (the frozen word stays).
      if (w.is_frozen() && (!h.is_allocated() || !rec.matches_gen(h.gen()))) continue;
      if (!h.is_allocated()) {
        violation(where + ": record is free (odd generation)");
        continue;
      }
      if (!rec.matches_gen(h.gen())) {
        violation(where + ": slot tag does not match the record's generation");
        continue;
      }
      const std::uint32_t cls = detail::size_class_of(h.record_bytes());
      const std::uint64_t block_bytes = detail::size_class_bytes(cls);
      if (!m_.arena.in_bounds(rec.ref(), block_bytes)) {
        violation(where + ": record block overruns the arena");
        continue;
      }
      const std::string key = read_bytes(r + 1, h.key_len());
      const KeyHash kh = m_.hash_of(key);
      if (kh.fp != rec.fp()) violation(where + ": fingerprint does not match the key's hash");
      if (!keys.emplace(key, KeySlot{pos, w}).second) violation(where + ": duplicate key (a second slot for one key)");
      // A record is named by one slot; a frozen slot and its copy in the
      // next table name the same record with the same word.
      const auto [it, fresh] = reachable_refs_.emplace(rec.ref(), rec.raw);
      if (!fresh) {
        if (it->second != rec.raw || !migrating_)
          violation(where + ": record ref " + std::to_string(rec.ref()) + " is referred to by two slots");
      } else {
        blocks_.push_back({rec.ref() * 8, block_bytes, cls, true});
        ++reachable_per_class_[cls];
        ++r_.reachable_blocks;
        r_.reachable_bytes += block_bytes;
      }
      // Probe invariant: no EMPTY (or closed) slot between the key's home and its slot.
      for (std::uint64_t q = ix.home(kh.hash); q != pos; q = ix.next(q)) {
        const SlotWord x{load(ix.slot(q))};
        if (x.is_empty() || x == SlotWord::frozen_empty()) {
          violation(where + ": an EMPTY slot (" + std::to_string(q) + ") lies between the key's home and its slot");
          break;
        }
      }
      // Zero padding after the key (key comparison relies on it).
      if (h.key_len() % 8 != 0) {
        const std::uint64_t tail = load(r[1 + h.key_len() / 8]);
        if (tail >> (8 * (h.key_len() % 8)) != 0) violation(where + ": key padding is not zero");
      }
      if (older) {
        const auto o = older->find(key);
        if (o != older->end() && !o->second.w.is_frozen())
          violation(where + ": the key has an unfrozen slot in the old table too (" + std::to_string(o->second.pos) +
                    ")");
      }
    }
    // Chunk words: 0 or DONE, DONE only in a migrating table whose chunk is all frozen.
    for (std::uint64_t i = 0; i < ix.chunks(); ++i) {
      const std::uint64_t c = load(ix.chunk_words[i]);
      if (c == 0) continue;
      if (c != 1 || !source) {
        violation(which + ": chunk word " + std::to_string(i) + " is " + std::to_string(c) +
                  (source ? "" : " in a table that is not being migrated"));
        continue;
      }
      if (!chunk_all_frozen[i])
        violation(which + ": chunk " + std::to_string(i) + " is DONE but has unfrozen slots");
      else
        ++r_.migration_chunks_done;
    }
    if (keys_out)
      *keys_out = std::move(keys);
    else
      index_keys_ = std::move(keys);
  }

  void check_index() {
    check_directory();
    if (tables_.empty()) return;
    if (!migrating_) {
      check_table(tables_[0], false, nullptr, nullptr);
      for (const auto& [key, ks] : index_keys_) (ks.w.is_live() ? r_.live_keys : r_.deleted_slots) += 1;
      return;
    }
    std::unordered_map<std::string, KeySlot> old_keys;
    check_table(tables_[0], true, &old_keys, nullptr);
    check_table(tables_[1], false, nullptr, &old_keys);
    r_.migration_chunks = tables_[0].chunks();
    // The keys of the map: the next table's, and the old table's frozen or
    // unfrozen live keys that have no slot in the next one yet.
    std::uint64_t done_missing = 0;
    for (const auto& [key, ks] : old_keys) {
      if (index_keys_.count(key)) continue;
      if (ks.w.unfrozen().is_live()) {
        ++r_.live_keys;
        const std::uint64_t chunk = ks.pos / tables_[0].chunk_slots();
        if (load(tables_[0].chunk_words[chunk]) == 1 && ks.w.is_frozen()) ++done_missing;
      } else {
        ++r_.deleted_slots;
      }
    }
    for (const auto& [key, ks] : index_keys_) (ks.w.is_live() ? r_.live_keys : r_.deleted_slots) += 1;
    if (done_missing)
      violation(std::to_string(done_missing) + " keys of chunks marked DONE are missing from the next table");
  }

  // Adds a block to the census unless it is already there (an intent can
  // name a block that is also on its list). False if it was.
  bool add_block(std::uint64_t ref, std::uint32_t cls, bool held) {
    if (!seen_.insert(ref).second) return false;
    const std::uint64_t bytes = detail::size_class_bytes(cls);
    blocks_.push_back({ref * 8, bytes, cls, false});
    if (held) {
      ++held_per_class_[cls];
      (recoverable_ ? r_.recoverable_bytes : r_.held_bytes) += bytes;
    } else {
      ++free_per_class_[cls];
      ++r_.free_blocks;
      r_.free_bytes += bytes;
    }
    return true;
  }

  // Walks one free chain of class `cls`; returns its length.
  std::uint64_t walk(std::uint64_t ref, std::uint32_t cls, std::uint64_t limit, const std::string& where, bool held) {
    const std::uint64_t block_bytes = detail::size_class_bytes(cls);
    std::uint64_t n = 0;
    std::unordered_set<std::uint64_t> this_walk;
    while (ref != 0) {
      if (!this_walk.insert(ref).second) {
        violation(where + ": node " + std::to_string(ref) + " comes round again (a cycle)");
        break;
      }
      if (n++ >= limit) {
        violation(where + ": longer than it can be (a cycle?)");
        break;
      }
      if (!m_.arena.in_bounds(ref, block_bytes)) {
        violation(where + ": node " + std::to_string(ref) + " outside the arena");
        break;
      }
      std::uint64_t* b = m_.arena.block(ref);
      const std::uint64_t raw = load(b[0]);
      if (RecordHeader{raw}.is_allocated())
        violation(where + ": node " + std::to_string(ref) + " is marked allocated");
      else if (detail::FreeHeader::cls_of(raw) != cls)
        violation(where + ": node " + std::to_string(ref) + " belongs to another size class");
      if (reachable_refs_.count(ref)) violation(where + ": node " + std::to_string(ref) + " is also in the index");
      if (!add_block(ref, cls, held)) {
        violation(where + ": node " + std::to_string(ref) + " is also on another list");
        break;
      }
      ref = load(b[1]);
    }
    return n;
  }

  // A block a thread's intent holds (not on any list): in flight (a live
  // thread) or recoverable (a dead one), not leaked.
  void held_block(std::uint64_t ref) {
    if (!m_.arena.in_bounds(ref, 16) || reachable_refs_.count(ref)) return;
    const std::uint32_t cls = detail::block_class(load(m_.arena.block(ref)[0]));
    if (cls < detail::kClasses && m_.arena.in_bounds(ref, detail::size_class_bytes(cls))) add_block(ref, cls, true);
  }

  void check_free_lists() {
    const std::uint64_t limit = m_.arena.bytes() / 16 + 1;
    const std::uint32_t n = detail::entries_in_use(m_.header);
    for (std::uint32_t e = 0; e < n; ++e) {
      detail::RegistryEntry& r = m_.registry[e];
      const detail::Owner o{load(r.owner)};
      const bool dead = !o.is_free() && !detail::owner_alive(o);
      if (dead) ++r_.dead_entries;
      // An intent recovery could not act on is damage, whoever holds it.
      if (!o.is_free() && load(r.x_kind) > std::uint64_t(detail::Exchange::run_carved))
        violation("registry entry " + std::to_string(e) + ": its exchange intent names no step (kind " +
                  std::to_string(load(r.x_kind)) + ")");
      const bool quiet = load(r.op_slot) == 0 && load(r.pending) == 0 && load(r.freeing) == 0 && load(r.x_kind) == 0;
      for (std::uint32_t c = 0; c < detail::kClasses; ++c) {
        const std::string where = "free list of entry " + std::to_string(e) + ", class " + std::to_string(c) + " (" +
                                  std::to_string(detail::size_class_bytes(c)) + " B)";
        const std::uint64_t len =
            walk(detail::atom32(r.head[c]).load(std::memory_order_relaxed), c, limit, where, false);
        if (quiet && len != detail::atom32(r.count[c]).load(std::memory_order_relaxed))
          violation(where + ": its length hint is " +
                    std::to_string(detail::atom32(r.count[c]).load(std::memory_order_relaxed)) + ", the list has " +
                    std::to_string(len));
        carved_per_class_[c] += detail::atom32(r.carved[c]).load(std::memory_order_relaxed);
      }
      live_share_ += load(r.live);
    }
    for (std::uint32_t c = 0; c < detail::kClasses; ++c) {
      for (std::uint32_t i = 0; i < detail::kPoolCells; ++i) {
        const std::uint64_t cell = load(m_.header->pool[c].cells[i]);
        if (cell == 0) continue;
        const std::uint64_t first = cell & 0xffffffffu;
        const auto gen = static_cast<std::uint32_t>(cell >> 32);
        if (!m_.arena.in_bounds(first, 16)) {
          violation("pool cell " + std::to_string(i) + " of class " + std::to_string(c) + " points outside the arena");
          continue;
        }
        // A cell whose batch was taken is a stale hint, not a violation.
        if (load(m_.arena.block(first)[0]) != detail::FreeHeader::make(gen, c, 0)) continue;
        walk(first, c, detail::kBatchBlocks,
             "pooled batch in cell " + std::to_string(i) + " of class " + std::to_string(c), false);
      }
    }
    // Then the intents, after every list and pooled batch is known: a block an
    // intent names that is also on a list or in a cell (a donation placed, a
    // take done) is counted there once.
    for (std::uint32_t e = 0; e < n; ++e) {
      detail::RegistryEntry& r = m_.registry[e];
      const detail::Owner o{load(r.owner)};
      const bool dead = !o.is_free() && !detail::owner_alive(o);
      const bool quiet = load(r.op_slot) == 0 && load(r.pending) == 0 && load(r.freeing) == 0 && load(r.x_kind) == 0;
      if (quiet || o.is_free()) continue;
      // A writer mid-step: what its intents hold is in flight (live), or
      // what recover() will return (dead).
      recoverable_ = dead;
      if (dead && load(r.op_slot) != 0) ++dead_updaters_;
      if (const std::uint64_t p = load(r.pending)) held_block(p & 0xffffffffu);
      if (const std::uint64_t f = load(r.freeing)) held_block(f & 0xffffffffu);
      if (load(r.op_slot) != 0) {
        // Between its CAS and `freeing`, the record it unlinked is held by the slot intent.
        const SlotWord ex{load(r.op_expected)}, de{load(r.op_desired)};
        if (ex.has_record() && ex.ref() != de.ref()) held_block(ex.ref());
      }
      const auto kind = static_cast<detail::Exchange>(load(r.x_kind));
      const std::uint64_t ref = load(r.x_ref);
      if (kind == detail::Exchange::carve || kind == detail::Exchange::carved) {
        in_flight_chunk_ = {ref * 8, load(r.x_gen)};
        in_flight_dead_ = dead;
      } else if (kind == detail::Exchange::run_carve || kind == detail::Exchange::run_carved) {
        // A run being claimed for an index table: in flight until it is in runs[].
        bool listed = false;
        for (const Block& b : runs_) listed = listed || b.offset == ref * 8;
        if (!listed) {
          in_flight_chunk_ = {ref * 8, detail::CarveClaim::bytes_of(detail::RunClaim::make(0, load(r.x_gen)), ref * 8)};
          in_flight_dead_ = dead;
        }
      } else if (kind == detail::Exchange::take || kind == detail::Exchange::donate) {
        for (std::uint64_t b = ref, k = 0; b != 0 && k < detail::kBatchBlocks && m_.arena.in_bounds(b, 16); ++k) {
          held_block(b);
          b = load(m_.arena.block(b)[1]);
        }
      }
    }
    recoverable_ = false;
  }

  void check_arena() {
    blocks_.insert(blocks_.end(), runs_.begin(), runs_.end());
    const std::uint64_t top = load(m_.header->arena_top.value);
    if (top < detail::kArenaFirstOffset || top > m_.arena.bytes()) {
      violation("arena bump offset " + std::to_string(top) + " out of range");
      return;
    }
    r_.carved_bytes = top - detail::kArenaFirstOffset;
    // Carving reserves before it claims: the bump offset never passes the
    // reservation mark, and the mark never passes the arena's size.
    const std::uint64_t reserved = load(m_.header->arena_reserved);
    if (reserved > m_.arena.bytes())
      violation("the arena's reservation mark (" + std::to_string(reserved) + ") lies past its size (" +
                std::to_string(m_.arena.bytes()) + ")");
    if (top > reserved)
      violation("the arena bump offset (" + std::to_string(top) + ") lies past the reservation mark (" +
                std::to_string(reserved) + "): carved pages without file blocks");
    // The word at the bump offset is read only if its page is reserved (a
    // read of a hole would allocate a page on tmpfs); a claim is always there.
    if (top < std::min(reserved, m_.arena.bytes())) {
      const std::uint64_t w = load(m_.arena.block(top / 8)[0]);
      if (detail::CarveClaim::is_claim(w) && !(in_flight_chunk_.first == top))
        violation("a carve claim at the bump offset (" + std::to_string(top) + ") has no carver");
      // A dead carver's chunk, claimed but not yet past the bump offset:
      // recovery advances the offset and cuts it onto the entry's list.
      else if (detail::CarveClaim::is_claim(w) && in_flight_dead_ && !detail::CarveClaim::is_run(w))
        r_.recoverable_bytes += std::min(detail::CarveClaim::bytes_of(w, top), m_.arena.bytes() - top);
    }
    if (in_flight_chunk_.second != 0 && in_flight_chunk_.first < top) {
      // A thread cutting a chunk: its bytes are in flight (or recoverable).
      std::uint64_t from = in_flight_chunk_.first, to = std::min(top, from + in_flight_chunk_.second);
      for (const Block& b : blocks_) {
        if (b.offset >= from && b.offset < to) from = std::max(from, b.offset + b.bytes);
      }
      if (to > from) {
        blocks_.push_back({from, to - from, 0, false});
        (in_flight_dead_ ? r_.recoverable_bytes : r_.held_bytes) += to - from;
      }
    }
    std::sort(blocks_.begin(), blocks_.end(), [](const Block& a, const Block& b) { return a.offset < b.offset; });
    std::uint64_t covered = 0;
    std::uint64_t end = detail::kArenaFirstOffset;
    for (const Block& b : blocks_) {
      if (b.offset + b.bytes > top)
        violation("block at arena offset " + std::to_string(b.offset) + " lies beyond the bump offset");
      if (b.offset < end) {
        violation("blocks overlap at arena offset " + std::to_string(b.offset));
      } else {
        covered += b.bytes;
      }
      end = std::max(end, b.offset + b.bytes);
    }
    r_.leaked_bytes = r_.carved_bytes > covered ? r_.carved_bytes - covered : 0;
  }

  void check_counters() {
    // A dead writer caught between its slot CAS and its share update owes
    // one share, which recovering it settles.
    const std::uint64_t off = live_share_ - r_.live_keys;  // wrapping
    if (off != 0 && std::min(off, 0 - off) > dead_updaters_)
      violation("live-key shares sum to " + std::to_string(static_cast<std::int64_t>(live_share_)) +
                ", the index has " + std::to_string(r_.live_keys) + " live slots");
    for (std::uint32_t c = 0; c < detail::kClasses; ++c) {
      const std::uint64_t accounted = reachable_per_class_[c] + free_per_class_[c] + held_per_class_[c];
      if (carved_per_class_[c] != accounted && in_flight_chunk_.second == 0)
        violation("size class " + std::to_string(c) + ": entries carved " + std::to_string(carved_per_class_[c]) +
                  " blocks, reachable + free + in flight is " + std::to_string(accounted));
    }
    if (r_.leaked_bytes != 0)
      violation(std::to_string(r_.leaked_bytes) + " carved bytes are neither reachable, free, nor in flight");
  }
};

}  // namespace

FsckReport Map::fsck() const {
  return Checker(*impl_).run();
}

namespace detail {
IndexScan scan_index(const Map::Impl& m) {
  return Checker(m).index_only();
}
}  // namespace detail

}  // namespace shmap
