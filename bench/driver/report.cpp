#include "report.hpp"

#include <sys/utsname.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <ctime>

#include "json.hpp"

namespace shmap::bench {

namespace {

std::string fmt(const char* f, double a, double b = 0, double c = 0) {
  char buf[96];
  std::snprintf(buf, sizeof buf, f, a, b, c);
  return buf;
}

std::string pad(std::string s, std::size_t w) {
  if (s.size() < w) s.append(w - s.size(), ' ');
  return s;
}

std::string lpad(std::string s, std::size_t w) {
  if (s.size() < w) s.insert(0, w - s.size(), ' ');
  return s;
}

}  // namespace

std::string read_loadavg() {
  std::FILE* f = std::fopen("/proc/loadavg", "r");
  if (f == nullptr) return {};
  char buf[128] = {};
  const bool ok = std::fgets(buf, sizeof buf, f) != nullptr;
  std::fclose(f);
  if (!ok) return {};
  std::string s(buf);
  // The three load averages only.
  std::size_t cut = 0;
  for (int fields = 0; fields < 3 && cut != std::string::npos; ++fields) cut = s.find(' ', cut + (fields > 0));
  return s.substr(0, cut);
}

RunInfo collect_run_info() {
  RunInfo r;
  r.loadavg_start = read_loadavg();
  const std::time_t now = std::time(nullptr);
  std::tm tm{};
  gmtime_r(&now, &tm);
  char date[32];
  std::strftime(date, sizeof date, "%Y-%m-%dT%H:%M:%SZ", &tm);
  r.date_utc = date;
  char host[256] = {};
  if (gethostname(host, sizeof host - 1) == 0) r.host = host;
  utsname u{};
  if (uname(&u) == 0) r.kernel = std::string(u.sysname) + " " + u.release + " " + u.machine;
#if defined(__clang__)
  r.compiler = "clang " __clang_version__;
#elif defined(__GNUC__)
  r.compiler = "g++ " __VERSION__;
#endif
#ifdef NDEBUG
  r.optimized = true;
#endif
  return r;
}

std::optional<Summary> summarize(const std::vector<Measurement>& all, const std::string& workload,
                                 const std::string& impl, unsigned workers) {
  std::vector<double> v;
  for (const Measurement& m : all) {
    if (m.workload == workload && m.impl == impl && m.workers() == workers && m.anomalies.empty() && m.run.ops > 0) {
      v.push_back(m.run.mops());
    }
  }
  if (v.empty()) return std::nullopt;
  std::sort(v.begin(), v.end());
  Summary s;
  s.samples = static_cast<unsigned>(v.size());
  s.min = v.front();
  s.max = v.back();
  s.median = v.size() % 2 ? v[v.size() / 2] : (v[v.size() / 2 - 1] + v[v.size() / 2]) / 2;
  return s;
}

std::string format_table(const Workload& wl, const std::vector<Measurement>& all, const std::vector<unsigned>& counts,
                         const std::vector<std::string>& impls, std::uint64_t keys) {
  std::string out = wl.name + ": " + wl.description(keys) + "\n";
  out += "  " + pad("impl", 18) + lpad("procs", 5) + lpad("threads", 8) + lpad("Mops/s", 10) + "  " +
         pad("(min - max)", 20) + lpad("shmap/impl", 10) + lpad("busy", 6) + "\n";
  bool any_threaded = false;
  std::vector<std::string> failures;
  for (const unsigned n : counts) {
    const auto shmap = summarize(all, wl.name, "shmap", n);
    for (const std::string& impl : impls) {
      unsigned runs = 0;
      double busy = 1;
      for (const Measurement& m : all) {
        if (m.workload == wl.name && m.impl == impl && m.workers() == n) {
          ++runs;
          busy = std::min(busy, m.run.min_busy());
          for (const std::string& a : m.anomalies) {
            std::string f = impl;
            f += ", " + std::to_string(n) + " workers, repeat " + std::to_string(m.repeat + 1) + ": ";
            f += a;
            failures.push_back(std::move(f));
          }
        }
      }
      if (runs == 0) continue;
      any_threaded = any_threaded || threaded(impl);
      const unsigned procs = threaded(impl) ? 1 : n, threads = threaded(impl) ? n : 1;
      std::string row = "  " + pad(impl, 18) + lpad(std::to_string(procs), 5) + lpad(std::to_string(threads), 8);
      const auto s = summarize(all, wl.name, impl, n);
      if (!s) {
        row += lpad("failed", 10);
      } else {
        row += lpad(fmt("%.3f", s->median), 10) + "  " + pad(fmt("(%.3f - %.3f)", s->min, s->max), 20);
        if (impl == "shmap") {
          row += lpad("1.00", 10);
        } else if (shmap) {
          row += lpad(fmt("%.2f", shmap->median / s->median), 10);
        } else {
          row += lpad("-", 10);
        }
        row += lpad(fmt("%.0f%%", 100 * busy), 6);
        if (s->samples < runs) row += "  only " + std::to_string(s->samples) + "/" + std::to_string(runs) + " clean";
      }
      out += row + "\n";
    }
  }
  out += "  busy: CPU time / wall time of the least busy worker over the repeats; below ~95% a worker was\n"
         "  descheduled (other load on the machine), slept in page faults, or (std-*) slept on the lock.\n";
  if (any_threaded) {
    out += "  std-* run as threads of ONE process: std::unordered_map cannot be shared across processes.\n";
  }
  for (const std::string& f : failures) out += "  ANOMALY " + f + "\n";
  return out;
}

std::string to_json(const RunInfo& info, const Options& o, const Topology& topo, PinPolicy pin,
                    const std::vector<unsigned>& counts, const std::vector<Measurement>& all) {
  JsonWriter j;
  j.begin_object();
  j.field("tool", "shmap-bench").field("format", 1);
  j.field("date_utc", info.date_utc).field("host", info.host).field("kernel", info.kernel);
  j.field("compiler", info.compiler).field("optimized", info.optimized);
  j.field("loadavg_start", info.loadavg_start).field("loadavg_end", read_loadavg());

  j.key("machine").begin_object();
  j.field("packages", topo.packages).field("numa_nodes", topo.numa_nodes).field("cores", topo.cores);
  j.field("pus", static_cast<unsigned>(topo.pus.size())).field("cpu_model", topo.cpu_model);
  j.end_object();

  j.key("config").begin_object();
  j.field("procs", o.procs).field("keys", o.keys).field("key_bytes", static_cast<std::uint64_t>(o.key_bytes));
  j.field("value_bytes", static_cast<std::uint64_t>(o.value_bytes)).field("duration_s", o.duration_s);
  j.field("repeat", o.repeat).field("seed", o.seed).field("pin", to_string(pin));
  j.key("workloads").begin_array();
  for (const Workload& w : o.workloads) j.value(w.name);
  j.end_array();
  j.key("impls").begin_array();
  for (const std::string& i : o.impls) j.value(i);
  j.end_array();
  j.end_object();

  j.key("measurements").begin_array();
  for (const Measurement& m : all) {
    j.begin_object();
    j.field("impl", m.impl).field("workload", m.workload).field("procs", m.procs).field("threads", m.threads);
    j.field("repeat", m.repeat).field("ops", m.run.ops).field("seconds", m.run.seconds);
    j.field("mops_per_s", m.run.mops()).field("setup_seconds", m.setup_seconds).field("min_busy", m.run.min_busy());
    j.field("ok", m.anomalies.empty());
    j.key("anomalies").begin_array();
    for (const std::string& a : m.anomalies) j.value(a);
    j.end_array();
    j.key("workers").begin_array();
    for (unsigned w = 0; w < m.run.workers.size(); ++w) {
      const WorkerResult& r = m.run.workers[w];
      j.begin_object();
      j.field("worker", w);
      if (w < m.plan.size() && m.plan[w].pu) {
        j.field("pinned_pu", m.plan[w].pu->os_index);
      } else {
        j.key("pinned_pu").value("none");
      }
      j.field("cpu_start", r.cpu_start).field("cpu_end", r.cpu_end);
      j.field("ops", r.counts.ops).field("seconds", r.seconds).field("busy", r.busy);
      j.field("hits", r.counts.hits).field("misses", r.counts.misses);
      j.field("writes_ok", r.counts.writes_ok).field("writes_failed", r.counts.writes_failed);
      if (!r.note.empty()) j.field("note", r.note);
      if (!r.error.empty()) j.field("error", r.error);
      j.end_object();
    }
    j.end_array();
    j.end_object();
  }
  j.end_array();

  // Medians and shmap's ratios, as printed.
  j.key("summary").begin_array();
  for (const Workload& wl : o.workloads) {
    for (const unsigned n : counts) {
      const auto shmap = summarize(all, wl.name, "shmap", n);
      for (const std::string& impl : o.impls) {
        const auto s = summarize(all, wl.name, impl, n);
        if (!s) continue;
        j.begin_object();
        j.field("workload", wl.name).field("impl", impl);
        j.field("procs", threaded(impl) ? 1u : n).field("threads", threaded(impl) ? n : 1u);
        j.field("median_mops_per_s", s->median).field("min_mops_per_s", s->min).field("max_mops_per_s", s->max);
        j.field("samples", s->samples);
        if (shmap) j.field("shmap_ratio", shmap->median / s->median);
        j.end_object();
      }
    }
  }
  j.end_array();
  j.end_object();
  return j.str() + "\n";
}

}  // namespace shmap::bench
