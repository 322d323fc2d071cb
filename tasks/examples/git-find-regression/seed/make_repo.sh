#!/bin/bash
# Builds the task's repository: 30 commits with fixed authors and dates (so the hashes are the same
# on every machine), one of which breaks `python3 check.py`. Run by the spec's setup, then deleted.
set -euo pipefail
export GIT_AUTHOR_NAME="Example Author" GIT_AUTHOR_EMAIL=author@example.invalid
export GIT_COMMITTER_NAME="Example Author" GIT_COMMITTER_EMAIL=author@example.invalid
git init -q -b main
echo make_repo.sh >> .git/info/exclude # this script is not part of the history
git config user.name "$GIT_AUTHOR_NAME"
git config user.email "$GIT_AUTHOR_EMAIL"
n=0
commit() {
  n=$((n + 1))
  export GIT_AUTHOR_DATE="@$((1704067200 + n * 3600)) +0000" GIT_COMMITTER_DATE="@$((1704067200 + n * 3600)) +0000"
  git add -A
  git commit -q -m "$1"
}
note() { printf -- '- %s\n' "$1" >> CHANGES.md; commit "$1"; }

cat > calc.py <<'PY'
"""Durations written like 1h30m or 45s."""
import re

UNITS = {"h": 3600, "m": 60, "s": 1}


def total_seconds(text):
    """Return the number of seconds in a duration such as "1h30m"."""
    parts = re.findall(r"(\d+)([hms])", text)
    if not parts or "".join(n + u for n, u in parts) != text:
        raise ValueError(f"invalid duration: {text!r}")
    return sum(int(n) * UNITS[u] for n, u in parts)
PY
cat > check.py <<'PY'
from calc import total_seconds

assert total_seconds("45s") == 45
assert total_seconds("1h30m") == 5400
assert total_seconds("12m") == 720
assert total_seconds("2h0m5s") == 7205
for bad in ("", "1x", "h1", "1h 2m"):
    try:
        total_seconds(bad)
    except ValueError:
        pass
    else:
        raise AssertionError(f"accepted {bad!r}")
print("ok")
PY
printf '# durations\n\nParses durations like 1h30m.\n' > README.md
printf '# Changes\n\n' > CHANGES.md
commit "Initial commit"
note "Add a change log"
printf '\nRun `python3 check.py` to test.\n' >> README.md
commit "Explain how to test"
cat >> calc.py <<'PY'


def format_seconds(seconds):
    """Format seconds as the shortest duration string, e.g. 5400 -> "1h30m"."""
    out = []
    for unit, size in UNITS.items():
        count, seconds = divmod(seconds, size)
        if count:
            out.append(f"{count}{unit}")
    return "".join(out) or "0s"
PY
commit "Add format_seconds"
note "Document format_seconds in the change log"
printf 'assert __import__("calc").format_seconds(5400) == "1h30m"\n' > check_format.py
commit "Test format_seconds"
for msg in "Mention Python 3.8 support" "Note the accepted units" "Clarify that units must be in order" \
  "Record the 0.2 release" "Thank contributors" "Start the 0.3 cycle" "Describe error messages" \
  "Note that spaces are refused" "Link the issue tracker" "Mention the licence"; do
  note "$msg"
done
sed -i 's|re.findall(r"(\\d+)(\[hms\])", text)|re.findall(r"(\\d)([hms])", text)|' calc.py
grep -q '(\\d)(\[hms\])' calc.py
commit "Simplify the duration pattern"
for msg in "Record the 0.3 release" "Start the 0.4 cycle" "Describe format_seconds output" \
  "Note rounding behaviour" "Update the contributors" "Mention the test scripts" "Record the 0.4 release" \
  "Start the 0.5 cycle" "Mention type hints plan" "Note the minimum git version" "Fix a typo in the change log" \
  "Clarify the error for empty input" "Record the 0.5 release"; do
  note "$msg"
done
test "$(git rev-list --count HEAD)" = 30
