#!/usr/bin/env python3
"""Traffic generator of the rvs lab (run inside the client namespace).

Subcommands, each printing one JSON object on stdout:

  http --url URL --count N [--concurrency C] [--timeout S]
      N requests, each on a NEW TCP connection with "Connection: close".
      -> {"by_real": {"r1": n, ...}, "by_port": {"8080": n, ...}, "errors": k,
          "ok": n, "error_samples": [...], "seconds": t,
          "by_peer": {"10.99.2.100": n, ...}, "by_local": {"10.99.1.100": n},
          "error_kinds": {"ConnectionResetError": k, ...}}
      (peer/local: the client address and the address connected to, as the
      real saw them.)
  download --url URL [--timeout S]
      -> {"sha256": hex, "bytes": n, "status": 200, "real": "r1", "seconds": t}
  udp --addr IP:PORT --count N [--timeout S] [--peer] [--size B]
      N datagrams, each from a NEW socket (new source port = new connection);
      the real answers "<name>:<payload>".
      -> {"by_real": {...}, "lost": k, "sent": n, "bad": b,
          "by_source": {"IP:PORT the replies came from": n}}
      --peer: payloads start with "?peer", the real appends what it saw;
      adds "by_peer" {ip: n}, "peer_ports" [...], "by_local" {ip: n}.
  hold --addr IP:PORT --count N [--extra M] [--connect-timeout S] [--pause S]
      Opens N TCP connections and keeps them idle, then tries M more (each
      given --connect-timeout), waits --pause seconds, then sends one
      "GET /" on each held connection and reads the answer.
      -> {"held": n, "connect_errors": [...], "extra": [{"ok": b, "error": e,
          "seconds": t}, ...], "completed": k, "by_real": {...},
          "by_peer": {...}, "peer_ports": [...], "request_errors": [...]}
  pmtu --addr IP:PORT [--size 1472] [--timeout S] [--no-df]
      One UDP datagram of --size bytes with DF (IP_PMTUDISC_DO; --no-df:
      IP_PMTUDISC_DONT) and IP_RECVERR on a connected socket; waits for an
      ICMP error (frag-needed, port-unreachable, ...), then sends the same
      size again.
      -> {"first_send": "ok"|err, "icmp": {"type", "code", "info" (next-hop
          MTU), "errno", "offender"} or null, "second_send": "ok"|err,
          "second_errno": n|null, "ip_mtu": n|null}
  garbage --iface IF --dst-mac MAC --count N [--vip IP] [--dir-ip IP] [--seed S]
      N malformed frames on a raw AF_PACKET socket, addressed to the
      director's MAC and to the VIP / director addresses.
      -> {"sent": n, "by_kind": {...}, "send_errors": {...}}
  arp-storm --iface IF --target IP --count N [--seed S] [--pps R]
      N broadcast ARP requests for IP, each from a random sender address
      (anywhere in IPv4) and a random locally administered MAC.
      -> {"sent": n, "send_errors": k}
  arp-spoof --iface IF --dst-mac MAC --claim IP --mac MAC --target IP [--count N]
      N ARP replies to MAC saying "IP is-at MAC", as if answering TARGET.
      -> {"sent": n}
  udp-flood --iface IF --dst-mac MAC --vip IP --port P --count N [--seed S] [--pps R]
      N UDP datagrams to VIP:P, each from a random source address and port
      (a spoofed flood: nobody will answer the replies).
      -> {"sent": n, "send_errors": k}

Exit status is 0 when the command ran (the JSON tells the outcome), 2 on bad
usage, 1 when the command itself could not run (e.g. download failed).
"""
import argparse
import concurrent.futures
import hashlib
import http.client
import json
import random
import re
import socket
import struct
import sys
import time
import urllib.parse


def out(obj):
    print(json.dumps(obj, sort_keys=True))
    sys.stdout.flush()


