#include "topology.hpp"

#include <fcntl.h>
#include <hwloc.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <stdexcept>
#include <string>
#include <system_error>

namespace shmap::bench {

namespace {

unsigned ancestor_index(hwloc_topology_t h, hwloc_obj_type_t type, hwloc_obj_t obj, unsigned fallback) {
  hwloc_obj_t a = hwloc_get_ancestor_obj_by_type(h, type, obj);
  return a ? a->logical_index : fallback;
}

std::string plural(unsigned n, const char* one, const char* many) {
  return std::to_string(n) + " " + (n == 1 ? one : many);
}

std::string errno_text(int err) { return std::error_code(err, std::generic_category()).message(); }

// "0-3,8" from ascending numbers.
std::string ranges(const std::vector<unsigned>& v) {
  std::string s;
  for (std::size_t i = 0; i < v.size();) {
    std::size_t j = i;
    while (j + 1 < v.size() && v[j + 1] == v[j] + 1) ++j;
    if (!s.empty()) s += ',';
    s += std::to_string(v[i]);
    if (j > i) {
      s += '-';
      s += std::to_string(v[j]);
    }
    i = j + 1;
  }
  return s;
}

// The kernel node numbers of the plan's logical nodes. The caller frees it.
hwloc_nodeset_t nodeset_of(const Topology& t, const MemPlan& plan) {
  hwloc_nodeset_t set = hwloc_bitmap_alloc();
  if (set == nullptr) return nullptr;
  for (const unsigned n : plan.nodes) {
    if (n < t.nodes.size()) hwloc_bitmap_set(set, t.nodes[n].os_index);
  }
  return set;
}

hwloc_membind_policy_t hwloc_policy(const MemPlan& plan) {
  return plan.kind == MemPolicyKind::bind ? HWLOC_MEMBIND_BIND : HWLOC_MEMBIND_INTERLEAVE;
}

// "bind NUMA 0" from an hwloc policy and a nodeset of kernel node numbers.
std::string policy_text(const Topology& t, hwloc_membind_policy_t pol, hwloc_const_nodeset_t set) {
  const char* name = "?";
  switch (pol) {
    case HWLOC_MEMBIND_DEFAULT:
    case HWLOC_MEMBIND_FIRSTTOUCH: return "default (first touch)";
    case HWLOC_MEMBIND_BIND: name = "bind"; break;
    case HWLOC_MEMBIND_INTERLEAVE: name = "interleave"; break;
    case HWLOC_MEMBIND_NEXTTOUCH: name = "next touch"; break;
    case HWLOC_MEMBIND_MIXED: name = "mixed"; break;
  }
  std::vector<unsigned> nodes;
  for (unsigned n = 0; n < t.nodes.size(); ++n) {
    if (hwloc_bitmap_isset(set, t.nodes[n].os_index)) nodes.push_back(n);
  }
  return std::string(name) + " NUMA " + (nodes.empty() ? std::string("none") : ranges(nodes));
}

}  // namespace

Topology topology_from_hwloc(hwloc_topology_t h) {
  Topology t;
  t.packages = static_cast<unsigned>(std::max(0, hwloc_get_nbobjs_by_type(h, HWLOC_OBJ_PACKAGE)));
  t.numa_nodes = static_cast<unsigned>(std::max(0, hwloc_get_nbobjs_by_type(h, HWLOC_OBJ_NUMANODE)));
  t.cores = static_cast<unsigned>(std::max(0, hwloc_get_nbobjs_by_type(h, HWLOC_OBJ_CORE)));
  for (unsigned n = 0; n < t.numa_nodes; ++n) {
    hwloc_obj_t node = hwloc_get_obj_by_type(h, HWLOC_OBJ_NUMANODE, n);
    t.nodes.push_back({node->os_index, node->attr ? node->attr->numanode.local_memory : 0});
  }
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

std::vector<std::string> describe_nodes(const Topology& t) {
  std::vector<std::string> lines;
  for (unsigned n = 0; n < t.nodes.size(); ++n) {
    std::vector<unsigned> pus;
    for (const PuInfo& pu : t.pus) {
      if (pu.numa == n) pus.push_back(pu.os_index);
    }
    std::sort(pus.begin(), pus.end());
    char mem[32];
    std::snprintf(mem, sizeof mem, "%.1f GiB", static_cast<double>(t.nodes[n].local_bytes) / (1u << 30));
    lines.push_back("NUMA " + std::to_string(n) + " (os " + std::to_string(t.nodes[n].os_index) + "): PUs " +
                    (pus.empty() ? std::string("none") : ranges(pus)) + ", " + mem);
  }
  return lines;
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

bool Machine::bind_area(void* addr, std::size_t len, const MemPlan& plan, std::string& error) const {
  if (plan.kind == MemPolicyKind::firsttouch || synthetic_ || len == 0) return true;
  hwloc_nodeset_t set = nodeset_of(topo_, plan);
  if (set == nullptr) {
    error = "hwloc_bitmap_alloc failed";
    return false;
  }
  // MIGRATE without STRICT: move the pages that exist and can move; never fail
  // the run for one that cannot (census() shows the outcome).
  const int rc = hwloc_set_area_membind(h_, addr, len, set, hwloc_policy(plan),
                                        HWLOC_MEMBIND_BYNODESET | HWLOC_MEMBIND_MIGRATE);
  const int err = errno;
  hwloc_bitmap_free(set);
  if (rc != 0) {
    error = "hwloc_set_area_membind(" + describe(plan) + ") failed: " + errno_text(err);
    return false;
  }
  return true;
}

std::string Machine::area_policy(const void* addr, std::size_t len) const {
  if (synthetic_ || len == 0) return "n/a";
  const std::size_t page = static_cast<std::size_t>(sysconf(_SC_PAGESIZE));
  const std::size_t pages = (len + page - 1) / page;
  const std::size_t samples = std::min<std::size_t>(pages, 16);
  hwloc_nodeset_t set = hwloc_bitmap_alloc();
  if (set == nullptr) return "n/a (hwloc_bitmap_alloc failed)";
  std::string first, result;
  for (std::size_t i = 0; i < samples; ++i) {
    const std::size_t pg = samples == 1 ? 0 : i * (pages - 1) / (samples - 1);
    hwloc_membind_policy_t pol{};
    const char* p = static_cast<const char*>(addr) + pg * page;
    std::string text;
    if (hwloc_get_area_membind(h_, p, page, set, &pol, HWLOC_MEMBIND_BYNODESET) != 0) {
      text = std::string("unknown (hwloc_get_area_membind: ") + errno_text(errno) + ")";
    } else {
      text = policy_text(topo_, pol, set);
    }
    if (i == 0) {
      first = result = text;
    } else if (text != first) {
      result = "mixed: " + first + " / " + text;
      break;
    }
  }
  hwloc_bitmap_free(set);
  return result;
}

ThreadMembind::ThreadMembind(const Machine& m, const MemPlan& plan) : m_(m) {
  if (plan.kind == MemPolicyKind::firsttouch || m.synthetic()) return;
  hwloc_topology_t h = m.handle();
  hwloc_nodeset_t old = hwloc_bitmap_alloc();
  hwloc_nodeset_t set = nodeset_of(m.topology(), plan);
  hwloc_membind_policy_t old_policy{};
  if (old == nullptr || set == nullptr) {
    error_ = "hwloc_bitmap_alloc failed";
  } else if (hwloc_get_membind(h, old, &old_policy, HWLOC_MEMBIND_THREAD | HWLOC_MEMBIND_BYNODESET) != 0) {
    error_ = "hwloc_get_membind failed: " + errno_text(errno);
  } else if (hwloc_set_membind(h, set, hwloc_policy(plan), HWLOC_MEMBIND_THREAD | HWLOC_MEMBIND_BYNODESET) != 0) {
    error_ = "hwloc_set_membind(" + describe(plan) + ") failed: " + errno_text(errno);
  } else {
    active_ = true;
    old_policy_ = old_policy;
    old_nodes_ = old;
    old = nullptr;
  }
  if (old) hwloc_bitmap_free(old);
  if (set) hwloc_bitmap_free(set);
}

ThreadMembind::~ThreadMembind() {
  if (!active_) return;
  auto* old = static_cast<hwloc_nodeset_t>(old_nodes_);
  hwloc_set_membind(m_.handle(), old, static_cast<hwloc_membind_policy_t>(old_policy_),
                    HWLOC_MEMBIND_THREAD | HWLOC_MEMBIND_BYNODESET);
  hwloc_bitmap_free(old);
}

PageCensus census(const Machine& m, const void* addr, std::size_t len) {
  PageCensus c;
  const Topology& t = m.topology();
  c.page_bytes = static_cast<std::uint64_t>(sysconf(_SC_PAGESIZE));
  c.on_node.assign(t.nodes.size(), 0);
  if (m.synthetic()) {
    c.error = "synthetic topology";
    return c;
  }
  const std::size_t pages = (len + c.page_bytes - 1) / c.page_bytes;
  std::vector<unsigned char> vec(pages);
  if (mincore(const_cast<void*>(addr), len, vec.data()) != 0) {
    c.error = "mincore: " + errno_text(errno);
    return c;
  }
  std::vector<std::size_t> resident;
  for (std::size_t i = 0; i < pages; ++i) {
    if (vec[i] & 1) resident.push_back(i);
  }
  c.resident_pages = resident.size();
  const std::size_t want = std::min<std::size_t>(resident.size(), 4096);
  std::vector<void*> ptrs(want);
  std::vector<int> status(want, -1);
  for (std::size_t j = 0; j < want; ++j) {
    const char* p = static_cast<const char*>(addr) + resident[j * resident.size() / want] * c.page_bytes;
    // A read fault maps the resident page into this mapping (move_pages only
    // reports mapped pages); it cannot allocate one, the page exists. Relaxed:
    // only the fault matters, not the byte.
    (void)__atomic_load_n(p, __ATOMIC_RELAXED);
    ptrs[j] = const_cast<char*>(p);
  }
  if (want > 0) {
    // nodes == NULL: move nothing, report each page's node in status.
    if (syscall(SYS_move_pages, 0, want, ptrs.data(), nullptr, status.data(), 0) != 0) {
      c.error = "move_pages: " + errno_text(errno);
      return c;
    }
  }
  c.sampled = want;
  for (const int st : status) {
    bool known = false;
    for (unsigned n = 0; st >= 0 && n < t.nodes.size(); ++n) {
      if (t.nodes[n].os_index == static_cast<unsigned>(st)) {
        ++c.on_node[n];
        known = true;
      }
    }
    if (!known) ++c.unknown;
  }
  c.policy = m.area_policy(addr, len);
  return c;
}

PageCensus census_file(const Machine& m, const std::string& path) {
  PageCensus c;
  const int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  struct stat st {};
  if (fd < 0 || fstat(fd, &st) != 0 || st.st_size <= 0) {
    c.error = "open/fstat of " + path + ": " + errno_text(errno);
    if (fd >= 0) close(fd);
    return c;
  }
  const std::size_t len = static_cast<std::size_t>(st.st_size);
  void* p = mmap(nullptr, len, PROT_READ, MAP_SHARED, fd, 0);
  close(fd);
  if (p == MAP_FAILED) {
    c.error = "mmap of " + path + ": " + errno_text(errno);
    return c;
  }
  c = census(m, p, len);
  munmap(p, len);
  return c;
}

std::string describe(const PageCensus& c) {
  if (!c.error.empty()) return "census failed: " + c.error;
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.1f MiB resident",
                static_cast<double>(c.resident_pages * c.page_bytes) / (1u << 20));
  std::string s = buf;
  if (c.sampled > 0) {
    s += ";";
    for (unsigned n = 0; n < c.on_node.size(); ++n) {
      if (c.on_node[n] == 0) continue;
      std::snprintf(buf, sizeof buf, " NUMA %u %.0f%%", n, 100.0 * static_cast<double>(c.on_node[n]) / c.sampled);
      s += buf;
    }
    if (c.unknown) s += " unknown " + std::to_string(c.unknown);
    s += " of " + std::to_string(c.sampled) + " sampled pages";
  }
  return s + "; policy: " + c.policy;
}

}  // namespace shmap::bench
