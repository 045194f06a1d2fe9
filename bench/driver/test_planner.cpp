// The placement and memory-binding planner on hwloc synthetic topologies, so
// the NUMA logic is tested exactly on a one-node machine. Topologies:
//   "numa:2 core:4 pu:1"             2 nodes x 4 cores (PUs 0-3 on node 0, 4-7 on node 1)
//   "numa:4 core:8 pu:1"             4 nodes x 8 cores (PUs 8n..8n+7 on node n)
//   "numa:2 core:4 pu:2"             2 nodes x 4 cores x 2 SMT threads (core c has PUs 2c, 2c+1)
//   "package:2 numa:2 core:4 pu:2"   2 packages x 2 nodes x 4 cores x 2 threads
#include <catch2/catch.hpp>
#include <stdexcept>
#include <string>
#include <vector>

#include "planner.hpp"
#include "topology.hpp"

using namespace shmap::bench;

namespace {

std::vector<unsigned> pus_of(const std::vector<Placement>& plan) {
  std::vector<unsigned> v;
  for (const Placement& p : plan) v.push_back(p.pu ? p.pu->os_index : 999u);
  return v;
}

std::vector<unsigned> nodes_of(const std::vector<Placement>& plan) {
  std::vector<unsigned> v;
  for (const Placement& p : plan) v.push_back(p.pu ? p.pu->numa : 999u);
  return v;
}

std::vector<Placement> plan(const char* synthetic, PinPolicy policy, unsigned workers) {
  const Machine m(synthetic);
  return plan_placement(m.topology(), policy, workers);
}

MemPlan membind(const char* synthetic, PinPolicy pin, unsigned workers, const char* policy) {
  const Machine m(synthetic);
  const auto p = parse_mem_policy(policy);
  REQUIRE(p);
  return plan_membind(m.topology(), *p, plan_placement(m.topology(), pin, workers));
}

using V = std::vector<unsigned>;

}  // namespace

TEST_CASE("A synthetic 2 x 4 topology is read as two NUMA nodes of four cores", "[planner]") {
  const Machine m("numa:2 core:4 pu:1");
  const Topology& t = m.topology();
  CHECK(m.synthetic());
  CHECK(t.numa_nodes == 2);
  CHECK(t.cores == 8);
  REQUIRE(t.pus.size() == 8);
  REQUIRE(t.nodes.size() == 2);
  CHECK(t.nodes[0].os_index == 0);
  CHECK(t.nodes[1].os_index == 1);
  for (unsigned i = 0; i < 8; ++i) {
    CHECK(t.pus[i].os_index == i);
    CHECK(t.pus[i].numa == i / 4);
    CHECK(t.pus[i].smt_rank == 0);
  }
  CHECK(describe_nodes(t) ==
        std::vector<std::string>{"NUMA 0 (os 0): PUs 0-3, 1.0 GiB", "NUMA 1 (os 1): PUs 4-7, 1.0 GiB"});
}

TEST_CASE("An SMT topology gives each core's PUs consecutive sibling ranks", "[planner]") {
  const Machine m("numa:2 core:4 pu:2");
  const Topology& t = m.topology();
  REQUIRE(t.pus.size() == 16);
  for (unsigned i = 0; i < 16; ++i) {
    CHECK(t.pus[i].core == i / 2);
    CHECK(t.pus[i].smt_rank == i % 2);
    CHECK(t.pus[i].numa == i / 8);
  }
}

TEST_CASE("An invalid synthetic description is refused with the hwloc call named", "[planner]") {
  CHECK_THROWS_WITH(Machine("numa:2 bogus:4"), Catch::Contains("hwloc_topology_set_synthetic"));
}

TEST_CASE("compact fills NUMA node 0's cores before node 1's", "[planner]") {
  const auto p = plan("numa:2 core:4 pu:1", PinPolicy::compact, 8);
  CHECK(pus_of(p) == V{0, 1, 2, 3, 4, 5, 6, 7});
  CHECK(nodes_of(p) == V{0, 0, 0, 0, 1, 1, 1, 1});
  for (const Placement& w : p) CHECK_FALSE(w.shared);
}

TEST_CASE("compact on 4 nodes x 8 cores puts worker w on node w / 8", "[planner]") {
  const auto p = plan("numa:4 core:8 pu:1", PinPolicy::compact, 32);
  for (unsigned w = 0; w < 32; ++w) {
    CHECK(p[w].pu->os_index == w);
    CHECK(p[w].pu->numa == w / 8);
  }
}

