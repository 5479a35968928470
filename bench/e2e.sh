#!/usr/bin/env bash
# bench/e2e.sh OUT.jsonl [SECONDS] — end to end in the namespace lab: wrk from
# the client against nginx on both reals through the VIP, three ways on the
# same topology, one JSON line each appended to OUT.jsonl:
#   1. rvsd NAT (net_af_packet on d0/d1, bench/e2e/rvsd.yaml), once per idle
#      strategy in RVS_IDLE: adaptive (the default back-off: spin 64 empty
#      polls, sleep 5 µs doubling to 100 µs), fixed (sleep 100 µs after 64
#      empty polls, the back-off of before) and busy (never sleep)
#   2. nftables DNAT load balancing in the director namespace (kernel forwarding)
#   3. HAProxy in TCP mode in the director namespace
# The lab is lab/lab.sh with LAB=rvsbench (its own namespaces); nginx replaces
# the lab's Python servers on port 80. Everything started here is stopped and
# the lab torn down on every exit. Needs root.
#
# Environment: RVSD (default target/release/rvsd), WRK_THREADS (2),
# WRK_CONNECTIONS (50), RVS_IDLE ("adaptive fixed busy").
set -eEuo pipefail

OUT=${1:?usage: bench/e2e.sh OUT.jsonl [SECONDS]}
SECONDS_PER_RUN=${2:-10}
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
export LAB=${LAB:-rvsbench}
LAB_SH=$ROOT/lab/lab.sh
LAB_RUN=$ROOT/lab/run/$LAB
RVSD=${RVSD:-$ROOT/target/release/rvsd}
THREADS=${WRK_THREADS:-2}
CONNECTIONS=${WRK_CONNECTIONS:-50}
IDLE_VARIANTS=${RVS_IDLE:-adaptive fixed busy}
NS_DIR=$LAB-dir
NS_CLIENT=$LAB-client
VIP=10.99.1.100
URL=http://$VIP/

log() { echo "bench/e2e: $*" >&2; }

RUN=$(mktemp -d /tmp/rvsbench-e2e.XXXXXX)
chmod 755 "$RUN"  # nginx workers (www-data) read the page from here
PIDS=()

stop_pid() {  # pid: TERM, wait up to 5 s, KILL
    local pid=$1 i
    kill -0 "$pid" 2>/dev/null || return 0
    kill -TERM "$pid" 2>/dev/null || true
    for i in $(seq 50); do
        kill -0 "$pid" 2>/dev/null || return 0
        sleep 0.1
    done
    kill -KILL "$pid" 2>/dev/null || true
}

