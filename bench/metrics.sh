#!/usr/bin/env bash
# bench/metrics.sh [--runs N] [--rounds R] — the cost of a Prometheus scrape,
# rvsd with 10,000 services x 10 reals (one net_pcap port, --no-huge, no lab):
#   1. on 2 workers: `GET /metrics` timed (median of N, default 5) with its
#      size, and rvsd's transient memory (peak RSS during the scrapes above
#      the RSS before); targets: under 1 s and under 50 MB;
#   2. on 1 worker (CPU 1) forwarding established traffic (1,000 flows
#      replayed for ever from a pcap), with 100 services x 10 reals (a
#      director's usual size) and with the 10,000: packets per second over R pairs
#      (default 10) of 5 s windows, one with no scrape and one with a scrape
#      every second (the scraper on CPU 0, beside rvsd's control and metrics
#      threads); the change is the median of the pairs' ratios, so that the
#      machine's drift cancels; target: under 2%. The spread of the quiet
#      windows is printed beside it: the noise floor of the machine. With
#      10,000 services a spinning process keeps CPU 0 busy in the quiet
#      windows as the scrapes (most of each second) do in the others:
#      on a 2-CPU VM an idle CPU 0 slows CPU 1 down by itself (scraped
#      windows came out 5-10% faster without it), and a director gives its
#      control thread a core of its own anyway.
# Prints a table and writes bench/results/metrics.md (RESULTS overrides).
# Needs root (DPDK).
set -eEuo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
RVSD=${RVSD:-$ROOT/target/release/rvsd}
GEN=$ROOT/bench/control/gen.py
RESULTS=${RESULTS:-$ROOT/bench/results/metrics.md}
RUNS=5
ROUNDS=10
WINDOW=5
SERVICES=10000
# Throughput is measured with a director of 100 services and with the 10,000.
TP_SERVICES="100 10000"
REALS=10
LISTEN=127.0.0.1:9311
while [ $# -gt 0 ]; do
    case $1 in
        --runs) RUNS=$2; shift ;;
        --rounds) ROUNDS=$2; shift ;;
        -h|--help) sed -n '2,20p' "$0"; exit 0 ;;
        *) echo "bench/metrics.sh: unknown argument $1" >&2; exit 2 ;;
    esac
    shift
done
log() { echo "bench/metrics: $*" >&2; }
[ -x "$RVSD" ] || { log "$RVSD not found: cargo build --release"; exit 1; }
[ "$(id -u)" = 0 ] || { log "needs root (DPDK)"; exit 1; }

RUN=$(mktemp -d /tmp/rvs-bench-metrics.XXXXXX)
RVSD_PID=
stop_rvsd() {
    local i
    if [ -n "$RVSD_PID" ] && kill -0 "$RVSD_PID" 2>/dev/null; then
        kill -TERM "$RVSD_PID" 2>/dev/null || true
        for i in $(seq 100); do kill -0 "$RVSD_PID" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$RVSD_PID" 2>/dev/null || true
    fi
    RVSD_PID=
}
cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    stop_rvsd
    rm -rf "$RUN"
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

start_rvsd() {  # config log
    local i
    "$RVSD" --config "$1" > "$2" 2>&1 &
    RVSD_PID=$!
    for i in $(seq 600); do
        grep -q "rvsd: ready" "$2" && return 0
        kill -0 "$RVSD_PID" 2>/dev/null || { cat "$2" >&2; log "rvsd exited"; exit 1; }
        sleep 0.1
    done
    log "rvsd not ready within 60 s"; exit 1
}

# --- 1. one scrape: time and memory ------------------------------------------
python3 "$GEN" pcap --mac 02:70:63:61:70:00 --count 1000 "$RUN/flows.pcap"
python3 "$GEN" config --pcap "$RUN/flows.pcap" --socket "$RUN/rvsd.sock" --services "$SERVICES" \
    --reals "$REALS" --workers 2 --metrics "$LISTEN" > "$RUN/rvsd.yaml"
start_rvsd "$RUN/rvsd.yaml" "$RUN/rvsd.log"
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
stop_rvsd
log "scrape: ${MEDIAN} s, ${TRANSIENT} MB transient"

# --- 2. throughput with and without a scrape every second --------------------
cat > "$RUN/pairs.py" <<'EOF'
import json, os, signal, statistics, subprocess, sys, threading, time, urllib.request
pid, log, listen = int(sys.argv[1]), sys.argv[2], sys.argv[3]
rounds, window, spin = int(sys.argv[4]), float(sys.argv[5]), sys.argv[6] == "1"

def stats_lines():
    return [l.split("rvsd: stats ", 1)[1] for l in open(log) if "rvsd: stats " in l]

