"""rvsd's control plane end to end in the NAT lab: rvsadm as operators use
ipvsadm, rvsctl's apply/dump/reload and views, live edits under load, and
bad input of every kind while traffic flows.

client 10.99.1.2 --- d0 [rvsd] d1 --- bridge --- r1 10.99.2.11, r2 10.99.2.12
VIP 10.99.1.100. The lab is NAT, so the seed script's reals are added with
-m (masquerading) where an ipvsadm DR setup would use -g.

Run as a script inside the client namespace, this file is also the load
generator of the live-edit tests (`python3 test_control.py load ...`).
"""
import argparse
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time

import pytest

from conftest import NS_CLIENT, R1, R2, RUN, RVSD, VIP, real, render_config, service

RVSCTL = RVSD.parent / "rvsctl"
SVC = f"{VIP}:80"
EXTRA_REALS = [f"10.99.2.{n}" for n in range(50, 100)]
REAL_LINE = "  -> %-28s %-7s %-6d %-10u %-10u"
LISTING_HEAD = ("IP Virtual Server version 1.2.1 (size=4096)\n"
                "Prot LocalAddress:Port Scheduler Flags\n"
                "  -> RemoteAddress:Port           Forward Weight ActiveConn InActConn\n")


def lab_config():
    return render_config([service(80, "tcp", "rr"), service(9000, "udp", "rr")])


def rvsctl(d, *args, stdin=None, check=True, timeout=60):
    r = subprocess.run([str(RVSCTL), "--socket", str(d.socket), *map(str, args)], input=stdin,
                       capture_output=True, text=True, timeout=timeout)
    if check and r.returncode != 0:
        raise AssertionError(f"rvsctl {' '.join(map(str, args))} failed ({r.returncode}):"
                             f" {r.stderr}")
    return r


def save(d):
    return d.rvsadm("-S", "-n").stdout


def write(name, text):
    RUN.mkdir(parents=True, exist_ok=True)
    path = RUN / name
    path.write_text(text)
    return path


