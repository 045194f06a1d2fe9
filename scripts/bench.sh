#!/usr/bin/env bash
# The main benchmark: builds shmap-bench (Release, in build/bench) and runs it
# with its defaults: 2 processes, 1M 8-byte keys and values, workloads get,
# insert and 90/10, 2 s per measurement, median of 3, pinned compact. Takes a
# few minutes. Prints the machine, the pinning and one table per workload;
# writes every measurement to bench-results.json in the current directory.
# Extra arguments go to shmap-bench (see `scripts/bench.sh --help`), e.g.
#   scripts/bench.sh --procs 4 --workloads get,50/50 --duration 5
# Method and recorded results: docs/benchmarks.md.
set -euo pipefail
here=$PWD
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
./scripts/deps.sh
cmake -S . -B build/bench -DCMAKE_BUILD_TYPE=Release -DSHMAP_BUILD_TESTS=OFF -DSHMAP_BUILD_TOOLS=OFF >/dev/null
cmake --build build/bench -j "$(nproc)" --target shmap-bench >/dev/null
cd "$here"
exec "$root/build/bench/bench/shmap-bench" "$@"
