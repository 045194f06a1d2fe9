// recover: survivors finish or undo the step each dead thread was in, from its
// registry entry's intents, while everyone else keeps running.
//
// CLAIM. A survivor CASes a dead owner word to its own identity with the
// borrower bit (seq_cst, then reads the maintenance mark: the same Dekker pair
// as attach, so a repair never runs beside it). Exactly one survivor holds the
// entry; if it dies too, its own death makes the entry claimable again, and
// every step below is idempotent, so the next survivor simply starts over.
//
// RESOLVE, in this order (each mirrors the order the owner wrote them in):
//   exchange  take:   the batch header names us as holder -> splice it if the
//                     list does not start with it yet.
//             donate: the list no longer starts with the batch, no pool cell
//                     names {batch, gen}, and its header is not held by a
//                     taker -> the CAS never happened: relink the batch.
//             carve:  the chunk's first word is our claim -> we won the race:
//                     advance the bump offset, cut the chunk, put it on the
//                     list (carved: the same, and also if already cut but not
//                     on the list yet).
//   freeing   the block still has the allocated generation -> free it; it is
//             free but not at the head of its list -> push it.
//   op        decide whether the slot CAS happened (decide() below). If so:
//             the counter shares take their "after" values, the record it
//             unlinked is freed, the new record is no longer pending. If not:
//             the pending record is freed (by the pending step).
//   pending   the block is still the head of its list -> nothing was popped;
//             free generation unchanged -> popped only: push it back;
//             allocated generation -> allocated, never published: free it.
//   runs      a run slot the dead thread reserved, or a run it claimed at
//             the bump offset (run_carve): finish installing it, or give the
//             slot back; a run it was retiring (RETIRING naming it): zero it
//             and free it.
//   announce  cleared last (op_gen): the tables it kept from retirement may
//             go once its intents no longer name them.
// Then the lists are recounted, handed to the pool as far as cells allow, the
// intents cleared, and the entry released: its remaining lists stay with it
// (an orphan heap, adopted by the next claimer or borrowed when short).
#include <optional>
#include <string>

#include "map_impl.hpp"

namespace shmap {

using detail::Exchange;
using detail::FreeHeader;
using detail::RegistryEntry;

namespace {

constexpr std::uint64_t kRefMask = 0xffffffffu;

std::uint64_t load(std::uint64_t& w) {
  // Acquire: pairs with the owner's release stores (arena.cpp file comment),
  // and with the CASes that published the words we inspect.
  return atom(w).load(std::memory_order_acquire);
}
std::uint32_t load32(std::uint32_t& w) {
  // Acquire: as above.
  return detail::atom32(w).load(std::memory_order_acquire);
}
void store(std::uint64_t& w, std::uint64_t v) {
  // Release: the same rule as the owner's own intent stores.
  atom(w).store(v, std::memory_order_release);
}

class Recovery {
 public:
  Recovery(Map::Impl& m, std::uint32_t j, RecoverReport& report)
      : m_(m), a_(m.arena), j_(j), r_(m.registry[j]), report_(report) {}

  void run() {
    resolve_exchange();
    resolve_runs();
    resolve_freeing();
    resolve_op();
    resolve_pending();
    // Recount (the counts are hints the owner may have died updating), then
    // hand what fits to the pool.
    const std::uint32_t limit = static_cast<std::uint32_t>(std::min<std::uint64_t>(a_.bytes() / 16 + 1, 0xffffffffu));
    for (std::uint32_t c = 0; c < detail::kClasses; ++c) {
      const std::uint32_t n = a_.chain_length(load32(r_.head[c]), limit);
      detail::atom32(r_.count[c]).store(n, std::memory_order_release);  // Release: as store().
      if (n) a_.donate(j_, c, 0);
    }
    // Seq_cst: the announcement goes last, once no intent names a table
    // (a retirer's seq_cst load then sees it cleared, or still pinned).
    atom(r_.op_gen).store(0, std::memory_order_seq_cst);
  }

 private:
  Map::Impl& m_;
  detail::Arena& a_;
  std::uint32_t j_;
  RegistryEntry& r_;
  RecoverReport& report_;

