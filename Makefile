# Rheo — build, test, run, bench. Every target installs what it needs itself.
# Part-specific targets live in mk/*.mk, one file per part of the house.

SHELL := /bin/bash
export CARGO_TARGET_DIR ?= $(HOME)/.cache/rheo-target
export RHEO_CACHE ?= $(HOME)/.cache/rheo
CARGO ?= cargo
RHEO := $(CARGO_TARGET_DIR)/release/rheo

.PHONY: build run test lint bench fmt build-deps
## make build-deps: the Debian packages the build needs (libssl-dev, pkg-config; scripts/build-deps.sh)
build-deps:
	scripts/build-deps.sh

build: build-deps
	$(CARGO) build --release --workspace

## make run: the first run: a word count on the embedded mini-cluster
run: build-deps
	$(CARGO) build --release -p rheo-cli --bin rheo
	$(RHEO) run word-count --input README.md

## make test: everything CI checks (e2e: a real single-node Kubernetes, built once into ~/.cache)
test: lint test-engine test-operator test-chart e2e test-dashboard

# Then the job crate alone: rheo-cli without its default features (no kafka, no s3), which the
# workspace build never compiles, and no librdkafka in its tree.
lint: build-deps
	$(CARGO) fmt --all --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings
	$(CARGO) clippy -p my-job --all-targets -- -D warnings
	@tree="$$($(CARGO) tree -e normal -p my-job --prefix none)" || exit 1; \
	if grep -q '^rdkafka' <<<"$$tree"; then echo "examples/my-job depends on librdkafka (rdkafka)" >&2; exit 1; fi

fmt:
	$(CARGO) fmt --all

include mk/*.mk
