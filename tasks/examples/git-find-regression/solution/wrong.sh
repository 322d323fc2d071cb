#!/bin/bash
# Names HEAD instead of the first bad commit, and leaves the bisect running.
set -euo pipefail
git rev-parse HEAD > FIRST_BAD
git bisect start
