#!/usr/bin/env bash
# Protocol suites with the official SDKs, unmodified: npm `e2b` and `novita-sandbox` (node:test), PyPI
# `e2b` and `novita-sandbox` (pytest), pinned by test/sdk/js/package-lock.json and
# test/sdk/python/requirements.lock.
#
# SDK_MODE unset (make test-sdk): the debug phase, then the serve phase.
# SDK_MODE=debug: starts a standalone `bin/agent envd` on 127.0.0.1:49983 over a temporary
#   world root (root + `user` uid 1000) and runs every suite in the SDKs' debug mode, which talks to
#   http://localhost:49983 with no control plane. Debug mode pins the port and all calls share one
#   sandbox, so suites run one after another and every test uses its own paths.
# SDK_MODE=serve: runs the same suites, plus the control-plane suites (create options, list,
#   connect, set_timeout, kill, get_info, expiry, wrong key), against `agent serve`. When
#   E2B_API_URL/E2B_SANDBOX_URL/E2B_API_KEY and NOVITA_API_URL/NOVITA_SANDBOX_URL/NOVITA_API_KEY name
#   a running server, it is used; otherwise this script starts `bin/agent serve` on a free port with a
#   generated key over a fresh data directory (real local sandboxes: needs root and runc), stops it
#   afterwards and checks that no sandbox, mount or process of it is left.
#
# Other knobs: SDK_SUITES (subset of "js-e2b js-novita py-e2b py-novita"), SDK_WIRE_LOG=FILE (debug
#   mode: put a logging proxy on :49983 in front of envd on :49984 and write the traffic to FILE),
#   SDK_KEEP_WORLD=1 (keep the world root and envd log for inspection).
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD
js_dir=$repo/test/sdk/js
py_dir=$repo/test/sdk/python
mode=${SDK_MODE:-all}
debug_suites="js-e2b js-e2b-2.45 js-novita py-e2b py-novita"
serve_suites="$debug_suites js-control py-control"
port=49983

log() { echo "test-sdk: $*" >&2; }
die() { log "$*"; exit 1; }

# --------------------------------------------------------------------------- install what is missing

install_apt() {
  log "installing $*"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q >/dev/null
  apt-get install -y -q --no-install-recommends "$@" >/dev/null
}

need_tools() {
  local missing=()
  command -v curl >/dev/null || missing+=(curl)
  command -v python3 >/dev/null || missing+=(python3)
  python3 -c 'import ensurepip, venv' 2>/dev/null || missing+=(python3-venv)
  if [ "${#missing[@]}" -gt 0 ]; then install_apt "${missing[@]}"; fi
  command -v node >/dev/null && command -v npm >/dev/null ||
    die "node and npm are required (the npm e2b SDK needs node >= 20.18.1)"
  node -e 'const [a,b]=process.versions.node.split(".").map(Number); process.exit(a>20||(a===20&&b>=18)?0:1)' ||
    die "node $(node --version) is too old: the npm e2b SDK needs >= 20.18.1"
}

# Reinstalls only when the lock file changed since the last install (a stamp holds its hash).
install_js() {
  local want have
  want=$(sha256sum "$js_dir/package-lock.json" | cut -d' ' -f1)
  have=$(cat "$js_dir/node_modules/.lock-sha256" 2>/dev/null || true)
  if [ "$want" != "$have" ]; then
    log "npm ci in test/sdk/js"
    (cd "$js_dir" && npm ci --no-audit --no-fund --loglevel=error >&2)
    echo "$want" >"$js_dir/node_modules/.lock-sha256"
  fi
}

install_py() {
  local venv=$py_dir/.venv want have
  want=$(sha256sum "$py_dir/requirements.lock" | cut -d' ' -f1)
  have=$(cat "$venv/.lock-sha256" 2>/dev/null || true)
  if [ "$want" != "$have" ]; then
    log "creating the Python venv in test/sdk/python/.venv"
    rm -rf "$venv"
    python3 -m venv "$venv"
    "$venv/bin/python" -m pip install -q --disable-pip-version-check -r "$py_dir/requirements.lock" >&2
    echo "$want" >"$venv/.lock-sha256"
  fi
}

