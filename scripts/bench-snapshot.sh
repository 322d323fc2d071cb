#!/usr/bin/env bash
# Pause/resume, snapshot/restore and fork benchmarks (internal/cmd/snapbench): pause and resume
# latency (idle and busy) beside `runc state` and a direct freezer write; snapshot and restore of a
# sandbox with a 100 MB workdir beside a host `cp -a` and a plain create; fork of 5 beside 5 fresh
# setups. Writes the snapbench section of docs/BENCHMARKS.md. Needs root and bin/agent.
# Knobs: SNAP_BENCH_N (20), SNAP_BENCH_FORK_RUNS (3), SNAP_BENCH_ARGS (extra flags).
set -euo pipefail
cd "$(dirname "$0")/.."
go build -o bin/snapbench ./internal/cmd/snapbench
out=$(mktemp)
trap 'rm -f "$out"' EXIT
bin/snapbench -binary bin/agent -n "${SNAP_BENCH_N:-20}" -fork-runs "${SNAP_BENCH_FORK_RUNS:-3}" ${SNAP_BENCH_ARGS:-} >"$out"
scripts/bench-section.sh snapbench "$out"
