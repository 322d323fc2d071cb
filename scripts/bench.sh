#!/usr/bin/env bash
# `make bench`: runs every benchmark and writes its section of docs/BENCHMARKS.md (medians, p99,
# and a baseline measured in the same run). BENCH_ONLY="envd agent runner eval sandbox network
# serve snapshot" limits the run to some sections. Needs root (real sandboxes) and bin/agent.
set -euo pipefail
cd "$(dirname "$0")/.."
only=" ${BENCH_ONLY:-envd agent runner eval sandbox network serve snapshot} "
want() { [[ "$only" == *" $1 "* ]]; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

machine() {
  printf 'Machine: %s CPUs, %s GiB RAM, kernel %s. Date: %s.\n\n' "$(nproc)" \
    "$(awk '/MemTotal/ {printf "%d", $2/1048576}' /proc/meminfo)" "$(uname -r)" "$(date -u '+%Y-%m-%d %H:%M UTC')"
}

# go_section NAME TITLE NOTE -- go test args…: a Go benchmark's output as a section.
go_section() {
  local name=$1 title=$2 note=$3; shift 4
  echo "bench: $title"
  {
    printf '## %s\n\n' "$title"
    machine
    printf '%s\n\n```text\n' "$note"
    go test "$@" 2>&1 | grep -vE '^(goos|goarch|pkg|cpu):' || true
    printf '```\n'
  } >"$tmp/$name.md"
  scripts/bench-section.sh "$name" "$tmp/$name.md"
}

if want envd; then
  echo "bench: envd client round trips and transfers"
  {
    printf '## envd: command round trip and file transfer (envdclient)\n\n'
    machine
  } >"$tmp/envd.md"
  ENVDCLIENT_BENCH_REPORT="$tmp/envd-table.md" go test -count=1 -run TestLatencyReport ./sandbox/envdclient >/dev/null
  cat "$tmp/envd-table.md" >>"$tmp/envd.md"
  scripts/bench-section.sh envdbench "$tmp/envd.md"
fi
if want agent; then
  go_section agentbench "Agent loop: ten tool calls against a zero-latency model" \
    "p50/p99 per task through a real standalone envd, beside the loop with no sandbox (the baseline), same run." \
    -- -run '^$' -bench Loop -count=1 ./agent
fi
if want runner; then
  go_section runnerbench "Runner: orchestration overhead per task" \
    "Zero-latency scripted model, ten tool calls per task, real local sandboxes; everything but model time. Baseline: a bare sandbox create → command → destroy in the same run." \
    -- -run '^$' -bench Orchestration -benchtime 1x -count=1 -timeout 30m ./runner
fi
if want eval; then
  echo "bench: agent eval against the ideal"
  {
    # evalbench writes its own heading and machine line.
    go run ./internal/cmd/evalbench -agent bin/agent
  } >"$tmp/eval.md"
  scripts/bench-section.sh evalbench "$tmp/eval.md"
fi
if want sandbox; then scripts/bench-sandbox.sh; fi
if want network; then scripts/bench-network.sh; fi
if want serve; then scripts/bench-serve.sh >/dev/null; fi
if want snapshot && [ -x scripts/bench-snapshot.sh ]; then scripts/bench-snapshot.sh; fi
echo "bench: docs/BENCHMARKS.md updated"
