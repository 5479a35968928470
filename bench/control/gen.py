#!/usr/bin/env python3
"""Inputs of bench/control.sh.

  gen.py config --pcap FILE --socket PATH [--services N --reals M] > rvsd.yaml
      rvsd's config for the bench: one net_pcap port replaying FILE
      (10.200.0.1/16), one worker, room for a million connections, one
      service 10.201.0.1:80 -> 10.200.0.2 for the SYNs; with --services N,
      N more services of M reals each (what `rvsctl apply` is timed on):
      VIPs 10.202.x.y:80 (then 10.204.x.y past 62,500), reals spread over
      the port's /16. With --infinite the port replays FILE for ever
      (infinite_rx=1): after the first pass every packet is established
      traffic (bench/metrics.sh's throughput while scraping).
  gen.py restore --services N --reals M > restore.txt
      The same N services of M reals as `rvsadm -R` lines (what -R is
      timed on): N * (M + 1) lines.
  gen.py pcap --mac MAC --count N FILE
      A pcap of one ARP request from the real 10.200.0.2 (so rvsd learns its
      MAC without asking), then from N distinct client address and port
      pairs to 10.201.0.1:80 a TCP SYN and its ACK each, 60-byte frames to
      MAC: the client's second packet verifies its connection (rvsd keeps
      half its table for connections on probation) and makes it
      ESTABLISHED.
"""
import argparse
import struct
import sys

PORT_NET = "10.200.0.1/16"
VIP = "10.201.0.1"
REAL = "10.200.0.2"
REAL_MAC = bytes.fromhex("020000c80002")
CLIENT_MAC = bytes.fromhex("020000c90001")


def ip_bytes(text):
    return bytes(int(part) for part in text.split("."))


def checksum(data):
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def config(a):
    # One RX and TX queue per worker (net_pcap: one per rx_pcap/tx_pcap).
    queues = ",".join([f"rx_pcap={a.pcap}"] * a.workers + ["tx_pcap=/dev/null"] * a.workers
                      + (["infinite_rx=1"] if a.infinite else []))
    workers = []
    for w in range(a.workers):
        workers += [f"  - lcore: {1 + w}", f"    cpu: {1 if w == 0 else 0}", "    queues:",
                    f"      - {{ port: net, queue: {w} }}"]
    lines = [
        "# written by bench/control/gen.py",
        "eal:",
        "  main_lcore: 0",
        "  main_cpu: 0",
        '  args: ["--no-huge", "-m", "1024", "--no-shconf"]',
        "ports:",
        "  - name: net",
        f'    device: "net_pcap0,{queues}"',
        f'    addresses: ["{PORT_NET}"]',
        "worker_idle:",
        "  idle_polls: 64",
        "  sleep_us: 100",
        "workers:",
        *workers,
        *([f"metrics: {{ listen: {a.metrics} }}"] if a.metrics else []),
        "limits:",
        "  reals: 131072",
        "  connections: 1100000",
        "control:",
        f"  socket: {a.socket}",
        "services:",
        f"  - vip: {VIP}",
        "    port: 80",
        "    protocol: tcp",
        "    scheduler: rr",
        "    reals:",
        f"      - {{ address: {REAL}, weight: 1, forward: nat }}",
    ]
    out = sys.stdout
    out.write("\n".join(lines) + "\n")
    for i in range(a.services):
        out.write(f"  - vip: {vip(i)}\n    port: 80\n    protocol: tcp\n    scheduler: wrr\n"
                  "    reals:\n")
        for k in range(a.reals):
            out.write(f"      - {{ address: {real(i, k, a.reals)}, weight: {1 + k % 5},"
                      " forward: nat }\n")


def vip(i):
    """The VIP of generated service i: 62,500 per /16, clear of the SYNs' clients."""
    return f"10.{202 if i < 62500 else 204}.{i // 250 % 250}.{i % 250 + 1}"


def real(i, k, reals):
    """Real k of generated service i, in the port's /16."""
    n = i * reals + k
    return f"10.200.{1 + n // 250 % 250}.{n % 250 + 2}"


def restore(a):
    out = sys.stdout
    for i in range(a.services):
        out.write(f"-A -t {vip(i)}:80 -s wrr\n")
        for k in range(a.reals):
            out.write(f"-a -t {vip(i)}:80 -r {real(i, k, a.reals)}:80 -m -w {1 + k % 5}\n")


def pcap(a):
    mac = bytes.fromhex(a.mac.replace(":", ""))
    director = ip_bytes(PORT_NET.split("/")[0])
    real, vip = ip_bytes(REAL), ip_bytes(VIP)
    with open(a.file, "wb") as f:
        f.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1))

        def frame(data):
            data = data.ljust(60, b"\0")
            f.write(struct.pack("<IIII", 0, 0, len(data), len(data)))
            f.write(data)

        arp = (b"\xff" * 6 + REAL_MAC + b"\x08\x06"
               + struct.pack("!HHBBH", 1, 0x0800, 6, 4, 1)
               + REAL_MAC + real + b"\0" * 6 + director)
        frame(arp)
        eth = mac + CLIENT_MAC + b"\x08\x00"
        # Only the client address and port change; the real's answer is
        # not needed: rvsd moves to ESTABLISHED on the client's ACK.
        syn = struct.pack("!HIIBBHH", 80, 1, 0, 5 << 4, 0x02, 65535, 0)
        ack = struct.pack("!HIIBBHH", 80, 2, 1, 5 << 4, 0x10, 65535, 0)
        for n in range(a.count):
            client = bytes((10, 203, n >> 16 & 0xFF, n >> 8 & 0xFF))
            sport = 1024 + (n & 0xFF)
            for tcp_rest in (syn, ack):
                ip = bytearray(struct.pack("!BBHHHBBH4s4s", 0x45, 0, 40, n & 0xFFFF, 0x4000,
                                           64, 6, 0, client, vip))
                ip[10:12] = struct.pack("!H", checksum(bytes(ip)))
                tcp = bytearray(struct.pack("!H", sport) + tcp_rest)
                pseudo = client + vip + struct.pack("!BBH", 0, 6, 20)
                tcp[16:18] = struct.pack("!H", checksum(pseudo + bytes(tcp)))
                frame(eth + bytes(ip) + bytes(tcp))


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("config")
    p.add_argument("--pcap", required=True)
    p.add_argument("--socket", required=True)
    p.add_argument("--services", type=int, default=0)
    p.add_argument("--reals", type=int, default=10)
    p.add_argument("--workers", type=int, default=1)
    p.add_argument("--metrics", help="metrics.listen, e.g. 127.0.0.1:9311")
    p.add_argument("--infinite", action="store_true",
                   help="replay the pcap for ever (infinite_rx=1): after the first pass, "
                        "established traffic")
    p = sub.add_parser("restore")
    p.add_argument("--services", type=int, required=True)
    p.add_argument("--reals", type=int, default=4)
    p = sub.add_parser("pcap")
    p.add_argument("--mac", required=True)
    p.add_argument("--count", type=int, required=True)
    p.add_argument("file")
    a = ap.parse_args()
    {"config": config, "pcap": pcap, "restore": restore}[a.cmd](a)


if __name__ == "__main__":
    main()
