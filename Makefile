# agent — build, test, run and benchmark. Every target installs what it needs (as root on Debian).
SHELL := /bin/bash
GO ?= go
BIN := bin/agent
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS := -X main.version=$(VERSION)
GOTEST_FLAGS ?= -count=1
FUZZTIME ?= 10s

.PHONY: all build deps test test-go test-sdk test-fuzz security soak run bench proto clean

all: build

deps:
	@scripts/deps.sh

build: deps-go
	$(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN) ./cmd/agent

.PHONY: deps-go
deps-go:
	@scripts/deps.sh go

# Every test: unit, integration with real sandboxes, official-SDK protocol suites, fuzz smoke runs.
test: deps build
	$(MAKE) test-go test-sdk test-fuzz

test-go:
	$(GO) vet ./...
	$(GO) test $(GOTEST_FLAGS) -timeout 30m ./...

test-sdk: build
	@scripts/test-sdk.sh

# The security battery (also part of test-go: ./test/security runs it; this target also rewrites
# the results table in docs/SECURITY.md).
security: deps build
	@scripts/security.sh

# Soak (not part of test): agent run in rounds for SOAK_DURATION (default 30m), attacks and floods
# mixed with normal work; no crash, no leak, every task accounted for. Writes docs/SOAK.md.
soak: deps build
	@scripts/soak.sh

# Each fuzz target runs briefly; the corpora under testdata/fuzz are replayed by test-go too.
test-fuzz:
	@scripts/fuzz-smoke.sh $(FUZZTIME)

run: deps build
	@scripts/run.sh

bench: deps build
	@scripts/bench.sh

# Regenerate the envd protocol code from its .proto files (needs protoc; installs the Go plugins).
proto:
	@scripts/proto.sh

clean:
	rm -rf bin
