"""The tree's picture (ivr.graph): every node and edge, labels, emergency highlight, escaping.

Mermaid output is read back by a strict line parser (every line must be a node, an edge or a
style line), and DOT output by Graphviz itself: `dot -Tsvg`, then the SVG's nodes, edges,
texts and colours. Graphviz is required: without the `dot` binary these tests fail, they
are not skipped (`apt-get install graphviz`).
"""

from __future__ import annotations

import html
import itertools
import os
import re
import shutil
import subprocess
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from lxml import etree

from ivr.exceptions import SourceError
from ivr.graph import (
    EMERGENCY_COLOUR,
    FAULT_COLOUR,
    GraphvizFailed,
    GraphvizMissing,
    dot,
    emergency_paths,
    mermaid,
    svg,
)
from ivr.tree import (
    CompiledTree,
    LanguageNode,
    MenuNode,
    compile_source,
    edges,
    load_tree_to_draw,
)

SVG_NS = {"s": "http://www.w3.org/2000/svg"}
FORMATS = ["mermaid", "dot"]


@dataclass
class Picture:
    """What a rendered picture says, by node name."""

    start: str = ""
    nodes: dict[str, list[str]] = field(default_factory=dict)  # name -> label lines
    shapes: dict[str, str] = field(default_factory=dict)
    edges: dict[tuple[str, str], str] = field(default_factory=dict)  # -> label
    edge_count: int = 0
    lit_nodes: set[str] = field(default_factory=set)
    lit_edges: set[tuple[str, str]] = field(default_factory=set)


# -- Mermaid, read back ----------------------------------------------------------------------

MERMAID_SHAPES = {  # every shape the Mermaid flowchart grammar has for a quoted label we use
    ("[", "]"),
    ("(", ")"),
    ("([", "])"),
    ("{", "}"),
    ("[(", ")]"),
    ("[/", "/]"),
    ("(((", ")))"),
    ("{{", "}}"),
    ("[[", "]]"),
    ("[\\", "/]"),
    ("((", "))"),
}
M_NODE = re.compile(r'^    (\w+)([\[({/\\]+)"([^"]*)"([\])}/]+)$')
M_EDGE = re.compile(r'^    (\w+) (-->|==>)(?:\|"([^"]*)"\|)? (\w+)$')
M_CLASSDEF = re.compile(r"^    classDef (\w+) (\S+)$")
M_CLASS = re.compile(r"^    class ([\w,]+) (\w+)$")
M_LINKSTYLE = re.compile(r"^    linkStyle ([\d,]+) (\S+)$")
RAW_FORBIDDEN = set('"[](){}|<>`\\')


def mermaid_unescape(text: str) -> str:
    def entity(m: re.Match[str]) -> str:
        code = m[1]
        return html.unescape(f"&#{code};" if code.isdigit() else f"&{code};")

    return re.sub(r"#(\w+);", entity, text)


def mermaid_label(raw: str) -> list[str]:
    for line in raw.split("<br/>"):
        bad = set(line) & RAW_FORBIDDEN
        assert not bad, f"unescaped {sorted(bad)} in Mermaid label {raw!r}"
        assert re.fullmatch(r"([^#]|#\w+;)*", line), f"bare # in Mermaid label {raw!r}"
    return [mermaid_unescape(line) for line in raw.split("<br/>")]


