# sigil: build, test and demo entry points. CI runs `make test` (.ci/run).
#
#   make demo          install what is missing, build, run the narrated demo
#   make test          install what is missing, fmt + clippy + the whole suite
#   make bench         sigild over the socket vs. in-process PKCS#11 (release)
#   make test-yubikey  tests against a real YubiKey (not yet available)
#
# `deps` installs missing Debian packages through apt (root) or prints the
# exact command to run (not root), see scripts/deps.sh.

SHELL := bash
.SHELLFLAGS := -euo pipefail -c
.DEFAULT_GOAL := help

CARGO ?= cargo

# banner TEXT: one visible line per stage, so logs show where a failure is.
banner = @printf '\n==> %s\n' '$(1)'

# Stages must run in order (deps before anything that compiles); cargo is
# parallel on its own.
.NOTPARALLEL:

.PHONY: help deps build demo test bench test-yubikey fmt fmt-check clippy clean

help:
	@echo 'targets: demo test bench build deps fmt clippy clean test-yubikey'

deps:
	$(call banner,checking dependencies (scripts/deps.sh))
	scripts/deps.sh

build:
	$(call banner,cargo build --workspace --bins)
	$(CARGO) build --workspace --bins

demo: deps build
	$(call banner,scripts/demo.sh)
	scripts/demo.sh

# The end-to-end tests spawn target/debug/sigild and target/debug/sigil, which
# `cargo test` does not build for another crate's tests: build the bins first.
test: deps fmt-check clippy build
	$(call banner,cargo test --workspace)
	$(CARGO) test --workspace

bench: deps
	$(call banner,cargo run --release -p sigil-e2e --bin sigil-bench)
	$(CARGO) run --release -p sigil-e2e --bin sigil-bench

test-yubikey:
	@echo 'test-yubikey: needs YUBIKEY_SERIAL and the YubiKey backend (not yet implemented)' >&2
	@exit 1

fmt:
	$(call banner,cargo fmt --all)
	$(CARGO) fmt --all

fmt-check:
	$(call banner,cargo fmt --all -- --check)
	$(CARGO) fmt --all -- --check

clippy:
	$(call banner,cargo clippy --workspace --all-targets -- -D warnings)
	$(CARGO) clippy --workspace --all-targets -- -D warnings

clean:
	$(call banner,cargo clean)
	$(CARGO) clean
