"""`rvsctl import-keepalived` end to end: a keepalived.conf imported into an
rvsd started with no services lists exactly as the same services made with
the equivalent rvsadm commands, in the NAT lab and (DR) in the DR lab;
`--dry-run` prints the diff and changes nothing; a keyword rvs cannot
honour is refused naming FILE:LINE and nothing changes.

The reals' checks (TCP_CHECK, HTTP_GET /health) pass in the lab (the
reals serve HTTP on 80 and 8080), through the ports' kernel interfaces;
here they are seen to run and pass; test_health.py tests what they do.
"""
import json
import pathlib
import re
import subprocess
import time

import pytest

from conftest import R1, R2, RUN, RVSADM, VIP, render_config
from test_modes import lab_config

RVSCTL = pathlib.Path(RVSADM).parent / "rvsctl"
KERNEL = ("kclient", "kreal")
DR_REALS = ("10.99.1.11", "10.99.1.12")

NAT_CONF = f"""! keepalived.conf of the NAT lab's director
global_defs {{
    router_id LAB_A
}}

vrrp_instance VI_1 {{
    state MASTER
    interface eth0
    virtual_router_id 51
    priority 100
    virtual_ipaddress {{
        {VIP}
    }}
}}

virtual_server {VIP} 80 {{
    delay_loop 6
    lb_algo wrr
    lb_kind NAT
    persistence_timeout 300
    protocol TCP

    real_server {R1} 80 {{
        weight 1
        TCP_CHECK {{
            connect_timeout 3
        }}
    }}
    real_server {R2} 80 {{
        weight 2
        TCP_CHECK {{
            connect_timeout 3
        }}
    }}
}}

include web.conf
"""

WEB_CONF = f"""virtual_server {VIP} 8080 {{
    delay_loop 6
    lb_algo rr
    lb_kind NAT
    protocol TCP
    sorry_server 10.99.2.13 8080

    real_server {R1} 8080 {{
        HTTP_GET {{
            url {{
                path /health
                status_code 200
            }}
            connect_timeout 3
        }}
    }}
    real_server {R2} 8080 {{
        HTTP_GET {{
            url {{
                path /health
                status_code 200
            }}
            connect_timeout 3
        }}
    }}
}}
"""

# What an operator types to make the same services with ipvsadm.
NAT_RVSADM = [
    ["-A", "-t", f"{VIP}:80", "-s", "wrr", "-p", "300"],
    ["-a", "-t", f"{VIP}:80", "-r", f"{R1}:80", "-m", "-w", "1"],
    ["-a", "-t", f"{VIP}:80", "-r", f"{R2}:80", "-m", "-w", "2"],
    ["-A", "-t", f"{VIP}:8080", "-s", "rr"],
    ["-a", "-t", f"{VIP}:8080", "-r", f"{R1}:8080", "-m", "-w", "1"],
    ["-a", "-t", f"{VIP}:8080", "-r", f"{R2}:8080", "-m", "-w", "1"],
]


def rvsctl(d, *args, check=True, timeout=60):
    r = subprocess.run([str(RVSCTL), "--socket", str(d.socket), *map(str, args)],
                       capture_output=True, text=True, timeout=timeout)
    if check and r.returncode != 0:
        raise AssertionError(f"rvsctl {' '.join(map(str, args))} failed ({r.returncode}):"
                             f" {r.stderr}")
    return r


@pytest.fixture(autouse=True)
def an_rvsctl_that_imports():
    if not RVSCTL.is_file():
        pytest.skip(f"no rvsctl at {RVSCTL} (cargo build -p rvs-control, or set RVSADM)")


def write(name, text):
    RUN.mkdir(parents=True, exist_ok=True)
    path = RUN / name
    path.write_text(text)
    return path


def nat_files():
    write("web.conf", WEB_CONF)
    return write("keepalived.conf", NAT_CONF)


def nat_config():
    return render_config([], kernel_interfaces=KERNEL)


def listing(d):
    return d.rvsadm("-L", "-n").stdout


def test_import_lists_as_the_equivalent_rvsadm_commands(lab, start_rvsd):
    path = nat_files()
    d = start_rvsd(nat_config(), name="import-nat")
    r = rvsctl(d, "import-keepalived", path)
    assert r.stdout.splitlines() == [
        f"+ service tcp {VIP}:80 (wrr, 2 reals)",
        f"+ service tcp {VIP}:8080 (rr, 2 reals)",
        f"{path}: 0 settings; services: 2 added, 0 removed, 0 changed; reals of changed "
        "services: 0 added, 0 removed, 0 changed",
        f"{path}: applied",
    ], r.stdout
    assert (f"rvsctl: note: {path}:6: vrrp_instance VI_1 ignored: VRRP belongs to keepalived "
            "itself") in r.stderr, r.stderr
    # Its checks run: every real checked once (warmup: up to delay_loop 6 s)
    # and up, each by its own checker.
    deadline = time.monotonic() + 15
    while True:
        reals = json.loads(rvsctl(d, "--json", "health").stdout)["reals"]
        if len(reals) == 4 and all(c["checks"] > 0 for r in reals for c in r["checkers"]):
            break
        assert time.monotonic() < deadline, reals
        time.sleep(0.2)
    kinds = sorted((r["port"], r["checkers"][0]["checker"].split()[0]) for r in reals)
    assert kinds == [(80, "TCP_CHECK"), (80, "TCP_CHECK"), (8080, "HTTP_GET"),
                     (8080, "HTTP_GET")], reals
    assert all(r["alive"] and r["checkers"][0]["last"] == "ok" for r in reals), reals
    imported = listing(d)

    # The imported services serve; importing the same file again changes nothing.
    res = lab.http(10, url=f"http://{VIP}:8080/")
    assert res["errors"] == 0 and set(res["by_real"]) == {"r1", "r2"}, res
    again = rvsctl(d, "import-keepalived", path).stdout
    assert again.endswith(f"{path}: no changes; nothing to apply\n"), again
    # rvsd holds the keepalived settings rvsadm has no words for.
    dump = rvsctl(d, "dump").stdout
    assert "sorry_server:" in dump and "http_get" in dump and "tcp_check" in dump, dump
    d.stop()

    # One rvsd at a time in the lab: the same services by rvsadm, after.
    by_hand = start_rvsd(nat_config(), name="import-nat-rvsadm")
    for command in NAT_RVSADM:
        by_hand.rvsadm(*command)
    made = listing(by_hand)
    assert imported == made, f"imported:\n{imported}\nby rvsadm:\n{made}"


