#include "planner.hpp"

#include <algorithm>
#include <charconv>
#include <map>
#include <set>
#include <stdexcept>
#include <tuple>

namespace shmap::bench {

std::optional<PinPolicy> parse_pin_policy(std::string_view s) {
  if (s == "compact") return PinPolicy::compact;
  if (s == "scatter") return PinPolicy::scatter;
  if (s == "none") return PinPolicy::none;
  return std::nullopt;
}

const char* to_string(PinPolicy p) {
  switch (p) {
    case PinPolicy::compact: return "compact";
    case PinPolicy::scatter: return "scatter";
    case PinPolicy::none: return "none";
  }
  return "?";
}

std::vector<Placement> plan_placement(const Topology& topo, PinPolicy policy, unsigned workers) {
  std::vector<Placement> plan(workers);
  for (unsigned w = 0; w < workers; ++w) plan[w].worker = w;
  if (policy == PinPolicy::none || topo.pus.empty()) return plan;

  // Rank each core within its NUMA node (in logical order), so scatter can take
  // "the next core of node k".
  std::map<unsigned, std::map<unsigned, unsigned>> core_rank;  // numa -> core -> rank
  for (const PuInfo& pu : topo.pus) core_rank[pu.numa].emplace(pu.core, 0);
  for (auto& [numa, cores] : core_rank) {
    unsigned r = 0;
    for (auto& [core, rank] : cores) rank = r++;
  }

  // Rank each NUMA node within its package, so scatter alternates packages first.
  std::map<unsigned, std::map<unsigned, unsigned>> numa_rank;  // package -> numa -> rank
  for (const PuInfo& pu : topo.pus) numa_rank[pu.package].emplace(pu.numa, 0);
  for (auto& [package, nodes] : numa_rank) {
    unsigned r = 0;
    for (auto& [numa, rank] : nodes) rank = r++;
  }

  // Both policies are an ordering of the PUs; worker i takes the i-th (mod count).
  std::vector<PuInfo> order = topo.pus;
  auto key = [&](const PuInfo& pu) {
    const unsigned crank = core_rank[pu.numa][pu.core];
    const unsigned nrank = numa_rank[pu.package][pu.numa];
    return policy == PinPolicy::compact ? std::make_tuple(pu.smt_rank, pu.package, pu.numa, crank, pu.os_index)
                                        : std::make_tuple(pu.smt_rank, crank, nrank, pu.package, pu.os_index);
  };
  std::stable_sort(order.begin(), order.end(), [&](const PuInfo& a, const PuInfo& b) { return key(a) < key(b); });

  for (unsigned w = 0; w < workers; ++w) {
    plan[w].pu = order[w % order.size()];
    // Worker w shares its PU when the plan wraps: some other worker lands on index w % size.
    plan[w].shared = workers > order.size() && (w % order.size()) < workers - order.size();
  }
  return plan;
}

const PuInfo* find_pu(const Topology& topo, unsigned os_index) {
  for (const PuInfo& pu : topo.pus) {
    if (pu.os_index == os_index) return &pu;
  }
  return nullptr;
}

std::string describe(const Placement& p) {
  if (!p.pu) return "unbound";
  std::string s = "PU " + std::to_string(p.pu->os_index) + " (core " + std::to_string(p.pu->core) + ", NUMA " +
                  std::to_string(p.pu->numa) + ", package " + std::to_string(p.pu->package) + ")";
  if (p.shared) s += " shared";
  return s;
}

std::optional<MemPolicy> parse_mem_policy(std::string_view s) {
  MemPolicy p;
  if (s == "firsttouch") return p;
  if (s == "interleave" || s == "interleave:all") {
    p.kind = MemPolicyKind::interleave;
    p.all_nodes = s == "interleave:all";
    return p;
  }
  if (s.starts_with("bind:")) {
    const std::string_view n = s.substr(5);
    const auto [end, ec] = std::from_chars(n.data(), n.data() + n.size(), p.node);
    if (n.empty() || ec != std::errc() || end != n.data() + n.size()) return std::nullopt;
    p.kind = MemPolicyKind::bind;
    return p;
  }
  return std::nullopt;
}

std::string to_string(const MemPolicy& p) {
  switch (p.kind) {
    case MemPolicyKind::firsttouch: return "firsttouch";
    case MemPolicyKind::bind: return "bind:" + std::to_string(p.node);
    case MemPolicyKind::interleave: return p.all_nodes ? "interleave:all" : "interleave";
  }
  return "?";
}

MemPlan plan_membind(const Topology& topo, const MemPolicy& policy, const std::vector<Placement>& placement) {
  MemPlan plan;
  plan.kind = policy.kind;
  switch (policy.kind) {
    case MemPolicyKind::firsttouch: break;
    case MemPolicyKind::bind:
      if (policy.node >= topo.numa_nodes) {
        throw std::invalid_argument("bind:" + std::to_string(policy.node) + ": the machine has " +
                                    (topo.numa_nodes == 1 ? std::string("only NUMA node 0")
                                                          : "NUMA nodes 0.." + std::to_string(topo.numa_nodes - 1)));
      }
      plan.nodes.push_back(policy.node);
      break;
    case MemPolicyKind::interleave: {
      std::set<unsigned> nodes;
      if (!policy.all_nodes) {
        for (const Placement& p : placement) {
          if (p.pu) nodes.insert(p.pu->numa);
        }
      }
      // Unpinned workers may run anywhere: spread over every node.
      if (nodes.empty()) {
        for (unsigned n = 0; n < topo.numa_nodes; ++n) nodes.insert(n);
      }
      plan.nodes.assign(nodes.begin(), nodes.end());
      break;
    }
  }
  return plan;
}

std::string describe(const MemPlan& p) {
  std::string nodes;
  for (const unsigned n : p.nodes) {
    if (!nodes.empty()) nodes += ',';
    nodes += std::to_string(n);
  }
  switch (p.kind) {
    case MemPolicyKind::firsttouch: return "first touch";
    case MemPolicyKind::bind: return "bind to NUMA " + nodes;
    case MemPolicyKind::interleave: return "interleave over NUMA " + nodes;
  }
  return "?";
}

}  // namespace shmap::bench
