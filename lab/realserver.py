#!/usr/bin/env python3
"""Real server of the rvs lab (run inside a real's namespace by lab/lab.sh).

  * HTTP on TCP ports 80 and 8080 (threaded, one request per connection):
      GET /       -> 200, body "real=<name> port=<local port> peer=<ip>:<port>
                     local=<ip>\n" (peer: the connection's remote end as
                     the real sees it, e.g. a FullNAT local address; local:
                     the address it arrived on, e.g. the VIP in DR/TUN)
      GET /blob   -> 200, streams the blob file (Content-Length set)
      GET /health -> 200 "ok\n"
      GET /drip?chunks=N&size=B&interval=S -> 200, N chunks of B bytes
                     (Content-Length N*B), one every S seconds: a long,
                     slow stream (defaults 100, 1000, 0.1)
  * UDP echo on port 9000: answers "<name>:" + datagram; a datagram that
    starts with "?peer" gets " peer=<ip>:<port> local=<ip>" appended (the
    sender as the real sees it, e.g. a FullNAT local address and port, and
    the datagram's destination). Replies leave from that destination address
    (IP_PKTINFO), so a DR/TUN real answers from the VIP.

The local port in the answer is the port the connection actually arrived on,
so a NAT service VIP:80 -> real:8080 can be checked from the client side.
Writes --ready-file once every socket is bound.
"""
import argparse
import http.server
import os
import signal
import socket
import struct
import sys
import threading
import time
import urllib.parse


def log(msg):
    sys.stderr.write(msg + "\n")
    sys.stderr.flush()


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.0"  # one request per connection, then close
    server_version = "rvs-lab-real/1"

    def _send(self, code, body, ctype="text/plain"):
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("X-Real", self.server.real_name)
        self.send_header("Connection", "close")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def do_GET(self):
        local, port = self.connection.getsockname()[:2]
        peer = "%s:%d" % self.client_address[:2]
        path = self.path.split("?", 1)[0]
        if path == "/":
            self._send(200, f"real={self.server.real_name} port={port} peer={peer} "
                            f"local={local}\n".encode())
        elif path == "/health":
            self._send(200, b"ok\n")
        elif path == "/drip":
            self._drip()
        elif path == "/blob":
            blob = self.server.blob
            try:
                f = open(blob, "rb")
            except OSError as e:
                self._send(500, f"no blob: {e}\n".encode())
                return
            with f:
                size = os.fstat(f.fileno()).st_size
                self.send_response(200)
                self.send_header("Content-Type", "application/octet-stream")
                self.send_header("Content-Length", str(size))
                self.send_header("X-Real", self.server.real_name)
                self.send_header("Connection", "close")
                self.end_headers()
                while True:
                    chunk = f.read(65536)
                    if not chunk:
                        break
                    self.wfile.write(chunk)
        else:
            self._send(404, b"not found\n")

    do_HEAD = do_GET

    def _drip(self):
        query = urllib.parse.parse_qs(self.path.partition("?")[2])
        try:
            chunks = int(query.get("chunks", ["100"])[0])
            size = int(query.get("size", ["1000"])[0])
            interval = float(query.get("interval", ["0.1"])[0])
        except ValueError as e:
            self._send(400, f"bad drip parameters: {e}\n".encode())
            return
        self.send_response(200)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(chunks * size))
        self.send_header("X-Real", self.server.real_name)
        self.send_header("Connection", "close")
        self.end_headers()
        chunk = b"d" * size
        for i in range(chunks):
            if i:
                time.sleep(interval)
            self.wfile.write(chunk)
            self.wfile.flush()

    def log_message(self, fmt, *args):
        log("%s http %s:%d %s" % (self.server.real_name, self.client_address[0],
                                  self.client_address[1], fmt % args))


class HTTPServer(http.server.ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128


IP_PKTINFO = getattr(socket, "IP_PKTINFO", 8)


class UDPEcho:
    """UDP echo that answers from the address each datagram was sent to
    (IP_PKTINFO), as a DR/TUN real must: a socket bound to 0.0.0.0 would
    otherwise answer a datagram for the VIP from eth0's address."""

    def __init__(self, addr, real_name, verbose):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.setsockopt(socket.SOL_IP, IP_PKTINFO, 1)
        self.sock.bind(addr)
        self.real_name, self.verbose = real_name, verbose

    def serve_forever(self):
        while True:
            try:
                data, anc, _flags, peer = self.sock.recvmsg(65535, 256)
            except OSError as e:
                log(f"{self.real_name} udp recvmsg: {e}")
                continue
            local = None
            for level, ctype, cdata in anc:
                if level == socket.SOL_IP and ctype == IP_PKTINFO and len(cdata) >= 12:
                    # struct in_pktinfo { int ifindex; in_addr spec_dst; in_addr addr; }
                    local = cdata[8:12]  # the datagram's destination address
            reply = self.real_name.encode() + b":" + data
            if data.startswith(b"?peer"):
                reply += (" peer=%s:%d" % peer[:2]).encode()
                if local is not None:
                    reply += b" local=" + socket.inet_ntoa(local).encode()
            try:
                if local is not None:
                    info = struct.pack("=I4s4s", 0, local, b"\0" * 4)
                    self.sock.sendmsg([reply], [(socket.SOL_IP, IP_PKTINFO, info)], 0, peer)
                else:
                    self.sock.sendto(reply, peer)
            except OSError as e:
                log(f"{self.real_name} udp send to {peer[0]}:{peer[1]}: {e}")
                continue
            if self.verbose:
                log(f"{self.real_name} udp {peer[0]}:{peer[1]} -> "
                    f"{socket.inet_ntoa(local) if local else '?'} {len(data)} bytes")


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--name", required=True, help="real's name, e.g. r1")
    ap.add_argument("--bind", default="0.0.0.0")
    ap.add_argument("--http-ports", default="80,8080")
    ap.add_argument("--udp-port", type=int, default=9000)
    ap.add_argument("--blob", required=True, help="file served at /blob")
    ap.add_argument("--ready-file", help="written once all sockets are bound")
    ap.add_argument("--quiet-udp", action="store_true", help="do not log datagrams")
    a = ap.parse_args()

    servers = []
    for p in a.http_ports.split(","):
        s = HTTPServer((a.bind, int(p)), Handler)
        s.real_name, s.blob = a.name, a.blob
        servers.append(s)
    servers.append(UDPEcho((a.bind, a.udp_port), a.name, not a.quiet_udp))

    for s in servers:
        threading.Thread(target=s.serve_forever, daemon=True).start()

    log(f"{a.name}: serving http on {a.http_ports}, udp echo on {a.udp_port} (pid {os.getpid()})")
    if a.ready_file:
        tmp = a.ready_file + ".tmp"
        with open(tmp, "w") as f:
            f.write(f"{os.getpid()}\n")
        os.replace(tmp, a.ready_file)

    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    while not stop.wait(3600):
        pass
    log(f"{a.name}: stopping")


if __name__ == "__main__":
    main()
