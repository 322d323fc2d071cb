#!/usr/bin/env bash
# Benchmark of agent serve: create → first command with the npm SDKs (e2b latest, e2b 2.45,
# novita-sandbox) against agent serve, beside the Go remote backend against the same server and the
# Go local backend directly (the baseline), in one run. Prints a Markdown table (p50/p99).
#   scripts/bench-serve.sh [N]      (default N=30; needs root, runc, node and npm)
set -euo pipefail
cd "$(dirname "$0")/.."
n=${1:-30}
[ -x bin/agent ] || go build -o bin/agent ./cmd/agent
js=test/sdk/js
want=$(sha256sum "$js/package-lock.json" | cut -d' ' -f1)
if [ "$(cat "$js/node_modules/.lock-sha256" 2>/dev/null || true)" != "$want" ]; then
  (cd "$js" && npm ci --no-audit --no-fund --loglevel=error >&2)
  echo "$want" >"$js/node_modules/.lock-sha256"
fi
data=${BENCH_DATA_DIR:-/var/lib/agent-bench-serve}
go run ./internal/cmd/servebench -binary bin/agent -n "$n" -data-dir "$data" -js-dir "$js"
