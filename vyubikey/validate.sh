#!/usr/bin/env bash
# Checks the virtual YubiKey with tools no one here wrote: Yubico's
# yubico-piv-tool and ykcs11 (through OpenSC's pkcs11-tool), and openssl.
# Run it inside the harness:
#
#   vyubikey/harness.sh --serial 7654321 -- vyubikey/validate.sh
#
# Default credentials of a fresh card: PIN 123456, PUK 12345678, 3DES
# management key 010203040506070801020304050607080102030405060708.
set -euo pipefail

: "${VYUBIKEY_STATE:?run under vyubikey/harness.sh}"
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
M=${YKCS11:-/usr/lib/x86_64-linux-gnu/libykcs11.so}
out=$VYUBIKEY_STATE/validate
mkdir -p "$out"
cd "$out"
pass=0
step() { printf '\n--- %s\n' "$*"; }
ok() { pass=$((pass + 1)); printf 'ok: %s\n' "$*"; }
fail() { printf 'FAIL: %s\n' "$*" >&2; exit 1; }
ctl() { "${VYUBIKEY_BIN:-${CARGO_TARGET_DIR:-$here/../target}/debug/vyubikey}" ctl "$VYUBIKEY_CONTROL" "$@"; }

step "yubico-piv-tool -a status"
yubico-piv-tool -a status | tee status.txt
grep -Eq "^Serial Number:[[:space:]]+$VYUBIKEY_SERIAL\$" status.txt || fail "serial $VYUBIKEY_SERIAL not reported"
grep -Eq '^Version:[[:space:]]+5\.4\.3$' status.txt || fail "version 5.4.3 not reported"
grep -Eq '^PIN tries left:[[:space:]]+3$' status.txt || fail "3 PIN tries not reported"
ok "status: serial $VYUBIKEY_SERIAL, version 5.4.3, 3 PIN tries"

step "yubico-piv-tool -a verify-pin"
yubico-piv-tool -a verify-pin -P 123456
ok "verify-pin with the right PIN"
if yubico-piv-tool -a verify-pin -P 654321 2>wrong.txt; then fail "a wrong PIN was accepted"; fi
cat wrong.txt
grep -q '2 tries left' wrong.txt || fail "wrong PIN did not report 2 tries left"
yubico-piv-tool -a verify-pin -P 123456 # resets the counter
ok "wrong PIN refused with 2 tries left, right PIN resets the counter"

step "yubico-piv-tool -a generate -s 9c (ECCP256, touch never)"
yubico-piv-tool -a generate -s 9c -A ECCP256 --touch-policy=never -o 9c.pub
openssl pkey -pubin -in 9c.pub -noout -text | grep -q 'prime256v1' || fail "9c.pub is not P-256"
ok "generate 9c"

step "yubico-piv-tool -a attest -s 9c, chain to the test attestation CA"
yubico-piv-tool -a attest -s 9c >9c-attest.pem
yubico-piv-tool -a read-certificate -s f9 >f9.pem
openssl verify -CAfile "$VYUBIKEY_CA_CERT" -untrusted f9.pem 9c-attest.pem
diff <(openssl x509 -in 9c-attest.pem -noout -pubkey) <(openssl pkey -pubin -in 9c.pub) \
    || fail "attested key differs from the generated key"
# Yubico extension 1.3.6.1.4.1.41482.3.x: .3 firmware, .7 serial, .8 PIN+touch policy
yext() { openssl asn1parse -in "$1" | grep -A1 ":1.3.6.1.4.1.41482.3.$2\$" | sed -n 's/.*HEX DUMP\]://p'; }
[[ $(yext 9c-attest.pem 3) == 050403 ]] || fail "firmware extension is not 5.4.3"
[[ $(yext 9c-attest.pem 7) == "$(printf '02%02X%s' 3 "$(printf '%06X' "$VYUBIKEY_SERIAL")")" ]] \
    || echo "note: serial extension $(yext 9c-attest.pem 7)"
# 9c defaults to PIN always (03); generated with touch never (01)
[[ $(yext 9c-attest.pem 8) == 0301 ]] || fail "policy extension is not 03 01"
ok "attestation of 9c verifies against the CA, same public key, policy PIN always/touch never"

step "ykcs11 via pkcs11-tool: slots, token, objects"
pkcs11-tool --module "$M" -L | tee slots.txt
grep -q "YubiKey PIV #$VYUBIKEY_SERIAL" slots.txt || fail "ykcs11 token for serial $VYUBIKEY_SERIAL not listed"
pkcs11-tool --module "$M" --login --pin 123456 -O | tee objects.txt
grep -q 'Private Key Object' objects.txt || fail "ykcs11 lists no private key"
ok "ykcs11 lists the token and the 9c key"

step "ykcs11 signs with 9c (ECDSA-SHA256), openssl verifies"
head -c 1000 /dev/urandom >data.bin
# 9c is ykcs11 object ID 02
pkcs11-tool --module "$M" --login --pin 123456 --sign --id 02 --mechanism ECDSA-SHA256 \
    --signature-format openssl -i data.bin -o data.sig
openssl dgst -sha256 -verify 9c.pub -signature data.sig data.bin
ok "ykcs11 signature verifies with openssl"

step "touch policy: 9a generated with touch always"
yubico-piv-tool -a generate -s 9a -A ECCP256 --touch-policy=always -o 9a.pub
yubico-piv-tool -a attest -s 9a >9a-attest.pem
openssl verify -CAfile "$VYUBIKEY_CA_CERT" -untrusted f9.pem 9a-attest.pem
[[ $(yext 9a-attest.pem 8) == 0202 ]] || fail "9a attestation does not say PIN once / touch always"
ctl "status"
# no touch: the sign fails after the card's touch timeout
if pkcs11-tool --module "$M" --login --pin 123456 --sign --id 01 --mechanism ECDSA-SHA256 \
    --signature-format openssl -i data.bin -o 9a-untouched.sig 2>untouched.txt; then
    fail "sign on a touch-always key succeeded without touch"
fi
ok "no touch -> sign refused"
# touch armed before the sign
[[ $(ctl touch) == "ok armed" ]] || fail "control socket did not arm a touch"
pkcs11-tool --module "$M" --login --pin 123456 --sign --id 01 --mechanism ECDSA-SHA256 \
    --signature-format openssl -i data.bin -o 9a.sig
openssl dgst -sha256 -verify 9a.pub -signature 9a.sig data.bin
ok "touch given -> signature verifies"

step "hot-plug: remove and re-insert the card (control socket)"
ctl remove
for _ in $(seq 50); do opensc-tool -l | grep -q 'No .*Yubico YubiKey vpcd 00 00' && break; sleep 0.1; done
opensc-tool -l | grep -q 'No .*Yubico YubiKey vpcd 00 00' || fail "pcscd still sees a card after remove"
ok "removed: pcscd sees an empty reader"
ctl insert
for _ in $(seq 100); do opensc-tool -l | grep -q 'Yes .*Yubico YubiKey vpcd 00 00' && break; sleep 0.1; done
pkcs11-tool --module "$M" --login --pin 123456 --sign --id 02 --mechanism ECDSA-SHA256 \
    --signature-format openssl -i data.bin -o data2.sig
openssl dgst -sha256 -verify 9c.pub -signature data2.sig data.bin
ok "re-inserted: keys kept (RAM state survives removal), ykcs11 signs again"

printf '\nvalidate: %d checks passed\n' "$pass"
