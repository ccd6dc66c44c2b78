#!/usr/bin/env bash
# Checks the systemd units in contrib/systemd/ with systemd-analyze (Debian package `systemd`):
#   - `verify`: syntax, known directives, the executable exists; any message fails the check
#     (verify itself exits 0 on an unknown directive). verify needs ExecStart's program to
#     exist, so the units are checked as copies whose /usr/bin/dtls-group points at the binary
#     built here; nothing else is changed. The member template is verified as an instance.
#   - `security --offline=yes`: the hardening's exposure score, at most 2.0 ("OK").
# Needs no running systemd (a container is fine). Quick: one debug build of the binary.
set -euo pipefail
cd "$(dirname "$0")/.."

command -v systemd-analyze >/dev/null || {
    echo "systemd-analyze missing (Debian package systemd)" >&2
    exit 1
}
systemd-analyze --version | sed -n 1p
cargo build -q -p group-std --bin dtls-group
bin="$PWD/target/debug/dtls-group"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
for u in contrib/systemd/*.service; do
    sed "s#/usr/bin/dtls-group#$bin#g" "$u" >"$tmp/$(basename "$u")"
done
units=("$tmp/dtls-group-keyserver.service" "$tmp/dtls-group-member@lights.service")

out=$(systemd-analyze verify --man=no "${units[@]}" 2>&1) || {
    echo "$out"
    exit 1
}
if [ -n "$out" ]; then
    echo "systemd-analyze verify complained:" >&2
    echo "$out" >&2
    exit 1
fi
echo "verify: ${units[*]##*/}: no complaint"

for u in "${units[@]}"; do
    systemd-analyze security --offline=yes --threshold=20 --no-pager "$u" >"$tmp/security.txt" 2>&1 || {
        cat "$tmp/security.txt"
        echo "security: ${u##*/} exposure above 2.0" >&2
        exit 1
    }
    grep -a "Overall exposure level" "$tmp/security.txt"
done

# sysusers.d syntax: one "u" line for the service user.
grep -Eq '^u dtls-group ' contrib/systemd/dtls-group.sysusers
echo "sysusers: dtls-group user declared"
