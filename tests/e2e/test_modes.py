"""rvsd in DR, TUN and FullNAT modes, and with several workers, end to end.

Each test brings up the lab topology it needs (lab/lab.sh up dr|tun|fullnat|nat,
see lab/README.md) through the session's lab_manager; tests are grouped by
topology at collection time so the lab switches once per topology.

  dr       client, d0 [rvsd] and r1/r2 (10.99.1.11/.12) on one bridge; reals
           hold the VIP on lo (arp_ignore=1, arp_announce=2).
  tun      the same segment; reals decapsulate IPIP in userspace
           (lab/ipip-decap.py) into a TUN device holding the VIP.
  tun-l3   TUN across a router: client, d0 [rvsd] and the router on one
           bridge; r1/r2 (10.99.3.11/.12, decapsulating) behind the router;
           rvsd routes 10.99.3.0/24 via 10.99.1.254, replies take the router.
  fullnat  client -- d0 [rvsd] d1 -- router -- r1/r2 (10.99.3.11/.12); the
           LIP 10.99.2.100 is rvsd's second address on d1.
  nat      the NAT lab of test_nat.py (for the multi-worker tests).

"2w" cases run two workers (lcores 1 and 2, both on CPU 1) over af_packet
devices with qpairs=2: the kernel spreads packets over the two queues by a
flow hash, so replies often arrive at the worker that does not own the
connection and rvsd redirects them.

A test whose feature rvsd lacks fails with a message that says so (config
refused, stats key missing): it never hangs, every network wait has a timeout.
"""
import errno
import json

import pytest

from conftest import ROOT, VIP

LIP = "10.99.2.100"
MB = 1024 * 1024
BLOB = 20 * MB
DOWNLOAD_TIMEOUT = 120

FORWARD = {"dr": "dr", "tun": "tun", "tun-l3": "tun", "fullnat": "fullnat", "nat": "nat"}
DIRECT_REPLY = ("dr", "tun", "tun-l3")  # replies bypass the director


# --------------------------------------------------------------------------- config
def _scalar(v):
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return str(v)
    return json.dumps(str(v))


def _flow(v):
    if isinstance(v, dict):
        return "{ " + ", ".join(f"{k}: {_flow(x)}" for k, x in v.items()) + " }"
    if isinstance(v, list):
        return "[" + ", ".join(_flow(x) for x in v) + "]"
    return _scalar(v)


def _flat(d):
    return all(not isinstance(x, (dict, list)) or
               (isinstance(x, list) and all(not isinstance(y, (dict, list)) for y in x))
               for x in d.values())


def to_yaml(d, ind=0):
    """Block YAML for the config dicts below (flat mappings in lists: flow style)."""
    out = []
    pad = " " * ind
    for k, v in d.items():
        if isinstance(v, dict):
            out.append(f"{pad}{k}:")
            out += to_yaml(v, ind + 2)
        elif isinstance(v, list) and v and all(isinstance(x, dict) for x in v):
            out.append(f"{pad}{k}:")
            for item in v:
                if _flat(item):
                    out.append(f"{pad}  - {_flow(item)}")
                else:
                    sub = to_yaml(item, ind + 4)
                    sub[0] = f"{pad}  - " + sub[0].lstrip()
                    out += sub
        else:
            out.append(f"{pad}{k}: {_flow(v)}")
    return out


