#!/bin/bash
# A correct solution.
set -euo pipefail
git switch -c feature/greeting main
printf 'Hello, world!\n' > hello.txt
git commit -am "Update greeting"
git switch main
git merge --no-ff --no-edit feature/greeting
git log --oneline --graph
