#!/usr/bin/env bash
# lab/lab.sh up [nat|dr|tun|tun-l3|fullnat] | down | status | check — the rvs
# network-namespace lab, in one of five topologies (one per forwarding mode,
# and TUN across a router).
#
# nat (default):
#   $LAB-client          $LAB-dir (rvsd)          $LAB-sw             $LAB-r1 / $LAB-r2
#   c0 10.99.1.2/24 ---- d0      d1 ------------- sd1  br0  sr1 ---- eth0 10.99.2.11/24
#   via 10.99.1.1        (no IPs: rvsd owns         |         sr2 ---- eth0 10.99.2.12/24
#   for 10.99.0.0/16      10.99.1.1, 10.99.2.1)     +--------+         default via 10.99.2.1
#
# dr / tun: client, director and reals on ONE segment (bridge br0), 10.99.1.0/24
#   $LAB-client c0 10.99.1.2 -- sc0 -+
#   $LAB-dir    d0 (rvsd: 10.99.1.1) -- sd0 -+- br0 ($LAB-sw)
#   $LAB-r1     eth0 10.99.1.11 -- sr1 -+
#   $LAB-r2     eth0 10.99.1.12 -- sr2 -+
#   dr:  reals hold the VIP 10.99.1.100/32 on lo, arp_ignore=1, arp_announce=2.
#   tun: reals run lab/ipip-decap.py (raw socket for IP protocol 4 -> TUN device
#        tunl-vip holding 10.99.1.100/32), rp_filter 0, arp_ignore=1,
#        arp_announce=2. Replies go from the reals straight to the client.
#
# tun-l3: TUN across a router; the reals are in another subnet
#   $LAB-client c0 10.99.1.2 ---- sc0 -+
#   $LAB-dir    d0 (rvsd 10.99.1.1) -- sd0 -+- br0 ($LAB-sw)
#   $LAB-rt     eth0 10.99.1.254 ---- srt0 -+
#   $LAB-rt     eth1 10.99.3.1 ------ srt1 -+- br1 -+- sr1 -- $LAB-r1 eth0 10.99.3.11
#                (ip_forward=1)                     +- sr2 -- $LAB-r2 eth0 10.99.3.12
#   rvsd routes 10.99.3.0/24 via 10.99.1.254 (out d0 again); the reals (as
#   in tun, default via 10.99.3.1) answer through the router, not rvsd.
#
# fullnat:
#   $LAB-client          $LAB-dir (rvsd)      $LAB-sw br0     $LAB-rt (router)      $LAB-sw br1    $LAB-r1/r2
#   c0 10.99.1.2/24 ---- d0      d1 --------- sd1 .. srt0 --- eth0 10.99.2.254/24
#   via 10.99.1.1        rvsd: 10.99.1.1,                     eth1 10.99.3.1/24 --- srt1 .. sr1 -- eth0 10.99.3.11/24
#   for 10.99.0.0/16     10.99.2.1, LIP 10.99.2.100           ip_forward=1              .. sr2 -- eth0 10.99.3.12/24
#                        route 10.99.3.0/24 via .2.254                                   default via 10.99.3.1
#   The router knows nothing of 10.99.1.0/24: the reals reach only the LIP.
#
# VIP 10.99.1.100 lies in the client's subnet in every topology; rvsd answers
# ARP for it on d0. rvsd runs as `ip netns exec $LAB-dir rvsd --config
# conf/lab-<topology>.yaml` and drives d0 (and d1) with net_af_packet vdevs.
# Every veth end has checksum/segmentation offloads off (af_packet would
# otherwise see partial checksums and GSO super-frames) and IPv6 is disabled in
# every namespace (quiet wire).
#
# Each real runs lab/realserver.py: HTTP on 80 and 8080, UDP echo on 9000,
# GET /blob serving $RUN/blob.bin (20 MiB, deterministic PRNG, generated once).
#
# Environment: LAB (namespace prefix, default rvs), PYTHON (interpreter for the
# servers, default: the python3 on PATH). Run state, pids and logs: lab/run/$LAB/
# (the topology that is up: lab/run/$LAB/topology).
#
#   up [T]  tear down leftovers (any topology), build topology T (default nat),
#           start the servers (on any failure everything is torn down again
#           and the exit status is 1)
#   down    kill everything the lab started, delete its namespaces, whatever
#           the topology (idempotent)
#   status  show namespaces, addresses, bridges and server state
#   check   verify the topology's invariants; non-zero if anything is wrong
set -eEuo pipefail

