#!/usr/bin/env bash
# The Debian package: built with cargo-deb (crates.io) from [package.metadata.deb] in
# group-std/Cargo.toml, installed with dpkg -i on this (CI, root) machine, and run from the
# installed paths: --version (with the commit), the man pages and completions in place, the
# installed systemd units verified against the installed binary, and a short key-server start
# (--check, --init, a restart) in a temporary directory. The package is purged at the end.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v cargo-deb >/dev/null; then
    cargo install cargo-deb --locked
fi
cargo deb --version
cargo build --release -p group-std --bin dtls-group
cargo run -q -p group-std --example package_assets -- target/package-assets
deb=$(cargo deb -p group-std --no-build --output target/debian/ | tail -n 1)
[ -f "$deb" ] || {
    echo "cargo deb made no package ($deb)" >&2
    exit 1
}
echo "package: $deb"
dpkg-deb --info "$deb" | sed -n '/Package:/,$p'
dpkg-deb --contents "$deb" | awk '{print $6}' | sort

tmp=$(mktemp -d)
cleanup() {
    dpkg --purge dtls-group >/dev/null 2>&1 || true
    rm -rf "$tmp"
}
trap cleanup EXIT
dpkg -i "$deb"

# The installed binary, with the commit it was built from.
want="dtls-group $(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -n 1) (commit $(git rev-parse --short=12 HEAD 2>/dev/null || echo unknown))"
got=$(/usr/bin/dtls-group --version)
echo "installed: $got"
[ "$got" = "$want" ] || {
    echo "expected: $want" >&2
    exit 1
}
for f in /usr/share/man/man1/dtls-group.1 /usr/share/man/man1/dtls-group-keyserver.1 \
    /usr/share/bash-completion/completions/dtls-group /usr/share/zsh/vendor-completions/_dtls-group \
    /usr/share/fish/vendor_completions.d/dtls-group.fish /lib/systemd/system/dtls-group-keyserver.service \
    /lib/systemd/system/dtls-group-member@.service /usr/lib/sysusers.d/dtls-group.conf \
    /usr/share/dtls-group/wireshark/dtls-group.lua /usr/share/doc/dtls-group/troubleshooting.md; do
    [ -e "$f" ] || [ -e "$f.gz" ] || {
        echo "not installed: $f" >&2
        exit 1
    }
done
grep -q "keyserver" /usr/share/bash-completion/completions/dtls-group
if command -v systemd-sysusers >/dev/null; then
    getent passwd dtls-group >/dev/null || {
        echo "postinst did not create the dtls-group user" >&2
        exit 1
    }
fi
# The installed units name the installed binary: verify them as they are.
if command -v systemd-analyze >/dev/null; then
    out=$(systemd-analyze verify --man=no /lib/systemd/system/dtls-group-keyserver.service \
        /lib/systemd/system/dtls-group-member@lights.service 2>&1) || {
        echo "$out" >&2
        exit 1
    }
    [ -z "$out" ] || {
        echo "systemd-analyze verify: $out" >&2
        exit 1
    }
    echo "installed units verify"
fi

# A short key-server start from the installed paths.
cd "$tmp"
/usr/bin/dtls-group keygen --out server >/dev/null
/usr/bin/dtls-group keygen --out light >/dev/null
port=$((41000 + $$ % 10000))
cat >ks.toml <<TOML
listen = "127.0.0.1:$port"
state = "ks.redb"
server_key = "server.key"

[[group]]
id = 1
suite = "ccm"
multicast = "239.255.56.1:45056"

[[device]]
id = 2
name = "light"
public_key = "light.pub"
role = "listener"
groups = [1]
TOML
/usr/bin/dtls-group keyserver --config ks.toml --check
DTLS_GROUP_LOG=info /usr/bin/dtls-group keyserver --config ks.toml --init --control ks.sock --timeout 1 2>ks.log
grep -q "key server running" ks.log
[ -f ks.redb ] && [ ! -e ks.sock ]
/usr/bin/dtls-group keyserver --config ks.toml --timeout 0.5
echo "installed key server: --check, --init and a restart ok"
