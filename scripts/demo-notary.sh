# demo-notary.sh: helpers for scripts/demo.sh to run the real notary-signer and
# notary-server (Debian's notary 0.7.0) on loopback, with a throwaway PKI.
#
# Sourced by demo.sh, not run on its own: it uses demo.sh's DIR, die, show
# and alive, and sets the globals NOTARY_DIR, CA, SIGNER_PORT, SERVER_PORT,
# NOTARY_URL and demo.sh's SIGNER_PID and SERVER_PID (which its EXIT trap
# stops). Everything binds
# 127.0.0.1 only, both daemons keep their data in memory, and every process is
# started here in the background so that demo.sh can stop it by its pid.
# shellcheck shell=bash
# Messages print a literal "$DIR" for the scratch directory on purpose:
# shellcheck disable=SC2016

# Both daemons read any NOTARY_SERVER_* / NOTARY_SIGNER_* variable as a config
# override, so they start with an empty environment plus these.
NOTARY_ENV=(env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin)
NOTARY_DIR=$DIR/notary
CA=$NOTARY_DIR/pki/ca.crt
SIGNER_PORT=
SERVER_PORT=
NOTARY_URL=
SIGNER_ALIAS=demo
USED_PORTS=" "

# ossl ARGS...: show and run openssl in the PKI directory, its chatter kept in
# $NOTARY_DIR/openssl.log and shown only if it fails.
ossl() {
    show openssl "$@"
    if ! (cd "$NOTARY_DIR/pki" && openssl "$@") >>"$NOTARY_DIR/openssl.log" 2>&1 </dev/null; then
        tail -n 20 "$NOTARY_DIR/openssl.log" >&2
        die "the command above failed"
    fi
}

# issue NAME CN EKU [SAN]: an ECDSA P-256 key (PKCS#8, 0600) and a one-year
# certificate for it signed by the demo CA.
issue() {
    local name=$1 cn=$2 eku=$3 san=${4:-} pki=$NOTARY_DIR/pki
    printf '# %s: CN=%s, %s%s\n' "$name" "$cn" "$eku" "${san:+, $san}"
    ossl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$name.key"
    chmod 600 "$pki/$name.key"
    ossl req -new -key "$name.key" -subj "/O=sigil demo/CN=$cn" -out "$name.csr"
    {
        echo "basicConstraints = critical, CA:FALSE"
        echo "keyUsage = critical, digitalSignature"
        echo "extendedKeyUsage = $eku"
        echo "subjectKeyIdentifier = hash"
        echo "authorityKeyIdentifier = keyid, issuer"
        if [[ -n $san ]]; then echo "subjectAltName = $san"; fi
    } >"$pki/$name.ext"
    ossl x509 -req -in "$name.csr" -CA ca.crt -CAkey ca.key -CAcreateserial -days 365 \
        -sha256 -extfile "$name.ext" -out "$name.crt"
    rm -f "$pki/$name.csr" "$pki/$name.ext"
}

# make_pki: CA, notary-server's HTTPS certificate, notary-signer's gRPC
# certificate, and the client certificate notary-server shows notary-signer.
make_pki() {
    mkdir -p "$NOTARY_DIR/pki"
    printf '$ cd $DIR/notary/pki\n'
    printf '# ca: a throwaway CA, one year\n'
    ossl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out ca.key
    chmod 600 "$NOTARY_DIR/pki/ca.key"
    ossl req -x509 -new -key ca.key -sha256 -days 365 \
        -subj "/O=sigil demo/CN=sigil demo throwaway CA" \
        -addext "basicConstraints=critical,CA:TRUE" \
        -addext "keyUsage=critical,keyCertSign,cRLSign" -out ca.crt
    issue server notary-server serverAuth "IP:127.0.0.1, DNS:localhost"
    issue signer notary-signer serverAuth "IP:127.0.0.1, DNS:localhost"
    issue client notary-server-client clientAuth
    ossl verify -CAfile ca.crt server.crt signer.crt client.crt
    printf '(server.crt, signer.crt, client.crt: OK against ca.crt; keys are 0600 PKCS#8)\n'
}

