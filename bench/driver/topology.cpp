#include "topology.hpp"

#include <hwloc.h>

#include <algorithm>
#include <stdexcept>
#include <string>

namespace shmap::bench {

namespace {

unsigned ancestor_index(hwloc_topology_t h, hwloc_obj_type_t type, hwloc_obj_t obj, unsigned fallback) {
  hwloc_obj_t a = hwloc_get_ancestor_obj_by_type(h, type, obj);
  return a ? a->logical_index : fallback;
}

std::string plural(unsigned n, const char* one, const char* many) {
  return std::to_string(n) + " " + (n == 1 ? one : many);
}

}  // namespace

Topology topology_from_hwloc(hwloc_topology_t h) {
  Topology t;
  t.packages = static_cast<unsigned>(std::max(0, hwloc_get_nbobjs_by_type(h, HWLOC_OBJ_PACKAGE)));
  t.numa_nodes = static_cast<unsigned>(std::max(0, hwloc_get_nbobjs_by_type(h, HWLOC_OBJ_NUMANODE)));
  t.cores = static_cast<unsigned>(std::max(0, hwloc_get_nbobjs_by_type(h, HWLOC_OBJ_CORE)));
  if (hwloc_obj_t pkg = hwloc_get_obj_by_type(h, HWLOC_OBJ_PACKAGE, 0)) {
    if (const char* model = hwloc_obj_get_info_by_name(pkg, "CPUModel")) t.cpu_model = model;
  }
  const int npus = hwloc_get_nbobjs_by_type(h, HWLOC_OBJ_PU);
  for (int i = 0; i < npus; ++i) {
    hwloc_obj_t pu = hwloc_get_obj_by_type(h, HWLOC_OBJ_PU, static_cast<unsigned>(i));
    PuInfo info;
    info.os_index = pu->os_index;
    hwloc_obj_t core = hwloc_get_ancestor_obj_by_type(h, HWLOC_OBJ_CORE, pu);
    info.core = core ? core->logical_index : pu->logical_index;
    info.smt_rank = core ? pu->sibling_rank : 0;
    info.package = ancestor_index(h, HWLOC_OBJ_PACKAGE, pu, 0);
    // NUMA nodes hang off the tree as memory children (hwloc 2): find the node
    // whose cpuset holds this PU.
    hwloc_obj_t node = nullptr;
    while ((node = hwloc_get_next_obj_by_type(h, HWLOC_OBJ_NUMANODE, node)) != nullptr) {
      if (node->cpuset && hwloc_bitmap_isset(node->cpuset, pu->os_index)) {
        info.numa = node->logical_index;
        break;
      }
    }
    t.pus.push_back(info);
  }
  return t;
}

std::string summary(const Topology& t) {
  std::string s = plural(t.packages, "package", "packages") + ", " + plural(t.numa_nodes, "NUMA node", "NUMA nodes") +
                  ", " + plural(t.cores, "core", "cores") + ", " +
                  plural(static_cast<unsigned>(t.pus.size()), "PU", "PUs");
  if (!t.cpu_model.empty()) s += " (" + t.cpu_model + ")";
  return s;
}

Machine::Machine(std::string_view synthetic) : synthetic_(!synthetic.empty()) {
  if (hwloc_topology_init(&h_) != 0) throw std::runtime_error("hwloc_topology_init failed");
  if (synthetic_) {
    const std::string desc(synthetic);
    if (hwloc_topology_set_synthetic(h_, desc.c_str()) != 0) {
      hwloc_topology_destroy(h_);
      throw std::runtime_error("hwloc_topology_set_synthetic rejected \"" + desc + "\"");
    }
  }
  if (hwloc_topology_load(h_) != 0) {
    hwloc_topology_destroy(h_);
    throw std::runtime_error("hwloc_topology_load failed");
  }
  topo_ = topology_from_hwloc(h_);
}

Machine::~Machine() { hwloc_topology_destroy(h_); }

bool Machine::bind(const Placement& p, int flags) const {
  if (!p.pu || synthetic_) return true;
  hwloc_bitmap_t set = hwloc_bitmap_alloc();
  if (set == nullptr) return false;
  hwloc_bitmap_only(set, p.pu->os_index);
  const int rc = hwloc_set_cpubind(h_, set, flags);
  hwloc_bitmap_free(set);
  return rc == 0;
}

bool Machine::bind_process(const Placement& p) const { return bind(p, HWLOC_CPUBIND_PROCESS); }
bool Machine::bind_thread(const Placement& p) const { return bind(p, HWLOC_CPUBIND_THREAD); }

}  // namespace shmap::bench