def lab_config(topology, *, workers=1, forward=None, services=None, fullnat=None,
               tcp_port=80, udp_port=9000, real_port=None, extra_udp_ports=()):
    """rvsd config (as YAML text) for `topology` of lab/lab.sh.

    Ports: client (d0) always; real (d1) for nat/fullnat. With workers=2 every
    device gets qpairs=2 and worker i polls queue i of every port.
    """
    forward = forward or FORWARD[topology]
    q = ",qpairs=2" if workers > 1 else ""
    ports = [{"name": "client", "device": f"net_af_packet0,iface=d0{q}",
              "addresses": ["10.99.1.1/24"]}]
    routes = []
    if topology == "nat":
        ports.append({"name": "real", "device": f"net_af_packet1,iface=d1{q}",
                      "addresses": ["10.99.2.1/24"]})
        reals = ("10.99.2.11", "10.99.2.12")
    elif topology == "fullnat":
        ports.append({"name": "real", "device": f"net_af_packet1,iface=d1{q}",
                      "addresses": ["10.99.2.1/24", f"{LIP}/24"]})
        routes.append({"prefix": "10.99.3.0/24", "via": "10.99.2.254"})
        reals = ("10.99.3.11", "10.99.3.12")
    elif topology == "tun-l3":  # one port; the reals are behind the router on d0's segment
        routes.append({"prefix": "10.99.3.0/24", "via": "10.99.1.254"})
        reals = ("10.99.3.11", "10.99.3.12")
    else:  # dr, tun: one segment, one port
        reals = ("10.99.1.11", "10.99.1.12")
    port_names = [p["name"] for p in ports]
    wl = []
    for i in range(workers):
        wl.append({"lcore": 1 + i, "cpu": 1,
                   "queues": [{"port": n, "queue": i} for n in port_names]})

    def svc(port, proto):
        rl = []
        for a in reals:
            r = {"address": a, "weight": 1, "forward": forward}
            if real_port is not None:
                r["port"] = real_port
            rl.append(r)
        s = {"vip": VIP, "port": port, "protocol": proto, "scheduler": "rr"}
        if forward == "fullnat":
            s["local_addresses"] = [LIP]
        s["reals"] = rl
        return s

    if services is None:
        services = [svc(tcp_port, "tcp")]
        if udp_port:
            services.append(svc(udp_port, "udp"))
        for p in extra_udp_ports:
            services.append(svc(p, "udp"))
    cfg = {
        "eal": {"main_lcore": 0, "main_cpu": 0, "args": ["--in-memory"]},
        "ports": ports,
    }
    if routes:
        cfg["routes"] = routes
    if fullnat is not None:
        cfg["fullnat"] = fullnat
    cfg.update({
        "worker_idle": {"idle_polls": 64, "sleep_us": 100},
        "workers": wl,
        "services": services,
    })
    return (f"# written by tests/e2e/test_modes.py ({topology}, {workers} worker(s))\n"
            + "\n".join(to_yaml(cfg)) + "\n")


# --------------------------------------------------------------------------- helpers
def check_or_fail(rvsd_check, text, name, feature):
    """`rvsd --check` first: a refusal means rvsd lacks `feature` (say so)."""
    r = rvsd_check(text, name)
    if r.returncode != 0:
        pytest.fail(f"rvsd refuses the {feature} config -- not implemented yet?\n"
                    f"{r.stderr.strip()}\nconfig {r.path}:\n{text}")


def start(lab_manager, start_rvsd, rvsd_check, topology, workers=1, feature=None, **kw):
    lab = lab_manager.ensure(topology)
    text = lab_config(topology, workers=workers, **kw)
    name = f"{topology}-{workers}w-{feature or 'basic'}".replace(" ", "_")
    check_or_fail(rvsd_check, text, name, feature or f"{topology} ({workers} workers)")
    d = start_rvsd(text)
    if workers > 1:
        steering = [ln for ln in d.log().splitlines() if "rvsd: steering:" in ln]
        assert steering, ("no `rvsd: steering:` line at start with several workers:\n"
                          + d.log_tail())
    return lab, d


def counter(st, key):
    if key not in st:
        pytest.fail(f"rvsd stats have no `{key}` counter (not implemented yet?): "
                    f"{sorted(st)}")
    return int(st[key])


def drop(st, reason):
    drops = st.get("drops", {})
    if reason not in drops:
        pytest.fail(f"rvsd stats have no drop reason `{reason}` (not implemented yet?): "
                    f"{sorted(drops)}")
    return int(drops[reason])


def share_ok(by_real, total, min_share=0.2):
    return (set(by_real) == {"r1", "r2"}
            and all(n >= min_share * total for n in by_real.values()))


def case(topology, workers):
    return pytest.param(topology, workers, id=f"{topology}-{workers}w",
                        marks=pytest.mark.topology(topology))


MODE_CASES = [case(t, w) for t in ("dr", "tun", "tun-l3", "fullnat") for w in (1, 2)]


