#!/usr/bin/env bash
# lab/ha.sh — the two directors of the HA lab (`lab/lab.sh up ha-nat`,
# `ha-dr` or `ha-fullnat`): each runs rvsd and keepalived (VRRP only) in its
# namespace ($LAB-dira, $LAB-dirb).
#
#   lab/ha.sh config a|b         write director a's (b's) rvs.yaml and
#                                keepalived.conf under lab/run/$LAB/ and print
#                                their paths
#   lab/ha.sh start a|b [PRIO]   start its rvsd (waits for ready), then its
#                                keepalived with VRRP priority PRIO (a: 150,
#                                b: 100 by default; the higher one holds the
#                                VIP, and takes it back when it returns)
#   lab/ha.sh crash a|b          SIGKILL its rvsd and keepalived (a crash)
#   lab/ha.sh stop a|b           stop both cleanly
#   lab/ha.sh holder             which director holds the VIP now (a, b, none)
#
# Addresses: director a is 10.99.1.3 (and 10.99.2.3), b is 10.99.1.4 (and
# 10.99.2.4); the VIP 10.99.1.100 and, for ha-nat, the reals' gateway
# 10.99.2.1 (ha-fullnat: the local address 10.99.2.100) are keepalived's
# `virtual_ipaddress`, on the kernel interfaces k0 and k1 of whichever
# director is VRRP master. rvsd follows them (`ownership: kernel`) and syncs
# its connections to the other director (`sync:` master and backup, syncid
# 1, over k0).
set -eEuo pipefail

LAB=${LAB:-rvs}
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/.." && pwd)
RUN=$HERE/run/$LAB
RVSD=${RVSD:-$ROOT/target/release/rvsd}
VIP=10.99.1.100

log() { echo "ha[$LAB]: $*" >&2; }
die() { log "error: $*"; exit 1; }

topology() {
    local t
    t=$(cat "$RUN/topology" 2>/dev/null) || die "no lab is up (lab/lab.sh up ha-nat)"
    case "$t" in ha-nat|ha-dr|ha-fullnat) echo "$t" ;; *) die "the lab is $t, not an HA topology" ;; esac
}

director() {  # a|b -> sets D (a|b), NS, N (host number)
    case "${1:-}" in
    a) D=a; NS=$LAB-dira; N=3 ;;
    b) D=b; NS=$LAB-dirb; N=4 ;;
    *) die "director a or b, not '${1:-}'" ;;
    esac
}

write_config() {  # director
    local topo reals forward real_port real_addresses floating routes
    topo=$(topology)
    case "$topo" in
    ha-nat)
        forward=nat; reals="10.99.2.11 10.99.2.12"
        real_port='
  - name: real
    device: "net_af_packet1,iface=d1"
    addresses: ["10.99.2.'$N'/24"]
    floating_addresses: ["10.99.2.1/24"]
    kernel_interface: k1'
        floating='        10.99.2.1/32 dev k1'
        routes=""
        ;;
    ha-dr)
        forward=dr; reals="10.99.1.11 10.99.1.12"; real_port=""; floating=""; routes=""
        ;;
    ha-fullnat)
        forward=fullnat; reals="10.99.3.11 10.99.3.12"
        real_port='
  - name: real
    device: "net_af_packet1,iface=d1"
    addresses: ["10.99.2.'$N'/24"]
    floating_addresses: ["10.99.2.100/24"]
    kernel_interface: k1'
        floating='        10.99.2.100/32 dev k1'
        routes='
routes:
  - prefix: 10.99.3.0/24
    via: 10.99.2.254'
        ;;
    esac
    local queues="      - { port: client, queue: 0 }"
    [ -z "$real_port" ] || queues="$queues
      - { port: real, queue: 0 }"
    local locals=""
    [ "$forward" != fullnat ] || locals='
    local_addresses: [10.99.2.100]'
    local r real_lines=""
    for r in $reals; do
        real_lines="$real_lines
      - { address: $r, port: 80, forward: $forward }"
    done
    mkdir -p "$RUN"
    cat >"$RUN/ha-$D.yaml" <<EOF
# written by lab/ha.sh for director $D of the $topo lab
eal:
  main_lcore: 0
  main_cpu: 0
  args: ["--in-memory"]
# VIPs and floating addresses are served while keepalived has put them on
# a kernel interface (k0, k1): while this director is VRRP master.
ownership: kernel
ports:
  - name: client
    device: "net_af_packet0,iface=d0"
    addresses: ["10.99.1.$N/24"]
    kernel_interface: k0$real_port
$routes
worker_idle:
  idle_polls: 64
  sleep_us: 100
workers:
  - lcore: 1
    cpu: 1
    queues:
