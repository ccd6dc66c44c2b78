#!/usr/bin/env bash
# The no_std proof of group-core (dependencies.md, "no_std and no alloc, proved"):
#   1. feature audit: no dependency of group-core or group-embedded is built with `std`,
#      `alloc` or `getrandom` (per package, never --workspace: features unify across a
#      workspace);
#   2. group-core (default and all features, and the feature sets a firmware picks: none,
#      aes-ccm (a light with raw record keys; its tests run on the host), aes-ccm with the
#      native schedule, + keydist-member with psk or signed, everything; also checked on the
#      host)
#      and group-embedded build for a bare-metal Cortex-M4F target, thumbv7em-none-eabihf,
#      which has no std at all;
#   3. link proof: nostd-check, a #![no_std] #![no_main] binary with panic = "abort" and no
#      global allocator, links the record path (rustc would fail with "no global memory
#      allocator found" if anything linked `alloc`) and runs the round trip (exit status 0).
# Called by .ci/run; runs on its own too: `.ci/nostd.sh`.
set -euo pipefail
cd "$(dirname "$0")/.."

TARGET=thumbv7em-none-eabihf
TARGET_DIR="${CARGO_TARGET_DIR:-$PWD/target}"

echo "== nostd: feature audit (target $TARGET)"
for package in group-core group-embedded; do
    for features in "" "--all-features"; do
        # Proc macros (defmt's, under `defmt`) run on the host at build time: not audited.
        # shellcheck disable=SC2086
        tree=$(cargo tree -p "$package" $features -e normal,no-proc-macro --target "$TARGET" \
            -f '{p} [{f}]' --prefix none)
        what="$package ${features:-(default features)}"
        if offending=$(grep -wE 'std|alloc|getrandom' <<<"$tree"); then
            echo "FAIL: $what pulls std/alloc/getrandom:" >&2
            echo "$offending" >&2
            exit 1
        fi
        crates=$(sed "s/ (\*)//" <<<"$tree" | sort -u | wc -l)
        echo "ok: $what: $crates crates, none with std, alloc or getrandom"
    done
done

# The feature sets a firmware picks (docs/embedded.md): each must build on its own, for the
# host (cargo check) and for the bare-metal target below.
FEATURE_MATRIX=(
    ""
    "aes-ccm"
    "aes-ccm,native-schedule"
    "aes-ccm,keydist-member,psk"
    "aes-ccm,keydist-member,signed"
    "aes-ccm,aes-gcm,chacha20,record-signatures,keydist-member,keydist-server,signed,psk"
)
echo "== nostd: feature matrix, host cargo check"
for features in "${FEATURE_MATRIX[@]}"; do
    echo "-- group-core --no-default-features --features '$features'"
    cargo check -p group-core --no-default-features --features "$features"
done

echo "== nostd: a light keyed with raw record keys, without the native schedule (host tests)"
cargo test -p group-core --no-default-features --features aes-ccm --test raw_keys

if rustup target list --installed 2>/dev/null | grep -qx "$TARGET"; then
    echo "== nostd: build for $TARGET"
    cargo build -p group-core --target "$TARGET"
    cargo build -p group-core --all-features --target "$TARGET"
    for features in "${FEATURE_MATRIX[@]}"; do
        echo "-- group-core --no-default-features --features '$features' --target $TARGET"
        cargo build -p group-core --no-default-features --features "$features" --target "$TARGET"
    done
    cargo build -p group-embedded --target "$TARGET"
    cargo build -p group-embedded --all-features --target "$TARGET"
else
    echo "SKIPPED: target $TARGET is not installed (rustup target add $TARGET failed);" \
        "the bare-metal builds were NOT checked" >&2
fi

echo "== nostd: link proof (nostd-check, --profile nostd: panic = abort, no allocator)"
# Once with group-core's default features, once with all of them (chacha20, psk).
for features in "" "--all-features"; do
    # shellcheck disable=SC2086
    cargo clippy -p nostd-check $features --profile nostd --all-targets -- -D warnings
    # shellcheck disable=SC2086
    cargo build -p nostd-check $features --profile nostd
    status=0
    "$TARGET_DIR/nostd/nostd-check" || status=$?
    if [ "$status" -ne 0 ]; then
        echo "FAIL: nostd-check ${features} exited with $status (see nostd_check::Failure::code)" >&2
        exit 1
    fi
    echo "ok: nostd-check ${features:-(default features)} linked without an allocator;" \
        "its round trip exited 0"
done
