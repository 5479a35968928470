#!/usr/bin/env bash
# lab/lab.sh up|down|status|check — the rvs network-namespace lab.
#
#   $LAB-client          $LAB-dir (rvsd)          $LAB-sw             $LAB-r1 / $LAB-r2
#   c0 10.99.1.2/24 ---- d0      d1 ------------- sd1  br0  sr1 ---- eth0 10.99.2.11/24
#   via 10.99.1.1        (no IPs: rvsd owns         |         sr2 ---- eth0 10.99.2.12/24
#   for 10.99.0.0/16      10.99.1.1, 10.99.2.1)     +--------+         default via 10.99.2.1
#
# VIP 10.99.1.100 lies in the client's subnet; rvsd answers ARP for it.
# rvsd runs as `ip netns exec $LAB-dir rvsd --config conf/lab-nat.yaml` and drives
# d0/d1 with net_af_packet vdevs. Every veth end has checksum/segmentation
# offloads off (af_packet would otherwise see partial checksums and GSO
# super-frames) and IPv6 is disabled in every namespace (quiet wire).
#
# Each real runs lab/realserver.py: HTTP on 80 and 8080, UDP echo on 9000,
# GET /blob serving $RUN/blob.bin (20 MiB, deterministic PRNG, generated once).
#
# Environment: LAB (namespace prefix, default rvs), PYTHON (interpreter for the
# servers, default: the python3 on PATH). Run state, pids and logs: lab/run/$LAB/.
#
#   up      tear down leftovers, build the lab, start the servers (on any
#           failure everything is torn down again and the exit status is 1)
#   down    kill everything the lab started, delete its namespaces (idempotent)
#   status  show namespaces, addresses, bridge and server state
#   check   verify offloads, IPv6 and servers; non-zero if anything is wrong
set -eEuo pipefail

LAB=${LAB:-rvs}
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
RUN=$HERE/run/$LAB

NS_CLIENT=$LAB-client
NS_DIR=$LAB-dir
NS_SW=$LAB-sw
NS_R1=$LAB-r1
NS_R2=$LAB-r2
ALL_NS=("$NS_CLIENT" "$NS_DIR" "$NS_SW" "$NS_R1" "$NS_R2")
REALS=(r1 r2)

CLIENT_IP=10.99.1.2
DIR_CLIENT_IP=10.99.1.1
DIR_REAL_IP=10.99.2.1
VIP=10.99.1.100
declare -A REAL_IP=([r1]=10.99.2.11 [r2]=10.99.2.12)

# Fixed MACs make captures readable and the director's MAC predictable.
MAC_C0=02:99:01:00:00:02
MAC_D0=02:99:01:00:00:01
MAC_D1=02:99:02:00:00:01
MAC_SD1=02:99:02:00:01:01
MAC_BR0=02:99:02:00:00:fe
declare -A MAC_REAL=([r1]=02:99:02:00:00:11 [r2]=02:99:02:00:00:12)
declare -A MAC_SREAL=([r1]=02:99:02:00:01:11 [r2]=02:99:02:00:01:12)

BLOB_SIZE=$((20 * 1024 * 1024))
BLOB_SEED=0x72767321   # "rvs!"

log() { echo "lab[$LAB]: $*" >&2; }
die() { log "error: $*"; exit 1; }
nsx() { local ns=$1; shift; ip netns exec "$ns" "$@"; }
ns_exists() { [ -e "/var/run/netns/$1" ]; }

python_bin() {
    if [ -n "${PYTHON:-}" ]; then echo "$PYTHON"; return; fi
    # Resolve pyenv shims etc. to the real interpreter once.
    python3 -c 'import sys; print(sys.executable)'
}

# ---------------------------------------------------------------------------
offloads_off() {  # ns ifname
    nsx "$1" ethtool -K "$2" tx off rx off tso off gso off gro off >/dev/null 2>&1 ||
        nsx "$1" ethtool -K "$2" tx off rx off tso off gso off gro off
}

ns_setup() {  # ns: IPv6 off, lo up
    ip netns add "$1"
    nsx "$1" sh -c 'echo 1 > /proc/sys/net/ipv6/conf/all/disable_ipv6 &&
                    echo 1 > /proc/sys/net/ipv6/conf/default/disable_ipv6' 2>/dev/null ||
        log "warning: could not disable IPv6 in $1"
    ip -n "$1" link set lo up
}

veth() {  # ns1 if1 mac1 ns2 if2 mac2
    ip link add "$2" netns "$1" address "$3" type veth peer name "$5" netns "$4" address "$6"
    offloads_off "$1" "$2"
    offloads_off "$4" "$5"
}

