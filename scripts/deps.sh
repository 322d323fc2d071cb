#!/usr/bin/env bash
# Installs what the build and the tests need, only what is missing. `deps.sh go` does only Go modules.
set -euo pipefail
cd "$(dirname "$0")/.."

go_deps() {
  go mod download
}

# gVisor's runsc, built from its Go module: Debian's package is too old for networking on this
# kernel (its network stack fails in network namespaces of Linux >= 6.11, gVisor issue 10704), so
# the backend prefers this build (sandbox/local/ociruntime.RunscDir) and keeps Debian's as the
# fallback for network none. Static (runsc re-executes itself inside an empty chroot), and stamped
# with its module version, whose date the backend checks before it offers networking.
GVISOR_VERSION=v0.0.0-20260905035102-160fafc42237
RUNSC_DIR=/usr/local/lib/agent/runsc
runsc_build() {
  local want="${GVISOR_VERSION#v}"
  if "$RUNSC_DIR/runsc" --version 2>/dev/null | grep -qF "$want"; then return 0; fi
  echo "deps: building runsc $want (gVisor, about 2 minutes)"
  local tmp
  tmp="$(mktemp -d)"
  (cd "$tmp" && CGO_ENABLED=0 GOBIN="$tmp/bin" go install \
    -ldflags "-X gvisor.dev/gvisor/runsc/version.version=$want" \
    "gvisor.dev/gvisor/runsc@$GVISOR_VERSION")
  install -D -m 0755 "$tmp/bin/runsc" "$RUNSC_DIR/runsc"
  rm -rf "$tmp"
}

if [ "${1:-}" = go ]; then go_deps; exit 0; fi
if [ "${1:-}" = runsc ]; then runsc_build; exit 0; fi

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
runsc_build
