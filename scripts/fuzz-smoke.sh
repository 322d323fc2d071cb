#!/usr/bin/env bash
# Runs every fuzz target for a short time ($1, default 5s). A crash fails the run.
set -euo pipefail
cd "$(dirname "$0")/.."
t="${1:-5s}"
found=0
while read -r pkg; do
  for f in $(go test -list '^Fuzz' "$pkg" 2>/dev/null | grep '^Fuzz' || true); do
    found=1
    echo "fuzz $pkg $f ($t)"
    go test -run='^$' -fuzz="^${f}\$" -fuzztime="$t" "$pkg"
  done
done < <(go list ./...)
[ "$found" = 1 ] || echo "no fuzz targets"
