#!/bin/sh
# demo: meter -> psktund gateway -> DTLS-PSK -> psktund terminator -> UDP echo backend, and back, on loopback.
# Usage: tests/demo.sh [BUILDDIR]   (run from the source tree after building)
set -eu
src=$(cd "$(dirname "$0")/.." && pwd)
build=${1:-$src}
psktund=$build/agent/psktund
psktunctl=$build/agent/psktunctl
[ -x "$psktund" ] || { echo "demo: $psktund is not built; run ./configure && make first" >&2; exit 1; }
work=$(mktemp -d /tmp/psktun-demo.XXXXXX)
pids=""
cleanup() { for p in $pids; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT INT TERM

step() { printf '\n== %s\n' "$*"; }

step "one key per meter, made with psktunctl genkey (psktool -u meter-0001 -p keys.psk does the same)"
cp "$src/etc/demo/gateway.conf" "$src/etc/demo/terminator.conf" "$work/"
( umask 077; "$psktunctl" genkey meter-0001 > "$work/keys.psk"; "$psktunctl" genkey meter-0002 >> "$work/keys.psk" )
sed 's/:.*/:<16 random bytes, not shown>/' "$work/keys.psk"

step "both configurations check out"
"$psktund" -n -c "$work/terminator.conf"
"$psktund" -n -c "$work/gateway.conf"

step "a plaintext UDP echo backend on 127.0.0.1:15685"
python3 "$src/tests/integration/echo.py" 127.0.0.1 15685 "$work/echo.ready" & pids="$pids $!"
for i in $(seq 100); do [ -e "$work/echo.ready" ] && break; sleep 0.1; done

step "terminator on 127.0.0.1:15684, gateway on 127.0.0.1:15683"
"$psktund" -f -c "$work/terminator.conf" 2> "$work/terminator.log" & pids="$pids $!"
"$psktund" -f -c "$work/gateway.conf" 2> "$work/gateway.log" & pids="$pids $!"
for i in $(seq 100); do
	"$psktunctl" -s "$work/gateway.sock" stats >/dev/null 2>&1 && \
	"$psktunctl" -s "$work/terminator.sock" stats >/dev/null 2>&1 && break
	sleep 0.1
done

step "meters send plaintext; each datagram crosses its own DTLS session and comes back"
python3 "$src/tests/integration/meter.py" 127.0.0.1:15683 25001 "meter-0001 reading 42.1 kWh"
python3 "$src/tests/integration/meter.py" 127.0.0.1:15683 25002 "meter-0002 reading 17.0 kWh"

step "gateway sessions"
"$psktunctl" -s "$work/gateway.sock" sessions
step "terminator sessions (identities are the authenticated PSK identities)"
"$psktunctl" -s "$work/terminator.sock" sessions
step "gateway counters"
"$psktunctl" -s "$work/gateway.sock" stats | grep -E '^(sessions|handshakes_completed|plain_in|plain_out|records_in|records_out|dropped_[a-z]+)='

step "what the daemons logged"
sed 's/^/gateway:    /' "$work/gateway.log"
sed 's/^/terminator: /' "$work/terminator.log"
echo
echo "demo OK: two meters, two DTLS-PSK sessions, plaintext only on the LAN and at the backend."
