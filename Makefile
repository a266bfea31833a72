# sigil: build, test and demo entry points. CI runs `make test` (.ci/run).
#
#   make demo          install what is missing, build, run the narrated demo
#   make test          install what is missing, fmt + clippy + the whole suite
#   make bench         sigild over the socket vs. in-process PKCS#11, the notary-signer
#                      endpoint vs. the real notary-signer, publishing 10,000 targets with
#                      sigil vs. the notary client, 10,000 targets into a TUF 1.0 repository
#                      with sigil tuf vs. python-tuf, and sigild on the virtual YubiKey vs.
#                      the yubikey crate in-process (release builds)
#   make man           man pages for sigil (section 1) and sigild (8) into target/man/
#   make test-vyubikey only the YubiKey suites on the virtual YubiKey (root)
#   make fuzz          coverage-guided fuzzing with AFL++ (cargo-afl, stable Rust), each
#                      target for FUZZ_SECONDS (default 60), see fuzz/run.sh
#   make test-yubikey  the yubikey backend suite on a PHYSICAL YubiKey:
#                      make test-yubikey YUBIKEY_SERIAL=12345678 [YUBIKEY_PIN=...]
#                      (explicit only, never part of `make test`)
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

.PHONY: help deps build demo test bench fuzz man test-vyubikey test-yubikey yubikey-serial fmt fmt-check clippy clean

help:
	@echo 'targets: demo test bench fuzz build man deps fmt clippy clean test-vyubikey test-yubikey'

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
# The YubiKey tests use the virtual card unless SIGIL_TEST_YUBIKEY_SERIAL names a
# physical one; `make test` never passes it on (only `make test-yubikey` sets it).
NO_PHYSICAL_YUBIKEY := env -u SIGIL_TEST_YUBIKEY_SERIAL -u SIGIL_TEST_YUBIKEY_PIN

test: deps fmt-check clippy build
	$(call banner,cargo test --workspace)
	$(NO_PHYSICAL_YUBIKEY) $(CARGO) test --workspace

bench: deps
	$(call banner,cargo build --release --workspace --bins)
	$(CARGO) build --release --workspace --bins
	$(call banner,cargo run --release -p sigil-e2e --bin sigil-bench)
	$(CARGO) run --release -p sigil-e2e --bin sigil-bench
	$(call banner,cargo run --release -p sigil-e2e --bin notary-signer-bench)
	$(CARGO) run --release -p sigil-e2e --bin notary-signer-bench
	$(call banner,cargo run --release -p sigil-e2e --bin publish-bench)
	$(CARGO) run --release -p sigil-e2e --bin publish-bench
	$(call banner,cargo run --release -p sigil-e2e --bin tuf-publish-bench)
	$(CARGO) run --release -p sigil-e2e --bin tuf-publish-bench
	$(call banner,cargo run --release -p sigil-e2e --bin yubikey-bench)
	$(CARGO) run --release -p sigil-e2e --bin yubikey-bench

# Each fuzz target under AFL++ for FUZZ_SECONDS (default 60) from the committed corpus
# (fuzz/corpus/, replayed by `make test`); FUZZ_TARGETS picks some. Installs cargo-afl.
fuzz: deps
	$(call banner,fuzz/run.sh)
	fuzz/run.sh

# Only the YubiKey suites on the virtual YubiKey (also part of `make test`; root):
# the backend suite, the Notary collection with its root on the card, the
# Yubico-tool checks of the virtual card, and the pkcs11 backend through ykcs11.
test-vyubikey: deps build
	$(call banner,cargo test -p sigil-e2e --test yubikey --test yubikey_notary --test vyubikey_tools --test ykcs11 --test yubikey_binding)
	$(NO_PHYSICAL_YUBIKEY) $(CARGO) test -p sigil-e2e --test yubikey --test yubikey_notary --test vyubikey_tools --test ykcs11 --test yubikey_binding

# The yubikey backend suite (and the Notary test) against the PHYSICAL YubiKey
# YUBIKEY_SERIAL, through the system pcscd, one test at a time, asking on the
# terminal for touches and for unplugging / plugging it in. It generates keys in
# slot 9c or the first free retired slot (82-95; PIV cannot delete them before
# firmware 5.7), spends PIN tries on purpose (restored with the right PIN) and
# needs the default management key. Use a YubiKey set aside for testing.
test-yubikey: yubikey-serial deps build
	$(call banner,cargo test -p sigil-e2e --test yubikey --test yubikey_notary (physical YubiKey))
	SIGIL_TEST_YUBIKEY_SERIAL="$${YUBIKEY_SERIAL}" SIGIL_TEST_YUBIKEY_PIN="$${YUBIKEY_PIN:-123456}" \
	    $(CARGO) test -p sigil-e2e --test yubikey --test yubikey_notary -- --test-threads=1 \
	        $(PHYSICAL_YUBIKEY_TESTS)

# The tests that are safe on a physical device: the others change its management key or
# need the virtual card's attestation CA and run on the virtual YubiKey only (make test).
PHYSICAL_YUBIKEY_TESTS := root_key_on_the_yubikey wrong_pin_fails removed_card touch_not_given \
    root_on_the_yubikey_targets_on_softhsm

# Refuses without a serial, and warns what test-yubikey does to the device.
yubikey-serial:
	@if [[ -z "$${YUBIKEY_SERIAL:-}" ]]; then \
	    echo 'test-yubikey: refusing to run without YUBIKEY_SERIAL: make test-yubikey YUBIKEY_SERIAL=<serial of a YubiKey set aside for testing> [YUBIKEY_PIN=<its PIN, default 123456>]' >&2; \
	    exit 2; \
	fi
	@if [[ ! "$${YUBIKEY_SERIAL}" =~ ^[0-9]+$$ ]]; then echo "test-yubikey: YUBIKEY_SERIAL=$${YUBIKEY_SERIAL} is not a serial number" >&2; exit 2; fi
	@printf '%s\n' \
	    "WARNING: these tests use the PHYSICAL YubiKey $${YUBIKEY_SERIAL}:" \
	    "  - they GENERATE P-256 keys on it, in slot 9c or the first free retired slot (82-95)," \
	    "    which PIV cannot delete (only overwrite) before firmware 5.7; ~6 slots per run;" \
	    "  - they spend PIN tries on purpose (down to 1) and restore the counter with the PIN;" \
	    "  - they need the default management key, and you at the keyboard: touch the key" \
	    "    when asked, do NOT touch it when asked not to, unplug and plug it back in." \
	    "Attach only this YubiKey. Ctrl-C now to stop; starting in 5 s." >&2
	@sleep 5

# Generated from the clap definitions the binaries parse with, so they never drift from them.
# Installed as the README's "Running sigild in production" shows (man1/, man8/).
MAN_DIR := target/man

man:
	$(call banner,cargo build -p sigil-cli -p sigil-daemon --bins)
	$(CARGO) build -p sigil-cli -p sigil-daemon --bins
	$(call banner,man pages into $(MAN_DIR)/man1 and $(MAN_DIR)/man8)
	rm -rf $(MAN_DIR)
	target/debug/sigil manpages $(MAN_DIR)/man1
	target/debug/sigild --generate-man $(MAN_DIR)/man8
	@ls $(MAN_DIR)/man1 $(MAN_DIR)/man8 | tr '\n' ' '; echo

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
