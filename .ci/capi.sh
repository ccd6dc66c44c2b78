#!/usr/bin/env bash
# The C API (issue 13): the header is current, then the host C test programs, compiled with
# gcc -std=c99 -Wall -Wextra -Werror against the staticlib (include/dtls_group.h), run plainly,
# under valgrind (no error, no leak) and built with -fsanitize=address,undefined; the example
# of docs/c-api.md, extracted from the doc, compiles and runs; its light example compiles and
# links; the live tests (group-ffi/c/tests/live.sh: a C program with `dtls-group listen` / `send`
# and a C member with a real `dtls-group keyserver`, on loopback multicast). Then the C firmware: the
# thumbv7em staticlib (size profile, AES-CCM only) linked into group-ffi/c/firmware/main.c by
# Debian's arm-none-eabi-gcc and newlib, run under qemu-system-arm -M mps2-an386 (the GnuTLS
# CCM_8 known answers and a seal/open round trip; a deliberately broken build must fail), its
# sizes printed as
#
#   footprint c-firmware text=BYTES data=BYTES bss=BYTES stack=BYTES ram_group32=BYTES elf=PATH
#
#   .ci/capi.sh setup     install gcc, valgrind, gcc-arm-none-eabi, newlib (apt), the target
#   .ci/capi.sh           setup, then build and run everything
set -euo pipefail
cd "$(dirname "$0")/.."
export DEBIAN_FRONTEND=noninteractive
log() { printf '\n== capi: %s\n' "$*"; }

setup() {
    local missing=()
    command -v gcc >/dev/null || missing+=(gcc libc6-dev)
    command -v valgrind >/dev/null || missing+=(valgrind)
    command -v arm-none-eabi-gcc >/dev/null || missing+=(gcc-arm-none-eabi)
    [ -e /usr/lib/arm-none-eabi/newlib/libc_nano.a ] || missing+=(libnewlib-arm-none-eabi)
    if [ "${#missing[@]}" -gt 0 ]; then
        apt-get update -q
        apt-get install -y -q --no-install-recommends "${missing[@]}"
    fi
    gcc --version | sed -n 1p
    valgrind --version
    arm-none-eabi-gcc --version | sed -n 1p
    rustup target list --installed | grep -qx thumbv7em-none-eabihf ||
        rustup target add thumbv7em-none-eabihf
}

if [ "${1:-}" = setup ]; then
    setup
    exit 0
fi
setup

log "header: regenerating include/dtls_group.h with cbindgen changes nothing; unit tests"
cargo test -p group-ffi

log "header: compiles alone as strict C99 and C11 (-pedantic -Werror)"
for std in c99 c11; do
    printf '#include "dtls_group.h"\nint main(void) { return DG_OK; }\n' |
        gcc -std=$std -pedantic -Wall -Wextra -Werror -Iinclude -x c - -o /dev/null
done

log "staticlib (dev profile) and cdylib"
cargo build -p group-ffi
TDIR=$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')
LIB="$TDIR/debug/libdtls_group.a"
test -f "$TDIR/debug/libdtls_group.so"
# What the staticlib needs from the system (rustc --print native-static-libs on Linux).
SYSLIBS=(-lgcc_s -lutil -lrt -lpthread -lm -ldl -lc)
OUT="$TDIR/capi"
mkdir -p "$OUT"
CFLAGS=(-std=c99 -Wall -Wextra -Werror -g -Iinclude)

run_program() { # name source...
    local name=$1
    shift
    log "$name: gcc -std=c99 -Wall -Wextra -Werror"
    gcc "${CFLAGS[@]}" "$@" "$LIB" "${SYSLIBS[@]}" -o "$OUT/$name"
    "$OUT/$name"
    log "$name: valgrind"
    valgrind -q --error-exitcode=99 --leak-check=full --errors-for-leak-kinds=definite,indirect \
        "$OUT/$name" > "$OUT/$name.valgrind.log"
    tail -n 3 "$OUT/$name.valgrind.log"
    log "$name: -fsanitize=address,undefined"
    gcc "${CFLAGS[@]}" -fsanitize=address,undefined -fno-sanitize-recover=all "$@" "$LIB" \
        "${SYSLIBS[@]}" -o "$OUT/$name-asan"
    ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=halt_on_error=1 "$OUT/$name-asan" > "$OUT/$name.asan.log"
    tail -n 1 "$OUT/$name.asan.log"
}

run_program test_group group-ffi/c/tests/test_group.c

log "test_group against the shared library (cdylib)"
gcc "${CFLAGS[@]}" group-ffi/c/tests/test_group.c -L"$TDIR/debug" -ldtls_group -o "$OUT/test_group_shared"
# No pipe into grep -q: under pipefail ldd can die of SIGPIPE when grep exits first.
ldd_out=$(ldd "$OUT/test_group_shared")
grep -q "libdtls_group.so" <<<"$ldd_out"
LD_LIBRARY_PATH="$TDIR/debug" "$OUT/test_group_shared" | tail -n 1

