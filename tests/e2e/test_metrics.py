"""Prometheus metrics end to end in the NAT lab: rvsd's `GET /metrics`
scraped from the director's namespace. After traffic the per-real counters
match rvsd's own stats line, drops by reason match SIGUSR1's, a weight edit
shows at the next scrape; promtool finds nothing to lint; the node_exporter
IPVS series equal rvs's; anything but a GET /metrics gets a proper HTTP
error, and hostile scrapers (a hundred at once, one that never reads, one
that never asks) do not stop rvsd from forwarding or from answering others.
"""
import json
import pathlib
import re
import shutil
import socket
import subprocess
import threading
import time

import pytest

from conftest import NS_DIR, R1, R2, VIP, real, render_config, service

# The real side's own port address, as a FullNAT local address.
LIP = "10.99.2.1"

PORT = 9310
URL = f"http://127.0.0.1:{PORT}/metrics"
SAMPLE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)$')
LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')


def config(ipvs_compat=False):
    extra = f"metrics:\n  listen: 127.0.0.1:{PORT}\n"
    if ipvs_compat:
        extra += "  ipvs_compat: true\n"
    return render_config([service(80, "tcp", "rr")], extra=extra)


def in_dir(*cmd, timeout=30, input=None):
    return subprocess.run(["ip", "netns", "exec", NS_DIR, *map(str, cmd)], input=input,
                          capture_output=True, text=True, timeout=timeout)


def scrape(accept=None):
    cmd = ["curl", "-sS", "--max-time", "10", "-D", "-"]
    if accept:
        cmd += ["-H", f"Accept: {accept}"]
    r = in_dir(*cmd, URL)
    assert r.returncode == 0, r.stderr
    # Text mode: the head's CRLFs read as newlines.
    head, _, body = r.stdout.partition("\n\n")
    assert head.startswith("HTTP/1.1 200"), head
    return head, body


def samples(text):
    """[(name, {label: value}, value)] of an exposition."""
    out = []
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        m = SAMPLE.match(line)
        assert m, f"not a sample line: {line!r}"
        labels = dict(LABEL.findall(m.group(2) or ""))
        out.append((m.group(1), labels, float(m.group(3))))
    return out


def pick(all_samples, name, **labels):
    return [(l, v) for n, l, v in all_samples
            if n == name and all(l.get(k) == str(x) for k, x in labels.items())]


def test_counters_match_the_listing_and_the_stats_line(lab, start_rvsd):
    d = start_rvsd(config())
    assert f"rvsd: metrics: http://127.0.0.1:{PORT}/metrics" in d.log(), d.log_tail()
    res = lab.http(200)
    assert res["ok"] == 200, res
    lab.client("garbage", "--iface", "c0", "--dst-mac", lab.dir_mac, "--count", 200)
    time.sleep(0.3)
    head, text = scrape()
    assert "Content-Type: text/plain; version=0.0.4" in head, head
    stats = d.stats()
    got = samples(text)

    conns = pick(got, "rvs_real_connections_total", vip=VIP, port=80, protocol="tcp")
    assert sum(v for _, v in conns) == 200, conns
    for real in (R1, R2):
        (labels, value), = [(l, v) for l, v in conns if l["real"] == real]
        assert labels["real_port"] == "80" and labels["forward"] == "nat", labels
        assert value == stats["reals"][f"{real}:80"]["conns"], (value, stats["reals"])
    (_, service_conns), = pick(got, "rvs_service_connections_total", vip=VIP, port=80)
    assert service_conns == 200
    for reason, count in stats["drops"].items():
        scraped = sum(v for _, v in pick(got, "rvs_drops_total", reason=reason))
        assert scraped == count, (reason, scraped, count)
    assert sum(v for _, v in pick(got, "rvs_worker_packets_total", direction="rx")) \
        == stats["rx_packets"]
    (_, reals), = pick(got, "rvs_service_reals", vip=VIP)
    assert reals == 2
    assert pick(got, "rvs_build_info")[0][0]["version"]
    assert [v for _, v in pick(got, "rvs_real_up")] == [1, 1]

    # A weight edit shows at the next scrape.
    d.rvsadm("-e", "-t", f"{VIP}:80", "-r", f"{R1}:80", "-m", "-w", "7")
    time.sleep(0.1)
    _, text = scrape()
    (_, weight), = pick(samples(text), "rvs_real_weight", real=R1)
    assert weight == 7

    # promtool's linter finds nothing, in either format.
    if shutil.which("promtool") is None:
        pytest.fail("promtool not installed (lab/install.sh installs Debian's prometheus)")
    lint = subprocess.run(["promtool", "check", "metrics"], input=text,
                          capture_output=True, text=True, timeout=30)
    assert lint.returncode == 0 and not lint.stdout.strip(), lint.stdout + lint.stderr
    head, openmetrics = scrape("application/openmetrics-text; version=1.0.0")
    assert "application/openmetrics-text" in head and openmetrics.endswith("# EOF\n"), head


