#!/usr/bin/env bash
# agent serve benchmark (internal/cmd/servebench): create → first command with the npm SDKs (e2b
# latest, e2b 2.45, novita-sandbox) against agent serve, beside the Go remote backend against the
# same server and the Go local backend directly (the baseline), in one run; p50/p99. Replaces the
# section between the servebench markers of docs/BENCHMARKS.md (BENCH_SERVE_PRINT=1: print only).
# Needs root, runc, node and npm. Knobs: BENCH_SERVE_N (30), BENCH_DATA_DIR.
set -euo pipefail
cd "$(dirname "$0")/.."
n=${BENCH_SERVE_N:-30}
[ -x bin/agent ] || go build -o bin/agent ./cmd/agent
js=test/sdk/js
want=$(sha256sum "$js/package-lock.json" | cut -d' ' -f1)
if [ "$(cat "$js/node_modules/.lock-sha256" 2>/dev/null || true)" != "$want" ]; then
  (cd "$js" && npm ci --no-audit --no-fund --loglevel=error >&2)
  echo "$want" >"$js/node_modules/.lock-sha256"
fi
data=${BENCH_DATA_DIR:-/var/lib/agent-bench-serve}
go build -o bin/servebench ./internal/cmd/servebench
out=$(mktemp)
trap 'rm -f "$out"' EXIT
{
  printf '## agent serve (servebench)\n\n'
  bin/servebench -binary bin/agent -n "$n" -data-dir "$data" -js-dir "$js"
} >"$out"
if [ "${BENCH_SERVE_PRINT:-}" = 1 ]; then
  cat "$out"
  exit 0
fi
scripts/bench-section.sh servebench "$out"
cat "$out"
