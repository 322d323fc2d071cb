#!/usr/bin/env bash
# `make run`: runs the example suite (tasks/examples) end to end in local sandboxes and prints
# where the results and the report are.
#
#   With NOVITA_API_KEY set: the real model, novita's default (qwen/qwen3-coder-30b-a3b-instruct).
#   With OPENAI_API_KEY set (and no Novita key): openai:gpt-4o-mini.
#   Without a key: the example transcripts in testdata/transcripts are replayed — the recorded
#   model turns are played back and their tool calls really run in fresh sandboxes. Those
#   transcripts were written by hand, not by a model (see README, "Example transcripts").
#
# Knobs (environment): MODEL (a model id, e.g. novita:deepseek/deepseek-v3.2-exp), REPLAY=1 (replay
# even when a key is set), CONCURRENCY (tasks at once; default: the number of CPUs), OUT (results
# directory; default runs/<UTC time>-<id>), AGENT_DATA_DIR (sandbox state; default /var/lib/agent).
set -euo pipefail
cd "$(dirname "$0")/.."

log() { printf '\n== %s\n' "$*"; }

log "dependencies"
scripts/deps.sh
log "build"
make --no-print-directory build >/dev/null
bin/agent version

log "sandbox: host template and doctor"
bin/agent template build host >/dev/null
doctor=$(mktemp)
trap 'rm -f "$doctor"' EXIT
if ! bin/agent doctor --no-smoke >"$doctor" 2>&1; then
  cat "$doctor"
  echo "run: agent doctor found a problem local sandboxes cannot work with (see above)" >&2
  exit 1
fi
ok=$(grep -c '^ok ' "$doctor" || true)
warn=$(grep -c '^warn ' "$doctor" || true)
echo "doctor: $ok checks ok, $warn warnings"
# Warnings (an optional runtime, the debian template not built) do not stop the example suite.
grep -A1 '^warn ' "$doctor" | grep -v '^--$' || true

args=(run tasks/examples/)
if [ -n "${CONCURRENCY:-}" ]; then args+=(--concurrency "$CONCURRENCY"); fi
if [ "${REPLAY:-}" != 1 ] && [ -n "${NOVITA_API_KEY:-}" ]; then
  model=${MODEL:-novita:}
  mode="the real model ${model} (NOVITA_API_KEY is set)"
  args+=(--model "$model")
elif [ "${REPLAY:-}" != 1 ] && [ -n "${OPENAI_API_KEY:-}" ]; then
  model=${MODEL:-openai:gpt-4o-mini}
  mode="the real model ${model} (OPENAI_API_KEY is set)"
  args+=(--model "$model")
else
  mode="a replay of testdata/transcripts (no NOVITA_API_KEY or OPENAI_API_KEY: hand-written transcripts, tools really run)"
  args+=(--replay testdata/transcripts)
fi
out=${OUT:-runs/$(date -u +%Y%m%dT%H%M%SZ)-$(od -An -N3 -tx1 /dev/urandom | tr -d ' \n')}
args+=(--out "$out")

log "example suite with $mode"
rc=0
bin/agent "${args[@]}" || rc=$?

if [ -d "$out" ]; then
  bin/agent report "$out" >/dev/null || log "agent report failed"
fi

log "results"
echo "results directory: $out"
echo "report:            $out/report.md"
[ -f "$out/report.html" ] && echo "                   $out/report.html (open in a browser; or: bin/agent report --serve $out)"
[ -f "$out/report.xml" ] && echo "                   $out/report.xml (JUnit)"
echo "summary:           $out/summary.json"
if [ -f "$out/report.md" ]; then
  echo
  cat "$out/report.md"
  if [ -n "${GITHUB_STEP_SUMMARY:-}" ]; then cat "$out/report.md" >>"$GITHUB_STEP_SUMMARY"; fi
fi
echo
scripts/serve-demo.sh || log "the agent serve demo failed"
exit "$rc"
