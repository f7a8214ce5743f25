"""A picture of a call tree, for `ivr routes graph` and the dashboard: Mermaid, DOT or SVG.

An operator reviewing a tree (or a change to it) needs to see at a glance where each key
and each silence leads, and above all that the stolen-account path reaches the security
queue without detours. So the picture shows:

* every node once, labelled with its name, its kind and its prompt key (plus the queue and
  priority of a queue, the number of a transfer, the time zone of an hours node), with a
  shape per kind; an arrow from a small "call" marker points at the start node;
* every static edge of `ivr.tree.edges`, labelled with what takes the caller along it: a menu
  option's key and its first English keyword (`1 / "hacked"`), `no input`, `invalid`,
  `0 operator`, `next`, `open` / `closed`, `ok` / `fail` / `locked`, `not found`, `leave`,
  `no answer`. Edges between the same two nodes are drawn once, their labels joined by ", ";
* the emergency paths in red: the queues whose priority is "emergency", and every node and
  edge on a *shortest* path (fewest edges) from the start node to one of them. Shortest
  only: nearly every node can reach the main menu and from there the emergency option, so
  "can reach an emergency queue" would colour the whole tree. All shortest paths are drawn
  (not one chosen among equals), so the result does not depend on the order of the file.

A tree with errors in its graph (`ivr.tree.load_tree_to_draw`: its YAML and schema hold) is
drawn too, so that an operator sees where the fault is: each node an error is about is drawn
dashed in orange with the start of its first error, and each target no node has is drawn as
a node of its own, "unknown node". A tree that loads has none of these.

Dynamic moves (the repeat and back keys, the engine's fallback queue) are not edges of the
tree and are not drawn. The output is deterministic: the same tree gives the same text.
Node ids are `n0`, `n1`, ... in the file's node order, so no node name has to be a valid
identifier in either language; labels are escaped for each format.
"""

from __future__ import annotations

import subprocess
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass

from ivr.prompts import BASE_LANGUAGE
from ivr.tree import (
    CompiledTree,
    HoursNode,
    LanguageNode,
    MenuNode,
    Node,
    Option,
    QueueNode,
    TransferNode,
    edges,
)

EMERGENCY_COLOUR = "#d00000"
FAULT_COLOUR = "#b35c00"  # a node with an error, in a tree drawn to find it (`load_tree_to_draw`)
FAULT_TEXT = 70  # characters of a fault's message shown in its node
ENTRY_ID = "entry"  # the "call" marker; tree nodes are n0, n1, ...
SVG_TIMEOUT = 30  # seconds for Graphviz to lay the tree out


class GraphvizMissing(RuntimeError):
    """The Graphviz `dot` program, needed for SVG, is not installed."""

    def __init__(self) -> None:
        super().__init__(
            "SVG needs the Graphviz `dot` program, which is not on PATH: install Graphviz "
            "(`apt-get install graphviz`, `brew install graphviz`) or use --format mermaid "
            "or --format dot"
        )


class GraphvizFailed(RuntimeError):
    """Graphviz `dot` ran but did not produce SVG (refused the input, or timed out)."""


@dataclass(frozen=True)
class EmergencyPaths:
    """What is highlighted: node names and (source, target) pairs of node names."""

    nodes: frozenset[str]
    edges: frozenset[tuple[str, str]]


@dataclass(frozen=True)
class _Edge:
    source: str
    target: str
    labels: tuple[str, ...]

    @property
    def label(self) -> str:
        return ", ".join(self.labels)


# -- the graph both formats draw -------------------------------------------------------------


def emergency_paths(tree: CompiledTree) -> EmergencyPaths:
    """The emergency queues, and the nodes and edges on the shortest paths from start to them.

    Node v is on a shortest path from start s to queue q when d(s, v) + d(v, q) = d(s, q);
    edge (u, v) is when d(s, u) + 1 + d(v, q) = d(s, q). Distances count edges. The ways a
    caller on a keypad can take, where there are any: a spoken-only shortcut ("hacked" said
    at the first prompt) would hide the keys that lead there.
    """
    nodes = tree.tree.nodes
    keyed, every = _successors(nodes, keyed_only=True), _successors(nodes)
    lit: set[str] = set()
    lit_edges: set[tuple[str, str]] = set()
    for queue, node in nodes.items():
        if not (isinstance(node, QueueNode) and node.priority == "emergency"):
            continue
        lit.add(queue)
        for successors in (keyed, every):
            from_start = _distances(tree.tree.start, successors)
            if queue in from_start:
                _light(queue, successors, from_start, lit, lit_edges)
                break
    return EmergencyPaths(frozenset(lit), frozenset(lit_edges))