make_blob() {
    local blob=$RUN/blob.bin
    if [ -f "$blob" ] && [ "$(stat -c %s "$blob")" = "$BLOB_SIZE" ] && [ -f "$blob.sha256" ]; then
        return
    fi
    "$PY" - "$blob" "$BLOB_SIZE" "$BLOB_SEED" <<'EOF'
import hashlib, os, random, sys
path, size, seed = sys.argv[1], int(sys.argv[2]), int(sys.argv[3], 0)
data = random.Random(seed).randbytes(size)
with open(path + ".tmp", "wb") as f:
    f.write(data)
os.replace(path + ".tmp", path)
with open(path + ".sha256", "w") as f:
    f.write(hashlib.sha256(data).hexdigest() + "  blob.bin\n")
EOF
}

start_real_server() {  # name
    local r=$1 ns=$LAB-$1
    rm -f "$RUN/$r.ready"
    # setsid: own session, immune to the caller's terminal signals; the pid
    # recorded is the interpreter's (ip netns exec execs, it does not fork).
    setsid ip netns exec "$ns" "$PY" -u "$HERE/realserver.py" --name "$r" \
        --blob "$RUN/blob.bin" --ready-file "$RUN/$r.ready" \
        </dev/null >"$RUN/$r.log" 2>&1 &
    echo $! >"$RUN/$r.pid"
}

wait_ready() {  # name
    local r=$1 i
    for i in $(seq 100); do
        if [ -f "$RUN/$r.ready" ]; then
            # the server writes its own pid: authoritative even if setsid forked
            cat "$RUN/$r.ready" >"$RUN/$r.pid"
            return 0
        fi
        kill -0 "$(cat "$RUN/$r.pid")" 2>/dev/null || { cat "$RUN/$r.log" >&2; die "server $r died"; }
        sleep 0.1
    done
    cat "$RUN/$r.log" >&2
    die "server $r not ready after 10 s"
}

UP_DONE=1
on_up_exit() {  # EXIT trap while `up` runs: any way out but success tears down
    local rc=$?
    [ "$UP_DONE" = 1 ] && return
    trap - EXIT INT TERM
    log "up failed (status $rc); tearing down"
    cmd_down || true
    exit 1
}

cmd_up() {
    [ "$(id -u)" = 0 ] || die "must run as root"
    cmd_down
    UP_DONE=0
    trap on_up_exit EXIT
    trap 'exit 130' INT TERM
    PY=$(python_bin)
    mkdir -p "$RUN"

    local ns
    for ns in "${ALL_NS[@]}"; do ns_setup "$ns"; done

    # client <-> director
    veth "$NS_CLIENT" c0 "$MAC_C0" "$NS_DIR" d0 "$MAC_D0"
    # director <-> switch
    veth "$NS_DIR" d1 "$MAC_D1" "$NS_SW" sd1 "$MAC_SD1"
    # reals <-> switch
    local r
    for r in "${REALS[@]}"; do
        veth "$LAB-$r" eth0 "${MAC_REAL[$r]}" "$NS_SW" "s$r" "${MAC_SREAL[$r]}"
    done

    # switch: one plain learning bridge, no STP, no forward delay
    ip -n "$NS_SW" link add br0 address "$MAC_BR0" type bridge stp_state 0 forward_delay 0
    nsx "$NS_SW" ethtool -K br0 tx off rx off tso off gso off gro off >/dev/null 2>&1 || true
    for ifc in sd1 sr1 sr2; do
        ip -n "$NS_SW" link set "$ifc" master br0
        ip -n "$NS_SW" link set "$ifc" up
    done
    ip -n "$NS_SW" link set br0 up

    # director: interfaces up, no addresses (rvsd owns them), kernel ARP off
    for ifc in d0 d1; do
        ip -n "$NS_DIR" link set "$ifc" arp off
        ip -n "$NS_DIR" link set "$ifc" up
    done

    # client
    ip -n "$NS_CLIENT" addr add "$CLIENT_IP/24" dev c0
    ip -n "$NS_CLIENT" link set c0 up
    ip -n "$NS_CLIENT" route add 10.99.0.0/16 via "$DIR_CLIENT_IP" dev c0

    # reals
    for r in "${REALS[@]}"; do
        ip -n "$LAB-$r" addr add "${REAL_IP[$r]}/24" dev eth0
        ip -n "$LAB-$r" link set eth0 up
        ip -n "$LAB-$r" route add default via "$DIR_REAL_IP" dev eth0
    done

    make_blob
    for r in "${REALS[@]}"; do start_real_server "$r"; done
    for r in "${REALS[@]}"; do wait_ready "$r"; done

    local problems
    problems=$(cmd_check) || die "lab checks failed: $problems"
    UP_DONE=1
    trap - EXIT INT TERM
    log "up: client $CLIENT_IP, VIP $VIP, director $DIR_CLIENT_IP/$DIR_REAL_IP (d0 $MAC_D0), reals ${REAL_IP[r1]} ${REAL_IP[r2]}"
}

