# demo-tuf.sh: helpers for the TUF 1.0 act of scripts/demo.sh (sourced there;
# uses its die, show, alive and pick_port). python-tuf runs from the venv the
# end-to-end tests use (target/tuf-venv: tuf 7.0.0 and securesystemslib[crypto]),
# made here when it is missing.
# shellcheck shell=bash

TUF_VENV=$ROOT_DIR/target/tuf-venv
TUF_PY=$TUF_VENV/bin/python
HTTP_PID=
HTTP_PORT=

# tuf_venv: python-tuf in $TUF_VENV, made (one pip install from PyPI) unless
# it already imports.
tuf_venv() {
    local check='import tuf.api.metadata, tuf.ngclient, cryptography'
    if [[ -x $TUF_PY ]] && "$TUF_PY" -c "$check" >/dev/null 2>&1; then
        printf '(python-tuf is ready in target/tuf-venv)\n'
        return 0
    fi
    command -v python3 >/dev/null 2>&1 || die "python3 not found: run 'make deps'"
    printf 'Making a Python venv with python-tuf 7.0.0 in target/tuf-venv (once; pip downloads from PyPI)...\n'
    show python3 -m venv "$TUF_VENV"
    python3 -m venv "$TUF_VENV" ||
        die "python3 -m venv failed: install python3-venv ('make deps')"
    show "$TUF_VENV/bin/pip" install --quiet tuf==7.0.0 'securesystemslib[crypto]'
    "$TUF_VENV/bin/pip" install --quiet --disable-pip-version-check tuf==7.0.0 'securesystemslib[crypto]' ||
        die "pip could not install python-tuf (is PyPI reachable?)"
    "$TUF_PY" -c "$check" || die "python-tuf does not import in $TUF_VENV"
}

# serve_repo DIR: python's http.server for DIR on a free loopback port; sets
# HTTP_PID and HTTP_URL.
serve_repo() {
    local dir=$1 port _
    pick_port HTTP_PORT
    port=$HTTP_PORT
    show "$TUF_PY" -m http.server --bind 127.0.0.1 "$port" --directory "$dir" '&'
    "$TUF_PY" -m http.server --bind 127.0.0.1 "$port" --directory "$dir" \
        >"$DIR/http-server.log" 2>&1 &
    HTTP_PID=$!
    for _ in $(seq 100); do
        alive "$HTTP_PID" || die "http.server exited (see \$DIR/http-server.log)"
        if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
            HTTP_URL=http://127.0.0.1:$port
            printf 'serving $DIR/tuf-repo at %s (pid %s)\n' "$HTTP_URL" "$HTTP_PID"
            return 0
        fi
        sleep 0.1
    done
    die "http.server did not listen on 127.0.0.1:$port within 10 s"
}

# store_target REPO NAME FILE: put FILE where a consistent-snapshot client
# fetches target NAME: targets/<dir>/<sha256>.<base name>.
store_target() {
    local repo=$1 name=$2 file=$3 dir='' base
    base=${name##*/}
    [[ $name == */* ]] && dir=${name%/*}/
    mkdir -p "$repo/targets/$dir"
    cp "$file" "$repo/targets/$dir$(sha256_of "$file").$base"
}
