#!/usr/bin/env python3
"""bench/report.py RAW.jsonl PREFIX [BEFORE.jsonl] — turns bench/run.sh's JSON lines into
PREFIX.csv (one row per figure), PREFIX.md (the table, the machine, the date,
the command), PREFIX.png (a chart of every figure), PREFIX-flows.png (Mpps
against the number of flows, per mode; with BEFORE.jsonl, an earlier run
drawn dashed beside) and PREFIX-readme.md (the summary
table of the README: modes as columns, targets beside), and prints the table.

Targets (one worker, 64-byte frames; issue 13): established >= 8 Mpps in
every mode at 1M flows and >= 0.8 of the mode's 1k-flow rate; at 1k flows
DR/TUN >= 14, NAT/FullNAT >= 12 Mpps; new connections >= 3 M/s; <= 400
instructions per established packet, <= 900 per new connection; <= 128 bytes
per tracked connection.
"""
import csv
import json
import sys

TARGET_EST_MPPS = 8.0
TARGET_NEW_MPPS = 3.0
TARGET_BYTES_PER_CONN = 128.0

FIELDS = ["part", "what", "mode", "traffic", "flows", "value", "unit",
          "ceiling", "ceiling_by", "ratio", "target", "met", "note"]


def flows_label(flows):
    flows = int(flows)
    if flows == 0:
        return "-"
    if flows >= 1_000_000 and flows % 1_000_000 == 0:
        return f"{flows // 1_000_000}M"
    if flows >= 1000 and flows % 1000 == 0:
        return f"{flows // 1000}k"
    return str(flows)


def rows_of(records):
    rows = []
    tput = [r for r in records if r.get("part") == "throughput"]
    ceilings = {}
    for r in tput:
        if r["engine"] == "iofwd":
            ceilings[("ring-gen", r["traffic"], r["flows"])] = (r["mpps"], "io-forward, same generator")
        elif r["engine"] == "testpmd":
            ceilings[("pcap", r["traffic"], r["flows"])] = (r["mpps"], "dpdk-testpmd io")
    for r in tput:
        if r["engine"] != "rvs":
            continue
        ceiling, by = ceilings.get((r["source"], r["traffic"], r["flows"]), (None, ""))
        target = TARGET_NEW_MPPS if r["traffic"] == "new" else TARGET_EST_MPPS
        notes = []
        if r.get("drops"):
            notes.append("drops " + ", ".join(f"{k} {v}" for k, v in r["drops"].items()))
        if r["traffic"] == "new":
            notes.append(f"{r['conns_per_s'] / 1e6:.2f} M conns/s")
        rows.append({
            "part": "a", "what": f"throughput ({r['source']} -> net_null)",
            "mode": r["mode"], "traffic": r["traffic"], "flows": flows_label(r["flows"]),
            "value": r["mpps"], "unit": "Mpps/worker",
            "ceiling": ceiling if ceiling is not None else "", "ceiling_by": by,
            "ratio": round(r["mpps"] / ceiling, 3) if ceiling else "",
            "target": f">= {target:g}", "met": "yes" if r["mpps"] >= target else "no",
            "note": "; ".join(notes),
        })
    for r in records:
        part = r.get("part")
        if part == "ir":
            rows.append({
                "part": "b", "what": "instructions per packet (callgrind)",
                "mode": r["mode"], "traffic": r["traffic"], "flows": flows_label(r["flows"]),
                "value": r["ir_per_packet"], "unit": "Ir/packet",
                "ceiling": "", "ceiling_by": "", "ratio": "", "target": "", "met": "",
                "note": f"{r['packets']} packets",
            })
        elif part == "inmem":
            rows.append({
                "part": "b", "what": "engine alone, in memory (wall clock)",
                "mode": r["mode"], "traffic": r["traffic"], "flows": flows_label(r["flows"]),
                "value": r["ns_per_packet"], "unit": "ns/packet",
                "ceiling": "", "ceiling_by": "", "ratio": "", "target": "", "met": "",
                "note": f"{r['mpps']:.2f} Mpps; {r['packets']} packets",
            })
        elif part == "memory":
            rows.append({
                "part": "c", "what": "memory per tracked connection (table)",
                "mode": r["mode"], "traffic": "", "flows": flows_label(r["conns"]),
                "value": r["bytes_per_conn"], "unit": "bytes/conn",
                "ceiling": "", "ceiling_by": "", "ratio": "",
                "target": f"<= {TARGET_BYTES_PER_CONN:g}",
                "met": "yes" if r["bytes_per_conn"] <= TARGET_BYTES_PER_CONN else "no",
                "note": f"RSS growth {r['rss_bytes_per_conn']:.1f} B/conn; capacity {r['capacity']}",
            })
        elif part == "e2e":
            note = f"p50 {r['p50_ms']:.2f} ms; wrk {r['wrk']}"
            if r.get("socket_errors"):
                note += f"; socket errors {r['socket_errors']}"
            if r.get("non_2xx"):
                note += f"; non-2xx {r['non_2xx']}"
            rows.append({
                "part": "d", "what": f"e2e wrk -> nginx via {r['lb']}",
                "mode": "nat" if r["lb"].startswith("rvs") else "-", "traffic": "http",
                "flows": "", "value": r["requests_per_s"], "unit": "requests/s",
                "ceiling": "", "ceiling_by": "", "ratio": "", "target": "", "met": "",
                "note": f"p99 {r['p99_ms']:.2f} ms; " + note,
            })
    return rows


