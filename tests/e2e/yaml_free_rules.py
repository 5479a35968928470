"""The rules of a Prometheus rules file, read without a YAML library (the
lab needs none): (kind, name, expr) for each `- record:` / `- alert:` with
its `expr:` on one line, as conf/prometheus/rvs-rules.yml writes them."""
import re

RULE = re.compile(r"^\s*-\s*(record|alert):\s*(\S+)\s*$")
EXPR = re.compile(r"^\s*expr:\s*(.+?)\s*$")


def rules(path):
    out, current = [], None
    for line in open(path):
        m = RULE.match(line)
        if m:
            current = (m.group(1), m.group(2))
            continue
        m = EXPR.match(line)
        if m and current:
            out.append((*current, m.group(1)))
            current = None
    assert out, f"no rules in {path}"
    return out