  std::uint64_t header_of(std::uint64_t ref, std::uint64_t bytes = 16) {
    if (!a_.in_bounds(ref, bytes)) a_.corrupt("an intent names a block outside the arena", ref);
    return load(a_.block(ref)[0]);
  }
  void count_returned(std::uint64_t blocks, std::uint32_t cls) {
    report_.blocks_returned += blocks;
    report_.bytes_returned += blocks * detail::size_class_bytes(cls);
  }
  void set_head(std::uint32_t cls, std::uint64_t ref) {
    detail::atom32(r_.head[cls])
        .store(static_cast<std::uint32_t>(ref), std::memory_order_release);  // Release: as store().
  }

  void resolve_exchange() {
    const auto kind = static_cast<Exchange>(load(r_.x_kind));
    if (kind == Exchange::none) return;
    const std::uint64_t ref = load(r_.x_ref);
    const std::uint64_t gen_or_bytes = load(r_.x_gen);
    const std::uint64_t cls_word = load(r_.x_cls);
    const auto cls = static_cast<std::uint32_t>(cls_word & 0xff);
    const auto blocks = static_cast<std::uint32_t>(cls_word >> 8);
    if (cls >= detail::kClasses && kind != Exchange::run_carve && kind != Exchange::run_carved)
      a_.corrupt("an exchange intent names no size class", ref);
    if (kind == Exchange::donate && (blocks == 0 || blocks > detail::kBatchBlocks))
      a_.corrupt("a donate intent names an impossible batch length", ref);
    if (kind == Exchange::take) {
      const std::uint64_t held = FreeHeader::make(static_cast<std::uint32_t>(gen_or_bytes), cls, j_ + 1);
      if (header_of(ref) == held && load32(r_.head[cls]) != ref) {
        count_returned(a_.chain_length(ref, detail::kBatchBlocks), cls);
        set_head(cls, ref);
      }
    } else if (kind == Exchange::donate) {
      const auto gen = static_cast<std::uint32_t>(gen_or_bytes);
      if (load32(r_.head[cls]) != ref && !in_pool(cls, detail::pool_cell(ref, gen))) {
        // Read after the cells: a taker changes the header before it clears the cell.
        const std::uint64_t h = header_of(ref);
        const RecordHeader rh{h};
        const bool never_pooled = !rh.is_allocated() && rh.gen() == gen - 2;
        const bool pooled_not_placed = h == FreeHeader::make(gen, cls, 0);
        if (never_pooled || pooled_not_placed) {
          std::uint64_t last = ref;
          for (std::uint32_t i = 1; i < blocks; ++i) {
            const std::uint64_t next = load(a_.block(last)[1]);
            if (next == 0 || !a_.in_bounds(next, 16)) break;
            last = next;
          }
          store(a_.block(last)[1], load32(r_.head[cls]));
          set_head(cls, ref);
          count_returned(blocks, cls);
        }
      }
    } else if (kind == Exchange::run_carve || kind == Exchange::run_carved) {
      const std::uint64_t top = ref * 8;
      const std::uint64_t pages = gen_or_bytes;
      const auto slot = static_cast<std::uint32_t>(cls_word);
      if (slot >= detail::kRuns) a_.corrupt("a run intent names no run slot", ref);
      const bool claimed = header_of(ref, 8) == detail::RunClaim::make(j_, pages);
      if (claimed || kind == Exchange::run_carved) {
        store(r_.x_kind, std::uint64_t(Exchange::run_carved));
        a_.finish_run(j_, slot, top, pages);
      }
    } else if (kind == Exchange::carve || kind == Exchange::carved) {
      const std::uint64_t offset = ref * 8;
      const bool claimed = header_of(ref) == detail::CarveClaim::make(j_ + 1, gen_or_bytes);
      if (claimed || kind == Exchange::carved) {
        // Marked won before the claim word is overwritten by the cut, as the
        // owner does, so a survivor killed mid-cut leaves "carved" behind.
        store(r_.x_kind, std::uint64_t(Exchange::carved));
        if (claimed) {
          a_.help_bump(offset);
          a_.cut_chunk(offset, gen_or_bytes, cls);
        }
        if (load32(r_.head[cls]) != ref) {
          set_head(cls, ref);
          count_returned(blocks, cls);
        }
        detail::atom32(r_.carved[cls])
            .store(static_cast<std::uint32_t>(load(r_.x_aux)), std::memory_order_release);  // Release: as store().
      }
    } else {
      a_.corrupt("unknown exchange intent", ref);
    }
    store(r_.x_kind, 0);
  }