def markdown(rows, meta):
    cols = ["part", "what", "mode", "traffic", "flows", "value", "unit", "ceiling",
            "ratio", "target", "met", "note"]
    out = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for row in rows:
        out.append("| " + " | ".join(str(row[c]) for c in cols) + " |")
    head = [
        "# rvs benchmark results",
        "",
        f"- command: `{meta.get('command', 'bash bench/run.sh')}`",
        f"- date: {meta.get('date', '?')}",
        f"- machine: {meta.get('cpu', '?')}, {meta.get('cpus', '?')} CPUs "
        f"(load average at start {meta.get('load', '?')}), kernel {meta.get('kernel', '?')}, "
        f"DPDK {meta.get('dpdk', '?')}",
        "- (a) one worker lcore; 64-byte frames; ring-gen: a generator lcore on another CPU "
        "feeds net_ring0, ceiling = io-forward with the same generator; pcap: net_pcap "
        "infinite_rx, ceiling = dpdk-testpmd io on the same vdevs. Ratio = rvs / ceiling.",
        "- (b) callgrind counts only the engine calls, a burst of 32 each (`measured_handle_burst`), per packet; "
        "wall-clock rows are the same loop run natively.",
        "- (d) client, director and both reals share this machine's CPUs.",
        "",
    ]
    if meta.get("cpus", 99) <= 2:
        head.insert(5, "- note: a 2-CPU machine; the generator/main lcore and the worker each "
                       "have one CPU, and anything else running (builds) competes with them.")
    return "\n".join(head + out) + "\n"


def chart(rows, path):
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("report: matplotlib missing, no chart", file=sys.stderr)
        return
    tput = [r for r in rows if r["part"] == "a"]
    ir = [r for r in rows if r["part"] == "b" and r["unit"] == "Ir/packet"]
    e2e = [r for r in rows if r["part"] == "d"]
    if not (tput or ir or e2e):
        return
    fig = plt.figure(figsize=(max(10, 0.45 * len(tput) + 3), 9))
    grid = fig.add_gridspec(2, 2)
    axes = [fig.add_subplot(grid[0, :]), fig.add_subplot(grid[1, 0]), fig.add_subplot(grid[1, 1])]
    ax_iter = iter(axes)
    if tput:
        ax = next(ax_iter)
        labels = [f"{r['mode']} {r['traffic']} {r['flows']} ({r['what'].split('(')[1].split(' ')[0]})"
                  for r in tput]
        xs = range(len(tput))
        ax.bar([x - 0.2 for x in xs], [r["value"] for r in tput], 0.4, label="rvs")
        ax.bar([x + 0.2 for x in xs], [r["ceiling"] or 0 for r in tput], 0.4, label="ceiling")
        ax.axhline(TARGET_EST_MPPS, color="green", ls="--", lw=1, label="target est 8")
        ax.axhline(TARGET_NEW_MPPS, color="orange", ls="--", lw=1, label="target new 3")
        ax.set_xticks(list(xs))
        ax.set_xticklabels(labels, fontsize=7, rotation=60, ha="right")
        ax.set_ylabel("Mpps, one worker")
        ax.set_title("(a) throughput, 64-byte frames")
        ax.legend(fontsize=7)
    if ir:
        ax = next(ax_iter)
        ax.bar(range(len(ir)), [r["value"] for r in ir], color="tab:purple")
        ax.set_xticks(list(range(len(ir))))
        ax.set_xticklabels([f"{r['mode']} {r['traffic']} {r['flows']}" for r in ir], fontsize=7,
                           rotation=60, ha="right")
        ax.set_ylabel("instructions / packet")
        ax.set_title("(b) callgrind Ir per packet")
    if e2e:
        ax = next(ax_iter)
        ax.bar(range(len(e2e)), [r["value"] for r in e2e], color="tab:green")
        ax.set_xticks(list(range(len(e2e))))
        ax.set_xticklabels([r["what"].split("via ")[1] for r in e2e], fontsize=8)
        ax.set_ylabel("requests/s")
        ax.set_title("(d) wrk through the VIP")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


