#!/usr/bin/env bash
# Live tests of the C API against the real `dtls-group` tool on IPv4 loopback multicast
# (interface 127.0.0.1, TTL 1): nothing leaves the machine, every process has a timeout and
# every wait is bounded. Run by .ci/capi.sh:
#
#   group-ffi/c/tests/live.sh TEST_LIVE DTLS_GROUP WORKDIR
#
# 1. Static keys: `dtls-group listen` and a C `dg_group` on one group; `dtls-group send` sends
#    "on", the C program opens it and sends "c: hello", which `listen` delivers.
# 2. Key server: a real `dtls-group keyserver` (signed mode), two `dtls-group member` lights and
#    a `dtls-group member` switch; the C member (device 1, a sender) joins, one light is
#    revoked, the C member follows the rekey, sends "c: member" (the other light delivers it)
#    and opens the switch's "ks: dim".
set -euo pipefail
TEST_LIVE=$1
BIN=$2
D=$3
rm -rf "$D"
mkdir -p "$D"
umask 077
PIDS=()
cleanup() {
    local p
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
    for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
}
trap cleanup EXIT
hexof() { printf '%s' "$1" | od -An -tx1 | tr -d ' \n'; }
wait_for() { # file, pattern, seconds
    local i
    for ((i = 0; i < $3 * 10; i++)); do
        grep -q "$2" "$1" 2>/dev/null && return 0
        sleep 0.1
    done
    echo "FAIL: timed out waiting for '$2' in $1:" >&2
    cat "$1" >&2 || true
    return 1
}
BASE=$((20000 + $$ % 20000))

echo "== live 1: static keys with dtls-group listen / send"
G1=239.255.61.1
P1=$BASE
od -An -tx1 -N16 /dev/urandom | tr -d ' \n' > "$D/g.key"
od -An -tx1 -N4 /dev/urandom | tr -d ' \n' > "$D/g.iv"
COMMON=(--group "$G1:$P1" --suite ccm --key-file "$D/g.key" --iv-file "$D/g.iv" --epoch 1)
"$BIN" listen "${COMMON[@]}" --count 2 --timeout 30 > "$D/listen.out" 2> "$D/listen.err" &
LISTEN=$!
PIDS+=("$LISTEN")
"$TEST_LIVE" static "$G1" "$P1" "$(cat "$D/g.key")" "$(cat "$D/g.iv")" > "$D/static.out" 2>&1 &
STATIC=$!
PIDS+=("$STATIC")
wait_for "$D/static.out" READY 10
sleep 0.3 # listen has joined the group by now (it started first)
"$BIN" send "${COMMON[@]}" --sender-id 1 --seq-store "$D/s1.seq" --init-seq-store "$(hexof on)" > "$D/send.out"
wait "$STATIC" || { echo "FAIL: test_live static" >&2; cat "$D/static.out" >&2; exit 1; }
cat "$D/static.out"
wait "$LISTEN" || { echo "FAIL: dtls-group listen" >&2; cat "$D/listen.out" "$D/listen.err" >&2; exit 1; }
grep -q "static received sender=1 epoch=1 seq=0 plaintext=on" "$D/static.out"
grep -q "\"sender_id\":9,.*\"plaintext\":\"$(hexof "c: hello")\"" "$D/listen.out" ||
    { echo "FAIL: listen did not deliver c: hello" >&2; cat "$D/listen.out" >&2; exit 1; }
echo "listen delivered the C program's record: ok"

echo "== live 2: key server, revocation, rekey, records with dtls-group members"
G2=239.255.61.2
P2=$((BASE + 1))
KS=$((BASE + 2))
for n in server c-switch light-2 light-3 switch-4; do
    "$BIN" keygen --out "$D/$n" > /dev/null
done
{
    printf 'listen = "127.0.0.1:%s"\nstate = "ks.redb"\nserver_key = "server.key"\n\n' "$KS"
    printf '[[group]]\nid = 1\nsuite = "ccm"\nmulticast = "%s:%s"\nactivation_delay_ms = 300\ngrace_ms = 2000\n' "$G2" "$P2"
    printf '\n[[device]]\nid = 1\nname = "c-switch"\npublic_key = "c-switch.pub"\nrole = "sender"\ngroups = [1]\n'
    printf '\n[[device]]\nid = 2\nname = "light-2"\npublic_key = "light-2.pub"\nrole = "listener"\ngroups = [1]\n'
    printf '\n[[device]]\nid = 3\nname = "light-3"\npublic_key = "light-3.pub"\nrole = "listener"\ngroups = [1]\n'
    printf '\n[[device]]\nid = 4\nname = "switch-4"\npublic_key = "switch-4.pub"\nrole = "sender"\ngroups = [1]\n'
} > "$D/ks.toml"
CTRL="$D/ks.sock"
DTLS_GROUP_LOG=warn "$BIN" keyserver --config "$D/ks.toml" --init --control "$CTRL" --timeout 60 \
    > "$D/ks.out" 2>&1 &