log "docs/c-api.md: the example, extracted from the doc"
sed -n '/<!-- c-api-example:begin -->/,/<!-- c-api-example:end -->/p' docs/c-api.md |
    sed '1,2d;$d' | sed '$d' > "$OUT/example.c"
test -s "$OUT/example.c"
run_program example "$OUT/example.c"

log "docs/c-api.md: the light example (joins a key server), extracted, compiled, linked, run"
sed -n '/<!-- c-api-light:begin -->/,/<!-- c-api-light:end -->/p' docs/c-api.md |
    sed '1,2d;$d' | sed '$d' > "$OUT/light.c"
test -s "$OUT/light.c"
gcc "${CFLAGS[@]}" "$OUT/light.c" "$LIB" "${SYSLIBS[@]}" -o "$OUT/light"
# With its all-zero placeholder keys it stops at once, naming the bad key.
if "$OUT/light" > "$OUT/light.out"; then
    echo "FAIL: the light example ran with placeholder keys" >&2
    exit 1
fi
grep -q "stopped: DG_ERR_BAD_KEY_LENGTH" "$OUT/light.out"
cat "$OUT/light.out"

log "live: the C API against dtls-group listen / send and a real key server (loopback multicast)"
# `cargo test --workspace` (the `test` step) builds dtls-group with the workspace's features;
# building it here with `-p group-std` would pick other features and rebuild it (minutes), so
# reuse it when no source it is built from is newer.
DG="$TDIR/debug/dtls-group"
if [ ! -x "$DG" ] || [ -n "$(find group-std group-core Cargo.toml Cargo.lock -newer "$DG" \
    \( -name '*.rs' -o -name Cargo.toml -o -name Cargo.lock \) -print -quit)" ]; then
    cargo build -p group-std --bin dtls-group
fi
gcc "${CFLAGS[@]}" -fsanitize=address,undefined -fno-sanitize-recover=all \
    group-ffi/c/tests/test_live.c "$LIB" "${SYSLIBS[@]}" -o "$OUT/test_live"
group-ffi/c/tests/live.sh "$OUT/test_live" "$DG" "$OUT/live"

log "c-firmware: thumbv7em staticlib (profile firmware, --no-default-features --features aes-ccm)"
# shellcheck source=.ci/embedded-tools.sh
. .ci/embedded-tools.sh
cargo rustc -p group-ffi --profile firmware --target thumbv7em-none-eabihf \
    --no-default-features --features aes-ccm --crate-type staticlib
FWLIB="$TDIR/thumbv7em-none-eabihf/firmware/libdtls_group.a"
FWFLAGS=(-std=c99 -Wall -Wextra -Werror -mcpu=cortex-m4 -mthumb -mfloat-abi=hard
    -mfpu=fpv4-sp-d16 -Os -ffunction-sections -fdata-sections -Iinclude -nostartfiles
    --specs=nano.specs --specs=nosys.specs -T group-ffi/c/firmware/link.ld -Wl,--gc-sections
    -Wl,--no-warn-rwx-segments -Wl,-z,noexecstack)
fw() { # name, extra flags...
    local name=$1
    shift
    arm-none-eabi-gcc "${FWFLAGS[@]}" "$@" group-ffi/c/firmware/main.c "$FWLIB" -o "$OUT/$name.elf"
}
qemu() {
    timeout 120 qemu-system-arm -M mps2-an386 -nographic -monitor none -serial none \
        -semihosting-config enable=on,target=native -kernel "$1" < /dev/null 2>&1
}
fw c-firmware
fw c-firmware-baseline -DDG_BASELINE
fw c-firmware-broken -DDG_FORCE_FAILURE
qemu "$OUT/c-firmware-baseline.elf"
qemu "$OUT/c-firmware.elf" | tee "$OUT/c-firmware.log"
grep -q '^c-firmware ok ' "$OUT/c-firmware.log"
if qemu "$OUT/c-firmware-broken.elf" > "$OUT/c-firmware-broken.log"; then
    echo "FAIL: the deliberately broken firmware exited 0" >&2
    exit 1
fi
echo "the deliberately broken firmware exits non-zero: ok"
read -r text data bss _ < <(arm-none-eabi-size "$OUT/c-firmware.elf" | sed -n 2p)
read -r btext _ < <(arm-none-eabi-size "$OUT/c-firmware-baseline.elf" | sed -n 2p)
stack=$(sed -n 's/^c-firmware ok stack=\([0-9]*\).*/\1/p' "$OUT/c-firmware.log")
ram=$(sed -n 's/.* ram_group32=\([0-9]*\).*/\1/p' "$OUT/c-firmware.log")
echo "footprint c-firmware text=$text data=$data bss=$bss stack=$stack ram_group32=$ram elf=${OUT#"$PWD"/}/c-firmware.elf"
echo "footprint c-firmware-baseline text=$btext (library text: $((text - btext)))"
log "ok"