def read_mermaid(text: str) -> tuple[Picture, dict[str, str]]:
    lines = text.split("\n")
    assert lines[0] == "flowchart TD" and lines[-1] == "", text[:200]
    names: dict[str, str] = {}  # id -> node name
    pic = Picture()
    links: list[tuple[str, str]] = []
    class_defs: dict[str, str] = {}
    classes: dict[str, set[str]] = {}
    link_styles: dict[int, str] = {}
    for line in lines[1:-1]:
        if m := M_NODE.match(line):
            node_id, left, raw, right = m.groups()
            assert (left, right) in MERMAID_SHAPES, line
            assert node_id not in names, f"node id {node_id} defined twice"
            label = mermaid_label(raw)
            names[node_id] = label[0]
            if node_id != "entry":
                assert label[0] not in pic.nodes, f"node {label[0]} drawn twice"
                pic.nodes[label[0]] = label
                pic.shapes[label[0]] = left + right
        elif m := M_EDGE.match(line):
            source, arrow, raw, target = m.groups()
            assert source in names and target in names, f"edge before its nodes: {line}"
            links.append((source, target))
            if source == "entry":
                pic.start = names[target]
                continue
            key = (names[source], names[target])
            assert key not in pic.edges, f"edge {key} drawn twice"
            pic.edges[key] = " / ".join(mermaid_label(raw or ""))
            if arrow == "==>":
                pic.lit_edges.add(key)
        elif m := M_CLASSDEF.match(line):
            class_defs[m[1]] = m[2]
        elif m := M_CLASS.match(line):
            classes.setdefault(m[2], set()).update(m[1].split(","))
        elif m := M_LINKSTYLE.match(line):
            for index in m[1].split(","):
                link_styles[int(index)] = m[2]
        else:
            raise AssertionError(f"not a Mermaid line this module writes: {line!r}")
    pic.edge_count = len(links) - 1
    assert set(classes) <= set(class_defs), "class used without classDef"
    pic.lit_nodes = {names[i] for i in classes.get("emergency", set())}
    styled = {(names[links[i][0]], names[links[i][1]]) for i in link_styles}
    assert styled == pic.lit_edges, "thick arrows and red link styles disagree"
    for style in link_styles.values():
        assert f"stroke:{EMERGENCY_COLOUR}" in style
    if pic.lit_nodes:
        assert f"stroke:{EMERGENCY_COLOUR}" in class_defs["emergency"]
    return pic, class_defs


# -- DOT, read back by Graphviz ----------------------------------------------------------------


