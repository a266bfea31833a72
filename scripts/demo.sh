#!/usr/bin/env bash
# demo.sh: a narrated end-to-end run of sigil on a throwaway SoftHSM2 token,
# then the Docker Content Trust / Notary lab with the keys on that token.
#
# Run through `make demo`, which installs what is missing and builds
# target/debug/sigild and target/debug/sigil first. Every step prints what it
# is about to show, the exact command, and its output, and checks the result:
# the first thing that is not as it should be stops the demo with "FAILED".
#
# Steps 1-8: keys generated on the token, blob signing, an OpenSSL
# cross-check, a second Unix user refused, non-extractable keys. Steps 9-20:
# the real notary-signer and notary-server on loopback, then `sigil init`,
# `add`, `addhash`, `publish`, `list`, `key rotate`, `delegation add`, a
# delegated `add -r targets/releases` by a CI user, the real `notary list`
# reading what sigil published, a tampered cache refused. Steps 19-20: the
# collection imported into a TUF 1.0 repository (`sigil tuf import-notary`),
# served on loopback and read by python-tuf. Steps 21-22: the audit log, and
# everything stopped.
#
# Nothing outside a fresh temporary directory is touched (HOME points into it
# for the notary part); every daemon started here listens on 127.0.0.1 or the
# directory's Unix socket, and is stopped by its pid on any exit.
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
GUN=example.com/demo
STEPS=22

die() {
    printf '\ndemo: FAILED: %s\n' "$*" >&2
    exit 1
}

step() {
    printf '\n==> [%s/%s] %s\n' "$1" "$STEPS" "$2"
}

# show CMD...: print a command the way a user would type it, with the scratch
# directory as $DIR and target/debug/ left out of sigil and sigild.
show() {
    local out=() word line
    if [[ ${1:-} == with_stdin ]]; then
        show "${@:3}" '<' "$2"
        return
    fi
    for word in "$@"; do
        if [[ $word =~ ^[A-Za-z0-9_./:=@%+,-]+$ || $word =~ ^(\>|\>\>|\<|\||2\>\&1|\&)$ ]]; then
            out+=("$word")
        else
            out+=("'${word//\'/\'\\\'\'}'")
        fi
    done
    line="${out[*]//"$ROOT_DIR/target/debug/"/}"
    printf '$ %s\n' "${line//"$DIR"/\$DIR}"
}

