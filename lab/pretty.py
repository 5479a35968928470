#!/usr/bin/env python3
"""Readable tables for lab/demo.sh: `pretty.py http|udp|stats` reads the JSON
of `client.py http`, `client.py udp` or an `rvsd: stats` line on stdin.
Exit status 1 when the result shows a failure (errors, losses)."""
import json
import sys


def http(r):
    total = sum(r["by_real"].values())
    print(f"  {'real':<8}{'requests':>10}{'share':>9}")
    for name, n in sorted(r["by_real"].items()):
        print(f"  {name:<8}{n:>10}{100.0 * n / max(total, 1):>8.1f}%")
    print(f"  {'errors':<8}{r['errors']:>10}")
    for e in r.get("error_samples", []):
        print(f"    {e}")
    print(f"  ({r['seconds']} s)")
    return 1 if r["errors"] or total == 0 else 0


def udp(r):
    by = ", ".join(f"{k}={v}" for k, v in sorted(r["by_real"].items())) or "none"
    print(f"  replies by real: {by} | lost: {r['lost']} | bad: {r['bad']}")
    return 1 if r["lost"] or r["bad"] else 0


def stats(s):
    for k in ("rx_packets", "rx_bytes", "tx_packets", "tx_bytes", "conns_created",
              "conns_expired", "conns_current"):
        print(f"  {k:<16}{s.get(k)}")
    drops = {k: v for k, v in s.get("drops", {}).items() if v}
    print(f"  {'drops':<16}" + (", ".join(f"{k}={v}" for k, v in sorted(drops.items())) or "none"))
    for real, v in sorted(s.get("reals", {}).items()):
        print(f"  real {real:<22} conns={v.get('conns')}")
    return 0


def main():
    kind = sys.argv[1]
    text = sys.stdin.read().strip()
    if "rvsd: stats " in text:
        text = text.rsplit("rvsd: stats ", 1)[1]
    return {"http": http, "udp": udp, "stats": stats}[kind](json.loads(text))


if __name__ == "__main__":
    sys.exit(main())
