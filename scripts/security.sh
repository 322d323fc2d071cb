#!/usr/bin/env bash
# The security battery: every scenario in real sandboxes under each runtime installed (runc, runsc),
# as root of the sandbox, checked from inside and from the host. Writes the results table into
# docs/SECURITY.md between its markers (AGENT_SECURITY_DOC overrides the file; set it empty to skip).
set -uo pipefail
cd "$(dirname "$0")/.."
doc="${AGENT_SECURITY_DOC-docs/SECURITY.md}"
if [ -n "$doc" ] && [ "${doc:0:1}" != / ]; then doc="$PWD/$doc"; fi
export AGENT_SECURITY_DOC="$doc"
log="${TMPDIR:-/tmp}/agent-security-battery.log"
go test -count=1 -timeout 20m -run '^TestBattery$' -v ./test/security/ >"$log" 2>&1
rc=$?
grep -E '^(--- |\s+battery_test|ok|FAIL|PASS)' "$log" || true
exit "$rc"
