#!/usr/bin/env bash
# Installs what the build and the tests need, only what is missing. `deps.sh go` does only Go modules.
set -euo pipefail
cd "$(dirname "$0")/.."

go_deps() {
  go mod download
}

if [ "${1:-}" = go ]; then go_deps; exit 0; fi

# Debian packages: OCI runtimes, template builder, network tools, filesystem tools, headless browser
# (chromium: the report tests render report.html in it), sudo (the action script is tested as a
# non-root user that gets root through sudo, as on GitHub's runners).
pkgs=(runc crun runsc debootstrap debian-archive-keyring nftables iproute2 uidmap e2fsprogs util-linux procps psmisc git curl ca-certificates chromium sudo)
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ]; then
  echo "deps: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q >/dev/null
  apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null
fi
go_deps