def _light(
    queue: str,
    successors: Mapping[str, list[str]],
    from_start: Mapping[str, int],
    lit: set[str],
    lit_edges: set[tuple[str, str]],
) -> None:
    predecessors: dict[str, list[str]] = {name: [] for name in successors}
    for name, targets in successors.items():
        for target in targets:
            predecessors[target].append(name)
    to_queue = _distances(queue, predecessors)
    length = from_start[queue]
    for name, targets in successors.items():
        if name not in from_start or name not in to_queue:
            continue
        if from_start[name] + to_queue[name] == length:
            lit.add(name)
        for target in targets:
            if target in to_queue and from_start[name] + 1 + to_queue[target] == length:
                lit_edges.add((name, target))


def _successors(nodes: Mapping[str, Node], *, keyed_only: bool = False) -> dict[str, list[str]]:
    return {
        name: list(
            dict.fromkeys(
                t
                for rel, t in edges(node)
                if t in nodes and (not keyed_only or _keyed(node, tuple(rel)))
            )
        )
        for name, node in nodes.items()
    }


def _keyed(node: Node, rel: tuple[str | int, ...]) -> bool:
    """Whether a caller on a keypad can take this edge (not an option only said)."""
    if rel[0] in ("options", "shortcuts") and isinstance(rel[1], int):
        option = getattr(node, str(rel[0]))[rel[1]]
        return not isinstance(option, Option) or option.key is not None
    return True


def _distances(origin: str, neighbours: Mapping[str, list[str]]) -> dict[str, int]:
    distance = {origin: 0}
    order = deque([origin])
    while order:
        name = order.popleft()
        for other in neighbours.get(name, ()):
            if other not in distance:
                distance[other] = distance[name] + 1
                order.append(other)
    return distance


def _node_lines(name: str, node: Node) -> list[str]:
    prompt = getattr(node, "prompt", None)
    lines = [name, f"{node.kind} · {prompt}" if isinstance(prompt, str) else node.kind]
    if isinstance(node, QueueNode):
        lines.append(f"{node.queue} · {node.priority}")
    elif isinstance(node, TransferNode):
        lines.append(node.number)
    elif isinstance(node, HoursNode):
        lines.append(node.timezone)
    return lines


_EDGE_LABELS = {
    "on_no_input": "no input",
    "on_invalid": "invalid",
    "next": "next",
    "on_open": "open",
    "on_closed": "closed",
    "on_success": "ok",
    "on_locked": "locked",
    "on_not_found": "not found",
    "on_official": "ours",
    "on_not_official": "not ours",
    "on_leave": "leave",
    "after_agent": "after the agent",
    "on_no_answer": "no answer",
}


def _option_label(option: Option) -> str:
    words = option.speech.get(BASE_LANGUAGE) or []
    if not words and option.key is None:
        # Spoken only, and not in English: its first word in whatever language it has.
        words = next(iter(option.speech.values()), [])
    parts = [option.key] if option.key is not None else []
    if words:
        parts.append(f'"{words[0]}"')
    return " / ".join(parts)


def _edge_label(node: Node, rel: tuple[str | int, ...]) -> str:
    if isinstance(node, MenuNode) and rel[0] == "options" and isinstance(rel[1], int):
        return _option_label(node.options[rel[1]])
    if isinstance(node, LanguageNode) and rel[0] == "shortcuts" and isinstance(rel[1], int):
        return _option_label(node.shortcuts[rel[1]])
    if isinstance(node, MenuNode) and rel[0] == "incident_options" and isinstance(rel[1], int):
        return f"{node.incident_options[rel[1]].key} while announced"
    if isinstance(node, MenuNode) and rel == ("operator",):
        return f"{node.operator_key} operator"
    if rel == ("on_failure",):
        return "no answer" if isinstance(node, TransferNode) else "fail"
    name = str(rel[0])
    return _EDGE_LABELS.get(name, name)


def _edges(tree: CompiledTree) -> list[_Edge]:
    """Every static edge, those between the same two nodes merged, in file order."""
    merged: dict[tuple[str, str], list[str]] = {}
    for name, node in tree.tree.nodes.items():
        for rel, target in edges(node):
            labels = merged.setdefault((name, target), [])
            label = _edge_label(node, tuple(rel))
            if label not in labels:
                labels.append(label)
    return [_Edge(s, t, tuple(labels)) for (s, t), labels in merged.items()]