# --------------------------------------------------------------------------- every mode
@pytest.mark.parametrize("topology,workers", MODE_CASES)
def test_http_spread_over_both_reals(lab_manager, start_rvsd, rvsd_check, topology, workers):
    lab, d = start(lab_manager, start_rvsd, rvsd_check, topology, workers)
    res = lab.client("http", "--url", f"http://{VIP}/", "--count", 200, "--concurrency", 4,
                     "--timeout", 5, timeout=180)
    assert res["errors"] == 0, res
    assert share_ok(res["by_real"], 200), res
    assert res["by_port"] == {"80": 200}, res
    if topology in DIRECT_REPLY:
        # the IP packet reaches the real unchanged: addressed to the VIP, from the client
        assert res["by_local"] == {VIP: 200}, res
        assert res["by_peer"] == {"10.99.1.2": 200}, res
    else:
        assert res["by_peer"] == {LIP: 200}, res
    st = d.stats()
    assert st["conns_created"] >= 200, st


@pytest.mark.parametrize("topology,workers", MODE_CASES)
def test_download_20mb_intact(lab_manager, start_rvsd, rvsd_check, topology, workers):
    lab, d = start(lab_manager, start_rvsd, rvsd_check, topology, workers)
    want = lab.blob_sha256()
    before = d.stats()
    res = lab.client("download", "--url", f"http://{VIP}/blob", "--timeout", 10,
                     timeout=DOWNLOAD_TIMEOUT, check=False)
    after = d.stats()
    assert res.get("status") == 200, res
    assert res["bytes"] == BLOB, res
    assert res["sha256"] == want, res
    rx = after["rx_bytes"] - before["rx_bytes"]
    tx = after["tx_bytes"] - before["tx_bytes"]
    if topology in DIRECT_REPLY:
        # Replies go from the real straight to the client: rvsd only sees the
        # client's requests and ACKs (well under 1 MB for 20 MB of data).
        assert rx < 5 * MB, (f"rvsd received {rx} bytes during a {BLOB}-byte download: "
                             f"replies crossed the director?", before, after)
        assert tx < 5 * MB, (f"rvsd sent {tx} bytes during the download", before, after)
    else:
        # FullNAT: every reply crosses the director, both ways rewritten.
        assert rx >= BLOB and tx >= BLOB, (rx, tx, before, after)


@pytest.mark.parametrize("topology,workers", MODE_CASES)
def test_udp_exchange(lab_manager, start_rvsd, rvsd_check, topology, workers):
    lab, _d = start(lab_manager, start_rvsd, rvsd_check, topology, workers)
    res = lab.client("udp", "--addr", f"{VIP}:9000", "--count", 20, "--timeout", 2, "--peer",
                     timeout=120)
    assert res["lost"] == 0 and res["bad"] == 0, res
    assert sum(res["by_real"].values()) == 20 and set(res["by_real"]) == {"r1", "r2"}, res
    # every answer came from the VIP (DR/TUN reals answer from the VIP they hold)
    assert res["by_source"] == {f"{VIP}:9000": 20}, res
    if topology == "fullnat":
        assert res["by_peer"] == {LIP: 20}, res
    else:
        assert res["by_peer"] == {"10.99.1.2": 20}, res
        assert res["by_local"] == {VIP: 20}, res


# --------------------------------------------------------------------------- TUN: MTU
@pytest.mark.parametrize("workers", [pytest.param(w, id=f"{w}w", marks=pytest.mark.topology("tun"))
                                     for w in (1, 2)])