MODES = ["nat", "dr", "tun", "fullnat"]
MODE_NAMES = {"nat": "NAT", "dr": "DR", "tun": "TUN", "fullnat": "FullNAT"}


def fmt(value, digits=2):
    return "-" if value is None else f"{value:.{digits}f}"


def readme_table(records, meta):
    """The README's summary: one row per figure, one column per mode."""
    tput = [r for r in records if r.get("part") == "throughput"]
    rvs = {(r["source"], r["traffic"], r["flows"], r["mode"]): r for r in tput if r["engine"] == "rvs"}
    ceil = {}
    for r in tput:
        if r["engine"] == "iofwd":
            ceil[("ring-gen", r["traffic"], r["flows"])] = f"io-forward {r['mpps']:.1f}"
        elif r["engine"] == "testpmd":
            ceil[("pcap", r["traffic"], r["flows"])] = f"testpmd io {r['mpps']:.1f}"
    per = {}
    for r in records:
        if r.get("part") in ("ir", "inmem"):
            per[(r["part"], r["mode"], r["traffic"], r["flows"])] = r
        elif r.get("part") == "memory":
            per[("memory", r["mode"])] = r
    out = [f"| one worker, 64-byte frames | {' | '.join(MODE_NAMES[m] for m in MODES)} | ceiling | target |",
           "|---|" + "---|" * (len(MODES) + 2)]

    def row(label, cells, ceiling="", target=""):
        out.append(f"| {label} | {' | '.join(cells)} | {ceiling} | {target} |")

    flows = sorted({f for (src, t, f, _) in rvs if src == "ring-gen" and t == "est"})
    for f in flows:
        target = "≥ 14 DR/TUN, ≥ 12 NAT/FullNAT" if f == 1000 else ("≥ 8 and ≥ 0.8 × 1k" if f >= 1_000_000 else "")
        row(f"established, {flows_label(f)} flows, Mpps (ring generator)",
            [fmt(rvs.get(("ring-gen", "est", f, m), {}).get("mpps")) for m in MODES],
            ceil.get(("ring-gen", "est", f), ""), target)
    if 1000 in flows and 1_000_000 in flows:
        cells = []
        for m in MODES:
            a, b = rvs.get(("ring-gen", "est", 1000, m)), rvs.get(("ring-gen", "est", 1_000_000, m))
            cells.append(fmt(b["mpps"] / a["mpps"]) if a and b and a["mpps"] else "-")
        row("1M flows ÷ 1k flows (ring generator)", cells, "", "≥ 0.8")
    for f in sorted({f for (src, t, f, _) in rvs if src == "pcap"}):
        row(f"established, {flows_label(f)} flows, Mpps (net_pcap replay)",
            [fmt(rvs.get(("pcap", "est", f, m), {}).get("mpps")) for m in MODES],
            ceil.get(("pcap", "est", f), ""))
    new = [rvs.get(("ring-gen", "new", 0, m)) for m in MODES]
    if any(new):
        row("new connections, M/s (every SYN distinct)",
            [fmt(r["conns_per_s"] / 1e6) if r else "-" for r in new], ceil.get(("ring-gen", "new", 0), ""), "≥ 3")
    for traffic, flows_, label, target in [("est", 1000, "instructions per established packet (callgrind)", "≤ 400"),
                                           ("new", 0, "instructions per new connection (callgrind)", "≤ 900")]:
        cells = [per.get(("ir", m, traffic, flows_)) for m in MODES]
        if any(cells):
            row(label, [fmt(c["ir_per_packet"], 0) if c else "-" for c in cells], "", target)
    inmem_flows = sorted({k[3] for k in per if k[0] == "inmem" and k[2] == "est"})
    for f in inmem_flows:
        row(f"engine alone in memory, {flows_label(f)} flows, ns/packet",
            [fmt(per.get(("inmem", m, "est", f), {}).get("ns_per_packet"), 0) for m in MODES])
    cells = [per.get(("inmem", m, "new", 0)) for m in MODES]
    if any(cells):
        row("engine alone in memory, new connection, ns", [fmt(c["ns_per_packet"], 0) if c else "-" for c in cells])
    cells = [per.get(("memory", m)) for m in MODES]
    if any(cells):
        row("bytes per tracked connection at 1M (table)",
            [fmt(c["bytes_per_conn"], 1) if c else "-" for c in cells], "", "≤ 128")
    for r in records:
        if r.get("part") == "e2e":
            out.append(f"| e2e wrk → nginx via {r['lb']}: {r['requests_per_s'] / 1000:.1f}k req/s, "
                       f"p99 {r['p99_ms']:.2f} ms | | | | | | |")
    head = [f"`{meta.get('command', 'bash bench/run.sh')}`, {meta.get('date', '?')}: "
            f"{meta.get('cpu', '?')}, {meta.get('cpus', '?')} CPUs, DPDK {meta.get('dpdk', '?')}.", ""]
    return "\n".join(head + out) + "\n"


