# sigil: build, test and demo entry points. CI runs `make test` (.ci/run).
#
#   make demo          install what is missing, build, run the narrated demo
#   make test          install what is missing, fmt + clippy + the whole suite
#   make bench         sigild over the socket vs. in-process PKCS#11, and publishing
#                      10,000 targets with sigil vs. the notary client (release)
#   make test-vyubikey only the yubikey backend suite on the virtual YubiKey (root)
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

.PHONY: help deps build demo test bench test-vyubikey test-yubikey fmt fmt-check clippy clean

help:
	@echo 'targets: demo test bench build deps fmt clippy clean test-vyubikey test-yubikey'

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
	$(call banner,cargo build --release --workspace --bins)
	$(CARGO) build --release --workspace --bins
	$(call banner,cargo run --release -p sigil-e2e --bin sigil-bench)
	$(CARGO) run --release -p sigil-e2e --bin sigil-bench
	$(call banner,cargo run --release -p sigil-e2e --bin notary-signer-bench)
	$(CARGO) run --release -p sigil-e2e --bin notary-signer-bench
	$(call banner,cargo run --release -p sigil-e2e --bin publish-bench)
	$(CARGO) run --release -p sigil-e2e --bin publish-bench

# Only the yubikey backend suite on the virtual YubiKey (also part of `make test`; root).
test-vyubikey: deps build
	$(call banner,cargo test -p sigil-e2e --test yubikey)
	$(CARGO) test -p sigil-e2e --test yubikey

test-yubikey:
	@echo 'test-yubikey: needs YUBIKEY_SERIAL and a physical-YubiKey suite (not yet implemented); make test-vyubikey runs the backend suite on a virtual YubiKey' >&2
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
