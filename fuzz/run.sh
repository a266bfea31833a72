#!/usr/bin/env bash
# fuzz/run.sh (`make fuzz`): build the AFL++ driver with cargo-afl and fuzz each target for a
# bounded time, one afl-fuzz at a time, starting from the committed corpus.
#
#   FUZZ_SECONDS=60       seconds per target
#   FUZZ_TARGETS="a b"    targets to run (default: all, see `sigil-fuzz-afl --list`)
#   FUZZ_MINIMIZE=1       afterwards, add what afl-cmin keeps of the queue to fuzz/corpus/<t>/
#                         (new files only, smallest first, named by content hash, while the
#                         directory stays under FUZZ_CORPUS_KB=48 KiB; 0 leaves it alone)
#
# Installs what is missing: gcc and make (apt, root), cargo-afl (crates.io), whose install
# builds AFL++ from the sources it ships. Findings go to target/fuzz/<target>/; a crash is
# copied to fuzz/crashes/<target>/ (replayed by `cargo test -p sigil-fuzz`) and fails the run.
set -euo pipefail

CARGO_AFL_VERSION=0.18.2

say() { printf '==> %s\n' "$*"; }
die() {
    printf 'fuzz: %s\n' "$*" >&2
    exit 1
}

cd "$(dirname "$0")/.."
seconds=${FUZZ_SECONDS:-60}
[[ $seconds =~ ^[0-9]+$ && $seconds -gt 0 ]] || die "FUZZ_SECONDS=$seconds is not a positive number of seconds"

# AFL++ is built from source with the C compiler and make.
missing=()
command -v cc >/dev/null 2>&1 || missing+=(gcc)
command -v make >/dev/null 2>&1 || missing+=(make)
if ((${#missing[@]})); then
    if [[ $(id -u) -eq 0 ]]; then
        say "installing ${missing[*]}"
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}"
    else
        die "missing ${missing[*]}: run  sudo apt-get install -y ${missing[*]}"
    fi
fi

if [[ $(cargo afl --version 2>/dev/null) != *"$CARGO_AFL_VERSION"* ]]; then
    say "installing cargo-afl $CARGO_AFL_VERSION (builds AFL++)"
    cargo install cargo-afl --version "$CARGO_AFL_VERSION" --locked --force
fi
if cargo afl fuzz -h 2>&1 | grep -q 'was not built'; then
    say "building AFL++ (cargo afl config --build)"
    cargo afl config --build --force
fi

# A separate target dir: cargo-afl's RUSTFLAGS must not evict the normal build's artifacts.
export CARGO_TARGET_DIR=target/afl
say "cargo afl build -p sigil-fuzz --features afl"
cargo afl build -p sigil-fuzz --features afl --bin sigil-fuzz-afl
driver=$CARGO_TARGET_DIR/debug/sigil-fuzz-afl

# Non-interactive, on a shared machine: no UI, no CPU pinning, no frequency check.
export AFL_NO_UI=1 AFL_SKIP_CPUFREQ=1 AFL_NO_AFFINITY=1 AFL_FAST_CAL=1
# A core_pattern that pipes to a program (systemd-coredump, apport) delays crash reports;
# afl-fuzz refuses to start unless told it is fine. Crashes are still caught through waitpid.
if [[ $(cat /proc/sys/kernel/core_pattern 2>/dev/null) == '|'* ]]; then
    export AFL_I_DONT_CARE_ABOUT_MISSING_CRASHES=1
fi

# bytes DIR: total size of the files in DIR.
bytes() { find "$1" -type f -printf '%s\n' | awk '{ n += $1 } END { print n + 0 }'; }

# merge TARGET DIR: adds DIR's inputs that fuzz/corpus/TARGET lacks (by content), smallest
# first, named q-<hash>, while the directory stays under FUZZ_CORPUS_KB (default 48) KiB.
merge() {
    local t=$1 min=$2 dir=fuzz/corpus/$1 f h size added=0
    local cap=$((${FUZZ_CORPUS_KB:-48} * 1024)) total
    total=$(bytes "$dir")
    declare -A have=()
    for f in "$dir"/*; do have[$(sha1sum <"$f" | cut -c1-16)]=1; done
    while read -r size f; do
        h=$(sha1sum <"$f" | cut -c1-16)
        [[ -n ${have[$h]:-} ]] && continue
        ((total + size <= cap)) || break
        cp "$f" "$dir/q-$h"
        have[$h]=1
        total=$((total + size))
        added=$((added + 1))
    done < <(find "$min" -type f -printf '%s %p\n' | sort -n)
    say "$t: afl-cmin kept $(find "$min" -type f | wc -l) inputs; $added added to $dir ($total bytes)"
}

mapfile -t all < <("$driver" --list)
read -r -a targets <<<"${FUZZ_TARGETS:-${all[*]}}"
crashed=()
for t in "${targets[@]}"; do
    [[ " ${all[*]} " == *" $t "* ]] || die "unknown target $t (targets: ${all[*]})"
    out=target/fuzz/$t
    rm -rf "$out"
    mkdir -p "$out"
    say "fuzzing $t for ${seconds}s (findings in $out)"
    cargo afl fuzz -V "$seconds" -i "fuzz/corpus/$t" -o "$out" -- "$driver" "$t" >"$out.log" 2>&1 ||
        { tail -n 30 "$out.log" >&2; die "afl-fuzz failed for $t (log: $out.log)"; }
    stats=$out/default/fuzzer_stats
    grep -E '^(execs_done|execs_per_sec|corpus_count|saved_crashes|saved_hangs|run_time) ' "$stats" |
        tr -s ' ' | sed "s/^/    $t: /"
    shopt -s nullglob
    crashes=("$out"/default/crashes/id:*)
    shopt -u nullglob
    if ((${#crashes[@]})); then
        mkdir -p "fuzz/crashes/$t"
        for c in "${crashes[@]}"; do
            cp "$c" "fuzz/crashes/$t/$(sha1sum <"$c" | cut -c1-16)"
        done
        crashed+=("$t")
        continue
    fi
    if [[ ${FUZZ_MINIMIZE:-1} == 1 ]]; then
        min=$out/cmin
        if cargo afl cmin -i "$out/default/queue" -o "$min" -- "$driver" "$t" >"$out.cmin.log" 2>&1; then
            merge "$t" "$min"
        else
            say "$t: afl-cmin failed (log: $out.cmin.log); corpus unchanged"
        fi
    fi
done
if ((${#crashed[@]})); then
    die "crashes in: ${crashed[*]}; inputs copied to fuzz/crashes/<target>/ (cargo test -p sigil-fuzz replays them)"
fi
say "fuzzing done: no crashes"