  // Run slots the dead thread reserved and never filled (it died before its
  // run claim won, or after its claim lost): give them back.
  // Retirements the dead thread held: finish them (zero the run, free it).
  void resolve_runs() {
    for (std::uint32_t k = 0; k < detail::kRuns; ++k) {
      std::uint64_t reserving = detail::RunGeom::reserving(j_).raw;
      // Relaxed: the slot holds nothing yet (see start_migration).
      atom(m_.header->runs[k].geom).compare_exchange_strong(reserving, 0, std::memory_order_relaxed);
      const detail::RunState s = m_.tables.run_state(k);
      if (s.kind() == detail::RunState::retiring && s.holder() == j_ + 1) m_.retire_run(k, s, j_);
    }
  }

  bool in_pool(std::uint32_t cls, std::uint64_t cell) {
    for (std::uint32_t i = 0; i < detail::kPoolCells; ++i)
      if (load(m_.header->pool[cls].cells[i]) == cell) return true;
    return false;
  }

  // Gives back a block the dead thread owned and had allocated (even generation).
  void give_back(std::uint64_t ref) {
    const std::uint32_t cls = detail::block_class(header_of(ref));
    a_.free(j_, ref);
    count_returned(1, cls);
  }

  void resolve_freeing() {
    const std::uint64_t f = load(r_.freeing);
    if (f == 0) return;
    const std::uint64_t ref = f & kRefMask;
    const auto gen = static_cast<std::uint32_t>(f >> 32);
    const std::uint64_t h = header_of(ref);
    const RecordHeader rh{h};
    if (rh.is_allocated() && rh.gen() == gen) {
      a_.free_recorded(j_, ref);
      count_returned(1, detail::block_class(h));
    } else if (!rh.is_allocated() && rh.gen() == gen + 1) {
      const std::uint32_t cls = FreeHeader::cls_of(h);
      if (cls >= detail::kClasses) a_.corrupt("a freed block names no size class", ref);
      if (load32(r_.head[cls]) != ref) {  // freed, not yet pushed
        a_.push_local(j_, ref, cls);
        count_returned(1, cls);
      }
    }
    store(r_.freeing, 0);
  }

  // The table the slot intent names (op_table). It is not retired: the dead
  // thread's announcement keeps it until this recovery clears it.
  Index intent_table(std::uint64_t gen) {
    const TablesWord t = m_.tables.load();
    if (t.gen() == gen) return m_.tables.cur(t);
    if (t.migrating() && detail::gen_after(t.gen()) == gen) return m_.tables.next(t);
    if (const std::optional<Index> ix = m_.tables.find_gen(gen)) return *ix;
    a_.corrupt("a slot intent names a table that is gone", gen);
  }

  // Did the dead thread's CAS of slot `pos` from `expected` to `desired` (a
  // word naming its own fresh record P) happen? Read in this order:
  //   1. the slot: it still holds `desired` (or `desired` frozen by a
  //      migration since) -> yes;
  //   2. `pending`: the owner clears it only after a successful CAS -> yes;
  //   3. every other entry's intents: one unlinking `desired` (op_expected,
  //      in any table: a migration moves the word unchanged) or freeing P
  //      with its published generation -> yes (it read `desired` from a slot);
  //   4. P's header: no longer the generation it was published with -> yes
  //      (only an unlinker frees a published record).
  // Otherwise no. An unlinker writes its op intent before its CAS, `freeing`
  // before it clears the op intent, and the new generation before it clears
  // `freeing`; each a release, and our loads acquire (and the slot's CASes
  // form one release sequence), so whichever step it is at, one of 1-4 sees it.
  bool decide(const Index& ix, std::uint64_t pos, SlotWord desired, std::uint64_t pending) {
    // D, or D marked DELETED in place (an erase that found the arena full):
    // only a writer that read D from the slot can produce either.
    const std::uint64_t marked = desired.deleted().raw;
    const std::uint64_t now = ix.load(pos).raw;
    if (now == desired.raw || now == marked || now == desired.frozen().raw || now == desired.deleted().frozen().raw)
      return true;
    if ((pending & kRefMask) != desired.ref()) return true;
    const std::uint32_t published_gen = RecordHeader::allocated_gen(static_cast<std::uint32_t>(pending >> 32));
    const std::uint32_t n = detail::entries_in_use(m_.header);
    for (std::uint32_t k = 0; k < n; ++k) {
      if (k == j_) continue;
      RegistryEntry& o = m_.registry[k];
      if (load(o.op_slot) != 0) {
        const std::uint64_t expected = load(o.op_expected);
        if (expected == desired.raw || expected == marked) return true;
      }
      const std::uint64_t f = load(o.freeing);
      if ((f & kRefMask) == desired.ref() && static_cast<std::uint32_t>(f >> 32) == published_gen) return true;
    }
    const RecordHeader h{header_of(desired.ref())};
    return !(h.is_allocated() && h.gen() == published_gen);
  }