need_tools
all_suites=${SDK_SUITES:-$serve_suites}
case " $all_suites " in *" js-"*) install_js ;; esac
case " $all_suites " in *" py-"*) install_py ;; esac

# --------------------------------------------------------------------------- envd (debug mode)

tmp=$(mktemp -d)
envd_pid=""
proxy_pid=""
serve_pid=""
cleanup() {
  local rc=$?
  # Only the processes this script started, by their pids.
  for pid in $proxy_pid $envd_pid $serve_pid; do
    kill "$pid" 2>/dev/null || true
  done
  for pid in $proxy_pid $envd_pid $serve_pid; do
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$pid" 2>/dev/null || true
  done
  if [ "${SDK_KEEP_WORLD:-}" = 1 ]; then
    log "kept $tmp"
  else
    rm -rf "$tmp"
  fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# A world root as a sandbox image would have it: root and `user` (uid 1000, home /home/user).
make_world() {
  local w=$1
  mkdir -p "$w/etc" "$w/home/user" "$w/root" "$w/tmp"
  printf '%s\n' 'root:x:0:0:root:/root:/bin/bash' 'user:x:1000:1000::/home/user:/bin/bash' >"$w/etc/passwd"
  printf '%s\n' 'root:x:0:' 'user:x:1000:' >"$w/etc/group"
  chmod 0755 "$w" "$w/etc" "$w/home" # commands run as uid 1000 on the host must reach their home
  chmod 0700 "$w/root"
  chmod 1777 "$w/tmp"
  chown 1000:1000 "$w/home/user"
  chmod 0750 "$w/home/user"
}

health_ok() { curl -fsS -o /dev/null --max-time 2 "http://127.0.0.1:$port/health"; }

start_envd() {
  [ -x bin/agent ] || { log "building bin/agent"; go build -o bin/agent ./cmd/agent; }
  if health_ok 2>/dev/null; then
    die "something already serves 127.0.0.1:$port; stop it first (debug mode needs that port)"
  fi
  local world=$tmp/world envd_port=$port
  chmod 0755 "$tmp" # mktemp makes it 0700; commands run as uid 1000 on the host traverse it
  make_world "$world"
  if [ -n "${SDK_WIRE_LOG:-}" ]; then
    envd_port=$((port + 1))
    python3 "$repo/test/sdk/tools/tcplog.py" --listen "127.0.0.1:$port" --target "127.0.0.1:$envd_port" \
      --log "$SDK_WIRE_LOG" &
    proxy_pid=$!
    log "wire log: $SDK_WIRE_LOG"
  fi
  bin/agent envd --listen "127.0.0.1:$envd_port" --root "$world" >"$tmp/envd.log" 2>&1 &
  envd_pid=$!
  local i
  for i in $(seq 150); do
    health_ok 2>/dev/null && { log "envd up (pid $envd_pid, root $world)"; return 0; }
    kill -0 "$envd_pid" 2>/dev/null || break
    sleep 0.2
  done
  cat "$tmp/envd.log" >&2
  die "envd did not become healthy on 127.0.0.1:$port"
}

# --------------------------------------------------------------------------- agent serve (serve mode)

serve_data=""
serve_log=""

# Starts bin/agent serve on a free port with a generated key over a fresh data dir and exports the
# SDKs' variables from what it prints.
start_serve() {
  [ -x bin/agent ] || { log "building bin/agent"; go build -o bin/agent ./cmd/agent; }
  chmod 0711 "$tmp" # sandboxes' roots (unprivileged host uids) traverse to their data dir
  serve_data=$tmp/serve-data
  serve_log=$tmp/serve.log
  local out=$tmp/serve.out
  bin/agent serve --listen 127.0.0.1:0 --data-dir "$serve_data" --log-level info \
    --max-sandboxes 32 >"$out" 2>"$serve_log" &
  serve_pid=$!
  local i
  for i in $(seq 300); do
    grep -q '^NOVITA_API_KEY=' "$out" 2>/dev/null && break
    kill -0 "$serve_pid" 2>/dev/null || break
    sleep 0.1
  done
  if ! grep -q '^NOVITA_API_KEY=' "$out"; then
    cat "$out" "$serve_log" >&2
    die "agent serve did not start"
  fi
  local line
  while IFS= read -r line; do
    case "$line" in
    E2B_*=* | NOVITA_*=*) export "${line?}" ;;
    esac
  done <"$out"
  curl -fsS -o /dev/null --max-time 5 "$E2B_API_URL/health" || die "agent serve does not answer $E2B_API_URL/health"
  log "agent serve up (pid $serve_pid) on $E2B_API_URL"
}

