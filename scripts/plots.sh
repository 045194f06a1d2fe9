#!/usr/bin/env bash
# Turns benchmark JSON (shmap-bench and shmap-micro results) into PNGs under
# docs/img: scripts/plots.sh bench-results.json micro-results.json
# Installs Debian's python3-matplotlib when missing.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
"$root/scripts/deps.sh" python3-matplotlib
exec /usr/bin/python3 "$root/scripts/plots.py" "$@"