def test_tun_df_too_big_gets_frag_needed(lab_manager, start_rvsd, rvsd_check, workers):
    """1472 bytes of UDP = a 1500-byte IP packet with DF: + 20 bytes of outer
    header exceeds the port's MTU 1500, so rvsd answers ICMP frag-needed with
    next-hop MTU 1480 and the client's path MTU to the VIP drops to 1480."""
    lab = lab_manager.ensure("tun")
    flush = ["ip", "route", "flush", "cache"]
    lab.ns(lab.ns_client, *flush)
    try:
        lab, d = start(lab_manager, start_rvsd, rvsd_check, "tun", workers, feature="tun-mtu")
        # Without DF: dropped and counted as frag_needed too, no ICMP (rvsd
        # does not fragment yet -- update this part when it does).
        before = d.stats()
        nodf = lab.client("pmtu", "--addr", f"{VIP}:9000", "--size", 1472, "--no-df",
                          "--timeout", 1, timeout=30)
        mid = d.stats()
        assert drop(mid, "frag_needed") > drop(before, "frag_needed"), (before, mid)
        assert nodf["icmp"] is None and not nodf.get("replies"), nodf
        # With DF: ICMP frag-needed back to the client.
        before = mid
        res = lab.client("pmtu", "--addr", f"{VIP}:9000", "--size", 1472, "--timeout", 3,
                         timeout=30)
        route = lab.ns(lab.ns_client, "ip", "route", "get", VIP).stdout
        after = d.stats()
        assert drop(after, "frag_needed") > drop(before, "frag_needed"), (before, after)
        assert res["first_send"] == "ok", res
        icmp = res["icmp"]
        assert icmp is not None, (f"no ICMP error reached the client within 3 s: {res}; "
                                  f"ip route get {VIP}: {route}")
        assert (icmp["type"], icmp["code"]) == (3, 4), icmp  # dest unreachable / frag needed
        assert icmp["info"] == 1480, icmp  # next-hop MTU = 1500 - 20
        assert icmp["offender"] == "10.99.1.1", icmp  # rvsd's address facing the client
        assert icmp["errno"] == errno.EMSGSIZE, icmp
        assert "mtu 1480" in route, route
        assert res["second_errno"] == errno.EMSGSIZE, res
        assert counter(after, "icmp_errors_sent") > counter(before, "icmp_errors_sent"), after
        # A datagram that fits the tunnel (1452 + 28 = 1480) goes through.
        ok = lab.client("udp", "--addr", f"{VIP}:9000", "--count", 4, "--size", 1452,
                        "--timeout", 2, timeout=30)
        assert ok["lost"] == 0 and ok["bad"] == 0, ok
    finally:
        lab.ns(lab.ns_client, *flush)


# --------------------------------------------------------------------------- FullNAT ports
@pytest.mark.topology("fullnat")
def test_fullnat_port_exhaustion(lab_manager, start_rvsd, rvsd_check):
    """4 LIP ports (20000..20003) per (LIP, real), 1 worker, 2 reals: 8
    connections fit, the 9th is dropped (laddr_exhausted), the 8 keep working."""
    lab, d = start(lab_manager, start_rvsd, rvsd_check, "fullnat", 1, feature="fullnat-ports",
                   fullnat={"port_min": 20000, "port_max": 20003}, udp_port=None)
    res = lab.client("hold", "--addr", f"{VIP}:80", "--count", 8, "--extra", 1,
                     "--connect-timeout", 2, "--timeout", 10, timeout=90)
    st = d.stats()
    assert res["held"] == 8 and not res["connect_errors"], res
    assert len(res["extra"]) == 1 and not res["extra"][0]["ok"], \
        f"a 9th connection got through with 8 ports in use: {res}"
    assert res["extra"][0]["seconds"] < 4, res
    assert drop(st, "laddr_exhausted") > 0, st.get("drops")
    assert res["completed"] == 8 and not res["request_errors"], res
    assert res["by_real"] == {"r1": 4, "r2": 4}, res
    assert res["by_peer"] == {LIP: 8}, res
    assert set(res["peer_ports"]) <= {20000, 20001, 20002, 20003}, res
    assert d.alive()


# --------------------------------------------------------------------------- ICMP errors
ICMP_CASES = [case(t, w) for t in ("nat", "fullnat") for w in (1, 2)]


@pytest.mark.parametrize("topology,workers", ICMP_CASES)
def test_icmp_error_from_real_is_translated(lab_manager, start_rvsd, rvsd_check,
                                            topology, workers):
    """UDP to VIP:9001, where the reals listen on nothing: the real's ICMP
    port-unreachable quotes the rewritten packet; rvsd translates it back, so
    the client's connected socket sees ECONNREFUSED for VIP:9001."""
    lab, _d = start(lab_manager, start_rvsd, rvsd_check, topology, workers,
                    feature="icmp-translation", extra_udp_ports=(9001,))
    res = lab.client("pmtu", "--addr", f"{VIP}:9001", "--size", 16, "--no-df",
                     "--timeout", 3, timeout=30)
    icmp = res["icmp"]
    assert icmp is not None, f"no ICMP error reached the client within 3 s: {res}"
    assert (icmp["type"], icmp["code"]) == (3, 3), icmp  # port unreachable
    assert icmp["errno"] == errno.ECONNREFUSED, icmp


