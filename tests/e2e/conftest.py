"""End-to-end fixtures: the namespace lab (lab/lab.sh) and rvsd running in it.

Environment:
  RVSD  path of the rvsd binary (default: target/release/rvsd)
  LAB   namespace prefix of the lab (default: rvs)

The lab has one topology up at a time (`lab.sh up nat|dr|tun|tun-l3|fullnat`). The
session-wide `lab_manager` switches it on demand: `lab_manager.ensure("dr")`
returns a Lab for that topology, bringing it up (after tearing down whatever
was up) if needed. The `lab` fixture is `ensure("nat")`, what test_nat.py
uses. Tests marked `@pytest.mark.topology(name)` are run grouped by topology
(collection order otherwise kept), so the lab switches as rarely as possible.

rvsd contract relied on here (see lab/README.md):
  * `rvsd --config PATH` runs; `rvsd --check --config PATH` validates only.
  * stderr line containing `rvsd: ready` once ports and workers run.
  * SIGUSR1 -> one line `rvsd: stats {JSON}`; SIGTERM -> final stats line, exit 0.
"""
import hashlib
import json
import os
import pathlib
import re
import signal
import subprocess
import sys
import time

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
LAB = os.environ.get("LAB", "rvs")
LAB_SH = ROOT / "lab" / "lab.sh"
CLIENT_PY = ROOT / "lab" / "client.py"
RUN = ROOT / "lab" / "run" / LAB
RVSD = pathlib.Path(os.environ.get("RVSD", ROOT / "target" / "release" / "rvsd"))
RVSADM = pathlib.Path(os.environ.get("RVSADM", RVSD.parent / "rvsadm"))

NS_CLIENT = f"{LAB}-client"
NS_DIR = f"{LAB}-dir"
VIP = "10.99.1.100"
DIR_CLIENT_IP = "10.99.1.1"
R1, R2 = "10.99.2.11", "10.99.2.12"
REAL_NAMES = {R1: "r1", R2: "r2"}

READY_TIMEOUT = 30.0
STATS_RE = re.compile(r"rvsd: stats (\{.*\})\s*$")


# --------------------------------------------------------------------------- skips
def skip_reason_lab():
    if os.geteuid() != 0:
        return "end-to-end tests need root (network namespaces, DPDK)"
    for tool in ("ip", "ethtool", "ping"):
        if not any(os.access(os.path.join(d, tool), os.X_OK)
                   for d in os.environ.get("PATH", "").split(os.pathsep) + ["/usr/sbin", "/sbin"]):
            return f"`{tool}` not installed (run lab/install.sh)"
    return skip_reason_rvsd()


def skip_reason_rvsd():
    if not (RVSD.is_file() and os.access(RVSD, os.X_OK)):
        return f"rvsd binary not found at {RVSD} (cargo build --release, or set RVSD)"
    return None


# --------------------------------------------------------------------------- config template
def real(address, port=None, weight=1, forward="nat"):
    r = {"address": address, "weight": weight, "forward": forward}
    if port is not None:
        r["port"] = port
    return r


def service(port=80, protocol="tcp", scheduler="rr", reals=None, vip=VIP):
    return {"vip": vip, "port": port, "protocol": protocol, "scheduler": scheduler,
            "reals": reals if reals is not None else [real(R1), real(R2)]}


