"""The exception path end to end in the NAT lab: with `kernel_interface` on
both ports, the director's kernel shares them with rvsd. From the client
network the director's own TCP server answers on the port address; the
kernel resolves the reals' MACs by itself and pings them, tcpdump sees the
kernel interface's traffic; all of it keeps
working while 200 concurrent connections go through the dataplane; the
interfaces go away with rvsd.
"""
import subprocess
import sys
import threading
import time

from conftest import (DIR_CLIENT_IP, NS_DIR, R1, R2, ROOT, RUN, render_config, service)

KERNEL = ("kclient", "kreal")
SERVER_PORT = 8081


def config():
    return render_config([service(80, "tcp", "rr")], kernel_interfaces=KERNEL)


def in_dir(*cmd, timeout=30):
    return subprocess.run(["ip", "netns", "exec", NS_DIR, *map(str, cmd)],
                          capture_output=True, text=True, timeout=timeout)


def kernel_checks(lab):
    """What the director's kernel must manage over the ports: its own TCP
    server reached from the client network, the reals resolved and pinged."""
    res = lab.http(20, url=f"http://{DIR_CLIENT_IP}:{SERVER_PORT}/", concurrency=4)
    assert res["ok"] == 20 and res["by_real"] == {"director": 20}, res
    for real in (R1, R2):
        ping = in_dir("ping", "-c", "2", "-i", "0.2", "-W", "2", real)
        assert ping.returncode == 0, ping.stdout + ping.stderr
    neigh = in_dir("ip", "neigh", "show", "dev", KERNEL[1]).stdout
    for real in (R1, R2):
        assert real in neigh and "lladdr" in neigh, neigh


def test_the_kernel_shares_the_ports(lab, start_rvsd):
    d = start_rvsd(config())
    log = d.log()
    for name in KERNEL:
        assert f"through TAP interface `{name}`" in log, d.log_tail()
    link = in_dir("ip", "-br", "link", "show", KERNEL[0]).stdout
    assert lab.dir_mac in link and "UP" in link, link
    addr = in_dir("ip", "-br", "-4", "address", "show", KERNEL[0]).stdout
    assert f"{DIR_CLIENT_IP}/24" in addr, addr

    RUN.mkdir(parents=True, exist_ok=True)
    server = subprocess.Popen(
        ["ip", "netns", "exec", NS_DIR, sys.executable, str(ROOT / "lab" / "realserver.py"),
         "--name", "director", "--bind", DIR_CLIENT_IP, "--http-ports", str(SERVER_PORT),
         "--udp-port", "0", "--blob", str(RUN / "blob.bin")],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if f":{SERVER_PORT}" in in_dir("ss", "-ltn").stdout:
                break
            time.sleep(0.1)
        # tcpdump sees the kernel's side of the port; ping reaches the
        # port address from the client network.
        dump = subprocess.Popen(
            ["ip", "netns", "exec", NS_DIR, "timeout", "20", "tcpdump", "-l", "-n", "-c", "4",
             "-i", KERNEL[0], "tcp", "port", str(SERVER_PORT)],
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        time.sleep(1)
        kernel_checks(lab)
        captured = dump.communicate(timeout=30)[0]
        assert f"{DIR_CLIENT_IP}.{SERVER_PORT}" in captured, captured
        ping = lab.ns(lab.ns_client, "ping", "-c", "2", "-i", "0.2", "-W", "2", DIR_CLIENT_IP)
        assert ping.returncode == 0, ping.stdout + ping.stderr

        # The same while 200 concurrent connections go through the VIP.
        load = {}
        runner = threading.Thread(
            target=lambda: load.update(lab.http(4000, concurrency=200)), daemon=True)
        runner.start()
        time.sleep(0.5)
        rounds = 0
        while runner.is_alive() or rounds == 0:
            kernel_checks(lab)
            rounds += 1
        runner.join()
        assert load["ok"] == 4000 and load["errors"] == 0, load
        assert set(load["by_real"]) == {"r1", "r2"}, load

        st = d.stats()
        for port in st["ports"]:
            k = port["kernel_interface"]
            assert k["to_kernel"] > 0 and k["from_kernel"] > 0, port
            assert k["to_kernel_dropped"] == 0 and k["from_kernel_dropped"] == 0, port
        assert st["drops"]["kernel_full"] == 0, st["drops"]
    finally:
        server.terminate()
        server.wait(timeout=10)
    assert d.stop(timeout=10) == 0, d.log_tail()
    for name in KERNEL:
        assert in_dir("ip", "link", "show", name).returncode != 0, f"{name} left behind"
