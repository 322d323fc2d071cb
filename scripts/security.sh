#!/usr/bin/env bash
# The security battery: every scenario in real sandboxes under each runtime installed (runc, runsc),
# as root of the sandbox, checked from inside and from the host. Writes the results table into
# docs/SECURITY.md between its markers (AGENT_SECURITY_DOC overrides the file; set it empty to skip).
set -euo pipefail
cd "$(dirname "$0")/.."
export AGENT_SECURITY_DOC="${AGENT_SECURITY_DOC-docs/SECURITY.md}"
go test -count=1 -timeout 20m -run '^TestBattery$' -v ./test/security/ 2>&1 | tee "${TMPDIR:-/tmp}/agent-security-battery.log" | grep -E '^(=== RUN|--- |\s+battery_test|ok|FAIL|PASS)' || true
exit "${PIPESTATUS[0]}"
