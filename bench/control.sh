#!/usr/bin/env bash
# bench/control.sh [--runs N] — the control plane at scale, wall-clock:
#   1. `rvsadm -L -c -n` of 1,000,000 connections, streamed in pages
#      (target: finishes, no timeout), and `rvsctl conns` with a filter;
#   2. `rvsctl apply` of 10,000 services x 10 reals into a running rvsd
#      (target: under 1 s), then the same file again (an empty diff);
#   3. `rvsadm -L -n` of that state (target: under 1 s), `rvsadm -S -n`,
#      `rvsctl dump`.
# rvsd runs in the root namespace on one net_pcap port (no lab, no NIC, no
# hugepages: --no-huge): the pcap holds one ARP request from the real, so
# rvsd knows its MAC, then 1,000,000 SYNs from distinct clients to the VIP,
# replayed once at start; each becomes a tracked connection (SYN_RECV, 60 s).
# Prints a table and writes bench/results/control.md. Needs root (DPDK).
#
# Environment: RVSD, RVSADM, RVSCTL (default target/release/*).
set -eEuo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
RVSD=${RVSD:-$ROOT/target/release/rvsd}
RVSADM=${RVSADM:-$ROOT/target/release/rvsadm}
RVSCTL=${RVSCTL:-$ROOT/target/release/rvsctl}
GEN=$ROOT/bench/control/gen.py
RESULTS=$ROOT/bench/results/control.md
RUNS=3
CONNS=1000000
SERVICES=10000
REALS=10
# The MAC DPDK's net_pcap gives its first port ("\x02pcap\x00").
PCAP_MAC=02:70:63:61:70:00

while [ $# -gt 0 ]; do
    case $1 in
        --runs) RUNS=$2; shift ;;
        -h|--help) sed -n '2,16p' "$0"; exit 0 ;;
        *) echo "bench/control.sh: unknown argument $1" >&2; exit 2 ;;
    esac
    shift
done

log() { echo "bench/control: $*" >&2; }

for bin in "$RVSD" "$RVSADM" "$RVSCTL"; do
    [ -x "$bin" ] || { log "$bin not found: cargo build --release --bin rvsd --bin rvsadm --bin rvsctl"; exit 1; }
done
[ "$(id -u)" = 0 ] || { log "needs root (DPDK)"; exit 1; }

RUN=$(mktemp -d /tmp/rvs-bench-control.XXXXXX)
SOCK=$RUN/rvsd.sock
RVSD_PID=

