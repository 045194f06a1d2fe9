#include "report.hpp"

#include <sys/utsname.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <ctime>
#include <map>

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

std::string mib(std::uint64_t bytes) {
  return fmt("%.1f MiB", static_cast<double>(bytes) / (1 << 20));
}

double migrations_of(const Measurement& m) {
  return static_cast<double>(m.index.migrations());
}

// The last clean measurement of (workload, impl, workers), or null.
const Measurement* last_clean(const std::vector<Measurement>& all, const std::string& workload, const std::string& impl,
                              unsigned workers) {
  const Measurement* last = nullptr;
  for (const Measurement& m : all) {
    if (m.workload == workload && m.impl == impl && m.workers() == workers && m.anomalies.empty() && m.run.ops > 0) {
      last = &m;
    }
  }
  return last;
}

// The runs of (workload, impl, workers), their least busy worker, and their
// anomalies as "impl, N workers, repeat R: ..." lines.
unsigned collect_runs(const std::vector<Measurement>& all, const std::string& workload, const std::string& impl,
                      unsigned n, double& busy, std::vector<std::string>& failures) {
  unsigned runs = 0;
  busy = 1;
  for (const Measurement& m : all) {
    if (m.workload == workload && m.impl == impl && m.workers() == n) {
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
  return runs;
}

// The parent's stats().migrating samples over the clean runs: {migrating, samples, CPU seconds, wall seconds}.
struct SampleTotals {
  unsigned migrating = 0, samples = 0;
  double cpu_s = 0, wall_s = 0;
};
SampleTotals sample_totals(const std::vector<Measurement>& all, const std::string& workload, const std::string& impl,
                           unsigned n) {
  SampleTotals t;
  for (const Measurement& m : all) {
    if (m.workload == workload && m.impl == impl && m.workers() == n && m.anomalies.empty() && m.index.taken) {
      t.migrating += m.index.migrating_samples;
      t.samples += m.index.samples;
      t.cpu_s += m.index.sample_cpu_s;
      t.wall_s += m.run.seconds;
    }
  }
  return t;
}

void latency_json(JsonWriter& j, std::string_view key, const LatencySummary& l) {
  j.key(key).begin_object();
  j.field("samples", l.samples).field("p50", l.p50_ns).field("p90", l.p90_ns).field("p99", l.p99_ns);
  j.field("p999", l.p999_ns).field("max", l.max_ns);
  j.end_object();
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
  return summarize_by(all, workload, impl, workers, [](const Measurement& m) { return m.run.mops(); });
}

std::optional<Summary> summarize_by(const std::vector<Measurement>& all, const std::string& workload,
                                    const std::string& impl, unsigned workers, double (*figure)(const Measurement&)) {
  std::vector<double> v;
  for (const Measurement& m : all) {
    if (m.workload == workload && m.impl == impl && m.workers() == workers && m.anomalies.empty() && m.run.ops > 0) {
      v.push_back(figure(m));
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

LatencySummary summarize_latency(const std::vector<Measurement>& all, const std::string& workload,
                                 const std::string& impl, unsigned workers) {
  LatencyHistogram merged;
  for (const Measurement& m : all) {
    if (m.workload == workload && m.impl == impl && m.workers() == workers && m.anomalies.empty() && m.run.ops > 0) {
      merged.merge(m.run.latency);
    }
  }
  return summarize(merged);
}

std::string format_table(const Workload& wl, const std::vector<Measurement>& all, const std::vector<unsigned>& counts,
                         const std::vector<std::string>& impls, std::uint64_t keys) {
  std::string out = wl.name + ": " + wl.description(keys) + "\n";
  out += "  " + pad("impl", 18) + lpad("procs", 5) + lpad("threads", 8) + lpad("Mops/s", 10) + "  " +
         pad("(min - max)", 20) + lpad("shmap/impl", 10) + lpad("busy", 6) + lpad("p50", 9) + lpad("p99", 9) +
         lpad("p99.9", 9) + "\n";
  bool any_threaded = false;
  std::vector<std::string> failures;
  for (const unsigned n : counts) {
    const auto shmap = summarize(all, wl.name, "shmap", n);
    for (const std::string& impl : impls) {
      double busy = 1;
      const unsigned runs = collect_runs(all, wl.name, impl, n, busy, failures);
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
        const LatencySummary lat = summarize_latency(all, wl.name, impl, n);
        row += lpad(format_ns(lat.p50_ns), 9) + lpad(format_ns(lat.p99_ns), 9) + lpad(format_ns(lat.p999_ns), 9);
        if (s->samples < runs) row += "  only " + std::to_string(s->samples) + "/" + std::to_string(runs) + " clean";
      }
      out += row + "\n";
    }
  }
  out += "  busy: CPU time / wall time of the least busy worker over the repeats; below ~95% a worker was\n"
         "  descheduled (other load on the machine), slept in page faults, or (std-*) slept on the lock.\n"
         "  p50/p99/p99.9: latency of the sampled operations of every worker and clean repeat, merged.\n";
  if (any_threaded) {
    out += "  std-* run as threads of ONE process: std::unordered_map cannot be shared across processes.\n";
  }
  for (const std::string& f : failures) out += "  ANOMALY " + f + "\n";
  return out;
}

std::string format_writer_table(const Workload& wl, const std::vector<Measurement>& all,
                                const std::vector<unsigned>& counts, const std::vector<std::string>& impls,
                                std::uint64_t keys) {
  std::string out = wl.name + ": " + wl.description(keys) + "\n";
  out += "  " + pad("impl", 18) + lpad("procs", 5) + lpad("readers", 8) + lpad("gets/s M", 10) + "  " +
         pad("(min - max)", 20) + lpad("writer M/s", 11) + lpad("migr/run", 9) + lpad("migrating", 16) +
         lpad("busy", 6) + lpad("p50", 9) + lpad("p99", 9) + lpad("p99.9", 9) + "\n";
  std::vector<std::string> failures;
  double sample_cpu = 0, sample_wall = 0;
  for (const unsigned n : counts) {
    for (const std::string& impl : impls) {
      double busy = 1;
      const unsigned runs = collect_runs(all, wl.name, impl, n, busy, failures);
      if (runs == 0) continue;
      std::string row = "  " + pad(impl, 18) + lpad(std::to_string(n), 5) + lpad(std::to_string(n - 1), 8);
      const auto r = summarize_by(all, wl.name, impl, n, readers_mops);
      if (!r) {
        out += row + lpad("failed", 10) + "\n";
        continue;
      }
      const auto wr = summarize_by(all, wl.name, impl, n, writer_mops);
      const auto mig = summarize_by(all, wl.name, impl, n, migrations_of);
      const SampleTotals st = sample_totals(all, wl.name, impl, n);
      sample_cpu += st.cpu_s;
      sample_wall += st.wall_s;
      row += lpad(fmt("%.3f", r->median), 10) + "  " + pad(fmt("(%.3f - %.3f)", r->min, r->max), 20);
      row += lpad(wr ? fmt("%.3f", wr->median) : "-", 11) + lpad(mig ? fmt("%.0f", mig->median) : "-", 9);
      row += lpad(st.samples ? fmt("%.0f%% of %.0f", 100.0 * st.migrating / st.samples, st.samples) : "no samples", 16);
      row += lpad(fmt("%.0f%%", 100 * busy), 6);
      const LatencySummary lat = summarize_latency(all, wl.name, impl, n);
      row += lpad(format_ns(lat.p50_ns), 9) + lpad(format_ns(lat.p99_ns), 9) + lpad(format_ns(lat.p999_ns), 9);
      if (r->samples < runs) row += "  only " + std::to_string(r->samples) + "/" + std::to_string(runs) + " clean";
      out += row + "\n";
    }
  }
  out +=
      "  gets/s M: the readers' (workers 1..) gets per second, in millions, over the slowest reader's span;\n"
      "  writer M/s: worker 0's writes per second (get-migrating: an insert or an erase each). p50/p99/p99.9:\n"
      "  the readers' sampled gets (the writer is not sampled). migr/run: migrations completed during a run\n"
      "  (stats().migrations after minus before; median of the repeats). migrating: the parent's samples of\n"
      "  stats().migrating during the runs that found a migration running (all clean repeats)";
  out += sample_wall > 0 ? fmt("; sampling took %.1f%% of one CPU.\n", 100 * sample_cpu / sample_wall) : ".\n";
  for (const std::string& f : failures) out += "  ANOMALY " + f + "\n";
  return out;
}

std::vector<unsigned> counts_for(const Workload& wl, const std::vector<unsigned>& counts) {
  if (!wl.one_writer()) return counts;
  std::vector<unsigned> v;
  for (const unsigned n : counts) {
    if (n >= 2) v.push_back(n);
  }
  return v;
}

std::vector<Comparison> comparisons(const std::vector<Workload>& workloads, const std::vector<Measurement>& all,
                                    const std::vector<unsigned>& counts, const Options& o) {
  std::vector<Comparison> cs;
  auto first_of = [&](WorkloadKind kind) -> const Workload* {
    for (const Workload& w : workloads) {
      if (w.kind == kind && w.dist == KeyDist::uniform) return &w;
    }
    return nullptr;
  };
  auto position = [&](const Workload* w) { return static_cast<std::size_t>(w - workloads.data()); };

  // Insert into a map grown from 16 slots against one presized for every key.
  if (const Workload* ins = first_of(WorkloadKind::insert)) {
    for (const unsigned n : counts) {
      const auto g = summarize(all, ins->name, "shmap-grow", n);
      const auto p = summarize(all, ins->name, "shmap", n);
      if (!g || !p) continue;
      Comparison c;
      c.name = ins->name + ": shmap-grow / shmap (grown from 16 slots / presized)";
      c.after = ins->name;
      c.workers = n;
      c.ratio = g->median / p->median;
      c.target = 0.5;
      c.detail = fmt("%.3f / %.3f Mops/s", g->median, p->median);
      const auto mig = summarize_by(all, ins->name, "shmap-grow", n, migrations_of);
      if (const Measurement* last = last_clean(all, ins->name, "shmap-grow", n); last && mig) {
        c.detail += fmt("; shmap-grow: %.0f migrations per run, ", mig->median) +
                    std::to_string(last->index.index_slots) + " slots at the end";
      }
      cs.push_back(std::move(c));
    }
  }

  // The readers' gets/s while migrations run, against a writer that causes none.
  const Workload* mig = first_of(WorkloadKind::get_migrating);
  const Workload* base = first_of(WorkloadKind::get_with_writer);
  if (mig && base) {
    for (const unsigned n : counts_for(*mig, counts)) {
      const auto a = summarize_by(all, mig->name, "shmap", n, readers_mops);
      const auto b = summarize_by(all, base->name, "shmap", n, readers_mops);
      if (!a || !b) continue;
      Comparison c;
      c.name = mig->name + " / " + base->name + " (readers' gets/s during migrations / without)";
      c.after = position(mig) > position(base) ? mig->name : base->name;
      c.workers = n;
      c.ratio = a->median / b->median;
      c.detail = fmt("%.3f / %.3f M gets/s", a->median, b->median);
      const auto ma = summarize_by(all, mig->name, "shmap", n, migrations_of);
      const auto mb = summarize_by(all, base->name, "shmap", n, migrations_of);
      const SampleTotals st = sample_totals(all, mig->name, "shmap", n);
      if (ma && mb) c.detail += fmt("; migrations per run %.0f / %.0f", ma->median, mb->median);
      if (st.samples) {
        c.detail += fmt("; a migration ran in %.0f%% of %.0f samples", 100.0 * st.migrating / st.samples, st.samples);
      }
      cs.push_back(std::move(c));
    }
  }

  // Memory per live key after churn, against the get workload's presized map
  // (or, without one, the key and value bytes).
  if (const Workload* ch = first_of(WorkloadKind::churn); ch && !counts.empty()) {
    const unsigned n = counts.back();
    const Measurement* c_last = last_clean(all, ch->name, "shmap", n);
    const Workload* get = first_of(WorkloadKind::get);
    const Measurement* g_last = get ? last_clean(all, get->name, "shmap", n) : nullptr;
    const double kv = static_cast<double>((o.key_bytes + o.value_bytes + 7) / 8 * 8);
    if (c_last && c_last->index.live_keys > 0) {
      Comparison c;
      c.workers = n;
      c.detail = fmt("churn %.1f B per live key (", c_last->index.bytes_per_key()) +
                 std::to_string(c_last->index.live_keys) + " live keys, file " + mib(c_last->index.file_bytes) +
                 ", index " + std::to_string(c_last->index.index_slots) + " slots, " +
                 std::to_string(c_last->index.migrations()) + " migrations in the run)";
      if (g_last && g_last->index.live_keys > 0) {
        c.name = ch->name + ": shmap bytes per live key / " + get->name + "'s presized map";
        c.after = position(ch) > position(get) ? ch->name : get->name;
        c.ratio = c_last->index.bytes_per_key() / g_last->index.bytes_per_key();
        c.detail += " vs " + get->name + fmt(" %.1f B (", g_last->index.bytes_per_key()) +
                    std::to_string(g_last->index.live_keys) + " keys, file " + mib(g_last->index.file_bytes) + ")";
      } else {
        c.name = ch->name + ": shmap bytes per live key / key+value bytes";
        c.after = ch->name;
        c.ratio = c_last->index.bytes_per_key() / kv;
      }
      c.detail += fmt("; key+value %.0f B (rounded to 8)", kv);
      cs.push_back(std::move(c));
    }
  }
  return cs;
}

std::string format_comparisons(const std::vector<Comparison>& cs, const std::string& after) {
  std::string out;
  for (const Comparison& c : cs) {
    if (c.after != after) continue;
    out += "  " + c.name + ", " + std::to_string(c.workers) + " worker" + (c.workers > 1 ? "s" : "") + ": " +
           fmt("%.2fx", c.ratio);
    if (c.target > 0) out += fmt("  (target >= %.1fx: ", c.target) + (c.met() ? "met)" : "NOT met)");
    out += "\n    " + c.detail + "\n";
  }
  return out;
}

std::string format_memory(const Workload& wl, const std::vector<Measurement>& all, const std::vector<unsigned>& counts,
                          const std::vector<std::string>& impls, const MemPolicy& policy) {
  const unsigned n = counts.back();
  std::string out = "  memory (--membind " + to_string(policy) + "), after the last clean repeat with " +
                    std::to_string(n) + " worker" + (n > 1 ? "s" : "") + ":\n";
  for (const std::string& impl : impls) {
    const Measurement* last = nullptr;
    for (const Measurement& m : all) {
      if (m.workload == wl.name && m.impl == impl && m.workers() == n && m.anomalies.empty()) last = &m;
    }
    if (last == nullptr) continue;
    std::string line = "    " + pad(impl, 18) + pad(describe(last->mem), 24);
    if (last->census_taken) {
      line += describe(last->census);
    } else {
      line += last->mem.kind == MemPolicyKind::firsttouch
                  ? "heap of the parent process (pages not sampled)"
                  : "heap of the parent process (its thread policy, inherited by the workers; pages not sampled)";
    }
    out += line + "\n";
    if (last->index.taken) {
      // What the segment costs after the run and what its index did during it.
      const ShmapIndexReport& ix = last->index;
      const auto mig = summarize_by(all, wl.name, impl, n, migrations_of);
      out += "    " + pad("", 18) + "segment file " + mib(ix.file_bytes) +
             " allocated = " + fmt("%.1f B per live key", ix.bytes_per_key()) + " (" + std::to_string(ix.live_keys) +
             " keys); index " + std::to_string(ix.index_slots) + " slots (" + mib(ix.index_table_bytes) + "); arena " +
             mib(ix.arena_bytes) + " mapped\n";
      if (ix.migrations() > 0 || (mig && mig->median > 0)) {
        out += "    " + pad("", 18) + fmt("migrations per run: %.0f", mig ? mig->median : 0) +
               " (last run: " + std::to_string(ix.grown) + " grown, " + std::to_string(ix.shrunk) + " shrunk, " +
               std::to_string(ix.migrations() - ix.grown - ix.shrunk) + " at the same size, " +
               std::to_string(ix.reclaimed_slots) + " deleted slots reclaimed)\n";
      }
    }
  }
  return out;
}

std::string format_placement_check(const std::vector<Measurement>& all, const std::vector<unsigned>& counts,
                                   const Topology& topo) {
  std::string out =
      "where the workers ran (planned PU; CPU reported by sched_getcpu() after pinning and after the timed loop,\n"
      "over every measurement of every workload and implementation):\n";
  bool all_ok = true;
  for (const unsigned n : counts) {
    for (unsigned w = 0; w < n; ++w) {
      std::optional<Placement> planned;
      std::map<int, unsigned> start, end;
      unsigned runs = 0;
      for (const Measurement& m : all) {
        if (m.workers() != n || w >= m.run.workers.size() || w >= m.plan.size()) continue;
        planned = m.plan[w];
        ++runs;
        ++start[m.run.workers[w].cpu_start];
        ++end[m.run.workers[w].cpu_end];
      }
      if (!planned) continue;
      auto seen = [&](const std::map<int, unsigned>& cpus) {
        std::string s;
        for (const auto& [cpu, times] : cpus) {
          if (!s.empty()) s += ", ";
          char buf[64];
          const PuInfo* pu = cpu >= 0 ? find_pu(topo, static_cast<unsigned>(cpu)) : nullptr;
          if (cpu < 0) {
            std::snprintf(buf, sizeof buf, "unknown %u/%u", times, runs);
          } else if (pu) {
            std::snprintf(buf, sizeof buf, "CPU %d (NUMA %u) %u/%u", cpu, pu->numa, times, runs);
          } else {
            std::snprintf(buf, sizeof buf, "CPU %d %u/%u", cpu, times, runs);
          }
          s += buf;
        }
        return s;
      };
      bool ok = true;
      if (planned->pu) {
        for (const auto* cpus : {&start, &end}) {
          for (const auto& [cpu, times] : *cpus) {
            if (cpu != static_cast<int>(planned->pu->os_index)) ok = false;
          }
        }
      }
      all_ok = all_ok && ok;
      out += "  " + pad(std::to_string(n) + (n > 1 ? " workers," : " worker,"), 11) + "worker " + std::to_string(w) +
             " -> " + describe(*planned) + ": start " + seen(start) + "; end " + seen(end) +
             (planned->pu ? (ok ? "  ok" : "  MISMATCH") : "") + "\n";
    }
  }
  if (!all_ok) out += "  MISMATCH: a worker ran on a CPU other than its planned PU (binding refused or ignored?)\n";
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
  j.key("nodes").begin_array();
  for (unsigned n = 0; n < topo.nodes.size(); ++n) {
    j.begin_object().field("node", n).field("os_index", topo.nodes[n].os_index);
    j.field("local_bytes", topo.nodes[n].local_bytes);
    j.key("pus").begin_array();
    for (const PuInfo& pu : topo.pus) {
      if (pu.numa == n) j.value(pu.os_index);
    }
    j.end_array().end_object();
  }
  j.end_array();
  j.end_object();

  j.key("config").begin_object();
  j.field("procs", o.procs).field("keys", o.keys).field("key_bytes", static_cast<std::uint64_t>(o.key_bytes));
  j.field("value_bytes", static_cast<std::uint64_t>(o.value_bytes)).field("duration_s", o.duration_s);
  j.field("repeat", o.repeat).field("seed", o.seed).field("pin", to_string(pin));
  j.field("membind", to_string(o.membind)).field("zipf_theta", o.zipf_theta).field("counter_keys", o.counter_keys);
  j.field("latency_sample_every", o.latency_sample);
  j.field("churn_window", o.churn_window).field("writer_window", o.writer_window);  // churn: 0 = keys / workers
  const TickClock& clock = tick_clock();
  j.key("latency_clock").begin_object();
  j.field("source", clock.source).field("ticks_per_ns", clock.ticks_per_ns).field("floor_ns", clock.floor_ns);
  j.end_object();
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
    if (m.workers() >= 2 && std::any_of(o.workloads.begin(), o.workloads.end(),
                                        [&](const Workload& w) { return w.name == m.workload && w.one_writer(); })) {
      j.field("readers_mops_per_s", readers_mops(m)).field("writer_mops_per_s", writer_mops(m));
    }
    if (m.index.taken) {
      const ShmapIndexReport& ix = m.index;
      j.key("shmap_index").begin_object();
      j.field("migrations_before", ix.migrations_before).field("migrations_after", ix.migrations_after);
      j.field("migrations", ix.migrations()).field("grown", ix.grown).field("shrunk", ix.shrunk);
      j.field("reclaimed_slots", ix.reclaimed_slots).field("index_slots", ix.index_slots);
      j.field("index_table_bytes", ix.index_table_bytes).field("arena_bytes", ix.arena_bytes);
      j.field("live_keys", ix.live_keys).field("file_allocated_bytes", ix.file_bytes);
      j.field("bytes_per_live_key", ix.bytes_per_key());
      j.field("migrating_samples", ix.migrating_samples).field("samples", ix.samples);
      j.field("sample_cpu_s", ix.sample_cpu_s);
      j.end_object();
    }
    latency_json(j, "latency_ns", summarize(m.run.latency));
    j.key("membind").begin_object().field("plan", describe(m.mem)).key("nodes").begin_array();
    for (const unsigned n : m.mem.nodes) j.value(n);
    j.end_array().end_object();
    if (m.census_taken) {
      j.key("pages").begin_object();
      if (!m.census.error.empty()) j.field("error", m.census.error);
      j.field("resident_bytes", m.census.resident_pages * m.census.page_bytes).field("sampled", m.census.sampled);
      j.key("sampled_on_node").begin_array();
      for (const std::uint64_t c : m.census.on_node) j.value(c);
      j.end_array();
      j.field("unknown", m.census.unknown).field("policy", m.census.policy);
      j.end_object();
    }
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
      if (const PuInfo* pu = r.cpu_end >= 0 ? find_pu(topo, static_cast<unsigned>(r.cpu_end)) : nullptr) {
        j.field("numa_end", pu->numa);
      }
      latency_json(j, "latency_ns", r.latency);
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
    for (const unsigned n : counts_for(wl, counts)) {
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
        if (wl.one_writer()) {
          if (const auto r = summarize_by(all, wl.name, impl, n, readers_mops)) {
            j.field("readers_median_mops_per_s", r->median);
          }
        }
        latency_json(j, "latency_ns", summarize_latency(all, wl.name, impl, n));
        j.end_object();
      }
    }
  }
  j.end_array();

  // Ratios across implementations and workloads, as printed under the tables.
  j.key("comparisons").begin_array();
  for (const Comparison& c : comparisons(o.workloads, all, counts, o)) {
    j.begin_object().field("name", c.name).field("workers", c.workers).field("ratio", c.ratio);
    if (c.target > 0) j.field("target_at_least", c.target).field("met", c.met());
    j.field("detail", c.detail).end_object();
  }
  j.end_array();
  j.end_object();
  return j.str() + "\n";
}

}  // namespace shmap::bench
