#!/bin/bash
# A correct fix: sort a copy, average the two middle values, refuse empty input.
set -euo pipefail
python3 - <<'PY'
import re
src = open("stats.py").read()
old = src[src.index("    n = len(values)\n    middle"):src.index("def mode")]
new = '''    if not values:
        raise ValueError("median of an empty sequence")
    ordered = sorted(values)
    n = len(ordered)
    middle = n // 2
    if n % 2 == 1:
        return ordered[middle]
    return (ordered[middle - 1] + ordered[middle]) / 2


'''
open("stats.py", "w").write(src.replace(old, new))
PY
python3 -m unittest -v test_stats
