#!/usr/bin/env python3
"""Print, for every criterion group, our median beside the raw baseline's and
their ratio (ours / raw), from target/criterion after `cargo bench`.

    python3 benches/ratios.py [CRITERION_DIR] [--runs NAME,NAME,...]

Without --runs it reads criterion's latest measurement of every function
("new"). With --runs it reads the runs saved by
`cargo bench -p dlms-sec-benches -- --save-baseline NAME` and prints, per
row, the median over the runs of each run's ratio (both sides of a ratio come
from the same run) and the range of those ratios: on a shared, noisy host the
median of three whole runs is steadier than any one of them."""
import json, os, statistics, sys

args = [a for a in sys.argv[1:]]
runs = ["new"]
if "--runs" in args:
    i = args.index("--runs")
    runs = args[i + 1].split(",")
    del args[i:i + 2]
root = args[0] if args else os.path.join(os.path.dirname(__file__), "..", "target", "criterion")


def median(path):
    with open(path) as f:
        return json.load(f)["median"]["point_estimate"]


def read(run):
    """{(group, param): {who: median ns}} for one saved run."""
    table = {}
    for dirpath, _, files in os.walk(root):
        if "estimates.json" not in files or os.path.basename(dirpath) != run:
            continue
        rel = os.path.relpath(os.path.dirname(dirpath), root).split(os.sep)
        # group parts / function / [parameter]
        if "dlms-sec" in rel:
            i = rel.index("dlms-sec"); who = "ours"
        elif "raw" in rel:
            i = rel.index("raw"); who = "raw"
        elif any(p.startswith("raw-") for p in rel):
            # a further baseline in the group (e.g. dco's raw-unpacked)
            i = next(k for k, p in enumerate(rel) if p.startswith("raw-")); who = rel[i]
        elif rel[:2] == ["dco", "threads"] and len(rel) == 3:
            i = 2; who = "threads"
        elif rel[0] == "dco_threads" and len(rel) == 2:
            # criterion writes the group "dco/threads" as the directory dco_threads
            i = 1; who = "threads"
        else:
            continue
        key = ("/".join(rel[:i]), "/".join(rel[i + 1:]) if who != "threads" else rel[i])
        table.setdefault(key, {})[who] = median(os.path.join(dirpath, "estimates.json"))
    return table


def fmt(ns):
    return f"{ns/1000:.2f} µs" if ns >= 1000 else f"{ns:.0f} ns"


tables = [read(r) for r in runs]
keys = sorted({k for t in tables for k in t},
              key=lambda k: (k[0], int(k[1]) if k[1].isdigit() else 0))
multi = len(runs) > 1
head = f"{'group':45} {'size':>6} {'dlms-sec':>10} {'raw':>10} {'ratio':>6}"
print(head + ("  range over runs" if multi else ""))
for key in keys:
    group, param = key
    cells = [t[key] for t in tables if key in t and "ours" in t[key] and "raw" in t[key]]
    if not cells:
        continue
    ratios = [c["ours"] / c["raw"] for c in cells]
    ours = statistics.median(c["ours"] for c in cells)
    raw = statistics.median(c["raw"] for c in cells)
    line = f"{group:45} {param:>6} {fmt(ours):>10} {fmt(raw):>10} {statistics.median(ratios):6.2f}"
    if multi:
        line += f"  {min(ratios):.2f}–{max(ratios):.2f} ({len(ratios)} runs)"
    print(line)
    for who in sorted({w for c in cells for w in c if w.startswith("raw-")}):
        floor = [c[who] / c["raw"] for c in cells if who in c]
        over = [c["ours"] / c[who] for c in cells if who in c]
        print(f"  {who}: {statistics.median(floor):.2f} of raw; ours {statistics.median(over):.2f} of it"
              + (f" (ranges {min(floor):.2f}–{max(floor):.2f}, {min(over):.2f}–{max(over):.2f})" if multi else ""))

scaling = []
for t in tables:
    th = {p: v["threads"] for (g, p), v in t.items() if "threads" in v}
    if "1" in th and "2" in th:
        scaling.append((1e9 / th["1"], 1e9 / th["2"], th["1"] / th["2"]))
if scaling:
    one, two, x = (statistics.median(s[i] for s in scaling) for i in range(3))
    print(f"\ndco/threads: 1 thread {one:.0f} commands/s, 2 threads {two:.0f} commands/s, "
          f"scaling {x:.2f}x" + (f" (range {min(s[2] for s in scaling):.2f}–{max(s[2] for s in scaling):.2f})" if multi else ""))
