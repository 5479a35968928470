#!/usr/bin/env bash
# lab/fastpath-syscalls.sh — which system calls does an rvsd worker make while
# it forwards traffic? Brings the lab up, starts rvsd (conf/lab-nat.yaml),
# attaches strace to the worker lcore's thread only, pushes HTTP requests, a
# 20 MiB download and UDP through the VIP, and prints the syscall summary.
#
# Expected: nothing but the net_af_packet PMD's TX kick (`sendto`, once per TX
# burst: af_packet's way to tell the kernel a ring slot is ready; a NIC PMD has
# none) and the idle back-off sleep (`clock_nanosleep`, only after empty polls;
# `restart_syscall` when strace attached during one: the kernel resumes the
# interrupted sleep). Any other syscall fails the check. Run as root; everything is torn down on exit.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
export LAB=${LAB:-rvssys}
RVSD=${RVSD:-$ROOT/target/release/rvsd}
RUN=$ROOT/lab/run/$LAB
command -v strace >/dev/null || DEBIAN_FRONTEND=noninteractive apt-get install -y -qq strace >/dev/null

rvsd_pid=""
cleanup() {
    [ -n "$rvsd_pid" ] && kill -TERM "$rvsd_pid" 2>/dev/null && wait "$rvsd_pid" 2>/dev/null || true
    bash lab/lab.sh down >/dev/null 2>&1 || true
}
trap cleanup EXIT

bash lab/lab.sh up >/dev/null
mkdir -p "$RUN"
ip netns exec "$LAB-dir" "$RVSD" --config conf/lab-nat.yaml 2>"$RUN/rvsd.log" &
rvsd_pid=$!
for _ in $(seq 100); do grep -q "rvsd: ready" "$RUN/rvsd.log" && break; sleep 0.1; done
grep -q "rvsd: ready" "$RUN/rvsd.log" || { cat "$RUN/rvsd.log"; exit 1; }

# DPDK names worker lcore threads after the lcore (rte-worker-N / lcore-worker-N).
worker_tid=""
for task in /proc/"$rvsd_pid"/task/*; do
    case "$(cat "$task/comm")" in *worker*) worker_tid=${task##*/} ;; esac
done
[ -n "$worker_tid" ] || { echo "no worker thread found in rvsd ($rvsd_pid)"; exit 1; }
echo "rvsd pid $rvsd_pid, worker thread $worker_tid ($(cat /proc/"$rvsd_pid"/task/"$worker_tid"/comm))"

strace -c -p "$worker_tid" -o "$RUN/strace.txt" &
strace_pid=$!
sleep 1
client() { ip netns exec "$LAB-client" python3 lab/client.py "$@"; }
client http --url http://10.99.1.100/ --count 200 --concurrency 4 >/dev/null
client download --url http://10.99.1.100/blob >/dev/null
client udp --addr 10.99.1.100:9000 --count 50 >/dev/null
sleep 1
kill -INT "$strace_pid"; wait "$strace_pid" 2>/dev/null || true

cat "$RUN/strace.txt"
unexpected=$(awk 'NR>2 && $NF !~ /^(-+|total|sendto|clock_nanosleep|nanosleep|restart_syscall|syscall)$/ {print $NF}' "$RUN/strace.txt")
if [ -n "$unexpected" ]; then
    echo "FAIL: the worker made unexpected syscalls: $unexpected"
    exit 1
fi
echo "OK: the worker thread made only af_packet TX kicks and idle sleeps"
