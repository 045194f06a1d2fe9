// fsck: checks every invariant of a segment without writing to it.
//
//   1. Index: each slot word is EMPTY, LIVE or DELETED with no reserved bit;
//      its ref lies in the arena; the record is allocated (even generation)
//      and its generation matches the slot's tag; the record fits the arena
//      and its size class; the fingerprint matches the key's hash; no key has
//      two slots; every slot between a key's home position and its slot is
//      non-EMPTY (the probe invariant that makes lookups find it).
//   2. Free lists: every node in bounds, free (odd generation), of its list's
//      class, not also reachable, no cycle (a list is cut at `carved` nodes).
//   3. Arena: the reachable and free blocks, sorted by offset, must not
//      overlap and must lie below the bump offset; the carved bytes they do
//      not cover are reported as leaked.
//   4. Counters: live_keys, used_slots, per-class in_use and carved against
//      what the walk found.
// Exact on a quiet map. With writers running, records in flight show up as
// leaked bytes and counters can be off by the operations in flight.
#include <algorithm>
#include <cstdio>
#include <string>
#include <unordered_set>
#include <vector>

#include "fsck.hpp"
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
    s.reachable_per_class = std::move(reachable_per_class_);
    s.report = std::move(r_);
    return s;
  }

 private:
  const Map::Impl& m_;
  FsckReport r_;
  std::vector<Block> blocks_;
  std::unordered_set<std::uint64_t> reachable_refs_;
  std::vector<std::uint64_t> reachable_per_class_ = std::vector<std::uint64_t>(detail::kClasses, 0);
  std::vector<std::uint64_t> free_per_class_ = std::vector<std::uint64_t>(detail::kClasses, 0);

  void violation(const std::string& what) {
    r_.ok = false;
    ++r_.violation_count;
    if (r_.violations.size() < 100) r_.violations.push_back(what);
  }

  std::uint64_t load(std::uint64_t& w) const {
    // Relaxed: fsck reads a snapshot; a record it reads is re-validated by its generation below.
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

  void check_index() {
    const std::uint64_t slots = m_.mask + 1;
    std::unordered_set<std::string> keys;
    // Home position of the key found in each slot, for the probe invariant.
    for (std::uint64_t pos = 0; pos < slots; ++pos) {
      const SlotWord w{load(m_.index[pos])};
      if (w.is_empty()) continue;
      const std::string where = "slot " + std::to_string(pos);
      if (w.raw & SlotWord::kFrozenBit) violation(where + ": reserved FROZEN bit set");
      if (!w.has_record()) {
        violation(where + ": not empty but refers to no record");
        continue;
      }
      if (w.is_live()) ++r_.live_keys;
      else ++r_.deleted_slots;
      if (!m_.arena.in_bounds(w.ref(), 8)) {
        violation(where + ": record ref " + std::to_string(w.ref()) + " outside the arena");
        continue;
      }
      std::uint64_t* rec = m_.arena.block(w.ref());
      const RecordHeader h{load(rec[0])};
      if (!h.is_allocated()) {
        violation(where + ": record is free (odd generation)");
        continue;
      }
      if (!w.matches_gen(h.gen())) {
        violation(where + ": slot tag does not match the record's generation");
        continue;
      }
      const std::uint32_t cls = detail::size_class_of(h.record_bytes());
      const std::uint64_t block_bytes = detail::size_class_bytes(cls);
      if (!m_.arena.in_bounds(w.ref(), block_bytes)) {
        violation(where + ": record block overruns the arena");
        continue;
      }
      if (!reachable_refs_.insert(w.ref()).second) {
        violation(where + ": record ref " + std::to_string(w.ref()) + " is referred to by two slots");
        continue;
      }
      blocks_.push_back({w.ref() * 8, block_bytes, cls, true});
      ++reachable_per_class_[cls];
      ++r_.reachable_blocks;
      r_.reachable_bytes += block_bytes;

      const std::string key = read_bytes(rec + 1, h.key_len());
      const Map::Impl::Probe p = m_.probe_of(key);
      if (p.fp != w.fp()) violation(where + ": fingerprint does not match the key's hash");
      if (!keys.insert(key).second) violation(where + ": duplicate key (a second slot for one key)");
      // Probe invariant: no EMPTY slot between the key's home and its slot.
      for (std::uint64_t q = p.hash & m_.mask; q != pos; q = (q + 1) & m_.mask) {
        if (SlotWord{load(m_.index[q])}.is_empty()) {
          violation(where + ": an EMPTY slot (" + std::to_string(q) + ") lies between the key's home and its slot");
          break;
        }
      }
      // Zero padding after the key (key comparison relies on it).
      if (h.key_len() % 8 != 0) {
        const std::uint64_t tail = load(rec[1 + h.key_len() / 8]);
        if (tail >> (8 * (h.key_len() % 8)) != 0) violation(where + ": key padding is not zero");
      }
    }
  }

  void check_free_lists() {
    for (std::uint32_t c = 0; c < detail::kClasses; ++c) {
      detail::SizeClass& sc = m_.header->classes[c];
      const std::uint64_t block_bytes = detail::size_class_bytes(c);
      const std::uint64_t carved = load(sc.carved);
      std::uint64_t ref = detail::FreeHead{load(sc.head)}.ref();
      std::uint64_t n = 0;
      const std::string where = "free list of class " + std::to_string(c) + " (" + std::to_string(block_bytes) + " B)";
      while (ref != 0) {
        if (n++ >= carved) {
          violation(where + ": longer than the blocks ever carved for it (a cycle?)");
          break;
        }
        if (!m_.arena.in_bounds(ref, block_bytes)) {
          violation(where + ": node " + std::to_string(ref) + " outside the arena");
          break;
        }
        std::uint64_t* b = m_.arena.block(ref);
        const RecordHeader h{load(b[0])};
        if (h.is_allocated()) violation(where + ": node " + std::to_string(ref) + " is marked allocated");
        if (detail::size_class_of(h.record_bytes()) != c)
          violation(where + ": node " + std::to_string(ref) + " belongs to another size class");
        if (reachable_refs_.count(ref)) violation(where + ": node " + std::to_string(ref) + " is also in the index");
        blocks_.push_back({ref * 8, block_bytes, c, false});
        ++free_per_class_[c];
        ++r_.free_blocks;
        r_.free_bytes += block_bytes;
        ref = load(b[1]);
      }
    }
  }

  void check_arena() {
    const std::uint64_t top = load(m_.header->arena_top.value);
    if (top < detail::kArenaFirstOffset || top > m_.arena.bytes()) {
      violation("arena bump offset " + std::to_string(top) + " out of range");
      return;
    }
    r_.carved_bytes = top - detail::kArenaFirstOffset;
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
    const std::uint64_t live = load(m_.header->live_keys.value);
    if (live != r_.live_keys)
      violation("live_keys counter is " + std::to_string(live) + ", the index has " + std::to_string(r_.live_keys) +
                " live slots");
    const std::uint64_t used = load(m_.header->used_slots.value);
    if (used != r_.live_keys + r_.deleted_slots)
      violation("used_slots counter is " + std::to_string(used) + ", the index has " +
                std::to_string(r_.live_keys + r_.deleted_slots) + " claimed slots");
    for (std::uint32_t c = 0; c < detail::kClasses; ++c) {
      detail::SizeClass& sc = m_.header->classes[c];
      const std::uint64_t in_use = load(sc.in_use);
      const std::uint64_t carved = load(sc.carved);
      const std::string where = "size class " + std::to_string(c) + ": ";
      if (in_use != reachable_per_class_[c])
        violation(where + "in_use is " + std::to_string(in_use) + ", the index refers to " +
                  std::to_string(reachable_per_class_[c]) + " blocks");
      if (carved != reachable_per_class_[c] + free_per_class_[c])
        violation(where + "carved is " + std::to_string(carved) + ", reachable + free is " +
                  std::to_string(reachable_per_class_[c] + free_per_class_[c]));
    }
    if (r_.leaked_bytes != 0) violation(std::to_string(r_.leaked_bytes) + " carved bytes are neither reachable nor free");
  }
};

}  // namespace

FsckReport Map::fsck() const { return Checker(*impl_).run(); }

namespace detail {
IndexScan scan_index(const Map::Impl& m) { return Checker(m).index_only(); }
}  // namespace detail

}  // namespace shmap