# --------------------------------------------------------------------------- http
BODY_RE = re.compile(rb"real=(\S+) port=(\d+)")
PEER_RE = re.compile(rb"peer=([\d.]+):(\d+)")
LOCAL_RE = re.compile(rb"local=([\d.]+)")


def body_info(body):
    """(real, port, peer_ip, peer_port, local) from a realserver answer."""
    m = BODY_RE.search(body)
    if not m:
        raise RuntimeError(f"unexpected body {body[:80]!r}")
    p, lo = PEER_RE.search(body), LOCAL_RE.search(body)
    return (m.group(1).decode(), m.group(2).decode(),
            p.group(1).decode() if p else None, int(p.group(2)) if p else None,
            lo.group(1).decode() if lo else None)


def parse_url(url):
    u = urllib.parse.urlsplit(url)
    if u.scheme != "http" or not u.hostname:
        raise SystemExit(f"client.py: only http://HOST[:PORT]/PATH URLs: {url!r}")
    path = u.path or "/"
    if u.query:
        path += "?" + u.query
    return u.hostname, u.port or 80, path


def one_request(host, port, path, timeout, source=None):
    conn = http.client.HTTPConnection(host, port, timeout=timeout,
                                      source_address=(source, 0) if source else None)
    try:
        conn.request("GET", path, headers={"Connection": "close", "User-Agent": "rvs-lab"})
        resp = conn.getresponse()
        body = resp.read()
        if resp.status != 200:
            raise RuntimeError(f"HTTP {resp.status}")
        return body_info(body)
    finally:
        conn.close()


def cmd_http(a):
    host, port, path = parse_url(a.url)
    by_real, by_port, errors, samples = {}, {}, 0, []
    by_peer, by_local, kinds = {}, {}, {}
    t0 = time.monotonic()

    def job(i):
        try:
            return one_request(host, port, path, a.timeout, a.source), None
        except Exception as e:  # noqa: BLE001 - every failure is counted
            return None, (type(e).__name__, f"#{i}: {type(e).__name__}: {e}")

    with concurrent.futures.ThreadPoolExecutor(max_workers=max(1, a.concurrency)) as ex:
        for res, err in ex.map(job, range(a.count)):
            if err:
                errors += 1
                kinds[err[0]] = kinds.get(err[0], 0) + 1
                if len(samples) < 5:
                    samples.append(err[1])
                continue
            real, rport, peer, _pport, local = res
            by_real[real] = by_real.get(real, 0) + 1
            by_port[rport] = by_port.get(rport, 0) + 1
            if peer:
                by_peer[peer] = by_peer.get(peer, 0) + 1
            if local:
                by_local[local] = by_local.get(local, 0) + 1
    out({"by_real": by_real, "by_port": by_port, "errors": errors,
         "ok": a.count - errors, "error_samples": samples,
         "by_peer": by_peer, "by_local": by_local, "error_kinds": kinds,
         "seconds": round(time.monotonic() - t0, 3)})


def cmd_download(a):
    host, port, path = parse_url(a.url)
    t0 = time.monotonic()
    h, n, status, real = hashlib.sha256(), 0, None, None
    try:
        conn = http.client.HTTPConnection(host, port, timeout=a.timeout)
        conn.request("GET", path, headers={"Connection": "close", "User-Agent": "rvs-lab"})
        resp = conn.getresponse()
        status, real = resp.status, resp.getheader("X-Real")
        # The longest wait for the next chunk: what a failover costs.
        stall, last = 0.0, time.monotonic()
        while True:
            chunk = resp.read(65536)
            now = time.monotonic()
            stall, last = max(stall, now - last), now
            if not chunk:
                break
            h.update(chunk)
            n += len(chunk)
            if a.rate:
                # At most `rate` bytes a second: sleep off any lead.
                lead = t0 + n / a.rate - time.monotonic()
                if lead > 0:
                    time.sleep(lead)
                    last = time.monotonic()
        ended = time.monotonic()
        conn.close()
    except Exception as e:  # noqa: BLE001
        out({"error": f"{type(e).__name__}: {e}", "bytes": n, "status": status,
             "sha256": None, "seconds": round(time.monotonic() - t0, 3)})
        return 1
    # ended: CLOCK_MONOTONIC at the end of the body, comparable with the
    # caller's time.monotonic() (one clock for all network namespaces).
    out({"sha256": h.hexdigest(), "bytes": n, "status": status, "real": real,
         "seconds": round(ended - t0, 3), "ended": ended, "stall": round(stall, 3)})
    return 0


