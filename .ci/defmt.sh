#!/usr/bin/env bash
# Firmware logging with defmt (issue 15): builds the firmware image with feature `defmt`
# (DEFMT_LOG=debug) for thumbv7em-none-eabihf, runs it in QEMU mps2-an386 capturing the raw
# defmt frames it writes over semihosting, decodes them with `defmt-print -e <ELF>`, and checks
# the decoded lines: epochs made current, records dropped with their reason (the self-test's
# replays and forgeries), and the self-test's PASS.
#
# Installs what it needs: the target (rustup), qemu-system-arm and llvm-size (.ci/embedded-tools.sh),
# defmt-print (`cargo install defmt-print --locked`, about DEFMT_PRINT_INSTALL_TIME below).
# Writes the frames and the decoded log to $OUT (defaults to <target dir>/defmt-ci).
set -euo pipefail
cd "$(dirname "$0")/.."

TARGET=thumbv7em-none-eabihf
DEFMT_PRINT_VERSION=1.2.0
log() { printf '\n== defmt: %s\n' "$*"; }
export DEBIAN_FRONTEND=noninteractive

if ! rustup target list --installed | grep -qx "$TARGET"; then
    rustup target add "$TARGET"
fi
# shellcheck source=.ci/embedded-tools.sh
. .ci/embedded-tools.sh

log "tools: defmt-print"
if ! command -v defmt-print >/dev/null; then
    start=$(date +%s)
    cargo install defmt-print --locked --version "$DEFMT_PRINT_VERSION"
    echo "defmt-print installed in $(($(date +%s) - start)) s"
fi
defmt-print --version

TDIR=$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')
OUT=${OUT:-$TDIR/defmt-ci}
mkdir -p "$OUT"
ELF="$TDIR/$TARGET/firmware/firmware"

log "firmware image with defmt (DEFMT_LOG=debug)"
DEFMT_LOG=debug cargo build -p firmware --profile firmware --target "$TARGET" --features defmt
cp "$ELF" "$OUT/firmware-defmt.elf"
"$SIZE" "$OUT/firmware-defmt.elf"

log "QEMU run (frames on semihosting stdout) and decoding"
rc=0
timeout 120 qemu-system-arm -M mps2-an386 -nographic -monitor none -serial none \
    -semihosting-config enable=on,target=native -kernel "$OUT/firmware-defmt.elf" \
    > "$OUT/frames.bin" 2> "$OUT/qemu.err" < /dev/null || rc=$?
cat "$OUT/qemu.err"
echo "qemu exited $rc; $(wc -c < "$OUT/frames.bin") bytes of defmt frames"
defmt-print -e "$OUT/firmware-defmt.elf" --log-format '{L} {s}' < "$OUT/frames.bin" > "$OUT/decoded.log"
cat "$OUT/decoded.log"

failed=0
expect() { # description, extended regex, minimum count
    local n
    n=$(grep -cE "$2" "$OUT/decoded.log" || true)
    if [ "$n" -ge "$3" ]; then
        echo "ok: $1 ($n lines)"
    else
        echo "FAIL: $1: $n lines match /$2/, expected at least $3" >&2
        failed=1
    fi
}
expect "self-test header" '^dtls-group firmware self-test' 1
expect "epoch made current" '^INFO +epoch 1 current$' 1
expect "replay dropped with its reason" '^DEBUG +record dropped: Replay$' 1
expect "forgery dropped with its reason" '^DEBUG +record dropped: AuthenticationFailed$' 1
expect "self-test passed" '^PASS Summary ' 1
if [ "$rc" != 0 ]; then
    echo "FAIL: qemu exited $rc" >&2
    failed=1
fi
if [ "$failed" != 0 ]; then
    echo "defmt: FAILED" >&2
    exit 1
fi
echo "defmt: all checks passed"
