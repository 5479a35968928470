#!/usr/bin/env bash
# bench/control.sh [--runs N] [--big-only] — the control plane at scale:
#   1. `rvsadm -L -c -n` of 1,000,000 connections, streamed in pages
#      (target: finishes, no timeout), and `rvsctl conns` with a filter;
#   2. `rvsctl apply` of 10,000 services x 10 reals into a running rvsd
#      (target: under 1 s), then the same file again (an empty diff);
#   3. `rvsadm -L -n` of that state (target: under 1 s), `rvsadm -S -n`,
#      `rvsctl dump`;
#   4. big changes, each from one service and back: `rvsctl apply` of
#      100,000 services of one real, and `rvsadm -R` of 100,000 lines
#      (20,000 services x 4 reals): wall-clock and the peak RSS of rvsd and
#      of the client (targets: under 5 s, under 500 MB), rvsd's RSS before,
#      after and once back to one service (the memory is given back), and
#      meanwhile another client's answer time, asking `version` and the
#      `rvsadm -L -t` listing of one service every 20 ms
#      (bench/control/latency.py; target: answered throughout).
# --big-only runs part 4 alone (rvsd replays one client instead of 1,000,000).
# rvsd runs in the root namespace on one net_pcap port (no lab, no NIC, no
# hugepages: --no-huge): the pcap holds one ARP request from the real, so
# rvsd knows its MAC, then a SYN and its ACK from each of 1,000,000 distinct
# clients to the VIP, replayed once at start; each becomes a tracked,
# verified connection (ESTABLISHED, 900 s).
# Prints a table and writes bench/results/control.md. Needs root (DPDK).
#
# Environment: RVSD, RVSADM, RVSCTL (default target/release/*); BIG_SERVICES
# (100000), RESTORE_SERVICES (20000) and RESTORE_REALS (4) size part 4;
# RESULTS (bench/results/control.md) is where the tables go.
set -eEuo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
RVSD=${RVSD:-$ROOT/target/release/rvsd}
RVSADM=${RVSADM:-$ROOT/target/release/rvsadm}
RVSCTL=${RVSCTL:-$ROOT/target/release/rvsctl}
GEN=$ROOT/bench/control/gen.py
LATENCY=$ROOT/bench/control/latency.py
RESULTS=${RESULTS:-$ROOT/bench/results/control.md}
RUNS=3
CONNS=1000000
SERVICES=10000
REALS=10
BIG_SERVICES=${BIG_SERVICES:-100000}
RESTORE_SERVICES=${RESTORE_SERVICES:-20000}
RESTORE_REALS=${RESTORE_REALS:-4}
BIG_ONLY=0
# The MAC DPDK's net_pcap gives its first port ("\x02pcap\x00").
PCAP_MAC=02:70:63:61:70:00

while [ $# -gt 0 ]; do
    case $1 in
        --runs) RUNS=$2; shift ;;
        --big-only) BIG_ONLY=1; CONNS=1 ;;
        -h|--help) sed -n '2,30p' "$0"; exit 0 ;;
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
WATCHERS=()

