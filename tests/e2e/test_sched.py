"""Schedulers and persistence end to end, in the NAT lab (lab/lab.sh nat).

client 10.99.1.2 (and a second client address 10.99.1.3) --- rvsd --- r1, r2.
"""
import subprocess
import sys
import time

import pytest

from conftest import NS_CLIENT, R1, R2, RVSADM, VIP, real, render_config, service

SECOND_CLIENT = "10.99.1.3"


@pytest.fixture
def second_client(lab):
    """A second client address in the client namespace, removed afterwards."""
    subprocess.run(["ip", "netns", "exec", NS_CLIENT, "ip", "addr", "add",
                    f"{SECOND_CLIENT}/24", "dev", "c0"], check=True)
    try:
        yield SECOND_CLIENT
    finally:
        subprocess.run(["ip", "netns", "exec", NS_CLIENT, "ip", "addr", "del",
                        f"{SECOND_CLIENT}/24", "dev", "c0"], check=False)


def requests(lab, count, url=f"http://{VIP}/", source=None):
    args = ["http", "--url", url, "--count", str(count)]
    if source:
        args += ["--source", source]
    res = lab.client(*args)
    assert res["errors"] == 0, res
    return res


def test_persistent_client_stays_on_one_real_while_others_spread(lab, start_rvsd, second_client):
    svc = service(80, "tcp", "rr", [real(R1), real(R2)])
    svc["persistent"] = 300
    start_rvsd(render_config([svc]))
    first = requests(lab, 20)["by_real"]
    assert len(first) == 1 and sum(first.values()) == 20, first
    other = requests(lab, 20, source=second_client)["by_real"]
    assert len(other) == 1, other
    assert set(other) != set(first), "rr gives the second client the other real"
    again = requests(lab, 10)["by_real"]
    assert again == {list(first)[0]: 10}, again


def test_without_persistence_the_same_client_spreads(lab, start_rvsd):
    start_rvsd(render_config([service(80, "tcp", "rr", [real(R1), real(R2)])]))
    by_real = requests(lab, 20)["by_real"]
    assert by_real == {"r1": 10, "r2": 10}, by_real


def test_port_zero_service_ties_every_port_together(lab, start_rvsd, second_client):
    svc = service(0, "tcp", "rr", [real(R1), real(R2)])
    svc["persistent"] = 300
    start_rvsd(render_config([svc]))
    http = requests(lab, 5, url=f"http://{VIP}:80/")
    alt = requests(lab, 5, url=f"http://{VIP}:8080/")
    assert len(http["by_real"]) == 1 and http["by_real"] == alt["by_real"], (http, alt)
    assert alt["by_port"] == {"8080": 5}, alt
    other = requests(lab, 5, url=f"http://{VIP}:8080/", source=second_client)
    assert other["by_real"] != http["by_real"], "another client goes elsewhere"


@pytest.mark.parametrize("scheduler", ["sh", "mh"])
def test_source_hashing_keeps_a_client_on_one_real(lab, start_rvsd, scheduler):
    start_rvsd(render_config([service(80, "tcp", scheduler, [real(R1), real(R2)])]))
    by_real = requests(lab, 30)["by_real"]
    assert len(by_real) == 1 and sum(by_real.values()) == 30, by_real


SLOW_DOWNLOAD = r"""
import hashlib, socket, sys
s = socket.create_connection((sys.argv[1], 80), timeout=20)
s.sendall(b"GET /blob HTTP/1.0\r\nHost: x\r\n\r\n")
data = b""
while b"\r\n\r\n" not in data:
    data += s.recv(65536)
head, body = data.split(b"\r\n\r\n", 1)
real = [l.split(b":", 1)[1].strip().decode() for l in head.split(b"\r\n") if l.lower().startswith(b"x-real:")][0]
print(real, flush=True)
sys.stdin.readline()          # hold the connection open until told to go on
h = hashlib.sha256(body)
n = len(body)
while True:
    chunk = s.recv(1 << 16)
    if not chunk:
        break
    h.update(chunk)
    n += len(chunk)
print(n, h.hexdigest(), flush=True)
"""