  void resolve_op() {
    const std::uint64_t slot = load(r_.op_slot);
    if (slot == 0) return;
    const std::uint64_t pos = slot - 1;
    const Index ix = intent_table(load(r_.op_table));
    if (pos > ix.mask) a_.corrupt("a slot intent names a slot outside its table", pos);
    const SlotWord expected{load(r_.op_expected)};
    const SlotWord desired{load(r_.op_desired)};
    const std::uint64_t pending = load(r_.pending);
    bool happened;
    if (desired.is_frozen()) {
      // A migration dropping a deleted key: the frozen word names the dead
      // thread, and a frozen slot never changes again.
      happened = ix.load(pos) == desired;
    } else if (desired.ref() == expected.ref()) {
      // An erase without a fresh record (full arena): see docs/design.md.
      happened = ix.load(pos) == desired;
    } else {
      happened = decide(ix, pos, desired, pending);
    }
    if (!happened) {
      // The pending step frees the unpublished record.
      store(r_.op_slot, 0);
      return;
    }
    store(r_.live, load(r_.op_live_after));
    std::uint64_t unlinked = 0;
    if (expected.has_record() && expected.ref() != desired.ref()) {
      const RecordHeader h{header_of(expected.ref())};
      // The dead thread unlinked it; only it could free it, and it clears
      // the op intent before it starts to: so it is still allocated, with
      // the generation the expected word names.
      if (h.is_allocated() && expected.matches_gen(h.gen())) {
        unlinked = expected.ref();
        store(r_.freeing, unlinked | (std::uint64_t(h.gen()) << 32));
      }
    }
    if (desired.ref() != 0 && (pending & kRefMask) == desired.ref()) store(r_.pending, 0);
    store(r_.op_slot, 0);
    if (unlinked) {
      const std::uint32_t cls = detail::block_class(header_of(unlinked));
      a_.free_recorded(j_, unlinked);
      count_returned(1, cls);
    }
  }

