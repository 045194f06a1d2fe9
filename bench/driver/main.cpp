// shmap-bench: the multi-process benchmark driver. See --help and
// docs/benchmarks.md.
#include <algorithm>
#include <cstdio>
#include <exception>
#include <fstream>
#include <iostream>
#include <string>
#include <vector>

#include "latency.hpp"
#include "measure.hpp"
#include "options.hpp"
#include "planner.hpp"
#include "report.hpp"
#include "topology.hpp"
#include "workload.hpp"

namespace shmap::bench {
namespace {

void print_plan(const Topology& topo, const std::vector<Placement>& plan, PinPolicy pin, const MemPolicy& membind) {
  std::cout << "pinning (" << to_string(pin) << "), worker -> PU:\n";
  for (const Placement& p : plan) std::cout << "  worker " << p.worker << " -> " << describe(p) << "\n";
  std::cout << "  (with 1 worker: worker 0's placement)\n";
  std::cout << "memory (--membind " << to_string(membind) << "): " << plan.size() << " worker"
            << (plan.size() > 1 ? "s" : "") << ": " << describe(plan_membind(topo, membind, plan));
  if (plan.size() > 1) std::cout << "; 1 worker: " << describe(plan_membind(topo, membind, {plan.front()}));
  std::cout << "\n";
  if (membind.kind != MemPolicyKind::firsttouch) {
    std::cout << "  applied with hwloc_set_area_membind (mbind, MIGRATE, not STRICT) to each shared table's mapping\n"
                 "  before its preload, so the policy lives in the tmpfs object and holds for every process's first\n"
                 "  touch; plus the parent thread's policy (hwloc_set_membind) while it creates the table\n";
    if (topo.numa_nodes == 1) {
      std::cout << "  one NUMA node: every policy places every page on node 0; the census shows the policy is set\n";
    }
  }
}

int run(const Options& o) {
  const KeySpace ks(o.keys, o.key_bytes, o.value_bytes, o.seed);  // validates the key options first
  const Machine machine(o.synthetic);
  const Topology& topo = machine.topology();
  const RunInfo info = collect_run_info();
  std::cout << "shmap-bench  " << info.date_utc << "  " << info.host << "  " << info.kernel << "\n";
  std::cout << "machine: " << summary(topo) << (machine.synthetic() ? "  [synthetic]" : "") << "\n";
  for (const std::string& line : describe_nodes(topo)) std::cout << "  " << line << "\n";
  const std::vector<Placement> plan = plan_placement(topo, o.pin, o.procs);
  try {
    plan_membind(topo, o.membind, plan);
  } catch (const std::invalid_argument& e) {
    std::cerr << "shmap-bench: --membind " << e.what() << "\n";
    return 2;
  }
  print_plan(topo, plan, o.pin, o.membind);
  if (o.plan_only) return 0;
  if (o.procs > topo.pus.size()) {
    std::cout << "note: " << o.procs << " workers on " << topo.pus.size()
              << " PUs: workers share PUs, so spinning and preemption distort the numbers\n";
  }
  std::cout << "load average at start: " << info.loadavg_start << " (other load on the machine skews results)\n";
  std::cout << "build: " << info.compiler << (info.optimized ? ", optimized (NDEBUG)" : ", NOT optimized (no NDEBUG)")
            << "\n";

  if (o.latency_sample > 0) {
    const TickClock& clock = tick_clock();  // calibrated here, before any fork
    char buf[200];
    std::snprintf(buf, sizeof buf,
                  "latency: every %u-th operation of each worker, %s at %.3f ticks/ns, fenced; an empty sample "
                  "measures %.0f ns (included in every sample)\n",
                  o.latency_sample, clock.source, clock.ticks_per_ns, clock.floor_ns);
    std::cout << buf;
  } else {
    std::cout << "latency: not sampled (--latency-sample 0)\n";
  }
  std::cout << "config: " << o.keys << " keys of " << o.key_bytes << " B, values of " << o.value_bytes << " B, "
            << o.duration_s << " s per measurement, median of " << o.repeat << " repeats, seed " << o.seed << "\n\n";

  std::vector<unsigned> counts{1};
  if (o.procs > 1) counts.push_back(o.procs);

  install_cleanup_handlers();
  const Context ctx{o, machine, ks};
  std::vector<Measurement> all;
  std::string tables;
  for (std::size_t wi = 0; wi < o.workloads.size(); ++wi) {
    const Workload& wl = o.workloads[wi];
    std::vector<std::string> impls;
    for (const std::string& impl : o.impls) {
      std::string why;
      if (applies(impl, wl, ks, &why)) {
        impls.push_back(impl);
      } else if (!quiet_skip(impl, wl)) {
        std::cout << "[" << wl.name << "] skipping " << impl << ": " << why << "\n";
      }
    }
    const std::vector<unsigned> wcounts = counts_for(wl, counts);
    if (wcounts.empty()) {
      std::cout << "[" << wl.name << "] skipped: needs --procs 2 or more (one writer and at least one reader)\n";
      continue;
    }
    for (const unsigned n : wcounts) {
      const std::vector<Placement> nplan = plan_placement(topo, o.pin, n);
      for (unsigned r = 0; r < o.repeat; ++r) {
        // One set of streams per (workload, workers, repeat), run by every
        // implementation in turn: the same keys, in the same order.
        std::vector<OpStream> streams;
        const std::uint64_t seed = fmix64(o.seed + 0x9e3779b97f4a7c15ull * (wi + 1) + 0x100000001b3ull * n + r);
        for (unsigned w = 0; w < n; ++w) streams.push_back(make_stream(ks, wl, n, w, seed));
        std::cout << "[" << wl.name << "] " << n << " worker" << (n > 1 ? "s" : "") << ", repeat " << r + 1 << "/"
                  << o.repeat << ":";
        for (const std::string& impl : impls) {
          Measurement m = measure(ctx, impl, wl, r, nplan, streams);
          char buf[64];
          std::snprintf(buf, sizeof buf, " %s %.3f%s", impl.c_str(), m.run.mops(), m.anomalies.empty() ? "" : "(!)");
          std::cout << buf << std::flush;
          all.push_back(std::move(m));
        }
        std::cout << "\n";
      }
    }
    const std::string t = (wl.one_writer() ? format_writer_table(wl, all, wcounts, impls, o.keys)
                                           : format_table(wl, all, wcounts, impls, o.keys)) +
                          format_memory(wl, all, wcounts, impls, o.membind) +
                          format_comparisons(comparisons(o.workloads, all, counts, o), wl.name);
    std::cout << "\n" << t << "\n";
    tables += t + "\n";
  }

  std::cout << "load average at end: " << read_loadavg() << "\n\n";
  std::cout << format_placement_check(all, counts, topo) << "\n";
  std::cout << "==== results (Mops/s: median of " << o.repeat << " repeats; shmap/impl = ratio of medians at the same "
            << "worker count; >1 means shmap is faster)\n\n"
            << tables;

  if (!o.json_path.empty()) {
    std::ofstream f(o.json_path);
    f << to_json(info, o, topo, o.pin, counts, all);
    if (!f) {
      std::cerr << "shmap-bench: cannot write " << o.json_path << "\n";
      return 1;
    }
    std::cout << "wrote " << o.json_path << "\n";
  }
  const bool clean = std::all_of(all.begin(), all.end(), [](const Measurement& m) { return m.anomalies.empty(); });
  if (!clean) std::cout << "some measurements had anomalies (see ANOMALY lines): exit status 1\n";
  return clean ? 0 : 1;
}

}  // namespace
}  // namespace shmap::bench

int main(int argc, char** argv) {
  int code = 0;
  const auto opts = shmap::bench::parse_options(argc, argv, code);
  if (!opts) return code;
  try {
    return shmap::bench::run(*opts);
  } catch (const std::exception& e) {
    std::cerr << "shmap-bench: " << e.what() << "\n";
    return 1;
  }
}