def graphviz(dot_text: str) -> bytes:
    if shutil.which("dot") is None:
        pytest.fail(
            "Graphviz `dot` is required to check the DOT output: apt-get install -y graphviz"
        )
    done = subprocess.run(
        ["dot", "-Tsvg"], input=dot_text.encode(), capture_output=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr.decode()
    assert not done.stderr, f"Graphviz warned: {done.stderr.decode()}"
    return done.stdout


def read_dot(dot_text: str) -> Picture:
    root = etree.fromstring(graphviz(dot_text))
    pic = Picture()
    names: dict[str, str] = {}
    for g in root.iterfind(".//s:g[@class='node']", SVG_NS):
        node_id = g.findtext("s:title", namespaces=SVG_NS)
        texts = [t.text or "" for t in g.iterfind("s:text", SVG_NS)]
        assert node_id and node_id not in names
        names[node_id] = texts[0]
        if node_id == "entry":
            continue
        assert texts[0] not in pic.nodes, f"node {texts[0]} drawn twice"
        pic.nodes[texts[0]] = texts
        outline = g.find("s:polygon", SVG_NS)
        if outline is None:
            outline = g.find("s:ellipse", SVG_NS)
        if outline is None:
            outline = g.find("s:path", SVG_NS)
        assert outline is not None, node_id
        if outline.get("stroke") == EMERGENCY_COLOUR:
            pic.lit_nodes.add(texts[0])
    for g in root.iterfind(".//s:g[@class='edge']", SVG_NS):
        title = g.findtext("s:title", namespaces=SVG_NS) or ""
        source, target = title.split("->")
        if source == "entry":
            pic.start = names[target]
            continue
        key = (names[source], names[target])
        assert key not in pic.edges, f"edge {key} drawn twice"
        pic.edges[key] = " / ".join(t.text or "" for t in g.iterfind("s:text", SVG_NS))
        pic.edge_count += 1
        line = g.find("s:path", SVG_NS)
        assert line is not None
        if line.get("stroke") == EMERGENCY_COLOUR:
            pic.lit_edges.add(key)
    return pic


def picture(tree: CompiledTree, fmt: str) -> Picture:
    return read_mermaid(mermaid(tree))[0] if fmt == "mermaid" else read_dot(dot(tree))


@pytest.fixture(params=["hotline", "mini"])
def any_tree(request: pytest.FixtureRequest) -> CompiledTree:
    tree: CompiledTree = request.getfixturevalue(f"{request.param}_tree")
    return tree


# -- trees built for these tests ----------------------------------------------------------------

TRICKY = 'say "help" [now] (x) | a#1 <br/> & \\ {y} `z` 帮助 #quot; &amp;'
ESCAPES = """
start: main
nodes:
  main:
    kind: menu
    prompt: main
    on_no_input: agent
    on_invalid: agent
    options:
      - key: "#"
        target: emergency
        speech:
          en:
            - 'TRICKY'
      - key: "2"
        target: agent
        speech:
          en: ["line one\\nline two"]
  emergency: {kind: queue, prompt: connecting, queue: security, priority: emergency}
  agent: {kind: queue, prompt: connecting, queue: general}
""".replace("TRICKY", TRICKY.replace("'", "''"))

# One node of each kind with an edge of its own; prompts from the hotline's catalogs.
KINDS = """
start: lang
nodes:
  lang:
    kind: language
    prompt: welcome
    options: [{key: "1", language: en}]
    shortcuts: [{key: "0", target: general}, {target: goodbye, speech: {en: [bye]}}]
    next: main
  main:
    kind: menu
    prompt: main_menu
    on_no_input: general
    on_invalid: goodbye
    operator_key: "0"
    operator: general
    options:
      - {key: "1", target: check}
      - {key: "2", target: desk}
      - {key: "3", target: find}
      - {key: "4", target: open_hours}
      - {speech: {zh-CN: [帮助, 救命]}, target: security}
  check: {kind: verify, steps: [uid, pin], on_success: security, on_failure: general,
          on_locked: desk}
  desk: {kind: transfer, number: "+15005550009", on_failure: general}
  find: {kind: ticket, on_not_found: general}
  open_hours: {kind: hours, timezone: Asia/Singapore, weekly: {mon: ["09:00-18:00"]},
               on_open: general, on_closed: goodbye}
  security: {kind: queue, prompt: security_connecting, queue: security, priority: emergency,
             on_leave: main}
  general: {kind: queue, prompt: general_connecting, queue: general}
  goodbye: {kind: hangup, prompt: goodbye}
"""

# Two equally short ways to the emergency queue (via x and via y) and a longer one (via z, w).
PATHS = """
start: language
nodes:
  language: {kind: language, prompt: welcome, options: [{key: "1", language: en}], next: main}
  main:
    kind: menu
    prompt: main
    on_no_input: agent
    on_invalid: agent
    options:
      - {key: "1", target: x}
      - {key: "2", target: y}
      - {key: "3", target: z}
  x: {kind: say, prompt: advice, next: emergency}
  y: {kind: say, prompt: advice, next: emergency}
  z:
    kind: menu
    prompt: more
    on_no_input: agent
    on_invalid: agent
    options: [{key: "1", target: w}]
  w: {kind: say, prompt: advice, next: emergency}
  emergency: {kind: queue, prompt: connecting, queue: security, priority: emergency}
  agent: {kind: queue, prompt: connecting, queue: general}
"""


@pytest.fixture(scope="module")
def escapes_tree(mini_tree: CompiledTree) -> CompiledTree:
    return compile_source(ESCAPES, "t.yaml", mini_tree.catalogs)


@pytest.fixture(scope="module")
def kinds_tree(hotline_tree: CompiledTree) -> CompiledTree:
    return compile_source(KINDS, "kinds.yaml", hotline_tree.catalogs)


@pytest.fixture(scope="module")
def paths_tree(mini_tree: CompiledTree) -> CompiledTree:
    return compile_source(PATHS, "paths.yaml", mini_tree.catalogs)


# -- every node and every edge -------------------------------------------------------------------


@pytest.mark.parametrize("fmt", FORMATS)
def test_every_node_is_drawn_once_with_its_kind_and_the_start_is_marked(
    any_tree: CompiledTree, fmt: str
) -> None:
    pic = picture(any_tree, fmt)
    assert sorted(pic.nodes) == sorted(any_tree.tree.nodes)  # once each (the readers check)
    for name, node in any_tree.tree.nodes.items():
        prompt = getattr(node, "prompt", None)
        assert pic.nodes[name][1] == (f"{node.kind} · {prompt}" if prompt else node.kind)
    assert pic.start == any_tree.tree.start


@pytest.mark.parametrize("fmt", FORMATS)
def test_every_static_edge_is_drawn_once_with_what_takes_the_caller_along_it(
    any_tree: CompiledTree, fmt: str
) -> None:
    pic = picture(any_tree, fmt)
    expected: set[tuple[str, str]] = set()
    for name, node in any_tree.tree.nodes.items():
        for rel, target in edges(node):
            expected.add((name, target))
            label = pic.edges.get((name, target))
            assert label is not None, f"missing edge {name} -> {target} ({rel})"
            if rel[0] in ("options", "shortcuts"):
                assert isinstance(node, MenuNode | LanguageNode) and isinstance(rel[1], int)
                option = getattr(node, str(rel[0]))[rel[1]]
                if option.key is None:  # spoken only: labelled by its first word, in
                    # English, else in the one language it has (a Mandarin "no")
                    words = option.speech.get("en") or next(iter(option.speech.values()))
                    assert f'"{words[0]}"' in label, label
                else:
                    assert re.search(rf"(^|, ){re.escape(option.key)}( / |,|$)", label), label
            elif rel == ("operator",):
                assert isinstance(node, MenuNode)
                assert f"{node.operator_key} operator" in label
            else:
                word = {"on_no_input": "no input", "on_invalid": "invalid", "next": "next"}
                word |= {"on_open": "open", "on_closed": "closed"}
                word |= {"on_success": "ok", "on_failure": "fail", "on_not_found": "not found"}
                word |= {"after_agent": "after the agent"}
                word |= {"on_official": "ours", "on_not_official": "not ours"}
                word |= {"on_no_answer": "no answer", "incident_options": "while announced"}
                assert word[str(rel[0])] in label
    assert set(pic.edges) == expected
    assert pic.edge_count == len(expected)


def test_mermaid_has_one_line_per_edge_and_an_emergency_class(hotline_tree: CompiledTree) -> None:
    text = mermaid(hotline_tree)
    assert text.startswith("flowchart TD\n")
    pairs = {(n, t) for n, node in hotline_tree.tree.nodes.items() for _, t in edges(node)}
    arrows = [line for line in text.splitlines() if re.match(r"^    \w+ (-->|==>)", line)]
    assert len(arrows) == len(pairs) + 1  # and the arrow from the "call" marker to the start
    _, class_defs = read_mermaid(text)
    assert "emergency" in class_defs
    assert re.search(r"^    class (n\d+,)*n\d+ emergency$", text, re.M)


@pytest.mark.parametrize("fmt", FORMATS)
def test_each_kind_of_edge_has_its_own_label(kinds_tree: CompiledTree, fmt: str) -> None:
    pic = picture(kinds_tree, fmt)
    assert pic.edges == {
        ("lang", "main"): "next",
        ("lang", "general"): "0",
        ("lang", "goodbye"): '"bye"',
        ("main", "check"): "1",
        ("main", "desk"): "2",
        ("main", "find"): "3",
        ("main", "open_hours"): "4",
        ("main", "security"): '"帮助"',  # spoken only, and not in English: its first word
        ("main", "general"): "no input, 0 operator",
        ("main", "goodbye"): "invalid",
        ("check", "security"): "ok",
        ("check", "general"): "fail",
        ("check", "desk"): "locked",
        ("desk", "general"): "no answer",
        ("find", "general"): "not found",
        ("open_hours", "general"): "open",
        ("open_hours", "goodbye"): "closed",
        ("security", "main"): "leave",
    }
    assert pic.nodes["check"] == ["check", "verify"]
    assert pic.nodes["desk"] == ["desk", "transfer", "+15005550009"]
    assert pic.nodes["find"] == ["find", "ticket · ticket_enter"]
    assert pic.nodes["open_hours"] == ["open_hours", "hours", "Asia/Singapore"]
    assert pic.nodes["security"] == [
        "security",
        "queue · security_connecting",
        "security · emergency",
    ]


@pytest.mark.parametrize("fmt", FORMATS)
def test_edges_between_the_same_nodes_are_merged(hotline_tree: CompiledTree, fmt: str) -> None:
    pic = picture(hotline_tree, fmt)
    assert pic.edges[("main_menu", "agent_general")] == "no input, invalid, 0 operator"
    assert pic.edges[("emergency_verify", "emergency_queue")] == "ok, fail"
    assert pic.edges[("account_password_next", "agent_account")] == (
        '1 / "agent", no input, invalid, 0 operator'
    )


def test_node_shapes_follow_the_kind(kinds_tree: CompiledTree) -> None:
    pic = picture(kinds_tree, "mermaid")
    assert pic.shapes["main"] == "[]"
    assert pic.shapes["security"] == "[()]"  # a cylinder
    assert pic.shapes["goodbye"] == "((()))"  # a double circle
    shape_of = {node.kind: pic.shapes[name] for name, node in kinds_tree.tree.nodes.items()}
    assert len(shape_of) == 8 and len(set(shape_of.values())) == 8  # one shape per kind
    text = dot(kinds_tree)
    assert re.search(r"^    n\d+ \[label=\"security\\n[^\]]*shape=cylinder", text, re.M)
    assert re.search(r"^    n\d+ \[label=\"goodbye\\n[^\]]*shape=doublecircle", text, re.M)


# -- emergency paths -------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", FORMATS)
def test_the_hotline_emergency_path_is_highlighted_and_nothing_else(
    hotline_tree: CompiledTree, fmt: str
) -> None:
    pic = picture(hotline_tree, fmt)
    path = ["language", "main_menu", "emergency", "emergency_verify", "emergency_queue"]
    assert pic.edges[("main_menu", "emergency")] == '1 / "hacked"'
    assert ("main_menu", "emergency") in pic.lit_edges
    assert pic.lit_nodes == set(path)
    assert pic.lit_edges == set(itertools.pairwise(path))
    assert "deposits_not_credited" not in pic.lit_nodes
    # A longer way to the same queue (suspicious login -> "freeze") is not highlighted.
    assert ("account_suspicious_login_next", "emergency") not in pic.lit_edges


@pytest.mark.parametrize("fmt", FORMATS)
def test_the_mini_emergency_path_is_highlighted(mini_tree: CompiledTree, fmt: str) -> None:
    pic = picture(mini_tree, fmt)
    assert pic.lit_nodes == {"language", "main", "emergency"}
    assert pic.lit_edges == {("language", "main"), ("main", "emergency")}
    assert pic.edges[("main", "emergency")] == '1 / "help"'


@pytest.mark.parametrize("fmt", FORMATS)
def test_every_shortest_path_is_highlighted_and_no_longer_one(
    paths_tree: CompiledTree, fmt: str
) -> None:
    pic = picture(paths_tree, fmt)
    assert pic.lit_nodes == {"language", "main", "x", "y", "emergency"}
    assert pic.lit_edges == {
        ("language", "main"),
        ("main", "x"),
        ("main", "y"),
        ("x", "emergency"),
        ("y", "emergency"),
    }
    found = emergency_paths(paths_tree)
    assert found.nodes == pic.lit_nodes and found.edges == pic.lit_edges


@pytest.mark.parametrize("fmt", FORMATS)
def test_only_emergency_queues_start_a_highlight(kinds_tree: CompiledTree, fmt: str) -> None:
    pic = picture(kinds_tree, fmt)
    # security is emergency; general (normal) is reached from everywhere and stays plain.
    # The keys to it (main 1, then the check), not the shorter way only said ("帮助").
    assert pic.lit_nodes == {"lang", "main", "check", "security"}
    assert pic.lit_edges == {("lang", "main"), ("main", "check"), ("check", "security")}


def test_a_tree_without_an_emergency_queue_has_no_highlight(mini_tree: CompiledTree) -> None:
    source = mini_tree.source.replace("priority: emergency", "priority: high")
    tree = compile_source(source, "t.yaml", mini_tree.catalogs)
    assert emergency_paths(tree).nodes == frozenset()
    text = mermaid(tree)
    assert "==>" not in text and "linkStyle" not in text
    assert not re.search(r"^    class .* emergency$", text, re.M)
    assert EMERGENCY_COLOUR not in dot(tree)


# -- escaping, determinism, SVG --------------------------------------------------------------


@pytest.mark.parametrize("fmt", FORMATS)
def test_labels_with_quotes_and_brackets_are_escaped(escapes_tree: CompiledTree, fmt: str) -> None:
    pic = picture(escapes_tree, fmt)  # each reader fails on a line or a label it cannot parse
    assert pic.edges[("main", "emergency")] == f'# / "{TRICKY}"'
    assert pic.edges[("main", "agent")] == '2 / "line one line two", no input, invalid'
    assert sorted(pic.nodes) == ["agent", "emergency", "main"]


def test_mermaid_escapes_use_entity_codes(escapes_tree: CompiledTree) -> None:
    text = mermaid(escapes_tree)
    line = next(x for x in text.splitlines() if "say" in x)
    assert "#quot;say #quot;help#quot; #91;now#93; #40;x#41; #124; a#35;1 #lt;br/#gt;" in line
    assert "#35;quot;" in line and "#amp;amp;" in line  # the keyword's own "#quot;" and "&amp;"


def test_dot_escapes_quotes_and_backslashes(escapes_tree: CompiledTree) -> None:
    text = dot(escapes_tree)
    assert r'label="# / \"say \"help\" [now] (x) | a#1 <br/> &amp; \\ {y}' in text


def test_output_is_deterministic(mini_tree: CompiledTree, hotline_tree: CompiledTree) -> None:
    again = compile_source(hotline_tree.source, "again.yaml", hotline_tree.catalogs)
    assert mermaid(again) == mermaid(hotline_tree)
    assert dot(again) == dot(hotline_tree)
    assert mermaid(mini_tree) != mermaid(hotline_tree)


@pytest.mark.parametrize("tree_name", ["hotline_tree", "mini_tree", "escapes_tree", "kinds_tree"])
def test_svg_is_rendered_by_graphviz(request: pytest.FixtureRequest, tree_name: str) -> None:
    if shutil.which("dot") is None:
        pytest.fail("Graphviz `dot` is required for svg(): apt-get install -y graphviz")
    tree: CompiledTree = request.getfixturevalue(tree_name)
    image = svg(tree)
    assert image.startswith("<?xml") and "<svg" in image
    root = etree.fromstring(image.encode())
    titles = {t.text for t in root.iterfind(".//s:g[@class='node']/s:title", SVG_NS)}
    assert len(titles) == len(tree.tree.nodes) + 1  # and the "call" marker


def test_svg_without_graphviz_says_how_to_get_it(
    mini_tree: CompiledTree, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(GraphvizMissing, match=r"apt-get install graphviz.*--format mermaid"):
        svg(mini_tree)


def test_svg_reports_a_graphviz_failure(
    mini_tree: CompiledTree, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    broken = tmp_path / "dot"
    broken.write_text("#!/bin/sh\necho 'Error: syntax error in line 1' >&2\nexit 1\n")
    broken.chmod(0o755)
    monkeypatch.setenv("PATH", f"{tmp_path}{os.pathsep}{os.environ['PATH']}")
    with pytest.raises(GraphvizFailed, match=r"exit 1.*syntax error in line 1"):
        svg(mini_tree)


def test_node_ids_are_safe_identifiers(hotline_tree: CompiledTree) -> None:
    ids = re.findall(r"^    (\w+)[\[({/]", mermaid(hotline_tree), re.M)
    assert ids[0] == "entry" and ids[1:] == [f"n{i}" for i in range(len(hotline_tree.tree.nodes))]
    assert Counter(ids).most_common(1)[0][1] == 1


# -- a tree drawn to find its faults -------------------------------------------------------------

# An operator's draft: a say loop behind 2, a typo'd target behind 3, a node left unlinked.
FAULTY = """
start: main
nodes:
  main:
    kind: menu
    prompt: main
    on_no_input: agent
    on_invalid: agent
    options:
      - {key: "1", target: emergency}
      - {key: "2", target: a}
      - {key: "3", target: agnet}
  a: {kind: say, prompt: advice, next: b}
  b: {kind: say, prompt: advice, next: a}
  orphan: {kind: hangup, prompt: goodbye}
  emergency: {kind: queue, prompt: connecting, queue: security, priority: emergency}
  agent: {kind: queue, prompt: connecting, queue: general}
"""


@pytest.fixture(scope="module")
def faulty_tree(mini_tree: CompiledTree) -> CompiledTree:
    with pytest.raises(SourceError):  # refused as ever: served nowhere
        compile_source(FAULTY, "draft.yaml", mini_tree.catalogs)
    return compile_source(FAULTY, "draft.yaml", mini_tree.catalogs, keep_errors=True)


def test_a_faulty_tree_is_drawn_with_each_fault_marked_in_mermaid(
    faulty_tree: CompiledTree,
) -> None:
    pic, class_defs = read_mermaid(mermaid(faulty_tree))
    # the typo'd target is drawn as a node of its own, with the edge that leads to it
    assert pic.nodes["agnet"] == ["agnet", "error: unknown node"]
    assert pic.edges[("main", "agnet")] == "3"
    assert pic.nodes["a"][-1] == "error: loop with no input or exit: a -> b -> a"
    assert pic.nodes["orphan"][-1] == "error: unreachable: no path from the start node leads here"
    assert pic.nodes["main"][-1].startswith("error: unknown node 'agnet'")
    assert f"stroke:{FAULT_COLOUR}" in class_defs["fault"]
    ids = dict(re.findall(r'^    (\w+)[\[({/\\]+"([^"<]+)', mermaid(faulty_tree), re.M))
    marked = re.search(r"^    class ([\w,]+) fault$", mermaid(faulty_tree), re.M)
    assert marked is not None
    assert {ids[i] for i in marked[1].split(",")} == {"main", "a", "orphan", "agnet"}
    assert pic.lit_nodes == {"main", "emergency"}  # the emergency path is still drawn


def test_a_faulty_tree_is_drawn_with_each_fault_marked_by_graphviz(
    faulty_tree: CompiledTree,
) -> None:
    root = etree.fromstring(graphviz(dot(faulty_tree)))
    strokes = {}
    for g in root.iterfind(".//s:g[@class='node']", SVG_NS):
        texts = [t.text or "" for t in g.iterfind("s:text", SVG_NS)]
        outline = next(e for e in g if e.tag.endswith(("polygon", "ellipse", "path")))
        strokes[texts[0]] = (outline.get("stroke"), outline.get("stroke-dasharray"), texts)
    for name in ("main", "a", "orphan", "agnet"):
        stroke, dashes, _ = strokes[name]
        assert stroke == FAULT_COLOUR and dashes, name
    assert strokes["agnet"][2] == ["agnet", "error: unknown node"]
    assert strokes["b"][0] != FAULT_COLOUR and not strokes["b"][1]
    assert strokes["emergency"][0] == EMERGENCY_COLOUR


def test_a_tree_that_loads_has_no_fault_drawn(hotline_tree: CompiledTree) -> None:
    assert "fault" not in mermaid(hotline_tree) and "error:" not in mermaid(hotline_tree)
    assert FAULT_COLOUR not in dot(hotline_tree)


def test_a_tree_whose_schema_is_wrong_is_not_drawn(tmp_path: Path) -> None:
    """Nothing to draw: a node without its kind, a YAML error."""
    bad = tmp_path / "bad.yaml"
    bad.write_text("start: main\nnodes:\n  main: {prompt: main}\n", encoding="utf-8")
    with pytest.raises(SourceError):
        load_tree_to_draw(bad, Path(__file__).parent / "data" / "prompts")
