#!/usr/bin/env bash
# init-token.sh DIR LABEL
#
# Creates a throwaway SoftHSM2 token for sigil tests and the demo:
#   DIR/softhsm2.conf   rendered from softhsm2.conf.in (tokendir = DIR/tokens)
#   DIR/tokens/         the token files
#   DIR/so.pin          random Security Officer PIN, mode 0600
#   DIR/user.pin        random user PIN, mode 0600
# and prints the line to point SoftHSM (and sigild) at it:
#   export SOFTHSM2_CONF=DIR/softhsm2.conf
#
# Test and demo tokens only: see the note about PINs on the command line below.
set -euo pipefail

die() {
    printf 'init-token.sh: %s\n' "$*" >&2
    exit 1
}

if [[ $# -ne 2 ]]; then
    printf 'usage: %s DIR LABEL\n' "${0##*/}" >&2
    exit 2
fi
dir=$1
label=$2

[[ -n $label ]] || die "LABEL must not be empty"
# PKCS#11 token labels are a fixed 32-byte, blank-padded field.
((${#label} <= 32)) || die "LABEL '$label' is longer than 32 characters"

command -v softhsm2-util >/dev/null 2>&1 ||
    die "softhsm2-util not found: apt-get install -y softhsm2"

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
template=$here/softhsm2.conf.in
[[ -r $template ]] || die "template not found: $template"

mkdir -p "$dir"
dir=$(cd "$dir" && pwd) # SoftHSM wants an absolute tokendir
conf=$dir/softhsm2.conf
tokens=$dir/tokens

if [[ -e $dir/so.pin || -e $dir/user.pin ]]; then
    die "$dir already holds PIN files; use a fresh directory for a new token"
fi

# Everything below is private to the caller: token files and PINs.
umask 077
mkdir -p "$tokens"

# '|' cannot appear in the path without breaking the sed expression below.
[[ $tokens != *'|'* ]] || die "DIR must not contain '|': $dir"
sed "s|@TOKENDIR@|$tokens|g" "$template" >"$conf"

# random_pin LENGTH CHARSET: read from the kernel CSPRNG, keep only CHARSET.
random_pin() {
    local pin
    # head closes the pipe early on purpose; ignore tr's SIGPIPE.
    pin=$(set +o pipefail; LC_ALL=C tr -dc "$2" </dev/urandom | head -c "$1")
    [[ ${#pin} -eq $1 ]] || die "could not read random bytes from /dev/urandom"
    printf '%s' "$pin"
}

so_pin=$(random_pin 16 'A-Za-z0-9')
user_pin=$(random_pin 12 '0-9')
# No trailing newline: the file holds exactly the PIN.
printf '%s' "$so_pin" >"$dir/so.pin"
printf '%s' "$user_pin" >"$dir/user.pin"
chmod 0600 "$dir/so.pin" "$dir/user.pin"

# softhsm2-util only takes PINs as arguments, so for the few milliseconds it
# runs they are visible in /proc/<pid>/cmdline to other local users. That is
# acceptable only because this token is a throwaway for tests and the demo;
# never initialise a token that protects real keys this way.
if ! out=$(SOFTHSM2_CONF=$conf softhsm2-util --init-token --free \
    --label "$label" --so-pin "$so_pin" --pin "$user_pin" 2>&1); then
    printf '%s\n' "$out" >&2
    die "softhsm2-util --init-token failed (config: $conf)"
fi
printf '%s\n' "$out" >&2

printf 'export SOFTHSM2_CONF=%s\n' "$conf"
