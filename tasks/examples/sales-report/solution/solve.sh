#!/bin/bash
# A correct solution with the csv module.
set -euo pipefail
cat > report.py <<'PY'
"""Summarise a sales CSV: python3 report.py INPUT.csv OUTPUT.json"""
import csv
import json
import sys


def summarise(path):
    rows = skipped = 0
    total = 0.0
    by_region = {}
    units = {}
    with open(path, newline="") as f:
        for row in csv.DictReader(f):
            try:
                count = int(row["units"])
                price = float(row["unit_price"])
            except (TypeError, ValueError):
                skipped += 1
                continue
            rows += 1
            revenue = count * price
            total += revenue
            by_region[row["region"]] = by_region.get(row["region"], 0.0) + revenue
            units[row["product"]] = units.get(row["product"], 0) + count
    top = min(units.items(), key=lambda kv: (-kv[1], kv[0]))[0] if units else None
    return {
        "rows": rows,
        "skipped": skipped,
        "total_revenue": round(total, 2),
        "revenue_by_region": {k: round(v, 2) for k, v in sorted(by_region.items())},
        "top_product": top,
    }


def main(argv):
    if len(argv) != 3:
        sys.exit("usage: python3 report.py INPUT.csv OUTPUT.json")
    with open(argv[2], "w") as f:
        json.dump(summarise(argv[1]), f, indent=2)
        f.write("\n")


if __name__ == "__main__":
    main(sys.argv)
PY
python3 report.py sales.csv summary.json
cat summary.json
