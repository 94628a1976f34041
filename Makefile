# pyexec: the two commands of the README are `make run` and `make test`.
# Both set up a fresh Debian machine (as root): the Docker engine (installed
# and started when absent), the base image (made with debootstrap when it
# cannot be pulled), the analytics image, and the binaries.

SHELL := /bin/bash
.SHELLFLAGS := -euo pipefail -c
export PATH := $(PATH):/usr/local/go/bin
export GOFLAGS ?= -mod=mod

BIN := bin
PORT ?= 8000

.PHONY: all setup engine base image service-image compose-tool build run test testdeps test-short fuzz bench soak compose-smoke docs-screenshot web screenshots vet fmt clean

all: build

engine:
	bash images/engine.sh

base: engine
	bash images/base.sh

build:
	go build -o $(BIN)/pyexec ./cmd/pyexec

image: base build
	$(BIN)/pyexec -build-image

# The service's own image, pyexec:latest, built from source by the top-level
# Dockerfile with the host's extra CAs and GOPROXY (images/service-image.sh).
service-image: base
	bash images/service-image.sh

setup: image

run: setup
	PORT=$(PORT) $(BIN)/pyexec

# The supervisor's sanitizer tests (runner/supervisor_test.go) build it with
# gcc and run a stand-in child with Debian's python3; the playground's
# browser test (web/playground_test.go) drives Debian's chromium; the TLS
# engine test (internal/dockertest/secondengine.go) makes a bridge with ip.
testdeps:
	command -v gcc >/dev/null && test -x /usr/bin/python3 || { \
		apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq gcc libc6-dev python3 >/dev/null; }
	command -v ip >/dev/null || { \
		apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq iproute2 >/dev/null; }
	test -x /usr/bin/chromium || { \
		apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; }

# Three steps: the suite (packages in parallel; fault tests skip), then the
# fault tests one package at a time (they stop the engine and remove images,
# under an exclusive lock), then a 5-minute soak with two engine restarts
# and a SIGKILL of the service.
test: setup testdeps service-image compose-tool
	go vet ./...
	PYEXEC_REQUIRE_DOCKER=1 go test -race -count=1 -timeout 40m ./...
	PYEXEC_REQUIRE_DOCKER=1 PYEXEC_FAULT_TESTS=1 go test -race -count=1 -p 1 -timeout 30m -run 'Fault' ./...
	$(MAKE) soak SOAK_DURATION=5m

test-short:
	go test -race -short ./...

# Fuzz the request decoder/validator and the harness frame reader.
fuzz:
	go test -run XXX -fuzz FuzzExecuteRequest -fuzztime 60s ./handlers/
	go test -run XXX -fuzz FuzzFrameReader -fuzztime 60s ./runner/

# Side-by-side benchmark: the service (warm pool) against a naive container
# per execution, on this engine; prints p50/p95/p99, throughput and ratios.
bench: setup
	bash cmd/pyexec-bench/bench.sh $(BENCH_FLAGS)

# Soak: the real binary under mixed load at saturation for SOAK_DURATION
# (default 30m; at least 2m), restarting the engine twice and SIGKILLing
# the service once; prints requests, answers by class, recovery times, RSS,
# goroutines and containers left, and fails on any 500, hung request or
# leftover. It stops the engine: it takes /tmp/pyexec-engine.lock
# exclusively itself (waiting for engine tests); do not wrap it in flock.
SOAK_DURATION ?= 30m
soak: setup
	go run ./cmd/pyexec-soak -bin $(BIN)/pyexec -duration $(SOAK_DURATION) $(SOAK_FLAGS)

# Screenshots of /docs and /redoc in headless Chromium, from a service
# started here on a free port (the pages use only embedded assets).
docs-screenshot: build
	bash handlers/docs/screenshot-service.sh out/docs

# The playground's bundle (web/dist, committed and embedded) rebuilt from
# web/src and the npm packages pinned by web/package-lock.json; needs
# Node.js and npm, which nothing else does.
web:
	cd web && npm ci --ignore-scripts --no-audit --no-fund && node build.mjs

# Screenshots of the playground (web/screenshots/*.png), taken by its browser
# test in headless Chromium from the real page of a service on the real engine.
screenshots: setup testdeps
	PYEXEC_REQUIRE_DOCKER=1 PYEXEC_SCREENSHOTS=$(CURDIR)/web/screenshots \
		go test -count=1 -timeout 20m -run '^TestPlayground$$/^(session|screenshots)$$' ./web/

# The Compose plugin (`docker compose`), built with Go from the module proxy
# at the version compose/tool/go.mod pins (Debian ships only Compose v1);
# skipped when that version is installed.
COMPOSE_VERSION := $(shell awk '$$1=="github.com/docker/compose/v5" {print $$2}' compose/tool/go.mod)
COMPOSE_PLUGIN := /usr/local/lib/docker/cli-plugins/docker-compose
compose-tool:
	@if [ "$$($(COMPOSE_PLUGIN) version --short 2>/dev/null)" = "$(COMPOSE_VERSION:v%=%)" ]; then \
		echo "compose-tool: docker compose $(COMPOSE_VERSION) already installed"; \
	else \
		echo "compose-tool: building docker compose $(COMPOSE_VERSION) (a few minutes)"; \
		mkdir -p $(dir $(COMPOSE_PLUGIN)); \
		cd compose/tool && CGO_ENABLED=0 go build -trimpath \
			-ldflags '-s -w -X github.com/docker/compose/v5/internal.Version=$(COMPOSE_VERSION)' \
			-o $(COMPOSE_PLUGIN).tmp github.com/docker/compose/v5/cmd; \
		mv $(COMPOSE_PLUGIN).tmp $(COMPOSE_PLUGIN); \
	fi

# The three-replica deployment behind nginx with the current Compose, and
# the Swarm stack, brought up, checked, torn down (compose/compose_test.go,
# also part of `make test`).
compose-smoke: setup service-image compose-tool
	PYEXEC_REQUIRE_DOCKER=1 go test -count=1 -v -timeout 40m ./compose/

vet:
	go vet ./...
	test -z "$$(gofmt -l $$(git ls-files '*.go'))"

fmt:
	gofmt -w $$(git ls-files '*.go')

clean:
	rm -rf $(BIN)