# Stops agent serve (SIGTERM: it kills its sandboxes) and checks that nothing of it is left.
stop_serve() {
  [ -n "$serve_pid" ] || return 0
  kill -TERM "$serve_pid" 2>/dev/null || true
  local i
  for i in $(seq 600); do kill -0 "$serve_pid" 2>/dev/null || break; sleep 0.1; done
  if kill -0 "$serve_pid" 2>/dev/null; then
    log "agent serve did not stop within 60 s"
    kill -9 "$serve_pid" 2>/dev/null || true
    serve_pid=""
    return 1
  fi
  serve_pid=""
  local leaks=0 left
  left=$(bin/agent sandbox ls --json --data-dir "$serve_data" 2>&1 | tr -d '[:space:]')
  if [ "$left" != "[]" ]; then
    log "LEAK: sandboxes left by agent serve: $left"
    leaks=1
  fi
  if grep -qF " $serve_data/" /proc/self/mountinfo; then
    log "LEAK: mounts left under $serve_data:"
    grep -F " $serve_data/" /proc/self/mountinfo >&2
    leaks=1
  fi
  local pid
  for pid in $(ls /proc | grep -E '^[0-9]+$'); do
    if tr '\0' ' ' 2>/dev/null <"/proc/$pid/cmdline" | grep -qF "$serve_data"; then
      log "LEAK: process $pid still runs: $(tr '\0' ' ' <"/proc/$pid/cmdline")"
      leaks=1
    fi
  done
  [ "$leaks" = 0 ] && log "agent serve stopped; no sandbox, mount or process left"
  # Template trees and the emptied data dir go with the temporary directory.
  bin/agent sandbox gc --data-dir "$serve_data" >/dev/null 2>&1 || true
  return "$leaks"
}

# --------------------------------------------------------------------------- suites

run_suite() {
  case "$1" in
  # --test-force-exit: novita-sandbox leaves a request timer alive after a failed connect, which
  # would hold the process for a minute after the tests are done.
  js-e2b) (cd "$js_dir" && node --test --test-force-exit --test-concurrency=1 --test-reporter=spec e2b.test.js) ;;
  js-e2b-2.45) (cd "$js_dir" && node --test --test-force-exit --test-concurrency=1 --test-reporter=spec e2b-2.45.test.js) ;;
  js-novita) (cd "$js_dir" && node --test --test-force-exit --test-concurrency=1 --test-reporter=spec novita.test.js) ;;
  js-control) (cd "$js_dir" && node --test --test-force-exit --test-concurrency=1 --test-reporter=spec control.test.js) ;;
  py-e2b) (cd "$py_dir" && .venv/bin/python -m pytest -v test_e2b.py) ;;
  py-novita) (cd "$py_dir" && .venv/bin/python -m pytest -v test_novita.py) ;;
  py-control) (cd "$py_dir" && .venv/bin/python -m pytest -v test_control.py) ;;
  *) log "unknown suite $1"; return 2 ;;
  esac
}

passed=0
failed=0
failed_names=()

