#!/usr/bin/env bash
# lab/demo.sh — rvs in one go: install, build, lab up, rvsd in the director
# namespace, HTTP/UDP/ping through the VIP, stats, teardown.
#
#   bash lab/demo.sh                 # NAT
#   TOPO=dr bash lab/demo.sh         # or tun, tun-l3, fullnat
#
# Environment: LAB (namespace prefix, default rvs), TOPO (lab topology and
# forwarding mode: nat, dr, tun, tun-l3 or fullnat; default nat), RVSD (binary,
# default target/release/rvsd), CONF (default conf/lab-$TOPO.yaml; tun-l3 has
# no file of its own and needs CONF), SKIP_BUILD=1 (use the binary as it is),
# SKIP_INSTALL=1. The lab is torn down on every exit path.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
export LAB=${LAB:-rvs}
RVSD=${RVSD:-$ROOT/target/release/rvsd}
TOPO=${TOPO:-nat}
CONF=${CONF:-$ROOT/conf/lab-$TOPO.yaml}
RUN=$ROOT/lab/run/$LAB
VIP=10.99.1.100
LOG=$RUN/demo-rvsd.log
RVSD_PID=

say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
die() { echo "demo: error: $*" >&2; exit 1; }

cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    if [ -n "$RVSD_PID" ] && kill -0 "$RVSD_PID" 2>/dev/null; then
        kill -TERM "$RVSD_PID" 2>/dev/null || true
        for _ in $(seq 50); do kill -0 "$RVSD_PID" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$RVSD_PID" 2>/dev/null || true
    fi
    bash "$ROOT/lab/lab.sh" down || true
    [ "$rc" = 0 ] || echo "demo: failed (status $rc); rvsd log: $LOG" >&2
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

[ "$(id -u)" = 0 ] || die "run as root (network namespaces, DPDK)"
command -v cargo >/dev/null 2>&1 || { [ -f "$HOME/.cargo/env" ] && . "$HOME/.cargo/env"; }

if [ -z "${SKIP_INSTALL:-}" ]; then say "install"; bash lab/install.sh; fi
if [ -z "${SKIP_BUILD:-}" ]; then say "build"; cargo build --release; fi
[ -x "$RVSD" ] || die "no rvsd binary at $RVSD"

say "lab up ($LAB, $TOPO)"
bash lab/lab.sh up "$TOPO"
mkdir -p "$RUN"

say "rvsd --config ${CONF#"$ROOT"/}"
"$RVSD" --check --config "$CONF"
ip netns exec "$LAB-dir" "$RVSD" --config "$CONF" </dev/null >"$LOG" 2>&1 &
RVSD_PID=$!   # ip netns exec execs: this is rvsd's pid
for i in $(seq 300); do
    grep -q 'rvsd: ready' "$LOG" && break
    kill -0 "$RVSD_PID" 2>/dev/null || { cat "$LOG" >&2; die "rvsd exited before ready"; }
    [ "$i" = 300 ] && { cat "$LOG" >&2; die "rvsd not ready after 30 s"; }
    sleep 0.1
done
echo "ready (pid $RVSD_PID, log ${LOG#"$ROOT"/})"

client() { ip netns exec "$LAB-client" python3 "$ROOT/lab/client.py" "$@"; }

say "200 HTTP requests to http://$VIP/ (new connection each)"
client http --url "http://$VIP/" --count 200 --concurrency 4 | python3 lab/pretty.py http

say "UDP echo to $VIP:9000 (10 datagrams, new source port each)"
client udp --addr "$VIP:9000" --count 10 | python3 lab/pretty.py udp

say "ping $VIP"
ip netns exec "$LAB-client" ping -c 3 -i 0.2 -W 2 "$VIP"

say "rvsd stats (SIGUSR1)"
n=$(grep -c 'rvsd: stats' "$LOG" || true)
kill -USR1 "$RVSD_PID"
for _ in $(seq 50); do
    [ "$(grep -c 'rvsd: stats' "$LOG" || true)" -gt "$n" ] && break
    sleep 0.1
done
grep 'rvsd: stats' "$LOG" | tail -1 | python3 lab/pretty.py stats

say "stop rvsd"
kill -TERM "$RVSD_PID"
rc=0; wait "$RVSD_PID" || rc=$?
RVSD_PID=
echo "rvsd exited with status $rc"
[ "$rc" = 0 ] || die "rvsd did not stop cleanly"
say "lab down"