def test_ipvs_compat_series_equal_rvs_series(lab, start_rvsd):
    d = start_rvsd(config(ipvs_compat=True))
    res = lab.http(40)
    assert res["ok"] == 40, res
    d.rvsadm("-e", "-t", f"{VIP}:80", "-r", f"{R2}:80", "-m", "-w", "3")
    time.sleep(0.2)
    got = samples(scrape()[1])
    (_, total), = pick(got, "node_ipvs_connections_total")
    assert total == sum(v for _, v in pick(got, "rvs_real_connections_total")) == 40
    for name, ours in (("node_ipvs_incoming_packets_total", "in"),
                       ("node_ipvs_outgoing_bytes_total", "out")):
        (_, value), = pick(got, name)
        field = "rvs_real_packets_total" if "packets" in name else "rvs_real_bytes_total"
        assert value == sum(v for _, v in pick(got, field, direction=ours)), name
    weights = pick(got, "node_ipvs_backend_weight")
    assert {l["remote_address"]: v for l, v in weights} == {R1: 1, R2: 3}, weights
    for labels, _ in weights:
        assert set(labels) == {"local_address", "local_port", "local_mark", "proto",
                               "remote_address", "remote_port"}, labels
        assert (labels["local_address"], labels["local_port"], labels["proto"]) == \
            (VIP, "80", "TCP"), labels
    for labels, value in pick(got, "node_ipvs_backend_connections_inactive"):
        (_, ours), = pick(got, "rvs_real_inactive_connections", real=labels["remote_address"])
        assert value == ours


def test_fullnat_local_ports_and_control_socket_counters(lab, start_rvsd):
    """A FullNAT service beside the NAT one (its local address is the real
    side's own port address, so the NAT lab's reals answer it): every
    connection holds a local port of one worker, in use until it expires;
    the control socket counts requests and the ones it refused."""
    fullnat = service(8080, reals=[real(R1, port=80, forward="fullnat"),
                                   real(R2, port=80, forward="fullnat")])
    fullnat["local_addresses"] = [LIP]
    d = start_rvsd(render_config([service(80, "tcp", "rr"), fullnat],
                                 extra=f"metrics:\n  listen: 127.0.0.1:{PORT}\n"))
    got = samples(scrape()[1])
    (labels, free), = pick(got, "rvs_local_ports_free")
    assert labels == {"local_address": LIP, "worker": "0"}, labels
    assert free == 65535 - 1024 + 1, "fullnat.port_min..port_max, all free"
    res = lab.http(30, url=f"http://{VIP}:8080/")
    assert res["ok"] == 30, res
    (_, before_requests), = pick(got, "rvs_control_requests_total")
    (_, before_errors), = pick(got, "rvs_control_errors_total")
    d.rvsadm("-L", "-n")
    refused = d.rvsadm("-e", "-t", f"{VIP}:9999", "-r", f"{R1}:80", "-w", "2", check=False)
    assert refused.returncode != 0, "no such service"
    got = samples(scrape()[1])
    # Closed connections wait in TIME_WAIT (120 s) with their ports.
    (_, in_use), = pick(got, "rvs_local_ports_in_use", local_address=LIP)
    (_, free), = pick(got, "rvs_local_ports_free", local_address=LIP)
    assert in_use == 30 and free == 65535 - 1024 + 1 - 30, (in_use, free)
    (_, requests), = pick(got, "rvs_control_requests_total")
    (_, errors), = pick(got, "rvs_control_errors_total")
    assert requests >= before_requests + 2, (before_requests, requests)
    assert errors == before_errors + 1, (before_errors, errors)


def raw(request, timeout=5):
    """Sends `request` to the endpoint from the director namespace; returns
    the status line."""
    script = (
        "import socket,sys\n"
        f"s=socket.create_connection(('127.0.0.1',{PORT}),timeout={timeout})\n"
        "s.sendall(sys.stdin.buffer.read())\n"
        "print(s.recv(200).split(b'\\r\\n')[0].decode())\n")
    r = in_dir("python3", "-c", script, input=request, timeout=timeout + 10)
    return r.stdout.strip()