TEST_CASE("compact uses SMT siblings only once every core has a worker", "[planner]") {
  const auto p = plan("numa:2 core:4 pu:2", PinPolicy::compact, 16);
  CHECK(pus_of(p) == V{0, 2, 4, 6, 8, 10, 12, 14, 1, 3, 5, 7, 9, 11, 13, 15});
  CHECK(nodes_of(p) == V{0, 0, 0, 0, 1, 1, 1, 1, 0, 0, 0, 0, 1, 1, 1, 1});
}

TEST_CASE("scatter round-robins over the NUMA nodes, a new core each round", "[planner]") {
  CHECK(pus_of(plan("numa:2 core:4 pu:1", PinPolicy::scatter, 8)) == V{0, 4, 1, 5, 2, 6, 3, 7});
  CHECK(pus_of(plan("numa:4 core:8 pu:1", PinPolicy::scatter, 8)) == V{0, 8, 16, 24, 1, 9, 17, 25});
  CHECK(nodes_of(plan("numa:4 core:8 pu:1", PinPolicy::scatter, 6)) == V{0, 1, 2, 3, 0, 1});
}

TEST_CASE("scatter alternates packages before the nodes within a package", "[planner]") {
  // Package 0 holds nodes 0 and 1, package 1 nodes 2 and 3; 4 cores x 2 PUs per node.
  const auto p = plan("package:2 numa:2 core:4 pu:2", PinPolicy::scatter, 8);
  CHECK(nodes_of(p) == V{0, 2, 1, 3, 0, 2, 1, 3});
  CHECK(pus_of(p) == V{0, 16, 8, 24, 2, 18, 10, 26});
}

TEST_CASE("scatter uses SMT siblings only once every core has a worker", "[planner]") {
  const auto p = plan("numa:2 core:4 pu:2", PinPolicy::scatter, 10);
  CHECK(pus_of(p) == V{0, 8, 2, 10, 4, 12, 6, 14, 1, 9});
}

TEST_CASE("none binds no worker", "[planner]") {
  const auto p = plan("numa:2 core:4 pu:1", PinPolicy::none, 3);
  REQUIRE(p.size() == 3);
  for (unsigned w = 0; w < 3; ++w) {
    CHECK(p[w].worker == w);
    CHECK_FALSE(p[w].pu.has_value());
    CHECK_FALSE(p[w].shared);
    CHECK(describe(p[w]) == "unbound");
  }
}

TEST_CASE("More workers than PUs wrap around, and the workers sharing a PU are marked", "[planner]") {
  const auto p = plan("numa:2 core:4 pu:1", PinPolicy::compact, 10);
  CHECK(pus_of(p) == V{0, 1, 2, 3, 4, 5, 6, 7, 0, 1});
  for (unsigned w = 0; w < 10; ++w) CHECK(p[w].shared == (w == 0 || w == 1 || w == 8 || w == 9));
  CHECK(describe(p[8]) == "PU 0 (core 0, NUMA 0, package 0) shared");
  const auto s = plan("numa:2 core:4 pu:1", PinPolicy::scatter, 9);
  CHECK(pus_of(s) == V{0, 4, 1, 5, 2, 6, 3, 7, 0});
}

TEST_CASE("Memory policies parse and print back", "[planner]") {
  const auto ft = parse_mem_policy("firsttouch");
  REQUIRE(ft);
  CHECK(ft->kind == MemPolicyKind::firsttouch);
  const auto b = parse_mem_policy("bind:3");
  REQUIRE(b);
  CHECK(b->kind == MemPolicyKind::bind);
  CHECK(b->node == 3);
  const auto il = parse_mem_policy("interleave");
  REQUIRE(il);
  CHECK(il->kind == MemPolicyKind::interleave);
  CHECK_FALSE(il->all_nodes);
  const auto all = parse_mem_policy("interleave:all");
  REQUIRE(all);
  CHECK(all->all_nodes);
  for (const char* s : {"firsttouch", "bind:0", "bind:12", "interleave", "interleave:all"}) {
    CHECK(to_string(*parse_mem_policy(s)) == s);
  }
  for (const char* bad : {"bind", "bind:", "bind:x", "bind:-1", "bind:1x", "interleaved", "interleave:some", ""}) {
    CHECK_FALSE(parse_mem_policy(bad));
  }
}