def flows_chart(records, path, before=()):
    """Mpps against the number of flows, per mode: the curve of cache misses;
    `before`, records of an earlier run, drawn dashed beside."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return
    def curves(recs):
        tput = [r for r in recs if r.get("part") == "throughput" and r["traffic"] == "est"
                and r["source"] == "ring-gen"]
        inmem = [r for r in recs if r.get("part") == "inmem" and r["traffic"] == "est"]
        return tput, inmem

    tput, inmem = curves(records)
    old_tput, old_inmem = curves(before)
    if not tput and not inmem:
        return
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.5))
    colours = dict(zip(MODES, ["tab:blue", "tab:orange", "tab:green", "tab:red"]))
    for ax, rows, old, title in [(axes[0], tput, old_tput, "DPDK, ring generator → net_null, one worker"),
                                 (axes[1], inmem, old_inmem, "engine alone, in memory")]:
        for m in MODES:
            pts = sorted((r["flows"], r["mpps"]) for r in rows if r.get("engine", "rvs") == "rvs" and r["mode"] == m)
            if pts:
                ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", color=colours[m],
                        label=MODE_NAMES[m])
            pts = sorted((r["flows"], r["mpps"]) for r in old if r.get("engine", "rvs") == "rvs" and r["mode"] == m)
            if pts:
                ax.plot([p[0] for p in pts], [p[1] for p in pts], marker=".", ls="--", color=colours[m],
                        alpha=0.6, label=f"{MODE_NAMES[m]} before")
        ceiling = sorted((r["flows"], r["mpps"]) for r in rows if r.get("engine") == "iofwd")
        if ceiling:
            ax.plot([p[0] for p in ceiling], [p[1] for p in ceiling], ls=":", color="grey", label="io-forward")
        ax.axhline(TARGET_EST_MPPS, color="green", ls="--", lw=1, label="target 8")
        ax.set_xscale("log")
        ax.set_xlabel("established flows")
        ax.set_ylabel("Mpps")
        ax.set_ylim(bottom=0)
        ax.set_title(title, fontsize=9)
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main():
    raw, prefix = sys.argv[1], sys.argv[2]
    before = []
    if len(sys.argv) > 3:  # an earlier run's raw file, drawn beside in the flows chart
        before = [json.loads(line) for line in open(sys.argv[3]) if line.strip().startswith("{")]
    records = [json.loads(line) for line in open(raw) if line.strip().startswith("{")]
    meta = next((r for r in records if r.get("part") == "meta"), {})
    rows = rows_of(records)
    with open(prefix + ".csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=FIELDS)
        w.writeheader()
        w.writerows(rows)
    md = markdown(rows, meta)
    with open(prefix + ".md", "w") as f:
        f.write(md)
    chart(rows, prefix + ".png")
    flows_chart(records, prefix + "-flows.png", before)
    with open(prefix + "-readme.md", "w") as f:
        f.write(readme_table(records, meta))
    print(md)
    print(f"wrote {prefix}.csv {prefix}.md {prefix}.png", file=sys.stderr)


if __name__ == "__main__":
    main()
