"""Drain for rolling releases, end to end in the NAT lab: `rvsctl drain
--wait` returns only once a download through the real has finished, no new
connection reaches the real meanwhile (not even a persistent client's),
`--timeout` gives up with a non-zero status saying what is left, and
`undrain` gives the weight back.
"""
import re
import subprocess
import threading
import time

from conftest import R1, R2, REAL_NAMES, VIP, render_config, real, service
from test_control import RVSCTL, rvsctl

DRIP = f"http://{VIP}/drip?chunks=30&size=1000&interval=0.1"


def weights(d):
    """(real → weight) of the service, from rvsadm -L -n."""
    listing = d.rvsadm("-L", "-n").stdout
    return {m.group(1): int(m.group(2))
            for m in re.finditer(r"->\s+(\d+\.\d+\.\d+\.\d+):\d+\s+\S+\s+(\d+)", listing)}


def start_download(lab):
    done = {}

    def run():
        done.update(lab.client("download", "--url", DRIP, "--timeout", 20, timeout=60))
    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, done


def test_drain_waits_for_the_download_and_undrain_restores(lab, start_rvsd):
    s = service(80, "tcp", "wrr", reals=[real(R1, weight=2), real(R2, weight=3)])
    s["persistent"] = 300
    d = start_rvsd(render_config([s]))
    first = lab.http(4)
    assert first["ok"] == 4 and len(first["by_real"]) == 1, first
    busy_name = next(iter(first["by_real"]))
    busy = R1 if REAL_NAMES[R1] == busy_name else R2
    other = R2 if busy == R1 else R1

    thread, done = start_download(lab)
    time.sleep(0.5)
    drain = subprocess.Popen(
        [str(RVSCTL), "--socket", str(d.socket), "drain", f"{VIP}:80",
         busy, "--wait", "--timeout", "30"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    time.sleep(0.3)
    # Drained: no new connection reaches it, the client's template neither.
    during = lab.http(20)
    assert during["ok"] == 20 and during["by_real"] == {REAL_NAMES[other]: 20}, during
    assert weights(d)[busy] == 0, d.rvsadm("-L", "-n").stdout
    out, err = drain.communicate(timeout=40)
    returned = time.monotonic()
    assert drain.returncode == 0, err
    assert f"real {busy}:80 drained" in out, out
    thread.join(timeout=30)
    assert done.get("bytes") == 30000 and done.get("real") == busy_name, done
    # The real's FIN ends the connection for rvsd as it passes, a moment
    # before the client reads it; returning before the download ended
    # would be at least one drip interval (0.1 s) early.
    assert returned >= done["ended"] - 0.1, (
        f"drain --wait returned {done['ended'] - returned:.3f} s before the download ended")

    # --timeout: the other real, busy with a download, does not drain in 1 s.
    thread, done = start_download(lab)
    time.sleep(0.5)
    r = rvsctl(d, "drain", f"{VIP}:80", other, "--wait", "--timeout", "1", check=False)
    assert r.returncode == 1, r
    assert f"real {other}:80 still has 1 active" in r.stderr, r.stderr
    thread.join(timeout=30)
    assert done.get("bytes") == 30000, done

    # Undrain gives each its weight back; a real not drained is refused.
    rvsctl(d, "undrain", f"{VIP}:80", busy)
    rvsctl(d, "undrain", f"{VIP}:80", other)
    assert weights(d) == {R1: 2, R2: 3}, d.rvsadm("-L", "-n").stdout
    r = rvsctl(d, "undrain", f"{VIP}:80", busy, check=False)
    assert r.returncode == 1 and "is not drained" in r.stderr, r
    res = lab.http(10)
    assert res["ok"] == 10, res
