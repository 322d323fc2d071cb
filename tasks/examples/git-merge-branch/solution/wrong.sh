#!/bin/bash
# Fast-forwards instead of creating a merge commit.
set -euo pipefail
git switch -c feature/greeting main
printf 'Hello, world!\n' > hello.txt
git commit -qam "Update greeting"
git switch -q main
git merge -q --ff-only feature/greeting