TEST_CASE("firsttouch plans no node", "[planner]") {
  const MemPlan p = membind("numa:2 core:4 pu:1", PinPolicy::compact, 4, "firsttouch");
  CHECK(p.kind == MemPolicyKind::firsttouch);
  CHECK(p.nodes.empty());
  CHECK(describe(p) == "first touch");
}

TEST_CASE("bind:N plans node N whatever the placement", "[planner]") {
  CHECK(membind("numa:2 core:4 pu:1", PinPolicy::compact, 2, "bind:1").nodes == V{1});
  CHECK(membind("numa:4 core:8 pu:1", PinPolicy::scatter, 4, "bind:3").nodes == V{3});
  CHECK(membind("numa:4 core:8 pu:1", PinPolicy::none, 4, "bind:0").nodes == V{0});
  CHECK(describe(membind("numa:4 core:8 pu:1", PinPolicy::none, 4, "bind:2")) == "bind to NUMA 2");
}

TEST_CASE("bind:N refuses a node the topology does not have", "[planner]") {
  CHECK_THROWS_AS(membind("numa:2 core:4 pu:1", PinPolicy::compact, 2, "bind:2"), std::invalid_argument);
  CHECK_THROWS_WITH(membind("numa:2 core:4 pu:1", PinPolicy::compact, 2, "bind:7"),
                    "bind:7: the machine has NUMA nodes 0..1");
  CHECK_THROWS_WITH(membind("pack:1 core:2 pu:1", PinPolicy::compact, 2, "bind:1"),
                    "bind:1: the machine has only NUMA node 0");
}

TEST_CASE("interleave plans the nodes the workers are pinned to", "[planner]") {
  // compact fills node 0 (4 cores) first: 4 workers stay on it, 6 reach node 1.
  CHECK(membind("numa:2 core:4 pu:1", PinPolicy::compact, 1, "interleave").nodes == V{0});
  CHECK(membind("numa:2 core:4 pu:1", PinPolicy::compact, 4, "interleave").nodes == V{0});
  CHECK(membind("numa:2 core:4 pu:1", PinPolicy::compact, 6, "interleave").nodes == V{0, 1});
  CHECK(membind("numa:4 core:8 pu:1", PinPolicy::compact, 12, "interleave").nodes == V{0, 1});
  CHECK(membind("numa:4 core:8 pu:1", PinPolicy::compact, 17, "interleave").nodes == V{0, 1, 2});
  // scatter spreads over the nodes first.
  CHECK(membind("numa:4 core:8 pu:1", PinPolicy::scatter, 2, "interleave").nodes == V{0, 1});
  CHECK(membind("numa:4 core:8 pu:1", PinPolicy::scatter, 3, "interleave").nodes == V{0, 1, 2});
  CHECK(membind("package:2 numa:2 core:4 pu:2", PinPolicy::scatter, 2, "interleave").nodes == V{0, 2});
  // SMT siblings share their core's node.
  CHECK(membind("numa:2 core:4 pu:2", PinPolicy::compact, 8, "interleave").nodes == V{0, 1});
  CHECK(describe(membind("numa:4 core:8 pu:1", PinPolicy::scatter, 3, "interleave")) == "interleave over NUMA 0,1,2");
}

TEST_CASE("interleave with unpinned workers, and interleave:all, plan every node", "[planner]") {
  CHECK(membind("numa:4 core:8 pu:1", PinPolicy::none, 2, "interleave").nodes == V{0, 1, 2, 3});
  CHECK(membind("numa:4 core:8 pu:1", PinPolicy::compact, 1, "interleave:all").nodes == V{0, 1, 2, 3});
  CHECK(membind("numa:2 core:4 pu:1", PinPolicy::scatter, 1, "interleave:all").nodes == V{0, 1});
}

TEST_CASE("The running machine plans bind:0 and interleave", "[planner]") {
  const Machine m;
  const Topology& t = m.topology();
  REQUIRE(t.numa_nodes >= 1);
  REQUIRE(t.nodes.size() == t.numa_nodes);
  REQUIRE_FALSE(t.pus.empty());
  const auto placement = plan_placement(t, PinPolicy::compact, 2);
  CHECK(plan_membind(t, *parse_mem_policy("bind:0"), placement).nodes == V{0});
  CHECK_FALSE(plan_membind(t, *parse_mem_policy("interleave"), placement).nodes.empty());
  for (const Placement& p : placement) CHECK(find_pu(t, p.pu->os_index) != nullptr);
}
