#!/usr/bin/env bash
# bench/metrics.sh [--runs N] — the cost of a Prometheus scrape: rvsd with
# 10,000 services x 10 reals on 2 workers (one net_pcap port, --no-huge, no
# lab), `GET /metrics` timed (median of N, default 5) with its size, and
# rvsd's transient memory (peak RSS during the scrapes above the RSS
# before; target: under 1 s and under 50 MB). Prints a table and writes
# bench/results/metrics.md (RESULTS overrides). Needs root (DPDK).
# (The throughput cost of scraping every second is not measured yet.)
set -eEuo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
RVSD=${RVSD:-$ROOT/target/release/rvsd}
GEN=$ROOT/bench/control/gen.py
RESULTS=${RESULTS:-$ROOT/bench/results/metrics.md}
RUNS=5
SERVICES=10000
REALS=10
LISTEN=127.0.0.1:9311
while [ $# -gt 0 ]; do
    case $1 in
        --runs) RUNS=$2; shift ;;
        -h|--help) sed -n '2,9p' "$0"; exit 0 ;;
        *) echo "bench/metrics.sh: unknown argument $1" >&2; exit 2 ;;
    esac
    shift
done
log() { echo "bench/metrics: $*" >&2; }
[ -x "$RVSD" ] || { log "$RVSD not found: cargo build --release"; exit 1; }
[ "$(id -u)" = 0 ] || { log "needs root (DPDK)"; exit 1; }

RUN=$(mktemp -d /tmp/rvs-bench-metrics.XXXXXX)
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

python3 "$GEN" pcap --mac 02:70:63:61:70:00 --count 1000 "$RUN/syn.pcap"
python3 "$GEN" config --pcap "$RUN/syn.pcap" --socket "$RUN/rvsd.sock" --services "$SERVICES" \
    --reals "$REALS" --workers 2 --metrics "$LISTEN" > "$RUN/rvsd.yaml"
"$RVSD" --config "$RUN/rvsd.yaml" > "$RUN/rvsd.log" 2>&1 &
RVSD_PID=$!
for i in $(seq 600); do
    grep -q "rvsd: ready" "$RUN/rvsd.log" && break
    kill -0 "$RVSD_PID" 2>/dev/null || { cat "$RUN/rvsd.log" >&2; log "rvsd exited"; exit 1; }
    sleep 0.1
done
sleep 1
rss() { awk '/^VmRSS:/ {print $2}' "/proc/$RVSD_PID/status"; }
peak() { awk '/^VmHWM:/ {print $2}' "/proc/$RVSD_PID/status"; }
BEFORE=$(rss)
echo 5 > "/proc/$RVSD_PID/clear_refs"
TIMES=()
for i in $(seq "$RUNS"); do
    TIMES+=("$(curl -sS -o "$RUN/scrape.txt" -w '%{time_total}' "http://$LISTEN/metrics")")
done
PEAK=$(peak)
MEDIAN=$(printf '%s\n' "${TIMES[@]}" | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}')
LINES=$(grep -vc '^#' "$RUN/scrape.txt")
BYTES=$(stat -c %s "$RUN/scrape.txt")
TRANSIENT=$(( (PEAK - BEFORE) / 1024 ))
verdict() { awk -v v="$1" -v t="$2" 'BEGIN { print (v < t) ? "met" : "MISSED" }'; }
TABLE="| what | value | target | |
|---|---:|---:|---|
| one scrape of $SERVICES services x $REALS reals, 2 workers (median of $RUNS, curl's total) | ${MEDIAN} s | 1 s | $(verdict "$MEDIAN" 1) |
| its size | $((BYTES / 1024 / 1024)) MiB, $LINES samples | | |
| rvsd's transient memory (peak RSS during the scrapes minus RSS before) | $TRANSIENT MB | 50 MB | $(verdict "$TRANSIENT" 50) |"
mkdir -p "$(dirname "$RESULTS")"
{
    echo "# bench/metrics.sh ($(date -u +%Y-%m-%d), $(nproc) CPUs)"
    echo
    echo "$TABLE"
} > "$RESULTS"
echo "$TABLE"
