#!/usr/bin/python3
"""Turns benchmark JSON into PNG plots for docs/benchmarks.md.

Usage: scripts/plots.py [--out DIR] FILE.json [FILE.json ...]

Each FILE is either a shmap-bench result (the multi-process driver: "tool":
"shmap-bench") or a Google Benchmark result of shmap-micro (has "benchmarks").
Writes, into DIR (default docs/img):
  driver-<workload>.png      median Mops/s per implementation at 1 and P
                             workers, with shmap's ratio to each baseline
  driver-latency.png         p50 / p99 / p99.9 per implementation and workload
                             (when the driver recorded latencies)
  micro-<op>.png             items/s per implementation for each op at the
                             8-byte key/value point, 1 and 2 threads
  micro-sweep-<dim>.png      get_hit and update of every implementation across
                             key size, value size and map size (1 thread)
Needs Debian's python3-matplotlib (scripts/plots.sh installs it).
"""
import argparse
import json
import os
import re
import statistics
import sys
from collections import defaultdict

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

COLORS = {
    "shmap": "#1f77b4",
    "ideal-shm": "#7f7f7f",
    "ideal-inline": "#7f7f7f",
    "ideal-indirect": "#bcbcbc",
    "std-mutex": "#d62728",
    "std-shared_mutex": "#ff9896",
    "std-unordered": "#d62728",
    "boost-ipc": "#2ca02c",
    "boost-interprocess": "#2ca02c",
}


def color(impl):
    if impl in COLORS:
        return COLORS[impl]
    if impl.startswith("libcds"):
        return {"libcds-michael": "#9467bd", "libcds-feldman": "#8c564b", "libcds-splitlist": "#e377c2"}.get(
            impl, "#9467bd")
    if impl.startswith("boost"):
        return "#2ca02c"
    return "#17becf"


def load(path):
    with open(path) as f:
        return json.load(f)


# ------------------------------------------------------------------ driver


def driver_medians(doc):
    """{(workload, impl, procs*threads): (median, min, max)} over repeats."""
    runs = defaultdict(list)
    for m in doc.get("measurements", []):
        if not m.get("ok", True):
            continue
        workers = m.get("procs", 1) * m.get("threads", 1)
        runs[(m["workload"], m["impl"], workers)].append(m["mops_per_s"])
    return {k: (statistics.median(v), min(v), max(v)) for k, v in runs.items()}


