#!/usr/bin/env bash
# `make soak`: `agent run` in rounds with concurrency 16 for SOAK_DURATION (default 30m), a scripted
# model mixing the example tasks with attacks and floods, leak and accounting checks after every
# round; writes docs/SOAK.md. Needs root, runc, nft and curl. Not part of `make test`.
# Knobs: SOAK_DURATION (30m), SOAK_CONCURRENCY (16), SOAK_DATA_DIR (/var/lib/agent-soak),
# SOAK_REPORT (docs/SOAK.md), SOAK_ARGS (more flags for internal/cmd/soak).
set -euo pipefail
cd "$(dirname "$0")/.."
go build -o bin/soak ./internal/cmd/soak
exec bin/soak -binary bin/agent -duration "${SOAK_DURATION:-30m}" -concurrency "${SOAK_CONCURRENCY:-16}" \
  -data-dir "${SOAK_DATA_DIR:-/var/lib/agent-soak}" -report "${SOAK_REPORT:-docs/SOAK.md}" ${SOAK_ARGS:-}