# --------------------------------------------------------------------------- udp
def cmd_udp(a):
    ip, _, p = a.addr.rpartition(":")
    port = int(p)
    by_real, lost, bad, samples = {}, 0, 0, []
    by_source, by_peer, by_local, peer_ports = {}, {}, {}, set()
    for i in range(a.count):
        payload = f"?peer hello-{i}".encode() if a.peer else f"hello-{i}".encode()
        if a.size and a.size > len(payload):
            payload = payload.ljust(a.size, b".")
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.settimeout(a.timeout)
        try:
            s.sendto(payload, (ip, port))
            data, src = s.recvfrom(2048)
        except OSError as e:
            lost += 1
            if len(samples) < 5:
                samples.append(f"#{i}: {type(e).__name__}: {e}")
            continue
        finally:
            s.close()
        src = "%s:%d" % src[:2]
        by_source[src] = by_source.get(src, 0) + 1
        name, sep, echoed = data.partition(b":")
        extra = b""
        if a.peer and echoed.startswith(payload):
            echoed, extra = payload, echoed[len(payload):]
        if not sep or echoed != payload:
            bad += 1
            if len(samples) < 5:
                samples.append(f"#{i}: unexpected reply {data[:60]!r}")
            continue
        by_real[name.decode()] = by_real.get(name.decode(), 0) + 1
        if a.peer:
            p, lo = PEER_RE.search(extra), LOCAL_RE.search(extra)
            if p:
                by_peer[p.group(1).decode()] = by_peer.get(p.group(1).decode(), 0) + 1
                peer_ports.add(int(p.group(2)))
            if lo:
                by_local[lo.group(1).decode()] = by_local.get(lo.group(1).decode(), 0) + 1
    res = {"by_real": by_real, "lost": lost, "bad": bad, "sent": a.count,
           "error_samples": samples, "by_source": by_source}
    if a.peer:
        res.update(by_peer=by_peer, by_local=by_local, peer_ports=sorted(peer_ports))
    out(res)


# --------------------------------------------------------------------------- hold
def cmd_hold(a):
    ip, _, p = a.addr.rpartition(":")
    port = int(p)
    held, connect_errors, extra, extra_socks = [], [], [], []
    for i in range(a.count):
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.settimeout(a.connect_timeout)
        try:
            s.connect((ip, port))
        except OSError as e:
            connect_errors.append(f"#{i}: {type(e).__name__}: {e}")
            s.close()
            continue
        held.append(s)
    for i in range(a.extra):
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.settimeout(a.connect_timeout)
        t0 = time.monotonic()
        try:
            s.connect((ip, port))
            extra.append({"ok": True, "error": None,
                          "seconds": round(time.monotonic() - t0, 3)})
            extra_socks.append(s)  # unexpected, but keep it open until the end
            continue
        except OSError as e:
            extra.append({"ok": False, "error": f"{type(e).__name__}: {e}",
                          "seconds": round(time.monotonic() - t0, 3)})
        s.close()
    if a.pause:
        time.sleep(a.pause)
    by_real, by_peer, peer_ports, req_errors, completed = {}, {}, set(), [], 0
    for i, s in enumerate(held):
        s.settimeout(a.timeout)
        try:
            s.sendall(f"GET / HTTP/1.0\r\nHost: {ip}\r\nUser-Agent: rvs-lab\r\n\r\n".encode())
            buf = b""
            while True:
                chunk = s.recv(4096)
                if not chunk:
                    break
                buf += chunk
            head, _, body = buf.partition(b"\r\n\r\n")
            if not head.startswith(b"HTTP/1.") or b" 200 " not in head.split(b"\r\n", 1)[0]:
                raise RuntimeError(f"bad answer {buf[:80]!r}")
            real, _port, peer, pport, _local = body_info(body)
        except Exception as e:  # noqa: BLE001
            req_errors.append(f"#{i}: {type(e).__name__}: {e}")
            continue
        finally:
            s.close()
        completed += 1
        by_real[real] = by_real.get(real, 0) + 1
        if peer:
            by_peer[peer] = by_peer.get(peer, 0) + 1
            peer_ports.add(pport)
    for s in extra_socks:
        s.close()
    out({"held": len(held), "connect_errors": connect_errors,
         "extra": extra, "completed": completed, "by_real": by_real, "by_peer": by_peer,
         "peer_ports": sorted(peer_ports), "request_errors": req_errors})


