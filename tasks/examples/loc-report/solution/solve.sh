#!/bin/bash
# A correct solution: find -print0 with hidden names pruned, extensions from the base name only.
set -euo pipefail
cat > loc.sh <<'SH'
#!/bin/bash
# Usage: loc.sh DIR — files and lines per extension, hidden files and directories skipped.
set -euo pipefail
dir=${1:?usage: loc.sh DIR}
find "$dir" -mindepth 1 -name '.*' -prune -o -type f -print0 |
  while IFS= read -r -d '' f; do
    name=${f##*/}
    case $name in *.*) ;; *) continue ;; esac
    ext=${name##*.}
    [ -n "$ext" ] || continue
    printf '%s\t%s\n' "$ext" "$(wc -l < "$f")"
  done |
  awk -F'\t' '{ files[$1]++; lines[$1] += $2 } END { for (e in files) print e, files[e], lines[e] }' |
  LC_ALL=C sort
SH
chmod +x loc.sh
./loc.sh sample