$queues
# Master for the connections made here, backup for the other director's.
sync:
  master: { mcast_interface: k0, syncid: 1 }
  backup: { mcast_interface: k0, syncid: 1 }
control:
  socket: $RUN/ha-$D.sock
services:
  - vip: $VIP
    port: 80
    protocol: tcp
    scheduler: rr$locals
    reals:$real_lines
EOF
    cat >"$RUN/ha-$D.keepalived.conf" <<EOF
# written by lab/ha.sh for director $D: VRRP only (keepalived --vrrp)
global_defs {
    router_id rvs-$D
    enable_script_security
    script_user root
    # Announce the addresses at once on becoming master, and twice more.
    vrrp_garp_master_delay 1
    vrrp_garp_master_repeat 3
}

vrrp_instance rvs {
    state BACKUP
    interface k0
    virtual_router_id 51
    priority ${PRIO:-100}
    advert_int 1
    # A director coming back waits before taking the VIP back from a
    # lower priority master: time for its backup sync daemon to hear the
    # connections made meanwhile (each is synced again every 50 packets).
    preempt_delay 8
    virtual_ipaddress {
        $VIP/32 dev k0
$floating
    }
    # A notify script still works, e.g.:
    # notify_master "/usr/local/bin/on-master.sh"
}
EOF
}

pidfile() { echo "$RUN/ha-$D.$1.pid"; }

cmd_start() {
    director "$1"
    PRIO=${2:-}
    [ -n "$PRIO" ] || { [ "$D" = a ] && PRIO=150 || PRIO=100; }
    write_config "$D"
    [ -x "$RVSD" ] || die "no rvsd at $RVSD (cargo build --release)"
    rm -f "$RUN/ha-$D.sock"
    setsid ip netns exec "$NS" "$RVSD" --config "$RUN/ha-$D.yaml" </dev/null \
        >"$RUN/ha-$D.rvsd.log" 2>&1 &
    echo $! >"$(pidfile rvsd)"
    local i
    for i in $(seq 300); do
        grep -q "rvsd: ready" "$RUN/ha-$D.rvsd.log" && break
        kill -0 "$(cat "$(pidfile rvsd)")" 2>/dev/null ||
            { cat "$RUN/ha-$D.rvsd.log" >&2; die "rvsd $D exited"; }
        sleep 0.1
    done
    grep -q "rvsd: ready" "$RUN/ha-$D.rvsd.log" || die "rvsd $D not ready after 30 s"
    setsid ip netns exec "$NS" keepalived --vrrp --dont-fork --log-console --log-detail \
        --use-file "$RUN/ha-$D.keepalived.conf" \
        --pid "$(pidfile keepalived-main)" --vrrp_pid "$(pidfile keepalived)" \
        </dev/null >"$RUN/ha-$D.keepalived.log" 2>&1 &
    echo $! >"$(pidfile keepalived-launched)"
    log "director $D: rvsd and keepalived (priority $PRIO) started in $NS"
}

cmd_crash() {
    director "$1"
    local f
    for f in "$(pidfile rvsd)" "$(pidfile keepalived-launched)" "$(pidfile keepalived)"; do
        [ -f "$f" ] && kill -KILL "$(cat "$f")" 2>/dev/null || true
    done
    # A VRRP child whose parent died may linger: nothing of this director's
    # may keep running.
    local pid
    for pid in $(ip netns pids "$NS" 2>/dev/null); do kill -KILL "$pid" 2>/dev/null || true; done
    rm -f "$RUN"/ha-"$D".*.pid
}

cmd_stop() {
    director "$1"
    local f pid i
    for f in "$(pidfile keepalived-launched)" "$(pidfile rvsd)"; do
        [ -f "$f" ] || continue
        pid=$(cat "$f")
        kill -TERM "$pid" 2>/dev/null || continue
        for i in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$pid" 2>/dev/null || true
    done
    for pid in $(ip netns pids "$NS" 2>/dev/null); do kill -KILL "$pid" 2>/dev/null || true; done
    rm -f "$RUN"/ha-"$D".*.pid
}

cmd_holder() {
    local d held=none
    for d in a b; do
        director "$d"
        if ip -n "$NS" -4 -o addr show dev k0 2>/dev/null | grep -q " $VIP/"; then held=$d; fi
    done
    echo "$held"
}

case "${1:-}" in
    config) director "${2:-}"; write_config "$D"; echo "$RUN/ha-$D.yaml $RUN/ha-$D.keepalived.conf" ;;
    start)  cmd_start "${2:-}" "${3:-}" ;;
    crash)  cmd_crash "${2:-}" ;;
    stop)   cmd_stop "${2:-}" ;;
    holder) cmd_holder ;;
    *) echo "usage: $0 config|start|crash|stop a|b [priority] | holder" >&2; exit 2 ;;
esac
