"""Worst-case stack depth of the footprint image's entry points.

Usage: stack.py ELF LLVM_READOBJ LLVM_OBJDUMP

ELF must be built with nightly `-Z emit-stack-sizes`: its .stack_sizes
section gives each function's own frame. The call graph comes from the
disassembly: a `bl` to another function is a call (its depth adds to the
caller's frame), a `b`/`b.w` to another function's start a tail call (the
caller's frame is gone by then). The figures are the deepest path along
direct calls. Functions without a record (compiler_builtins, built
without the flag) get their frame from their prologue (`push`, `sub sp`),
marked `~`. Indirect calls (`blx rN`) are reported, not followed.
Informative only: exits 0 unless the inputs cannot be read.
"""

import re
import subprocess
import sys

elf, readobj, objdump = sys.argv[1:4]


def run(*args):
    return subprocess.run(args, check=True, capture_output=True, text=True).stdout


# Own frame per function (names demangled; one record may name aliases).
frames = {}
out = run(readobj, "--stack-sizes", "--demangle", elf)
for m in re.finditer(r"Functions: \[(.*?)\]\s*\n\s*Size: (0x[0-9a-fA-F]+)", out):
    names, level, start = m.group(1), 0, 0
    for i, ch in enumerate(names + ","):
        level += {"<": 1, ">": -1}.get(ch, 0)
        if ch == "," and level == 0:  # aliases; commas inside <...> belong to a name
            frames[names[start:i].strip()] = int(m.group(2), 16)
            start = i + 1

# Call graph from the disassembly.
calls, tails, indirect, prologue = {}, {}, {}, {}
label = re.compile(r"^[0-9a-f]+ <(.*)>:$")
branch = re.compile(
    r"^\s+[0-9a-f]+:\s+(blx|bl|bx|b(?:eq|ne|cs|hs|cc|lo|mi|pl|vs|vc|hi|ls|ge|lt|gt|le)?)"
    r"(?:\.[wn])?\s+(.*)$"
)
target = re.compile(r"^0x[0-9a-f]+ <(.*)>(?:\s+@.*)?$")
push = re.compile(r"^\s+[0-9a-f]+:\s+(push|push\.w|stmdb)\s+.*\{(.*)\}")
vpush = re.compile(r"^\s+[0-9a-f]+:\s+vpush\s+\{(.*)\}")
subsp = re.compile(r"^\s+[0-9a-f]+:\s+sub(?:\.w)?\s+sp,\s*(?:sp,\s*)?#(0x[0-9a-f]+|\d+)")
cur, seen_insns = None, 0
for line in run(objdump, "-d", "--no-show-raw-insn", "--demangle", elf).splitlines():
    m = label.match(line)
    if m:
        cur, seen_insns = m.group(1), 0
        calls.setdefault(cur, set())
        tails.setdefault(cur, set())
        prologue[cur] = 0
        continue
    if cur is None:
        continue
    seen_insns += 1
    if seen_insns <= 8:
        m = push.match(line)
        if m:
            prologue[cur] += 4 * len(m.group(2).split(","))
        m = vpush.match(line)
        if m:
            prologue[cur] += 8 * len(m.group(1).split(","))
        m = subsp.match(line)
        if m:
            prologue[cur] += int(m.group(1), 0)
    m = branch.match(line)
    if not m:
        continue
    op, rest = m.groups()
    if op in ("blx", "bx") and re.match(r"r\d+|ip|r12", rest):
        if op == "blx" or not rest.startswith("lr"):
            indirect.setdefault(cur, 0)
            indirect[cur] += 1
        continue
    t = target.match(rest.strip())
    if not t:
        continue
    callee = t.group(1)
    if "+0x" in callee or callee == cur:
        continue  # a branch inside the function
    (calls if op == "bl" else tails)[cur].add(callee)


def frame(f):
    if f in frames:
        return frames[f], ""
    return prologue.get(f, 0), "~"


memo = {}


def depth(f, stack=()):
    """(bytes, path, recursive) of the deepest chain from f."""
    if f in memo:
        return memo[f]
    if f in stack:
        return 0, [f + " (recursion)"], True
    own, _ = frame(f)
    best = (own, [f], False)
    for c in sorted(calls.get(f, ())):
        d, p, r = depth(c, stack + (f,))
        if own + d > best[0]:
            best = (own + d, [f] + p, r)
    for c in sorted(tails.get(f, ())):
        d, p, r = depth(c, stack + (f,))
        if d > best[0]:
            best = (d, [f, "(tail call)"] + p, r)
    memo[f] = best
    return best


def find(prefix):
    for name in list(frames) + list(calls):
        if name.startswith(prefix):
            return name
    return None


def strip_generics(name):
    while True:
        shorter = re.sub(r"<[^<>]*>", "", name) if " as " not in name else name
        shorter = re.sub(r"::<[^<>]*>", "", shorter)
        if shorter == name:
            return name
        name = shorter


def short(name):
    """`Type::method` or `module::function`: the last two path segments."""
    name = re.sub(r"::<[^()]*>$", "", name)  # trailing generic arguments
    m = re.match(r"^<+(.+?) as .*>::([\w]+)$", name)
    if m:
        name = strip_generics(m.group(1)) + "::" + m.group(2)
    else:
        name = re.sub(r"^<([^<>]+)>::", r"\1::", name)
    name = strip_generics(name)
    return "::".join(name.split("::")[-2:])


roots = [
    ("Endpoint::restore", "footprint::api::restore"),
    ("Endpoint::unprotect", "footprint::api::unprotect"),
    ("Endpoint::serve", "footprint::api::serve"),
    ("Endpoint::protect", "footprint::api::protect"),
    ("Endpoint::associate", "footprint::api::associate"),
    ("Endpoint::expect_hls", "footprint::api::expect_hls"),
    ("Endpoint::release", "footprint::api::release"),
    ("whole firmware (Reset -> main)", "Reset"),
    ("whole firmware (Reset -> main)", "__stext"),  # Reset's other label
]
print("Stack use (nightly -Z emit-stack-sizes; same code as the stable image, cpubits=32)")
print(f"{'entry point':<32} {'own frame':>9} {'worst path':>10}")
print(f"{'-' * 32} {'-' * 9} {'-' * 10}")
chains = []
for label_, prefix in roots:
    f = find(prefix)
    if f is None:
        continue
    total, path, recursive = depth(f)
    own, mark = frame(f)
    flag = "~" if any(frame(p)[1] for p in path if p in prologue) else " "
    rec = " (recursion cut)" if recursive else ""
    print(f"{label_:<32} {mark + str(own):>9} {flag + str(total):>10}{rec}")
    chains.append((label_, path))
print("Deepest chains (own frame of each function in bytes):")
for label_, path in chains:
    steps = " > ".join(
        p if p.startswith("(") else f"{short(p)} {frame(p)[1]}{frame(p)[0]}" for p in path
    )
    print(f"  {label_}: {steps}")
ind = sorted(f for f in indirect if f in memo)
print("Each figure is what that call needs below its caller (the shim's frame")
print("included); the Endpoint (in main's frame) counts only in the whole-firmware")
print("line. '~': the path has a frame read from a prologue (compiler_builtins")
print("has no .stack_sizes record). Interrupt handlers come on top.")
if ind:
    print("Indirect calls not followed in: " + ", ".join(short(f) for f in ind))