class Load:
    """This file's load generator, running in the client namespace."""

    def __init__(self, *args):
        self.ready = RUN / f"load-{os.getpid()}-{time.monotonic_ns()}.ready"
        self.stop_file = self.ready.with_suffix(".stop")
        for f in (self.ready, self.stop_file):
            f.unlink(missing_ok=True)
        self.proc = subprocess.Popen(
            ["ip", "netns", "exec", NS_CLIENT, sys.executable, __file__, "load",
             "--ready-file", str(self.ready), "--stop-file", str(self.stop_file),
             *map(str, args)],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    def wait_ready(self, timeout=30):
        deadline = time.monotonic() + timeout
        while not self.ready.exists():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                out, err = self.proc.communicate(timeout=5)
                raise AssertionError(f"load generator not ready:\n{out}\n{err}")
            time.sleep(0.05)

    def finish(self, timeout=180):
        self.stop_file.write_text("stop\n")
        out, err = self.proc.communicate(timeout=timeout)
        for f in (self.ready, self.stop_file):
            f.unlink(missing_ok=True)
        try:
            return json.loads(out.strip().splitlines()[-1])
        except (ValueError, IndexError):
            raise AssertionError(f"load generator gave no JSON ({self.proc.returncode}):\n"
                                 f"{out}\n{err}")

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.communicate()


def assert_clean(load, streams):
    assert load["stream_errors"] == [], load
    assert load["completed"] == streams, load
    assert load["max_gap"] < 2.0, f"a stream stalled: {load}"
    assert load["loop_errors"] == [], load
    assert load["loop_ok"] > 0, load
    assert load["loop_max_seconds"] < 2.0, f"a request stalled: {load}"


# ------------------------------------------------------------------ rvsadm, as operators use it
def test_seed_script_runs_unchanged(lab, start_rvsd):
    d = start_rvsd(lab_config())
    d.rvsadm("-C")
    d.rvsadm("--set", "30", "5", "60")
    d.rvsadm("-A", "-t", SVC, "-s", "rr", "-p", "20")
    d.rvsadm("-a", "-t", SVC, "-r", R1, "-m", "-w", "1")
    d.rvsadm("-a", "-t", SVC, "-r", R2, "-m", "-w", "1")
    listing = d.rvsadm("-L", "-n").stdout
    assert listing == (LISTING_HEAD
                       + f"TCP  {SVC} rr persistent 20\n"
                       + REAL_LINE % (f"{R1}:80", "Masq", 1, 0, 0) + "\n"
                       + REAL_LINE % (f"{R2}:80", "Masq", 1, 0, 0) + "\n"), listing
    assert d.rvsadm("-L", "--timeout").stdout == "Timeout (tcp tcpfin udp): 30 5 60\n"
    res = lab.http(20)
    assert res["errors"] == 0, res
    # Persistent for 20 s: one client address, one real.
    assert len(res["by_real"]) == 1 and sum(res["by_real"].values()) == 20, res


def test_save_restore_round_trip(lab, start_rvsd):
    d = start_rvsd(lab_config())
    d.rvsadm("-A", "-t", f"{VIP}:8080", "-s", "wlc")
    d.rvsadm("-a", "-t", f"{VIP}:8080", "-r", f"{R1}:8080", "-m", "-w", "3")
    d.rvsadm("-a", "-t", f"{VIP}:8080", "-r", f"{R2}:8080", "-m", "-w", "0")
    d.rvsadm("-E", "-u", f"{VIP}:9000", "-s", "wrr")
    d.rvsadm("-e", "-t", SVC, "-r", f"{R2}:80", "-m", "-w", "7")
    saved = save(d)
    assert f"-A -t {VIP}:8080 -s wlc\n" in saved, saved
    assert f"-a -t {SVC} -r {R2}:80 -m -w 7\n" in saved, saved
    d.rvsadm("-C")
    assert save(d) == ""
    assert d.rvsadm("-L", "-n").stdout == LISTING_HEAD
    d.rvsadm("-R", stdin=saved)
    assert save(d) == saved
    res = lab.http(20, url=f"http://{VIP}:8080/")
    assert res["errors"] == 0 and res["by_real"] == {"r1": 20}, res


def test_set_then_list_timeout(lab, start_rvsd):
    d = start_rvsd(lab_config())
    assert d.rvsadm("-L", "--timeout").stdout == "Timeout (tcp tcpfin udp): 900 120 300\n"
    d.rvsadm("--set", "30", "5", "60")
    assert d.rvsadm("-L", "--timeout").stdout == "Timeout (tcp tcpfin udp): 30 5 60\n"
    d.rvsadm("--set", "0", "10", "0")
    assert d.rvsadm("-L", "--timeout").stdout == "Timeout (tcp tcpfin udp): 30 10 60\n"
    # rvsctl dump carries them, in the YAML's words.
    dump = rvsctl(d, "dump").stdout
    assert re.search(r"^timeouts:\n  tcp: 30\n  tcpfin: 10\n  udp: 60$", dump, re.M), dump


# ------------------------------------------------------------------ live edits under load
def change_script():
    """1000 rvsadm commands that never touch a live real's existence: the
    two live reals' weights move between 1 and 5 (-e), extra reals at unused
    lab addresses come and go with weight 0, so no connection is ever
    scheduled to them."""
    ops, present, n = [], [], 0
    while len(ops) < 1000:
        extra = EXTRA_REALS[n % len(EXTRA_REALS)]
        if extra in present:
            ops.append(("-d", "-t", SVC, "-r", f"{extra}:80"))
            present.remove(extra)
        else:
            ops.append(("-a", "-t", SVC, "-r", f"{extra}:80", "-m", "-w", "0"))
            present.append(extra)
        live = (R1, R2)[n % 2]
        ops.append(("-e", "-t", SVC, "-r", f"{live}:80", "-m", "-w", str(n % 5 + 1)))
        if present:
            ops.append(("-e", "-t", SVC, "-r", f"{present[0]}:80", "-m", "-w", "0"))
        n += 1
    ops = ops[:1000]
    # Whatever is left is cleaned up afterwards, not counted.
    state = {}
    for op in ops:
        addr = op[4].split(":")[0]
        if op[0] == "-a":
            state[addr] = True
        elif op[0] == "-d":
            state.pop(addr, None)
    return ops, [a for a in state if a in EXTRA_REALS]


def test_live_edits_under_load(lab, start_rvsd):
    d = start_rvsd(lab_config())
    streams = 50
    # 50 streams of 450 chunks every 0.1 s: 45 s each, longer than the edits.
    chunks, interval = 450, 0.1
    load = Load("--streams", streams, "--chunks", chunks, "--interval", interval, "--loop")
    try:
        load.wait_ready()
        ready_at = time.monotonic()
        ops, leftover = change_script()
        started = time.monotonic()
        failures = []
        for op in ops:
            r = d.rvsadm(*op, check=False)
            if r.returncode != 0:
                failures.append((op, r.stderr))
        seconds = time.monotonic() - started
        for addr in leftover:
            d.rvsadm("-d", "-t", SVC, "-r", f"{addr}:80")
        assert failures == [], failures[:5]
        assert time.monotonic() - ready_at < chunks * interval - 2, \
            "the streams ended before the edits did"
        result = load.finish()
    finally:
        load.kill()
    assert_clean(result, streams)
    assert set(result["by_real"]) == {"r1", "r2"}, result
    assert seconds < 40, f"1000 edits took {seconds:.1f} s"
    listing = d.rvsadm("-L", "-n", "-t", SVC).stdout
    assert not any(a in listing for a in EXTRA_REALS), listing
    print(f"1000 rvsadm edits in {seconds:.1f} s; load: {result}")


def test_rvsctl_apply_under_load(lab, start_rvsd, tmp_path):
    """Whole-file applies (weights, an extra service, timeouts) back and
    forth while streams run: one snapshot each, no stream disturbed."""
    d = start_rvsd(lab_config())
    base = rvsctl(d, "dump").stdout
    changed = (base.replace("  scheduler: rr\n  reals:\n  - address: 10.99.2.11\n    weight: 1",
                            "  scheduler: rr\n  reals:\n  - address: 10.99.2.11\n    weight: 4", 1)
               .replace("timeouts:\n  tcp: 900", "timeouts:\n  tcp: 600"))
    assert changed.count("weight: 4") == 1 and "tcp: 600" in changed, changed
    changed += ("- vip: 10.99.1.101\n  port: 80\n  protocol: tcp\n  scheduler: wrr\n"
                "  reals:\n  - address: 10.99.2.11\n    weight: 1\n    forward: nat\n")
    a, b = write("apply-a.yaml", base), write("apply-b.yaml", changed)
    load = Load("--streams", 20, "--chunks", 200, "--interval", 0.1, "--loop")
    try:
        load.wait_ready()
        for i in range(50):
            out = rvsctl(d, "apply", b if i % 2 == 0 else a).stdout
            assert out.endswith(": applied\n"), out
        result = load.finish()
    finally:
        load.kill()
    assert_clean(result, 20)


# ------------------------------------------------------------------ rvsctl apply / dump / reload
def test_dump_apply_is_a_no_op(lab, start_rvsd):
    d = start_rvsd(lab_config())
    dump = rvsctl(d, "dump").stdout
    path = write("dump.yaml", dump)
    out = rvsctl(d, "apply", path).stdout
    assert out == (f"{path}: 0 settings; services: 0 added, 0 removed, 0 changed; reals of "
                   f"changed services: 0 added, 0 removed, 0 changed\n"
                   f"{path}: no changes; nothing to apply\n"), out
    report = json.loads(rvsctl(d, "--json", "apply", path).stdout)
    assert report["applied"] is False and report["diff"] == {}, report
    # Through stdin too, and the dump of the applied dump is the same text.
    assert rvsctl(d, "apply", "-", stdin=dump).stdout.endswith("no changes; nothing to apply\n")
    assert rvsctl(d, "dump").stdout == dump


def test_apply_prints_the_diff_and_applies_atomically(lab, start_rvsd):
    d = start_rvsd(lab_config())
    before = save(d)
    text = render_config([
        service(80, "tcp", "wrr", [real(R1, weight=3), real("10.99.2.13", weight=0)]),
        service(8080, "tcp", "rr", [real(R2, port=8080)]),
    ], extra="timeouts: { tcp: 60, tcpfin: 5, udp: 30 }\n"
             f"control:\n  socket: {d.socket}\n")
    path = write("new.yaml", text)
    dry = rvsctl(d, "apply", path, "--dry-run").stdout
    expected = [
        "~ timeouts.tcp: 900 -> 60",
        "~ timeouts.tcpfin: 120 -> 5",
        "~ timeouts.udp: 300 -> 30",
        f"- service udp {VIP}:9000 (rr, 2 reals)",
        f"+ service tcp {VIP}:8080 (rr, 1 real)",
        f"~ service tcp {VIP}:80",
        "    ~ scheduler: rr -> wrr",
        f"    - real {R2}:80 (nat, weight 1)",
        "    + real 10.99.2.13:80 (nat, weight 0)",
        f"    ~ real {R1}:80: weight 1 -> 3",
        f"{path}: 3 settings; services: 1 added, 1 removed, 1 changed; reals of changed "
        "services: 1 added, 1 removed, 1 changed",
        f"{path}: dry run; nothing applied",
    ]
    assert dry.splitlines() == expected, dry
    assert save(d) == before, "a dry run changed the state"
    out = rvsctl(d, "apply", path).stdout
    assert out.splitlines() == expected[:-1] + [f"{path}: applied"], out
    assert save(d) == (f"-A -t {VIP}:80 -s wrr\n"
                       f"-a -t {VIP}:80 -r {R1}:80 -m -w 3\n"
                       f"-a -t {VIP}:80 -r 10.99.2.13:80 -m -w 0\n"
                       f"-A -t {VIP}:8080 -s rr\n"
                       f"-a -t {VIP}:8080 -r {R2}:8080 -m -w 1\n")
    assert d.rvsadm("-L", "--timeout").stdout == "Timeout (tcp tcpfin udp): 60 5 30\n"
    res = lab.http(10, url=f"http://{VIP}:8080/")
    assert res["errors"] == 0 and res["by_real"] == {"r2": 10}, res
    res = lab.http(10)
    assert res["errors"] == 0 and res["by_real"] == {"r1": 10}, res


def test_apply_refuses_what_needs_a_restart(lab, start_rvsd):
    d = start_rvsd(lab_config())
    before = save(d)
    text = d.conf.read_text().replace('addresses: ["10.99.2.1/24"]', 'addresses: ["10.99.2.1/16"]')
    path = write("restart.yaml", text)
    r = rvsctl(d, "apply", path, check=False)
    assert r.returncode == 1, r
    line = next(n for n, l in enumerate(text.splitlines(), 1) if "10.99.2.1/16" in l)
    assert re.match(rf"rvsctl: {re.escape(str(path))}:{line}:\d+: ports\[1\]\.addresses\[0\]: "
                    r'"10\.99\.2\.1/24" in the running rvsd, "10\.99\.2\.1/16" here; `ports` '
                    "changes only with a restart of rvsd", r.stderr), r.stderr
    assert save(d) == before


def test_big_apply_goes_up_in_pieces(lab, start_rvsd):
    """A file larger than one request line (64 KiB) is uploaded in pieces
    and applied in one step."""
    d = start_rvsd(lab_config())
    services = [service(80, "tcp", "rr")]
    for n in range(400):
        services.append(service(10000 + n, "tcp", "wlc",
                                [real(R1, port=80, weight=n % 7), real(R2, port=80)]))
    text = render_config(services, extra=f"control:\n  socket: {d.socket}\n")
    assert len(text) > 64 * 1024
    path = write("big.yaml", text)
    out = rvsctl(d, "apply", path).stdout
    assert "services: 400 added, 1 removed, 0 changed" in out, out
    assert out.endswith(": applied\n"), out
    assert save(d).count("-A -t") == 401
    res = lab.http(10, url=f"http://{VIP}:10042/")
    assert res["errors"] == 0 and set(res["by_real"]) <= {"r1", "r2"}, res


def test_reload_and_sighup(lab, start_rvsd):
    d = start_rvsd(lab_config())
    good = d.conf.read_text()
    before = save(d)
    # SIGHUP with an invalid file: refused with file:line, state unchanged.
    bad = good.replace(f"address: {R2},", "address: 10.99.2.300,", 1)
    assert bad != good
    d.conf.write_text(bad)
    d.proc.send_signal(signal.SIGHUP)
    deadline = time.monotonic() + 5
    while "reload refused" not in d.log() and time.monotonic() < deadline:
        time.sleep(0.05)
    line = next(n for n, l in enumerate(bad.splitlines(), 1) if "10.99.2.300" in l)
    refusal = re.search(r"rvsd: reload refused, running state unchanged: (.*)", d.log())
    assert refusal, d.log_tail()
    assert re.match(rf"{re.escape(str(d.conf))}:{line}:\d+: services\[0\]\.reals\[1\]\.address: ",
                    refusal.group(1)), refusal.group(1)
    assert save(d) == before
    # SIGHUP with a good change, then back.
    wrr = good.replace("    scheduler: rr", "    scheduler: wrr", 1)
    for text, want in [(wrr, f"-A -t {SVC} -s wrr\n"), (good, f"-A -t {SVC} -s rr\n")]:
        d.conf.write_text(text)
        d.proc.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + 5
        while want not in save(d) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert want in save(d), d.log_tail()
    assert save(d) == before
    # rvsctl reload: the same refusal, on the command line.
    d.conf.write_text(bad)
    r = rvsctl(d, "reload", check=False)
    assert r.returncode == 1 and f"{d.conf}:{line}:" in r.stderr, r.stderr
    assert save(d) == before
    # A good change: dry run, then reload.
    d.conf.write_text(wrr)
    dry = rvsctl(d, "reload", "--dry-run").stdout
    assert f"~ service tcp {VIP}:80\n    ~ scheduler: rr -> wrr\n" in dry, dry
    assert save(d) == before
    assert rvsctl(d, "reload").stdout.endswith(f"{d.conf}: applied\n")
    assert f"-A -t {SVC} -s wrr\n" in save(d)


@pytest.mark.parametrize("kind,what", [("fifo", "a FIFO"), ("dev-zero", "a character device")])
def test_reload_of_a_special_file_is_refused_and_rvsd_carries_on(lab, start_rvsd, kind, what):
    """SIGHUP (and rvsctl reload) with rvsd's config path turned into a FIFO
    or /dev/zero: refused at once, saying what it is; rvsd keeps its state,
    keeps answering and stops on SIGTERM. (A FIFO once blocked the control
    thread for good; /dev/zero was read without bound, 7 GB in 6 s.)"""
    d = start_rvsd(lab_config())
    good = d.conf.read_text()
    before = save(d)
    d.conf.unlink()
    if kind == "fifo":
        os.mkfifo(d.conf)
    else:
        d.conf.symlink_to("/dev/zero")
    try:
        refusal = (f"rvsd: reload refused, running state unchanged: {d.conf}: not a regular file"
                   f" ({what}); a configuration is read from a regular file")
        d.proc.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + 5
        while refusal not in d.log() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert refusal in d.log(), d.log_tail()
        started = time.monotonic()
        assert save(d) == before
        assert rvsctl(d, "version").returncode == 0
        assert time.monotonic() - started < 2, "rvsd answered late"
        r = rvsctl(d, "reload", check=False, timeout=10)
        assert r.returncode == 1, r
        assert r.stderr == f"rvsctl: {d.conf}: not a regular file ({what}); a configuration is" \
                           " read from a regular file\n", r.stderr
        res = lab.http(10)
        assert res["errors"] == 0, res
    finally:
        d.conf.unlink()
        d.conf.write_text(good)
    assert d.stop(timeout=10) == 0, d.log_tail()
    assert "rvsd: stopped" in d.log()


# ------------------------------------------------------------------ views
def test_views(lab, start_rvsd):
    d = start_rvsd(lab_config())
    res = lab.http(10)
    assert res["errors"] == 0, res
    ports = rvsctl(d, "ports").stdout.splitlines()
    assert ports[0].split() == ["NAME", "DEVICE", "MAC", "MTU", "RXQ", "TXQ", "RXD", "TXD",
                                "ADDRESSES"], ports
    assert ports[1].split() == ["client", "net_af_packet0,iface=d0", lab.dir_mac, "1500", "1",
                                "1", "1024", "1024", "10.99.1.1/24"], ports
    assert ports[2].split()[:2] == ["real", "net_af_packet1,iface=d1"], ports
    workers = json.loads(rvsctl(d, "--json", "workers").stdout)
    assert [(w["lcore"], w["cpu"], w["queues"]) for w in workers] == \
        [(1, 1, ["client:0", "real:0"])], workers
    assert workers[0]["rx_packets"] > 0 and workers[0]["conns_created"] >= 10, workers
    table = rvsctl(d, "workers").stdout.splitlines()
    assert table[0].split()[:4] == ["WORKER", "LCORE", "CPU", "QUEUES"], table
    assert table[1].split()[:4] == ["0", "1", "1", "client:0,real:0"], table
    routes = rvsctl(d, "routes").stdout
    assert routes.splitlines() == ["PREFIX        VIA  PORT    KIND",
                                   "10.99.1.0/24  -    client  connected",
                                   "10.99.2.0/24  -    real    connected"], routes
    addresses = rvsctl(d, "addresses").stdout.splitlines()
    # By address; with `ownership: static` every address is held.
    assert [line.split() for line in addresses] == [
        ["ADDRESS", "KIND", "INTERFACE", "HELD"],
        ["10.99.1.1", "port", "-", "yes"],
        ["10.99.1.100", "vip", "-", "yes"],
        ["10.99.2.1", "port", "-", "yes"],
    ], addresses
    assert rvsctl(d, "laddrs").stdout.split() == ["SERVICE", "LADDR", "PORT", "CONNS",
                                                  "CONFLICTS"]
    version = rvsctl(d, "version").stdout
    assert re.match(r"rvsctl \S+ \(control protocol v1\)\nrvsd \S+ \(control protocol v1\)\n$",
                    version), version


def test_conns_filters(lab, start_rvsd):
    d = start_rvsd(lab_config())
    load = Load("--streams", 10, "--chunks", 100, "--interval", 0.1)
    try:
        load.wait_ready()
        everything = [json.loads(l) for l in rvsctl(d, "--json", "conns").stdout.splitlines()]
        established = [c for c in everything if c["state"] == "ESTABLISHED" and c["vport"] == 80]
        assert len(established) >= 10, everything
        to_r1 = rvsctl(d, "conns", "--real", R1, "--state", "established").stdout.splitlines()
        assert to_r1[0].split() == ["PROTO", "CLIENT", "VIRTUAL", "REAL", "STATE", "EXPIRES"]
        assert len(to_r1) - 1 == sum(1 for c in established if c["real"] == R1), to_r1
        assert all(f" {R1}:80 " in row and " ESTABLISHED " in row for row in to_r1[1:]), to_r1
        none = rvsctl(d, "conns", "--vip", VIP, "--port", 81).stdout.splitlines()
        assert len(none) == 1, none
        client = established[0]["client"]
        mine = rvsctl(d, "--json", "conns", "--client", client, "--protocol", "tcp").stdout
        assert len(mine.splitlines()) >= 10, mine
        result = load.finish()
    finally:
        load.kill()
    assert_clean_streams(result, 10)


def assert_clean_streams(load, streams):
    assert load["stream_errors"] == [] and load["completed"] == streams, load


# ------------------------------------------------------------------ bad input, traffic flowing
def raw_request(d, payload, timeout=5.0):
    """Sends `payload` on a fresh control connection; returns the answer lines."""
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(timeout)
    s.connect(str(d.socket))
    s.sendall(payload)
    data = b""
    want = payload.count(b"\n")
    try:
        while data.count(b"\n") < want:
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
    finally:
        s.close()
    return [json.loads(line) for line in data.decode().splitlines()]


def test_bad_input_answered_precisely_while_traffic_flows(lab, start_rvsd):
    d = start_rvsd(lab_config())
    silent = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    silent.connect(str(d.socket))
    silent_since = time.monotonic()
    before = save(d)
    load = Load("--streams", 10, "--chunks", 150, "--interval", 0.1, "--loop")
    try:
        load.wait_ready()
        # Wrong option combinations, bad values: rvsadm's (ipvsadm's) words, exit 2.
        for args, message in [
            (("-A", "-t", SVC, "-r", R1), "Illegal 'real-server' option with the 'add-service'"
                                          " command"),
            (("-a", "-t", SVC), "You need to supply the 'real-server' option for the"
                                " 'add-server' command"),
            (("-A", "-t", SVC, "-u", f"{VIP}:53"), "multiple 'service-address' options"
                                                   " specified"),
            (("-d", "-t", SVC, "-r", R1, "-w", "3"), "Illegal 'weight' option with the"
                                                     " 'delete-server' command"),
            (("-L", "-c", "--stats"), "options conflicts in the list command"),
            (("-a", "-t", SVC, "-r", "10.99.2.300"), "illegal real server address[:port]"
                                                     " specified"),
            (("-A", "-t", "10.99.1.300:80"), "illegal virtual server address[:port] specified"),
            (("-a", "-t", SVC, "-r", "10.99.2.20", "-w", "70000"), "illegal weight specified"),
        ]:
            r = d.rvsadm(*args, check=False)
            assert (r.returncode, r.stderr.splitlines()[0]) == (2, message), (args, r.stderr)
        # Refusals by rvsd: exit 1 and its precise reason.
        for args, message in [
            (("-A", "-t", f"{VIP}:81", "-s", "foo"), "Scheduler or persistence engine not found"),
            (("-A", "-t", SVC), "Service already exists"),
            (("-a", "-t", f"{VIP}:81", "-r", R1), "Service not defined"),
            (("-d", "-t", SVC, "-r", "10.99.2.77"), "No such destination"),
            (("-a", "-t", SVC, "-r", "192.0.2.1", "-m"),
             "services[0].reals[0].address: real 192.0.2.1 is not reachable: no connected subnet"
             " or route covers it"),
        ]:
            r = d.rvsadm(*args, check=False)
            assert (r.returncode, r.stderr.strip()) == (1, message), (args, r.stderr)
        # Bad YAML through rvsctl apply: file:line and the reason, state unchanged.
        good = d.conf.read_text()
        for name, text, where in [
            ("syntax", good.replace("    port: 80\n", "    port: [80\n", 1),
             r":\d+:\d+: .*did not find expected"),
            ("unknown-scheduler", good.replace("scheduler: rr", "scheduler: foo", 1),
             r":\d+:\d+: services\[0\]\.scheduler: unknown scheduler `foo`"),
            ("bad-address", good.replace(f"address: {R2},", "address: 10.99.2.300,", 1),
             r":\d+:\d+: services\[0\]\.reals\[1\]\.address: invalid IPv4 address"),
            ("unknown-key", good.replace("    scheduler: rr", "    schedular: rr", 1),
             r":\d+:\d+: services\[0\]\.schedular: unknown"),
        ]:
            path = write(f"bad-{name}.yaml", text)
            r = rvsctl(d, "apply", path, check=False)
            assert r.returncode == 1 and re.match(rf"rvsctl: {re.escape(str(path))}{where}",
                                                  r.stderr), (name, r.stderr)
        assert rvsctl(d, "apply", RUN / "no-such.yaml", check=False).stderr.startswith(
            f"rvsctl: cannot read {RUN / 'no-such.yaml'}: No such file")
        # Garbage on the socket: precise errors, the connection stays.
        answers = raw_request(d, b"hello\n[1,2]\n"
                                 b'{"v":2,"id":4,"cmd":{"op":"clear"}}\n'
                                 b'{"v":1,"id":5,"cmd":{"op":"reboot"}}\n'
                                 b'{"v":1,"id":6,"cmd":{"op":"apply_config","file":"x"}}\n'
                                 b'{"v":1,"id":7,"cmd":{"op":"apply_config","file":"x",'
                                 b'"upload":99}}\n'
                                 b'{"v":1,"id":8,"cmd":{"op":"version"}}\n')
        assert [(a["id"], a["ok"]) for a in answers] == \
            [(0, False), (0, False), (4, False), (5, False), (6, False), (7, False), (8, True)]
        assert answers[0]["error"].startswith("malformed request: not JSON")
        assert answers[1]["error"].startswith("malformed request: expected a JSON object")
        assert answers[2]["error"] == "unsupported protocol version 2; this rvsd speaks version 1"
        assert answers[3]["error"].startswith("invalid request: unknown variant `reboot`")
        assert answers[4]["error"] == "apply_config: needs `text` or `upload`"
        assert answers[5]["error"].startswith("no configuration upload 99")
        # A line over the 64 KiB limit: told so, then closed.
        answers = raw_request(d, b"x" * (70 * 1024) + b"\n")
        assert answers[0]["error"].startswith("request too large"), answers
        # The silent client has blocked nobody.
        assert save(d) == before
        result = load.finish()
    finally:
        load.kill()
    assert_clean(result, 10)
    # ... and is closed by rvsd after its idle timeout (30 s).
    silent.settimeout(max(1.0, 40 - (time.monotonic() - silent_since)))
    assert silent.recv(1) == b"", "rvsd did not close an idle control client"
    silent.close()
    assert d.alive()


# ------------------------------------------------------------------ load generator
def load_main(argv):
    ap = argparse.ArgumentParser(prog="test_control.py load")
    ap.add_argument("--vip", default=VIP)
    ap.add_argument("--streams", type=int, default=50)
    ap.add_argument("--chunks", type=int, default=300)
    ap.add_argument("--size", type=int, default=1000)
    ap.add_argument("--interval", type=float, default=0.1)
    ap.add_argument("--loop", action="store_true", help="requests to / meanwhile")
    ap.add_argument("--ready-file", required=True)
    ap.add_argument("--stop-file", required=True)
    a = ap.parse_args(argv)
    lock = threading.Lock()
    out = {"completed": 0, "stream_errors": [], "max_gap": 0.0, "by_real": {},
           "loop_ok": 0, "loop_errors": [], "loop_max_seconds": 0.0}
    connected = threading.Barrier(a.streams + 1) if a.streams else None

    def stream(i):
        body, real_name, gap = 0, None, 0.0
        try:
            s = socket.create_connection((a.vip, 80), timeout=5)
            s.sendall(f"GET /drip?chunks={a.chunks}&size={a.size}&interval={a.interval}"
                      f" HTTP/1.0\r\nHost: {a.vip}\r\n\r\n".encode())
            head = b""
            while b"\r\n\r\n" not in head:
                chunk = s.recv(4096)
                if not chunk:
                    raise ConnectionError("closed before the headers")
                head += chunk
            head, _, rest = head.partition(b"\r\n\r\n")
            length = int(re.search(rb"Content-Length: (\d+)", head).group(1))
            real_name = re.search(rb"X-Real: (\S+)", head).group(1).decode()
            body = len(rest)
            connected.wait(timeout=30)
            last = time.monotonic()
            while body < length:
                chunk = s.recv(65536)
                now = time.monotonic()
                if not chunk:
                    raise ConnectionError(f"closed after {body} of {length} bytes")
                gap, last = max(gap, now - last), now
                body += len(chunk)
            s.close()
            with lock:
                out["completed"] += 1
                out["by_real"][real_name] = out["by_real"].get(real_name, 0) + 1
        except Exception as e:  # every failure is the result
            with lock:
                out["stream_errors"].append(f"stream {i} ({real_name}, {body} bytes): "
                                            f"{type(e).__name__}: {e}")
            if connected is not None:
                connected.abort()
        with lock:
            out["max_gap"] = max(out["max_gap"], gap)

    threads = [threading.Thread(target=stream, args=(i,)) for i in range(a.streams)]
    for t in threads:
        t.start()
    if connected is not None:
        try:
            connected.wait(timeout=30)
        except threading.BrokenBarrierError:
            pass
    with open(a.ready_file, "w") as f:
        f.write("ready\n")

    def done():
        return all(not t.is_alive() for t in threads) and os.path.exists(a.stop_file)

    while a.loop and not done():
        started = time.monotonic()
        try:
            s = socket.create_connection((a.vip, 80), timeout=5)
            s.sendall(f"GET / HTTP/1.0\r\nHost: {a.vip}\r\n\r\n".encode())
            data = b""
            while True:
                chunk = s.recv(4096)
                if not chunk:
                    break
                data += chunk
            s.close()
            if not data.startswith(b"HTTP/1.0 200") or b"real=" not in data:
                raise RuntimeError(f"bad answer {data[:60]!r}")
            out["loop_ok"] += 1
        except Exception as e:  # every failure is the result
            out["loop_errors"].append(f"{type(e).__name__}: {e}")
        out["loop_max_seconds"] = max(out["loop_max_seconds"], time.monotonic() - started)
    for t in threads:
        t.join()
    while not os.path.exists(a.stop_file):
        time.sleep(0.05)
    print(json.dumps(out, sort_keys=True))


if __name__ == "__main__":
    if sys.argv[1:2] != ["load"]:
        sys.exit("usage: test_control.py load [options]  (the load generator of these tests)")
    load_main(sys.argv[2:])
