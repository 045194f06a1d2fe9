// The directory's lookups: run geometry, validated once per run and cached.
#include "index.hpp"

#include <string>

namespace shmap::detail {

RunGeom Tables::geom(std::uint32_t k) const {
  if (k >= kRuns) return RunGeom{};
  // Acquire: pairs with the release CAS that installed the geometry
  // (Arena::finish_run), so the run's zeroed first word is visible.
  const RunGeom g{atom(header_->runs[k].geom).load(std::memory_order_acquire)};
  if (!g.is_set() || g.pages() == 0 || g.claimed_from() < kArenaFirstOffset) return RunGeom{};
  if (!arena_->range_in_bounds(g.start(), g.bytes())) return RunGeom{};
  return g;
}

char* Tables::run_base(std::uint32_t run) const {
  // Relaxed (both): process-local cache of immutable values (see the member comment).
  if (const std::uint64_t b = std::atomic_ref<std::uint64_t>(base_[run]).load(std::memory_order_relaxed))
    return reinterpret_cast<char*>(b);
  const RunGeom g = geom(run);
  if (!g.is_set()) return nullptr;
  char* base = arena_->at(g.start());
  std::atomic_ref<std::uint64_t>(pages_[run]).store(g.pages(), std::memory_order_relaxed);
  std::atomic_ref<std::uint64_t>(base_[run]).store(reinterpret_cast<std::uint64_t>(base), std::memory_order_relaxed);
  return base;
}

Index Tables::make(std::uint32_t run, std::uint32_t log2, std::uint64_t gen, char* base) const {
  Index ix;
  ix.head = reinterpret_cast<TableHeader*>(base);
  ix.slots = reinterpret_cast<std::uint64_t*>(base + kTableHeaderBytes);
  ix.log2 = log2;
  ix.chunk_log2 = mapping_->fixed.chunk_log2;
  ix.mask = (std::uint64_t{1} << log2) - 1;
  ix.chunk_words = ix.slots + ix.size();
  ix.gen = gen;
  ix.run = run;
  return ix;
}

Index Tables::table(std::uint32_t run, std::uint32_t log2, std::uint64_t gen) const {
  char* base = run < kRuns ? run_base(run) : nullptr;
  // Relaxed: cached with the base above.
  const std::uint64_t pages = base ? std::atomic_ref<std::uint64_t>(pages_[run]).load(std::memory_order_relaxed) : 0;
  if (base == nullptr || log2 < kMinTableLog2 || log2 > kMaxTableLog2 ||
      table_pages(log2, mapping_->fixed.chunk_log2) > pages)
    throw_error(errc::corrupt, mapping_->name,
                "the index directory names table " + std::to_string(gen) + " in run " + std::to_string(run) +
                    " with 2^" + std::to_string(log2) + " slots, which that run cannot hold");
  return make(run, log2, gen, base);
}

std::optional<Index> Tables::find_gen(std::uint64_t gen) const {
  for (std::uint32_t k = 0; k < kRuns; ++k) {
    const RunState s = run_state(k);
    if (s.kind() == RunState::table && s.gen() == (gen & RunState::kGenMask)) return table(k, s.log2(), gen);
  }
  return std::nullopt;
}

}  // namespace shmap::detail