def test_dry_run_prints_the_diff_and_changes_nothing(lab, start_rvsd):
    path = nat_files()
    d = start_rvsd(nat_config(), name="import-dry")
    d.rvsadm("-A", "-t", f"{VIP}:22", "-s", "rr")
    d.rvsadm("-a", "-t", f"{VIP}:22", "-r", f"{R1}:22", "-m")
    before = listing(d)
    dry = rvsctl(d, "import-keepalived", "--dry-run", path).stdout
    assert dry.splitlines() == [
        f"- service tcp {VIP}:22 (rr, 1 real)",
        f"+ service tcp {VIP}:80 (wrr, 2 reals)",
        f"+ service tcp {VIP}:8080 (rr, 2 reals)",
        f"{path}: 0 settings; services: 2 added, 1 removed, 0 changed; reals of changed "
        "services: 0 added, 0 removed, 0 changed",
        f"{path}: dry run; nothing applied",
    ], dry
    assert listing(d) == before
    # --json gives apply's report.
    report = rvsctl(d, "--json", "import-keepalived", "-n", path).stdout
    assert '"applied": false' in report and '"services_added"' in report, report
    assert listing(d) == before


def test_what_rvs_cannot_honour_is_refused_and_nothing_changes(lab, start_rvsd):
    path = nat_files()
    d = start_rvsd(nat_config(), name="import-refused")
    rvsctl(d, "import-keepalived", path)
    before = listing(d)

    bad = write("bad.conf", NAT_CONF.replace("TCP_CHECK", "PING_CHECK", 1))
    line = next(n for n, text in enumerate(bad.read_text().splitlines(), 1) if "PING_CHECK" in text)
    r = rvsctl(d, "import-keepalived", bad, check=False)
    assert r.returncode == 1, r
    assert re.search(rf"^rvsctl: {re.escape(str(bad))}:{line}: PING_CHECK: rvs has no "
                     r"PING_CHECK", r.stderr, re.M), r.stderr
    assert r.stdout == ""
    assert listing(d) == before

    # A real rvs cannot reach: the configuration's own rule, placed at its line.
    unreachable = write("unreachable.conf", NAT_CONF.replace(f"real_server {R2} 80",
                                                             "real_server 192.0.2.9 80"))
    line = next(n for n, text in enumerate(unreachable.read_text().splitlines(), 1)
                if "192.0.2.9" in text)
    r = rvsctl(d, "import-keepalived", unreachable, check=False)
    assert r.returncode == 1, r
    assert (f"rvsctl: {unreachable}:{line}: real_server 192.0.2.9 80: real 192.0.2.9 is not "
            "reachable") in r.stderr, r.stderr
    assert listing(d) == before

    # A fwmark needs a `marks:` group in the running configuration.
    mark = write("mark.conf", f"virtual_server fwmark 5 {{\n  real_server {R1} 80 {{\n  }}\n}}\n")
    r = rvsctl(d, "import-keepalived", mark, check=False)
    assert r.returncode == 1, r
    assert f"rvsctl: {mark}:1: virtual_server fwmark 5: rvs serves fwmark 5 only" in r.stderr, \
        r.stderr
    assert listing(d) == before


DR_CONF = f"""virtual_server {VIP} 80 {{
    lb_algo rr
    lb_kind DR
    protocol TCP
    real_server {DR_REALS[0]} 80 {{
        weight 1
        TCP_CHECK {{
            connect_timeout 3
        }}
    }}
    real_server {DR_REALS[1]} 80 {{
        weight 1
        TCP_CHECK {{
            connect_timeout 3
        }}
    }}
}}
"""


@pytest.mark.topology("dr")
def test_dr_import_lists_as_the_equivalent_rvsadm_commands(lab_manager, start_rvsd):
    lab = lab_manager.ensure("dr")
    text = lab_config("dr", services=[]).replace(
        'addresses: ["10.99.1.1/24"] }',
        f'addresses: ["10.99.1.1/24"], kernel_interface: {KERNEL[0]} }}')
    assert "kernel_interface" in text, text
    path = write("keepalived-dr.conf", DR_CONF)
    d = start_rvsd(text, name="import-dr")
    out = rvsctl(d, "import-keepalived", path).stdout
    assert out.splitlines()[0] == f"+ service tcp {VIP}:80 (rr, 2 reals)", out
    imported = listing(d)
    assert "Route" in imported, imported
    res = lab.http(10)
    assert res["errors"] == 0 and set(res["by_real"]) == {"r1", "r2"}, res
    d.stop()

    by_hand = start_rvsd(text, name="import-dr-rvsadm")
    by_hand.rvsadm("-A", "-t", f"{VIP}:80", "-s", "rr")
    for r in DR_REALS:
        by_hand.rvsadm("-a", "-t", f"{VIP}:80", "-r", f"{r}:80", "-g", "-w", "1")
    made = listing(by_hand)
    assert imported == made, f"imported:\n{imported}\nby rvsadm:\n{made}"
