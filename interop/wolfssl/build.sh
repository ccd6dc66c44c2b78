#!/bin/sh
# Builds the wolfSSL multicast member harness (wolfssl_member.c) against the system libwolfssl.
#
#   interop/wolfssl/build.sh [OUTPUT]     default OUTPUT: ${CARGO_TARGET_DIR:-target}/interop/wolfssl_member
#
# Needs a C compiler and libwolfssl-dev (Debian 12: 5.5.4, built with WOLFSSL_MULTICAST).
set -eu
here=$(cd "$(dirname "$0")" && pwd)
out=${1:-${CARGO_TARGET_DIR:-$here/../../target}/interop/wolfssl_member}
mkdir -p "$(dirname "$out")"
cc=${CC:-cc}
# pkg-config adds the flags if the .pc file is there; plain -lwolfssl works for Debian's package.
flags=$(pkg-config --cflags --libs wolfssl 2>/dev/null || echo -lwolfssl)
# shellcheck disable=SC2086
$cc -std=c11 -O1 -Wall -Wextra -Werror -o "$out" "$here/wolfssl_member.c" $flags
echo "$out"