def plot_driver(doc, out, written):
    med = driver_medians(doc)
    cfg = doc.get("config", {})
    machine = doc.get("machine", {})
    workloads = []
    for (w, _, _) in med:
        if w not in workloads:
            workloads.append(w)
    for w in workloads:
        impls = []
        for (ww, impl, _) in med:
            if ww == w and impl not in impls:
                impls.append(impl)
        workers = sorted({n for (ww, _, n) in med if ww == w})
        fig, ax = plt.subplots(figsize=(max(6, 1.2 * len(impls) * len(workers)), 4.2))
        width = 0.8 / max(1, len(impls))
        for i, impl in enumerate(impls):
            xs, ys, errs_lo, errs_hi = [], [], [], []
            for j, n in enumerate(workers):
                if (w, impl, n) not in med:
                    continue
                m, lo, hi = med[(w, impl, n)]
                xs.append(j + (i - (len(impls) - 1) / 2) * width)
                ys.append(m)
                errs_lo.append(m - lo)
                errs_hi.append(hi - m)
            ax.bar(xs, ys, width, yerr=[errs_lo, errs_hi], capsize=2, label=impl, color=color(impl))
            for x, y, n in zip(xs, ys, [n for n in workers if (w, impl, n) in med]):
                if impl != "shmap" and (w, "shmap", n) in med and y > 0:
                    ratio = med[(w, "shmap", n)][0] / y
                    ax.annotate(f"{ratio:.2f}x", (x, y), ha="center", va="bottom", fontsize=7)
        ax.set_xticks(range(len(workers)))
        ax.set_xticklabels([f"{n} worker{'s' if n > 1 else ''}" for n in workers])
        ax.set_ylabel("Mops/s (median, min-max)")
        ax.set_title(f"{w}: {cfg.get('keys', '?')} keys, {cfg.get('key_bytes', '?')} B keys, "
                     f"{cfg.get('value_bytes', '?')} B values; {machine.get('cores', '?')} cores\n"
                     "labels: shmap's throughput / that implementation's", fontsize=9)
        ax.legend(fontsize=7, ncol=2)
        ax.grid(axis="y", alpha=0.3)
        fig.tight_layout()
        name = os.path.join(out, "driver-" + re.sub(r"[^A-Za-z0-9]+", "-", w).strip("-") + ".png")
        fig.savefig(name, dpi=110)
        plt.close(fig)
        written.append(name)

    # Latency percentiles, if recorded: measurement["latency_ns"] = {"p50":..,"p99":..,"p999":..}
    lat = defaultdict(list)
    for m in doc.get("measurements", []):
        l = m.get("latency_ns") or m.get("latency")
        if not l or not m.get("ok", True):
            continue
        workers = m.get("procs", 1) * m.get("threads", 1)
        lat[(m["workload"], m["impl"], workers)].append(l)
    if lat:
        most = max(k[2] for k in lat)  # the multi-worker rows: the contended case
        keys = sorted((k for k in lat if k[2] == most), key=lambda k: (k[0], k[1]))
        labels, p50, p99, p999 = [], [], [], []

        def pick(d, *names):
            for n in names:
                if n in d:
                    return d[n]
            return 0

        for k in keys:
            ls = lat[k]
            labels.append(f"{k[0]}\n{k[1]}")
            p50.append(statistics.median(pick(x, "p50", "p50_ns") for x in ls))
            p99.append(statistics.median(pick(x, "p99", "p99_ns") for x in ls))
            p999.append(statistics.median(pick(x, "p999", "p99.9", "p999_ns") for x in ls))
        fig, ax = plt.subplots(figsize=(max(7, 0.45 * len(keys)), 4.5))
        xs = range(len(keys))
        ax.bar([x - 0.27 for x in xs], p50, 0.27, label="p50")
        ax.bar(list(xs), p99, 0.27, label="p99")
        ax.bar([x + 0.27 for x in xs], p999, 0.27, label="p99.9")
        ax.set_yscale("log")
        ax.set_ylabel("ns per operation (sampled)")
        ax.set_xticks(list(xs))
        ax.set_xticklabels(labels, rotation=90, fontsize=6)
        ax.legend(fontsize=8)
        ax.grid(axis="y", alpha=0.3)
        ax.set_title(f"sampled latency percentiles per workload and implementation, {most} workers", fontsize=9)
        fig.tight_layout()
        name = os.path.join(out, "driver-latency.png")
        fig.savefig(name, dpi=110)
        plt.close(fig)
        written.append(name)


# ------------------------------------------------------------------ micro

NAME = re.compile(r"^(?P<op>[^/]+)/(?P<impl>[^/]+)/k(?P<k>\d+)/v(?P<v>\d+)/n(?P<n>\d+)(?P<rest>.*)$")


def micro_rows(doc):
    """[(op, impl, k, v, n, threads, items_per_second)], medians preferred."""
    rows = {}
    for b in doc.get("benchmarks", []):
        if b.get("error_occurred"):
            continue
        agg = b.get("aggregate_name")
        if agg and agg != "median":
            continue
        name = b.get("run_name") or b["name"]
        m = NAME.match(name)
        if not m or "items_per_second" not in b:
            continue
        t = re.search(r"threads:(\d+)", name)
        threads = int(t.group(1)) if t else b.get("threads", 1)
        key = (m["op"], m["impl"], int(m["k"]), int(m["v"]), int(m["n"]), threads)
        if agg == "median" or key not in rows:
            rows[key] = b["items_per_second"]
    return rows


