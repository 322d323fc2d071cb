#!/usr/bin/env bash
# Runs every fuzz target for a short time ($1, default 10s). A crash fails the run.
#
# The Go fuzzer can end a run with a bare "context deadline exceeded" when -fuzztime elapses
# while a worker is still busy (a loaded machine, a slow baseline): no input failed, and no
# failing input is written. Such a run is tried again, up to three tries in all; a real failure
# always writes its input under testdata/fuzz and fails at once.
set -euo pipefail
cd "$(dirname "$0")/.."
t="${1:-10s}"
found=0
log=$(mktemp)
trap 'rm -f "$log"' EXIT
while read -r pkg; do
  for f in $(go test -list '^Fuzz' "$pkg" 2>/dev/null | grep '^Fuzz' || true); do
    found=1
    for try in 1 2 3; do
      echo "fuzz $pkg $f ($t)"
      if go test -run='^$' -fuzz="^${f}\$" -fuzztime="$t" "$pkg" 2>&1 | tee "$log"; then
        break
      fi
      if [ "$try" != 3 ] && grep -q 'context deadline exceeded' "$log" && ! grep -q 'Failing input written' "$log"; then
        echo "fuzz $pkg $f: the fuzzer timed out without a failing input; again"
        continue
      fi
      exit 1
    done
  done
done < <(go list ./...)
[ "$found" = 1 ] || echo "no fuzz targets"
