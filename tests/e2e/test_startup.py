"""rvsd refuses to start on bad input, and says why.

A bad config must be refused before DPDK is touched, naming the file, the key
path and the reason; a DPDK initialisation failure must name its likely cause
(hugepages, permissions, missing driver, missing interface). None of these
needs the namespace lab: rvsd never gets as far as moving a packet.
"""
import os
import pathlib
import shutil
import subprocess
import tempfile

import pytest

from conftest import RVSD, skip_reason_rvsd

pytestmark = pytest.mark.skipif(skip_reason_rvsd() is not None or os.geteuid() != 0,
                                reason=skip_reason_rvsd() or "needs root")

GOOD = """\
control: {{ socket: "{socket}" }}
eal: {{ main_lcore: 0, main_cpu: 0, args: [{args}] }}
ports:
  - {{ name: a, device: "{device}", addresses: ["10.77.0.1/24"] }}
workers:
  - {{ lcore: 1, cpu: 1, queues: [ {{ port: a, queue: 0 }} ] }}
services:
  - vip: 10.77.0.100
    port: 80
    protocol: tcp
    scheduler: rr
    reals: [ {{ address: 10.77.0.11 }} ]
"""


def good(args, device):
    """GOOD with these EAL args and device; the socket is filled in by config()."""
    return GOOD.format(args=args, device=device, socket="{socket}")


def config(tmp_path, name, text):
    path = tmp_path / name
    path.write_text(text.replace("{socket}", str(tmp_path / "rvsd.sock")))
    path.chmod(0o644)
    return path


def run_rvsd(path, *, user=None, timeout=60):
    cmd = [str(RVSD), "--config", str(path)]
    if user is not None:
        cmd = ["setpriv", f"--reuid={user}", f"--regid={user}", "--clear-groups"] + cmd
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    return proc.returncode, proc.stderr


@pytest.mark.parametrize("name,text,key_path,reason", [
    ("unknown-key.yaml",
     good(args='"--in-memory"', device="net_null0") + "bogus_section: 1\n",
     "bogus_section", "unknown key"),
    ("bad-address.yaml",
     good(args='"--in-memory"', device="net_null0").replace("10.77.0.11", "10.77.0.300"),
     "services[0].reals[0].address", "invalid IPv4 address"),
    ("main-lcore.yaml",
     good(args='"--in-memory"', device="net_null0").replace("lcore: 1, cpu: 1", "lcore: 0, cpu: 0"),
     "workers[0].lcore", "main lcore"),
    ("missing-cpu.yaml",
     good(args='"--in-memory"', device="net_null0").replace("cpu: 1", "cpu: 4000"),
     "workers[0].cpu", "does not exist"),
    # Both once passed --check and then aborted at start (exit 134): a table
    # larger than its 30-bit index, and tables larger than the memory.
    ("connections-over-the-index.yaml",
     good(args='"--in-memory"', device="net_null0") + "limits: { connections: 4294967295 }\n",
     "limits.connections", "is above the maximum 1073741824 connections per worker"),
    ("connections-over-the-memory.yaml",
     good(args='"--in-memory"', device="net_null0") + "limits: { connections: 1000000000 }\n",
     "limits.connections", "MiB this machine has available"),
])
def test_bad_config_is_refused_at_start(tmp_path, name, text, key_path, reason):
    path = config(tmp_path, name, text)
    code, err = run_rvsd(path)
    assert code != 0, err
    assert name in err and key_path in err and reason in err, err
    assert "EAL" not in err, "refused before DPDK was touched:\n" + err


@pytest.mark.parametrize("connections,reason", [
    (4294967295, "is above the maximum 1073741824 connections per worker"),
    (1000000000, "MiB this machine has available"),
])
def test_check_refuses_what_start_refuses(tmp_path, connections, reason):
    """`rvsd --check` runs every check start runs before DPDK."""
    text = good(args='"--in-memory"', device="net_null0") + \
        f"limits: {{ connections: {connections} }}\n"
    path = config(tmp_path, "check.yaml", text)
    proc = subprocess.run([str(RVSD), "--check", "--config", str(path)],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2, proc
    assert f"{path}:" in proc.stderr and "limits.connections" in proc.stderr, proc.stderr
    assert reason in proc.stderr, proc.stderr


@pytest.mark.parametrize("name,args,device,cause", [
    ("missing-driver", '"--in-memory"', "net_bogus0", "missing driver"),
    ("missing-interface", '"--in-memory"', "net_af_packet0,iface=nosuch0", "missing interface"),
    ("hugepages", '"--in-memory", "-m", "4000000"', "net_null0", "hugepages"),
])
def test_dpdk_failure_names_the_likely_cause(tmp_path, name, args, device, cause):
    path = config(tmp_path, name + ".yaml", good(args=args, device=device))
    code, err = run_rvsd(path)
    assert code != 0, err
    assert "likely cause" in err and cause in err, err


@pytest.mark.skipif(shutil.which("setpriv") is None, reason="setpriv (util-linux) missing")
def test_dpdk_failure_as_non_root_names_permissions():
    # pytest's tmp_path lives under a root-only directory; nobody needs to
    # read this config.
    directory = pathlib.Path(tempfile.mkdtemp(prefix="rvs-perm-"))
    try:
        # World-writable, so that nobody may create the control socket there
        # and rvsd gets as far as DPDK.
        directory.chmod(0o777)
        path = config(directory, "perm.yaml",
                      good(args='"--in-memory"', device="net_af_packet0,iface=lo"))
        code, err = run_rvsd(path, user=65534)
    finally:
        shutil.rmtree(directory)
    assert code != 0, err
    assert "permissions" in err and "root" in err, err