def render_config(services, *, sleep_us=100, idle_polls=64, eal_args=("--in-memory",),
                  extra="", kernel_interfaces=(None, None)):
    """rvsd YAML for the lab (the shape of conf/lab-nat.yaml) with `services`;
    `kernel_interfaces` names the client and real ports' kernel interfaces."""
    args = ", ".join(json.dumps(a) for a in eal_args)
    lines = [
        "# written by tests/e2e/conftest.py",
        "eal:",
        "  main_lcore: 0",
        "  main_cpu: 0",
        f"  args: [{args}]",
        "ports:",
        "  - name: client",
        '    device: "net_af_packet0,iface=d0"',
        '    addresses: ["10.99.1.1/24"]',
        *([f"    kernel_interface: {kernel_interfaces[0]}"] if kernel_interfaces[0] else []),
        "  - name: real",
        '    device: "net_af_packet1,iface=d1"',
        '    addresses: ["10.99.2.1/24"]',
        *([f"    kernel_interface: {kernel_interfaces[1]}"] if kernel_interfaces[1] else []),
        "worker_idle:",
        f"  idle_polls: {idle_polls}",
        f"  sleep_us: {sleep_us}",
        "workers:",
        "  - lcore: 1",
        "    cpu: 1",
        "    queues:",
        "      - { port: client, queue: 0 }",
        "      - { port: real, queue: 0 }",
        "services:",
    ]
    for s in services:
        lines += [
            f"  - vip: {s['vip']}",
            f"    port: {s['port']}",
            f"    protocol: {s['protocol']}",
            f"    scheduler: {s['scheduler']}",
        ]
        # Any further service keys (persistent, flags, ...) as given.
        for key, value in s.items():
            if key not in ("vip", "port", "protocol", "scheduler", "reals"):
                lines.append(f"    {key}: {json.dumps(value)}")
        lines.append("    reals:")
        for r in s["reals"]:
            kv = ", ".join(f"{k}: {v}" for k, v in r.items())
            lines.append(f"      - {{ {kv} }}")
    text = "\n".join(lines) + "\n"
    if extra:
        text += extra if extra.endswith("\n") else extra + "\n"
    return text


# --------------------------------------------------------------------------- lab
TOPOLOGIES = ("nat", "dr", "tun", "tun-l3", "fullnat", "ha-nat", "ha-dr", "ha-fullnat")
# Real servers' addresses per topology (lab/lab.sh).
TOPOLOGY_REALS = {
    "nat": (R1, R2),
    "dr": ("10.99.1.11", "10.99.1.12"),
    "tun": ("10.99.1.11", "10.99.1.12"),
    "tun-l3": ("10.99.3.11", "10.99.3.12"),
    "fullnat": ("10.99.3.11", "10.99.3.12"),
    "ha-nat": (R1, R2),
    "ha-dr": ("10.99.1.11", "10.99.1.12"),
    "ha-fullnat": ("10.99.3.11", "10.99.3.12"),
}


class Lab:
    root = ROOT
    run_dir = RUN
    name = LAB
    ns_client = NS_CLIENT
    ns_dir = NS_DIR
    vip = VIP

    def __init__(self, topology="nat"):
        self._dir_mac = None
        self.topology = topology
        self.reals = TOPOLOGY_REALS[topology]
        self.real_names = {self.reals[0]: "r1", self.reals[1]: "r2"}

    @property
    def dir_mac(self):
        """MAC of d0 (rvsd's client port: af_packet uses the interface's MAC)."""
        if self._dir_mac is None:
            self._dir_mac = subprocess.run(
                ["ip", "netns", "exec", NS_DIR, "cat", "/sys/class/net/d0/address"],
                check=True, capture_output=True, text=True).stdout.strip()
        return self._dir_mac

    def blob_sha256(self):
        h = hashlib.sha256()
        with open(RUN / "blob.bin", "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
        return h.hexdigest()

    def client(self, *args, timeout=120, check=True):
        """Runs lab/client.py in the client namespace; returns its JSON."""
        cmd = ["ip", "netns", "exec", NS_CLIENT, sys.executable, str(CLIENT_PY), *map(str, args)]
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
        if check and r.returncode != 0:
            pytest.fail(f"client.py {' '.join(map(str, args))} failed ({r.returncode}):\n"
                        f"{r.stdout}\n{r.stderr}")
        try:
            return json.loads(r.stdout.strip().splitlines()[-1])
        except (ValueError, IndexError):
            pytest.fail(f"client.py {' '.join(map(str, args))}: no JSON:\n{r.stdout}\n{r.stderr}")

    def http(self, count, url=f"http://{VIP}/", concurrency=4):
        return self.client("http", "--url", url, "--count", count, "--concurrency", concurrency)

    def ns(self, ns, *cmd, timeout=60):
        return subprocess.run(["ip", "netns", "exec", ns, *map(str, cmd)], capture_output=True,
                              text=True, timeout=timeout)


_lab_is_up = False


def lab_down():
    global _lab_is_up
    subprocess.run(["bash", str(LAB_SH), "down"], env={**os.environ, "LAB": LAB},
                   capture_output=True, text=True, timeout=120)
    _lab_is_up = False


class LabManager:
    """Keeps one lab topology up at a time for the whole session."""

    def __init__(self):
        self.topology = None

    def ensure(self, topology):
        global _lab_is_up
        if topology not in TOPOLOGIES:
            raise ValueError(f"unknown lab topology {topology!r}")
        if self.topology != topology:
            self.topology = None
            _lab_is_up = True  # a failed `up` may leave pieces: down at exit
            r = subprocess.run(["bash", str(LAB_SH), "up", topology],
                               env={**os.environ, "LAB": LAB},
                               capture_output=True, text=True, timeout=300)
            if r.returncode != 0:
                pytest.fail(f"lab.sh up {topology} failed ({r.returncode}):\n"
                            f"{r.stdout}\n{r.stderr}")
            self.topology = topology
        return Lab(topology)


def pytest_configure(config):
    config.addinivalue_line(
        "markers", "topology(name): the lab topology a test needs (tests are grouped by it)")

    # SIGTERM (e.g. CI cancelling the job) behaves like Ctrl-C, so that fixture
    # teardown (rvsd stop, lab down) still runs.
    def on_term(signum, frame):
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGTERM, on_term)


