#!/usr/bin/env bash
# deps.sh: make sure everything `make test` and `make demo` need is installed.
#
# Checks each command or file below and installs the Debian packages that are
# missing, with one `apt-get update` first. Nothing is installed when all is
# present. Not root and something missing: prints the exact apt-get command
# and fails. Never skips: a missing tool is an error, not a silent pass.
set -euo pipefail

say() { printf '==> %s\n' "$*"; }
die() {
    printf 'deps: %s\n' "$*" >&2
    exit 1
}

# package   what proves it is installed (cmd:NAME, file:PATH, pc:MODULE or
# py:MODULE, a module python3 imports)
requirements=(
    "softhsm2          cmd:softhsm2-util"
    "softhsm2          file:/usr/lib/softhsm/libsofthsm2.so"
    "opensc            cmd:pkcs11-tool"
    "protobuf-compiler cmd:protoc"
    "pkg-config        cmd:pkg-config"
    "libpcsclite-dev   pc:libpcsclite"
    "openssl           cmd:openssl"
    "notary            cmd:notary"
    "notary            cmd:notary-server"
    "notary            cmd:notary-signer"
    "util-linux        cmd:setpriv"
    "passwd            cmd:useradd"
    "systemd           cmd:systemd-socket-activate"
    "util-linux        cmd:prlimit"
)

# Other gRPC clients on the socket (tests/tests/grpc_clients.rs): a venv into
# which the tests pip-install grpcio, grpcio-tools and grpcio-reflection.
requirements+=(
    "python3           cmd:python3"
    "python3-venv      py:ensurepip"
)

# The virtual YubiKey (vyubikey, tests/tests/yubikey/): pcscd with vpcd,
# libclang to build vyubikey, Yubico's tools to check it, nsenter/unshare.
requirements+=(
    "pcscd             cmd:pcscd"
    "vsmartcard-vpcd   file:/usr/lib/pcsc/drivers/serial/libifdvpcd.so"
    "libclang-dev      file:/usr/lib/llvm-14/lib/libclang.so"
    "ykcs11            file:/usr/lib/x86_64-linux-gnu/libykcs11.so"
    "yubico-piv-tool   cmd:yubico-piv-tool"
    "util-linux        cmd:nsenter"
    "util-linux        cmd:unshare"
    "iproute2          cmd:ip"
)

# The PKCS#11 module's interop tests (tests/tests/pkcs11_module.rs): OpenSSL's
# pkcs11 engine (bookworm has no pkcs11-provider) and venv for python-tuf.
requirements+=(
    "libengine-pkcs11-openssl file:/usr/lib/x86_64-linux-gnu/engines-3/pkcs11.so"
    "python3-venv      file:/usr/lib/python3.11/ensurepip/__init__.py"
)

# `sigil completions` loaded into each shell, and the man pages rendered
# (tests/tests/completions_man.rs); ssh-agent and ssh-keygen signing through
# the PKCS#11 module (tests/tests/pkcs11_module.rs).
requirements+=(
    "zsh               cmd:zsh"
    "fish              cmd:fish"
    "groff-base        cmd:groff"
    "man-db            cmd:man"
    "openssh-client    cmd:ssh-agent"
    "openssh-client    cmd:ssh-keygen"
)

present() {
    local what=$1
    case $what in
    cmd:*) command -v "${what#cmd:}" >/dev/null 2>&1 ;;
    file:*) [[ -e ${what#file:} ]] ;;
    pc:*) command -v pkg-config >/dev/null 2>&1 &&
        pkg-config --exists "${what#pc:}" ;;
    py:*) command -v python3 >/dev/null 2>&1 &&
        python3 -c "import ${what#py:}" >/dev/null 2>&1 ;;
    *) die "internal: unknown check '$what'" ;;
    esac
}

missing_checks() {
    local line pkg what
    for line in "${requirements[@]}"; do
        read -r pkg what <<<"$line"
        present "$what" || printf '%s %s\n' "$pkg" "$what"
    done
}

# The Rust toolchain is not an apt package here (rustup); say so plainly.
say "checking the Rust toolchain"
command -v cargo >/dev/null 2>&1 ||
    die "cargo not found: install a Rust toolchain (https://rustup.rs) and put ~/.cargo/bin on PATH"
cargo fmt --version >/dev/null 2>&1 ||
    die "rustfmt not found: rustup component add rustfmt"
cargo clippy --version >/dev/null 2>&1 ||
    die "clippy not found: rustup component add clippy"

say "checking system packages"
mapfile -t missing < <(missing_checks)
if ((${#missing[@]} == 0)); then
    say "all system dependencies present"
    exit 0
fi

packages=()
for line in "${missing[@]}"; do
    read -r pkg what <<<"$line"
    printf '    missing %-26s (package %s)\n' "${what#*:}" "$pkg"
    [[ " ${packages[*]} " == *" $pkg "* ]] || packages+=("$pkg")
done

install_cmd=(apt-get install -y --no-install-recommends "${packages[@]}")
if [[ $(id -u) -ne 0 ]]; then
    printf '\nNot root, so not installing. Run:\n    sudo apt-get update && sudo %s\n' \
        "${install_cmd[*]}" >&2
    exit 1
fi
command -v apt-get >/dev/null 2>&1 ||
    die "apt-get not found; install by hand: ${packages[*]}"

export DEBIAN_FRONTEND=noninteractive
say "apt-get update"
apt-get update -q
say "${install_cmd[*]}"
"${install_cmd[@]}"

# Check again: a package that installs but does not provide what we need
# (renamed binary, different path) must fail here, not later in a test.
mapfile -t still < <(missing_checks)
if ((${#still[@]} > 0)); then
    printf '    still missing after install: %s\n' "${still[@]}" >&2
    exit 1
fi
say "system dependencies installed"
