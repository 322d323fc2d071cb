#!/bin/bash
# Splits lines on commas (breaks on quoted fields) and breaks ties by first appearance.
set -euo pipefail
cat > report.py <<'PY'
import json, sys
rows = skipped = 0
total = 0.0
regions, units = {}, {}
for line in open(sys.argv[1]).read().splitlines()[1:]:
    date, region, product, u, p = line.split(",")
    try:
        u, p = int(u), float(p)
    except ValueError:
        skipped += 1
        continue
    rows += 1
    total += u * p
    regions[region] = round(regions.get(region, 0) + u * p, 2)
    units[product] = units.get(product, 0) + u
json.dump({"rows": rows, "skipped": skipped, "total_revenue": round(total, 2),
           "revenue_by_region": regions, "top_product": max(units, key=units.get)}, open(sys.argv[2], "w"))
PY
python3 report.py sales.csv summary.json
