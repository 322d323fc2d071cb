#!/usr/bin/env bash
# The GitHub Action's step (action.yml): runs `agent run` (or `agent eval` with models or a
# baseline) on the task specs, appends report.md to the job summary and writes the step outputs.
#
# Inputs come as INPUT_* variables (composite actions pass them explicitly; see action.yml), plus
# what a runner provides: GITHUB_STEP_SUMMARY, GITHUB_OUTPUT, GITHUB_WORKSPACE, RUNNER_TEMP.
# AGENT_BIN is the agent binary (built by the previous step). The API key is masked and handed to
# agent through one environment variable that agent reads itself; sandboxes never see it.
# Runs agent as root (sudo when the runner's user is not root): sandboxes need it.
set -euo pipefail

log() { echo "agent-action: $*" >&2; }
die() { echo "::error title=agent::$*"; exit 2; }

agent=${AGENT_BIN:-}
[ -n "$agent" ] && [ -x "$agent" ] || die "AGENT_BIN does not name the agent binary"
: "${GITHUB_OUTPUT:?GITHUB_OUTPUT is not set}"
: "${GITHUB_STEP_SUMMARY:?GITHUB_STEP_SUMMARY is not set}"
workspace=${GITHUB_WORKSPACE:-$PWD}

tasks=${INPUT_TASKS:-}
model=${INPUT_MODEL:-}
models=${INPUT_MODELS:-}
base_url=${INPUT_BASE_URL:-}
concurrency=${INPUT_CONCURRENCY:-}
template=${INPUT_TEMPLATE:-host}
repeat=${INPUT_REPEAT:-}
baseline=${INPUT_BASELINE:-}
max_regression=${INPUT_MAX_REGRESSION:-0.05}
out=${INPUT_OUT:-}
fail_on=${INPUT_FAIL_ON:-failed}

# The key: masked before anything can print it, moved to the one variable agent reads, and
# removed from the environment of everything else this script starts.
key=${INPUT_API_KEY:-}
unset INPUT_API_KEY
if [ -n "$key" ]; then
  echo "::add-mask::$key"
fi