# --------------------------------------------------------------------------- pmtu
IP_MTU_DISCOVER, IP_PMTUDISC_DONT, IP_PMTUDISC_DO, IP_RECVERR, IP_MTU = 10, 0, 2, 11, 14
MSG_ERRQUEUE = 0x2000
SO_EE_ORIGIN_ICMP = 2


def cmd_pmtu(a):
    import errno as errno_mod
    import select
    ip, _, p = a.addr.rpartition(":")
    port = int(p)
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.setsockopt(socket.SOL_IP, IP_MTU_DISCOVER, IP_PMTUDISC_DONT if a.no_df else IP_PMTUDISC_DO)
    s.setsockopt(socket.SOL_IP, IP_RECVERR, 1)
    s.connect((ip, port))
    res = {"size": a.size, "first_send": None, "icmp": None, "second_send": None,
           "second_errno": None, "ip_mtu": None}
    payload = b"D" * a.size
    try:
        s.send(payload)
        res["first_send"] = "ok"
    except OSError as e:
        res["first_send"] = f"{type(e).__name__}: {e}"
    deadline = time.monotonic() + a.timeout
    while res["icmp"] is None and time.monotonic() < deadline:
        r, _, x = select.select([s], [], [s], max(0.0, deadline - time.monotonic()))
        if not r and not x:
            break
        try:
            _data, anc, _flags, _addr = s.recvmsg(2048, 512, MSG_ERRQUEUE)
        except BlockingIOError:
            # readable without an error queued: a normal reply (the datagram
            # got through); consume it and keep waiting
            try:
                s.recv(4096, socket.MSG_DONTWAIT)
                res.setdefault("replies", 0)
                res["replies"] += 1
            except OSError:
                pass
            continue
        except OSError as e:
            res["recv_error"] = f"{type(e).__name__}: {e}"
            break
        for level, ctype, cdata in anc:
            if level == socket.SOL_IP and ctype == IP_RECVERR and len(cdata) >= 16:
                ee_errno, origin, etype, code, _pad, info, _data32 = struct.unpack_from(
                    "=IBBBBII", cdata)
                offender = None
                if len(cdata) >= 24 and origin == SO_EE_ORIGIN_ICMP:
                    offender = socket.inet_ntoa(cdata[20:24])
                res["icmp"] = {"errno": ee_errno, "origin": origin, "type": etype,
                               "code": code, "info": info, "offender": offender}
    try:
        res["ip_mtu"] = s.getsockopt(socket.SOL_IP, IP_MTU)
    except OSError:
        pass
    try:
        s.send(payload)
        res["second_send"] = "ok"
    except OSError as e:
        res["second_send"] = f"{type(e).__name__}: {e}"
        res["second_errno"] = e.errno
    res["emsgsize"] = errno_mod.EMSGSIZE
    s.close()
    out(res)


# --------------------------------------------------------------------------- garbage
ETH_P_IP, ETH_P_ARP = 0x0800, 0x0806


def csum(data):
    if len(data) % 2:
        data += b"\0"
    s = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return ~s & 0xFFFF


