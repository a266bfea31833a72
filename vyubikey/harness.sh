#!/usr/bin/env bash
# Run a command next to a virtual YubiKey:
#   pcscd (own reader.conf with a vpcd reader on a free loopback port)
#   + vyubikey (connects to that port) -> the command -> both stopped again.
#
#   vyubikey/harness.sh [--keep] [--trace] [--serial N] [--private-net] [--no-unshare] -- CMD [ARGS...]
#
#   --private-net  also a private network namespace (only lo): vpcd's listener
#                  (always 0.0.0.0:PORT) is then unreachable from outside; the
#                  command has no other network either.
#   VYUBIKEY_ARGS  extra vyubikey flags, e.g. "--touch-timeout 2"
#
# The command sees:
#   VYUBIKEY_STATE    scratch dir (pcscd.log, vyubikey.log, reader.conf.d/)
#   VYUBIKEY_CONTROL  control socket (line protocol, see vyubikey/README.md)
#   VYUBIKEY_CA_CERT  attestation root CA certificate (PEM)
#   VYUBIKEY_SERIAL   the card's serial, VYUBIKEY_PORT the vpcd port
#
# pcscd 1.9.9 always uses /run/pcscd/pcscd.comm (it ignores PCSCLITE_CSOCK_NAME),
# so one pcscd per mount namespace. As root (and unless --no-unshare) the
# harness re-runs itself with `unshare -m` and a private tmpfs on /run/pcscd:
# parallel runs and a system pcscd do not see each other; the command runs
# inside that namespace too. Processes are stopped by the PIDs started here.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
keep=0 trace=() serial=5437251 unshare=1 privnet=0
while [[ $# -gt 0 ]]; do
    case $1 in
        --keep) keep=1 ;;
        --trace) trace=(--trace) ;;
        --serial) serial=$2; shift ;;
        --no-unshare) unshare=0 ;;
        --private-net) privnet=1 ;;
        --) shift; break ;;
        *) echo "harness: unknown option $1" >&2; exit 2 ;;
    esac
    shift
done
[[ $# -gt 0 ]] || { echo "usage: $0 [--keep] [--trace] [--serial N] [--private-net] [--no-unshare] -- CMD [ARGS...]" >&2; exit 2; }

bin=${VYUBIKEY_BIN:-${CARGO_TARGET_DIR:-$here/../target}/debug/vyubikey}
[[ -x $bin ]] || { echo "harness: $bin not built (cargo build -p vyubikey)" >&2; exit 1; }

if [[ $unshare == 1 && -z ${VYUBIKEY_IN_NS:-} && $(id -u) == 0 ]]; then
    mkdir -p /run/pcscd
    opts=(); [[ $keep == 1 ]] && opts+=(--keep); opts+=("${trace[@]}" --serial "$serial")
    # shellcheck disable=SC2016
    ns=(-m); setup='mount -t tmpfs -o mode=0755 tmpfs /run/pcscd'
    if [[ $privnet == 1 ]]; then ns+=(-n); setup+=' && ip link set lo up'; fi
    exec env VYUBIKEY_IN_NS=1 unshare "${ns[@]}" --propagation private \
        bash -c "$setup"' && exec "$@"' harness \
        "$0" "${opts[@]}" --no-unshare -- "$@"
fi

if [[ -S /run/pcscd/pcscd.comm ]] && pgrep -x pcscd >/dev/null 2>&1; then
    echo "harness: a pcscd already serves /run/pcscd/pcscd.comm in this namespace;" \
         "run as root (unshare) or stop it" >&2
    exit 1
fi

state=$(mktemp -d "${TMPDIR:-/tmp}/vyubikey.XXXXXX")
pcscd_pid='' card_pid=''
cleanup() {
    local rc=$?
    [[ -n $card_pid ]] && kill "$card_pid" 2>/dev/null && wait "$card_pid" 2>/dev/null || true
    [[ -n $pcscd_pid ]] && kill "$pcscd_pid" 2>/dev/null && wait "$pcscd_pid" 2>/dev/null || true
    if [[ $rc != 0 || $keep == 1 ]]; then
        echo "harness: logs kept in $state" >&2
    else
        rm -rf "$state"
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# A free port pair: vpcd binds 0.0.0.0:PORT and PORT+1 (its second slot).
port=''
for _ in $(seq 50); do
    p=$((20000 + RANDOM % 40000))
    if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null &&
        ! (exec 3<>"/dev/tcp/127.0.0.1/$((p + 1))") 2>/dev/null; then port=$p; break; fi
done
[[ -n $port ]] || { echo "harness: no free port" >&2; exit 1; }
hexport=$(printf '0x%X' "$port")

mkdir -p "$state/reader.conf.d"
# ykcs11 2.2.0 only uses readers whose name starts with "Yubico";
# yubico-piv-tool looks for "Yubikey" (case-insensitive).
cat >"$state/reader.conf.d/vpcd" <<EOF
FRIENDLYNAME "Yubico YubiKey vpcd"
DEVICENAME   /dev/null:$hexport
LIBPATH      /usr/lib/pcsc/drivers/serial/libifdvpcd.so
CHANNELID    $hexport
EOF

pcscd -f -a -c "$state/reader.conf.d" >"$state/pcscd.log" 2>&1 &
pcscd_pid=$!

# shellcheck disable=SC2086 # VYUBIKEY_ARGS: extra flags, split on purpose
"$bin" --port "$port" --serial "$serial" --control "$state/control.sock" \
    --attestation-ca-key "$state/ca.key" --attestation-ca-cert "$state/ca.pem" ${VYUBIKEY_ARGS:-} \
    "${trace[@]}" >"$state/vyubikey.log" 2>&1 &
card_pid=$!

# Ready when pcscd reports a card in our reader.
for i in $(seq 200); do
    if opensc-tool -l 2>/dev/null | grep -q 'Yes .*Yubico YubiKey vpcd'; then break; fi
    if ! kill -0 "$card_pid" 2>/dev/null || ! kill -0 "$pcscd_pid" 2>/dev/null; then
        echo "harness: pcscd or vyubikey exited early" >&2
        tail -n 20 "$state/pcscd.log" "$state/vyubikey.log" >&2
        exit 1
    fi
    if [[ $i == 200 ]]; then
        echo "harness: card did not show up in 20 s" >&2
        tail -n 20 "$state/pcscd.log" "$state/vyubikey.log" >&2
        exit 1
    fi
    sleep 0.1
done

export VYUBIKEY_STATE=$state VYUBIKEY_CONTROL=$state/control.sock \
    VYUBIKEY_CA_CERT=$state/ca.pem VYUBIKEY_SERIAL=$serial VYUBIKEY_PORT=$port
"$@"
