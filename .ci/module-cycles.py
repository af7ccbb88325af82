#!/usr/bin/env python3
"""Fails when the crate's top-level modules depend on each other in a cycle.

    python3 .ci/module-cycles.py [SRC_DIR]      (default: src)

A top-level module is `SRC_DIR/X.rs` or a folder `SRC_DIR/X/` holding
`mod.rs` (or sitting beside `X.rs`); `lib.rs` and `main.rs` are the crate
root, not modules. Every `.rs` file of a module counts as that module's.

Module X depends on module Y when one of X's files names Y by a path that
starts at the crate root:

* `crate::Y` (also `$crate::Y`), in a `use` line or in code;
* `crate::{Y::..., Z}`: each item of a group, nested groups included;
* `super::Y`, `super::super::Y`, ... where that many `super`s, counted from
  the module the path is written in (a file's module, or an inline
  `mod name { ... }` inside it), lead back to the crate root.

Comments (`//`, `///`, `//!`, `/* ... */`) and the contents of string and
character literals are removed first, so documentation links do not count.

The graph's strongly connected components with more than one module are the
cycles; a module naming itself does not count. On a cycle the script lists
every one, with the file and line of each edge inside it, and exits 1.
Otherwise it prints the modules in a topological order, bottom first (each
one after everything it uses), and exits 0.
"""

import re
import sys
from pathlib import Path

ROOT_FILES = {"lib.rs", "main.rs"}


def top_level_modules(src):
    """{module name: [files]} for the crate rooted at `src`."""
    modules = {}
    for entry in sorted(src.iterdir()):
        if entry.is_file() and entry.suffix == ".rs" and entry.name not in ROOT_FILES:
            modules.setdefault(entry.stem, []).append(entry)
        elif entry.is_dir():
            if (entry / "mod.rs").is_file() or (src / f"{entry.name}.rs").is_file():
                modules.setdefault(entry.name, []).extend(sorted(entry.rglob("*.rs")))
    return modules


def file_module_path(src, path):
    """The module path of a file, as a list: src/a/b.rs -> [a, b]."""
    parts = list(path.relative_to(src).with_suffix("").parts)
    if parts and parts[-1] == "mod":
        parts.pop()
    return parts


LITERAL_OR_COMMENT = re.compile(
    r"""
      (?P<line>//[^\n]*)
    | (?P<block>/\*)
    | (?P<raw>\b(?:b|c)?r(?P<hashes>\#*)")
    | (?P<string>\b(?:b|c)?")
    | (?P<char>\bb?'(?:\\(?:x[0-9A-Fa-f]{2}|u\{[0-9A-Fa-f]{1,6}\}|.)|[^\\'\n])')
    """,
    re.VERBOSE,
)


def blank(text):
    """Spaces for every character but newlines (keeps line numbers)."""
    return re.sub(r"[^\n]", " ", text)


def strip(source):
    """The source with comments removed and literal contents blanked."""
    out = []
    pos = 0
    while True:
        m = LITERAL_OR_COMMENT.search(source, pos)
        if m is None:
            out.append(source[pos:])
            return "".join(out)
        out.append(source[pos : m.start()])
        if m.group("line") is not None:
            end = m.end()
        elif m.group("block") is not None:
            depth, end = 1, m.end()
            while depth and end < len(source):
                if source.startswith("/*", end):
                    depth, end = depth + 1, end + 2
                elif source.startswith("*/", end):
                    depth, end = depth - 1, end + 2
                else:
                    end += 1
        elif m.group("raw") is not None:
            close = '"' + m.group("hashes")
            found = source.find(close, m.end())
            end = len(source) if found < 0 else found + len(close)
        elif m.group("string") is not None:
            end = m.end()
            while end < len(source) and source[end] != '"':
                end += 2 if source[end] == "\\" else 1
            end += 1
        else:
            end = m.end()
        out.append(blank(source[m.start() : end]))
        pos = end


TOKEN = re.compile(
    r"""
      (?P<inline_mod>\bmod\s+(?P<mod_name>[A-Za-z_]\w*)\s*\{)
    | (?P<crate>(?<![\w:])\$?crate\s*::\s*)
    | (?P<supers>(?<![\w:])(?:super\s*::\s*)+)
    | (?P<open>\{)
    | (?P<close>\})
    """,
    re.VERBOSE,
)
IDENT = re.compile(r"\s*(r\#)?([A-Za-z_]\w*)")


