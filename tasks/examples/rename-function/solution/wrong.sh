#!/bin/bash
# Renames the definition only and aliases the old name without a warning.
set -euo pipefail
sed -i 's/^def calc_total/def compute_total/' shop/pricing.py
printf '\ncalc_total = compute_total\n' >> shop/pricing.py
