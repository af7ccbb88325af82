#!/usr/bin/env python3
"""Instruction counts per operation from QEMU's execution log.

Reads the log of `qemu-system-arm -one-insn-per-tb -d exec,nochain` (one
`Trace` line per executed instruction) running footprint/count, and the
image's semihosting output (`op NAME REPS STACK` lines, in marker order).
Each counted call runs from the first instruction of `count_start` to the
first instruction of `count_end`; the count of an empty operation (the
markers and the call through the harness) is subtracted.

Prints a table of ours beside aes-gcm and exits 1 when a ratio target is
missed, a repetition counts differently from the others, or the log and
the output disagree.

    qemu-count.py --elf ELF --nm LLVM_NM --ops OUTPUT --log LOG [--breakdown N]
"""

import argparse
import collections
import re
import subprocess
import sys

# (ours, baseline (aes-gcm; aes-kw for the key_transfer install), what,
#  target ratio or None, listed in the breakdown)
ROWS = [
    ("unprotect", "aes-gcm-decrypt",
     "unprotect, 64-octet glo-get-request (AE)", 0.9, True),
    ("protect", "aes-gcm-encrypt",
     "protect, 64-octet APDU (AE)", 0.9, True),
    ("hls5-verify", "aes-gcm-gmac-verify",
     "HLS-5 verify f(StoC), 16-octet challenge", 0.9, True),
    ("suite0-new", "aes-gcm-new",
     "context: key expansion (GUEK; SC ‖ AK folded)", None, False),
    ("key-transfer-install", "aes-kw-unwrap",
     "key_transfer install, 1 key (base: aes-kw unwrap)", None, True),
]
EMPTY = "empty"
# Instructions by which the repetitions of one operation may differ.
SPREAD = 2
PRIMITIVES = {"u8", "u16", "u32", "u64", "u128", "usize", "i8", "i16", "i32", "i64", "isize",
              "bool", "char", "str"}


def readable(name):
    """A demangled name with legacy escapes decoded and the hash dropped."""
    for esc, ch in (("$LT$", "<"), ("$GT$", ">"), ("$u20$", " "), ("$RF$", "&"), ("$BP$", "*"),
                    ("$C$", ","), ("$u5b$", "["), ("$u5d$", "]"), ("$u7b$", "{"), ("$u7d$", "}"),
                    ("$u3b$", ";"), ("..", "::")):
        name = name.replace(esc, ch)
    return re.sub(r"::h[0-9a-f]{16}$", "", name.lstrip("_") if name.startswith("_<") else name)


def symbols(nm, elf):
    """Mangled name -> demangled name without the hash."""
    raw = subprocess.run([nm, "-n", elf], check=True, capture_output=True, text=True).stdout
    dem = subprocess.run([nm, "-n", "--demangle", elf], check=True, capture_output=True,
                         text=True).stdout
    names = {}
    addrs = {}
    for a, b in zip(raw.splitlines(), dem.splitlines()):
        pa, pb = a.split(None, 2), b.split(None, 2)
        if len(pa) == 3 and len(pb) == 3:
            names[pa[2]] = readable(pb[2])
            addrs[pa[2]] = int(pa[0], 16) & ~1
    return names, addrs


def segments(log, start, end, entry_of):
    """[(instructions, Counter(symbol -> instructions), Counter(symbol ->
    entries))] per marker pair; an entry is an execution of the symbol's
    first instruction."""
    out = []
    inside = False
    n = 0
    per = None
    trace = re.compile(r"^Trace \d+: \S+ \[[0-9a-f]+/([0-9a-f]+)/[0-9a-f]+/[0-9a-f]+\]\s*(\S*)")
    with open(log, "r", errors="replace") as f:
        for line in f:
            m = trace.match(line)
            if not m:
                continue
            pc = int(m.group(1), 16)
            if pc == start:
                if inside:
                    sys.exit("qemu-count: count_start entered twice without count_end")
                inside, n = True, 0
                per, calls = collections.Counter(), collections.Counter()
            elif pc == end and inside:
                out.append((n, per, calls))
                inside = False
            if inside:
                n += 1
                per[m.group(2)] += 1
                if entry_of.get(m.group(2)) == pc:
                    calls[m.group(2)] += 1
    return out


def group(name):
    """Which part of the work a function's instructions belong to: its
    crate (for `<T as Trait>::f` with a primitive T, the trait's)."""
    if name in ("count_start", "count_end"):
        return "markers"
    n = re.sub(r"^<+", "", name)
    first = re.split(r"[: <>,]", n, maxsplit=1)[0]
    if first in PRIMITIVES and " as " in n:
        first = re.split(r"[: <>,]", re.sub(r"^<+", "", n.split(" as ", 1)[1]), maxsplit=1)[0]
    if first in ("aes", "cipher") or (first == "core" and "::map" in name):
        # core's array::map here is aes's bitslicing, inlined into it.
        return "AES"
    if first in ("polyval", "ghash", "universal_hash"):
        return "GHASH"
    if first == "compiler_builtins" or name.startswith(("__aeabi_mem", "mem")):
        return "mem*"
    if first == "count":
        return "call shim"
    return first