# --------------------------------------------------------------------------- several workers
MW_CASES = [pytest.param(t, id=t, marks=pytest.mark.topology(t)) for t in ("nat", "fullnat")]


@pytest.mark.parametrize("topology", MW_CASES)
def test_two_workers_concurrent_connections(lab_manager, start_rvsd, rvsd_check, topology):
    lab, d = start(lab_manager, start_rvsd, rvsd_check, topology, 2, feature="two-workers")
    before = d.stats()
    res = lab.client("http", "--url", f"http://{VIP}/", "--count", 200, "--concurrency", 50,
                     "--timeout", 10, timeout=300)
    after = d.stats()
    resets = {k: v for k, v in res.get("error_kinds", {}).items() if "Reset" in k}
    assert not resets, f"connections reset: {res}"
    assert res["errors"] == 0, res
    assert share_ok(res["by_real"], 200), res
    assert counter(after, "redirected") > counter(before, "redirected"), \
        ("no packet was redirected between the workers: replies should often arrive at "
         "the worker that does not own the connection", after)
    assert drop(after, "redirect_full") == 0, after.get("drops")
    ports = after.get("ports")
    assert isinstance(ports, list) and len(ports) == 2, f"stats `ports`: {ports!r}"
    for p in ports:
        assert isinstance(p.get("rx_packets"), int) and isinstance(p.get("tx_packets"), int), p
    assert d.alive()


# --------------------------------------------------------------------------- config checks
def test_lab_mode_configs_are_valid(rvsd_check):
    for mode in ("dr", "tun", "fullnat"):
        path = ROOT / "conf" / f"lab-{mode}.yaml"
        r = rvsd_check(path)
        assert r.returncode == 0, f"{path.name}: {r.stderr}"


@pytest.mark.parametrize("mode", ["dr", "tun"])
def test_dr_tun_refuse_port_mapping(rvsd_check, mode):
    text = lab_config(mode, real_port=8080, udp_port=None)
    r = rvsd_check(text, f"{mode}-port-mapping")
    assert r.returncode != 0, f"--check accepted a port-mapping {mode} real:\n{text}"
    # contract: "port mapping is not possible in DR/TUN mode"; rvsd names the
    # real's mode ("... in dr mode: ..."): accept either
    err = r.stderr.lower()
    assert "port mapping is not possible in" in err and mode in err, r.stderr
    assert "services[0].reals[0]" in r.stderr, r.stderr
    # equal to the service port is fine
    r = rvsd_check(lab_config(mode, real_port=80, udp_port=None), f"{mode}-same-port")
    assert r.returncode == 0, r.stderr


def test_dr_needs_a_connected_real_tun_does_not(rvsd_check):
    """A real behind a router: refused for DR (same L2 segment needed),
    accepted for TUN (IPIP crosses routers)."""
    def cfg(forward):
        svc = {"vip": VIP, "port": 80, "protocol": "tcp", "scheduler": "rr",
               "reals": [{"address": "10.99.5.11", "weight": 1, "forward": forward}]}
        text = lab_config("dr", forward=forward, services=[svc])
        return text.replace("services:", "routes:\n  - { prefix: \"10.99.5.0/24\", "
                                         "via: \"10.99.1.254\" }\nservices:", 1)
    r = rvsd_check(cfg("dr"), "dr-routed-real")
    assert r.returncode != 0, "--check accepted a DR real outside every connected subnet"
    assert "services[0].reals[0]" in r.stderr, r.stderr
    r = rvsd_check(cfg("tun"), "tun-routed-real")
    assert r.returncode == 0, r.stderr


def test_fullnat_lip_must_be_a_port_address(rvsd_check):
    text = lab_config("fullnat", udp_port=None).replace(f'"{LIP}/24"', '"10.99.2.101/24"')
    r = rvsd_check(text, "fullnat-stray-lip")
    assert r.returncode != 0, f"--check accepted a LIP no port owns:\n{text}"
    assert "services[0].local_addresses" in r.stderr, r.stderr
