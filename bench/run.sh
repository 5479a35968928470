#!/usr/bin/env bash
# bench/run.sh [--quick] [--no-e2e] [--modes "nat dr tun fullnat"] — rvs's benchmarks in
# one command. Prints a table and writes bench/results/latest.{csv,md,png}
# (raw JSON lines in latest.jsonl). Needs root (DPDK, namespaces). Nothing here
# is a test: no number fails anything.
#
#   (a) throughput on DPDK's own path, no NIC, one worker lcore:
#       - ring-gen: a generator lcore transmits 64-byte frames into net_ring0,
#         the worker polls it and forwards to net_null0. Ceiling: the same
#         generator and vdevs with an io-forward loop instead of rvs.
#       - pcap: net_pcap0,infinite_rx=1 replaying the flows → net_null0.
#         Ceiling: dpdk-testpmd --forward-mode=io on the same two vdevs.
#       per mode × traffic: new connections (SYN, every tuple distinct) and
#       established (ACKs over N existing connections, visited in a scattered
#       order, N = 1k, 10k, 100k, 1M, 4M; pcap: 1k and 100k).
#   (b) instructions per packet of the packet path: valgrind callgrind on
#       bench_inmem (the same Engine on in-memory buffers), counting only the
#       engine call per packet.
#   (c) memory per tracked connection at 1M connections.
#   (d) end to end in the namespace lab (bench/e2e.sh): wrk → nginx through
#       rvs NAT, nftables DNAT and HAProxy TCP mode.
#
# Environment: BENCH_WORKER_CPU (1), BENCH_GEN_CPU (0), BENCH_EAL (extra EAL
# arguments, e.g. "--no-huge -m 2048").
set -eEuo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
COMMAND="bash bench/run.sh${*:+ $*}"
QUICK=0
E2E=1
MODES="nat dr tun fullnat"
while [ $# -gt 0 ]; do
    case $1 in
        --quick) QUICK=1 ;;
        --no-e2e) E2E=0 ;;
        --modes) MODES=$2; shift ;;
        -h|--help) sed -n '2,25p' "$0"; exit 0 ;;
        *) echo "bench/run.sh: unknown argument $1" >&2; exit 2 ;;
    esac
    shift
done

WORKER_CPU=${BENCH_WORKER_CPU:-1}
GEN_CPU=${BENCH_GEN_CPU:-0}
EXTRA_EAL=${BENCH_EAL:-}
if [ "$QUICK" = 1 ]; then
    WARMUP=0.5; SECONDS_PER_RUN=2; FLOWS="1000 100000"; IR_PACKETS=20000
    E2E_SECONDS=5; INMEM_PACKETS=1000000; INMEM_CASES="new:0 est:1000 est:100000"
else
    WARMUP=1; SECONDS_PER_RUN=5; FLOWS="1000 10000 100000 1000000 4000000"; IR_PACKETS=200000
    E2E_SECONDS=10; INMEM_PACKETS=4000000
    INMEM_CASES="new:0 est:1000 est:10000 est:100000 est:1000000 est:4000000"
fi

RESULTS=$ROOT/bench/results
RAW=$RESULTS/latest.jsonl
TMP=$(mktemp -d /tmp/rvsbench.XXXXXX)
cleanup() { rm -rf "$TMP"; }
trap cleanup EXIT
trap 'exit 130' INT TERM
log() { echo "bench: $*" >&2; }

[ "$(id -u)" = 0 ] || { log "needs root (DPDK, network namespaces)"; exit 1; }

# --------------------------------------------------------------- tools
# dpdk-testpmd is in Debian's dpdk-dev, not in dpdk.
need=()
command -v dpdk-testpmd >/dev/null || need+=(dpdk-dev)
command -v valgrind >/dev/null || need+=(valgrind)
/usr/bin/python3 -c 'import matplotlib' 2>/dev/null || need+=(python3-matplotlib)
if [ "$E2E" = 1 ]; then
    for pair in wrk:wrk nginx:nginx-light haproxy:haproxy nft:nftables; do
        command -v "${pair%%:*}" >/dev/null || need+=("${pair#*:}")
    done
