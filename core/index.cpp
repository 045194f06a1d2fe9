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

Index Tables::table_slow(std::uint32_t run, std::uint32_t log2, std::uint64_t gen) const {
  const RunGeom g = run < kRuns ? geom(run) : RunGeom{};
  std::uint32_t fits = 0;  // the largest table the run holds
  while (g.is_set() && fits < kMaxTableLog2 && table_pages(fits + 1, chunk_log2_) <= g.pages()) ++fits;
  if (!g.is_set() || log2 < kMinTableLog2 || log2 > fits)
    throw_error(errc::corrupt, mapping_->name,
                "the index directory names table " + std::to_string(gen) + " in run " + std::to_string(run) +
                    " with 2^" + std::to_string(log2) + " slots, which that run cannot hold");
  char* base = arena_->at(g.start());
  // Relaxed: see fast_.
  std::atomic_ref<std::uint64_t>(fast_[run])
      .store(reinterpret_cast<std::uint64_t>(base) | log2, std::memory_order_relaxed);
  return make(run, log2, gen, base);
}

bool Tables::still_hold(TablesWord t) const {
  return still_holds(cur(t)) && (!t.migrating() || still_holds(next(t)));
}

std::optional<Index> Tables::find_gen(std::uint64_t gen) const {
  for (std::uint32_t k = 0; k < kRuns; ++k) {
    const RunState s = run_state(k);
    if (s.kind() == RunState::table && s.gen() == (gen & RunState::kGenMask)) return table(k, s.log2(), gen);
  }
  return std::nullopt;
}

}  // namespace shmap::detail