cleanup() {
    local rc=$? pid
    trap - EXIT INT TERM
    for pid in "${PIDS[@]}"; do stop_pid "$pid"; done
    for f in "$RUN"/*/nginx.pid; do
        [ -f "$f" ] && stop_pid "$(cat "$f")"
    done
    bash "$LAB_SH" down || true
    rm -rf "$RUN"
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

wait_tcp() {  # ns addr port what
    local i
    for i in $(seq 100); do
        if ip netns exec "$1" bash -c "exec 3<>/dev/tcp/$2/$3" 2>/dev/null; then return 0; fi
        sleep 0.1
    done
    log "$4 does not accept connections on $2:$3"
    return 1
}

# wrk NAME: runs wrk, appends {"part":"e2e","lb":NAME,...} to OUT.
run_wrk() {
    local name=$1 text="$RUN/wrk-$1.txt" status
    status=$(ip netns exec "$NS_CLIENT" curl -s -o /dev/null -w '%{http_code}' "$URL" || true)
    [ "$status" = 200 ] || { log "$name: GET $URL answered '$status', not 200"; return 1; }
    ip netns exec "$NS_CLIENT" wrk -t"$THREADS" -c"$CONNECTIONS" -d"${SECONDS_PER_RUN}s" \
        --latency "$URL" >"$text" 2>&1 || { cat "$text" >&2; return 1; }
    python3 - "$name" "$text" "$THREADS" "$CONNECTIONS" "$SECONDS_PER_RUN" >>"$OUT" <<'EOF'
import json, re, sys
name, path, threads, conns, secs = sys.argv[1:]
text = open(path).read()
def ms(value):
    number, unit = re.match(r"([\d.]+)(us|ms|s|m)", value).groups()
    return float(number) * {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 6e4}[unit]
rps = float(re.search(r"Requests/sec:\s+([\d.]+)", text).group(1))
p99 = ms(re.search(r"^\s+99%\s+(\S+)", text, re.M).group(1))
p50 = ms(re.search(r"^\s+50%\s+(\S+)", text, re.M).group(1))
errors = re.search(r"Socket errors: (.*)", text)
non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
print(json.dumps({"part": "e2e", "lb": name, "requests_per_s": rps, "p50_ms": p50,
                  "p99_ms": p99, "wrk": f"-t{threads} -c{conns} -d{secs}s",
                  "socket_errors": errors.group(1) if errors else "",
                  "non_2xx": int(non2xx.group(1)) if non2xx else 0}))
EOF
    log "$name: $(grep -E 'Requests/sec' "$text" | tr -s ' '), p99 $(grep -E '^ +99%' "$text" | tr -s ' ')"
}

[ "$(id -u)" = 0 ] || { log "needs root"; exit 1; }
[ -x "$RVSD" ] || { log "no rvsd at $RVSD (cargo build --release)"; exit 1; }
for tool in wrk nginx haproxy nft; do
    command -v "$tool" >/dev/null || { log "$tool is not installed (bench/run.sh installs it)"; exit 1; }
done

bash "$LAB_SH" up

# nginx instead of the lab's Python servers on port 80.
for r in r1 r2; do
    if [ -f "$LAB_RUN/$r.pid" ]; then
        stop_pid "$(cat "$LAB_RUN/$r.pid")"
        rm -f "$LAB_RUN/$r.pid"
    fi
    mkdir -p "$RUN/$r/www" "$RUN/$r/tmp"
    printf '<html><body>rvs bench %s</body></html>\n' "$r" >"$RUN/$r/www/index.html"
    sed "s|@RUN@|$RUN/$r|g" "$ROOT/bench/e2e/nginx.conf" >"$RUN/$r/nginx.conf"
    setsid ip netns exec "$LAB-$r" nginx -c "$RUN/$r/nginx.conf" </dev/null \
        >"$RUN/$r/stdout.log" 2>&1 &
    PIDS+=($!)
done
wait_tcp "$LAB-r1" 10.99.2.11 80 nginx
wait_tcp "$LAB-r2" 10.99.2.12 80 nginx

# 1. rvsd NAT, once per idle strategy
for idle in $IDLE_VARIANTS; do
    case $idle in
        adaptive) min=5 max=100 ;;
        fixed) min=100 max=100 ;;
        busy) min=0 max=0 ;;
        *) log "unknown idle strategy $idle"; exit 2 ;;
    esac
    sed -e "s/^  sleep_us: .*/  sleep_us: $max/" -e "s/^  min_sleep_us: .*/  min_sleep_us: $min/" \
        "$ROOT/bench/e2e/rvsd.yaml" >"$RUN/rvsd-$idle.yaml"
    setsid ip netns exec "$NS_DIR" "$RVSD" --config "$RUN/rvsd-$idle.yaml" </dev/null \
        2>"$RUN/rvsd.log" &
    RVSD_PID=$!
    PIDS+=("$RVSD_PID")
    for i in $(seq 300); do
        grep -q "rvsd: ready" "$RUN/rvsd.log" && break
        kill -0 "$RVSD_PID" 2>/dev/null || { cat "$RUN/rvsd.log" >&2; log "rvsd died"; exit 1; }
        sleep 0.1
    done
    grep -q "rvsd: ready" "$RUN/rvsd.log" || { cat "$RUN/rvsd.log" >&2; log "rvsd not ready"; exit 1; }
    wait_tcp "$NS_CLIENT" "$VIP" 80 "rvs VIP"
    run_wrk "rvs-nat-$idle"
    stop_pid "$RVSD_PID"
    grep "rvsd: stats" "$RUN/rvsd.log" | tail -1 | cut -c1-300 >&2 || true
done

# 2. nftables DNAT: the kernel owns d0/d1 now.
ip -n "$NS_DIR" link set d0 arp on
ip -n "$NS_DIR" link set d1 arp on
ip -n "$NS_DIR" addr add 10.99.1.1/24 dev d0
ip -n "$NS_DIR" addr add "$VIP/24" dev d0
ip -n "$NS_DIR" addr add 10.99.2.1/24 dev d1
ip netns exec "$NS_DIR" sysctl -qw net.ipv4.ip_forward=1
ip netns exec "$NS_DIR" nft -f "$ROOT/bench/e2e/nft.conf"
wait_tcp "$NS_CLIENT" "$VIP" 80 "nftables VIP"
run_wrk nftables-dnat
ip netns exec "$NS_DIR" nft delete table ip rvsbench

# 3. HAProxy TCP mode, on the VIP the kernel holds.
setsid ip netns exec "$NS_DIR" haproxy -db -f "$ROOT/bench/e2e/haproxy.cfg" </dev/null \
    >"$RUN/haproxy.log" 2>&1 &
PIDS+=($!)
wait_tcp "$NS_CLIENT" "$VIP" 80 "HAProxy"
run_wrk haproxy-tcp
