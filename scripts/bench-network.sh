#!/usr/bin/env bash
# Networked sandbox benchmarks (internal/cmd/sandboxbench -sections network): create→ready and kill
# per network mode (none, internet, allow-list), and TCP throughput from a sandbox to a host of the
# fake internet (internal/fakenet) through the veth and through the egress proxy, beside the host's
# own throughput to it. Replaces the netbench section of docs/BENCHMARKS.md. Needs root, nft, curl
# and bin/agent. Knobs: NET_BENCH_N (50 creates per mode), NET_BENCH_ARGS (extra flags, e.g.
# -net-mib 256 -net-reps 5).
set -euo pipefail
cd "$(dirname "$0")/.."
go build -o bin/sandboxbench ./internal/cmd/sandboxbench
out=$(mktemp)
trap 'rm -f "$out"' EXIT
bin/sandboxbench -binary bin/agent -sections network -n "${NET_BENCH_N:-50}" ${NET_BENCH_ARGS:-} >"$out"
scripts/bench-section.sh netbench "$out"