def test_hostile_scrapers_get_http_errors_and_rvsd_keeps_forwarding(lab, start_rvsd):
    d = start_rvsd(config())
    assert raw("POST /metrics HTTP/1.1\r\nHost: x\r\n\r\n").startswith("HTTP/1.1 405"), d.log()
    assert raw("GET /other HTTP/1.1\r\nHost: x\r\n\r\n").startswith("HTTP/1.1 404")
    assert raw("\x16\x03\x01 not http at all\r\n\r\n").startswith("HTTP/1.1 400")
    assert raw("GET /metrics HTTP/1.1\r\n" + "X: " + "a" * 9000 + "\r\n\r\n") \
        .startswith("HTTP/1.1 431")

    # One that never sends its request and one that never reads its answer,
    # held open meanwhile, from the director's namespace.
    holder = subprocess.Popen(
        ["ip", "netns", "exec", NS_DIR, "python3", "-c",
         "import socket,time\n"
         f"a=socket.create_connection(('127.0.0.1',{PORT}))\n"
         f"b=socket.create_connection(('127.0.0.1',{PORT}))\n"
         "b.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1024)\n"
         "b.sendall(b'GET /metrics HTTP/1.1\\r\\nHost: x\\r\\n\\r\\n')\n"
         "time.sleep(20)\n"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        # A hundred scrapers at once, while 1,000 live edits run and clients
        # go through the VIP.
        codes = []
        lock = threading.Lock()

        def scraper():
            r = in_dir("curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "--max-time",
                       "20", URL, timeout=40)
            with lock:
                codes.append(r.stdout.strip())

        def editor():
            for i in range(1000):
                d.rvsadm("-e", "-t", f"{VIP}:80", "-r", f"{R2}:80", "-m", "-w", str(1 + i % 5))

        traffic = {}
        threads = [threading.Thread(target=scraper) for _ in range(100)]
        threads.append(threading.Thread(target=editor))
        threads.append(threading.Thread(target=lambda: traffic.update(lab.http(300))))
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
        assert traffic.get("ok") == 300, traffic
        assert len(codes) == 100 and set(codes) <= {"200", "503"}, codes
        assert codes.count("200") >= 16, codes
        # Still answering, with every scraper gone or held.
        scrape()
    finally:
        holder.kill()
        holder.wait(10)
    rss_kb = int(re.search(r"VmRSS:\s+(\d+)", open(f"/proc/{d.proc.pid}/status").read())
                 .group(1))
    assert rss_kb < 512 * 1024, f"rvsd uses {rss_kb} kB"


ROOT_CONF = pathlib.Path(__file__).resolve().parents[2] / "conf"
PROM_PORT = 9390
COMPARISON = re.compile(r"\s*(==|!=|>=|<=|>|<)\s*[0-9.]+\s*$")


def test_rules_pass_promtool():
    if shutil.which("promtool") is None:
        pytest.fail("promtool not installed (lab/install.sh installs Debian's prometheus)")
    rules = ROOT_CONF / "prometheus"
    for args in (["check", "rules", "rvs-rules.yml"], ["test", "rules", "rvs-rules.test.yml"]):
        r = subprocess.run(["promtool", *args], cwd=rules, capture_output=True, text=True,
                           timeout=60)
        assert r.returncode == 0 and "SUCCESS" in r.stdout, r.stdout + r.stderr


def expressions():
    """Every PromQL expression of the dashboard and of the rules, as
    (where, expr); an alert's without its threshold (what it compares)."""
    import yaml_free_rules
    dashboard = json.loads((ROOT_CONF / "grafana" / "rvs.json").read_text())
    out = [(f"panel {p['title']!r}", t["expr"]) for p in dashboard["panels"]
           for t in p.get("targets", [])]
    for kind, name, expr in yaml_free_rules.rules(ROOT_CONF / "prometheus" / "rvs-rules.yml"):
        if kind == "alert":
            expr = COMPARISON.sub("", expr)
        out.append((f"{kind} {name}", expr))
    return out


def test_every_panel_and_rule_answers_from_a_real_prometheus(lab, start_rvsd):
    from conftest import RUN
    from test_control import rvsctl
    binary = shutil.which("prometheus")
    if binary is None:
        pytest.fail("prometheus not installed (lab/install.sh installs Debian's prometheus)")
    s = service(80, "tcp", "rr")
    s["checks"] = [{"type": "tcp_check", "delay_loop": 1, "warmup": 0}]
    # A FullNAT service, for the local-port panels and rules.
    fullnat = service(8080, reals=[real(R1, port=80, forward="fullnat")])
    fullnat["local_addresses"] = [LIP]
    extra = f"metrics:\n  listen: 127.0.0.1:{PORT}\n"
    d = start_rvsd(render_config([s, fullnat], extra=extra,
                                 kernel_interfaces=("kclient", "kreal")))
    rvsctl(d, "reload")
    RUN.mkdir(parents=True, exist_ok=True)
    data = RUN / "prometheus-data"
    shutil.rmtree(data, ignore_errors=True)
    conf = RUN / "prometheus.yml"
    conf.write_text(
        "global: { scrape_interval: 1s, evaluation_interval: 1s }\n"
        f"rule_files: [{ROOT_CONF / 'prometheus' / 'rvs-rules.yml'}]\n"
        "scrape_configs:\n"
        f"  - {{ job_name: rvs, static_configs: [ {{ targets: ['127.0.0.1:{PORT}'] }} ] }}\n")
    prom = subprocess.Popen(
        ["ip", "netns", "exec", NS_DIR, binary, f"--config.file={conf}",
         f"--storage.tsdb.path={data}", f"--web.listen-address=127.0.0.1:{PROM_PORT}"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        traffic = {}
        runner = threading.Thread(target=lambda: traffic.update(lab.http(600, concurrency=2)))
        runner.start()

        def query(expr):
            r = in_dir("curl", "-sS", "--max-time", "5", "-G",
                       f"http://127.0.0.1:{PROM_PORT}/api/v1/query", "--data-urlencode",
                       f"query={expr}")
            try:
                return json.loads(r.stdout)
            except ValueError:
                return {"status": "down", "error": r.stdout + r.stderr}

        deadline = time.monotonic() + 60
        while query("up")["status"] != "success" or \
                not query('up{job="rvs"} == 1')["data"]["result"]:
            assert time.monotonic() < deadline, "prometheus does not scrape rvsd"
            time.sleep(0.5)
        time.sleep(8)  # rates over a few samples, rules evaluated
        runner.join(120)
        assert traffic.get("ok") == 600, traffic
        empty = []
        for where, expr in expressions():
            concrete = expr.replace("$__rate_interval", "1m").replace("$instance", ".+")
            answer = query(concrete)
            assert answer["status"] == "success", (where, concrete, answer)
            if not answer["data"]["result"]:
                empty.append((where, concrete))
        assert not empty, f"no data for: {empty}"
    finally:
        prom.terminate()
        try:
            prom.wait(10)
        except subprocess.TimeoutExpired:
            prom.kill()
        shutil.rmtree(data, ignore_errors=True)


def test_rvsctl_top_on_a_terminal_and_as_text(lab, start_rvsd):
    from test_control import RVSCTL
    if shutil.which("tmux") is None:
        pytest.fail("tmux not installed (lab/install.sh installs it)")
    d = start_rvsd(config())
    traffic = {}
    runner = threading.Thread(target=lambda: traffic.update(lab.http(3000, concurrency=2)))
    runner.start()
    session = f"rvstop{d.proc.pid}"
    subprocess.run(["tmux", "new-session", "-d", "-s", session, "-x", "150", "-y", "40",
                    f"{RVSCTL} --socket {d.socket} top"], check=True, timeout=10)
    try:
        screen = ""
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            time.sleep(0.5)
            screen = subprocess.run(["tmux", "capture-pane", "-p", "-t", session],
                                    capture_output=True, text=True).stdout
            line = next((l for l in screen.splitlines() if f"tcp {VIP}:80" in l), "")
            # The service's connection rate, after traffic: a number above 0.
            rate = re.search(rf"tcp {re.escape(VIP)}:80 rr\s+(\d[\d.]*[KMG]?)", line)
            if rate and rate.group(1) != "0" and f"-> {R1}:80" in screen:
                break
        else:
            pytest.fail(f"no service rate on the screen:\n{screen}")
        assert "workers" in screen and "top drop reasons" in screen, screen
        subprocess.run(["tmux", "send-keys", "-t", session, "q"], check=True, timeout=10)
        deadline = time.monotonic() + 5
        while subprocess.run(["tmux", "has-session", "-t", session],
                             capture_output=True).returncode == 0:
            assert time.monotonic() < deadline, "rvsctl top did not exit on q"
            time.sleep(0.1)
    finally:
        subprocess.run(["tmux", "kill-session", "-t", session], capture_output=True)
    runner.join(120)
    assert traffic.get("ok") == 3000, traffic

    # Not a terminal: plain text, a frame a second.
    r = subprocess.run([str(RVSCTL), "--socket", str(d.socket), "top", "--iterations", "2"],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stderr
    assert r.stdout.count("SERVICE / REAL") == 2 and f"-> {R2}:80" in r.stdout, r.stdout
    assert "\x1b[" not in r.stdout, "escape codes in plain text"
