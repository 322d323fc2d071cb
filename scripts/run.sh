#!/usr/bin/env bash
# `make run`: demonstrates what works so far.
set -euo pipefail
cd "$(dirname "$0")/.."
bin/agent version