kill_pid() {  # pid: TERM, wait up to 3 s, KILL
    local pid=$1 i
    kill -0 "$pid" 2>/dev/null || return 0
    kill -TERM "$pid" 2>/dev/null || true
    for i in $(seq 30); do
        kill -0 "$pid" 2>/dev/null || return 0
        sleep 0.1
    done
    kill -KILL "$pid" 2>/dev/null || true
}

cmd_down() {
    local f pid ns
    # 1. what lab.sh itself started
    if [ -d "$RUN" ]; then
        for f in "$RUN"/*.pid; do
            [ -f "$f" ] || continue
            pid=$(cat "$f" 2>/dev/null || true)
            [ -n "$pid" ] && kill_pid "$pid"
            rm -f "$f"
        done
        rm -f "$RUN"/*.ready
    fi
    # 2. anything else still running inside the lab's namespaces (an rvsd left
    #    by a crashed test, a client): a namespace with processes in it would
    #    outlive `ip netns del` together with its interfaces.
    for ns in "${ALL_NS[@]}"; do
        ns_exists "$ns" || continue
        for pid in $(ip netns pids "$ns" 2>/dev/null); do kill_pid "$pid"; done
    done
    for ns in "${ALL_NS[@]}"; do
        ns_exists "$ns" || continue
        ip netns del "$ns" 2>/dev/null || { sleep 0.2; ip netns del "$ns" 2>/dev/null; } ||
            log "warning: could not delete namespace $ns"
    done
    return 0
}

cmd_status() {
    local ns any=0
    for ns in "${ALL_NS[@]}"; do
        ns_exists "$ns" || continue
        any=1
        echo "== $ns"
        ip -n "$ns" -br link | sed 's/^/   /'
        ip -n "$ns" -br -4 addr | sed 's/^/   /'
        ip -n "$ns" -4 route | sed 's/^/   route: /'
        local pids
        pids=$(ip netns pids "$ns" | tr '\n' ' ')
        [ -n "$pids" ] && echo "   pids: $pids"
    done
    [ "$any" = 1 ] || { echo "lab $LAB: down"; return 0; }
    if ns_exists "$NS_SW"; then
        echo "== bridge"; ip -n "$NS_SW" -br link show master br0 | sed 's/^/   /'
    fi
    local r
    for r in "${REALS[@]}"; do
        if [ -f "$RUN/$r.pid" ] && kill -0 "$(cat "$RUN/$r.pid")" 2>/dev/null; then
            echo "server $r: running (pid $(cat "$RUN/$r.pid"), log $RUN/$r.log)"
        else
            echo "server $r: NOT running"
        fi
    done
}

# Verifies the invariants rvsd relies on. Prints problems, non-zero if any.
cmd_check() {
    local bad=0 ns ifc feat r
    check_if() {  # ns ifc
        local k
        k=$(nsx "$1" ethtool -k "$2")
        for feat in tx-checksumming rx-checksumming tcp-segmentation-offload \
                    generic-segmentation-offload generic-receive-offload; do
            if ! grep -q "^$feat: off" <<<"$k"; then
                echo "$1/$2: $feat is not off"; bad=1
            fi
        done
    }
    for ns in "${ALL_NS[@]}"; do
        ns_exists "$ns" || { echo "namespace $ns missing"; bad=1; continue; }
        [ "$(nsx "$ns" cat /proc/sys/net/ipv6/conf/all/disable_ipv6 2>/dev/null)" = 1 ] ||
            { echo "$ns: IPv6 not disabled"; bad=1; }
    done
    if [ "$bad" = 0 ]; then
        check_if "$NS_CLIENT" c0
        check_if "$NS_DIR" d0; check_if "$NS_DIR" d1
        for ifc in sd1 sr1 sr2; do check_if "$NS_SW" "$ifc"; done
        for r in "${REALS[@]}"; do check_if "$LAB-$r" eth0; done
        for ifc in d0 d1; do
            if [ -n "$(ip -n "$NS_DIR" -4 -o addr show dev "$ifc")" ]; then
                echo "$NS_DIR/$ifc has an IPv4 address"; bad=1
            fi
            ip -n "$NS_DIR" link show "$ifc" | grep -q 'state UP\|,UP' ||
                { echo "$NS_DIR/$ifc is not up"; bad=1; }
        done
        for r in "${REALS[@]}"; do
            { [ -f "$RUN/$r.pid" ] && kill -0 "$(cat "$RUN/$r.pid")" 2>/dev/null; } ||
                { echo "server $r not running"; bad=1; }
        done
    fi
    if [ "$bad" = 0 ]; then echo "lab $LAB: ok"; else return 1; fi
}

case "${1:-}" in
    up)     cmd_up ;;
    down)   cmd_down ;;
    status) cmd_status ;;
    check)  cmd_check ;;
    *) echo "usage: LAB=name $0 up|down|status|check" >&2; exit 2 ;;
esac