def pytest_collection_modifyitems(session, config, items):
    """Groups the tests marked with a topology by topology (stable), in the
    slots those tests already occupy: the lab is switched once per topology."""
    # nat last: test_nat.py (unmarked, nat) usually runs right after test_modes.py
    order = {t: i for i, t in enumerate(("dr", "tun", "tun-l3", "fullnat", "nat"))}
    slots, marked = [], []
    for i, item in enumerate(items):
        m = item.get_closest_marker("topology")
        if m is not None:
            slots.append(i)
            marked.append((order.get(m.args[0], len(order)), len(marked), item))
    marked.sort(key=lambda t: (t[0], t[1]))
    for i, (_, _, item) in zip(slots, marked):
        items[i] = item


def pytest_unconfigure(config):
    # Last resort if session teardown did not run.
    if _lab_is_up:
        lab_down()


@pytest.fixture(scope="session")
def lab_manager():
    """The session's LabManager; the lab is torn down at the end."""
    reason = skip_reason_lab()
    if reason:
        pytest.skip(reason)
    mgr = LabManager()
    try:
        yield mgr
    finally:
        if _lab_is_up:
            lab_down()


@pytest.fixture
def lab(lab_manager):
    """The NAT topology (lab.sh up nat), as test_nat.py expects."""
    return lab_manager.ensure("nat")


