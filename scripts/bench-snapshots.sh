#!/usr/bin/env bash
# Pause/resume, snapshot/restore and fork benchmarks (internal/cmd/snapbench): pause and resume
# latency (idle and busy) beside `runc state` and a direct freezer write; snapshot and restore of a
# sandbox with a 100 MB workdir beside a host `cp -a` and a plain create; fork of 5 beside 5 fresh
# setups. Replaces the section between the snapbench markers of docs/BENCHMARKS.md. Needs root
# and bin/agent. Knobs: SNAP_BENCH_N (20), SNAP_BENCH_FORK_RUNS (3), SNAP_BENCH_ARGS (extra flags).
set -euo pipefail
cd "$(dirname "$0")/.."
go build -o bin/snapbench ./internal/cmd/snapbench
out=$(mktemp)
trap 'rm -f "$out"' EXIT
bin/snapbench -binary bin/agent -n "${SNAP_BENCH_N:-20}" -fork-runs "${SNAP_BENCH_FORK_RUNS:-3}" ${SNAP_BENCH_ARGS:-} >"$out"
doc=docs/BENCHMARKS.md
[ -f "$doc" ] || printf '# Benchmarks\n\nWritten by `make bench`.\n' >"$doc"
begin='<!-- snapbench:begin -->'
end='<!-- snapbench:end -->'
if grep -qF "$begin" "$doc"; then
  awk -v b="$begin" -v e="$end" -v f="$out" '
    $0 == b { print; while ((getline l < f) > 0) print l; skip = 1; next }
    $0 == e { skip = 0 }
    !skip { print }' "$doc" >"$doc.tmp"
  mv "$doc.tmp" "$doc"
else
  { printf '\n%s\n' "$begin"; cat "$out"; printf '%s\n' "$end"; } >>"$doc"
fi
echo "bench-snapshots: wrote the snapshot section of $doc"