fi
if [ ${#need[@]} -gt 0 ]; then
    log "installing ${need[*]}"
    apt-get update -qq
    # policy-rc.d-style: do not let the packages start system services
    RUNLEVEL=1 DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
fi

log "building (release)"
cargo build --release -q -p rvs-dataplane --bin rvsd --example bench_dpdk --example bench_inmem
DPDK_BENCH=$ROOT/target/release/examples/bench_dpdk
INMEM=$ROOT/target/release/examples/bench_inmem

mkdir -p "$RESULTS"
: >"$RAW"
CPU_MODEL=$(lscpu | sed -n 's/^Model name: *//p' | head -1)
CPUS=$(nproc)
jq_meta() {
    python3 -c 'import json,sys; a=sys.argv[1:]; print(json.dumps({"part":"meta","cpu":a[0],"cpus":int(a[1]),"quick":a[2]=="1","command":a[3],"date":a[4],"dpdk":a[5],"load":a[6],"kernel":a[7]}))' \
        "$CPU_MODEL" "$CPUS" "$QUICK" "$COMMAND" "$(date -u +%Y-%m-%dT%H:%MZ)" \
        "$(pkg-config --modversion libdpdk 2>/dev/null || echo '?')" \
        "$(cut -d' ' -f1-3 /proc/loadavg)" "$(uname -r)"
}
jq_meta >>"$RAW"

dpdk_run() {  # args...: one bench_dpdk run, its JSON line appended
    local out
    if out=$(timeout 300 "$DPDK_BENCH" "$@" --warmup "$WARMUP" --seconds "$SECONDS_PER_RUN" \
            --worker-cpu "$WORKER_CPU" --gen-cpu "$GEN_CPU" --eal "$EXTRA_EAL" 2>"$TMP/dpdk.log"); then
        echo "$out" | grep '^{' >>"$RAW"
        log "  $(echo "$out" | grep '^{' | cut -c1-160)"
    else
        log "  bench_dpdk $* failed:"; tail -5 "$TMP/dpdk.log" >&2
    fi
}

# testpmd io forwarding net_pcap0 (the pcap of FLOWS flows) → net_null0.
testpmd_run() {  # flows
    local flows=$1 pcap=$TMP/flows-$1.pcap secs
    "$DPDK_BENCH" pcap --flows "$flows" --out "$pcap"
    secs=$(python3 -c "print(int($WARMUP + $SECONDS_PER_RUN + 3))")
    local in_memory=--in-memory
    case " $EXTRA_EAL " in *" --no-huge "*) in_memory= ;; esac
    # shellcheck disable=SC2086
    timeout -s INT "$secs" dpdk-testpmd -l "$GEN_CPU,$WORKER_CPU" --main-lcore "$GEN_CPU" \
        --no-pci $in_memory --no-telemetry --file-prefix "rvsbench-tp$$" $EXTRA_EAL \
        --vdev "net_pcap0,rx_pcap=$pcap,infinite_rx=1" --vdev net_null0,no-rx=1 -- \
        --forward-mode=io --auto-start --stats-period 1 --nb-cores=1 \
        --total-num-mbufs=$((flows + 32768)) </dev/null >"$TMP/testpmd.log" 2>&1 || true
    python3 - "$TMP/testpmd.log" "$flows" "$WARMUP" >>"$RAW" <<'EOF' || { log "  testpmd: no result"; tail -20 "$TMP/testpmd.log" >&2; }
import json, re, sys
text, flows, warmup = open(sys.argv[1]).read(), int(sys.argv[2]), float(sys.argv[3])
# one block per port per period; port 1 is net_null0: what was forwarded
samples = [int(m.group(1)) for m in re.finditer(
    r"NIC statistics for port 1.*?Tx-pps:\s+(\d+)", text, re.S)]
samples = samples[int(warmup + 0.999):]
samples = [s for s in samples if s > 0] or samples
if not samples:
    sys.exit(1)
mpps = sum(samples) / len(samples) / 1e6
print(json.dumps({"part": "throughput", "engine": "testpmd", "source": "pcap", "mode": "-",
                  "traffic": "est", "flows": flows, "mpps": round(mpps, 3), "samples": len(samples)}))
EOF
    log "  testpmd io pcap→null, $flows flows: $(tail -1 "$RAW" | cut -c1-160)"
}

# --------------------------------------------------------------- (a)
log "(a) throughput, one worker on CPU $WORKER_CPU, generator on CPU $GEN_CPU"
for flows in new $FLOWS; do
    if [ "$flows" = new ]; then
        traffic=(--traffic new)
    else
        # room for every flow: the default table holds 2M
        traffic=(--traffic est --flows "$flows" --conns $(( flows > 1900000 ? flows + flows / 4 : 2097152 )))
    fi
    dpdk_run iofwd "${traffic[@]}"
    for mode in $MODES; do
        dpdk_run rvs --mode "$mode" "${traffic[@]}"
    done
done
for flows in 1000 100000; do
    testpmd_run "$flows"
    for mode in $MODES; do
        dpdk_run rvs --mode "$mode" --traffic est --flows "$flows" --source pcap --pcap "$TMP/rvs-$flows.pcap"
    done
done

# --------------------------------------------------------------- (b)
log "(b) instructions per packet (callgrind, $IR_PACKETS packets each)"
# Instruction counts barely depend on the number of flows (the misses they
# cause do not show in Ir); 100k flows keeps callgrind's priming short.
IR_CASES="new:0 est:1000"
[ "$QUICK" = 1 ] || IR_CASES="$IR_CASES est:100000"
bash "$ROOT/bench/ir.sh" --packets "$IR_PACKETS" --modes "$MODES" --cases "$IR_CASES" --raw "$RAW" 2>&1 |
    while read -r line; do log "  $line"; done || log "  some callgrind runs failed (see above)"
for mode in $MODES; do
    # the same runs natively: wall-clock ns per packet of the engine alone
    for case in $INMEM_CASES; do
        traffic=${case%%:*} flows=${case#*:}
        "$INMEM" run --mode "$mode" --traffic "$traffic" --flows "$flows" --packets "$INMEM_PACKETS" >>"$RAW" ||
            log "  bench_inmem $mode $traffic $flows failed"
    done
done

# --------------------------------------------------------------- (c)
log "(c) memory per connection at 1M connections"
for mode in $MODES; do
    "$INMEM" memory --mode "$mode" --conns 1000000 >>"$RAW" && log "  $(tail -1 "$RAW")"
done

# --------------------------------------------------------------- (d)
if [ "$E2E" = 1 ]; then
    log "(d) end to end in the lab (wrk, ${E2E_SECONDS}s each)"
    bash "$ROOT/bench/e2e.sh" "$RAW" "$E2E_SECONDS" || log "  e2e failed (see above)"
fi

/usr/bin/python3 "$ROOT/bench/report.py" "$RAW" "$RESULTS/latest"
