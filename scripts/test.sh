#!/usr/bin/env bash
# Builds and runs every shmap test, in three build directories:
#   build/test-gcc   g++,     -Werror, optimized: the whole suite (unit, threads,
#                    forked processes, CLI, packaging); the benchmarks are built too
#   build/test-asan  clang++, -Werror, AddressSanitizer + UndefinedBehaviorSanitizer:
#                    the whole Catch2 suite
#   build/test-tsan  clang++, ThreadSanitizer: the threaded tests (label "threads")
# Usage: scripts/test.sh            (installs missing Debian packages first)
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/deps.sh

jobs=$(nproc)
summary=()

run() {  # run <dir> <ctest-args...> -- <cmake-args...>
  local dir=$1; shift
  local ctest_args=()
  while [[ $1 != -- ]]; do ctest_args+=("$1"); shift; done
  shift
  echo "=== configure $dir" >&2
  cmake -S . -B "$dir" -DSHMAP_WERROR=ON "$@" >/dev/null
  echo "=== build $dir" >&2
  cmake --build "$dir" -j "$jobs" >/dev/null
  echo "=== test $dir" >&2
  local out
  if ! out=$(cd "$dir" && ctest --output-on-failure -j "$jobs" "${ctest_args[@]}" 2>&1); then
    echo "$out"
    echo "FAILED: $dir" >&2
    exit 1
  fi
  echo "$out" | tail -n 25
  summary+=("$dir: $(echo "$out" | grep -E 'tests passed' | tail -n 1)")
}

run build/test-gcc -- -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCMAKE_CXX_COMPILER=g++
run build/test-asan -LE packaging -- -DCMAKE_BUILD_TYPE=Debug -DCMAKE_CXX_COMPILER=clang++ \
    -DSHMAP_SANITIZE=address -DSHMAP_BUILD_BENCH=OFF
TSAN_OPTIONS="halt_on_error=1 second_deadlock_stack=1" \
run build/test-tsan -L threads -- -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCMAKE_CXX_COMPILER=clang++ \
    -DSHMAP_SANITIZE=thread -DSHMAP_BUILD_BENCH=OFF -DSHMAP_BUILD_TOOLS=OFF

echo
echo "=== summary"
printf '%s\n' "${summary[@]}"
