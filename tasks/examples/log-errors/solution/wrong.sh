#!/bin/bash
# Keeps query strings and counts the malformed "-" request.
set -euo pipefail
awk '$9 ~ /^5/ { n[$7]++ } END { for (p in n) print n[p], p }' access.log | sort -k1,1nr -k2,2 > errors.txt
