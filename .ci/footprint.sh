#!/usr/bin/env bash
# Firmware footprint gate (issue 12). Builds the images of the `footprint` crate for
# thumbv7em-none-eabihf with the size profile (`[profile.firmware]`: opt-level z, fat LTO, one
# codegen unit, panic abort): `baseline` (no library), `record`, `member-psk`, `member-signed`;
# runs each under QEMU mps2-an386 (real work: the GnuTLS CCM_8 known answers, seal and open; the
# members join through a key bundle made on the host by the key server, follow a rekey, seal
# and open), with the stack painted around every library call; prints one line per image
#
#   footprint IMAGE text=BYTES data=BYTES bss=BYTES stack=BYTES ram_group32=BYTES elf=PATH
#
# and fails if a figure is over its ceiling. Each figure has a goal (issue 12) and a ceiling
# (what main achieves today, the ratchet): over the ceiling fails, over the goal is reported.
# Flash is compared as the image's text minus the baseline's. docs/footprint.md has the table.
#
#   .ci/footprint.sh              build, run, print, gate
#   OUT=dir .ci/footprint.sh      where the ELFs, QEMU logs and footprint.txt go
set -euo pipefail
cd "$(dirname "$0")/.."
export DEBIAN_FRONTEND=noninteractive
TARGET=thumbv7em-none-eabihf
log() { printf '\n== footprint: %s\n' "$*"; }

# Goals and ceilings, in bytes. text is over the baseline; stack is the deepest library call
# of the image (seal, open; for members also join and rekey); ram_group32 is size_of of the
# image's context for 32 senders (the goal applies to the record layer's Group).
declare -A GOAL_TEXT=([record]=12288 [member-psk]=20480 [member-signed]=46080)
declare -A CEIL_TEXT=([record]=13720 [member-psk]=29156 [member-signed]=52948)
declare -A GOAL_STACK=([record]=1024 [member-psk]=4096 [member-signed]=4096)
declare -A CEIL_STACK=([record]=860 [member-psk]=2320 [member-signed]=4096)
declare -A GOAL_RAM=([record]=1536)
declare -A CEIL_RAM=([record]=1904 [member-psk]=2576 [member-signed]=2728)

log "host: transcripts current, images' work passes"
cargo test -p footprint --features psk

if ! rustup target list --installed | grep -qx "$TARGET"; then
    rustup target add "$TARGET"
fi
# shellcheck source=.ci/embedded-tools.sh
. .ci/embedded-tools.sh

TDIR=$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')
OUT=${OUT:-$TDIR/footprint}
mkdir -p "$OUT"

log "build (profile firmware; the size cfgs of .cargo/config.toml)"
# One build per feature set: a build unifies features, and each image links exactly what it
# runs (footprint/Cargo.toml): baseline and record: group-core's `aes-ccm`; member-psk: + the
# member in PSK mode; member-signed: + the member in signed mode.
build_image() { # features, binaries...
    local features=$1
    shift
    local bins=()
    for b in "$@"; do bins+=(--bin "$b"); done
    cargo build -p footprint --profile firmware --target "$TARGET" --no-default-features \
        ${features:+--features "$features"} "${bins[@]}"
    for b in "$@"; do cp "$TDIR/$TARGET/firmware/$b" "$OUT/$b.elf"; done
}
build_image "" baseline record
build_image psk member-psk
build_image signed member-signed

log "run under QEMU mps2-an386"
failed=0
: > "$OUT/footprint.txt"
base_text=0
data_sum=""
for img in baseline record member-psk member-signed; do
    elf="$OUT/$img.elf"
    rc=0
    timeout 120 qemu-system-arm -M mps2-an386 -nographic -monitor none -serial none \
        -semihosting-config enable=on,target=native -kernel "$elf" > "$OUT/qemu-$img.log" 2>&1 < /dev/null || rc=$?
    cat "$OUT/qemu-$img.log"
    run=$(grep "^footprint-run image=$img ok " "$OUT/qemu-$img.log" || true)
    if [ "$rc" != 0 ] || [ -z "$run" ]; then
        echo "FAIL: $img exited $rc without its ok line" >&2
        failed=1
        continue
    fi
    field() { sed -n "s/.* $1=\([0-9a-f]*\).*/\1/p" <<<"$run"; }
    stack=$(field stack); ram=$(field ram_group32); sum=$(field data)
    if [ -n "$data_sum" ] && [ "$sum" != "$data_sum" ]; then
        echo "FAIL: $img links different known-answer data ($sum, baseline $data_sum)" >&2
        failed=1
    fi
    data_sum=$sum
    read -r text data bss _ < <("$SIZE" "$elf" | tail -1)
    rel=$(realpath --relative-to=. "$elf")
    echo "footprint $img text=$text data=$data bss=$bss stack=$stack ram_group32=$ram elf=$rel" | tee -a "$OUT/footprint.txt"
    if [ "$img" = baseline ]; then
        base_text=$text
        continue
    fi
    lib_text=$((text - base_text))
    check() { # name value goal ceiling
        local name=$1 value=$2 goal=${3:-} ceil=$4
        if [ "$value" -gt "$ceil" ]; then
            echo "FAIL: $img $name $value is over its ceiling $ceil" >&2
            failed=1
        fi
        if [ -n "$goal" ] && [ "$value" -gt "$goal" ]; then
            echo "  over goal: $img $name $value > $goal (by $((value - goal)))"
        fi
    }
    echo "  $img: library text $lib_text (image $text - baseline $base_text)"
    check text "$lib_text" "${GOAL_TEXT[$img]}" "${CEIL_TEXT[$img]}"
    check stack "$stack" "${GOAL_STACK[$img]}" "${CEIL_STACK[$img]}"
    check ram_group32 "$ram" "${GOAL_RAM[$img]:-}" "${CEIL_RAM[$img]}"
done

if [ "$failed" != 0 ]; then
    echo "footprint: FAILED" >&2
    exit 1
fi
echo "footprint: every image ran; no figure over its ceiling (figures: $OUT/footprint.txt)"
