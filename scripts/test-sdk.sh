#!/usr/bin/env bash
# Protocol suites with the official SDKs, unmodified: npm `e2b` and `novita-sandbox` (node:test), PyPI
# `e2b` and `novita-sandbox` (pytest), pinned by test/sdk/js/package-lock.json and
# test/sdk/python/requirements.lock.
#
# SDK_MODE=debug (default): starts a standalone `bin/agent envd` on 127.0.0.1:49983 over a temporary
#   world root (root + `user` uid 1000) and runs every suite in the SDKs' debug mode, which talks to
#   http://localhost:49983 with no control plane. Debug mode pins the port and all calls share one
#   sandbox, so suites run one after another and every test uses its own paths.
# SDK_MODE=serve: runs the same suites against a control plane that the caller started and named
#   with E2B_API_URL/E2B_SANDBOX_URL/E2B_API_KEY and NOVITA_API_URL/NOVITA_SANDBOX_URL/NOVITA_API_KEY
#   (`agent serve`); this script then starts no envd.
#
# Other knobs: SDK_SUITES (subset of "js-e2b js-novita py-e2b py-novita"), SDK_WIRE_LOG=FILE (debug
#   mode: put a logging proxy on :49983 in front of envd on :49984 and write the traffic to FILE),
#   SDK_KEEP_WORLD=1 (keep the world root and envd log for inspection).
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD
js_dir=$repo/test/sdk/js
py_dir=$repo/test/sdk/python
mode=${SDK_MODE:-debug}
suites=${SDK_SUITES:-js-e2b js-novita py-e2b py-novita}
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
case " $suites " in *" js-"*) install_js ;; esac
case " $suites " in *" py-"*) install_py ;; esac

# --------------------------------------------------------------------------- envd (debug mode)

tmp=$(mktemp -d)
envd_pid=""
proxy_pid=""
cleanup() {
  local rc=$?
  # Only the processes this script started, by their pids.
  for pid in $proxy_pid $envd_pid; do
    kill "$pid" 2>/dev/null || true
  done
  for pid in $proxy_pid $envd_pid; do
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

case "$mode" in
debug)
  start_envd
  # URL overrides would win over debug mode's localhost:49983.
  unset E2B_API_URL E2B_SANDBOX_URL E2B_DOMAIN E2B_ACCESS_TOKEN \
    NOVITA_API_URL NOVITA_SANDBOX_URL NOVITA_DOMAIN NOVITA_ACCESS_TOKEN
  export E2B_DEBUG=true NOVITA_DEBUG=true
  ;;
serve)
  for v in E2B_API_URL E2B_SANDBOX_URL E2B_API_KEY NOVITA_API_URL NOVITA_SANDBOX_URL NOVITA_API_KEY; do
    [ -n "${!v:-}" ] || die "SDK_MODE=serve needs $v (pointing at a running agent serve)"
  done
  unset E2B_DEBUG NOVITA_DEBUG
  ;;
*) die "unknown SDK_MODE=$mode (want debug or serve)" ;;
esac
export SDK_MODE=$mode

# --------------------------------------------------------------------------- suites

run_suite() {
  case "$1" in
  # --test-force-exit: novita-sandbox leaves a request timer alive after a failed connect, which
  # would hold the process for a minute after the tests are done.
  js-e2b) (cd "$js_dir" && node --test --test-force-exit --test-concurrency=1 --test-reporter=spec e2b.test.js) ;;
  js-novita) (cd "$js_dir" && node --test --test-force-exit --test-concurrency=1 --test-reporter=spec novita.test.js) ;;
  py-e2b) (cd "$py_dir" && .venv/bin/python -m pytest -v test_e2b.py) ;;
  py-novita) (cd "$py_dir" && .venv/bin/python -m pytest -v test_novita.py) ;;
  *) log "unknown suite $1"; return 2 ;;
  esac
}

passed=0
failed=0
failed_names=()
for s in $suites; do
  log "=== suite $s ($mode mode)"
  if run_suite "$s"; then
    passed=$((passed + 1))
  else
    failed=$((failed + 1))
    failed_names+=("$s")
  fi
  if [ -n "$envd_pid" ] && ! kill -0 "$envd_pid" 2>/dev/null; then
    log "envd died during suite $s"
    failed=$((failed + 1))
    failed_names+=("envd-alive")
    break
  fi
done

if [ "$failed" -gt 0 ] && [ -n "$envd_pid" ]; then
  log "failed: ${failed_names[*]}; last envd log lines:"
  tail -n 40 "$tmp/envd.log" >&2 || true
fi
echo "sdk-suites: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