cleanup() {
    local rc=$? i
    trap - EXIT INT TERM
    touch "$RUN/stop" 2>/dev/null || true
    for i in "${WATCHERS[@]}"; do kill "$i" 2>/dev/null || true; done
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

log "generating $CONNS clients' SYN and ACK and a config of $SERVICES services x $REALS reals in $RUN"
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

if [ "$BIG_ONLY" = 0 ]; then
    LINES=$("$RVSADM" --socket "$SOCK" -L -c -n | wc -l)
    [ "$LINES" -eq $((CONNS + 2)) ] || { log "-L -c listed $LINES lines, want $((CONNS + 2))"; exit 1; }
    T_LIST_C=$(median "'$RVSADM' --socket '$SOCK' -L -c -n | wc -l")
    T_CONNS=$(median "'$RVSCTL' --socket '$SOCK' conns --client 10.203.0.1 --state established | wc -l")

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
| \`rvsctl conns --client IP --state established\` over them (filtered client-side) | $T_CONNS | | |
| \`rvsctl apply\` of $SERVICES services x $REALS reals ($((BIG_BYTES / 1024)) KiB of YAML, uploaded in pieces) | $T_APPLY | 1 | $(verdict "$T_APPLY" 1) |
| the same file again (empty diff, nothing adopted) | $T_NOOP | | |
| \`rvsctl apply --dry-run\` back to 1 service (diff of $((SERVICES * REALS)) reals) | $T_DRY | | |
| \`rvsadm -L -n\` of that state ($WANT lines) | $T_LIST | 1 | $(verdict "$T_LIST" 1) |
| \`rvsadm -S -n\` of that state | $T_SAVE | | |
| \`rvsctl dump\` of that state | $T_DUMP | | |"
fi

# Part 4. rvsd's resident set in kB: now, and the peak since the last reset.
rss() { awk '/^VmRSS:/ {print $2}' "/proc/$RVSD_PID/status"; }
peak() { awk '/^VmHWM:/ {print $2}' "/proc/$RVSD_PID/status"; }
reset_peak() { echo 5 > "/proc/$RVSD_PID/clear_refs"; }
mb() { awk -v k="$1" 'BEGIN { printf "%.0f", k / 1024 }'; }

# Runs a big change ($2, a shell command) named $1: its wall-clock
# seconds, the client's and rvsd's peak RSS, rvsd's RSS after, and the
# other clients' answer times meanwhile. Sets BIG_ROW.
big_change() {
    local name=$1 cmd=$2 before start end client version listing after
    before=$(rss)
    reset_peak
    rm -f "$RUN/stop"
    python3 "$LATENCY" --socket "$SOCK" --stop "$RUN/stop" --op version > "$RUN/$name.version" &
    WATCHERS+=($!)
    python3 "$LATENCY" --socket "$SOCK" --stop "$RUN/stop" --op list_service > "$RUN/$name.list" &
    WATCHERS+=($!)
    sleep 0.5
    start=$(date +%s.%N)
    /usr/bin/time -f "%M" -o "$RUN/$name.client" bash -c "$cmd" > "$RUN/$name.out" 2> "$RUN/$name.err" ||
        { log "$name failed: $(tail -3 "$RUN/$name.err")"; exit 1; }
    end=$(date +%s.%N)
    sleep 0.5
    touch "$RUN/stop"
    wait "${WATCHERS[@]}"
    WATCHERS=()
    client=$(tail -1 "$RUN/$name.client")
    version=$(cat "$RUN/$name.version")
    listing=$(cat "$RUN/$name.list")
    sleep 2
    after=$(rss)
    BIG_ROW="$(echo "$start $end" | awk '{printf "%.2f", $2 - $1}') | $(mb "$(peak)") | $(mb "$client") | $(mb "$before") / $(mb "$after") | $version | $listing"
}

log "part 4: $BIG_SERVICES services of one real by rvsctl apply, $((RESTORE_SERVICES * (RESTORE_REALS + 1))) lines by rvsadm -R"
python3 "$GEN" config --pcap "$RUN/syn.pcap" --socket "$SOCK" \
    --services "$BIG_SERVICES" --reals 1 > "$RUN/huge.yaml"
python3 "$GEN" restore --services "$RESTORE_SERVICES" --reals "$RESTORE_REALS" > "$RUN/restore.txt"
HUGE_BYTES=$(stat -c %s "$RUN/huge.yaml")
RESTORE_LINES=$(wc -l < "$RUN/restore.txt")
"$RVSCTL" --socket "$SOCK" apply "$RUN/rvsd.yaml" > /dev/null
sleep 2

big_change apply "'$RVSCTL' --socket '$SOCK' apply '$RUN/huge.yaml'"
ROW_APPLY=$BIG_ROW
grep -q "services: $BIG_SERVICES added" "$RUN/apply.out" ||
    { log "unexpected apply output: $(tail -2 "$RUN/apply.out")"; exit 1; }
big_change apply-back "'$RVSCTL' --socket '$SOCK' apply '$RUN/rvsd.yaml'"
ROW_APPLY_BACK=$BIG_ROW
big_change restore "'$RVSADM' --socket '$SOCK' -R < '$RUN/restore.txt'"
ROW_RESTORE=$BIG_ROW
SAVED=$("$RVSADM" --socket "$SOCK" -S -n | wc -l)
[ "$SAVED" -eq $((RESTORE_LINES + 2)) ] || { log "-S saved $SAVED lines, want $((RESTORE_LINES + 2))"; exit 1; }
big_change restore-back "'$RVSCTL' --socket '$SOCK' apply '$RUN/rvsd.yaml'"
ROW_RESTORE_BACK=$BIG_ROW
kill -0 "$RVSD_PID" || { log "rvsd died"; exit 1; }

BIG_TABLE="| change | seconds | rvsd peak RSS MB | client peak RSS MB | rvsd RSS MB before / after | \`version\` meanwhile | \`-L -t\` listing meanwhile |
|---|---:|---:|---:|---:|---|---|
| \`rvsctl apply\` of $BIG_SERVICES services of one real ($((HUGE_BYTES / 1024)) KiB of YAML) | $ROW_APPLY |
| \`rvsctl apply\` back to one service | $ROW_APPLY_BACK |
| \`rvsadm -R\` of $RESTORE_LINES lines ($RESTORE_SERVICES services x $RESTORE_REALS reals) | $ROW_RESTORE |
| \`rvsctl apply\` back to one service | $ROW_RESTORE_BACK |"

[ "$BIG_ONLY" = 1 ] || echo "$TABLE"
echo "$BIG_TABLE"
mkdir -p "$(dirname "$RESULTS")"
{
    echo "# Control plane at scale"
    echo
    echo "\`bash bench/control.sh --runs $RUNS$( [ "$BIG_ONLY" = 1 ] && echo ' --big-only')\` on $(date -u +%Y-%m-%d), $(nproc) CPUs"
    echo "($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')); rvsd with one worker on"
    echo "CPU 1 and its control thread on CPU 0, one net_pcap port, --no-huge."
    if [ "$BIG_ONLY" = 0 ]; then
        echo "Wall-clock seconds of the whole command (client, socket and rvsd), median of $RUNS runs"
        echo "except the first apply, which runs once on a fresh state."
        echo
        echo "$TABLE"
    fi
    echo
    echo "Big changes, each once, from one service: wall-clock seconds of the command; peak RSS"
    echo "of rvsd (VmHWM, reset before) and of the client (\`time -f %M\`); rvsd's RSS before and"
    echo "2 s after; another client's answer times meanwhile, a new connection every 20 ms"
    echo "(bench/control/latency.py)."
    echo
    echo "$BIG_TABLE"
} > "$RESULTS"
log "wrote $RESULTS"
