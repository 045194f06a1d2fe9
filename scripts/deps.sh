#!/usr/bin/env bash
# Installs the Debian packages shmap builds, tests and benchmarks with, only the
# ones that are missing. Needs root (or sudo) when something is missing.
set -euo pipefail

packages=(g++ clang libclang-rt-14-dev cmake make pkg-config catch2 libbenchmark-dev
          libhwloc-dev libcds-dev libboost-dev python3 "$@")
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "deps: installing ${missing[*]}" >&2
  sudo=""
  if [[ $(id -u) -ne 0 ]]; then sudo="sudo"; fi
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