def mac_bytes(mac):
    b = bytes(int(x, 16) for x in mac.split(":"))
    if len(b) != 6:
        raise SystemExit(f"client.py: bad MAC {mac!r}")
    return b


def ipv4(src, dst, proto, payload, *, ihl=5, options=b"", tot_len=None, frag=0,
         ttl=64, ident=0, bad_csum=False, version=4):
    hdr_len = ihl * 4 if ihl >= 5 else 20
    options = options.ljust(max(0, hdr_len - 20), b"\0")
    if tot_len is None:
        tot_len = 20 + len(options) + len(payload)
    hdr = struct.pack("!BBHHHBBH4s4s", (version << 4) | (ihl & 0xF), 0, tot_len & 0xFFFF,
                      ident, frag, ttl, proto, 0,
                      socket.inet_aton(src), socket.inet_aton(dst)) + options
    c = csum(hdr)
    if bad_csum:
        c ^= 0x5A5A
    return hdr[:10] + struct.pack("!H", c) + hdr[12:] + payload


def tcp(src, dst, sport, dport, *, flags=0x02, seq=1, ack=0, doff=5, payload=b""):
    opts = b"" if doff <= 5 else b"\x01" * ((doff - 5) * 4)
    hdr = struct.pack("!HHIIBBHHH", sport, dport, seq, ack, (doff & 0xF) << 4, flags,
                      65535, 0, 0) + opts
    pseudo = socket.inet_aton(src) + socket.inet_aton(dst) + struct.pack(
        "!BBH", 0, 6, len(hdr) + len(payload))
    c = csum(pseudo + hdr + payload)
    return hdr[:16] + struct.pack("!H", c) + hdr[18:] + payload


def udp(src, dst, sport, dport, payload):
    ln = 8 + len(payload)
    hdr = struct.pack("!HHHH", sport, dport, ln, 0)
    pseudo = socket.inet_aton(src) + socket.inet_aton(dst) + struct.pack("!BBH", 0, 17, ln)
    c = csum(pseudo + hdr + payload) or 0xFFFF
    return hdr[:6] + struct.pack("!H", c) + payload


