"""Health checks end to end: rvsd checks real HTTP, UDP and script-driven
reals through the kernel interfaces of the exception path and takes a
failed real out of scheduling, puts it back, quiesces it under
`inhibit_on_failure`, hands the service to the sorry server when the quorum
is lost, follows MISC_CHECK's dynamic weights, kills a hung script, and
keeps answering its control socket with a thousand reals checked every
second.

Each test runs its own servers on ports the lab's do not use (8090-8093),
in the reals' namespaces, and stops them to make a real fail.
"""
import json
import re
import signal
import subprocess
import sys
import threading
import time

import pytest

from conftest import (LAB, NS_DIR, R1, R2, ROOT, RUN, VIP, real, render_config, service)
from test_control import rvsctl
from test_modes import lab_config

KERNEL = ("kclient", "kreal")
DR_REALS = ("10.99.1.11", "10.99.1.12")

# Fast timing for the lab: down within delay_loop + retry x (connect_timeout
# + delay_before_retry) = 1 + 1 x (1 + 0.5) = 2.5 s, up within delay_loop.
FAST = {"delay_loop": 1, "connect_timeout": 1, "retry": 1, "delay_before_retry": 0.5,
        "warmup": 0}
DETECT = 1 + 1 * (1 + 0.5)


class Servers:
    """HTTP servers (lab/realserver.py) started in the reals' namespaces."""

    def __init__(self):
        self.procs = {}

    def start(self, ns_real, port, name, udp_port=0):
        key = (ns_real, port)
        self.stop(ns_real, port)
        RUN.mkdir(parents=True, exist_ok=True)
        ready = RUN / f"health-{ns_real}-{port}.ready"
        ready.unlink(missing_ok=True)
        self.procs[key] = subprocess.Popen(
            ["ip", "netns", "exec", f"{LAB}-{ns_real}", sys.executable,
             str(ROOT / "lab" / "realserver.py"), "--name", name, "--http-ports", str(port),
             "--udp-port", str(udp_port), "--quiet-udp", "--blob", str(RUN / "blob.bin"),
             "--ready-file", str(ready)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        deadline = time.monotonic() + 10
        while not ready.exists():
            assert time.monotonic() < deadline, f"server {name} on {port} not ready"
            time.sleep(0.05)

    def stop(self, ns_real, port):
        proc = self.procs.pop((ns_real, port), None)
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            proc.wait(5)

    def stop_all(self):
        for ns_real, port in list(self.procs):
            self.stop(ns_real, port)


@pytest.fixture
def servers():
    s = Servers()
    try:
        yield s
    finally:
        s.stop_all()


def checked(port, reals, scheduler="rr", protocol="tcp", **keys):
    s = service(port, protocol, scheduler, reals=reals)
    s.update(keys)
    return s


def listing(d):
    """{real: weight} of every service, from rvsadm -L -n."""
    out = d.rvsadm("-L", "-n").stdout
    return {m.group(1): int(m.group(2))
            for m in re.finditer(r"->\s+(\d+\.\d+\.\d+\.\d+:\d+)\s+\S+\s+(\d+)", out)}


def health(d):
    return json.loads(rvsctl(d, "--json", "health").stdout)


def wait_until(what, test, timeout):
    """Polls `test` every 50 ms; returns the seconds it took."""
    started = time.monotonic()
    while True:
        value = test()
        if value:
            return time.monotonic() - started
        if time.monotonic() - started > timeout:
            pytest.fail(f"{what}: not within {timeout} s")
        time.sleep(0.05)


def all_checked(d, count):
    report = health(d)
    return (len(report["reals"]) == count
            and all(c["checks"] > 0 for r in report["reals"] for c in r["checkers"]))


def run_leave_and_return(lab, d, servers, ns_real, address, url, names):
    """Stops one real's server: it leaves within the bound and no request
    fails afterwards; started again it returns within one delay_loop."""
    wait_until("first checks", lambda: all_checked(d, 2), 10)
    first = lab.http(20, url=url)
    assert first["ok"] == 20 and len(first["by_real"]) == 2, first

    stopped = time.monotonic()
    servers.stop(ns_real, 8090)
    took = wait_until("the real leaves", lambda: f"{address}:8090" not in listing(d), DETECT + 2)
    detection = time.monotonic() - stopped
    assert detection <= DETECT + 1, f"left after {detection:.2f} s"
    after = lab.http(40, url=url)
    assert after["ok"] == 40 and set(after["by_real"]) == {names[1]}, after
    assert re.search(rf"real {address}:8090 of tcp {VIP}:8090 down: \S+ .*"
                     rf"connection refused \(2 of 2 attempts\)", d.log()), d.log_tail()

    servers.start(ns_real, 8090, names[0])
    started = time.monotonic()
    wait_until("the real returns", lambda: f"{address}:8090" in listing(d), 1 + 2)
    recovery = time.monotonic() - started
    assert recovery <= 1 + 0.5, f"back after {recovery:.2f} s"
    back = lab.http(20, url=url)
    assert back["ok"] == 20 and len(back["by_real"]) == 2, back
    print(f"\n  detection {detection:.2f} s (bound {DETECT + 1:.1f} s), "
          f"recovery {recovery:.2f} s (bound 1.0 s + polling)")
    del took


def test_nat_a_stopped_real_leaves_and_returns(lab, start_rvsd, servers):
    for ns_real, name in (("r1", "r1"), ("r2", "r2")):
        servers.start(ns_real, 8090, name)
    check = {"type": "http_get", "path": "/health", "status_code": [200], **FAST}
    s = checked(8090, [real(R1), real(R2)], checks=[check])
    d = start_rvsd(render_config([s], kernel_interfaces=KERNEL))
    run_leave_and_return(lab, d, servers, "r1", R1, f"http://{VIP}:8090/", ("r1", "r2"))
    table = rvsctl(d, "health").stdout
    assert "HTTP_GET" in table and f"{R1}:8090" in table and "up" in table, table


@pytest.mark.topology("dr")
def test_dr_a_stopped_real_leaves_and_returns(lab_manager, start_rvsd, servers):
    lab = lab_manager.ensure("dr")
    for ns_real, name in (("r1", "r1"), ("r2", "r2")):
        servers.start(ns_real, 8090, name)
    check = {"type": "tcp_check", **FAST}
    s = {"vip": VIP, "port": 8090, "protocol": "tcp", "scheduler": "rr", "checks": [check],
         "reals": [{"address": a, "forward": "dr"} for a in DR_REALS]}
    text = lab_config("dr", services=[s]).replace(
        'addresses: ["10.99.1.1/24"] }', f'addresses: ["10.99.1.1/24"], kernel_interface: {KERNEL[0]} }}')
    assert "kernel_interface" in text, text
    d = start_rvsd(text)
    run_leave_and_return(lab, d, servers, "r1", DR_REALS[0], f"http://{VIP}:8090/",
                         ("r1", "r2"))


def test_inhibit_on_failure_lets_a_running_download_finish(lab, start_rvsd, servers):
    # The real serves on 8090; its check asks a second server, on 8091.
    servers.start("r1", 8090, "r1")
    servers.start("r1", 8091, "r1-health")
    check = {"type": "tcp_check", "connect_port": 8091, **FAST}
    s = checked(8090, [dict(real(R1), inhibit_on_failure="true")], checks=[check])
    d = start_rvsd(render_config([s], kernel_interfaces=KERNEL))
    wait_until("first checks", lambda: all_checked(d, 1), 10)
    # 20 MB over about 6 s.
    url = f"http://{VIP}:8090/drip?chunks=200&size=100000&interval=0.03"
    done = {}
    thread = threading.Thread(
        target=lambda: done.update(lab.client("download", "--url", url, "--timeout", 60,
                                              timeout=90)), daemon=True)
    thread.start()
    time.sleep(0.5)
    servers.stop("r1", 8091)
    wait_until("r1 inhibited", lambda: listing(d).get(f"{R1}:8090") == 0, DETECT + 2)
    assert thread.is_alive(), f"the download ended before r1 was inhibited: {done}"
    thread.join(60)
    assert done.get("bytes") == 20_000_000 and done.get("real") == "r1", done
    assert listing(d) == {f"{R1}:8090": 0}
    assert f"real {R1}:8090 of tcp {VIP}:8090 down: TCP_CHECK connect to {R1}:8091: " \
           "connection refused" in d.log(), d.log_tail()


def test_quorum_lost_brings_the_sorry_server(lab, start_rvsd, servers):
    for ns_real in ("r1", "r2"):
        servers.start(ns_real, 8090, ns_real)
    servers.start("r2", 8092, "sorry")
    notes = RUN / "health-quorum.notes"
    notes.unlink(missing_ok=True)
    check = {"type": "tcp_check", **FAST}
    s = checked(8090, [real(R1), real(R2)], checks=[check],
                sorry_server={"address": R2, "port": 8092},
                quorum_up=f"echo up >> {notes}", quorum_down=f"echo down >> {notes}")
    d = start_rvsd(render_config([s], kernel_interfaces=KERNEL))
    wait_until("first checks", lambda: all_checked(d, 2), 10)
    url = f"http://{VIP}:8090/"
    servers.stop("r1", 8090)
    servers.stop("r2", 8090)
    wait_until("the sorry server", lambda: listing(d) == {f"{R2}:8092": 1}, DETECT + 3)
    sorry = lab.http(10, url=url)
    assert sorry["ok"] == 10 and sorry["by_real"] == {"sorry": 10}, sorry
    assert f"tcp {VIP}:8090 lost its quorum" in d.log(), d.log_tail()

    servers.start("r1", 8090, "r1")
    wait_until("the sorry server leaves", lambda: listing(d) == {f"{R1}:8090": 1}, 3)
    back = lab.http(10, url=url)
    assert back["ok"] == 10 and back["by_real"] == {"r1": 10}, back
    wait_until("quorum commands", lambda: notes.exists()
               and notes.read_text() == "down\nup\n", 3)


def test_wrong_digest_and_wrong_status_mark_a_real_down(lab, start_rvsd, servers):
    for ns_real in ("r1", "r2"):
        servers.start(ns_real, 8090, ns_real)
    good = "eff5bc1ef8ec9d03e640fc4370f5eacd"  # md5("ok\n"), /health's body
    reals = [
        dict(real(R1), checks=json.dumps([{"type": "http_get", "path": "/health",
                                            "digest": "0" * 32, **FAST}])),
        dict(real(R2), checks=json.dumps([{"type": "http_get", "path": "/nowhere", **FAST}])),
    ]
    third = dict(real("10.99.2.13"), checks=json.dumps([
        {"type": "http_get", "path": "/health", "digest": good, "connect_ip": R1, **FAST}]))
    s = checked(8090, reals + [third])
    d = start_rvsd(render_config([s], kernel_interfaces=KERNEL))
    wait_until("both down", lambda: set(listing(d)) == {"10.99.2.13:8090"}, 10)
    log = d.log()
    assert f"real {R1}:8090 of tcp {VIP}:8090 down: HTTP_GET /health: digest " \
           f"{good}, expected {'0' * 32}" in log, d.log_tail()
    assert f"real {R2}:8090 of tcp {VIP}:8090 down: HTTP_GET /nowhere: status 404, " \
           "expected 200-299" in log, d.log_tail()
    states = {r["addr"]: r["alive"] for r in health(d)["reals"]}
    assert states == {R1: False, R2: False, "10.99.2.13": True}, states


def test_misc_dynamic_weights_set_the_wrr_share(lab, start_rvsd, servers):
    for ns_real in ("r1", "r2"):
        servers.start(ns_real, 8090, ns_real)
    misc = lambda code: json.dumps([{"type": "misc_check", "misc_path": f"exit {code}",
                                     "misc_dynamic": True, "delay_loop": 1, "warmup": 0}])
    # exit 5: up with weight 3; exit 3: weight 1.
    reals = [dict(real(R1), checks=misc(5)), dict(real(R2), checks=misc(3))]
    s = checked(8090, reals, scheduler="wrr")
    d = start_rvsd(render_config([s], kernel_interfaces=KERNEL))
    wait_until("dynamic weights", lambda: listing(d) == {f"{R1}:8090": 3, f"{R2}:8090": 1}, 5)
    res = lab.http(40, url=f"http://{VIP}:8090/", concurrency=1)
    assert res["ok"] == 40 and res["by_real"] == {"r1": 30, "r2": 10}, res


def test_a_hung_misc_script_is_killed_at_misc_timeout(lab, start_rvsd, servers):
    servers.start("r1", 8090, "r1")
    pids = RUN / "health-misc.pids"
    pids.unlink(missing_ok=True)
    hung = json.dumps([{"type": "misc_check", "misc_path": f"echo $$ >> {pids}; exec sleep 30",
                        "misc_timeout": 0.5, "delay_loop": 1, "warmup": 0}])
    s = checked(8090, [dict(real(R1), checks=hung)])
    d = start_rvsd(render_config([s], kernel_interfaces=KERNEL))
    wait_until("down", lambda: listing(d) == {}, 5)
    assert "still running after misc_timeout 0.5 s, killed" in d.log(), d.log_tail()
    wait_until("a few runs", lambda: pids.exists() and len(pids.read_text().split()) >= 3, 6)
    started = pids.read_text().split()
    alive = [p for p in started[:-1]
             if subprocess.run(["kill", "-0", p], capture_output=True).returncode == 0]
    assert alive == [], f"scripts not killed: {alive} of {started}"


def test_udp_check_against_the_udp_echo(lab, start_rvsd, servers):
    # The lab's reals echo UDP on 9000; nothing answers on 9001.
    up = json.dumps([{"type": "udp_check", "payload": "70696e67", "require_reply": True,
                      **FAST}])
    closed = json.dumps([{"type": "udp_check", "payload": "70696e67", "connect_port": 9001,
                          **FAST}])
    reals = [dict(real(R1), checks=up), dict(real(R2), checks=closed)]
    s = checked(9000, reals, protocol="udp")
    d = start_rvsd(render_config([s], kernel_interfaces=KERNEL))
    wait_until("r2 down", lambda: listing(d) == {f"{R1}:9000": 1}, 10)
    assert re.search(rf"real {R2}:9000 of udp {VIP}:9000 down: UDP_CHECK {R2}:9001: "
                     "connection refused", d.log()), d.log_tail()
    res = lab.client("udp", "--addr", f"{VIP}:9000", "--count", 10)
    assert res["lost"] == 0 and res["by_real"] == {"r1": 10}, res


def test_unreachable_reals_and_a_reload_with_changed_checks(lab, start_rvsd, servers):
    for ns_real in ("r1", "r2"):
        servers.start(ns_real, 8090, ns_real)
    check = {"type": "http_get", "path": "/health", **FAST}
    # 10.99.2.50: no such host. The checks time out; the others go on.
    s = checked(8090, [real(R1), real(R2), real("10.99.2.50")], checks=[check])
    d = start_rvsd(render_config([s], kernel_interfaces=KERNEL))
    wait_until("the absent real leaves",
               lambda: set(listing(d)) == {f"{R1}:8090", f"{R2}:8090"}, 10)
    started = time.monotonic()
    d.rvsadm("-L", "-n")
    assert time.monotonic() - started < 2
    res = lab.http(20, url=f"http://{VIP}:8090/")
    assert res["ok"] == 20, res

    # Reload with R2's check changed to a wrong status: R2 leaves, R1's
    # check, unchanged, keeps its state and schedule.
    before = {r["addr"]: r["checkers"][0]["checks"] for r in health(d)["reals"]}
    s["reals"][1]["checks"] = json.dumps([{"type": "http_get", "path": "/nowhere", **FAST}])
    d.conf.write_text(render_config([s], kernel_interfaces=KERNEL)
                      + f"control:\n  socket: {d.socket}\n")
    rvsctl(d, "reload")
    wait_until("R2 leaves", lambda: set(listing(d)) == {f"{R1}:8090"}, 5)
    after = {r["addr"]: r["checkers"][0]["checks"] for r in health(d)["reals"]}
    assert after[R1] >= before[R1], (before, after)
    res = lab.http(10, url=f"http://{VIP}:8090/")
    assert res["ok"] == 10 and res["by_real"] == {"r1": 10}, res


def thread_cpu_seconds(pid, name):
    """CPU seconds (user + system) of rvsd's thread called `name`."""
    tick = 100.0
    total = 0.0
    for stat in (pathlib_tasks(pid)):
        text = stat.read_text()
        comm = text[text.index("(") + 1:text.rindex(")")]
        if comm == name:
            fields = text[text.rindex(")") + 2:].split()
            total += (int(fields[11]) + int(fields[12])) / tick
    return total


def pathlib_tasks(pid):
    import pathlib
    return pathlib.Path(f"/proc/{pid}/task").glob("*/stat")


def test_a_thousand_reals_checked_every_second(lab, start_rvsd, servers):
    """4 services x 250 reals, every check a TCP_CHECK every second against
    r1's server: the checker's CPU and lateness are measured and printed; the
    control socket keeps answering at once."""
    servers.start("r1", 8090, "r1")
    check = {"type": "tcp_check", "connect_ip": R1, "connect_port": 8090, "delay_loop": 1,
             "connect_timeout": 1}
    services = []
    for k in range(4):
        reals = [real(f"10.99.2.{i}") for i in range(2, 252)]
        services.append(checked(8100 + k, reals, checks=[check]))
    d = start_rvsd(render_config(services, kernel_interfaces=KERNEL))
    wait_until("every real checked", lambda: all_checked(d, 1000), 15)
    cpu0, t0 = thread_cpu_seconds(d.proc.pid, "rvs-health"), time.monotonic()
    worst = 0.0
    for _ in range(20):
        started = time.monotonic()
        d.rvsadm("-L", "-n")
        worst = max(worst, time.monotonic() - started)
        time.sleep(0.5)
    cpu1, t1 = thread_cpu_seconds(d.proc.pid, "rvs-health"), time.monotonic()
    report = health(d)
    assert all(r["alive"] for r in report["reals"]), "a real fell"
    share = (cpu1 - cpu0) / (t1 - t0)
    figures = (f"1000 reals, delay_loop 1: checker CPU {share * 100:.1f} % of a core, "
               f"late max {report['late_max_ms']:.1f} ms, mean {report['late_mean_ms']:.2f} ms, "
               f"slowest rvsadm -L -n {worst * 1000:.0f} ms")
    print("\n  " + figures)
    (RUN / "health-1000.txt").write_text(figures + "\n")
    assert worst < 2.0, figures
    assert report["late_max_ms"] < 1000, figures
