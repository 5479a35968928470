#!/usr/bin/env python3
"""Userspace IPIP decapsulator: the TUN-mode real server's tunl0 for kernels
without the `ipip` module (run inside a real's namespace by lab/lab.sh).

  * creates a TUN device (--dev, default tunl-vip; IFF_TUN|IFF_NO_PI), brings
    it up with the VIP(s) (--vip 10.99.1.100/32, repeatable) and rp_filter 0;
  * reads every IPv4 packet of IP protocol 4 addressed to this host from a raw
    socket (socket(AF_INET, SOCK_RAW, 4): the kernel hands over the whole
    outer packet, header included), strips the outer header and writes the
    inner packet into the TUN device, where the kernel receives it as if it
    had arrived on that interface (destination: the VIP held there).
  * Replies are ordinary locally generated packets from the VIP: they follow
    the routing table (eth0, straight to the client), not the tunnel.

An open raw socket for protocol 4 also stops the kernel from answering IPIP
packets with ICMP protocol-unreachable. The device (and the VIP on it)
disappears when this process exits. Counts are logged on SIGUSR1 and at exit.
Writes --ready-file (its pid) once the device is up and the socket is bound.
"""
import argparse
import fcntl
import os
import select
import signal
import socket
import struct
import subprocess
import sys

TUNSETIFF = 0x400454CA
IFF_TUN = 0x0001
IFF_NO_PI = 0x1000
IPPROTO_IPIP = 4


def log(msg):
    sys.stderr.write(f"ipip-decap: {msg}\n")
    sys.stderr.flush()


def sh(*cmd):
    subprocess.run(cmd, check=True)


def set_sysctl(key, value):
    with open("/proc/sys/" + key.replace(".", "/"), "w") as f:
        f.write(f"{value}\n")


def open_tun(name):
    fd = os.open("/dev/net/tun", os.O_RDWR)
    ifr = struct.pack("16sH", name.encode(), IFF_TUN | IFF_NO_PI)
    got = fcntl.ioctl(fd, TUNSETIFF, ifr)
    return fd, got[:16].rstrip(b"\0").decode()


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dev", default="tunl-vip", help="TUN device name (at most 15 chars)")
    ap.add_argument("--vip", action="append", default=[],
                    help="address/len to put on the device (repeatable), e.g. 10.99.1.100/32")
    ap.add_argument("--mtu", type=int, default=1500, help="MTU of the TUN device")
    ap.add_argument("--ready-file", help="written (with the pid) once running")
    ap.add_argument("--verbose", action="store_true", help="log every packet")
    a = ap.parse_args()

    counts = {"decapsulated": 0, "bad_outer": 0, "bad_inner": 0, "write_errors": 0,
              "tun_read": 0}

    fd, dev = open_tun(a.dev)
    set_sysctl(f"net.ipv4.conf.{dev}.rp_filter", 0)
    sh("ip", "link", "set", "dev", dev, "mtu", str(a.mtu), "up")
    for v in a.vip:
        sh("ip", "addr", "add", v, "dev", dev)

    raw = socket.socket(socket.AF_INET, socket.SOCK_RAW, IPPROTO_IPIP)
    raw.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)

    stop = []
    signal.signal(signal.SIGTERM, lambda *_: stop.append(1))
    signal.signal(signal.SIGINT, lambda *_: stop.append(1))
    signal.signal(signal.SIGUSR1, lambda *_: log(f"{dev}: {counts}"))

    log(f"{dev} up with {', '.join(a.vip) or 'no address'}; decapsulating IP protocol 4 "
        f"(pid {os.getpid()})")
    if a.ready_file:
        tmp = a.ready_file + ".tmp"
        with open(tmp, "w") as f:
            f.write(f"{os.getpid()}\n")
        os.replace(tmp, a.ready_file)

    while not stop:
        try:
            ready, _, _ = select.select([raw, fd], [], [], 1.0)
        except InterruptedError:
            continue
        if fd in ready:
            # Whatever the kernel routes into the device (nothing should): drain it.
            try:
                os.read(fd, 65536)
                counts["tun_read"] += 1
            except OSError:
                pass
        if raw not in ready:
            continue
        try:
            pkt = raw.recv(65536)
        except InterruptedError:
            continue
        if len(pkt) < 20 or pkt[0] >> 4 != 4:
            counts["bad_outer"] += 1
            continue
        ihl = (pkt[0] & 0x0F) * 4
        tot = struct.unpack_from("!H", pkt, 2)[0]
        if ihl < 20 or tot < ihl or tot > len(pkt):
            counts["bad_outer"] += 1
            continue
        inner = pkt[ihl:tot]
        if len(inner) < 20 or inner[0] >> 4 != 4:
            counts["bad_inner"] += 1
            continue
        try:
            os.write(fd, inner)
        except OSError as e:
            counts["write_errors"] += 1
            if a.verbose:
                log(f"write: {e}")
            continue
        counts["decapsulated"] += 1
        if a.verbose:
            log(f"{socket.inet_ntoa(pkt[12:16])}->{socket.inet_ntoa(pkt[16:20])} carrying "
                f"{socket.inet_ntoa(inner[12:16])}->{socket.inet_ntoa(inner[16:20])} "
                f"proto {inner[9]} len {len(inner)}")
    log(f"{dev}: stopping; {counts}")


if __name__ == "__main__":
    main()