def group_heads(text, start):
    """For a `{` at text[start]: the first identifier of each top-level item
    of the group, recursing into items that are groups themselves, and the
    index just past the closing brace. Offsets are absolute."""
    heads = []
    depth, item_start, i = 0, start + 1, start
    while i < len(text):
        c = text[i]
        if c == "{":
            depth += 1
        elif c == "}":
            depth -= 1
        if depth == 1 and c == "," or depth == 0:
            item = text[item_start:i]
            stripped = item.lstrip()
            offset = item_start + len(item) - len(stripped)
            if stripped.startswith("{"):
                heads.extend(group_heads(text, offset)[0])
            else:
                m = IDENT.match(text, offset)
                if m and m.end() <= i:
                    heads.append((m.group(2), m.start(2)))
            item_start = i + 1
        if depth == 0:
            return heads, i + 1
        i += 1
    return heads, len(text)


def references(text, module_path):
    """(top-level name, offset) for every path in `text` that starts at the
    crate root; `module_path` is the module of the file."""
    refs = []
    braces = 0
    inline = []  # (module name, brace depth at which it closes)
    pos = 0
    while True:
        m = TOKEN.search(text, pos)
        if m is None:
            return refs
        pos = m.end()
        if m.group("inline_mod") is not None:
            braces += 1
            inline.append((m.group("mod_name"), braces))
        elif m.group("open") is not None:
            braces += 1
        elif m.group("close") is not None:
            if inline and inline[-1][1] == braces:
                inline.pop()
            braces -= 1
        else:
            if m.group("supers") is not None:
                here = module_path + [name for name, _ in inline]
                ups = m.group("supers").count("super")
                if ups != len(here):
                    continue  # lands inside a module, or past the root
            if text.startswith("{", pos):
                heads, pos = group_heads(text, pos)
                refs.extend(heads)
            else:
                ident = IDENT.match(text, pos)
                if ident:
                    refs.append((ident.group(2), ident.start(2)))


def graph(src, modules):
    """{module: {dependency: (file, line)}}, the first place of each edge."""
    edges = {name: {} for name in modules}
    for name, files in modules.items():
        for path in files:
            text = strip(path.read_text(encoding="utf-8"))
            for target, offset in references(text, file_module_path(src, path)):
                if target in modules and target != name and target not in edges[name]:
                    line = text.count("\n", 0, offset) + 1
                    edges[name][target] = (path, line)
    return edges


def strongly_connected(edges):
    """Tarjan's components, each sorted; a component comes after every
    component it depends on (bottom first)."""
    index, low, on_stack, stack, order = {}, {}, set(), [], []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(edges[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            order.append(sorted(component))

    sys.setrecursionlimit(max(1000, 10 * len(edges)))
    for v in sorted(edges):
        if v not in index:
            visit(v)
    return order


def main(argv):
    if len(argv) > 2 or (len(argv) == 2 and argv[1] in ("-h", "--help")):
        print(__doc__.strip(), file=sys.stderr)
        return 2
    src = Path(argv[1] if len(argv) == 2 else "src")
    if not src.is_dir():
        print(f"module-cycles: {src} is not a directory", file=sys.stderr)
        return 2
    modules = top_level_modules(src)
    if not modules:
        print(f"module-cycles: no top-level modules under {src}", file=sys.stderr)
        return 2

    edges = graph(src, modules)
    components = strongly_connected(edges)
    cycles = [c for c in components if len(c) > 1]
    if cycles:
        print(
            f"module-cycles: {len(cycles)} cycle(s) between the top-level modules of {src}:",
            file=sys.stderr,
        )
        for component in cycles:
            print(f"\n  cycle among: {', '.join(component)}", file=sys.stderr)
            members = set(component)
            for a in component:
                for b, (path, line) in sorted(edges[a].items()):
                    if b in members:
                        print(f"    {a} -> {b}    ({path}:{line})", file=sys.stderr)
        print(
            "\nEach module may use only modules below it: move what the lower"
            " module needs down, or out into a module both can use.",
            file=sys.stderr,
        )
        return 1

    print(f"module order, bottom first ({len(components)} modules, no cycle):")
    for (name,) in components:
        uses = ", ".join(sorted(edges[name])) or "-"
        print(f"  {name:<16} uses {uses}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
