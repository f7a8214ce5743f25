"""ivr.yamlfile: safe YAML with the line of every value, refused with file:line when bad."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from ivr.exceptions import Problem, SourceError
from ivr.yamlfile import MAX_BYTES, MAX_EXPANDED_NODES, dotted, load_file, load_text, read_source


def line_of(text: str, needle: str) -> int:
    """The 1-based line of the only line of `text` that contains `needle`."""
    hits = [n for n, line in enumerate(text.splitlines(), start=1) if needle in line]
    assert len(hits) == 1, f"{needle!r} is on lines {hits}"
    return hits[0]


def refused(text: str, file: str = "f.yaml") -> list[Problem]:
    with pytest.raises(SourceError) as info:
        load_text(text, file)
    return info.value.problems


def only(problems: list[Problem]) -> Problem:
    assert len(problems) == 1, [str(p) for p in problems]
    return problems[0]


# -- what a good file gives ---------------------------------------------------------------------

NESTED = """\
start: main
nodes:
  main:
    kind: menu
    options:
      - key: "1"
        target: x
      - {key: "2", target: y}
"""


def test_every_path_has_the_line_it_starts_on() -> None:
    doc = load_text(NESTED, "f.yaml")
    assert doc.data["nodes"]["main"]["options"][1] == {"key": "2", "target": "y"}
    assert doc.lines[()] == 1
    assert doc.lines[("start",)] == line_of(NESTED, "start:")
    assert doc.lines[("nodes", "main")] == line_of(NESTED, "main:")
    assert doc.lines[("nodes", "main", "options")] == line_of(NESTED, "options:")
    assert doc.lines[("nodes", "main", "options", 0)] == line_of(NESTED, 'key: "1"')
    assert doc.lines[("nodes", "main", "options", 0, "target")] == line_of(NESTED, "target: x")
    assert doc.lines[("nodes", "main", "options", 1, "target")] == line_of(NESTED, "target: y")


def test_line_of_falls_back_to_the_nearest_ancestor() -> None:
    doc = load_text(NESTED, "f.yaml")
    assert doc.line_of(("nodes", "main", "timeout")) == line_of(NESTED, "main:")
    assert doc.line_of(("nowhere", "at", "all")) == 1


def test_locate_skips_validator_tags_that_are_not_in_the_file() -> None:
    doc = load_text(NESTED, "f.yaml")
    # pydantic puts the union tag ("menu") into the loc of a discriminated union member.
    path, line = doc.locate(("nodes", "main", "menu", "options", 0, "target"))
    assert path == ("nodes", "main", "options", 0, "target")
    assert line == line_of(NESTED, "target: x")


def test_problem_carries_file_line_dotted_path_and_severity() -> None:
    doc = load_text(NESTED, "routes/x.yaml")
    problem = doc.problem(("nodes", "main", "menu", "options", 1, "key"), "bad", "warning")
    line = line_of(NESTED, 'key: "2"')
    assert problem == Problem("routes/x.yaml", line, "nodes.main.options[1].key", "bad", "warning")
    assert str(problem) == f"routes/x.yaml:{line}: warning: nodes.main.options[1].key: bad"


def test_problem_severity_is_error_unless_warning() -> None:
    doc = load_text(NESTED, "f.yaml")
    assert doc.problem(("start",), "m").severity == "error"
    assert doc.problem(("start",), "m", "fatal").severity == "error"


def test_dotted_paths() -> None:
    assert dotted(()) == ""
    assert dotted(("nodes",)) == "nodes"
    assert dotted(("nodes", "main", "options", 0, "speech", "zh-CN")) == (
        "nodes.main.options[0].speech.zh-CN"
    )
    assert dotted(("a", 0, 1)) == "a[0][1]"


def test_problem_without_line_or_path_prints_file_only() -> None:
    assert str(Problem("t.yaml", None, "", "gone")) == "t.yaml: error: gone"
    assert str(Problem("t.yaml", 3, "", "bad")) == "t.yaml:3: error: bad"


def test_crlf_line_endings_keep_line_numbers() -> None:
    doc = load_text("a: 1\r\nb:\r\n  c: 2\r\n", "f.yaml")
    assert doc.data == {"a": 1, "b": {"c": 2}}
    assert doc.lines[("b", "c")] == 3


def test_utf8_byte_order_mark_is_accepted(tmp_path: Path) -> None:
    path = tmp_path / "bom.yaml"
    path.write_bytes(b"\xef\xbb\xbfa: 1\nb: 2\n")
    doc = load_file(path)
    assert doc.data == {"a": 1, "b": 2}
    assert doc.lines[("b",)] == 2


# -- syntax -----------------------------------------------------------------------------------


def test_syntax_error_names_its_line() -> None:
    text = "start: main\nnodes:\n  main:\n    kind: menu\n   prompt: main\n"
    problem = only(refused(text, "routes/t.yaml"))
    assert problem.line == line_of(text, "   prompt: main")
    assert problem.path == ""
    assert str(problem).startswith(f"routes/t.yaml:{problem.line}: error: not valid YAML: ")
    assert "expected <block end>" in problem.message


def test_tab_indentation_is_a_syntax_error_on_its_line() -> None:
    text = "a:\n\tb: 1\n"
    problem = only(refused(text))
    assert problem.line == 2
    assert problem.message.startswith("not valid YAML: ")
    assert "'\\t'" in problem.message


def test_a_key_indented_less_than_its_mapping_says_both_indentations() -> None:
    """PyYAML's "expected <block end>, but found '<block mapping start>'" and the line its
    block began on (the first node's) told an operator nothing: the hint says how far this
    line and the key above it are indented."""
    text = "nodes:\n  main:\n    kind: menu\n   prompt: main\n"
    problem = only(refused(text))
    assert problem.line == 4
    assert problem.message.endswith(
        "(wrong indentation: this line is indented 3 spaces, the key on line 3 above it 4, and "
        "no key above it 3: line it up exactly with the other keys of its own mapping)"
    )
    assert "started on line" not in problem.message


def test_a_list_items_key_indented_off_its_item_counts_the_dash() -> None:
    text = 'options:\n  - key: "1"\n   target: main\n'
    problem = only(refused(text))
    assert problem.line == 3
    assert "indented 3 spaces, the key on line 2 above it 4," in problem.message


def test_a_key_indented_deeper_than_a_key_with_a_value() -> None:
    text = "main:\n  kind: say\n    prompt: hello\n"
    problem = only(refused(text))
    assert problem.line == 3
    assert problem.message == (
        "not valid YAML: mapping values are not allowed here (wrong indentation: this line is "
        "indented 4 spaces, deeper than the key on line 2 (2), which already has a value: line "
        "it up with that key)"
    )


def test_a_value_with_colon_space_in_it_needs_quotes() -> None:
    problem = only(refused("main:\n  next: agent: now\n"))
    assert problem.line == 2
    assert problem.message.endswith(
        "(a second ': ' on this line: a value with ': ' in it needs quotes (key: \"a: b\"))"
    )


def test_a_key_without_its_colon_is_refused_on_its_own_line() -> None:
    text = "main:\n  kind: say\n  prompt hello\n  next: bye\n"
    problem = only(refused(text))
    assert problem.line == line_of(text, "prompt hello")
    assert problem.message.endswith("(a key without ':' after it: write key: value)")


def test_a_tab_after_a_colon_is_no_indentation() -> None:
    problem = only(refused("main:\n  kind:\tsay\n"))
    assert problem.line == 2
    assert problem.message.endswith(
        "(a tab: YAML takes spaces, not tabs, after a ':' or '-'; type a space)"
    )


def test_a_no_break_space_in_a_key_is_named() -> None:
    """Pasted from a chat or a web page, a no-break space looks like indentation; YAML reads
    it as part of the key, which the schema then called an unknown node named "  next"."""
    text = "nodes:\n  main:\n    kind: say\n  \u00a0 next: bye\n"
    problem = only(refused(text))
    assert problem.line == 4
    assert problem.message.startswith(
        "the key 'next' holds a no-break space (U+00A0), which looks like a space but is none"
    )


def test_a_full_width_space_indenting_a_line_is_named_on_its_line() -> None:
    """An input method's full-width mode types U+3000 for a space: YAML reads the line as
    text at the margin, and the error shows lines later; it is reported where it is."""
    text = "nodes:\n  main:\n    kind: say\n\u3000\u3000next: bye\n  other:\n    kind: hangup\n"
    problem = only(refused(text))
    assert problem.line == 4
    assert "indented with an ideographic space (U+3000)" in problem.message


def test_a_stored_tree_is_not_refused_for_an_odd_space_in_a_key() -> None:
    """Checks added later do not stop the calls on a version accepted before."""
    assert load_text("a\u00a0b: 1\n", "f.yaml", stored=True).data == {"a\u00a0b": 1}


def test_unclosed_quote_points_at_where_the_quote_opens() -> None:
    text = 'start: "main\nnodes:\n  main: {kind: hangup}\n'
    problem = only(refused(text))
    opened = line_of(text, 'start: "main')
    assert problem.line == opened or f"line {opened}" in problem.message


def test_more_than_one_document_is_refused() -> None:
    text = "a: 1\n---\nb: 2\n"
    problem = only(refused(text))
    assert problem.line == 2
    assert "expected a single document" in problem.message


def test_undefined_alias_is_refused_with_its_line() -> None:
    problem = only(refused("a: 1\nb: *nope\n"))
    assert str(problem) == "f.yaml:2: error: not valid YAML: found undefined alias 'nope'"


def test_python_tags_are_not_constructed() -> None:
    problem = only(refused("a: 1\nb: !!python/object/apply:os.system [echo hi]\n"))
    assert problem.line == 2
    assert "could not determine a constructor" in problem.message


@pytest.mark.parametrize(
    "text",
    [
        "holidays: [2026-02-30]\n",
        "holidays: [2026-13-01]\n",
        "at: 2026-01-01 25:00:00\n",
        "n: !!int x\n",
        "n: !!float x\n",
    ],
    ids=["february-30", "month-13", "hour-25", "bad-int", "bad-float"],
)
def test_values_that_cannot_be_constructed_are_refused_with_their_line(text: str) -> None:
    problem = only(refused("start: main\n" + text))
    assert problem.file == "f.yaml"
    assert problem.line == 2


# -- empty, unreadable, too big ---------------------------------------------------------------


@pytest.mark.parametrize("text", ["", "\n\n", "# only a comment\n"])
def test_empty_file(text: str) -> None:
    problem = only(refused(text, "routes/t.yaml"))
    assert str(problem) == "routes/t.yaml:1: error: file is empty"


def test_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "nope.yaml"
    with pytest.raises(SourceError) as info:
        load_file(path)
    problem = only(info.value.problems)
    assert str(problem) == f"{path}: error: cannot read: No such file or directory"


def test_a_directory_is_not_a_file(tmp_path: Path) -> None:
    with pytest.raises(SourceError) as info:
        read_source(tmp_path)
    assert str(only(info.value.problems)) == f"{tmp_path}: error: cannot read: Is a directory"


def test_file_that_is_not_utf8(tmp_path: Path) -> None:
    path = tmp_path / "latin1.yaml"
    path.write_bytes("start: café\n".encode("latin-1"))
    with pytest.raises(SourceError) as info:
        load_file(path)
    problem = only(info.value.problems)
    assert str(problem) == f"{path}: error: not UTF-8 text"
    assert str(info.value) == f"{path}: error: not UTF-8 text"


def test_file_over_the_size_limit(tmp_path: Path) -> None:
    path = tmp_path / "big.yaml"
    text = "a: 1\n#"
    path.write_text(text + "x" * (MAX_BYTES + 1 - len(text)))
    assert path.stat().st_size == MAX_BYTES + 1
    with pytest.raises(SourceError) as info:
        load_file(path)
    assert str(only(info.value.problems)) == f"{path}: error: file is larger than 1000000 bytes"


def test_file_at_the_size_limit_is_read(tmp_path: Path) -> None:
    path = tmp_path / "limit.yaml"
    text = "a: 1\n#"
    path.write_text(text + "x" * (MAX_BYTES - len(text)))
    assert path.stat().st_size == MAX_BYTES
    assert load_file(path).data == {"a": 1}


def test_size_limit_counts_bytes_not_characters() -> None:
    text = "a: " + "中" * (MAX_BYTES // 3 + 10)  # fewer characters than the limit, more bytes
    assert len(text) < MAX_BYTES < len(text.encode())
    problem = only(refused(text))
    assert problem.message == f"file is larger than {MAX_BYTES} bytes"


# -- duplicate keys -----------------------------------------------------------------------------


def test_duplicate_node_name_names_both_lines() -> None:
    text = """\
start: main
nodes:
  main:
    kind: hangup
  other:
    kind: hangup
  main:
    kind: say
"""
    problem = only(refused(text, "t.yaml"))
    first, second = [n for n, line in enumerate(text.splitlines(), 1) if line == "  main:"]
    assert (
        str(problem) == f"t.yaml:{second}: error: nodes.main: duplicate key (first on line {first})"
    )


def test_duplicate_key_in_a_flow_mapping() -> None:
    problem = only(refused("a: 1\nopt: {key: '1', key: '2'}\n"))
    assert str(problem) == "f.yaml:2: error: opt.key: duplicate key (first on line 2)"


def test_every_duplicate_key_is_reported() -> None:
    text = "a: 1\nb:\n  c: 1\n  c: 2\na: 2\n"
    problems = refused(text)
    assert [str(p) for p in problems] == [
        "f.yaml:4: error: b.c: duplicate key (first on line 3)",
        "f.yaml:5: error: a: duplicate key (first on line 1)",
    ]


def test_merge_keys_are_not_duplicates() -> None:
    text = "base: &b {x: 1}\nmore: &m {y: 2}\nnode:\n  <<: *b\n  <<: *m\n  z: 3\n"
    assert load_text(text, "f.yaml").data["node"]["z"] == 3


# -- alias bombs and nesting --------------------------------------------------------------------


def billion_laughs(levels: int = 9, width: int = 9) -> str:
    lines = ["a0: &a0 [lol, lol]"]
    for i in range(1, levels + 1):
        lines.append(f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * width) + "]")
    return "\n".join(lines) + "\n"


def first_level_over_limit(levels: int = 9, width: int = 9) -> int:
    size = 3  # a0: the sequence and its two scalars
    for level in range(1, levels + 1):
        size = 1 + width * size
        if size > MAX_EXPANDED_NODES:
            return level
    raise AssertionError("the bomb is too small to test the guard")


def test_alias_bomb_is_refused_quickly_with_a_clear_message() -> None:
    text = billion_laughs()
    started = time.perf_counter()
    problem = only(refused(text, "bomb.yaml"))
    elapsed = time.perf_counter() - started
    level = first_level_over_limit()
    assert str(problem) == (
        f"bomb.yaml:{line_of(text, f'a{level}: &a{level}')}: error: a{level}: "
        f"document expands to more than {MAX_EXPANDED_NODES} values (alias bomb?)"
    )
    assert elapsed < 1.0


def test_shared_aliases_below_the_limit_are_fine() -> None:
    text = billion_laughs(levels=3)
    doc = load_text(text, "f.yaml")
    assert len(doc.data["a3"]) == 9
    assert doc.data["a3"][0][0][0] == ["lol", "lol"]


@pytest.mark.parametrize(
    ("text", "path"),
    [
        ("a: &a [x, *a]\n", "a[1]"),
        ("a: &a\n  b: *a\n", "a.b"),
        ("a: &a\n  <<: *a\n  x: 1\n", "a.<<"),
    ],
)
def test_recursive_alias_is_refused(text: str, path: str) -> None:
    problem = only(refused(text))
    assert str(problem) == f"f.yaml:1: error: {path}: recursive alias"


def test_nesting_too_deep_is_refused_not_crashed() -> None:
    depth = 700
    problem = only(refused("a: " + "[" * depth + "]" * depth + "\n", "deep.yaml"))
    assert str(problem) == "deep.yaml: error: nested too deeply"


def test_moderate_nesting_is_fine() -> None:
    doc = load_text("a: " + "[" * 50 + "]" * 50 + "\n", "f.yaml")
    value = doc.data["a"]
    for _ in range(49):
        value = value[0]
    assert value == []


def test_a_lone_unquoted_hash_is_refused_for_the_comment_it_is() -> None:
    """`back_key: #` reads as an empty value (# starts a comment): the menus would say "pound
    to go back" and the key would be an invalid choice. Each, on its line."""
    text = "menu:\n  back_key: #\n  options:\n    - key: #\n      target: main\n    - #\n"
    with pytest.raises(SourceError) as caught:
        load_text(text, "tree.yaml")
    hint = "'#' unquoted starts a comment, so this is empty: write \"#\" (quoted) for the pound key"
    assert [(p.line, p.path) for p in caught.value.problems] == [
        (2, "menu.back_key"),
        (4, "menu.options[0].key"),
        (6, "menu.options[1]"),
    ]
    assert all(p.message.startswith(hint) for p in caught.value.problems)


def test_a_key_field_left_empty_by_a_comment_after_its_hash_is_refused() -> None:
    """`back_key: # pound` is the pound key with a word about it, to its writer; to YAML, no key."""
    text = "menu:\n  back_key: # pound key\n  skip_key:  #skip\n  repeat_key: null  # none\n"
    with pytest.raises(SourceError) as caught:
        load_text(text, "tree.yaml")
    assert [(p.line, p.path) for p in caught.value.problems] == [
        (2, "menu.back_key"),
        (3, "menu.skip_key"),
    ]


def test_a_quoted_hash_an_explicit_null_or_a_real_comment_are_fine() -> None:
    text = "a: \"#\"\nb: null\nc:   # none here, on purpose\nd: '#'\n"
    assert load_text(text, "tree.yaml").data == {"a": "#", "b": None, "c": None, "d": "#"}


def test_a_stored_text_with_a_lone_hash_is_rebuilt_as_it_was() -> None:
    """A version accepted before this check, with calls still on it, still runs."""
    assert load_text("back_key: #\n", "tree.yaml", stored=True).data == {"back_key": None}


def test_a_number_with_a_leading_zero_is_refused_not_read_as_octal() -> None:
    """YAML 1.1 reads `011` as octal 9: an operator's `key: 011` must not become key 9 in
    silence, nor `timeout: 010` 8 s. Refused at its line; quoted, it is text. A stored
    version (calls still on it, accepted before this) is read as it was accepted."""
    text = "key: '011'\ntimeout: 010\nplain: 11\n"
    with pytest.raises(SourceError) as refused:
        load_text(text, "t.yaml")
    [problem] = refused.value.problems
    assert problem.line == 2 and "010 has a leading 0" in problem.message
    assert load_text(text.replace("010", "10"), "t.yaml").data == {
        "key": "011",
        "timeout": 10,
        "plain": 11,
    }
    assert load_text(text, "t.yaml", stored=True).data == {"key": "011", "timeout": 8, "plain": 11}