def sent():
    """(time, packets the port sent) from a SIGUSR1 stats line."""
    before = len(stats_lines())
    at = time.monotonic()
    os.kill(pid, signal.SIGUSR1)
    while len(stats_lines()) == before:
        time.sleep(0.01)
    return at, sum(p["tx_packets"] for p in json.loads(stats_lines()[before])["ports"])

def window_pps(scrape):
    done, scrapes = threading.Event(), []
    def scraper():
        while not done.wait(1.0 if scrapes else 0):
            with urllib.request.urlopen(f"http://{listen}/metrics", timeout=30) as r:
                while r.read(1 << 20):
                    pass
            scrapes.append(1)
    spinner = None if scrape or not spin else subprocess.Popen(
        ["taskset", "-c", "0", sys.executable, "-c", "while True: pass"])
    t0, p0 = sent()
    thread = threading.Thread(target=scraper) if scrape else None
    if thread:
        thread.start()
    time.sleep(window)
    t1, p1 = sent()
    done.set()
    if thread:
        thread.join()
    if spinner:
        spinner.kill()
        spinner.wait()
    return (p1 - p0) / (t1 - t0), len(scrapes)

time.sleep(3)  # the first pass of the pcap sets the connections up
quiet, scraped, count = [], [], 0
for _ in range(rounds):
    quiet.append(window_pps(False)[0])
    pps, n = window_pps(True)
    scraped.append(pps)
    count += n
q, s = statistics.median(quiet), statistics.median(scraped)
ratios = [b / a - 1 for a, b in zip(quiet, scraped)]
change = statistics.median(ratios)
print("bench/metrics: pairs (quiet, scraped Mpps): " + ", ".join(
    f"{a / 1e6:.2f}/{b / 1e6:.2f}" for a, b in zip(quiet, scraped)), file=sys.stderr)
spread = 100 * (max(quiet) - min(quiet)) / q
print(f"{q / 1e6:.3f} {s / 1e6:.3f} {100 * change:+.2f} {count} {spread:.1f}")
EOF
TP_ROWS=""
WORST=0
throughput() {  # services: one rvsd on 1 worker, ROUNDS pairs of windows
    local services=$1 quiet scraped delta scrapes spread slowdown
    python3 "$GEN" config --pcap "$RUN/flows.pcap" --infinite --socket "$RUN/rvsd.sock" \
        --services "$services" --reals "$REALS" --workers 1 --metrics "$LISTEN" > "$RUN/tp.yaml"
    start_rvsd "$RUN/tp.yaml" "$RUN/tp.log"
    log "throughput with $services services: $ROUNDS pairs of $WINDOW s windows"
    # Scrapes that keep CPU 0 busy most of each second: keep it as busy in
    # the quiet windows (see the header).
    local spin=0
    [ "$services" -lt 1000 ] || spin=1
    read -r quiet scraped delta scrapes spread < <(taskset -c 0 python3 "$RUN/pairs.py" \
        "$RVSD_PID" "$RUN/tp.log" "$LISTEN" "$ROUNDS" "$WINDOW" "$spin")
    stop_rvsd
    log "throughput: $quiet Mpps quiet, $scraped Mpps scraped every second ($delta%)"
    # A slowdown is what the target bounds; a scraped window faster than
    # its quiet twin is noise, said as such.
    slowdown=$(awk -v d="$delta" 'BEGIN { print (d < 0) ? -d : 0 }')
    if [ "$slowdown" = 0 ]; then verdict_text="met (no slowdown)"
    else verdict_text=$(verdict "$slowdown" 2); fi
    TP_ROWS+="| established packets/s, 1 worker, 1,000 flows, $services services x $REALS reals, no scrape (median of $ROUNDS windows of ${WINDOW} s; they spread over ${spread}%) | $quiet Mpps | | |
| the same with a scrape every second ($scrapes scrapes) | $scraped Mpps | | |
| change (median of the pairs' ratios) | ${delta}% | slowdown under 2% | $verdict_text |
"
}
verdict() { awk -v v="$1" -v t="$2" 'BEGIN { print (v < t) ? "met" : "MISSED" }'; }
for services in $TP_SERVICES; do throughput "$services"; done
TABLE="| what | value | target | |
|---|---:|---:|---|
| one scrape of $SERVICES services x $REALS reals, 2 workers (median of $RUNS, curl's total) | ${MEDIAN} s | 1 s | $(verdict "$MEDIAN" 1) |
| its size | $((BYTES / 1024 / 1024)) MiB, $LINES samples | | |
| rvsd's transient memory (peak RSS during the scrapes minus RSS before) | $TRANSIENT MB | 50 MB | $(verdict "$TRANSIENT" 50) |
${TP_ROWS%$'\n'}"
mkdir -p "$(dirname "$RESULTS")"
{
    echo "# bench/metrics.sh ($(date -u +%Y-%m-%d), $(nproc) CPUs)"
    echo
    echo "$TABLE"
} > "$RESULTS"
echo "$TABLE"