PIDS+=($!)
for ((i = 0; i < 100; i++)); do [ -S "$CTRL" ] && break; sleep 0.1; done
[ -S "$CTRL" ] || { echo "FAIL: key server did not start" >&2; cat "$D/ks.out" >&2; exit 1; }
member() { # id name role extra...
    local id=$1 name=$2 role=$3
    shift 3
    DTLS_GROUP_LOG=warn "$BIN" member --server "127.0.0.1:$KS" --server-key "$D/server.pub" \
        --device-key "$D/$name.key" --device-id "$id" --group-id 1 --group "$G2:$P2" \
        --role "$role" --timeout 60 "$@"
}
member 2 light-2 listener > "$D/light-2.out" 2>&1 &
PIDS+=($!)
member 3 light-3 listener > "$D/light-3.out" 2>&1 &
PIDS+=($!)
mkfifo "$D/switch-4.in"
member 4 switch-4 sender --stdin --seq-store "$D/switch-4.seq" --init-seq-store \
    < "$D/switch-4.in" > "$D/switch-4.out" 2>&1 &
PIDS+=($!)
exec 7> "$D/switch-4.in"
"$TEST_LIVE" member 127.0.0.1 "$KS" "$(cat "$D/server.pub")" "$(cat "$D/c-switch.key")" 1 1 "$G2" "$P2" \
    > "$D/member.out" 2>&1 &
CMEMBER=$!
PIDS+=("$CMEMBER")
wait_for "$D/member.out" "^JOINED epoch=" 30
# Revoke light 2 once all four members hold the current epoch (none pending).
settled() {
    "$BIN" admin "$CTRL" status | python3 -c '
import json, sys
g = json.load(sys.stdin)["groups"][0]
ms = g["members"]
ok = len(ms) == int(sys.argv[1]) and all(not m["pending"] for m in ms) and g["staged"] is None
print(g["current"] if ok else "")' "$1"
}
for ((i = 0; i < 200; i++)); do
    E1=$(settled 4)
    [ -n "$E1" ] && break
    sleep 0.1
done
[ -n "$E1" ] || { echo "FAIL: key server never settled with 4 members" >&2; exit 1; }
"$BIN" admin "$CTRL" revoke 2 > "$D/revoke.out"
grep -q '"revoked":2' "$D/revoke.out"
for ((i = 0; i < 200; i++)); do
    E2=$(settled 3)
    [ -n "$E2" ] && [ "$E2" -gt "$E1" ] && break
    sleep 0.1
done
[ -n "$E2" ] && [ "$E2" -gt "$E1" ] || { echo "FAIL: no rekey after the revocation" >&2; exit 1; }
echo "revoked light-2 in epoch $E1; the key server rekeyed to epoch $E2"
wait_for "$D/member.out" "^REKEYED epoch=" 30
# The C member follows the rekey that the revocation caused (not only an earlier one).
wait_for "$D/member.out" "^event kind=2 epoch=$E2\$" 30
wait_for "$D/member.out" "^SENT c: member" 10
wait_for "$D/light-3.out" "\"plaintext\":\"$(hexof "c: member")\"" 20
echo "light-3 (dtls-group member) delivered the C member's record after the rekey: ok"
# The switch sends once it holds the new epoch (sent until the C member has it: bounded).
for ((i = 0; i < 40; i++)); do
    grep -q "^member received" "$D/member.out" && break
    echo "$(hexof "ks: dim")" >&7
    sleep 0.5
done
exec 7>&-
wait "$CMEMBER" || { echo "FAIL: test_live member" >&2; cat "$D/member.out" >&2; exit 1; }
cat "$D/member.out"
grep -q "^member received sender=.* plaintext=ks: dim" "$D/member.out"
grep -q '"event":"removed"' "$D/light-2.out" ||
    { echo "FAIL: light-2 was not told it was removed" >&2; cat "$D/light-2.out" >&2; exit 1; }
echo "live: ok"
