# Sourced by .ci/embedded.sh and .ci/footprint.sh: sets $SIZE to an llvm-size and makes sure
# qemu-system-arm is installed (Debian; from bookworm-backports when the machine's QEMU tools come
# from there). Needs `log` defined by the caller.
log "tools: llvm-size, qemu-system-arm"
apt_updated=0
apt_update() { if [ "$apt_updated" = 0 ]; then apt-get update -qq; apt_updated=1; fi; }

SIZE=""
if command -v llvm-size >/dev/null; then
    SIZE=llvm-size
else
    if rustup component add llvm-tools >/dev/null 2>&1; then
        cand="$(rustc --print sysroot)/lib/rustlib/$(rustc -vV | sed -n 's/^host: //p')/bin/llvm-size"
        [ -x "$cand" ] && SIZE="$cand"
    fi
    if [ -z "$SIZE" ]; then
        apt_update
        apt-get install -y -qq --no-install-recommends llvm >/dev/null
        SIZE=llvm-size
    fi
fi
echo "size tool: $SIZE ($("$SIZE" --version | grep -i version | head -1))"

if ! command -v qemu-system-arm >/dev/null; then
    apt_update
    # Debian's plain qemu-system-arm conflicts with a newer qemu-utils from backports (it would
    # remove it); take it from the same suite as the installed QEMU tools in that case.
    if apt-get install --dry-run -y --no-install-recommends qemu-system-arm | grep -q '^Remv'; then
        codename=$(. /etc/os-release && echo "$VERSION_CODENAME")
        if ! apt-cache policy qemu-system-arm | grep -q "$codename-backports"; then
            printf 'Types: deb\nURIs: http://deb.debian.org/debian\nSuites: %s-backports\nComponents: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n' \
                "$codename" > "/etc/apt/sources.list.d/$codename-backports.sources"
            apt-get update -qq
        fi
        apt-get install -y -qq --no-install-recommends -t "$codename-backports" qemu-system-arm >/dev/null
    else
        apt-get install -y -qq --no-install-recommends qemu-system-arm >/dev/null
    fi
fi
qemu-system-arm --version | head -1