# with_stdin FILE CMD...: run CMD with its standard input from FILE (shown as
# `CMD < FILE`).
with_stdin() {
    local file=$1
    shift
    "$@" <"$file"
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

# capture_all VAR CMD...: like capture, with stderr and stdout together (for
# commands whose messages the demo checks).
capture_all() {
    local var=$1 value rc=0
    shift
    show "$@"
    value=$("$@" 2>&1) || rc=$?
    [[ -z $value ]] || printf '%s\n' "$value"
    ((rc == 0)) || die "the command above failed (exit code $rc)"
    printf -v "$var" '%s' "$value"
}

# refused EXPECTED_RC [--says TEXT] CMD...: show and run a command that must
# fail with exit code EXPECTED_RC (see README: 1 bad signature, 3 not found,
# 4 permission denied, ...) and, with --says, print TEXT in its messages.
refused() {
    local expected=$1 says='' rc=0 output
    shift
    if [[ $1 == --says ]]; then
        says=$2
        shift 2
    fi
    show "$@"
    output=$("$@" 2>&1) || rc=$?
    [[ -z $output ]] || printf '%s\n' "$output"
    if ((rc == 0)); then
        die "the command above succeeded, but it must be refused"
    fi
    if ((rc != expected)); then
        die "the command above exited with $rc, expected $expected"
    fi
    if [[ -n $says && $output != *"$says"* ]]; then
        die "the command above was refused, but its message does not say \"$says\""
    fi
    printf '(exit code %s) refused, as it should be\n' "$rc"
}

# expect CONDITION_TEXT TEST...: fail loudly unless the test holds.
expect() {
    local what=$1
    shift
    "$@" || die "$what"
}

# alive PID: a child of this shell that is still running. bash reaps its
# children as they exit, so a pid that is gone, or now belongs to some other
# process, is not alive: a signal is never sent to a recycled pid.
alive() {
    local stat state ppid
    stat=$(cat "/proc/$1/stat" 2>/dev/null) || return 1
    stat=${stat##*) }
    read -r state ppid _ <<<"$stat"
    [[ $state != Z && $ppid == "$$" ]]
}

# stop_pid PID: SIGTERM to a child this script started, SIGKILL if it is still
# there after 10 s; sets STOPPED_RC to its exit status.
stop_pid() {
    local pid=$1 i
    if alive "$pid"; then
        kill -TERM "$pid" 2>/dev/null || true
    fi
    for ((i = 0; i < 100; i++)); do
        alive "$pid" || break
        sleep 0.1
    done
    if alive "$pid"; then
        printf '(pid %s ignored SIGTERM for 10 s: SIGKILL)\n' "$pid" >&2
        kill -KILL "$pid" 2>/dev/null || true
    fi
    STOPPED_RC=0
    wait "$pid" 2>/dev/null || STOPPED_RC=$?
}

# table_row TABLE NAME DIGEST SIZE ROLE: the `list` table (sigil's or
# notary's: NAME DIGEST SIZE ROLE) has exactly this row.
table_row() {
    awk -v n="$2" -v d="$3" -v s="$4" -v r="$5" \
        '$1 == n && $2 == d && $3 == s && $4 == r { found = 1 } END { exit !found }' <<<"$1"
}

# table_rows TABLE: how many targets the `list` table shows.
table_rows() {
    awk 'NR > 2 && NF == 4 { n++ } END { print n + 0 }' <<<"$1"
}

# expect_listed TABLE COUNT NAME DIGEST SIZE ROLE [NAME DIGEST SIZE ROLE...]
expect_listed() {
    local table=$1 count=$2 n
    shift 2
    n=$(table_rows "$table")
    ((n == count)) || die "expected $count targets in the list above, found $n"
    while (($# >= 4)); do
        table_row "$table" "$1" "$2" "$3" "$4" ||
            die "the list above lacks $1 (sha256 $2, $3 bytes, role $4)"
        shift 4
    done
}

sha256_of() {
    local sum
    sum=$(sha256sum "$1") || die "sha256sum $1 failed"
    printf '%s' "${sum%% *}"
}

size_of() {
    stat -c %s "$1"
}

[[ -x $SIGILD && -x $SIGIL ]] ||
    die "target/debug/sigild and target/debug/sigil are missing: run 'make demo' (or 'make build')"
for tool in openssl pkcs11-tool setpriv base64 notary notary-server notary-signer \
    sha256sum awk timeout; do
    command -v "$tool" >/dev/null 2>&1 || die "$tool not found: run 'make deps'"
done
[[ -e $SOFTHSM_MODULE ]] || die "$SOFTHSM_MODULE not found: run 'make deps'"

# ---------------------------------------------------------------------------
step 1 "Making a private scratch directory for the token, socket and audit log"
DIR=$(mktemp -d /tmp/sigil-demo.XXXXXX)
DAEMON_PID=
SIGNER_PID=
SERVER_PID=
cleanup() {
    local rc=$? pid log
    # Stop everything, whatever fails on the way.
    set +e
    trap - INT TERM
    for pid in "${HTTP_PID:-}" "$SERVER_PID" "$SIGNER_PID" "$DAEMON_PID"; do
        [[ -n $pid ]] && stop_pid "$pid"
    done
    if ((rc != 0)); then
        for log in sigild.log notary/notary-server.log notary/notary-signer.log; do
            [[ -s $DIR/$log ]] || continue
            printf -- '--- last lines of $DIR/%s ---\n' "$log" >&2
            tail -n 5 "$DIR/$log" | cut -c1-240 >&2
        done
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
printf '(commands below show target/debug/sigil and target/debug/sigild as sigil and sigild)\n'

# ---------------------------------------------------------------------------
step 2 "Starting sigild in dev mode: a fresh SoftHSM token, policy: only $(id -un) (uid $(id -u))"
show "$SIGILD" --dev "$DIR" '>' "$DIR/sigild.log" '2>&1' '&'
"$SIGILD" --dev "$DIR" >"$DIR/sigild.log" 2>&1 &
DAEMON_PID=$!
printf 'sigild pid %s, log in $DIR/sigild.log\n' "$DAEMON_PID"
export SIGIL_SOCKET=$DIR/sigild.sock
ready=
for _ in $(seq 100); do
    alive "$DAEMON_PID" || break
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
step 3 "Generating a root key and a targets key on the SoftHSM token (for collection $GUN)"
printf 'export SIGIL_SOCKET=$DIR/sigild.sock\n'
capture ROOT_KEY "$SIGIL" key generate --role root --gun "$GUN"
capture TARGETS_KEY "$SIGIL" key generate --role targets --gun "$GUN"
[[ $ROOT_KEY =~ ^[0-9a-f]{64}$ && $TARGETS_KEY =~ ^[0-9a-f]{64}$ ]] ||
    die "key generate should print a 64-hex-digit key id"
run "$SIGIL" key list

# ---------------------------------------------------------------------------
step 4 "Signing a file with the targets key, and verifying the signature"
mkdir -m 755 "$DIR/files"
FILE=$DIR/files/release-notes.txt
printf 'sigil demo release 1.0\nbuilt %s\n' "$(date -u +%Y-%m-%dT%H:%M:%SZ)" >"$FILE"
chmod 644 "$FILE"
run "$SIGIL" sign --key "$TARGETS_KEY" "$FILE" --out "$DIR/release-notes.sig"
printf 'signature (base64, raw r||s): %s\n' "$(cat "$DIR/release-notes.sig")"
run "$SIGIL" verify --key "$TARGETS_KEY" "$FILE" "$DIR/release-notes.sig"

# ---------------------------------------------------------------------------
step 5 "Checking the signature independently with OpenSSL"
show "$SIGIL" key public "$TARGETS_KEY" --pem '>' "$DIR/pub.pem"
"$SIGIL" key public "$TARGETS_KEY" --pem >"$DIR/pub.pem"
cat "$DIR/pub.pem"
show "$SIGIL" sign --key "$TARGETS_KEY" --encoding der "$FILE" '|' base64 -d '>' "$DIR/release-notes.der.sig"
"$SIGIL" sign --key "$TARGETS_KEY" --encoding der "$FILE" | base64 -d >"$DIR/release-notes.der.sig"
run openssl dgst -sha256 -verify "$DIR/pub.pem" -signature "$DIR/release-notes.der.sig" "$FILE"

# ---------------------------------------------------------------------------
step 6 "Tampering with the file: one extra byte, and the signature no longer verifies"
cp "$FILE" "$DIR/release-notes.tampered"
printf 'x' >>"$DIR/release-notes.tampered"
refused 1 "$SIGIL" verify --key "$TARGETS_KEY" "$DIR/release-notes.tampered" "$DIR/release-notes.sig"

# ---------------------------------------------------------------------------
# Running a command as uid 65534 needs root (setpriv); the demo runs as root on
# the target machines. AS_NOBODY and NOBODY_CLIENT are set only as root.
AS_NOBODY=()
NOBODY_CLIENT=
if [[ $(id -u) -eq 0 ]]; then
    AS_NOBODY=(setpriv --reuid="$NOBODY" --regid="$NOBODY" --clear-groups)
fi

step 7 "Another Unix user (uid $NOBODY) sees no keys and cannot sign"
if ((${#AS_NOBODY[@]} == 0)); then
    # setpriv can only switch to another user as root. Say so plainly.
    printf '(SKIPPED: switching to uid %s needs root; run the demo as root to see this step)\n' "$NOBODY"
else
    # uid 65534 must be able to run the client: if the checkout is not
    # traversable by others, use a copy in $DIR.
    NOBODY_CLIENT=$SIGIL
    if ! "${AS_NOBODY[@]}" test -x "$NOBODY_CLIENT" 2>/dev/null; then
        NOBODY_CLIENT=$DIR/sigil
        cp "$SIGIL" "$NOBODY_CLIENT"
        chmod 755 "$NOBODY_CLIENT"
        printf '(uid %s cannot reach %s; using a copy at $DIR/sigil)\n' "$NOBODY" "$SIGIL"
    fi
    capture NOBODY_KEYS "${AS_NOBODY[@]}" "$NOBODY_CLIENT" --socket "$SIGIL_SOCKET" key list
    if [[ $NOBODY_KEYS == *"$TARGETS_KEY"* || $NOBODY_KEYS == *"$ROOT_KEY"* ]]; then
        die "uid $NOBODY can see a key it has no policy for"
    fi
    printf '(no key is visible to uid %s)\n' "$NOBODY"
    # Exit code 3 = NOT_FOUND: a key the caller may not use is invisible to it.
    refused 3 "${AS_NOBODY[@]}" "$NOBODY_CLIENT" --socket "$SIGIL_SOCKET" sign --key "$TARGETS_KEY" "$FILE"
fi
printf '\nThe audit log has a line for every generate and sign, and for every refusal:\n'
run tail -n 5 "$DIR/audit.jsonl"

# ---------------------------------------------------------------------------
# token_private_keys MIN: list the token's private keys with pkcs11-tool (the
# token's own view, not sigild's) and check there are at least MIN, all
# sensitive and never extractable. Sets TOKEN_KEYS and TOKEN_LISTING.
USER_PIN_FILE=$DIR/user.pin
token_private_keys() {
    local min=$1 n_safe
    [[ -r $USER_PIN_FILE ]] || die "dev mode did not leave the user PIN in $USER_PIN_FILE"
    TOKEN_LISTING=$(SOFTHSM2_CONF=$DIR/softhsm2.conf pkcs11-tool --module "$SOFTHSM_MODULE" \
        --token-label sigil-dev --login --pin "$(cat "$USER_PIN_FILE")" \
        --list-objects --type privkey 2>&1) || {
        printf '%s\n' "$TOKEN_LISTING" >&2
        die "pkcs11-tool could not list the token's private keys"
    }
    TOKEN_KEYS=$(grep -c 'Private Key Object' <<<"$TOKEN_LISTING" || true)
    n_safe=$(grep -c 'never extractable' <<<"$TOKEN_LISTING" || true)
    ((TOKEN_KEYS >= min)) || die "expected at least $min private keys on the token, found $TOKEN_KEYS"
    ((n_safe == TOKEN_KEYS)) || die "only $n_safe of $TOKEN_KEYS private keys are marked never extractable"
}

step 8 "The private keys on the token are sensitive and never extractable"
printf '$ SOFTHSM2_CONF=$DIR/softhsm2.conf pkcs11-tool --module %s \\\n' "$SOFTHSM_MODULE"
printf '    --token-label sigil-dev --login --pin "$(cat $DIR/user.pin)" --list-objects --type privkey\n'
token_private_keys 2
printf '%s\n' "$TOKEN_LISTING"
printf '(%s private keys, all sensitive and never extractable)\n' "$TOKEN_KEYS"

# ---------------------------------------------------------------------------
# The Notary part: the lab's "extra for experts", with sigil and the token.
# shellcheck source=scripts/demo-notary.sh
source "$ROOT_DIR/scripts/demo-notary.sh"

step 9 "A throwaway PKI for notary-server and notary-signer (OpenSSL, ECDSA P-256)"
mkdir -p "$NOTARY_DIR/pki" "$DIR/home"
export HOME=$DIR/home
printf 'export HOME=$DIR/home   # so no ~/.sigil or ~/.notary config of yours is read\n'
make_pki

# ---------------------------------------------------------------------------
step 10 "Starting the real notary-signer and notary-server on free loopback ports"
printf 'notary-signer holds the server-managed keys (timestamp, later snapshot) in memory;\n'
printf 'notary-server serves the collections over HTTPS and signs through it (mutual TLS).\n'
start_notary_signer
start_notary_server

# ---------------------------------------------------------------------------
TRUST=$DIR/trust
COLLECTION=("$SIGIL" -s "$NOTARY_URL" --tlscacert "$CA" -d "$TRUST")

step 11 "sigil init $GUN: root, targets and snapshot keys on the token, timestamp key on the server"
printf '(the lab: notary init example.com/scripts; docker push with content trust does the same)\n'
capture_all INIT_OUT "${COLLECTION[@]}" init "$GUN" -p
[[ $INIT_OUT == *"using root key $ROOT_KEY"* && $INIT_OUT == *"using targets key $TARGETS_KEY"* ]] ||
    die "init should reuse the root and targets keys generated in step 3"
[[ $INIT_OUT == *"Successfully published"* ]] || die "init -p should publish the new collection"
capture KEYS "$SIGIL" key list
SNAPSHOT_KEY=$(awk -v g="$GUN" '$3 == "snapshot" && $4 == g { print $1 }' <<<"$KEYS")
[[ $SNAPSHOT_KEY =~ ^[0-9a-f]{64}$ ]] || die "init should have generated a snapshot key on the token"
printf '(root and targets keys from step 3 reused, snapshot key %s... generated on the token;\n' "${SNAPSHOT_KEY:0:12}"
printf ' passphrases: none, the keys never leave the token)\n'

# ---------------------------------------------------------------------------
step 12 "Staging two files and a docker-style tag (tag -> manifest digest), then one publish"
INSTALL=$DIR/files/install.sh
printf '#!/bin/sh\necho "installing sigil demo 1.0"\n' >"$INSTALL"
MANIFEST=$DIR/files/manifest.json
# What `docker push` signs for a tag: the image manifest's size and digest.
printf '{"schemaVersion":2,"mediaType":"application/vnd.docker.distribution.manifest.v2+json","config":{"mediaType":"application/vnd.docker.container.image.v1+json","size":1469,"digest":"sha256:%s"},"layers":[]}\n' \
    "$(printf 'sigil demo image config\n' | sha256sum | cut -d' ' -f1)" >"$MANIFEST"
chmod 644 "$INSTALL" "$MANIFEST"
MANIFEST_SHA=$(sha256_of "$MANIFEST")
MANIFEST_SIZE=$(size_of "$MANIFEST")
STATUS=''
run "${COLLECTION[@]}" add "$GUN" install.sh "$INSTALL" release-notes.txt "$FILE"
printf '(the image manifest for tag "latest" is %s bytes, digest sha256:%s)\n' "$MANIFEST_SIZE" "$MANIFEST_SHA"
run "${COLLECTION[@]}" addhash "$GUN" latest "$MANIFEST_SIZE" --sha256 "$MANIFEST_SHA"
capture STATUS "${COLLECTION[@]}" status "$GUN"
for name in install.sh release-notes.txt latest; do
    grep -Eq "create +targets +target +$name\$" <<<"$STATUS" || die "status should list $name as staged"
done
capture_all PUBLISH "${COLLECTION[@]}" publish "$GUN"
[[ $PUBLISH == *"Successfully published"* ]] || die "publish did not say it published"
capture STATUS "${COLLECTION[@]}" status "$GUN"
grep -Eq 'create|delete' <<<"$STATUS" && die "changes are still staged after publish"
printf '(nothing left staged)\n'

# ---------------------------------------------------------------------------
step 13 "sigil list, lookup and verify: the published targets, verified from the server"
INSTALL_SHA=$(sha256_of "$INSTALL")
NOTES_SHA=$(sha256_of "$FILE")
capture LIST "${COLLECTION[@]}" list "$GUN"
expect_listed "$LIST" 3 \
    install.sh "$INSTALL_SHA" "$(size_of "$INSTALL")" targets \
    release-notes.txt "$NOTES_SHA" "$(size_of "$FILE")" targets \
    latest "$MANIFEST_SHA" "$MANIFEST_SIZE" targets
capture LOOKUP "${COLLECTION[@]}" lookup "$GUN" latest
[[ $LOOKUP == "latest sha256:$MANIFEST_SHA $MANIFEST_SIZE" ]] || die "lookup should print the manifest's digest"
printf '(this is what content trust does to "docker pull %s:latest": it pulls %s@sha256:%s...)\n' \
    "$GUN" "$GUN" "${MANIFEST_SHA:0:12}"
show with_stdin "$INSTALL" "${COLLECTION[@]}" verify "$GUN" install.sh '>' "$DIR/install.verified"
with_stdin "$INSTALL" "${COLLECTION[@]}" verify "$GUN" install.sh >"$DIR/install.verified" ||
    die "the command above failed"
cmp -s "$INSTALL" "$DIR/install.verified" || die "verify should copy the matching content to stdout"
printf '(the content matches the signed target; verify copied it to $DIR/install.verified)\n'
cp "$INSTALL" "$DIR/install.tampered"
printf 'echo "rm -rf /"\n' >>"$DIR/install.tampered"
printf 'The same file with one line appended ($DIR/install.tampered) is refused:\n'
refused 1 --says "does NOT match" with_stdin "$DIR/install.tampered" "${COLLECTION[@]}" verify "$GUN" install.sh -q

# ---------------------------------------------------------------------------
step 14 "Key rotation: the snapshot key to the server, a new targets key on the token"
capture_all ROTATE "${COLLECTION[@]}" key rotate "$GUN" snapshot -r
[[ $ROTATE == *"held by the server"* ]] || die "the new snapshot key should be held by the server"
capture_all ROTATE "${COLLECTION[@]}" key rotate "$GUN" targets
[[ $ROTATE == *"Successfully rotated targets key"* ]] || die "the targets key rotation did not succeed"
capture KEYS "$SIGIL" key list
n=$(awk -v g="$GUN" '$3 == "targets" && $4 == g' <<<"$KEYS" | wc -l)
((n == 2)) || die "expected the old and the new targets key on the token, found $n"
printf '(the old targets key stays on the token but is no longer in root.json)\n'
capture LIST "${COLLECTION[@]}" list "$GUN"
expect_listed "$LIST" 3 install.sh "$INSTALL_SHA" "$(size_of "$INSTALL")" targets
root_version=$(grep -o '"version":[0-9]*' "$TRUST/tuf/$GUN/metadata/root.json" | head -n 1)
[[ ${root_version#*:} == 3 ]] || die "expected root v3 after two rotations, the cache has ${root_version:-none}"
printf '(root is now v3, each version signed on the token; the targets, re-signed with the new key, still verify)\n'

# ---------------------------------------------------------------------------
step 15 "A delegation, targets/releases, whose key is generated on the token"
capture RELEASES_KEY "$SIGIL" key generate --role targets/releases --gun "$GUN"
[[ $RELEASES_KEY =~ ^[0-9a-f]{64}$ ]] || die "key generate should print a 64-hex-digit key id"
show "$SIGIL" key public "$RELEASES_KEY" --pem '>' "$DIR/releases.pem"
"$SIGIL" key public "$RELEASES_KEY" --pem >"$DIR/releases.pem" || die "the command above failed"
cat "$DIR/releases.pem"
capture_all DELEGATION "${COLLECTION[@]}" delegation add "$GUN" targets/releases "$DIR/releases.pem" --all-paths -p
[[ $DELEGATION == *"Successfully published"* ]] || die "the delegation was not published"
capture DELEGATIONS "${COLLECTION[@]}" delegation list "$GUN"
grep -Eq '^targets/releases +"" <all paths> +[0-9a-f]{64} +1$' <<<"$DELEGATIONS" ||
    die "delegation list should show targets/releases for all paths, one key, threshold 1"

# ---------------------------------------------------------------------------
RELEASE=$DIR/files/release-1.0.tar
printf 'sigil demo 1.0, built by CI\n' >"$RELEASE"
chmod 644 "$RELEASE"
RELEASE_SHA=$(sha256_of "$RELEASE")
RELEASE_SIZE=$(size_of "$RELEASE")

step 16 "A CI user (uid $NOBODY) allowed only the targets/releases key publishes v1.0 into it"
if ((${#AS_NOBODY[@]} == 0)); then
    printf '(SKIPPED: switching to uid %s needs root; run the demo as root to see the CI user.\n' "$NOBODY"
    printf ' The owner publishes into the delegation instead, with the same key.)\n'
    capture_all CI_ADD "${COLLECTION[@]}" add "$GUN" v1.0 "$RELEASE" -r targets/releases -p
    [[ $CI_ADD == *"Successfully published"* ]] || die "the delegated add was not published"
else
    printf 'A policy rule for the CI user, added to $DIR/sigild.toml and loaded with SIGHUP:\n'
    cat >>"$DIR/sigild.toml" <<EOF

# Added by the demo: the CI user may sign targets/releases metadata of $GUN
# with its key (sigild reads it first: role, rising version, expiry, paths),
# and do nothing else.
[[policy]]
name = "ci-releases"
uids = [$NOBODY]
keys = [{ gun = "$GUN", role = "targets/releases" }]
allow = ["sign-metadata", "public", "list"]

[[metadata]]
role = "targets/releases"
max_expires = "1095d"
EOF
    show cat '>>' "$DIR/sigild.toml"
    sed -n '/^# Added by the demo/,$p' "$DIR/sigild.toml"
    run kill -HUP "$DAEMON_PID"
    reloaded=
    for _ in $(seq 50); do
        reloaded=$(grep 'policy reloaded' "$DIR/sigild.log" | grep 'ci-releases' || true)
        [[ -n $reloaded ]] && break
        sleep 0.1
    done
    [[ -n $reloaded ]] || die "sigild did not log 'policy reloaded' with the ci-releases rule"
    printf 'sigild.log: %s\n' "$reloaded"

    printf '\nThe CI user gets a home with the notary CA certificate; its trust dir starts empty:\n'
    run install -d -o "$NOBODY" -g "$NOBODY" -m 755 "$DIR/ci"
    run install -o "$NOBODY" -g "$NOBODY" -m 644 "$CA" "$DIR/ci/ca.crt"
    AS_CI=("${AS_NOBODY[@]}" env HOME="$DIR/ci")
    CI_COLLECTION=("${AS_CI[@]}" "$NOBODY_CLIENT" -s "$NOTARY_URL" --tlscacert "$DIR/ci/ca.crt" -d "$DIR/ci/trust")
    capture CI_KEYS "${AS_CI[@]}" "$NOBODY_CLIENT" key list
    n=$(grep -cE '^[0-9a-f]{64} ' <<<"$CI_KEYS" || true)
    if ((n != 1)) || [[ $CI_KEYS != *"$RELEASES_KEY"* ]]; then
        die "the CI user should see exactly the targets/releases key, it sees $n keys"
    fi
    printf '(the CI user sees exactly one key: targets/releases)\n'
    capture_all CI_ADD "${CI_COLLECTION[@]}" add "$GUN" v1.0 "$RELEASE" -r targets/releases -p
    [[ $CI_ADD == *"Successfully published"* ]] || die "the CI user's delegated add was not published"
    printf '(notary-server made the new snapshot itself: it holds the snapshot key since step 14)\n'
    printf '\nAnd nothing else: not the top-level targets, not a new key:\n'
    refused 1 --says "cannot sign targets" "${CI_COLLECTION[@]}" add "$GUN" evil "$RELEASE" -p
    run "${CI_COLLECTION[@]}" reset "$GUN" --all
    refused 4 --says "permission denied" "${CI_COLLECTION[@]}" key rotate "$GUN" targets
fi

# ---------------------------------------------------------------------------
step 17 "The real notary client reads what sigil published"
NOTARY=(notary -s "$NOTARY_URL" --tlscacert "$CA" -d "$DIR/notary-trust")
capture NLIST "${NOTARY[@]}" list "$GUN"
expect_listed "$NLIST" 4 \
    install.sh "$INSTALL_SHA" "$(size_of "$INSTALL")" targets \
    release-notes.txt "$NOTES_SHA" "$(size_of "$FILE")" targets \
    latest "$MANIFEST_SHA" "$MANIFEST_SIZE" targets \
    v1.0 "$RELEASE_SHA" "$RELEASE_SIZE" targets/releases
capture NLIST "${NOTARY[@]}" list "$GUN" -r targets/releases
expect_listed "$NLIST" 1 v1.0 "$RELEASE_SHA" "$RELEASE_SIZE" targets/releases
capture NLOOKUP "${NOTARY[@]}" lookup "$GUN" latest
[[ $NLOOKUP == "latest sha256:$MANIFEST_SHA $MANIFEST_SIZE" ]] ||
    die "notary lookup should print the manifest's digest"
printf '(notary trusted the root on first use and verified every signature made on the token)\n'

# ---------------------------------------------------------------------------
step 18 "Tampering with sigil's cached metadata: one byte of the trusted root.json"
CACHED_ROOT=$TRUST/tuf/$GUN/metadata/root.json
[[ -s $CACHED_ROOT ]] || die "no cached root at $CACHED_ROOT"
cp "$CACHED_ROOT" "$DIR/root.json.good"
# The first "expires" is the root's own; flip a digit of its year.
offset=$(grep -bo '"expires":"' "$CACHED_ROOT" | head -n 1 | cut -d: -f1)
[[ $offset =~ ^[0-9]+$ ]] || die "no expiry found in the cached root"
at=$((offset + 13))
old=$(dd if="$CACHED_ROOT" bs=1 skip="$at" count=1 status=none)
new=1
[[ $old == 1 ]] && new=2
printf '%s' "$new" | dd of="$CACHED_ROOT" bs=1 seek="$at" conv=notrunc status=none
printf 'byte %s of $DIR/trust/tuf/%s/metadata/root.json: "%s" -> "%s" (the year root expires)\n' \
    "$at" "$GUN" "$old" "$new"
refused 1 --says "root v" "${COLLECTION[@]}" list "$GUN"
refused 1 --says "root v" with_stdin "$INSTALL" "${COLLECTION[@]}" verify "$GUN" install.sh -q
printf 'Restoring the byte:\n'
cp "$DIR/root.json.good" "$CACHED_ROOT"
capture LIST "${COLLECTION[@]}" list "$GUN"
expect_listed "$LIST" 4 v1.0 "$RELEASE_SHA" "$RELEASE_SIZE" targets/releases

# ---------------------------------------------------------------------------
# shellcheck source=scripts/demo-tuf.sh
source "$ROOT_DIR/scripts/demo-tuf.sh"
TUF_REPO=$DIR/tuf-repo

step 19 "TUF 1.0: the collection imported into a TUF 1.0 repository, signed by the same token keys"
printf '(Docker Content Trust is retired; TUF 1.0 clients such as python-tuf, go-tuf and tough\n'
printf ' read this format. The verified collection is read from notary-server, as sigil list does.)\n'
capture_all IMPORT "${COLLECTION[@]}" tuf import-notary "$GUN" "$TUF_REPO"
[[ $IMPORT == *"root -> root (threshold 1), signed with sigild key(s) $ROOT_KEY"* ]] ||
    die "the TUF 1.0 root should be signed with the collection's root key $ROOT_KEY"
[[ $IMPORT == *"targets/releases -> releases (threshold 1), signed with sigild key(s) $RELEASES_KEY"* ]] ||
    die "the releases delegation should keep its key $RELEASES_KEY"
printf 'The content of the files goes where TUF 1.0 clients fetch it (Notary holds only metadata):\n'
store_target "$TUF_REPO" install.sh "$INSTALL"
store_target "$TUF_REPO" release-notes.txt "$FILE"
store_target "$TUF_REPO" v1.0 "$RELEASE"
show find "$TUF_REPO/metadata" "$TUF_REPO/targets" -type f
find "$TUF_REPO/metadata" "$TUF_REPO/targets" -type f | sed "s|$DIR|\$DIR|g" | sort
run "$SIGIL" tuf verify "$TUF_REPO"

# ---------------------------------------------------------------------------
step 20 "python-tuf downloads from the TUF 1.0 repository, served on loopback; the tag's digest matches Notary's"
tuf_venv
serve_repo "$TUF_REPO"
capture NGCLIENT "$TUF_PY" "$ROOT_DIR/tests/py/ngclient_download.py" \
    --metadata-dir "$DIR/tuf-client" --metadata-url "$HTTP_URL/metadata/" \
    --targets-url "$HTTP_URL/targets/" --download-dir "$DIR/tuf-downloads" \
    --root "$TUF_REPO/metadata/1.root.json" install.sh v1.0
[[ $NGCLIENT == *"\"install.sh\": {"*"\"sha256\": \"$INSTALL_SHA\""* ]] ||
    die "python-tuf should have downloaded install.sh with sha256 $INSTALL_SHA"
[[ $NGCLIENT == *"\"v1.0\": {"*"\"sha256\": \"$RELEASE_SHA\""* ]] ||
    die "python-tuf should have downloaded v1.0 (from the releases delegation) with sha256 $RELEASE_SHA"
cmp -s "$INSTALL" "$DIR/tuf-downloads/install.sh" || die "the downloaded install.sh differs from the file"
printf '(python-tuf verified root, timestamp, snapshot, targets and releases, then each file)\n'
capture TAGINFO "$TUF_PY" "$ROOT_DIR/tests/py/ngclient_targetinfo.py" \
    --metadata-dir "$DIR/tuf-client" --metadata-url "$HTTP_URL/metadata/" \
    --root "$TUF_REPO/metadata/1.root.json" latest
[[ $TAGINFO == *"\"sha256\": \"$MANIFEST_SHA\""* ]] ||
    die "python-tuf should resolve latest to sha256:$MANIFEST_SHA, as sigil lookup did"
printf 'tag "latest": sigil lookup (Notary) and python-tuf (TUF 1.0) both give sha256:%s\n' "$MANIFEST_SHA"
show kill -TERM "$HTTP_PID"
stop_pid "$HTTP_PID"
HTTP_PID=

# ---------------------------------------------------------------------------
step 21 "The audit log counts every signature and its hash chain holds; the trust dirs hold no private key"
declare -A tally=()
signed_ok=0
while IFS= read -r line; do
    op=- uid=- role=- outcome=-
    if [[ $line =~ \"op\":\"([a-z_]+)\" ]]; then op=${BASH_REMATCH[1]}; fi
    if [[ $line =~ \"uid\":([0-9]+) ]]; then uid=${BASH_REMATCH[1]}; fi
    if [[ $line =~ \"role\":\"([^\"]*)\" ]]; then role=${BASH_REMATCH[1]}; fi
    if [[ $line =~ \"outcome\":\"([a-z_]+)\" ]]; then outcome=${BASH_REMATCH[1]}; fi
    key="$(printf '%-8s uid %-5s %-16s %s' "$op" "$uid" "$role" "$outcome")"
    tally[$key]=$((${tally[$key]:-0} + 1))
    if [[ $op == sign && $outcome == ok ]]; then
        signed_ok=$((signed_ok + 1))
        if ((${#AS_NOBODY[@]} > 0)) && [[ $uid == "$NOBODY" && $role != targets/releases ]]; then
            die "uid $NOBODY signed with a $role key"
        fi
    fi
done <"$DIR/audit.jsonl"
show grep '"op":"sign"' "$DIR/audit.jsonl" '|' grep -c '"outcome":"ok"'
printf '%s\n' "$signed_ok"
printf 'every line of $DIR/audit.jsonl, by operation, caller, role and outcome:\n'
for key in "${!tally[@]}"; do
    printf '  %4s  %s\n' "${tally[$key]}" "$key"
done | sort -k2,2 -k4,4n -k5,5
((signed_ok >= 10)) || die "expected at least 10 signatures in the audit log, found $signed_ok"
if ((${#AS_NOBODY[@]} > 0)); then
    grep -q '"op":"sign","uid":65534,.*"role":"targets/releases",.*"outcome":"ok"' "$DIR/audit.jsonl" ||
        die "the CI user's delegated signature is not in the audit log"
fi
printf '\nEach line carries "prev", the SHA-256 of the line before it; the chain holds:\n'
run "$SIGIL" audit verify "$DIR/audit.jsonl"
printf '\nsigil'"'"'s trust dir: metadata and staged changes, never a key:\n'
show find "$TRUST" -type f
find "$TRUST" -type f | sed "s|$DIR|\$DIR|g" | sort
trust_dirs=("$TRUST" "$DIR/notary-trust")
[[ -d $DIR/ci/trust ]] && trust_dirs+=("$DIR/ci/trust")
show grep -rlE 'PRIVATE KEY|"private":"' "${trust_dirs[@]}"
if leaked=$(grep -rlE 'PRIVATE KEY|"private":"' "${trust_dirs[@]}"); then
    printf '%s\n' "$leaked"
    die "private key material in a trust dir"
fi
# sigil never makes a private/ directory; the notary client makes an empty one.
for dir in "$TRUST" "$DIR/ci/trust"; do
    [[ ! -e $dir/private ]] || die "$dir has a private/ directory"
done
[[ -z $(find "$DIR/notary-trust" -path '*/private/*' -type f) ]] ||
    die "the notary client stored a private key in \$DIR/notary-trust/private"
printf '(nothing: no private key in $DIR/trust, $DIR/notary-trust%s)\n' \
    "$([[ -d $DIR/ci/trust ]] && printf ', $DIR/ci/trust')"
token_private_keys 5
printf 'the token now holds %s private keys, all sensitive and never extractable (pkcs11-tool)\n' "$TOKEN_KEYS"

# ---------------------------------------------------------------------------
step 22 "Stopping notary-server, notary-signer and sigild, each by the pid started here"
for name in notary-server notary-signer; do
    if [[ $name == notary-server ]]; then pid=$SERVER_PID; else pid=$SIGNER_PID; fi
    show kill -TERM "$pid"
    stop_pid "$pid"
    printf '%s (pid %s) stopped, status %s\n' "$name" "$pid" "$STOPPED_RC"
    if [[ $name == notary-server ]]; then SERVER_PID=; else SIGNER_PID=; fi
done
show kill -TERM "$DAEMON_PID"
stop_pid "$DAEMON_PID"
DAEMON_PID=
printf 'sigild exited with status %s (it drains requests in flight, then exits)\n' "$STOPPED_RC"
((STOPPED_RC == 0)) || die "sigild did not exit cleanly on SIGTERM"

printf '\ndemo complete in %s s\n' "$SECONDS"
