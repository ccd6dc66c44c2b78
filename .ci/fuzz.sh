#!/usr/bin/env bash
# Fuzzing in CI: builds every cargo-fuzz target of fuzz/ and runs each for FUZZ_SECONDS
# (default 60) on a copy of its checked-in seed corpus (fuzz/corpus/TARGET), so the tree stays
# clean. Before that, each input of fuzz/regressions/TARGET (the inputs of known findings) is run
# once: a crash there fails the target too, but does not stop its fuzzing run. Fails if any target crashes (a panic is a failed invariant); crash inputs are copied
# to target/fuzz-artifacts/. Prints one line per target:
#
#   fuzz TARGET execs=N cov=N ft=N seconds=S
#
#   FUZZ_SECONDS=60          seconds per target
#   FUZZ_SANITIZER=none      cargo fuzz -s: none (default) or address. The workspace forbids
#                            unsafe code and the targets keep debug assertions and overflow
#                            checks; ASan costs about 10x in executions (README, "Fuzzing").
#   FUZZ_TARGETS="a b"       only these targets
#   FUZZ_WORK=DIR            keep the grown corpora in DIR/corpus/TARGET (for `cargo fuzz cmin`)
#
# Needs a nightly toolchain (installed with rustup if missing) and cargo-fuzz (installed from
# the registry if missing).
set -euo pipefail
cd "$(dirname "$0")/.."

seconds="${FUZZ_SECONDS:-60}"
sanitizer="${FUZZ_SANITIZER:-none}"

if ! cargo +nightly --version >/dev/null 2>&1; then
    rustup toolchain install nightly --profile minimal
fi
cargo +nightly --version
if ! cargo +nightly fuzz --version >/dev/null 2>&1; then
    cargo install cargo-fuzz --locked
fi
cargo +nightly fuzz --version

artifacts="$PWD/target/fuzz-artifacts"
mkdir -p "$artifacts"
if [ -n "${FUZZ_WORK:-}" ]; then
    work="$FUZZ_WORK"
    mkdir -p "$work"
else
    work="$(mktemp -d)"
    trap 'rm -rf "$work"' EXIT
fi

targets="${FUZZ_TARGETS:-$(cd fuzz && cargo +nightly fuzz list)}"
host="$(rustc +nightly -vV | sed -n 's/^host: //p')"
(cd fuzz && cargo +nightly fuzz build -s "$sanitizer")

failed=()
summary=()
for t in $targets; do
    mkdir -p "$work/corpus/$t"
    if [ -d "fuzz/corpus/$t" ]; then
        cp -R "fuzz/corpus/$t/." "$work/corpus/$t/"
    fi
    log="$work/$t.log"
    rc=0
    if [ -d "fuzz/regressions/$t" ]; then
        for input in "fuzz/regressions/$t"/*; do
            if ! "fuzz/target/$host/release/$t" "$input" >"$work/$t.regression.log" 2>&1; then
                rc=1
                cp "$input" "$artifacts/$t-regression-$(basename "$input")"
                echo "fuzz $t regression input FAILS: $input"
                grep -E 'panicked|twice|never|assert|left|right' "$work/$t.regression.log" |
                    head -n 6 | sed 's/^/  | /'
            else
                echo "fuzz $t regression input passes: $input"
            fi
        done
    fi
    start=$SECONDS
    frc=0
    "fuzz/target/$host/release/$t" "$work/corpus/$t" \
        -max_total_time="$seconds" -print_final_stats=1 -timeout=20 -rss_limit_mb=2048 \
        -artifact_prefix="$work/$t-" >"$log" 2>&1 || frc=$?
    took=$((SECONDS - start))
    execs="$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n1)"
    last="$(grep -E '^#[0-9]+.* cov: ' "$log" | tail -n1 || true)"
    cov="$(sed -n 's/.* cov: \([0-9]*\).*/\1/p' <<<"$last")"
    ft="$(sed -n 's/.* ft: \([0-9]*\).*/\1/p' <<<"$last")"
    line="fuzz $t execs=${execs:-0} cov=${cov:-0} ft=${ft:-0} seconds=$took"
    echo "$line"
    summary+=("$line")
    if [ "$rc" -ne 0 ] || [ "$frc" -ne 0 ]; then
        failed+=("$t")
    fi
    if [ "$frc" -ne 0 ]; then
        for a in "$work/$t-"*; do
            [ -e "$a" ] && cp "$a" "$artifacts/" && echo "  crash input: $artifacts/$(basename "$a")"
        done
        echo "  --- $t crashed (status $frc); end of its log:"
        grep -v -E '^#[0-9]+ +(NEW|REDUCE|pulse)' "$log" | tail -n 40 | sed 's/^/  | /'
    fi
done

echo
printf '%s\n' "${summary[@]}"
echo "fuzz artifacts: $artifacts"
if [ "${#failed[@]}" -gt 0 ]; then
    echo "fuzz: FAILED: ${failed[*]}" >&2
    exit 1
fi