  void resolve_pending() {
    const std::uint64_t p = load(r_.pending);
    if (p == 0) return;
    const std::uint64_t ref = p & kRefMask;
    const auto popped_gen = static_cast<std::uint32_t>(p >> 32);
    const std::uint64_t h = header_of(ref);
    const RecordHeader rh{h};
    const std::uint32_t cls = detail::block_class(h);
    if (cls < detail::kClasses && load32(r_.head[cls]) != ref) {
      if (!rh.is_allocated() && rh.gen() == popped_gen) {
        a_.push_local(j_, ref, cls);  // popped, not yet allocated
        count_returned(1, cls);
      } else if (rh.is_allocated() && rh.gen() == RecordHeader::allocated_gen(popped_gen)) {
        give_back(ref);  // allocated, never published (free() clears `pending`)
      }
    }
    store(r_.pending, 0);
  }
};

// Claims entry j from the owner word `seen` with our identity as borrower.
// Seq_cst, then the maintenance mark (seq_cst): the Dekker pair with repair,
// as in attach(). False if we lost the race or a repair runs.
bool borrow(Map::Impl& m, std::uint32_t j, std::uint64_t seen, detail::Owner borrower, bool repairing) {
  if (!atom(m.registry[j].owner)
           .compare_exchange_strong(seen, borrower.raw, std::memory_order_seq_cst, std::memory_order_relaxed))
    return false;
  if (repairing) return true;  // the mark is ours
  const std::uint64_t mark = atom(m.header->maintenance).load(std::memory_order_seq_cst);
  if (mark != 0 && detail::owner_alive(detail::Owner{mark})) {
    // Seq_cst: give the entry back as we found it.
    atom(m.registry[j].owner).store(seen, std::memory_order_seq_cst);
    return false;
  }
  return true;
}

}  // namespace

namespace {

enum class Recovered { no, yes, damaged };

// Recovers entry j, whose owner word was `raw` (a dead owner), if we win the
// borrow.
Recovered recover_one(Map::Impl& m, std::uint32_t j, std::uint64_t raw, bool repairing, RecoverReport& report,
                      std::optional<Error>* damage) {
  const detail::Owner borrower = detail::self_owner().as_borrower();
  if (!borrow(m, j, raw, borrower, repairing)) return Recovered::no;
  try {
    Recovery(m, j, report).run();
  } catch (const Error& e) {
    // Damage recovery cannot undo: leave the entry as we found it (fsck
    // reports it, repair rebuilds around it) and go on with the others.
    // Seq_cst: as in borrow().
    atom(m.registry[j].owner).store(raw, std::memory_order_seq_cst);
    if (e.code() != make_error_code(errc::corrupt)) throw;
    if (damage && !damage->has_value()) damage->emplace(e);
    ++report.damaged;
    return Recovered::damaged;
  } catch (...) {
    atom(m.registry[j].owner).store(raw, std::memory_order_seq_cst);  // Seq_cst: as in borrow().
    throw;
  }
  ++report.entries;
  detail::detach(m.registry, j, borrower);
  return Recovered::yes;
}

}  // namespace

RecoverReport Map::Impl::recover_dead(std::uint32_t self, bool repairing, std::optional<Error>* damage) {
  RecoverReport report;
  const std::uint32_t n = detail::entries_in_use(header);
  for (std::uint32_t j = 0; j < n; ++j) {
    if (j == self) continue;
    // Acquire: pairs with the claim of the entry (its owner's seq_cst CAS);
    // the dead owner's later stores are acquired by the borrow CAS below.
    const std::uint64_t raw = atom(registry[j].owner).load(std::memory_order_acquire);
    if (raw == 0 || detail::owner_alive(detail::Owner{raw})) continue;
    (void)recover_one(*this, j, raw, repairing, report, damage);
  }
  return report;
}

bool Map::Impl::recover_entry(std::uint32_t self, std::uint32_t j) {
  if (j == self) return false;
  // Acquire: as in recover_dead.
  const std::uint64_t raw = atom(registry[j].owner).load(std::memory_order_acquire);
  if (raw == 0) return true;
  if (detail::owner_alive(detail::Owner{raw})) return false;
  RecoverReport report;
  return recover_one(*this, j, raw, false, report, nullptr) == Recovered::yes;
}

std::uint32_t Map::Impl::borrow_orphans(std::uint32_t self, std::uint32_t cls) {
  std::uint32_t borrowed = 0;
  const detail::Owner borrower = detail::self_owner().as_borrower();
  const std::uint32_t n = detail::entries_in_use(header);
  for (std::uint32_t j = 0; j < n; ++j) {
    if (j == self) continue;
    RegistryEntry& r = registry[j];
    // Relaxed (both): hints; the borrow CAS decides.
    if (atom(r.owner).load(std::memory_order_relaxed) != 0) continue;
    if (cls < detail::kClasses && detail::atom32(r.head[cls]).load(std::memory_order_relaxed) == 0) continue;
    if (!borrow(*this, j, 0, borrower, false)) continue;
    try {
      for (std::uint32_t c = 0; c < detail::kClasses; ++c) arena.donate(j, c, 0);
    } catch (const Error&) {
      // A damaged orphan list: leave it (fsck reports it, repair rebuilds it),
      // released, so it does not look attached.
      detail::detach(registry, j, borrower);
      continue;
    }
    detail::detach(registry, j, borrower);
    ++borrowed;
    if (cls < detail::kClasses) break;  // one heap is enough to refill one class
  }
  return borrowed;
}

RecoverReport Map::recover() {
  Impl& m = *impl_;
  const std::uint32_t self = m.writer();
  std::optional<Error> damage;
  RecoverReport report = m.recover_dead(self, false, &damage);
  report.orphans_borrowed = m.borrow_orphans(self, detail::kClasses);
  // A migration a dead process was moving is finished, and past tables whose
  // announcers were recovered are retired.
  m.settle_index(self);
  m.try_retire(self);
  if (damage) throw *damage;  // after everything else was recovered
  return report;
}

}  // namespace shmap
