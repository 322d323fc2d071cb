#!/usr/bin/env bash
# Regenerates the Go code of the envd protocol. Plugin versions are pinned to go.mod's.
set -euo pipefail
cd "$(dirname "$0")/.."
command -v protoc >/dev/null || { apt-get install -y -q protobuf-compiler libprotobuf-dev >/dev/null; }
bin="$PWD/bin/protoc-plugins"; mkdir -p "$bin"
GOBIN="$bin" go install google.golang.org/protobuf/cmd/protoc-gen-go
GOBIN="$bin" go install connectrpc.com/connect/cmd/protoc-gen-connect-go
PATH="$bin:$PATH" protoc -I sandbox/envd/spec -I /usr/include \
  --go_out=. --go_opt=module=github.com/agentrun/agent \
  --connect-go_out=. --connect-go_opt=module=github.com/agentrun/agent \
  sandbox/envd/spec/filesystem/filesystem.proto sandbox/envd/spec/process/process.proto
echo "regenerated sandbox/envd/spec"