def garbage_kinds(a, rnd):
    """name -> function returning (ethertype, l3 payload) for one frame."""
    src, vip, dip = a.src_ip, a.vip, a.dir_ip

    def sport():
        return rnd.randint(20000, 60000)

    def syn(dst=vip, dport=80):
        return tcp(src, dst, sport(), dport, flags=0x02, seq=rnd.getrandbits(32))

    k = {}
    # Ethernet header only (the kernel refuses frames shorter than 14 bytes).
    k["eth_only"] = lambda: (rnd.choice([ETH_P_IP, ETH_P_ARP]), b"")
    k["ipv4_truncated"] = lambda: (ETH_P_IP, ipv4(src, vip, 6, syn())[:rnd.randint(1, 19)])
    k["ipv4_ihl_lt_5"] = lambda: (ETH_P_IP, ipv4(src, vip, 6, syn(), ihl=rnd.randint(0, 4)))
    k["ipv4_ihl_beyond_frame"] = lambda: (ETH_P_IP, ipv4(src, vip, 17, b"", ihl=15)[:24])
    k["ipv4_bad_version"] = lambda: (ETH_P_IP, ipv4(src, vip, 6, syn(), version=6))
    k["ipv4_totlen_gt_frame"] = lambda: (
        ETH_P_IP, ipv4(src, vip, 6, syn(), tot_len=rnd.randint(100, 65535)))
    k["ipv4_totlen_lt_header"] = lambda: (
        ETH_P_IP, ipv4(src, vip, 6, syn(), tot_len=rnd.randint(0, 19)))
    # Valid IP options (NOP NOP NOP EOL / router alert) on a stray ACK to VIP:80.
    k["ipv4_options"] = lambda: (ETH_P_IP, ipv4(
        src, vip, 6, tcp(src, vip, sport(), 80, flags=0x10, seq=rnd.getrandbits(32),
                         ack=rnd.getrandbits(32)),
        ihl=6, options=rnd.choice([b"\x01\x01\x01\x00", b"\x94\x04\x00\x00"])))
    k["ipv4_frag_first"] = lambda: (ETH_P_IP, ipv4(     # MF set, offset 0
        src, vip, 17, udp(src, vip, sport(), 9000, b"frag" * 8), frag=0x2000,
        ident=rnd.getrandbits(16)))
    k["ipv4_frag_later"] = lambda: (ETH_P_IP, ipv4(     # offset != 0 (MF set or not)
        src, vip, 17, b"x" * 32, frag=rnd.choice([0x0000, 0x2000]) | rnd.randint(1, 0x1FFF),
        ident=rnd.getrandbits(16)))
    k["ipv4_bad_checksum"] = lambda: (ETH_P_IP, ipv4(src, vip, 6, syn(), bad_csum=True))
    k["ipv4_to_director_bad_checksum"] = lambda: (
        ETH_P_IP, ipv4(src, dip, 1, b"\x08\x00\xf7\xff\x00\x00\x00\x00", bad_csum=True))
    k["tcp_doff_lt_5"] = lambda: (ETH_P_IP, ipv4(
        src, vip, 6, tcp(src, vip, sport(), 80, doff=rnd.randint(0, 4))))
    k["tcp_doff_beyond_segment"] = lambda: (ETH_P_IP, ipv4(
        src, vip, 6, tcp(src, vip, sport(), 80, doff=15)[:24]))
    k["tcp_truncated"] = lambda: (ETH_P_IP, ipv4(src, vip, 6, syn()[:rnd.randint(0, 19)]))
    k["udp_truncated"] = lambda: (ETH_P_IP, ipv4(
        src, vip, 17, udp(src, vip, sport(), 9000, b"")[:rnd.randint(0, 7)]))
    k["udp_len_gt_ip"] = lambda: (ETH_P_IP, ipv4(
        src, vip, 17, struct.pack("!HHHH", sport(), 9000, 1000, 0) + b"abcd"))
    k["icmp_truncated"] = lambda: (ETH_P_IP, ipv4(src, dip, 1, b"\x08\x00\xf7"))

    def arp(htype=1, ptype=0x0800, hlen=6, plen=4, op=1, trunc=None):
        p = struct.pack("!HHBBH6s4s6s4s", htype, ptype, hlen, plen, op, a.src_mac,
                        socket.inet_aton(src), b"\0" * 6,
                        socket.inet_aton(rnd.choice([vip, dip])))
        return p if trunc is None else p[:trunc]

    k["arp_bogus_htype"] = lambda: (ETH_P_ARP, arp(htype=rnd.choice([0, 6, 0xFFFF])))
    k["arp_bogus_lengths"] = lambda: (ETH_P_ARP, arp(hlen=rnd.choice([0, 8, 255]),
                                                     plen=rnd.choice([0, 16, 255])))
    k["arp_truncated"] = lambda: (ETH_P_ARP, arp(trunc=rnd.randint(0, 27)))
    k["random_ipv4"] = lambda: (ETH_P_IP, rnd.randbytes(rnd.randint(1, 200)))
    k["random_ethertype"] = lambda: (rnd.getrandbits(16), rnd.randbytes(rnd.randint(0, 200)))
    return k


