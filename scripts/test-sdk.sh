#!/usr/bin/env bash
# Protocol suites with the official SDKs (npm e2b and novita-sandbox; PyPI e2b and novita-sandbox).
set -euo pipefail
cd "$(dirname "$0")/.."
echo "sdk suites: none yet"
