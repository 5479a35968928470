"""A director pair: keepalived's VRRP moves the VIP, rvsd follows it over
netlink and syncs its connections (IPVS sync protocol v1) to the other
director, so that a crash of the master loses no connection.

The lab is `lab/lab.sh up ha-nat|ha-dr|ha-fullnat`; lab/ha.sh starts,
crashes and stops each director's rvsd and keepalived (advert_int 1,
director a priority 150, b 100, preempt_delay 8).
"""
import hashlib
import json
import subprocess
import sys
import time

import pytest

from conftest import CLIENT_PY, LAB, NS_CLIENT, ROOT, RUN, RVSADM, VIP

HA_SH = ROOT / "lab" / "ha.sh"
ADVERT_INT = 1.0
DRIP_CHUNKS, DRIP_SIZE = 300, 1000  # 30 s, a write every 100 ms
DRIP = f"http://{VIP}/drip?chunks={DRIP_CHUNKS}&size={DRIP_SIZE}&interval=0.1"
DRIP_SHA = hashlib.sha256(b"d" * (DRIP_CHUNKS * DRIP_SIZE)).hexdigest()
BLOB_RATE = 1_500_000  # bytes/s: the 20 MiB download spans the failover


def ha(*args, check=True, timeout=90):
    r = subprocess.run(["bash", str(HA_SH), *args], capture_output=True, text=True,
                       timeout=timeout, env={"LAB": LAB, "PATH": "/usr/sbin:/usr/bin:/sbin:/bin"})
    if check and r.returncode != 0:
        pytest.fail(f"ha.sh {' '.join(args)} failed ({r.returncode}):\n{r.stdout}\n{r.stderr}")
    return r.stdout.strip()


def rvsadm(director, *args):
    r = subprocess.run([str(RVSADM), "--socket", str(RUN / f"ha-{director}.sock"), *args],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, f"rvsadm {' '.join(args)} on {director}: {r.stderr}"
    return r.stdout


def connections(director):
    """Lines of `rvsadm -L -c -n` on `director` (one per connection)."""
    out = rvsadm(director, "-L", "-c", "-n")
    return [line for line in out.splitlines() if line.startswith(("TCP", "UDP"))]


def wait_holder(want, timeout):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if ha("holder") == want:
            return time.monotonic()
        time.sleep(0.05)
    pytest.fail(f"{want} does not hold the VIP after {timeout} s (holder: {ha('holder')});\n"
                f"{log_tails()}")


def log_tails():
    out = []
    for d in "ab":
        for kind in ("rvsd", "keepalived"):
            path = RUN / f"ha-{d}.{kind}.log"
            try:
                lines = path.read_text(errors="replace").splitlines()[-25:]
            except OSError:
                continue
            out.append(f"--- {path}:\n" + "\n".join(lines))
    return "\n".join(out)


def download(url, rate=0, timeout=10.0):
    """client.py download in the client namespace, in the background."""
    cmd = ["ip", "netns", "exec", NS_CLIENT, sys.executable, str(CLIENT_PY), "download",
           "--url", url, "--timeout", str(timeout)]
    if rate:
        cmd += ["--rate", str(rate)]
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def result(proc, timeout=120):
    out, err = proc.communicate(timeout=timeout)
    try:
        return json.loads(out.strip().splitlines()[-1])
    except (ValueError, IndexError):
        pytest.fail(f"client.py download: no JSON:\n{out}\n{err}")


@pytest.fixture
def pair(lab_manager, request):
    """The HA lab of the test's mode with both directors stopped at the end."""
    mode = request.param
    lab = lab_manager.ensure(f"ha-{mode}")
    try:
        yield lab
    finally:
        rep = getattr(request.node, "rep_call", None)
        if rep is not None and rep.failed:
            sys.stderr.write(log_tails() + "\n")
        for d in "ab":
            ha("stop", d, check=False)


@pytest.mark.parametrize("pair", ["nat", "dr", "fullnat"], indirect=True)
def test_a_crashed_master_loses_no_connection_and_takes_them_back(pair):
    lab = pair
    ha("start", "a")
    wait_holder("a", 10)
    ha("start", "b")
    time.sleep(2 * ADVERT_INT)
    assert ha("holder") == "a", "b must stay backup while a (priority 150) runs"
    daemons = rvsadm("a", "-L", "--daemon")
    assert "master sync daemon (mcast=k0, syncid=1" in daemons, daemons
    assert "backup sync daemon (mcast=k0, syncid=1" in daemons, daemons
    warm = lab.http(20)
    assert warm["ok"] == 20, warm

    stream = download(DRIP, timeout=10)
    blob = download(f"http://{VIP}/blob", rate=BLOB_RATE, timeout=10)
    time.sleep(3)
    # The backup already holds both connections (synced on the client's
    # third packet).
    synced = connections("b")
    assert len([c for c in synced if "ESTABLISHED" in c]) >= 2, synced

    crashed = time.monotonic()
    ha("crash", "a")
    took_over = wait_holder("b", 3 * ADVERT_INT + 1 + 2)
    failover = took_over - crashed
    sys.stderr.write(f"ha: failover {failover:.2f} s (keepalived: VIP on b's k0)\n")
    assert failover <= 3 * ADVERT_INT + 1, f"B took {failover:.2f} s"

    s, b = result(stream), result(blob)
    assert s.get("error") is None and s["bytes"] == DRIP_CHUNKS * DRIP_SIZE, s
    assert s["sha256"] == DRIP_SHA, s
    assert b.get("error") is None and b["sha256"] == lab.blob_sha256(), b
    sys.stderr.write(f"ha: longest stall of the stream {s['stall']} s, download {b['stall']} s\n")
    after = lab.http(20)
    assert after["ok"] == 20, after

    # A comes back with the higher priority: B's connections move back.
    stream = download(DRIP, timeout=15)
    time.sleep(2)
    ha("start", "a")
    wait_holder("a", 8 + 3 * ADVERT_INT + 5)
    s = result(stream)
    assert s.get("error") is None and s["bytes"] == DRIP_CHUNKS * DRIP_SIZE, s
    assert s["sha256"] == DRIP_SHA, s
    back = lab.http(20)
    assert back["ok"] == 20, back
