"""What a hostile probe of a running rvsd broke, kept fixed, end to end in the
NAT lab: an ARP storm, a spoofed ARP reply, a flood of spoofed UDP, and a
second rvsd on the same ports.
"""
import subprocess
import pytest

from conftest import DIR_CLIENT_IP, R1, RUN, VIP, Rvsd, render_config, service


def config(extra=""):
    return render_config([service(80, "tcp", "rr"), service(9000, "udp", "rr")], extra=extra)


def all_served(lab, requests=10, datagrams=3):
    res = lab.http(requests)
    udp = lab.client("udp", "--addr", f"{VIP}:9000", "--count", datagrams)
    return res, udp


def test_an_arp_storm_does_not_stop_resolution(lab, start_rvsd):
    # Before any traffic: nothing is resolved yet, so every next hop must be
    # learned after the storm (a full table once meant none ever was).
    d = start_rvsd(config())
    storm = lab.client("arp-storm", "--iface", "c0", "--target", VIP, "--count", 10000)
    assert storm["sent"] >= 9900, storm
    res, udp = all_served(lab)
    assert res["ok"] == 10 and res["errors"] == 0, res
    assert udp["lost"] == 0 and udp["sent"] == 3, udp
    st = d.stats()
    # Every storm request either reached rvsd and was refused (not learned),
    # or was lost, counted, at the af_packet ring under the burst: how many
    # are lost depends on how busy the machine is.
    lost = next(p["rx_lost"] for p in st["ports"] if p["name"] == "client")
    assert st["arp_refused"] >= 1000, st
    assert st["arp_refused"] + lost >= 9900, st
    assert d.alive()


def test_a_spoofed_arp_reply_cannot_hijack_a_real(lab, start_rvsd):
    d = start_rvsd(config())
    res = lab.http(10)
    assert res["ok"] == 10, res
    # On the client port: "r1 is-at 02:de:ad:be:ef:01", as a reply to the
    # director. r1 lives on the other port's segment.
    spoof = lab.client("arp-spoof", "--iface", "c0", "--dst-mac", lab.dir_mac, "--claim", R1,
                       "--mac", "02:de:ad:be:ef:01", "--target", DIR_CLIENT_IP, "--count", 3)
    assert spoof["sent"] == 3, spoof
    res = lab.http(20)
    assert res["ok"] == 20 and res["errors"] == 0, res
    assert set(res["by_real"]) == {"r1", "r2"}, res
    assert d.stats()["arp_refused"] >= 3


def test_a_spoofed_udp_flood_leaves_room_for_new_clients(lab, start_rvsd):
    # A small table, so that a flood several times its size is quick.
    d = start_rvsd(config("limits:\n  connections: 4096\n"))
    flood = lab.client("udp-flood", "--iface", "c0", "--dst-mac", lab.dir_mac, "--vip", VIP,
                       "--port", 9000, "--count", 30000, "--pps", 20000, timeout=120)
    assert flood["sent"] >= 29000, flood
    # The flood's entries have 300 s to live; every new client is served now.
    res, udp = all_served(lab, requests=20, datagrams=5)
    assert res["ok"] == 20 and res["errors"] == 0, res
    assert udp["lost"] == 0, udp
    st = d.stats()
    assert st["conns_evicted"] > 10000, st
    assert st["drops"].get("conn_table_full", 0) == 0, st["drops"]
    # What the kernel's packet ring dropped is counted, not invisible.
    client = st["ports"][0]
    assert client["kernel_rx_packets"] >= flood["sent"], client
    assert client["rx_lost"] == client["kernel_rx_packets"] - client["rx_packets"], client


def test_a_second_rvsd_on_the_same_ports_is_refused(lab, start_rvsd):
    first = start_rvsd(config())
    # Its own control socket: the port claim, not the socket, must stop it.
    second = Rvsd("second-instance", config(f"control:\n  socket: {RUN / 'second.sock'}\n"))
    try:
        status = second.proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        status = None
    finally:
        second.stop()
    log = second.log()
    if status is None:
        pytest.fail(f"a second rvsd on the same ports kept running:\n{second.log_tail()}")
    assert status != 0, log
    assert "port `client` (net_af_packet0,iface=d0): the device is already driven by " \
           f"another rvsd (pid {first.proc.pid})" in log, log
    assert "rte_eal_init" not in log and "EAL" not in log.split("already driven")[0], \
        "refused before DPDK is touched"
    res = lab.http(10)
    assert res["ok"] == 10 and res["errors"] == 0, res
    assert first.alive()


def test_a_closed_port_is_refused_at_once_when_asked(lab, start_rvsd):
    start_rvsd(config("closed_ports: reject\n"))
    res = lab.client("http", "--url", f"http://{VIP}:81/", "--count", 3, "--timeout", 5,
                     check=False)
    assert res["ok"] == 0, res
    assert res["error_kinds"] == {"ConnectionRefusedError": 3}, res
    assert res["seconds"] < 2, res
    udp = lab.client("udp", "--addr", f"{VIP}:9001", "--count", 1, "--timeout", 1, check=False)
    assert udp["lost"] == 1, udp
    res = lab.http(5)
    assert res["ok"] == 5, res