LAB=${LAB:-rvs}
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
RUN=$HERE/run/$LAB
TOPOLOGIES="nat dr tun tun-l3 fullnat ha-nat ha-dr ha-fullnat"

NS_CLIENT=$LAB-client
NS_DIR=$LAB-dir
# The two directors of the HA topologies.
NS_DIRA=$LAB-dira
NS_DIRB=$LAB-dirb
NS_SW=$LAB-sw
NS_RT=$LAB-rt
NS_R1=$LAB-r1
NS_R2=$LAB-r2
# Every namespace any topology creates: `down` removes all of them.
EVERY_NS=("$NS_CLIENT" "$NS_DIR" "$NS_DIRA" "$NS_DIRB" "$NS_SW" "$NS_RT" "$NS_R1" "$NS_R2")
REALS=(r1 r2)

CLIENT_IP=10.99.1.2
DIR_CLIENT_IP=10.99.1.1
VIP=10.99.1.100
TUN_DEV=tunl-vip

BLOB_SIZE=$((20 * 1024 * 1024))
BLOB_SEED=0x72767321   # "rvs!"

log() { echo "lab[$LAB]: $*" >&2; }
die() { log "error: $*"; exit 1; }
nsx() { local ns=$1; shift; ip netns exec "$ns" "$@"; }
ns_exists() { [ -e "/var/run/netns/$1" ]; }

