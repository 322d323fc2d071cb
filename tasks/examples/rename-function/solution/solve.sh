#!/bin/bash
# A correct solution: rename with sed, then add the deprecated alias.
set -euo pipefail
grep -rlw calc_total --include='*.py' --include='*.md' . | xargs sed -i 's/\bcalc_total\b/compute_total/g'
cat >> shop/pricing.py <<'PY'


def calc_total(prices, tax_rate=0.0):
    """Deprecated: use compute_total."""
    import warnings

    warnings.warn("calc_total is deprecated; use compute_total", DeprecationWarning, stacklevel=2)
    return compute_total(prices, tax_rate)
PY
python3 -m unittest discover -s tests -t .
