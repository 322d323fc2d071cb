#!/bin/bash
# Word-splits file names and takes the extension from the whole path.
set -euo pipefail
cat > loc.sh <<'SH'
#!/bin/bash
for f in $(find "$1" -type f -not -path '*/.*'); do
  echo "${f##*.} $(wc -l < "$f")"
done | awk '{ files[$1]++; lines[$1] += $2 } END { for (e in files) print e, files[e], lines[e] }' | sort
SH
chmod +x loc.sh
