#!/usr/bin/env bash
# demo.sh: a narrated end-to-end run of sigil on a throwaway SoftHSM2 token.
#
# Run through `make demo`, which installs what is missing and builds
# target/debug/sigild and target/debug/sigil first. Every step prints what it
# is about to show, the exact command, and its output. Nothing outside a
# fresh temporary directory is touched, and the daemon started here is
# stopped by its pid on any exit.
#
# Messages print a literal "$DIR" for the scratch directory on purpose:
# shellcheck disable=SC2016
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT_DIR=$PWD
SIGILD=$ROOT_DIR/target/debug/sigild
SIGIL=$ROOT_DIR/target/debug/sigil
SOFTHSM_MODULE=${SOFTHSM_MODULE:-/usr/lib/softhsm/libsofthsm2.so}
NOBODY=65534
STEPS=9

die() {
    printf '\ndemo: FAILED: %s\n' "$*" >&2
    exit 1
}

step() {
    printf '\n==> [%s/%s] %s\n' "$1" "$STEPS" "$2"
}

# show CMD...: print a command the way a user would type it.
show() {
    local out=() word
    for word in "$@"; do
        if [[ $word =~ ^[A-Za-z0-9_./:=@%+,-]+$ || $word == '>' || $word == '|' ]]; then
            out+=("$word")
        else
            out+=("$(printf '%q' "$word")")
        fi
    done
    printf '$ %s\n' "${out[*]//$DIR/\$DIR}"
}

# run CMD...: show the command, run it, let its output through.
run() {
    show "$@"
    "$@" || die "the command above failed (exit code $?)"
}

# capture VAR CMD...: show and run the command, print its stdout and keep it
# (without the trailing newline) in VAR.
capture() {
    local var=$1 value
    shift
    show "$@"
    value=$("$@") || die "the command above failed (exit code $?)"
    [[ -z $value ]] || printf '%s\n' "$value"
    printf -v "$var" '%s' "$value"
}

# refused EXPECTED_RC CMD...: show and run a command that must fail with
# exit code EXPECTED_RC (see README: 1 bad signature, 3 not found, ...).
refused() {
    local expected=$1 rc=0
    shift
    show "$@"
    "$@" || rc=$?
    if ((rc == 0)); then
        die "the command above succeeded, but it must be refused"
    fi
    if ((rc != expected)); then
        die "the command above exited with $rc, expected $expected"
    fi
    printf '(exit code %s) refused, as it should be\n' "$rc"
}

[[ -x $SIGILD && -x $SIGIL ]] ||
    die "target/debug/sigild and target/debug/sigil are missing: run 'make demo' (or 'make build')"
for tool in openssl pkcs11-tool setpriv base64; do
    command -v "$tool" >/dev/null 2>&1 || die "$tool not found: run 'make deps'"
done
[[ -e $SOFTHSM_MODULE ]] || die "$SOFTHSM_MODULE not found: run 'make deps'"

