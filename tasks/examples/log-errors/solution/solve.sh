#!/bin/bash
# A correct solution with awk: well-formed request lines only, query strings stripped.
set -euo pipefail
awk '$9 ~ /^5[0-9][0-9]$/ && $6 ~ /^"[A-Z]+$/ { p = $7; sub(/\?.*/, "", p); n[p]++ }
     END { for (p in n) print n[p], p }' access.log | LC_ALL=C sort -k1,1nr -k2,2 > errors.txt
cat errors.txt