def cmd_garbage(a):
    rnd = random.Random(a.seed)
    dst = mac_bytes(a.dst_mac)
    try:
        with open(f"/sys/class/net/{a.iface}/address") as f:
            a.src_mac = mac_bytes(f.read().strip())
    except OSError as e:
        raise SystemExit(f"client.py: interface {a.iface}: {e}")
    kinds = garbage_kinds(a, rnd)
    names = sorted(kinds)
    if a.kinds:
        unknown = set(a.kinds.split(",")) - set(names)
        if unknown:
            raise SystemExit(f"client.py: unknown kinds {sorted(unknown)}; known: {names}")
        names = sorted(set(a.kinds.split(",")))
    s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
    s.bind((a.iface, 0))
    by_kind, errs, sent = {}, {}, 0
    for i in range(a.count):
        name = names[i % len(names)]  # round robin: every kind gets its share
        etype, l3 = kinds[name]()
        frame = dst + a.src_mac + struct.pack("!H", etype & 0xFFFF) + l3
        try:
            s.send(frame)
        except OSError as e:
            errs[f"{name}: {e.strerror}"] = errs.get(f"{name}: {e.strerror}", 0) + 1
            continue
        sent += 1
        by_kind[name] = by_kind.get(name, 0) + 1
        if a.pps and i % 100 == 99:
            time.sleep(100 / a.pps)
    s.close()
    out({"sent": sent, "by_kind": by_kind, "send_errors": errs})


def raw_socket(iface):
    """A raw AF_PACKET socket on `iface` and the interface's own MAC."""
    try:
        with open(f"/sys/class/net/{iface}/address") as f:
            own = mac_bytes(f.read().strip())
    except OSError as e:
        raise SystemExit(f"client.py: interface {iface}: {e}")
    s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
    s.bind((iface, 0))
    return s, own


def send_frames(s, frames, pps):
    """Sends every frame of the iterable, at most `pps` a second (0: as
    fast as the socket takes them); returns (sent, errors)."""
    sent = errors = 0
    start = time.monotonic()
    for frame in frames:
        try:
            s.send(frame)
            sent += 1
        except OSError:
            errors += 1
        if pps and sent % 100 == 0:
            ahead = sent / pps - (time.monotonic() - start)
            if ahead > 0:
                time.sleep(ahead)
    return sent, errors


def arp_packet(op, sender_mac, sender_ip, target_mac, target_ip):
    return struct.pack("!HHBBH6s4s6s4s", 1, ETH_P_IP, 6, 4, op, sender_mac,
                       socket.inet_aton(sender_ip), target_mac, socket.inet_aton(target_ip))


def random_mac(rnd):
    # Locally administered, unicast.
    return bytes([0x02 | (rnd.getrandbits(8) & 0xFC)]) + rnd.randbytes(5)


def cmd_arp_storm(a):
    rnd = random.Random(a.seed)
    s, _ = raw_socket(a.iface)

    def frames():
        for _ in range(a.count):
            mac = random_mac(rnd)
            sender = socket.inet_ntoa(struct.pack("!I", rnd.getrandbits(32)))
            yield (b"\xff" * 6 + mac + struct.pack("!H", ETH_P_ARP)
                   + arp_packet(1, mac, sender, b"\0" * 6, a.target))

    sent, errors = send_frames(s, frames(), a.pps)
    s.close()
    out({"sent": sent, "send_errors": errors})


def cmd_arp_spoof(a):
    s, own = raw_socket(a.iface)
    claimed = mac_bytes(a.mac)
    dst = mac_bytes(a.dst_mac)
    frame = (dst + own + struct.pack("!H", ETH_P_ARP)
             + arp_packet(2, claimed, a.claim, dst, a.target))
    sent, _ = send_frames(s, [frame] * a.count, 0)
    s.close()
    out({"sent": sent})


def cmd_udp_flood(a):
    rnd = random.Random(a.seed)
    s, own = raw_socket(a.iface)
    dst = mac_bytes(a.dst_mac)

    def frames():
        for _ in range(a.count):
            src = socket.inet_ntoa(struct.pack("!I", 0x0B000000 | rnd.getrandbits(24)))
            payload = udp(src, a.vip, rnd.randint(1024, 65535), a.port, b"flood")
            yield dst + own + struct.pack("!H", ETH_P_IP) + ipv4(src, a.vip, 17, payload)

    sent, errors = send_frames(s, frames(), a.pps)
    s.close()
    out({"sent": sent, "send_errors": errors})


