#!/usr/bin/env bash
# The C API (issue 13): the header is current, then the host C test programs, compiled with
# gcc -std=c99 -Wall -Wextra -Werror against the staticlib (include/dtls_group.h), run plainly,
# under valgrind (no error, no leak) and built with -fsanitize=address,undefined; the example
# of docs/c-api.md, extracted from the doc, compiles and runs.
#
#   .ci/capi.sh setup     install gcc, valgrind (apt)
#   .ci/capi.sh           setup, then build and run everything
set -euo pipefail
cd "$(dirname "$0")/.."
export DEBIAN_FRONTEND=noninteractive
log() { printf '\n== capi: %s\n' "$*"; }

setup() {
    local missing=()
    command -v gcc >/dev/null || missing+=(gcc libc6-dev)
    command -v valgrind >/dev/null || missing+=(valgrind)
    if [ "${#missing[@]}" -gt 0 ]; then
        apt-get update -q
        apt-get install -y -q --no-install-recommends "${missing[@]}"
    fi
    gcc --version | sed -n 1p
    valgrind --version
}

if [ "${1:-}" = setup ]; then
    setup
    exit 0
fi
setup

log "header: regenerating include/dtls_group.h with cbindgen changes nothing; unit tests"
cargo test -p group-ffi

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

log "docs/c-api.md: the example, extracted from the doc"
sed -n '/<!-- c-api-example:begin -->/,/<!-- c-api-example:end -->/p' docs/c-api.md |
    sed '1,2d;$d' | sed '$d' > "$OUT/example.c"
test -s "$OUT/example.c"
run_program example "$OUT/example.c"
log "ok"
