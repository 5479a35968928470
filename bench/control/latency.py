#!/usr/bin/env python3
"""The control socket's answer time to another client, while something big runs.

  latency.py --socket PATH --stop FILE [--op version|list_service]

Until FILE exists, connects to rvsd's control socket as a new client every
20 ms (as rvsadm and rvsctl do), asks one small thing (`version`, or the
listing of the SYN service 10.201.0.1:80 that `rvsadm -L -t` asks for) and
times the answer. Prints one line for bench/control.sh's table: the worst
and median seconds, and how many of those asked got no answer in 30 s.
"""
import argparse
import json
import os
import socket
import time

REQUESTS = {
    "version": {"op": "version"},
    "list_service": {"op": "list_services",
                     "service": {"protocol": "tcp", "addr": "10.201.0.1", "port": 80}},
}


def ask(path, cmd):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(30)
    try:
        s.connect(path)
        s.sendall(json.dumps({"v": 1, "id": 1, "cmd": cmd}).encode() + b"\n")
        data = b""
        while not data.endswith(b"\n"):
            chunk = s.recv(65536)
            if not chunk:
                raise ConnectionError("closed")
            data += chunk
        if not json.loads(data)["ok"]:
            raise RuntimeError(data[:200])
    finally:
        s.close()


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--socket", required=True)
    ap.add_argument("--stop", required=True)
    ap.add_argument("--op", choices=sorted(REQUESTS), default="version")
    a = ap.parse_args()
    times, failed = [], 0
    while not os.path.exists(a.stop):
        started = time.monotonic()
        try:
            ask(a.socket, REQUESTS[a.op])
            times.append(time.monotonic() - started)
        except (OSError, RuntimeError, ValueError):
            failed += 1
        time.sleep(0.02)
    times.sort()
    if not times:
        print(f"none answered, {failed} unanswered")
        return
    print(f"{times[-1]:.3f} s worst, {times[len(times) // 2]:.3f} s median, "
          f"{failed} unanswered of {len(times) + failed}")

if __name__ == "__main__":
    main()