cleanup() {
    local rc=$? i
    trap - EXIT INT TERM
    if [ -n "$RVSD_PID" ] && kill -0 "$RVSD_PID" 2>/dev/null; then
        kill -TERM "$RVSD_PID" 2>/dev/null || true
        for i in $(seq 100); do kill -0 "$RVSD_PID" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$RVSD_PID" 2>/dev/null || true
    fi
    rm -rf "$RUN"
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# Wall-clock seconds of a shell command, 3 decimals.
seconds() {
    local start end
    start=$(date +%s.%N)
    bash -c "$1" >/dev/null
    end=$(date +%s.%N)
    echo "$start $end" | awk '{printf "%.3f", $2 - $1}'
}

# Median of the runs of a command.
median() {
    local i
    for i in $(seq "$RUNS"); do seconds "$1"; echo; done | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'
}

log "generating $CONNS SYNs and a config of $SERVICES services x $REALS reals in $RUN"
python3 "$GEN" pcap --mac "$PCAP_MAC" --count "$CONNS" "$RUN/syn.pcap"
python3 "$GEN" config --pcap "$RUN/syn.pcap" --socket "$SOCK" > "$RUN/rvsd.yaml"
python3 "$GEN" config --pcap "$RUN/syn.pcap" --socket "$SOCK" \
    --services "$SERVICES" --reals "$REALS" > "$RUN/big.yaml"
BIG_BYTES=$(stat -c %s "$RUN/big.yaml")

"$RVSD" --config "$RUN/rvsd.yaml" > "$RUN/rvsd.log" 2>&1 &
RVSD_PID=$!
for i in $(seq 300); do
    grep -q "rvsd: ready" "$RUN/rvsd.log" && break
    kill -0 "$RVSD_PID" 2>/dev/null || { cat "$RUN/rvsd.log" >&2; log "rvsd exited"; exit 1; }
    sleep 0.1
done
conns() {
    "$RVSCTL" --socket "$SOCK" --json workers |
        python3 -c 'import json,sys; print(sum(w["conns"] for w in json.load(sys.stdin)))'
}
for i in $(seq 600); do
    [ "$(conns)" -ge "$CONNS" ] && break
    sleep 0.1
done
[ "$(conns)" -ge "$CONNS" ] || { log "only $(conns) connections after 60 s"; exit 1; }
log "rvsd tracks $(conns) connections"

LINES=$("$RVSADM" --socket "$SOCK" -L -c -n | wc -l)
[ "$LINES" -eq $((CONNS + 2)) ] || { log "-L -c listed $LINES lines, want $((CONNS + 2))"; exit 1; }
T_LIST_C=$(median "'$RVSADM' --socket '$SOCK' -L -c -n | wc -l")
T_CONNS=$(median "'$RVSCTL' --socket '$SOCK' conns --client 10.203.0.1 --state syn_recv | wc -l")

T_APPLY=$(seconds "'$RVSCTL' --socket '$SOCK' apply '$RUN/big.yaml' > '$RUN/apply.out'")
grep -q "services: $SERVICES added" "$RUN/apply.out" ||
    { log "unexpected apply output: $(tail -2 "$RUN/apply.out")"; exit 1; }
T_NOOP=$(median "'$RVSCTL' --socket '$SOCK' apply '$RUN/big.yaml'")
LINES=$("$RVSADM" --socket "$SOCK" -L -n | wc -l)
WANT=$((3 + SERVICES + 1 + SERVICES * REALS + 1))
[ "$LINES" -eq "$WANT" ] || { log "-L -n listed $LINES lines, want $WANT"; exit 1; }
T_LIST=$(median "'$RVSADM' --socket '$SOCK' -L -n | wc -l")
T_SAVE=$(median "'$RVSADM' --socket '$SOCK' -S -n | wc -l")
T_DUMP=$(median "'$RVSCTL' --socket '$SOCK' dump | wc -l")
T_DRY=$(median "'$RVSCTL' --socket '$SOCK' apply --dry-run '$RUN/rvsd.yaml'")
kill -0 "$RVSD_PID" || { log "rvsd died"; exit 1; }

verdict() {  # seconds target
    awk -v s="$1" -v t="$2" 'BEGIN { if (t == "") print "-"; else if (s < t) print "met"; else print "MISSED" }'
}
TABLE="| what | seconds | target | |
|---|---:|---:|---|
| \`rvsadm -L -c -n\` of $CONNS connections (paged, 1,000 a page) | $T_LIST_C | streams | $( [ -n "$T_LIST_C" ] && echo met) |
| \`rvsctl conns --client IP --state syn_recv\` over them (filtered client-side) | $T_CONNS | | |
| \`rvsctl apply\` of $SERVICES services x $REALS reals ($((BIG_BYTES / 1024)) KiB of YAML, uploaded in pieces) | $T_APPLY | 1 | $(verdict "$T_APPLY" 1) |
| the same file again (empty diff, nothing adopted) | $T_NOOP | | |
| \`rvsctl apply --dry-run\` back to 1 service (diff of $((SERVICES * REALS)) reals) | $T_DRY | | |
| \`rvsadm -L -n\` of that state ($WANT lines) | $T_LIST | 1 | $(verdict "$T_LIST" 1) |
| \`rvsadm -S -n\` of that state | $T_SAVE | | |
| \`rvsctl dump\` of that state | $T_DUMP | | |"

echo "$TABLE"
mkdir -p "$(dirname "$RESULTS")"
{
    echo "# Control plane at scale"
    echo
    echo "\`bash bench/control.sh --runs $RUNS\` on $(date -u +%Y-%m-%d), $(nproc) CPUs"
    echo "($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')); rvsd with one worker on"
    echo "CPU 1 and its control thread on CPU 0, one net_pcap port, --no-huge. Wall-clock"
    echo "seconds of the whole command (client, socket and rvsd), median of $RUNS runs"
    echo "except the first apply, which runs once on a fresh state."
    echo
    echo "$TABLE"
} > "$RESULTS"
log "wrote $RESULTS"