def _ids(tree: CompiledTree) -> dict[str, str]:
    """Node ids, n0, n1, ... in file order; then u0, u1, ... for targets no node has (a tree
    drawn with its errors)."""
    ids = {name: f"n{i}" for i, name in enumerate(tree.tree.nodes)}
    for target in _targets(tree):
        if target not in ids:
            ids[target] = f"u{len(ids) - len(tree.tree.nodes)}"
    return ids


def _targets(tree: CompiledTree) -> list[str]:
    """Every node the tree names as a destination, the start first, in file order."""
    return [tree.tree.start] + [t for node in tree.tree.nodes.values() for _, t in edges(node)]


def faults(tree: CompiledTree) -> dict[str, str]:
    """The nodes an error is about, each with its first error's message; and each target no
    node has, "unknown node". Empty for a tree that loaded (its problems are warnings)."""
    nodes = tree.tree.nodes
    found: dict[str, str] = {}
    for problem in tree.warnings:
        if problem.severity != "error":
            continue
        named = [
            name
            for name in nodes
            if problem.path == f"nodes.{name}"
            or problem.path.startswith((f"nodes.{name}.", f"nodes.{name}["))
        ]
        if named:
            found.setdefault(max(named, key=len), problem.message)
    for target in _targets(tree):
        if target not in nodes:
            found.setdefault(target, "unknown node")
    return found


def _fault_line(message: str) -> str:
    short = message if len(message) <= FAULT_TEXT else message[: FAULT_TEXT - 1] + "…"
    return f"error: {short}"


def _unknown_targets(tree: CompiledTree, ids: Mapping[str, str]) -> list[str]:
    return [name for name in ids if name not in tree.tree.nodes]


# -- Mermaid ---------------------------------------------------------------------------------

# Shape brackets around a quoted label, per kind.
_MERMAID_SHAPES = {
    "menu": ("[", "]"),
    "say": ("(", ")"),
    "language": ("([", "])"),
    "hours": ("{", "}"),
    "queue": ("[(", ")]"),
    "transfer": ("[/", "/]"),
    "hangup": ("(((", ")))"),
    "verify": ("{{", "}}"),
    "ticket": ("[[", "]]"),
    "number_check": ("[\\", "/]"),
}
# Mermaid's entity codes: inside a quoted label these would otherwise end the label, start
# an entity (#), or be taken as markup or shape syntax by some renderers.
_MERMAID_ESCAPES = {
    "#": "#35;",
    '"': "#quot;",
    "&": "#amp;",
    "<": "#lt;",
    ">": "#gt;",
    "|": "#124;",
    "[": "#91;",
    "]": "#93;",
    "(": "#40;",
    ")": "#41;",
    "{": "#123;",
    "}": "#125;",
    "`": "#96;",
    "\\": "#92;",
}


def _mermaid_text(lines: list[str]) -> str:
    """One quoted Mermaid label: each line escaped, lines joined by <br/>."""
    escaped = (
        "".join(_MERMAID_ESCAPES.get(c, " " if c in "\r\n\t" else c) for c in line)
        for line in lines
    )
    return '"' + "<br/>".join(escaped) + '"'


def mermaid(tree: CompiledTree) -> str:
    """The tree as a Mermaid `flowchart TD` document (ends with a newline)."""
    ids = _ids(tree)
    lit = emergency_paths(tree)
    faulty = faults(tree)
    out = ["flowchart TD", f'    {ENTRY_ID}(("call"))']
    for name, node in tree.tree.nodes.items():
        left, right = _MERMAID_SHAPES.get(node.kind, ("[", "]"))
        lines = _node_lines(name, node)
        if name in faulty:
            lines.append(_fault_line(faulty[name]))
        out.append(f"    {ids[name]}{left}{_mermaid_text(lines)}{right}")
    for name in _unknown_targets(tree, ids):
        out.append(f"    {ids[name]}[{_mermaid_text([name, _fault_line(faulty[name])])}]")
    out.append(f"    {ENTRY_ID} --> {ids[tree.tree.start]}")
    lit_links: list[int] = []
    for index, edge in enumerate(_edges(tree), start=1):  # link 0 is the entry arrow
        arrow = "-->"
        if (edge.source, edge.target) in lit.edges:
            arrow = "==>"
            lit_links.append(index)
        label = _mermaid_text([edge.label])
        out.append(f"    {ids[edge.source]} {arrow}|{label}| {ids[edge.target]}")
    out.append("    classDef entry fill:#000,stroke:#000,color:#fff")
    out.append(
        f"    classDef emergency fill:#fde8e8,stroke:{EMERGENCY_COLOUR},"
        "stroke-width:3px,color:#7a0000"
    )
    out.append(f"    class {ENTRY_ID} entry")
    lit_ids = [ids[name] for name in tree.tree.nodes if name in lit.nodes]
    if lit_ids:
        out.append(f"    class {','.join(lit_ids)} emergency")
    if lit_links:
        out.append(
            f"    linkStyle {','.join(map(str, lit_links))} "
            f"stroke:{EMERGENCY_COLOUR},stroke-width:3px,color:{EMERGENCY_COLOUR}"
        )
    if faulty:
        out.append(
            f"    classDef fault fill:#fff1dc,stroke:{FAULT_COLOUR},stroke-width:3px,"
            "stroke-dasharray:6,color:#5a2e00"
        )
        out.append(f"    class {','.join(ids[name] for name in faulty)} fault")
    return "\n".join(out) + "\n"