# pick_port VAR: sets VAR to a loopback port below the kernel's ephemeral
# range that nothing answers on right now and that this run has not used.
# Starting a daemon on it can still lose a race; start_notary_* then picks
# another. (Not in $(...): it must record the port in USED_PORTS.)
pick_port() {
    local -n picked=$1
    local low=20000 high port _
    read -r high _ </proc/sys/net/ipv4/ip_local_port_range || high=32768
    ((high > low + 1000)) || high=$((low + 10000))
    for _ in $(seq 50); do
        port=$((low + RANDOM % (high - low)))
        [[ $USED_PORTS == *" $port "* ]] && continue
        # A refused connection means no listener on that port.
        if ! (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
            USED_PORTS+="$port "
            # shellcheck disable=SC2034 # a nameref: sets the caller's variable
            picked=$port
            return 0
        fi
    done
    die "no free loopback port found between $low and $high"
}

# https_get PORT PATH [CLIENT_CERT CLIENT_KEY]: GET over TLS with openssl,
# checking the certificate against the demo CA and 127.0.0.1; prints the
# status code on the first line, then the body.
https_get() {
    local port=$1 path=$2 response status
    local tls=(openssl s_client -quiet -connect "127.0.0.1:$port" -CAfile "$CA"
        -verify_return_error -verify_ip 127.0.0.1)
    response=$(printf 'GET %s HTTP/1.0\r\nHost: 127.0.0.1:%s\r\n\r\n' "$path" "$port" |
        timeout 10 "${tls[@]}" 2>/dev/null) || return 1
    status=${response%%$'\r'*}
    [[ $status =~ ^HTTP/1\.[01]\ ([0-9]{3}) ]] || return 1
    printf '%s\n%s\n' "${BASH_REMATCH[1]}" "${response#*$'\r\n\r\n'}"
}

# tls_ok PORT [s_client args]: a TLS handshake that verifies against the CA.
tls_ok() {
    local port=$1
    shift
    timeout 10 openssl s_client -connect "127.0.0.1:$port" -CAfile "$CA" \
        -verify_return_error -verify_ip 127.0.0.1 "$@" </dev/null >/dev/null 2>&1
}

# lost_port_race LOG: the daemon exited because its port was taken after all.
lost_port_race() {
    grep -q 'address already in use' "$1" 2>/dev/null
}

# reap PID: collect an exited child's status, never failing.
reap() {
    wait "$1" 2>/dev/null || true
}

write_signer_config() {
    cat >"$NOTARY_DIR/signer.json" <<EOF
{
  "server": {
    "grpc_addr": "127.0.0.1:$SIGNER_PORT",
    "tls_cert_file": "$NOTARY_DIR/pki/signer.crt",
    "tls_key_file": "$NOTARY_DIR/pki/signer.key",
    "client_ca_file": "$CA"
  },
  "logging": { "level": "info" },
  "storage": { "backend": "memory", "default_alias": "$SIGNER_ALIAS" }
}
EOF
}

write_server_config() {
    cat >"$NOTARY_DIR/server.json" <<EOF
{
  "server": {
    "http_addr": "127.0.0.1:$SERVER_PORT",
    "tls_cert_file": "$NOTARY_DIR/pki/server.crt",
    "tls_key_file": "$NOTARY_DIR/pki/server.key"
  },
  "trust_service": {
    "type": "remote",
    "hostname": "127.0.0.1",
    "port": "$SIGNER_PORT",
    "key_algorithm": "ecdsa",
    "tls_ca_file": "$CA",
    "tls_client_cert": "$NOTARY_DIR/pki/client.crt",
    "tls_client_key": "$NOTARY_DIR/pki/client.key"
  },
  "logging": { "level": "info" },
  "storage": { "backend": "memory" }
}
EOF
}

# start_notary_signer: notary-signer on a free port, ready once it completes a
# mutual TLS handshake with notary-server's client certificate.
start_notary_signer() {
    local log=$NOTARY_DIR/notary-signer.log attempt ready pass_var
    local pass_file=$NOTARY_DIR/signer-alias.pass
    # The passphrase for the signer's key alias, NOTARY_SIGNER_<ALIAS>. The
    # memory store keeps keys unencrypted in RAM, but the signer insists on it.
    (umask 077 && openssl rand -hex 16 >"$pass_file")
    pass_var=NOTARY_SIGNER_${SIGNER_ALIAS^^}
    for attempt in 1 2 3 4 5; do
        pick_port SIGNER_PORT
        write_signer_config
        if ((attempt == 1)); then
            show cat "$NOTARY_DIR/signer.json"
            sed "s|$DIR|\$DIR|g" "$NOTARY_DIR/signer.json"
            printf '$ env -i PATH=... %s="$(cat $DIR/notary/signer-alias.pass)" \\\n' "$pass_var"
            printf '    notary-signer -config $DIR/notary/signer.json > $DIR/notary/notary-signer.log 2>&1 &\n'
        fi
        "${NOTARY_ENV[@]}" HOME="$NOTARY_DIR" "$pass_var=$(<"$pass_file")" \
            notary-signer -config "$NOTARY_DIR/signer.json" >"$log" 2>&1 </dev/null &
        SIGNER_PID=$!
        ready=
        for _ in $(seq 100); do
            alive "$SIGNER_PID" || break
            if tls_ok "$SIGNER_PORT" -cert "$NOTARY_DIR/pki/client.crt" \
                -key "$NOTARY_DIR/pki/client.key"; then
                ready=yes
                break
            fi
            sleep 0.1
        done
        [[ -n $ready ]] && break
        if ! alive "$SIGNER_PID" && lost_port_race "$log"; then
            reap "$SIGNER_PID"
            SIGNER_PID=
            printf '(port %s was taken after all; trying another)\n' "$SIGNER_PORT"
            continue
        fi
        tail -n 20 "$log" >&2
        die "notary-signer did not come up on 127.0.0.1:$SIGNER_PORT (log above)"
    done
    [[ -n $ready ]] || die "notary-signer lost the race for a free port 5 times"
    printf 'notary-signer pid %s: gRPC over mutual TLS on 127.0.0.1:%s (handshake with the client certificate OK)\n' \
        "$SIGNER_PID" "$SIGNER_PORT"
}

# start_notary_server: notary-server on a free port, trust service = the
# signer; ready once GET /v2/ and the health check answer 200 and it can get
# a timestamp key made by notary-signer (its health check only starts
# checking the signer 10 s after start-up).
start_notary_server() {
    local log=$NOTARY_DIR/notary-server.log attempt ready reply
    for attempt in 1 2 3 4 5; do
        pick_port SERVER_PORT
        write_server_config
        if ((attempt == 1)); then
            show cat "$NOTARY_DIR/server.json"
            sed "s|$DIR|\$DIR|g" "$NOTARY_DIR/server.json"
            printf '$ env -i PATH=... notary-server -config $DIR/notary/server.json > $DIR/notary/notary-server.log 2>&1 &\n'
        fi
        "${NOTARY_ENV[@]}" HOME="$NOTARY_DIR" \
            notary-server -config "$NOTARY_DIR/server.json" >"$log" 2>&1 </dev/null &
        SERVER_PID=$!
        ready=
        for _ in $(seq 100); do
            alive "$SERVER_PID" || break
            if tls_ok "$SERVER_PORT" && reply=$(https_get "$SERVER_PORT" /v2/) &&
                [[ ${reply%%$'\n'*} == 200 ]]; then
                ready=yes
                break
            fi
            sleep 0.1
        done
        [[ -n $ready ]] && break
        if ! alive "$SERVER_PID" && lost_port_race "$log"; then
            reap "$SERVER_PID"
            SERVER_PID=
            printf '(port %s was taken after all; trying another)\n' "$SERVER_PORT"
            continue
        fi
        tail -n 20 "$log" >&2
        die "notary-server did not serve https://127.0.0.1:$SERVER_PORT/v2/ (log above)"
    done
    [[ -n $ready ]] || die "notary-server lost the race for a free port 5 times"
    NOTARY_URL=https://127.0.0.1:$SERVER_PORT
    printf 'notary-server pid %s: %s (TLS handshake verified against the demo CA)\n' \
        "$SERVER_PID" "$NOTARY_URL"

    reply=$(https_get "$SERVER_PORT" /_notary_server/health) ||
        die "GET /_notary_server/health failed"
    printf 'GET /_notary_server/health -> %s %s\n' "${reply%%$'\n'*}" "${reply#*$'\n'}"
    [[ ${reply%%$'\n'*} == 200 ]] || die "notary-server is not healthy"

    # notary-server -> notary-signer, end to end: asking for a collection's
    # timestamp key makes notary-server call the signer's CreateKey over mTLS.
    local probe=/v2/example.com/readiness-probe/_trust/tuf/timestamp.key
    reply=
    for _ in $(seq 50); do
        alive "$SERVER_PID" || break
        reply=$(https_get "$SERVER_PORT" "$probe") || reply=
        [[ ${reply%%$'\n'*} == 200 ]] && break
        sleep 0.2
    done
    [[ ${reply%%$'\n'*} == 200 && $reply == *'"keytype":"ecdsa"'* ]] || {
        tail -n 20 "$log" >&2
        die "notary-server could not get a key from notary-signer: ${reply:-no answer}"
    }
    printf 'GET %s -> 200\n%s\n' "$probe" "${reply#*$'\n'}"
    printf '(notary-server got that key from notary-signer over mutual TLS: the chain works)\n'
}