def test_weight_zero_keeps_an_established_connection_and_moves_new_ones(lab, start_rvsd):
    d = start_rvsd(render_config([service(80, "tcp", "rr", [real(R1), real(R2)])]))
    slow = subprocess.Popen(["ip", "netns", "exec", NS_CLIENT, sys.executable, "-c", SLOW_DOWNLOAD, VIP],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        busy = slow.stdout.readline().strip()
        assert busy in ("r1", "r2"), busy
        address = {"r1": R1, "r2": R2}[busy]
        d.rvsadm("-e", "-t", f"{VIP}:80", "-r", f"{address}:80", "-m", "-w", "0")
        time.sleep(0.3)     # the workers take the new snapshot
        listing = d.rvsadm("-L", "-n").stdout
        assert f"{address}:80" in listing and "Masq    0" in listing, listing
        by_real = requests(lab, 20)["by_real"]
        assert busy not in by_real and sum(by_real.values()) == 20, by_real
        slow.stdin.write("go\n")
        slow.stdin.flush()
        size, digest = slow.stdout.readline().split()
        assert int(size) == 20 * 1024 * 1024
        assert digest == lab.blob_sha256()
    finally:
        slow.kill()
        slow.wait()


MARK_GROUP = f"""\
  - mark: 1
    scheduler: rr
    persistent: 300
    reals:
      - {{ address: {R1}, forward: nat }}
      - {{ address: {R2}, forward: nat }}
marks:
  - mark: 1
    matches:
      - {{ vip: {VIP}, port: 80, protocol: tcp }}
      - {{ vip: {VIP}, port: 8080, protocol: tcp }}
"""


def test_mark_group_ties_two_ports_into_one_persistent_service(lab, start_rvsd, second_client):
    text = render_config([])
    assert text.rstrip().endswith("services:"), text
    d = start_rvsd(text.rstrip() + "\n" + MARK_GROUP)
    http = requests(lab, 5, url=f"http://{VIP}:80/")
    alt = requests(lab, 5, url=f"http://{VIP}:8080/")
    assert len(http["by_real"]) == 1 and http["by_real"] == alt["by_real"], (http, alt)
    assert alt["by_port"] == {"8080": 5}, "reals of a mark service serve the port asked for"
    other = requests(lab, 5, url=f"http://{VIP}:80/", source=second_client)
    assert other["by_real"] != http["by_real"], "rr gives another client the other real"
    listing = d.rvsadm("-L", "-n").stdout
    assert "FWM  1 rr persistent 300" in listing, listing
    assert f"  -> {R1}:0" in listing and f"  -> {R2}:0" in listing, listing
    # Port 443 is not in the group: nothing serves it.
    res = lab.client("http", "--url", f"http://{VIP}:443/", "--count", "1", "--timeout", "2")
    assert res["errors"] == 1, res


def rvsctl(d, *args, check=True):
    rvsctl_bin = str(RVSADM.parent / "rvsctl")
    r = subprocess.run([rvsctl_bin, "--socket", str(d.socket), *args],
                       capture_output=True, text=True, timeout=30)
    if check:
        assert r.returncode == 0, r.stderr
    return r


def conns_to(d, address):
    listing = d.rvsadm("-L", "-n", "-c").stdout
    return [line for line in listing.splitlines() if line.rstrip().endswith(f"{address}:80")]


def test_removing_a_real_keeps_its_connections_unless_purged(lab, start_rvsd):
    d = start_rvsd(render_config([service(80, "tcp", "rr", [real(R1), real(R2)])]))
    slow = subprocess.Popen(["ip", "netns", "exec", NS_CLIENT, sys.executable, "-c", SLOW_DOWNLOAD, VIP],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        busy = slow.stdout.readline().strip()
        address = {"r1": R1, "r2": R2}[busy]
        rvsctl(d, "remove-real", "-t", f"{VIP}:80", "-r", f"{address}:80")
        time.sleep(0.3)
        assert address not in d.rvsadm("-L", "-n").stdout
        assert conns_to(d, address), "the established connection stays"
        slow.stdin.write("go\n")
        slow.stdin.flush()
        size, digest = slow.stdout.readline().split()
        assert int(size) == 20 * 1024 * 1024 and digest == lab.blob_sha256()
    finally:
        slow.kill()
        slow.wait()

    # Again, purging: the real's connections end at once.
    d.rvsadm("-a", "-t", f"{VIP}:80", "-r", f"{address}:80", "-m", "-w", "1")
    other = R2 if address == R1 else R1
    d.rvsadm("-e", "-t", f"{VIP}:80", "-r", f"{other}:80", "-m", "-w", "0")
    time.sleep(0.3)
    slow = subprocess.Popen(["ip", "netns", "exec", NS_CLIENT, sys.executable, "-c", SLOW_DOWNLOAD, VIP],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert slow.stdout.readline().strip() == busy
        assert conns_to(d, address)
        rvsctl(d, "remove-real", "-t", f"{VIP}:80", "-r", f"{address}:80", "--purge")
        deadline = time.monotonic() + 3
        while conns_to(d, address) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not conns_to(d, address), "purged"
    finally:
        slow.kill()
        slow.wait()


def test_rvsctl_lists_the_neighbours_the_workers_resolved(lab, start_rvsd):
    d = start_rvsd(render_config([service(80, "tcp", "rr", [real(R1), real(R2)])]))
    requests(lab, 4)
    out = rvsctl(d, "neighbours").stdout
    rows = {line.split()[0]: line.split() for line in out.splitlines()[1:]}
    assert {"10.99.1.2", R1, R2} <= set(rows), out
    assert rows[R1][2] == "real" and rows["10.99.1.2"][2] == "client", out
    assert rows[R1][1] == "02:99:02:00:00:11", out
