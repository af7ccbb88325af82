#!/usr/bin/env python3
"""Print, for every criterion group, our median beside the raw baseline's and
their ratio (ours / raw), from target/criterion after `cargo bench`."""
import json, os, sys

root = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(__file__), "..", "target", "criterion")

def median(path):
    with open(path) as f:
        return json.load(f)["median"]["point_estimate"]

rows = []
for dirpath, _, files in os.walk(root):
    if "estimates.json" in files and os.path.basename(dirpath) == "new":
        rel = os.path.relpath(os.path.dirname(dirpath), root).split(os.sep)
        rows.append((rel, median(os.path.join(dirpath, "estimates.json"))))

table = {}
for rel, m in rows:
    # group parts / function / [parameter]
    if "dlms-sec" in rel:
        i = rel.index("dlms-sec"); who = "ours"
    elif "raw" in rel:
        i = rel.index("raw"); who = "raw"
    elif any(p.startswith("raw-") for p in rel):
        # a further baseline in the group (e.g. dco's raw-unpacked)
        i = next(k for k, p in enumerate(rel) if p.startswith("raw-")); who = rel[i]
    else:
        continue
    key = ("/".join(rel[:i]), "/".join(rel[i + 1:]))
    table.setdefault(key, {})[who] = m

def fmt(ns):
    return f"{ns/1000:.2f} µs" if ns >= 1000 else f"{ns:.0f} ns"

print(f"{'group':45} {'size':>6} {'dlms-sec':>10} {'raw':>10} {'ratio':>6}")
for (group, param), v in sorted(table.items(), key=lambda kv: (kv[0][0], int(kv[0][1]) if kv[0][1].isdigit() else 0)):
    if "ours" in v and "raw" in v:
        print(f"{group:45} {param:>6} {fmt(v['ours']):>10} {fmt(v['raw']):>10} {v['ours']/v['raw']:6.2f}")
        for who in sorted(k for k in v if k.startswith("raw-")):
            print(f"  {who} {fmt(v[who])}: raw-like floor {v[who]/v['raw']:.2f} of raw; ours {v['ours']/v[who]:.2f} of it")

threads = {}
for rel, m in rows:
    # criterion writes the group "dco/threads" as the directory dco_threads
    if rel[:2] == ["dco", "threads"] and len(rel) == 3:
        threads[rel[2]] = m
    elif rel[0] == "dco_threads" and len(rel) == 2:
        threads[rel[1]] = m
if "1" in threads and "2" in threads:
    print(f"\ndco/threads: 1 thread {1e9/threads['1']:.0f} commands/s, 2 threads {1e9/threads['2']:.0f} commands/s, scaling {threads['1']/threads['2']:.2f}x")
