#!/usr/bin/env bash
# Part of `make run`: shows how to point the official E2B and Novita SDKs at `agent serve`, then (when
# this host can run sandboxes and the SDK suites' dependencies are installed) does it: starts
# bin/agent serve on a free port, creates a sandbox with the npm and the PyPI SDK, runs a command in
# it, and stops the server. `scripts/serve-demo.sh --print-only` only prints the instructions.
set -euo pipefail
cd "$(dirname "$0")/.."

cat <<'TEXT'
== agent serve: local sandboxes behind the E2B API (control plane + envd on one port) ==
Start it (root; prints a generated API key, or pass --api-key):
    bin/agent serve --listen 127.0.0.1:3000
Point the SDKs at it, unmodified:
  E2B   (npm e2b >= 2.7, PyPI e2b >= 2.7):
    export E2B_API_URL=http://127.0.0.1:3000 E2B_SANDBOX_URL=http://127.0.0.1:3000 E2B_API_KEY=<key>
  Novita (npm / PyPI novita-sandbox >= 2.0.7; leave NOVITA_DOMAIN unset):
    export NOVITA_API_URL=http://127.0.0.1:3000 NOVITA_SANDBOX_URL=http://127.0.0.1:3000 NOVITA_API_KEY=<key>
  This project's runner elsewhere: agent run --sandbox e2b (or novita) with the same variables.
Then, for example:
    python3 -c 'from e2b import Sandbox; s = Sandbox.create(); print(s.commands.run("uname -sr").stdout); s.kill()'
    node --input-type=module -e 'import {Sandbox} from "e2b"; const s = await Sandbox.create(); console.log((await s.commands.run("uname -sr")).stdout); await s.kill()'
Templates "base" and "code-interpreter-v1" run on the local host template (no Jupyter); pause and
resume work; sandboxes end at their timeout, when killed, or when serve stops.
TEXT

[ "${1:-}" = --print-only ] && exit 0
js=test/sdk/js
py=test/sdk/python/.venv/bin/python
if [ "$(id -u)" != 0 ] || ! command -v runc >/dev/null || [ ! -d "$js/node_modules/e2b" ] || [ ! -x "$py" ]; then
  echo "(live demo skipped: it needs root, runc and the SDK suites' dependencies — make test-sdk installs them)"
  exit 0
fi
[ -x bin/agent ] || go build -o bin/agent ./cmd/agent

tmp=$(mktemp -d)
chmod 0711 "$tmp"
serve_pid=""
cleanup() {
  if [ -n "$serve_pid" ]; then
    kill -TERM "$serve_pid" 2>/dev/null || true
    wait "$serve_pid" 2>/dev/null || true
  fi
  rm -rf "$tmp"
}
trap cleanup EXIT

bin/agent serve --listen 127.0.0.1:0 --data-dir "$tmp/data" >"$tmp/out" 2>"$tmp/log" &
serve_pid=$!
for _ in $(seq 300); do
  grep -q '^NOVITA_API_KEY=' "$tmp/out" 2>/dev/null && break
  kill -0 "$serve_pid" 2>/dev/null || break
  sleep 0.1
done
if ! grep -q '^NOVITA_API_KEY=' "$tmp/out"; then
  cat "$tmp/log" >&2
  echo "agent serve did not start" >&2
  exit 1
fi
while IFS= read -r line; do
  case "$line" in E2B_*=* | NOVITA_*=*) export "${line?}" ;; esac
done <"$tmp/out"
echo
echo "-- live: agent serve on $E2B_API_URL"
(cd "$js" && node --input-type=module -e '
import { Sandbox } from "e2b"
const t0 = performance.now()
const s = await Sandbox.create({ metadata: { demo: "make run" } })
const r = await s.commands.run("echo hello from $(hostname) as $(id -un)")
console.log(`npm e2b:  sandbox ${s.sandboxId}: ${r.stdout.trim()} (create + command ${Math.round(performance.now() - t0)} ms)`)
await s.kill()')
"$py" -c '
import time
from novita_sandbox.core import Sandbox
t0 = time.monotonic()
s = Sandbox.create()
r = s.commands.run("python3 -c \"import platform; print(platform.python_version())\"")
print(f"PyPI novita-sandbox: sandbox {s.sandbox_id}: python {r.stdout.strip()} inside (create + command {round((time.monotonic() - t0) * 1000)} ms)")
s.kill()'
