#!/usr/bin/env bash
# `make bench`: runs the benchmarks and writes docs/BENCHMARKS.md.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/bench-sandbox.sh
