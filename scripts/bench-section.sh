#!/usr/bin/env bash
# bench-section.sh NAME FILE: replaces the section between the NAME markers of docs/BENCHMARKS.md
# with FILE's content (appending the section when it is new), so each benchmark owns one section
# and reruns of one leave the others alone.
set -euo pipefail
cd "$(dirname "$0")/.."
name=$1 file=$2
doc=docs/BENCHMARKS.md
[ -f "$doc" ] || printf '# Benchmarks\n\nWritten by `make bench`.\n' >"$doc"
begin="<!-- $name:begin -->"
end="<!-- $name:end -->"
if grep -qF "$begin" "$doc"; then
  awk -v b="$begin" -v e="$end" -v f="$file" '
    $0 == b { print; while ((getline l < f) > 0) print l; skip = 1; next }
    $0 == e { skip = 0 }
    !skip { print }' "$doc" >"$doc.tmp"
  mv "$doc.tmp" "$doc"
else
  { printf '\n%s\n' "$begin"; cat "$file"; printf '%s\n' "$end"; } >>"$doc"
fi
echo "bench: wrote the $name section of $doc"