# --------------------------------------------------------------------------- rvsd
class Rvsd:
    """One rvsd process in the director namespace, its log in the run dir."""

    def __init__(self, name, config_text):
        RUN.mkdir(parents=True, exist_ok=True)
        self.name = name
        self.conf = RUN / f"e2e-{name}.yaml"
        # Every test rvsd serves its own control socket, so that labs running
        # side by side (another LAB prefix, a CI rehearsal) never collide.
        self.socket = RUN / "rvsd.sock"
        if not re.search(r"^control:", config_text, re.M):
            config_text = config_text.rstrip("\n") + f"\ncontrol:\n  socket: {self.socket}\n"
        self.conf.write_text(config_text)
        self.log_path = RUN / f"e2e-{name}.rvsd.log"
        self._log = open(self.log_path, "wb")
        # `ip netns exec` execs rvsd in place: self.proc.pid is rvsd's pid.
        self.proc = subprocess.Popen(
            ["ip", "netns", "exec", NS_DIR, str(RVSD), "--config", str(self.conf)],
            stdin=subprocess.DEVNULL, stdout=self._log, stderr=subprocess.STDOUT,
            start_new_session=True, env={**os.environ, "RUST_BACKTRACE": "1"})
        self.returncode = None

    def rvsadm(self, *args, stdin=None, check=True, timeout=30):
        """Runs rvsadm against this rvsd; returns the CompletedProcess."""
        r = subprocess.run([str(RVSADM), "--socket", str(self.socket), *args], input=stdin,
                           capture_output=True, text=True, timeout=timeout)
        if check and r.returncode != 0:
            raise AssertionError(f"rvsadm {' '.join(args)} failed ({r.returncode}): {r.stderr}")
        return r

    def log(self):
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def log_tail(self, n=60):
        return "\n".join(self.log().splitlines()[-n:])

    def alive(self):
        return self.proc.poll() is None

    def wait_ready(self, timeout=READY_TIMEOUT):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if "rvsd: ready" in self.log():
                return
            if not self.alive():
                pytest.fail(f"rvsd exited with status {self.proc.returncode} before ready;"
                            f" log {self.log_path}:\n{self.log_tail()}")
            time.sleep(0.05)
        self.stop()
        pytest.fail(f"rvsd not ready after {timeout:.0f} s; log {self.log_path}:\n{self.log_tail()}")

    def stats_lines(self):
        out = []
        for line in self.log().splitlines():
            m = STATS_RE.search(line)
            if m:
                out.append(m.group(1))
        return out

    def stats(self, timeout=5.0):
        """SIGUSR1, then the JSON of the new `rvsd: stats` line."""
        if not self.alive():
            pytest.fail(f"rvsd is not running (status {self.proc.returncode}):\n{self.log_tail()}")
        before = len(self.stats_lines())
        self.proc.send_signal(signal.SIGUSR1)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            lines = self.stats_lines()
            if len(lines) > before:
                try:
                    return json.loads(lines[before])
                except ValueError as e:
                    pytest.fail(f"rvsd stats line is not JSON ({e}): {lines[before]}")
            time.sleep(0.05)
        pytest.fail(f"no `rvsd: stats` line within {timeout} s of SIGUSR1:\n{self.log_tail()}")

    def stop(self, timeout=10.0):
        """SIGTERM, then SIGKILL after `timeout`; returns the exit status."""
        if self.alive():
            try:
                self.proc.send_signal(signal.SIGTERM)
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.returncode = self.proc.returncode
        if not self._log.closed:
            self._log.close()
        return self.returncode


def _safe(name):
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name)[:80]


@pytest.hookimpl(tryfirst=True, hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    setattr(item, "rep_" + rep.when, rep)


@pytest.fixture
def start_rvsd(lab_manager, request):
    """start_rvsd(config_text) -> Rvsd, ready; always stopped after the test."""
    started = []

    def start(config_text, name=None):
        d = Rvsd(_safe(name or request.node.name), config_text)
        started.append(d)
        d.wait_ready()
        return d

    try:
        yield start
    finally:
        for d in started:
            rc = d.stop()
            rep = getattr(request.node, "rep_call", None)
            if rep is not None and rep.failed:
                sys.stderr.write(f"--- rvsd {d.name} (exit {rc}), log {d.log_path}:\n"
                                 f"{d.log_tail(80)}\n")


@pytest.fixture
def rvsd_check():
    """rvsd_check(config_text, name) or rvsd_check(path) -> CompletedProcess of
    `rvsd --check --config FILE`, with .path set to FILE."""
    reason = skip_reason_rvsd()
    if reason:
        pytest.skip(reason)

    def check(config, name=None):
        if isinstance(config, pathlib.Path):
            path = config
        else:
            RUN.mkdir(parents=True, exist_ok=True)
            path = RUN / f"check-{name}.yaml"
            path.write_text(config)
        r = subprocess.run([str(RVSD), "--check", "--config", str(path)],
                           capture_output=True, text=True, timeout=30)
        r.path = path
        return r

    return check
