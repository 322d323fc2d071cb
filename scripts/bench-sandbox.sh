#!/usr/bin/env bash
# Local sandbox benchmarks (internal/cmd/sandboxbench): create→ready per template, runtime, pool
# on/off, sequential and concurrent, beside bare `runtime run /bin/true`; where the runtime's time
# goes; density of idle sandboxes (networked sandboxes: scripts/bench-network.sh). Replaces the
# section between the sandboxbench markers of docs/BENCHMARKS.md. Needs root and bin/agent; builds
# the debian template when missing (minutes).
# Knobs: SANDBOX_BENCH_N (50), SANDBOX_BENCH_DENSITY (500), SANDBOX_BENCH_ARGS (extra flags).
set -euo pipefail
cd "$(dirname "$0")/.."
go build -o bin/sandboxbench ./internal/cmd/sandboxbench
out=$(mktemp)
trap 'rm -f "$out"' EXIT
# -fix-crun: on a cgroup hybrid host, apply the documented crun host fix for the run, undo it after.
bin/sandboxbench -binary bin/agent -fix-crun -n "${SANDBOX_BENCH_N:-50}" -density "${SANDBOX_BENCH_DENSITY:-500}" \
  ${SANDBOX_BENCH_ARGS:-} >"$out"
scripts/bench-section.sh sandboxbench "$out"