# -- DOT and SVG -----------------------------------------------------------------------------

_DOT_SHAPES = {
    "menu": "shape=box",
    "say": 'shape=box, style="rounded"',
    "language": "shape=ellipse",
    "hours": "shape=diamond",
    "queue": "shape=cylinder",
    "transfer": "shape=parallelogram",
    "hangup": "shape=doublecircle",
    "verify": "shape=hexagon",
    "ticket": "shape=tab",
    "number_check": "shape=trapezium",
}


def _dot_text(lines: list[str]) -> str:
    """One quoted DOT string: backslashes and quotes escaped, `&` kept literal (Graphviz reads
    HTML entities in labels), lines joined by DOT's centred line break."""
    escaped = (
        line.replace("\\", "\\\\")
        .replace('"', '\\"')
        .replace("&", "&amp;")
        .replace("\r", " ")
        .replace("\n", " ")
        for line in lines
    )
    return '"' + "\\n".join(escaped) + '"'


def dot(tree: CompiledTree) -> str:
    """The tree as a Graphviz DOT document (ends with a newline)."""
    ids = _ids(tree)
    lit = emergency_paths(tree)
    red = f'"{EMERGENCY_COLOUR}"'
    highlight = f"color={red}, fontcolor={red}, penwidth=3"
    out = [
        "digraph ivr {",
        '    graph [rankdir=TB, charset="UTF-8"];',
        '    node [fontname="Helvetica", fontsize=11];',
        '    edge [fontname="Helvetica", fontsize=10];',
        f'    {ENTRY_ID} [label="call", shape=circle, style=filled, fillcolor=black, '
        "fontcolor=white, fontsize=9];",
    ]
    faulty = faults(tree)
    fault = f'color="{FAULT_COLOUR}", fontcolor="{FAULT_COLOUR}", penwidth=3'
    for name, node in tree.tree.nodes.items():
        lines = _node_lines(name, node)
        if name in faulty:
            lines.append(_fault_line(faulty[name]))
        attrs = [f"label={_dot_text(lines)}", _DOT_SHAPES.get(node.kind, "shape=box")]
        if name in faulty:  # dashed, and still rounded if its kind is
            attrs[1] = attrs[1].replace('style="rounded"', 'style="rounded,dashed"')
            attrs.append(fault if "dashed" in attrs[1] else f"{fault}, style=dashed")
        elif name in lit.nodes:
            attrs.append(highlight)
        out.append(f"    {ids[name]} [{', '.join(attrs)}];")
    for name in _unknown_targets(tree, ids):
        label = _dot_text([name, _fault_line(faulty[name])])
        out.append(f"    {ids[name]} [label={label}, shape=box, {fault}, style=dashed];")
    out.append(f"    {ENTRY_ID} -> {ids[tree.tree.start]};")
    for edge in _edges(tree):
        attrs = [f"label={_dot_text([edge.label])}"]
        if (edge.source, edge.target) in lit.edges:
            attrs.append(f"{highlight}, style=bold")
        out.append(f"    {ids[edge.source]} -> {ids[edge.target]} [{', '.join(attrs)}];")
    out.append("}")
    return "\n".join(out) + "\n"


def svg(tree: CompiledTree) -> str:
    """The DOT picture rendered to SVG by Graphviz's `dot`; GraphvizMissing if it is absent."""
    try:
        done = subprocess.run(
            ["dot", "-Tsvg"],
            input=dot(tree).encode(),
            capture_output=True,
            timeout=SVG_TIMEOUT,
            check=False,
        )
    except FileNotFoundError:
        raise GraphvizMissing() from None
    except subprocess.TimeoutExpired:
        raise GraphvizFailed(f"Graphviz dot took more than {SVG_TIMEOUT} s") from None
    if done.returncode != 0:
        detail = done.stderr.decode(errors="replace").strip()
        raise GraphvizFailed(f"Graphviz dot failed (exit {done.returncode}): {detail}")
    return done.stdout.decode()