def plot_micro(doc, out, written):
    rows = micro_rows(doc)
    if not rows:
        return
    ops = []
    for (op, *_rest) in rows:
        if op not in ops:
            ops.append(op)
    ns = sorted({k[4] for k in rows})
    base_n = 1000000 if 1000000 in ns else ns[-1]
    for op in ops:
        pts = {k: v for k, v in rows.items() if k[0] == op and k[2] == 8 and k[3] == 8 and k[4] == base_n}
        if not pts:
            continue
        impls = []
        for k in sorted(pts, key=lambda k: (k[1] != "shmap", k[1])):
            if k[1] not in impls:
                impls.append(k[1])
        threads = sorted({k[5] for k in pts})
        fig, ax = plt.subplots(figsize=(max(6, 0.9 * len(impls) * len(threads)), 4.2))
        width = 0.8 / len(impls)
        for i, impl in enumerate(impls):
            xs, ys = [], []
            for j, t in enumerate(threads):
                key = (op, impl, 8, 8, base_n, t)
                if key in pts:
                    xs.append(j + (i - (len(impls) - 1) / 2) * width)
                    ys.append(pts[key] / 1e6)
            ax.bar(xs, ys, width, label=impl, color=color(impl))
            for x, y, t in zip(xs, ys, [t for t in threads if (op, impl, 8, 8, base_n, t) in pts]):
                s = pts.get((op, "shmap", 8, 8, base_n, t))
                if impl != "shmap" and s and y > 0:
                    ax.annotate(f"{s / 1e6 / y:.2f}x", (x, y), ha="center", va="bottom", fontsize=7)
        ax.set_xticks(range(len(threads)))
        ax.set_xticklabels([f"{t} thread{'s' if t > 1 else ''}" for t in threads])
        ax.set_ylabel("Mops/s")
        ax.set_title(f"micro {op}: 8 B keys and values, {base_n} keys\n"
                     "labels: shmap's throughput / that implementation's", fontsize=9)
        ax.legend(fontsize=7, ncol=2)
        ax.grid(axis="y", alpha=0.3)
        fig.tight_layout()
        name = os.path.join(out, f"micro-{op}.png")
        fig.savefig(name, dpi=110)
        plt.close(fig)
        written.append(name)

    # Sweeps: one dimension at a time around k8/v8/base_n, single thread.
    for dim, idx, label in (("key", 2, "key bytes"), ("value", 3, "value bytes"), ("size", 4, "keys in the map")):
        series = defaultdict(list)
        for k, v in rows.items():
            if k[5] != 1 or k[0] not in ("get_hit", "update"):  # two ops keep the plot readable
                continue
            fixed = [k[2] == 8, k[3] == 8, k[4] == base_n]
            fixed[idx - 2] = True
            if all(fixed):
                series[(k[0], k[1])].append((k[idx], v / 1e6))
        series = {s: sorted(p) for s, p in series.items() if len({x for x, _ in p}) > 1}
        if not series:
            continue
        fig, ax = plt.subplots(figsize=(7, 4.2))
        for (op, impl), p in sorted(series.items()):
            ax.plot([x for x, _ in p], [y for _, y in p], marker="o" if op == "get_hit" else "s",
                    label=f"{op} {impl}", color=color(impl), linestyle="-" if op == "get_hit" else "--")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel(label)
        ax.set_ylabel("Mops/s, 1 thread")
        ax.set_title(f"micro: {label} sweep (others at 8 B / 8 B / {base_n} keys)", fontsize=9)
        ax.legend(fontsize=6, ncol=2)
        ax.grid(alpha=0.3)
        fig.tight_layout()
        name = os.path.join(out, f"micro-sweep-{dim}.png")
        fig.savefig(name, dpi=110)
        plt.close(fig)
        written.append(name)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "docs", "img"))
    ap.add_argument("files", nargs="+")
    a = ap.parse_args()
    os.makedirs(a.out, exist_ok=True)
    written = []
    for f in a.files:
        doc = load(f)
        if doc.get("tool") == "shmap-bench":
            plot_driver(doc, a.out, written)
        elif "benchmarks" in doc:
            plot_micro(doc, a.out, written)
        else:
            print(f"plots: {f}: neither a shmap-bench nor a Google Benchmark result", file=sys.stderr)
            return 2
    for w in written:
        print(os.path.relpath(w))
    return 0 if written else 1


if __name__ == "__main__":
    sys.exit(main())