def main():
    ap = argparse.ArgumentParser(description="rvs lab client",
                                 formatter_class=argparse.RawDescriptionHelpFormatter,
                                 epilog=__doc__)
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("http")
    p.add_argument("--url", required=True)
    p.add_argument("--count", type=int, default=1)
    p.add_argument("--concurrency", type=int, default=1)
    p.add_argument("--timeout", type=float, default=5.0)
    p.add_argument("--source", help="local address to connect from (a second client)")
    p = sub.add_parser("download")
    p.add_argument("--url", required=True)
    p.add_argument("--timeout", type=float, default=5.0)
    p.add_argument("--rate", type=float, default=0,
                   help="read at most this many bytes a second (0: as fast as it comes)")
    p = sub.add_parser("udp")
    p.add_argument("--addr", required=True, help="IP:PORT")
    p.add_argument("--count", type=int, default=1)
    p.add_argument("--timeout", type=float, default=1.0)
    p.add_argument("--peer", action="store_true",
                   help="ask the real to append the sender and destination it saw")
    p.add_argument("--size", type=int, default=0, help="pad each payload to this many bytes")
    p = sub.add_parser("hold")
    p.add_argument("--addr", required=True, help="IP:PORT of an HTTP service")
    p.add_argument("--count", type=int, required=True, help="connections to open and hold")
    p.add_argument("--extra", type=int, default=0, help="further connection attempts")
    p.add_argument("--connect-timeout", type=float, default=2.0)
    p.add_argument("--pause", type=float, default=0.0, help="seconds to hold before requests")
    p.add_argument("--timeout", type=float, default=10.0, help="per request")
    p = sub.add_parser("pmtu")
    p.add_argument("--addr", required=True, help="IP:PORT (UDP)")
    p.add_argument("--size", type=int, default=1472, help="UDP payload bytes")
    p.add_argument("--no-df", action="store_true",
                   help="DF off (IP_PMTUDISC_DONT): just catch whatever ICMP error comes")
    p.add_argument("--timeout", type=float, default=3.0)
    p = sub.add_parser("garbage")
    p.add_argument("--iface", required=True)
    p.add_argument("--dst-mac", required=True)
    p.add_argument("--count", type=int, default=1000)
    p.add_argument("--vip", default="10.99.1.100")
    p.add_argument("--dir-ip", default="10.99.1.1", help="director's port address")
    p.add_argument("--src-ip", default="10.99.1.2", help="source address of IP frames")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--kinds", help="comma-separated subset of frame kinds (default: all)")
    p.add_argument("--pps", type=float, default=20000,
                   help="rate limit, frames per second (0 = as fast as possible)")
    p = sub.add_parser("arp-storm")
    p.add_argument("--iface", required=True)
    p.add_argument("--target", required=True, help="the address every request asks for")
    p.add_argument("--count", type=int, default=10000)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--pps", type=float, default=0, help="rate limit (0 = as fast as possible)")
    p = sub.add_parser("arp-spoof")
    p.add_argument("--iface", required=True)
    p.add_argument("--dst-mac", required=True)
    p.add_argument("--claim", required=True, help="the address claimed")
    p.add_argument("--mac", required=True, help="the MAC claimed for it")
    p.add_argument("--target", required=True, help="the address the reply answers")
    p.add_argument("--count", type=int, default=1)
    p = sub.add_parser("udp-flood")
    p.add_argument("--iface", required=True)
    p.add_argument("--dst-mac", required=True)
    p.add_argument("--vip", default="10.99.1.100")
    p.add_argument("--port", type=int, default=9000)
    p.add_argument("--count", type=int, default=100000)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--pps", type=float, default=0, help="rate limit (0 = as fast as possible)")
    a = ap.parse_args()
    rc = {"http": cmd_http, "download": cmd_download, "udp": cmd_udp, "hold": cmd_hold,
          "pmtu": cmd_pmtu, "garbage": cmd_garbage, "arp-storm": cmd_arp_storm,
          "arp-spoof": cmd_arp_spoof, "udp-flood": cmd_udp_flood}[a.cmd](a)
    return rc or 0


if __name__ == "__main__":
    sys.exit(main())