# ---------------------------------------------------------------------------
# Topology tables. topo_vars T sets, for topology T:
#   TOPO_NS     namespaces
#   VETHS       "ns1 if1 mac1 ns2 if2 mac2" per veth pair
#   BRIDGES     "br mac port port ..." per bridge in $NS_SW
#   DIR_IFS     director interfaces (up, NOARP, no address)
#   DIR_NSS     director namespaces (one, or two for ha-*)
#   REAL_IP     real name -> address/len; REAL_GW real name -> default gateway ("" = none)
#   CLIENT_ROUTE "prefix via gw" or ""
#   RT_IPS      router ($LAB-rt) addresses on eth0 and eth1, empty: no router
topo_vars() {
    TOPO=$1
    RT_IPS=()
    DIR_NSS=("$NS_DIR")
    declare -gA REAL_IP REAL_GW
    case "$TOPO" in
    nat)
        TOPO_NS=("$NS_CLIENT" "$NS_DIR" "$NS_SW" "$NS_R1" "$NS_R2")
        VETHS=("$NS_CLIENT c0 02:99:01:00:00:02 $NS_DIR d0 02:99:01:00:00:01"
               "$NS_DIR d1 02:99:02:00:00:01 $NS_SW sd1 02:99:02:00:01:01"
               "$NS_R1 eth0 02:99:02:00:00:11 $NS_SW sr1 02:99:02:00:01:11"
               "$NS_R2 eth0 02:99:02:00:00:12 $NS_SW sr2 02:99:02:00:01:12")
        BRIDGES=("br0 02:99:02:00:00:fe sd1 sr1 sr2")
        DIR_IFS=(d0 d1)
        REAL_IP=([r1]=10.99.2.11/24 [r2]=10.99.2.12/24)
        REAL_GW=([r1]=10.99.2.1 [r2]=10.99.2.1)
        CLIENT_ROUTE="10.99.0.0/16 via $DIR_CLIENT_IP"
        ;;
    dr|tun)
        TOPO_NS=("$NS_CLIENT" "$NS_DIR" "$NS_SW" "$NS_R1" "$NS_R2")
        VETHS=("$NS_CLIENT c0 02:99:01:00:00:02 $NS_SW sc0 02:99:01:00:01:02"
               "$NS_DIR d0 02:99:01:00:00:01 $NS_SW sd0 02:99:01:00:01:01"
               "$NS_R1 eth0 02:99:01:00:00:11 $NS_SW sr1 02:99:01:00:01:11"
               "$NS_R2 eth0 02:99:01:00:00:12 $NS_SW sr2 02:99:01:00:01:12")
        BRIDGES=("br0 02:99:01:00:00:fe sc0 sd0 sr1 sr2")
        DIR_IFS=(d0)
        REAL_IP=([r1]=10.99.1.11/24 [r2]=10.99.1.12/24)
        # Replies go straight to the on-link client; no gateway at all, so
        # nothing can silently take a path through the director.
        REAL_GW=([r1]= [r2]=)
        CLIENT_ROUTE=""
        ;;
    tun-l3)
        TOPO_NS=("$NS_CLIENT" "$NS_DIR" "$NS_SW" "$NS_RT" "$NS_R1" "$NS_R2")
        VETHS=("$NS_CLIENT c0 02:99:01:00:00:02 $NS_SW sc0 02:99:01:00:01:02"
               "$NS_DIR d0 02:99:01:00:00:01 $NS_SW sd0 02:99:01:00:01:01"
               "$NS_RT eth0 02:99:01:00:00:fe $NS_SW srt0 02:99:01:00:01:fe"
               "$NS_RT eth1 02:99:03:00:00:01 $NS_SW srt1 02:99:03:00:01:01"
               "$NS_R1 eth0 02:99:03:00:00:11 $NS_SW sr1 02:99:03:00:01:11"
               "$NS_R2 eth0 02:99:03:00:00:12 $NS_SW sr2 02:99:03:00:01:12")
        BRIDGES=("br0 02:99:01:00:00:fd sc0 sd0 srt0"
                 "br1 02:99:03:00:00:fe srt1 sr1 sr2")
        DIR_IFS=(d0)
        REAL_IP=([r1]=10.99.3.11/24 [r2]=10.99.3.12/24)
        REAL_GW=([r1]=10.99.3.1 [r2]=10.99.3.1)
        CLIENT_ROUTE=""
        RT_IPS=(10.99.1.254/24 10.99.3.1/24)
        ;;
    fullnat)
        TOPO_NS=("$NS_CLIENT" "$NS_DIR" "$NS_SW" "$NS_RT" "$NS_R1" "$NS_R2")
        VETHS=("$NS_CLIENT c0 02:99:01:00:00:02 $NS_DIR d0 02:99:01:00:00:01"
               "$NS_DIR d1 02:99:02:00:00:01 $NS_SW sd1 02:99:02:00:01:01"
               "$NS_RT eth0 02:99:02:00:00:fe $NS_SW srt0 02:99:02:00:01:fe"
               "$NS_RT eth1 02:99:03:00:00:01 $NS_SW srt1 02:99:03:00:01:01"
               "$NS_R1 eth0 02:99:03:00:00:11 $NS_SW sr1 02:99:03:00:01:11"
               "$NS_R2 eth0 02:99:03:00:00:12 $NS_SW sr2 02:99:03:00:01:12")
        BRIDGES=("br0 02:99:02:00:00:fd sd1 srt0"
                 "br1 02:99:03:00:00:fe srt1 sr1 sr2")
        DIR_IFS=(d0 d1)
        REAL_IP=([r1]=10.99.3.11/24 [r2]=10.99.3.12/24)
        REAL_GW=([r1]=10.99.3.1 [r2]=10.99.3.1)
        CLIENT_ROUTE="10.99.0.0/16 via $DIR_CLIENT_IP"
        RT_IPS=(10.99.2.254/24 10.99.3.1/24)
        ;;
    ha-nat)
        # Two directors on both segments; keepalived moves the VIP and the
        # reals' gateway 10.99.2.1 between them (lab/ha.sh starts them).
        TOPO_NS=("$NS_CLIENT" "$NS_DIRA" "$NS_DIRB" "$NS_SW" "$NS_R1" "$NS_R2")
        DIR_NSS=("$NS_DIRA" "$NS_DIRB")
        VETHS=("$NS_CLIENT c0 02:99:01:00:00:02 $NS_SW sc0 02:99:01:00:01:02"
               "$NS_DIRA d0 02:99:01:00:00:0a $NS_SW sda0 02:99:01:00:01:0a"
               "$NS_DIRB d0 02:99:01:00:00:0b $NS_SW sdb0 02:99:01:00:01:0b"
               "$NS_DIRA d1 02:99:02:00:00:0a $NS_SW sda1 02:99:02:00:01:0a"
               "$NS_DIRB d1 02:99:02:00:00:0b $NS_SW sdb1 02:99:02:00:01:0b"
               "$NS_R1 eth0 02:99:02:00:00:11 $NS_SW sr1 02:99:02:00:01:11"
               "$NS_R2 eth0 02:99:02:00:00:12 $NS_SW sr2 02:99:02:00:01:12")
        BRIDGES=("br0 02:99:01:00:00:fe sc0 sda0 sdb0"
                 "br1 02:99:02:00:00:fe sda1 sdb1 sr1 sr2")
        DIR_IFS=(d0 d1)
        REAL_IP=([r1]=10.99.2.11/24 [r2]=10.99.2.12/24)
        REAL_GW=([r1]=10.99.2.1 [r2]=10.99.2.1)
        CLIENT_ROUTE=""
        ;;
    ha-dr)
        TOPO_NS=("$NS_CLIENT" "$NS_DIRA" "$NS_DIRB" "$NS_SW" "$NS_R1" "$NS_R2")
        DIR_NSS=("$NS_DIRA" "$NS_DIRB")
        VETHS=("$NS_CLIENT c0 02:99:01:00:00:02 $NS_SW sc0 02:99:01:00:01:02"
               "$NS_DIRA d0 02:99:01:00:00:0a $NS_SW sda0 02:99:01:00:01:0a"
               "$NS_DIRB d0 02:99:01:00:00:0b $NS_SW sdb0 02:99:01:00:01:0b"
               "$NS_R1 eth0 02:99:01:00:00:11 $NS_SW sr1 02:99:01:00:01:11"
               "$NS_R2 eth0 02:99:01:00:00:12 $NS_SW sr2 02:99:01:00:01:12")
        BRIDGES=("br0 02:99:01:00:00:fe sc0 sda0 sdb0 sr1 sr2")
        DIR_IFS=(d0)
        REAL_IP=([r1]=10.99.1.11/24 [r2]=10.99.1.12/24)
        REAL_GW=([r1]= [r2]=)
        CLIENT_ROUTE=""
        ;;
    ha-fullnat)
        # The pair shares the local address 10.99.2.100, moved with the VIP.
        TOPO_NS=("$NS_CLIENT" "$NS_DIRA" "$NS_DIRB" "$NS_SW" "$NS_RT" "$NS_R1" "$NS_R2")
        DIR_NSS=("$NS_DIRA" "$NS_DIRB")
        VETHS=("$NS_CLIENT c0 02:99:01:00:00:02 $NS_SW sc0 02:99:01:00:01:02"
               "$NS_DIRA d0 02:99:01:00:00:0a $NS_SW sda0 02:99:01:00:01:0a"
               "$NS_DIRB d0 02:99:01:00:00:0b $NS_SW sdb0 02:99:01:00:01:0b"
               "$NS_DIRA d1 02:99:02:00:00:0a $NS_SW sda1 02:99:02:00:01:0a"
               "$NS_DIRB d1 02:99:02:00:00:0b $NS_SW sdb1 02:99:02:00:01:0b"
               "$NS_RT eth0 02:99:02:00:00:fe $NS_SW srt0 02:99:02:00:01:fe"
               "$NS_RT eth1 02:99:03:00:00:01 $NS_SW srt1 02:99:03:00:01:01"
               "$NS_R1 eth0 02:99:03:00:00:11 $NS_SW sr1 02:99:03:00:01:11"
               "$NS_R2 eth0 02:99:03:00:00:12 $NS_SW sr2 02:99:03:00:01:12")
        BRIDGES=("br0 02:99:01:00:00:fe sc0 sda0 sdb0"
                 "br1 02:99:02:00:00:fd sda1 sdb1 srt0"
                 "br2 02:99:03:00:00:fe srt1 sr1 sr2")
        DIR_IFS=(d0 d1)
        REAL_IP=([r1]=10.99.3.11/24 [r2]=10.99.3.12/24)
        REAL_GW=([r1]=10.99.3.1 [r2]=10.99.3.1)
        CLIENT_ROUTE=""
        RT_IPS=(10.99.2.254/24 10.99.3.1/24)
        ;;
    *) die "unknown topology '$TOPO' (one of: $TOPOLOGIES)" ;;
    esac
}