[ -n "${tasks//[[:space:]]/}" ] || die "the tasks input is empty: give task spec files, directories or globs"
case "$fail_on" in failed | never) ;; *) die "fail-on must be failed or never, got '$fail_on'" ;; esac
[ -z "$repeat" ] || [[ "$repeat" =~ ^[1-9][0-9]{0,3}$ ]] || die "repeat must be a whole number from 1, got '$repeat'"
[ -z "$concurrency" ] || [[ "$concurrency" =~ ^[1-9][0-9]{0,3}$ ]] || die "concurrency must be a whole number from 1, got '$concurrency'"
[[ "$max_regression" =~ ^(0(\.[0-9]+)?|1(\.0+)?)$ ]] || die "max-regression must be a number between 0 and 1, got '$max_regression'"
[ -z "$model" ] || [ -z "$models" ] || die "give model or models, not both"
[ -n "$out" ] || out="$workspace/agent-results"
case "$out" in /*) ;; *) out="$workspace/$out" ;; esac
if [ -e "$out" ] && [ -n "$(ls -A "$out" 2>/dev/null)" ]; then
  die "the results directory $out exists and is not empty; choose another out"
fi

# Task arguments: words of the input, globs left to agent (it expands them itself).
read -r -a task_args <<<"$(printf '%s' "$tasks" | tr '\n' ' ')"

mode=run
args=()
if [ -n "$models" ] || [ -n "$baseline" ]; then
  mode=eval
  [ -n "$models" ] || models=$model
  [ -n "$models" ] || die "an eval (baseline given) needs model or models"
  args+=(--models "$models" --max-regression "$max_regression" --seeds-root "$workspace")
  [ -z "$baseline" ] || args+=(--baseline "$baseline")
elif [ -n "$model" ]; then
  args+=(--model "$model")
fi
args+=(--out "$out" --template "$template")
[ -z "$repeat" ] || args+=(--repeat "$repeat")
[ -z "$concurrency" ] || args+=(--concurrency "$concurrency")
[ -z "$base_url" ] || args+=(--base-url "$base_url")
env_keep=()
if [ -n "$key" ]; then
  export AGENT_ACTION_API_KEY="$key"
  args+=(--api-key-env AGENT_ACTION_API_KEY)
  env_keep+=(AGENT_ACTION_API_KEY)
fi
unset key

# Root: sandboxes need user namespaces, mounts and cgroups. Through sudo, agent keeps PATH, the key's
# variable and agent's own settings (data dir, template dir, runtime, DNS) when they are set, as it
# would running as root directly.
as_root=() # runs agent as root
sudo_=()   # runs a system command (apt-get, chown) as root
if [ "$(id -u)" != 0 ]; then
  command -v sudo >/dev/null || die "agent needs root and sudo is not available"
  for v in AGENT_DATA_DIR AGENT_TEMPLATE_DIR AGENT_RUNTIME AGENT_DNS; do
    [ -z "${!v:-}" ] || env_keep+=("$v")
  done
  keep=PATH
  [ "${#env_keep[@]}" -eq 0 ] || keep="$keep,$(IFS=,; echo "${env_keep[*]}")"
  as_root=(sudo "--preserve-env=$keep")
  sudo_=(sudo)
fi

# The OCI runtime: installed when missing, whoever runs this (sbin directories are searched too:
# a non-root PATH often lacks them).
runtime=${AGENT_RUNTIME:-runc}
case "$runtime" in runc | crun | runsc) ;; *) die "AGENT_RUNTIME must be runc, crun or runsc, got '$runtime'" ;; esac
if ! PATH="$PATH:/usr/local/sbin:/usr/sbin:/sbin" command -v "$runtime" >/dev/null; then
  command -v apt-get >/dev/null || die "$runtime is not installed and there is no apt-get to install it"
  log "installing $runtime"
  { "${sudo_[@]}" apt-get update -q >/dev/null && "${sudo_[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "$runtime" >/dev/null; } ||
    die "installing $runtime failed"
fi

log "agent $mode ${args[*]} ${task_args[*]}"
rc=0
(cd "$workspace" && "${as_root[@]}" "$agent" "$mode" "${args[@]}" "${task_args[@]}") || rc=$?
unset AGENT_ACTION_API_KEY

if [ "${#sudo_[@]}" -gt 0 ] && [ -d "$out" ]; then
  "${sudo_[@]}" chown -R "$(id -u):$(id -g)" "$out"
fi

summary_max=$((1000 * 1024)) # GitHub takes at most 1 MiB of summary per step
if [ -d "$out" ] && { [ -f "$out/run.json" ] || [ -f "$out/eval.json" ]; }; then
  "$agent" report --seeds-root "$workspace" "$out" >/dev/null || log "writing the reports failed"
  totals=$("$agent" report --totals "$out") || totals=""
  if [ -f "$out/report.md" ]; then
    head -c "$summary_max" "$out/report.md" >>"$GITHUB_STEP_SUMMARY"
    echo >>"$GITHUB_STEP_SUMMARY"
  fi
  {
    printf '%s\n' "$totals" | grep -E '^(passed|failed|errored|pass-rate)=' || true
    echo "results-dir=$out"
    echo "report=$out/report.html"
  } >>"$GITHUB_OUTPUT"
else
  echo "results-dir=$out" >>"$GITHUB_OUTPUT"
fi

case "$rc" in
  0) exit 0 ;;
  1)
    if [ "$fail_on" = never ]; then
      log "tasks did not all pass (fail-on: never)"
      exit 0
    fi
    echo "::error title=agent::tasks did not all pass (or a model regressed); see the job summary"
    exit 1
    ;;
  *) exit "$rc" ;;
esac
