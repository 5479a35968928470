#!/usr/bin/env bash
# bench/ir.sh [--packets N] [--modes "nat dr tun fullnat"] [--cases "new:0 est:1000"] [--raw FILE]
# Instructions per packet of the packet path: valgrind callgrind on
# bench_inmem (the same Engine rvsd runs, on in-memory buffers), counting only
# the engine calls, one per burst of 32 (`--toggle-collect='*measured_handle*'`).
# Instruction counts are repeatable for one binary, whatever else the machine
# does, so this is the number to compare before and after a change of the
# packet path. Prints one line per case; with --raw, also appends JSON lines
# to FILE (bench/run.sh's part (b)). Needs valgrind and a release build of
# the bench_inmem example (built here).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
PACKETS=200000
MODES="nat dr tun fullnat"
CASES="new:0 est:1000"
RAW=
while [ $# -gt 0 ]; do
    case $1 in
        --packets) PACKETS=$2; shift ;;
        --modes) MODES=$2; shift ;;
        --cases) CASES=$2; shift ;;
        --raw) RAW=$2; shift ;;
        -h|--help) sed -n '2,11p' "$0"; exit 0 ;;
        *) echo "bench/ir.sh: unknown argument $1" >&2; exit 2 ;;
    esac
    shift
done
log() { echo "bench: $*" >&2; }
command -v valgrind >/dev/null || { log "needs valgrind (apt-get install valgrind)"; exit 1; }

cargo build --release -q -p rvs-dataplane --example bench_inmem
INMEM=$ROOT/target/release/examples/bench_inmem
TMP=$(mktemp -d /tmp/rvs-ir.XXXXXX)
trap 'rm -rf "$TMP"' EXIT

status=0
for mode in $MODES; do
    for case in $CASES; do
        traffic=${case%%:*} flows=${case#*:}
        if ! valgrind --tool=callgrind --callgrind-out-file="$TMP/callgrind.out" \
                --toggle-collect='*measured_handle*' \
                "$INMEM" run --mode "$mode" --traffic "$traffic" --flows "$flows" --packets "$PACKETS" \
                >"$TMP/ir.json" 2>"$TMP/valgrind.log"; then
            log "callgrind $mode $traffic $flows failed:"; tail -5 "$TMP/valgrind.log" >&2
            status=1
            continue
        fi
        line=$(python3 - "$TMP/callgrind.out" "$TMP/ir.json" <<'PY'
import json, re, sys
text = open(sys.argv[1]).read()
total = int(re.search(r"^(?:totals|summary):\s+(\d+)", text, re.M).group(1))
run = json.loads(open(sys.argv[2]).read().strip().splitlines()[-1])
print(json.dumps({"part": "ir", "mode": run["mode"], "traffic": run["traffic"], "flows": run["flows"],
                  "packets": run["packets"], "ir_total": total,
                  "ir_per_packet": round(total / run["packets"], 1)}))
PY
)
        [ -z "$RAW" ] || echo "$line" >>"$RAW"
        python3 -c 'import json,sys; r=json.loads(sys.argv[1]); print("%-8s %-4s %7d flows %8.1f instructions/packet" % (r["mode"], r["traffic"], r["flows"], r["ir_per_packet"]))' "$line"
    done
done
exit $status
