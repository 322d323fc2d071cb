#!/bin/bash
# A correct solution with git bisect run.
set -euo pipefail
git bisect start main "$(git rev-list --max-parents=0 main)"
git bisect run python3 check.py
git rev-parse refs/bisect/bad > FIRST_BAD
git bisect reset
cat FIRST_BAD
