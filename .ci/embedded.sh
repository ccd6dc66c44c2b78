#!/usr/bin/env bash
# Embedded checks (issue 5): group-embedded host tests, bare-metal builds, firmware images per
# configuration with their sizes, and the self-test on an emulated Cortex-M4 (QEMU mps2-an386).
#
# Installs what it needs: the thumbv7em-none-eabihf target (rustup), qemu-system-arm (Debian;
# from bookworm-backports when the machine's QEMU tools come from there), llvm-size (Debian's
# llvm, or rustup's llvm-tools). Writes the size table to $OUT/footprint.txt
# (OUT defaults to <target dir>/embedded-ci).
set -euo pipefail
cd "$(dirname "$0")/.."

TARGET=thumbv7em-none-eabihf
log() { printf '\n== embedded: %s\n' "$*"; }
export DEBIAN_FRONTEND=noninteractive

# ---------------------------------------------------------------------------------------------
log "format of the embedded crates"
rustfmt --edition 2024 --check $(git ls-files 'group-embedded/*.rs' 'firmware/*.rs')

log "host tests: flash store (power cuts at every step), smoltcp group sockets, firmware self-test"
cargo test -p group-embedded --features embassy
cargo test -p firmware --features net,signatures,keydist
FIRMWARE_INJECT_FAILURE=1 cargo test -p firmware --lib  # the self-test sees a wrong answer
cargo clippy -p group-embedded -p firmware --all-targets --features group-embedded/embassy,firmware/net,firmware/signatures,firmware/keydist -- -D warnings
cargo build -p group-embedded --no-default-features

# ---------------------------------------------------------------------------------------------
log "bare-metal target $TARGET"
if ! rustup target list --installed | grep -qx "$TARGET"; then
    if ! rustup target add "$TARGET"; then
        echo "SKIP: the $TARGET target can't be installed on this machine; bare-metal builds," \
             "firmware sizes and the QEMU run were NOT checked" >&2
        exit 0
    fi
fi
cargo build -p group-core -p group-embedded --target "$TARGET" --features group-embedded/embassy
cargo clippy -p group-embedded -p firmware --target "$TARGET" --features group-embedded/embassy,firmware/net,firmware/signatures,firmware/keydist -- -D warnings
audit=$(cargo tree -p firmware -e normal --target "$TARGET" --features net,signatures,keydist \
    -f '{p} [{f}]' --prefix none | grep -wE 'std|alloc|getrandom' || true)
if [ -n "$audit" ]; then
    echo "FAIL: std/alloc/getrandom in the firmware's dependency graph:" >&2
    echo "$audit" >&2
    exit 1
fi

# ---------------------------------------------------------------------------------------------
# shellcheck source=.ci/embedded-tools.sh
. .ci/embedded-tools.sh

# ---------------------------------------------------------------------------------------------
TDIR=$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')
OUT=${OUT:-$TDIR/embedded-ci}
mkdir -p "$OUT"
ELF="$TDIR/$TARGET/firmware/firmware"

run_qemu() { # elf, log file; prints QEMU's exit status
    local rc=0
    timeout 120 qemu-system-arm -M mps2-an386 -nographic -monitor none -serial none \
        -semihosting-config enable=on,target=native -kernel "$1" > "$2" 2>&1 < /dev/null || rc=$?
    echo "$rc"
}

log "firmware images (profile firmware: opt-level z, lto, panic abort) and QEMU runs"
printf '%-24s %8s %6s %6s %9s\n' configuration text data bss "static RAM" > "$OUT/footprint.txt"
failed=0
for cfg in record signatures keydist net net+signatures+keydist; do
    case $cfg in
        record) feats="" ;;
        signatures) feats="--features signatures" ;;
        keydist) feats="--features keydist" ;;
        net) feats="--features net" ;;
        net+signatures+keydist) feats="--features net,signatures,keydist" ;;
    esac
    # shellcheck disable=SC2086
    cargo build -p firmware --profile firmware --target "$TARGET" $feats
    cp "$ELF" "$OUT/firmware-$cfg.elf"
    read -r text data bss _ < <("$SIZE" "$OUT/firmware-$cfg.elf" | tail -1)
    printf '%-24s %8s %6s %6s %9s\n' "$cfg" "$text" "$data" "$bss" "$((data + bss))" >> "$OUT/footprint.txt"
    rc=$(run_qemu "$OUT/firmware-$cfg.elf" "$OUT/qemu-$cfg.log")
    cat "$OUT/qemu-$cfg.log"
    if [ "$rc" = 0 ] && grep -q '^PASS ' "$OUT/qemu-$cfg.log"; then
        echo "qemu $cfg: exit 0, PASS"
    else
        echo "FAIL: qemu $cfg exited $rc" >&2
        failed=1
    fi
done

log "a failing image must be seen failing"
FIRMWARE_INJECT_FAILURE=1 cargo build -p firmware --profile firmware --target "$TARGET"
cp "$ELF" "$OUT/firmware-inject-failure.elf"
rc=$(run_qemu "$OUT/firmware-inject-failure.elf" "$OUT/qemu-inject-failure.log")
cat "$OUT/qemu-inject-failure.log"
if [ "$rc" != 0 ] && grep -q '^FAIL Prf code 10' "$OUT/qemu-inject-failure.log"; then
    echo "qemu inject-failure: exit $rc, failure reported as expected"
else
    echo "FAIL: the deliberately failing image exited $rc without reporting its failure" >&2
    failed=1
fi

log "sizes ($SIZE, Berkeley format; static RAM = data + bss)"
cat "$OUT/footprint.txt"
grep -h '^size_of' "$OUT/qemu-net.log" || true

if [ "$failed" != 0 ]; then
    echo "embedded: FAILED" >&2
    exit 1
fi
echo "embedded: all checks passed"