current_topology() {
    local t=nat
    [ -f "$RUN/topology" ] && t=$(cat "$RUN/topology")
    echo "$t"
}

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

sysctl_ns() {  # ns key value  (key as under /proc/sys, dots or slashes)
    local path=/proc/sys/${2//.//}
    nsx "$1" sh -c "echo $3 > $path" || die "$1: cannot set $2=$3"
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

start_bg() {  # key ns script args...: a lab daemon with pid/ready/log files named key
    local key=$1 ns=$2 script=$3
    shift 3
    rm -f "$RUN/$key.ready"
    # setsid: own session, immune to the caller's terminal signals; the pid
    # recorded is the interpreter's (ip netns exec execs, it does not fork).
    setsid ip netns exec "$ns" "$PY" -u "$HERE/$script" "$@" --ready-file "$RUN/$key.ready" \
        </dev/null >"$RUN/$key.log" 2>&1 &
    echo $! >"$RUN/$key.pid"
}

start_real_server() {  # name
    start_bg "$1" "$LAB-$1" realserver.py --name "$1" --blob "$RUN/blob.bin"
}

start_decap() {  # name
    start_bg "$1-decap" "$LAB-$1" ipip-decap.py --dev "$TUN_DEV" --vip "$VIP/32"
}

wait_ready() {  # key
    local r=$1 i
    for i in $(seq 100); do
        if [ -f "$RUN/$r.ready" ]; then
            # the daemon writes its own pid: authoritative even if setsid forked
            cat "$RUN/$r.ready" >"$RUN/$r.pid"
            return 0
        fi
        kill -0 "$(cat "$RUN/$r.pid")" 2>/dev/null || { cat "$RUN/$r.log" >&2; die "$r died"; }
        sleep 0.1
    done
    cat "$RUN/$r.log" >&2
    die "$r not ready after 10 s"
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
    local topo=${1:-nat}
    [ "$(id -u)" = 0 ] || die "must run as root"
    case " $TOPOLOGIES " in *" $topo "*) ;; *) die "unknown topology '$topo' (one of: $TOPOLOGIES)" ;; esac
    cmd_down
    UP_DONE=0
    trap on_up_exit EXIT
    trap 'exit 130' INT TERM
    PY=$(python_bin)
    mkdir -p "$RUN"
    topo_vars "$topo"
    echo "$topo" >"$RUN/topology"

    local ns v br r ifc
    for ns in "${TOPO_NS[@]}"; do ns_setup "$ns"; done
    for v in "${VETHS[@]}"; do
        # shellcheck disable=SC2086
        veth $v
    done

    # switch: plain learning bridges, no STP, no forward delay
    for br in "${BRIDGES[@]}"; do
        set -- $br
        local name=$1 mac=$2
        shift 2
        ip -n "$NS_SW" link add "$name" address "$mac" type bridge stp_state 0 forward_delay 0
        nsx "$NS_SW" ethtool -K "$name" tx off rx off tso off gso off gro off >/dev/null 2>&1 || true
        for ifc in "$@"; do
            ip -n "$NS_SW" link set "$ifc" master "$name"
            ip -n "$NS_SW" link set "$ifc" up
        done
        ip -n "$NS_SW" link set "$name" up
    done

    # director(s): interfaces up, no addresses (rvsd owns them), kernel ARP off
    for ns in "${DIR_NSS[@]}"; do
        for ifc in "${DIR_IFS[@]}"; do
            ip -n "$ns" link set "$ifc" arp off
            ip -n "$ns" link set "$ifc" up
        done
    done
    # HA: keepalived puts the VIPs on the kernel interfaces (k0, k1), so the
    # kernel would also take what arrives on the veths af_packet reads and
    # reset it. A NIC given to DPDK is not the kernel's at all; here the
    # kernel is kept off the veths by policy routing (the local table moved
    # behind a blackhole for them). af_packet still sees every frame.
    if [ "${topo#ha-}" != "$topo" ]; then
        for ns in "${DIR_NSS[@]}"; do
            ip -n "$ns" rule add pref 100 table local
            ip -n "$ns" rule del pref 0 table local
            local pref=10
            for ifc in "${DIR_IFS[@]}"; do
                ip -n "$ns" rule add pref $pref iif "$ifc" blackhole
                pref=$((pref + 1))
            done
        done
    fi

    # client
    ip -n "$NS_CLIENT" addr add "$CLIENT_IP/24" dev c0
    ip -n "$NS_CLIENT" link set c0 up
    if [ -n "$CLIENT_ROUTE" ]; then
        # shellcheck disable=SC2086
        ip -n "$NS_CLIENT" route add $CLIENT_ROUTE dev c0
    fi

    # router (fullnat, tun-l3): between the director's segment and the reals' one
    if [ ${#RT_IPS[@]} -gt 0 ]; then
        ip -n "$NS_RT" addr add "${RT_IPS[0]}" dev eth0
        ip -n "$NS_RT" addr add "${RT_IPS[1]}" dev eth1
        ip -n "$NS_RT" link set eth0 up
        ip -n "$NS_RT" link set eth1 up
        sysctl_ns "$NS_RT" net.ipv4.ip_forward 1
        # tun-l3: replies from the VIP (a 10.99.1.0/24 address) arrive on eth1
        for ifc in all default eth0 eth1; do
            sysctl_ns "$NS_RT" "net.ipv4.conf.$ifc.rp_filter" 0
        done
    fi

    # reals
    for r in "${REALS[@]}"; do
        ns=$LAB-$r
        case "$topo" in
        dr|tun|tun-l3|ha-dr)
            # Never answer (nor announce) ARP for an address that is not on
            # the interface asked: the VIP belongs to the director on the wire.
            sysctl_ns "$ns" net.ipv4.conf.all.arp_ignore 1
            sysctl_ns "$ns" net.ipv4.conf.all.arp_announce 2
            sysctl_ns "$ns" net.ipv4.conf.eth0.arp_ignore 1
            sysctl_ns "$ns" net.ipv4.conf.eth0.arp_announce 2
            ;;
        esac
        if [ "$topo" = tun ] || [ "$topo" = tun-l3 ]; then
            # Decapsulated packets enter on tunl-vip from a client routed via
            # eth0: strict reverse-path filtering would drop them.
            sysctl_ns "$ns" net.ipv4.conf.all.rp_filter 0
            sysctl_ns "$ns" net.ipv4.conf.default.rp_filter 0
            sysctl_ns "$ns" net.ipv4.conf.eth0.rp_filter 0
        fi
        ip -n "$ns" addr add "${REAL_IP[$r]}" dev eth0
        ip -n "$ns" link set eth0 up
        [ -z "${REAL_GW[$r]}" ] || ip -n "$ns" route add default via "${REAL_GW[$r]}" dev eth0
        if [ "$topo" = dr ] || [ "$topo" = ha-dr ]; then ip -n "$ns" addr add "$VIP/32" dev lo; fi
    done

    make_blob
    for r in "${REALS[@]}"; do
        start_real_server "$r"
        if [ "${topo%-l3}" = tun ]; then start_decap "$r"; fi
    done
    for r in "${REALS[@]}"; do
        wait_ready "$r"
        if [ "${topo%-l3}" = tun ]; then wait_ready "$r-decap"; fi
    done

    local problems
    problems=$(cmd_check) || die "lab checks failed: $problems"
    UP_DONE=1
    trap - EXIT INT TERM
    log "up ($topo): client $CLIENT_IP, VIP $VIP, director $DIR_CLIENT_IP (d0 02:99:01:00:00:01), reals ${REAL_IP[r1]} ${REAL_IP[r2]}"
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
        rm -f "$RUN"/*.ready "$RUN/topology"
    fi
    # 2. anything else still running inside the lab's namespaces (an rvsd left
    #    by a crashed test, a client): a namespace with processes in it would
    #    outlive `ip netns del` together with its interfaces.
    for ns in "${EVERY_NS[@]}"; do
        ns_exists "$ns" || continue
        for pid in $(ip netns pids "$ns" 2>/dev/null); do kill_pid "$pid"; done
    done
    for ns in "${EVERY_NS[@]}"; do
        ns_exists "$ns" || continue
        ip netns del "$ns" 2>/dev/null || { sleep 0.2; ip netns del "$ns" 2>/dev/null; } ||
            log "warning: could not delete namespace $ns"
    done
    return 0
}

cmd_status() {
    local ns any=0
    for ns in "${EVERY_NS[@]}"; do
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
    echo "topology: $(current_topology)"
    if ns_exists "$NS_SW"; then
        local br
        for br in $(ip -n "$NS_SW" -br link show type bridge | awk '{print $1}'); do
            echo "== bridge $br"; ip -n "$NS_SW" -br link show master "$br" | sed 's/^/   /'
        done
    fi
    local key
    for key in r1 r2 r1-decap r2-decap; do
        if [[ $key == *decap ]] && [ ! -f "$RUN/$key.pid" ]; then continue; fi
        if [ -f "$RUN/$key.pid" ] && kill -0 "$(cat "$RUN/$key.pid")" 2>/dev/null; then
            echo "$key: running (pid $(cat "$RUN/$key.pid"), log $RUN/$key.log)"
        else
            echo "$key: NOT running"
        fi
    done
}

# Verifies the invariants rvsd relies on. Prints problems, non-zero if any.
cmd_check() {
    local bad=0 ns ifc feat r v topo
    topo=$(current_topology)
    topo_vars "$topo"
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
    want_sysctl() {  # ns key value
        local got
        got=$(nsx "$1" cat "/proc/sys/${2//.//}" 2>/dev/null || echo missing)
        [ "$got" = "$3" ] || { echo "$1: $2 is $got, want $3"; bad=1; }
    }
    running() {  # key
        { [ -f "$RUN/$1.pid" ] && kill -0 "$(cat "$RUN/$1.pid")" 2>/dev/null; } ||
            { echo "$1 not running"; bad=1; }
    }
    for ns in "${TOPO_NS[@]}"; do
        ns_exists "$ns" || { echo "namespace $ns missing"; bad=1; continue; }
        [ "$(nsx "$ns" cat /proc/sys/net/ipv6/conf/all/disable_ipv6 2>/dev/null)" = 1 ] ||
            { echo "$ns: IPv6 not disabled"; bad=1; }
    done
    if [ "$bad" = 0 ]; then
        for v in "${VETHS[@]}"; do
            # shellcheck disable=SC2086
            set -- $v
            check_if "$1" "$2"; check_if "$4" "$5"
        done
        for ns in "${DIR_NSS[@]}"; do
            for ifc in "${DIR_IFS[@]}"; do
                if [ -n "$(ip -n "$ns" -4 -o addr show dev "$ifc")" ]; then
                    echo "$ns/$ifc has an IPv4 address"; bad=1
                fi
                ip -n "$ns" link show "$ifc" | grep -q 'state UP\|,UP' ||
                    { echo "$ns/$ifc is not up"; bad=1; }
            done
        done
        for r in "${REALS[@]}"; do
            ns=$LAB-$r
            running "$r"
            case "$topo" in
            dr|tun|tun-l3|ha-dr)
                for ifc in all eth0; do
                    want_sysctl "$ns" "net.ipv4.conf.$ifc.arp_ignore" 1
                    want_sysctl "$ns" "net.ipv4.conf.$ifc.arp_announce" 2
                done
                ;;
            esac
            case "$topo" in
            dr|ha-dr)
                ip -n "$ns" -4 -o addr show dev lo | grep -q " $VIP/32 " ||
                    { echo "$ns: VIP $VIP/32 not on lo"; bad=1; }
                ;;
            tun|tun-l3)
                running "$r-decap"
                ip -n "$ns" -4 -o addr show dev "$TUN_DEV" 2>/dev/null | grep -q " $VIP/32 " ||
                    { echo "$ns: VIP $VIP/32 not on $TUN_DEV"; bad=1; }
                ! ip -n "$ns" -4 -o addr show dev lo | grep -q " $VIP/" ||
                    { echo "$ns: VIP on lo in the tun topology"; bad=1; }
                for ifc in all default eth0 "$TUN_DEV"; do
                    want_sysctl "$ns" "net.ipv4.conf.$ifc.rp_filter" 0
                done
                ;;
            esac
        done
        if [ ${#RT_IPS[@]} -gt 0 ]; then
            want_sysctl "$NS_RT" net.ipv4.ip_forward 1
        fi
    fi
    if [ "$bad" = 0 ]; then echo "lab $LAB ($topo): ok"; else return 1; fi
}

case "${1:-}" in
    up)     cmd_up "${2:-nat}" ;;
    down)   cmd_down ;;
    status) cmd_status ;;
    check)  cmd_check ;;
    *) echo "usage: LAB=name $0 up [${TOPOLOGIES// /|}] | down | status | check" >&2; exit 2 ;;
esac