def gate(target, limit):
    """The ratio above which a row fails."""
    return target if limit is None else limit


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--elf", required=True)
    ap.add_argument("--nm", required=True)
    ap.add_argument("--ops", required=True)
    ap.add_argument("--log", required=True)
    ap.add_argument("--breakdown", type=int, default=8)
    ap.add_argument("--limit", type=float, default=None,
                    help="fail only above this ratio instead of each row's target "
                         "(a missed target is still shown)")
    args = ap.parse_args()

    names, addrs = symbols(args.nm, args.elf)
    segs = segments(args.log, addrs["count_start"], addrs["count_end"], addrs)

    ops = []
    done = False
    with open(args.ops) as f:
        for line in f:
            p = line.split()
            if p[:1] == ["op"] and len(p) == 4:
                ops.append((p[1], int(p[2]), int(p[3])))
            elif p == ["done"]:
                done = True
    if not done:
        sys.exit("qemu-count: the image did not finish (no `done` line)")
    if sum(r for _, r, _ in ops) != len(segs):
        sys.exit(f"qemu-count: {len(segs)} counted calls in the log, "
                 f"{sum(r for _, r, _ in ops)} in the image's output")

    status = 0
    counts, stacks, per, spread = {}, {}, {}, []
    i = 0
    for name, reps, stack in ops:
        mine = segs[i:i + reps]
        i += reps
        c = sorted({s[0] for s in mine})
        # The same call on the same input runs the same instructions; the
        # harness around it may differ by an instruction between the
        # first, peeled, repetition and the others.
        if c[-1] - c[0] > SPREAD:
            print(f"FAIL: {name}: repetitions counted differently: {c}")
            status = 1
        elif len(c) > 1:
            spread.append(f"{name} {c[0]}..{c[-1]}")
        counts[name] = c[0]
        stacks[name] = stack
        per[name] = mine[0][1:]
    base = counts.pop(EMPTY)
    for k in counts:
        counts[k] -= base

    print(f"Instructions per call (each operation {ops[0][1]} times, the fewest taken; "
          f"the markers, {base} instructions, subtracted)")
    if spread:
        print(f"repetitions that differed (by at most {SPREAD}): {', '.join(spread)}")
    print()
    head = ("operation", "ours", "baseline", "ratio", "target", "stack ours", "stack base")
    fmt = "{:<50} {:>9} {:>9} {:>6} {:>14} {:>10} {:>13}"
    print(fmt.format(*head))
    print(fmt.format(*("-" * len(h) if i else "-" * 50 for i, h in enumerate(head))))
    for ours, theirs, what, target, _ in ROWS:
        o = counts[ours]
        if theirs:
            t = counts[theirs]
            ratio = o / t
            verdict = ""
            if target is not None:
                verdict = f"<= {target}"
                if ratio > target:
                    verdict += " MISSED"
                if ratio > gate(target, args.limit):
                    status = 1
            print(fmt.format(what, o, t, f"{ratio:.3f}", verdict, stacks[ours], stacks[theirs]))
        else:
            print(fmt.format(what, o, "-", "-", "", stacks[ours], "-"))
    print()
    print("baseline: aes-gcm 0.11 doing the same GCM; for the key_transfer install, aes-kw 0.3")
    print("unwrapping the same key (the RFC 3394 step inside the install)")
    print("stack: octets below the caller's stack pointer (painted window; includes the call)")

    if args.breakdown:
        for ours, theirs, what, target, listed in ROWS:
            if not listed:
                continue
            for name in (ours, theirs):
                print()
                print(f"{name}: instructions by function (top {args.breakdown}; "
                      f"inlined code counts in its caller; calls = entries)")
                insns, calls = per[name]
                total = sum(insns.values())
                parts = collections.Counter()
                for sym, n in insns.items():
                    parts[group(names.get(sym, sym))] += n
                print("  by part: " + ", ".join(f"{g} {n}" for g, n in parts.most_common()))
                print(f"  {'instr':>7} {'share':>6} {'calls':>5}  function")
                for sym, n in insns.most_common(args.breakdown):
                    print(f"  {n:>7} {100 * n / total:5.1f}% {calls[sym]:>5}  "
                          f"{names.get(sym, sym)}")

    print()
    for ours, theirs, what, target, _ in ROWS:
        if target is None:
            continue
        ratio = counts[ours] / counts[theirs]
        if ratio > gate(target, args.limit):
            print(f"FAIL: {ours} is {ratio:.3f} x {theirs}, limit {gate(target, args.limit)}")
        elif ratio > target:
            print(f"target missed (not failing, limit {args.limit}): {ours} is {ratio:.3f} x "
                  f"{theirs}, target <= {target}")
    return status


if __name__ == "__main__":
    sys.exit(main())