# run_phase MODE SUITES...: runs the suites in one mode.
run_phase() {
  local phase=$1 s
  shift
  export SDK_MODE=$phase
  for s in "$@"; do
    log "=== suite $s ($phase mode)"
    if run_suite "$s"; then
      passed=$((passed + 1))
    else
      failed=$((failed + 1))
      failed_names+=("$phase/$s")
    fi
    if [ -n "$envd_pid" ] && ! kill -0 "$envd_pid" 2>/dev/null; then
      log "envd died during suite $s"
      failed=$((failed + 1))
      failed_names+=("envd-alive")
      break
    fi
    if [ -n "$serve_pid" ] && ! kill -0 "$serve_pid" 2>/dev/null; then
      log "agent serve died during suite $s"
      failed=$((failed + 1))
      failed_names+=("serve-alive")
      break
    fi
  done
}

# in_selection SUITES...: those of SDK_SUITES (all when unset).
in_selection() {
  local s
  for s in "$@"; do
    case " ${SDK_SUITES:-$s} " in *" $s "*) echo "$s" ;; esac
  done
}

phase_debug() {
  local sel v kv saved=()
  sel=$(in_selection $debug_suites)
  [ -n "$sel" ] || return 0
  start_envd
  # URL overrides would win over debug mode's localhost:49983: set them aside for this phase.
  for v in E2B_API_URL E2B_SANDBOX_URL E2B_DOMAIN E2B_ACCESS_TOKEN NOVITA_API_URL NOVITA_SANDBOX_URL \
    NOVITA_DOMAIN NOVITA_ACCESS_TOKEN; do
    if [ -n "${!v+x}" ]; then saved+=("$v=${!v}"); fi
    unset "$v"
  done
  export E2B_DEBUG=true NOVITA_DEBUG=true
  local before=$failed
  run_phase debug $sel
  unset E2B_DEBUG NOVITA_DEBUG
  for kv in "${saved[@]}"; do export "${kv?}"; done
  if [ "$failed" -gt "$before" ]; then
    log "debug phase failures; last envd log lines:"
    tail -n 40 "$tmp/envd.log" >&2 || true
  fi
  kill "$envd_pid" 2>/dev/null || true
  wait "$envd_pid" 2>/dev/null || true
  envd_pid=""
}

phase_serve() {
  local sel external=1 v
  sel=$(in_selection $serve_suites)
  [ -n "$sel" ] || return 0
  for v in E2B_API_URL E2B_SANDBOX_URL E2B_API_KEY NOVITA_API_URL NOVITA_SANDBOX_URL NOVITA_API_KEY; do
    [ -n "${!v:-}" ] || external=0
  done
  unset E2B_DEBUG NOVITA_DEBUG E2B_DOMAIN NOVITA_DOMAIN
  if [ "$external" = 0 ]; then
    start_serve
  else
    log "using the control plane at $E2B_API_URL"
  fi
  local before=$failed
  run_phase serve $sel
  if [ "$external" = 0 ]; then
    # Both create endpoints were exercised: e2b 2.45 and novita-sandbox create with POST /sandboxes,
    # the newest e2b SDKs with POST /v2/sandboxes.
    local p
    for p in "path=/sandboxes " "path=/v2/sandboxes "; do
      if ! grep -q "msg=\"sandbox created\".*$p" "$serve_log"; then
        log "no sandbox was created through ${p#path=}"
        failed=$((failed + 1))
        failed_names+=("serve-create-paths")
      fi
    done
    if ! stop_serve; then
      failed=$((failed + 1))
      failed_names+=("serve-leaks")
    fi
    if [ "$failed" -gt "$before" ]; then
      log "serve phase failures; last agent serve log lines:"
      tail -n 40 "$serve_log" >&2 || true
    fi
  fi
}

case "$mode" in
all)
  phase_debug
  phase_serve
  ;;
debug) phase_debug ;;
serve) phase_serve ;;
*) die "unknown SDK_MODE=$mode (want debug or serve, or unset for both)" ;;
esac

echo "sdk-suites: $passed passed, $failed failed${failed_names:+ (${failed_names[*]})}"
[ "$failed" -eq 0 ]