# ---------------------------------------------------------------------------
step 1 "Making a private scratch directory for the token, socket and audit log"
DIR=$(mktemp -d /tmp/sigil-demo.XXXXXX)
DAEMON_PID=
cleanup() {
    local rc=$?
    if [[ -n $DAEMON_PID ]] && kill -0 "$DAEMON_PID" 2>/dev/null; then
        kill -TERM "$DAEMON_PID" 2>/dev/null || true
        wait "$DAEMON_PID" 2>/dev/null || true
    fi
    rm -rf "$DIR"
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
# 0711: other users may reach files in it by name (the socket, for step 7)
# but cannot list it.
chmod 711 "$DIR"
printf 'DIR=%s\n' "$DIR"

# ---------------------------------------------------------------------------
step 2 "Starting sigild in dev mode: a fresh SoftHSM token, policy: only $(id -un) (uid $(id -u))"
show "$SIGILD" --dev "$DIR"
"$SIGILD" --dev "$DIR" >"$DIR/sigild.log" 2>&1 &
DAEMON_PID=$!
printf 'sigild pid %s, log in $DIR/sigild.log\n' "$DAEMON_PID"
export SIGIL_SOCKET=$DIR/sigild.sock
ready=
for _ in $(seq 100); do
    if ! kill -0 "$DAEMON_PID" 2>/dev/null; then
        break
    fi
    if [[ -S $SIGIL_SOCKET ]] && "$SIGIL" --socket "$SIGIL_SOCKET" key list >/dev/null 2>&1; then
        ready=yes
        break
    fi
    sleep 0.2
done
if [[ -z $ready ]]; then
    printf -- '--- sigild.log ---\n' >&2
    cat "$DIR/sigild.log" >&2 || true
    die "sigild did not come up on $SIGIL_SOCKET within 20 s"
fi
printf 'sigild is serving on $DIR/sigild.sock:\n'
# shellcheck disable=SC2012 # listing for the reader, not parsed
ls -l "$DIR" | sed "s|$DIR|\$DIR|g"

# ---------------------------------------------------------------------------
step 3 "Generating a root key and a targets key on the SoftHSM token"
printf 'export SIGIL_SOCKET=$DIR/sigild.sock\n'
capture ROOT_KEY "$SIGIL" key generate --role root --gun example.com/demo
capture TARGETS_KEY "$SIGIL" key generate --role targets --gun example.com/demo
[[ $ROOT_KEY =~ ^[0-9a-f]{64}$ && $TARGETS_KEY =~ ^[0-9a-f]{64}$ ]] ||
    die "key generate should print a 64-hex-digit key id"
run "$SIGIL" key list

# ---------------------------------------------------------------------------
step 4 "Signing a file with the targets key, and verifying the signature"
FILE=$DIR/release-notes.txt
printf 'sigil demo release 1.0\nbuilt %s\n' "$(date -u +%Y-%m-%dT%H:%M:%SZ)" >"$FILE"
chmod 644 "$FILE"
run "$SIGIL" sign --key "$TARGETS_KEY" "$FILE" --out "$FILE.sig"
printf 'signature (base64, raw r||s): %s\n' "$(cat "$FILE.sig")"
run "$SIGIL" verify --key "$TARGETS_KEY" "$FILE" "$FILE.sig"

# ---------------------------------------------------------------------------
step 5 "Checking the signature independently with OpenSSL"
show "$SIGIL" key public "$TARGETS_KEY" --pem '>' "$DIR/pub.pem"
"$SIGIL" key public "$TARGETS_KEY" --pem >"$DIR/pub.pem"
cat "$DIR/pub.pem"
show "$SIGIL" sign --key "$TARGETS_KEY" --encoding der "$FILE" '|' base64 -d '>' "$FILE.der.sig"
"$SIGIL" sign --key "$TARGETS_KEY" --encoding der "$FILE" | base64 -d >"$FILE.der.sig"
run openssl dgst -sha256 -verify "$DIR/pub.pem" -signature "$FILE.der.sig" "$FILE"

# ---------------------------------------------------------------------------
step 6 "Tampering with the file: one extra byte, and the signature no longer verifies"
cp "$FILE" "$FILE.tampered"
printf 'x' >>"$FILE.tampered"
refused 1 "$SIGIL" verify --key "$TARGETS_KEY" "$FILE.tampered" "$FILE.sig"

# ---------------------------------------------------------------------------
step 7 "Another Unix user (uid $NOBODY) sees no keys and cannot sign"
if [[ $(id -u) -ne 0 ]]; then
    # setpriv can only switch to another user as root. Say so plainly.
    printf '(SKIPPED: switching to uid %s needs root; run the demo as root to see this step)\n' "$NOBODY"
else
    # uid 65534 must be able to run the client: if the checkout is not
    # traversable by others, use a copy in $DIR.
    as_nobody=(setpriv --reuid="$NOBODY" --regid="$NOBODY" --clear-groups)
    CLIENT=$SIGIL
    if ! "${as_nobody[@]}" test -x "$CLIENT" 2>/dev/null; then
        CLIENT=$DIR/sigil
        cp "$SIGIL" "$CLIENT"
        chmod 755 "$CLIENT"
        printf '(uid %s cannot reach %s; using a copy at $DIR/sigil)\n' "$NOBODY" "$SIGIL"
    fi
    capture NOBODY_KEYS "${as_nobody[@]}" "$CLIENT" --socket "$SIGIL_SOCKET" key list
    if [[ $NOBODY_KEYS == *"$TARGETS_KEY"* || $NOBODY_KEYS == *"$ROOT_KEY"* ]]; then
        die "uid $NOBODY can see a key it has no policy for"
    fi
    printf '(no key is visible to uid %s)\n' "$NOBODY"
    # Exit code 3 = NOT_FOUND: a key the caller may not use is invisible to it.
    refused 3 "${as_nobody[@]}" "$CLIENT" --socket "$SIGIL_SOCKET" sign --key "$TARGETS_KEY" "$FILE"
fi
printf '\nThe audit log has a line for every generate and sign, and for every refusal:\n'
run tail -n 5 "$DIR/audit.jsonl"

# ---------------------------------------------------------------------------
step 8 "The private keys on the token are sensitive and never extractable"
USER_PIN_FILE=$DIR/user.pin
[[ -r $USER_PIN_FILE ]] || die "dev mode did not leave the user PIN in $USER_PIN_FILE"
printf '$ SOFTHSM2_CONF=$DIR/softhsm2.conf pkcs11-tool --module %s \\\n' "$SOFTHSM_MODULE"
printf '    --token-label sigil-dev --login --pin "$(cat $DIR/user.pin)" --list-objects --type privkey\n'
objects=$(SOFTHSM2_CONF=$DIR/softhsm2.conf pkcs11-tool --module "$SOFTHSM_MODULE" \
    --token-label sigil-dev --login --pin "$(cat "$USER_PIN_FILE")" \
    --list-objects --type privkey 2>&1) || {
    printf '%s\n' "$objects" >&2
    die "pkcs11-tool could not list the token's private keys"
}
printf '%s\n' "$objects"
n_keys=$(grep -c 'Private Key Object' <<<"$objects" || true)
n_safe=$(grep -c 'never extractable' <<<"$objects" || true)
((n_keys >= 2)) || die "expected at least 2 private keys on the token, found $n_keys"
((n_safe == n_keys)) || die "only $n_safe of $n_keys private keys are marked never extractable"
printf '(%s private keys, all sensitive and never extractable)\n' "$n_keys"

# ---------------------------------------------------------------------------
step 9 "Stopping sigild with SIGTERM (it drains requests in flight, then exits)"
show kill -TERM "$DAEMON_PID"
kill -TERM "$DAEMON_PID"
rc=0
wait "$DAEMON_PID" || rc=$?
DAEMON_PID=
printf 'sigild exited with status %s\n' "$rc"
((rc == 0)) || die "sigild did not exit cleanly on SIGTERM"

printf '\ndemo complete\n'
