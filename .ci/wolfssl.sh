#!/usr/bin/env bash
# Live interoperability with wolfSSL's DTLS multicast (docs/interop.md): installs Debian's
# libwolfssl-dev (and a C compiler), builds the member harness interop/wolfssl/wolfssl_member.c,
# and runs the interop tests against it on IPv4 loopback multicast.
#
#   .ci/wolfssl.sh          setup + build + test
#   .ci/wolfssl.sh setup    install only (call it before `cargo test --workspace`, which runs
#                           the same tests and fails if the harness can't be built)
#
# Fails if wolfSSL can't be installed or built. Only DTLS_GROUP_SKIP_WOLFSSL=1 turns that into a
# printed SKIP and exit 0. Every step is bounded in time (the whole script: well under 5 min).
set -euo pipefail
cd "$(dirname "$0")/.."

export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"
target_dir="${CARGO_TARGET_DIR:-$PWD/target}"
harness="$target_dir/interop/wolfssl_member"

skip_or_fail() {
    if [ "${DTLS_GROUP_SKIP_WOLFSSL:-}" = "1" ]; then
        echo "SKIP wolfSSL interop (DTLS_GROUP_SKIP_WOLFSSL=1): $*"
        exit 0
    fi
    echo "FAILED wolfSSL interop: $* (set DTLS_GROUP_SKIP_WOLFSSL=1 to skip explicitly)" >&2
    exit 1
}

have_wolfssl() {
    command -v cc >/dev/null &&
        [ -e /usr/include/stdio.h ] &&
        [ -e /usr/include/wolfssl/ssl.h ] &&
        grep -q '^#define WOLFSSL_MULTICAST' /usr/include/wolfssl/options.h 2>/dev/null
}

setup() {
    if have_wolfssl; then
        echo "wolfSSL: headers with WOLFSSL_MULTICAST and a C compiler present"
    else
        command -v apt-get >/dev/null || skip_or_fail "no apt-get to install libwolfssl-dev"
        export DEBIAN_FRONTEND=noninteractive
        timeout 150 apt-get update -q || skip_or_fail "apt-get update failed"
        timeout 150 apt-get install -y -q --no-install-recommends \
            libwolfssl-dev gcc libc6-dev pkg-config ||
            skip_or_fail "apt-get install libwolfssl-dev gcc libc6-dev pkg-config failed"
        have_wolfssl || skip_or_fail "libwolfssl-dev installed but without WOLFSSL_MULTICAST"
    fi
    local v
    v=$(sed -n 's/^#define LIBWOLFSSL_VERSION_STRING "\(.*\)"/\1/p' /usr/include/wolfssl/version.h)
    echo "wolfSSL $v ($(dpkg-query -W -f '${Package} ${Version}' libwolfssl-dev 2>/dev/null || echo 'not from dpkg'))"
}

build() {
    timeout 60 interop/wolfssl/build.sh "$harness" || skip_or_fail "building the harness failed"
}

run_tests() {
    # The harness built above; the tests build it themselves when this is unset.
    DTLS_GROUP_WOLFSSL_MEMBER="$harness" timeout 240 \
        cargo test -p group-std --test wolfssl_interop -- --test-threads=2
}

case "${1:-all}" in
setup) setup ;;
all)
    setup
    build
    run_tests
    ;;
*)
    echo "usage: $0 [setup]" >&2
    exit 2
    ;;
esac
