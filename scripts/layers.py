#!/usr/bin/env python3
"""Lists which of runner's top-level modules use which, from the `crate::` paths in src/.

The layers are meant to point one way (see docs/design.md); this prints every
module -> module edge with the files that make it, then any edge that runs up the
layers below and any circle between modules; it exits 1 if there is either. With
--files it prints file -> module edges instead. Comments and doc text are ignored.

    scripts/layers.py            # module edges and circles
    scripts/layers.py --files    # one line per file and the modules it uses
"""

import os
import re
import sys
from collections import defaultdict

# Top to bottom, as docs/design.md draws them. A module may use modules of its own layer
# or below, never above; one missing here is reported.
LAYERS = [
    ["commands", "fuzzing"],
    ["chain", "daemon", "metrics", "report"],
    ["error"],
    ["events"],
    ["hooks", "store"],
    ["exec", "record"],
    ["config", "plan", "taskdir", "schedule", "triggers"],
    ["state", "security", "signals", "interrupt", "retry", "epoch", "timestamp", "memory"],
    ["cli", "argv", "logging", "terminal"],
]

SRC = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "src")


def top_module(path):
    rel = os.path.relpath(path, SRC)
    first = rel.split(os.sep)[0]
    return first[:-3] if first.endswith(".rs") else first


def code_only(text):
    # Drop line comments (including //! and ///) and block comments; strings are rare
    # enough in `use` position that a plain scan is good enough.
    text = re.sub(r"/\*.*?\*/", "", text, flags=re.S)
    return "\n".join(line.split("//", 1)[0] for line in text.splitlines())


def used_modules(text):
    found = set()
    # `use crate::{a, b::c}` and `use crate::a::...`
    for m in re.finditer(r"\bcrate::\{([^;]*)\}", text, flags=re.S):
        for item in re.split(r",", m.group(1)):
            name = item.strip().split("::")[0].strip("{} \n")
            if name and name != "self":
                found.add(name)
    for m in re.finditer(r"\bcrate::([a-z_][a-z0-9_]*)", text):
        found.add(m.group(1))
    return found


def main():
    files = []
    for root, _, names in os.walk(SRC):
        for name in names:
            if name.endswith(".rs"):
                files.append(os.path.join(root, name))
    files.sort()
    edges = defaultdict(set)
    per_file = {}
    for path in files:
        with open(path, encoding="utf-8") as f:
            text = code_only(f.read())
        src = top_module(path)
        if src in ("lib", "main"):
            continue
        used = sorted(m for m in used_modules(text) if m != src)
        per_file[os.path.relpath(path, SRC)] = used
        for dst in used:
            edges[(src, dst)].add(os.path.relpath(path, SRC))

    if "--files" in sys.argv:
        for path, used in per_file.items():
            if used:
                print(f"{path}: {' '.join(used)}")
        return 0

    for (src, dst), via in sorted(edges.items()):
        print(f"{src} -> {dst}    ({', '.join(sorted(via))})")

    rank = {m: i for i, layer in enumerate(LAYERS) for m in layer}
    bad = 0
    print()
    for name in sorted({m for edge in edges for m in edge} - set(rank)):
        print(f"not in a layer: {name} (add it to LAYERS and docs/design.md)")
        bad = 1
    for (src, dst), via in sorted(edges.items()):
        if src not in rank or dst not in rank:
            continue
        if rank[dst] < rank[src]:
            print(f"runs up: {src} -> {dst}    ({', '.join(sorted(via))})")
            bad = 1
    if not bad:
        print("no arrow runs up")

    graph = defaultdict(set)
    for src, dst in edges:
        graph[src].add(dst)
    circles = []
    done = set()
    for node in sorted(graph):
        if node in done:
            continue
        members = sorted(m for m in reachable(graph, node) if node in reachable(graph, m))
        if members:
            done.update(members)
            circles.append(members)
    if circles:
        for members in circles:
            print(f"circle: {' , '.join(members)} (each reaches all the others)")
        return 1
    print("no circles")
    return bad


def reachable(graph, start):
    seen, todo = set(), [start]
    while todo:
        node = todo.pop()
        for nxt in graph.get(node, ()):
            if nxt not in seen:
                seen.add(nxt)
                todo.append(nxt)
    return seen


if __name__ == "__main__":
    sys.exit(main())
