"""ivr.tree: every check that refuses (or warns about) a call tree, as the operator sees it.

Each expected line is computed from the YAML written in the test, never typed in.
"""

from __future__ import annotations

import re
import shutil
import time
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from textwrap import dedent
from zoneinfo import ZoneInfo

import pytest
from typer.testing import CliRunner

from ivr.cli import app
from ivr.exceptions import Problem, SourceError
from ivr.identity import SECRET_FACTORS
from ivr.prompts import load_catalogs
from ivr.tree import (
    INCIDENT_KEY_SAID,
    INCIDENT_NEVER_OFFERED,
    KEY_NOT_IN_MENU,
    KEY_NOT_OFFERED,
    MAX_PASS_THROUGH,
    NO_ANNOUNCEMENT,
    NO_SECRET,
    SECRET_STEPS,
    TOTP_ASKED,
    UNANSWERED_LOOP,
    CompiledTree,
    HangupNode,
    HoursNode,
    MenuNode,
    QueueNode,
    check_tree,
    compile_source,
    keys_offered,
    keys_said,
    load_tree,
    match_speech,
    normalise_speech,
    tree_from_stored,
)
from ivr.yamlfile import MAX_BYTES, MAX_EXPANDED_NODES

DATA = Path(__file__).resolve().parent / "data"
PROMPTS = DATA / "prompts"
MINI = (DATA / "mini.yaml").read_text(encoding="utf-8")
HOTLINE = Path(__file__).resolve().parent.parent / "routes" / "hotline.yaml"
HOTLINE_PROMPTS = HOTLINE.parent.parent / "prompts"

# A valid tree whose prompts all have a zh-CN translation: no warnings at all, so every
# check of the graph runs on the variants below.
BASE = """\
start: main
nodes:
  main:
    kind: menu
    prompt: main
    announcement: true
    on_no_input: agent
    on_invalid: agent
    options:
      - {key: "1", target: agent}
      - {key: "2", target: bye}
      - {key: "0", target: agent}  # its prompt says "0 for an agent"
  agent:
    kind: queue
    prompt: connecting
    queue: general
  bye:
    kind: hangup
    prompt: goodbye
"""


BASE_OPTIONS = "".join(line + "\n" for line in BASE.splitlines() if line.startswith("      - "))


def line_of(text: str, needle: str) -> int:
    """The 1-based line of the only line of `text` that starts with `needle` once indented."""
    hits = [n for n, line in enumerate(text.splitlines(), 1) if line.lstrip().startswith(needle)]
    assert len(hits) == 1, f"{needle!r} starts lines {hits}"
    return hits[0]


def key_line(text: str, key: str, rest: str = "") -> int:
    """The line of the flow-mapping option `- {key: "<key>"<rest>`."""
    return line_of(text, f'- {{key: "{key}"{rest}')


def write(tmp_path: Path, text: str, name: str = "tree.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def check(tmp_path: Path, text: str) -> tuple[str, list[Problem]]:
    """The tree's file name and every problem `ivr routes check` would print, but the warnings
    that no menu plays the announcement, and that a menu's prompt names a key it lacks or
    never names one it has (the fragments' menus all say the test catalogs' `main`, "1, 2,
    0", whatever their keys): these
    trees are fragments made to show one problem each (those warnings have tests of their own)."""
    path = write(tmp_path, text)
    return str(path), fragment_problems(check_tree(path, PROMPTS))


def fragment_problems(problems: list[Problem]) -> list[Problem]:
    return [
        p
        for p in problems
        if p.message != NO_ANNOUNCEMENT
        and KEY_NOT_IN_MENU not in p.message
        and KEY_NOT_OFFERED not in p.message
    ]


def only(problems: list[Problem]) -> Problem:
    assert len(problems) == 1, [str(p) for p in problems]
    return problems[0]


def assert_at(problem: Problem, file: str, line: int, path: str, message_part: str) -> None:
    """For messages worded by pydantic: exact place, the telling part of the message."""
    assert (problem.file, problem.line, problem.path, problem.severity) == (
        file,
        line,
        path,
        "error",
    ), str(problem)
    assert message_part in problem.message, str(problem)


def copy_prompts(tmp_path: Path) -> Path:
    folder = tmp_path / "prompts"
    shutil.copytree(PROMPTS, folder)
    return folder


# -- good trees -------------------------------------------------------------------------------


def test_base_tree_has_no_problem_at_all(tmp_path: Path) -> None:
    _, problems = check(tmp_path, BASE)
    assert problems == []


def test_mini_tree_loads_with_only_translation_warnings() -> None:
    tree = load_tree(DATA / "mini.yaml", PROMPTS)
    assert tree.warnings
    lines = MINI.splitlines()
    for warning in tree.warnings:
        found = re.fullmatch(
            r"prompt '(\w+)' has no zh-CN translation; en is said instead", warning.message
        )
        assert found and warning.severity == "warning", str(warning)
        assert warning.path.endswith(".prompt")
        assert warning.line is not None
        assert lines[warning.line - 1].strip() == f"prompt: {found[1]}"


def test_nodes_that_lead_to_an_emergency_queue_on_their_own(hotline_tree: CompiledTree) -> None:
    # The hijack path: its notice and its verification (whatever the outcome) lead straight to
    # the emergency queue. Menus leave the caller a choice, so they lead nowhere by themselves.
    assert hotline_tree.emergency_bound == {
        "emergency": "emergency_queue",
        "emergency_verify": "emergency_queue",
    }


def test_a_say_chain_and_an_hours_check_before_an_emergency_queue(tmp_path: Path) -> None:
    text = BASE.replace(
        '      - {key: "2", target: bye}',
        '      - {key: "2", target: bye}\n      - {key: "3", target: notice}',
    ) + (
        "  notice: {kind: say, prompt: connecting, next: hours}\n"
        "  hours:\n"
        "    kind: hours\n"
        "    timezone: UTC\n"
        '    weekly: {mon: ["09:00-18:00"]}\n'
        "    on_open: urgent\n"
        "    on_closed: night\n"
        "  urgent: {kind: queue, queue: security, priority: emergency}\n"
        "  night: {kind: queue, queue: security-night, priority: emergency}\n"
    )
    tree = compile_source(text, "tree.yaml", load_catalogs(PROMPTS))
    assert tree.emergency_bound == {"notice": "urgent", "hours": "urgent"}
    assert compile_source(BASE, "tree.yaml", load_catalogs(PROMPTS)).emergency_bound == {}


def test_a_node_with_one_outcome_elsewhere_is_not_bound_for_an_emergency_queue() -> None:
    # Only in office hours does this lead to the security team: a caller who hangs up here may
    # have been on their way to the general queue.
    text = BASE.replace(
        '      - {key: "2", target: bye}',
        '      - {key: "2", target: bye}\n      - {key: "3", target: hours}',
    ) + (
        "  hours:\n"
        "    kind: hours\n"
        "    timezone: UTC\n"
        '    weekly: {mon: ["09:00-18:00"]}\n'
        "    on_open: urgent\n"
        "    on_closed: agent\n"
        "  urgent: {kind: queue, queue: security, priority: emergency}\n"
    )
    tree = compile_source(text, "tree.yaml", load_catalogs(PROMPTS))
    assert tree.emergency_bound == {}


# -- the file itself --------------------------------------------------------------------------


def test_yaml_syntax_error_names_its_line(tmp_path: Path) -> None:
    text = BASE.replace("    queue: general\n", "    queue: general\n   broken: [\n")
    file, problems = check(tmp_path, text)
    problem = only(problems)
    assert problem.file == file
    assert problem.line == line_of(text, "broken: [")
    assert problem.message.startswith("not valid YAML: ")


@pytest.mark.parametrize("indent", ["\t", "  \t"])
def test_a_tab_in_a_trees_indentation_says_to_indent_with_spaces(
    tmp_path: Path, indent: str
) -> None:
    text = BASE.replace("    kind: hangup\n", f"{indent}kind: hangup\n")
    file, problems = check(tmp_path, text)
    problem = only(problems)
    assert (problem.file, problem.line) == (
        file,
        text.splitlines().index(f"{indent}kind: hangup") + 1,
    )
    assert problem.message.startswith("not valid YAML: ")
    assert problem.message.endswith(
        "(a tab: indent with spaces; YAML does not take tabs for indentation)"
    )


def test_empty_tree_file(tmp_path: Path) -> None:
    file, problems = check(tmp_path, "# nothing here yet\n")
    assert str(only(problems)) == f"{file}:1: error: file is empty"


def test_tree_that_is_not_a_mapping(tmp_path: Path) -> None:
    file, problems = check(tmp_path, "- main\n- bye\n")
    assert str(only(problems)) == (
        f"{file}:1: error: a call tree is a mapping with `start` and `nodes`"
    )


def test_tree_file_that_is_not_utf8(tmp_path: Path) -> None:
    path = tmp_path / "tree.yaml"
    path.write_bytes(BASE.replace("queue: general", "queue: général").encode("latin-1"))
    assert str(only(check_tree(path, PROMPTS))) == f"{path}: error: not UTF-8 text"


def test_missing_tree_file(tmp_path: Path) -> None:
    path = tmp_path / "routes" / "nope.yaml"
    problem = only(check_tree(path, PROMPTS))
    assert str(problem) == f"{path}: error: cannot read: No such file or directory"
    with pytest.raises(SourceError):
        load_tree(path, PROMPTS)


def test_tree_file_over_the_size_limit(tmp_path: Path) -> None:
    text = BASE + "#" + "x" * MAX_BYTES + "\n"
    file, problems = check(tmp_path, text)
    assert str(only(problems)) == f"{file}: error: file is larger than {MAX_BYTES} bytes"


def test_duplicate_node_name(tmp_path: Path) -> None:
    text = BASE + "  agent:\n    kind: hangup\n"
    file, problems = check(tmp_path, text)
    first, second = [n for n, line in enumerate(text.splitlines(), 1) if line == "  agent:"]
    assert str(only(problems)) == (
        f"{file}:{second}: error: nodes.agent: duplicate key (first on line {first})"
    )


def test_alias_bomb_in_a_tree_is_refused_quickly(tmp_path: Path) -> None:
    lines = ["laughs:", "  a0: &a0 [lol, lol]"]
    size, over = 3, None
    for i in range(1, 10):  # 9 levels of 9 aliases: 9**9 values if expanded
        lines.append(f"  a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 9) + "]")
        size = 1 + 9 * size
        if over is None and size > MAX_EXPANDED_NODES:
            over = i
    text = BASE + "\n".join(lines) + "\n"
    started = time.perf_counter()
    file, problems = check(tmp_path, text)
    elapsed = time.perf_counter() - started
    assert str(only(problems)) == (
        f"{file}:{line_of(text, f'a{over}: &a{over}')}: error: laughs.a{over}: "
        f"document expands to more than {MAX_EXPANDED_NODES} values (alias bomb?)"
    )
    assert elapsed < 1.0


def test_recursive_alias_in_a_tree(tmp_path: Path) -> None:
    text = BASE.replace("    queue: general\n", "    queue: general\n    topic: &t [*t]\n")
    file, problems = check(tmp_path, text)
    assert str(only(problems)) == (
        f"{file}:{line_of(text, 'topic: &t')}: error: nodes.agent.topic[0]: recursive alias"
    )


def test_nesting_too_deep_in_a_tree(tmp_path: Path) -> None:
    text = BASE + "extra: " + "[" * 700 + "]" * 700 + "\n"
    file, problems = check(tmp_path, text)
    assert str(only(problems)) == f"{file}: error: nested too deeply"


# -- schema -----------------------------------------------------------------------------------


def test_unknown_node_kind(tmp_path: Path) -> None:
    text = BASE + "  music:\n    kind: playlist\n"
    file, problems = check(tmp_path, text)
    assert str(only(problems)) == (
        f"{file}:{line_of(text, 'music:')}: error: nodes.music: unknown kind 'playlist'; "
        "expected one of: 'menu', 'say', 'language', 'hours', 'queue', 'transfer', 'hangup', "
        "'verify', 'ticket', 'number_check', 'survey'"
    )


def test_missing_node_kind(tmp_path: Path) -> None:
    text = BASE + "  music:\n    prompt: goodbye\n"
    file, problems = check(tmp_path, text)
    assert str(only(problems)) == (
        f"{file}:{line_of(text, 'music:')}: error: nodes.music: "
        "a node needs a `kind` (menu, say, language, hours, queue, transfer, hangup, "
        "verify, ticket, number_check, survey)"
    )


def test_one_check_reports_type_errors_and_the_graphs_problems_together(
    tmp_path: Path,
) -> None:
    """An operator fixes a draft in one round: a wrongly typed setting in one node does not
    hide an unknown target or a missing prompt in the others. What hangs on the broken node
    (the link to it, what only it leads to) is not reported as well."""
    text = BASE.replace(
        '      - {key: "2", target: bye}',
        '      - {key: "2", target: bye}\n      - {key: "3", target: byee}',
    ).replace(
        "    prompt: connecting\n    queue: general", "    prompt: connectin\n    queue: general"
    )
    text += "  broken:\n    kind: menu\n    prompt: main\n    timeout: soon\n    options: []\n"
    text = text.replace('      - {key: "1", target: agent}', '      - {key: "1", target: broken}')
    text += "  reached_by_broken_only:\n    kind: hangup\n"
    file, problems = check(tmp_path, text)
    found = {(p.path, p.message.split(";")[0]) for p in problems if p.severity == "error"}
    assert ("nodes.main.options[2].target", "unknown node 'byee' (did you mean 'bye'?)") in found
    assert any(path == "nodes.agent.prompt" and "connectin" in m for path, m in found)
    assert any(path.startswith("nodes.broken") and "timeout" in path for path, _ in found)
    assert not any("'broken'" in m or "unreachable" in m for _, m in found), found
    assert all(p.file == file and p.line for p in problems if p.path)


def test_unknown_setting(tmp_path: Path) -> None:
    text = BASE.replace("    prompt: goodbye\n", "    prompt: goodbye\n    colour: red\n")
    file, problems = check(tmp_path, text)
    assert str(only(problems)) == (
        f"{file}:{line_of(text, 'colour: red')}: error: nodes.bye.colour: unknown setting 'colour'"
    )


QUEUE_ERRORS = """\
start: agent
nodes:
  agent:
    kind: queue
    queue: general
    priority: urgent
    colour: red
"""


def test_errors_in_a_queue_node_point_at_their_own_setting(tmp_path: Path) -> None:
    _, problems = check(tmp_path, QUEUE_ERRORS)
    assert sorted((p.line, p.path) for p in problems) == [
        (line_of(QUEUE_ERRORS, "priority:"), "nodes.agent.priority"),
        (line_of(QUEUE_ERRORS, "colour:"), "nodes.agent.colour"),
    ]


def test_unknown_top_level_setting(tmp_path: Path) -> None:
    text = "version: 2\n" + BASE
    file, problems = check(tmp_path, text)
    assert str(only(problems)) == f"{file}:1: error: version: unknown setting 'version'"


def test_missing_required_setting_names_it_at_the_node(tmp_path: Path) -> None:
    text = "menu_defaults:\n  on_invalid: agent\n" + BASE.replace("    on_no_input: agent\n", "")
    file, problems = check(tmp_path, text)
    assert str(only(problems)) == (
        f"{file}:{line_of(text, 'main:')}: error: nodes.main: 'on_no_input' is required"
    )


def test_missing_start(tmp_path: Path) -> None:
    text = BASE.replace("start: main\n", "")
    file, problems = check(tmp_path, text)
    assert str(only(problems)) == f"{file}:1: error: 'start' is required"


@pytest.mark.parametrize("key", ['"12"', "a", '"**"', '""'])
def test_bad_option_key(tmp_path: Path, key: str) -> None:
    text = BASE.replace('{key: "2", target: bye}', f"{{key: {key}, target: bye}}")
    file, problems = check(tmp_path, text)
    assert_at(
        only(problems),
        file,
        line_of(text, f"- {{key: {key},"),
        "nodes.main.options[1].key",
        "must be one keypad key: 0-9, * or #",
    )


def test_unquoted_numeric_key_means_that_key(tmp_path: Path) -> None:
    text = BASE.replace('{key: "2", target: bye}', "{key: 2, target: bye}")
    _, problems = check(tmp_path, text)
    assert [p for p in problems if p.severity == "error"] == []


def test_option_without_key_or_speech(tmp_path: Path) -> None:
    text = BASE.replace('{key: "2", target: bye}', "{target: bye}")
    file, problems = check(tmp_path, text)
    assert_at(
        only(problems),
        file,
        line_of(text, "- {target: bye}"),
        "nodes.main.options[1]",
        "an option needs a key, spoken keywords, or both",
    )


@pytest.mark.parametrize("setting", ['operator_key: "0"', "operator: agent"])
def test_operator_key_and_operator_go_together(tmp_path: Path, setting: str) -> None:
    text = BASE.replace("    on_invalid: agent\n", f"    on_invalid: agent\n    {setting}\n")
    file, problems = check(tmp_path, text)
    assert_at(
        only(problems),
        file,
        line_of(text, "main:"),
        "nodes.main",
        "operator_key and operator go together",
    )


def test_unknown_time_zone(tmp_path: Path) -> None:
    text = hours_tree('"09:00-18:00"').replace("Asia/Singapore", "Mars/Olympus_Mons")
    file, problems = check(tmp_path, text)
    assert_at(
        only(problems),
        file,
        line_of(text, "timezone:"),
        "nodes.open.timezone",
        "unknown time zone 'Mars/Olympus_Mons' (use an IANA name like Asia/Singapore)",
    )


def hours_tree(tuesday: str) -> str:
    return dedent(
        f"""\
        start: open
        nodes:
          open:
            kind: hours
            timezone: Asia/Singapore
            weekly:
              mon: ["09:00-18:00"]
              tue: [{tuesday}]
            holidays: [2026-12-25]
            on_open: agent
            on_closed: bye
          agent:
            kind: queue
            queue: general
          bye:
            kind: hangup
        """
    )


@pytest.mark.parametrize(
    "bad", ["25:00-26:00", "09:00-09:00", "9:00-18:00", "09:00-24:30", "09:00", "00:00-00:00"]
)
def test_bad_business_hours_range(tmp_path: Path, bad: str) -> None:
    text = hours_tree(f'"{bad}"')
    file, problems = check(tmp_path, text)
    problem = only(problems)
    assert (problem.file, problem.severity) == (file, "error")
    # On the day's own line, naming the day and the range.
    assert (problem.line, problem.path) == (line_of(text, "tue:"), "nodes.open.weekly.tue[0]")
    assert problem.message == f"'{bad}' is not a range like 09:00-18:00"


@pytest.mark.parametrize(
    ("bad", "said"),
    [
        (
            "21:00-09:00",
            "runs past midnight: split it across two days, '21:00-24:00' on the day it starts "
            "and '00:00-09:00' on the next",
        ),
        ("18:00-00:00", "ends at midnight: write '18:00-24:00'"),
    ],
)
def test_hours_open_overnight_say_how_to_write_them(tmp_path: Path, bad: str, said: str) -> None:
    text = hours_tree(f'"{bad}"')
    file, problems = check(tmp_path, text)
    assert str(only(problems)) == (
        f"{file}:{line_of(text, 'tue:')}: error: nodes.open.weekly.tue[0]: '{bad}' {said}"
    )


@pytest.mark.parametrize("good", ["09:00-24:00", "00:00-23:59"])
def test_good_business_hours(tmp_path: Path, good: str) -> None:
    tree = load_tree(write(tmp_path, hours_tree(f'"{good}"')), PROMPTS)
    assert tree.tree.nodes["open"].weekly["tue"] == [good]  # type: ignore[union-attr]


def test_unknown_weekday(tmp_path: Path) -> None:
    text = hours_tree('"09:00-18:00"').replace("tue:", "tuesday:")
    file, problems = check(tmp_path, text)
    assert_at(only(problems), file, line_of(text, "tuesday:"), "nodes.open.weekly.tuesday", "'mon'")


def transfer_tree(number: str) -> str:
    return BASE.replace('{key: "2", target: bye}', '{key: "2", target: desk}') + (
        f"  desk:\n    kind: transfer\n    number: {number}\n    on_failure: bye\n"
    )


@pytest.mark.parametrize("number", ['"12345678"', '"+0123456789"', '"+1 555 0100"', '"+123"'])
def test_transfer_number_must_be_e164(tmp_path: Path, number: str) -> None:
    text = transfer_tree(number)
    file, problems = check(tmp_path, text)
    assert_at(only(problems), file, line_of(text, "number:"), "nodes.desk.number", "in E.164 form")


def test_unquoted_e164_number_is_refused_on_its_line(tmp_path: Path) -> None:
    text = transfer_tree("+15005550006")  # YAML reads an int
    file, problems = check(tmp_path, text)
    assert_at(only(problems), file, line_of(text, "number:"), "nodes.desk.number", "in quotes")


def test_good_transfer_number(tmp_path: Path) -> None:
    tree = load_tree(write(tmp_path, transfer_tree('"+15005550006"')), PROMPTS)
    assert tree.tree.nodes["desk"].number == "+15005550006"  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ('"general support"', "must be 1-64 letters, digits"),
        ("x" * 65, "at most 64 characters"),
        ('""', "at least 1 character"),
    ],
)
def test_bad_queue_name(tmp_path: Path, name: str, message: str) -> None:
    text = BASE.replace("queue: general", f"queue: {name}")
    file, problems = check(tmp_path, text)
    assert_at(only(problems), file, line_of(text, "queue:"), "nodes.agent.queue", message)


def test_queue_name_of_64_characters_is_fine(tmp_path: Path) -> None:
    tree = load_tree(write(tmp_path, BASE.replace("queue: general", "queue: " + "q" * 64)), PROMPTS)
    assert isinstance(tree.node("agent"), QueueNode)


def test_bad_node_name(tmp_path: Path) -> None:
    text = BASE + '  "two words":\n    kind: hangup\n'
    file, problems = check(tmp_path, text)
    assert_at(
        only(problems),
        file,
        line_of(text, '"two words":'),
        "nodes.two words",
        "is not a valid name",
    )


# -- menu_defaults ------------------------------------------------------------------------------


def test_menu_defaults_with_settings_that_are_not_menu_settings(tmp_path: Path) -> None:
    settings = {"prompt": "welcome", "kind": "say", "colour": "red"}
    text = "menu_defaults:\n" + "".join(f"  {k}: {v}\n" for k, v in settings.items())
    text += "  timeout: 9\n" + BASE
    file, problems = check(tmp_path, text)
    assert sorted(str(p) for p in problems) == sorted(
        f"{file}:{line_of(text, f'{key}: {value}')}: error: menu_defaults.{key}: "
        f"'{key}' is not a menu setting"
        for key, value in settings.items()
    )


def test_menu_defaults_must_be_a_mapping(tmp_path: Path) -> None:
    text = "menu_defaults: [on_no_input]\n" + BASE
    file, problems = check(tmp_path, text)
    assert_at(only(problems), file, 1, "menu_defaults", "valid dictionary")


MENU_DEFAULTS = """\
start: main
menu_defaults:
  on_no_input: agent
  on_invalid: agent
  timeout: 9
  operator_key: "0"
  operator: agent
nodes:
  main:
    kind: menu
    prompt: main
    announcement: true
    timeout: 4
    on_invalid: sub
    options:
      - {key: "1", target: sub}
  sub:
    kind: menu
    prompt: main
    repeat_key: null
    options:
      - {key: "*", target: bye}
  agent:
    kind: queue
    prompt: connecting
    queue: general
  bye:
    kind: hangup
"""


def test_menu_defaults_apply_and_a_menus_own_value_wins(tmp_path: Path) -> None:
    tree = load_tree(write(tmp_path, MENU_DEFAULTS), PROMPTS)
    assert fragment_problems(tree.warnings) == []
    main, sub = tree.node("main"), tree.node("sub")
    assert isinstance(main, MenuNode) and isinstance(sub, MenuNode)
    assert (main.timeout, main.on_invalid, main.on_no_input) == (4, "sub", "agent")
    assert (sub.timeout, sub.on_invalid, sub.on_no_input) == (9, "agent", "agent")
    assert (sub.operator_key, sub.operator) == ("0", "agent")
    assert sub.repeat_key is None
    assert tree.menus["sub"].by_key["*"].target == "bye"
    assert isinstance(tree.node("bye"), HangupNode)  # not a menu: no defaults forced on it


def test_menu_defaults_take_part_in_the_key_checks(tmp_path: Path) -> None:
    text = MENU_DEFAULTS.replace('operator_key: "0"', 'operator_key: "1"')
    file, problems = check(tmp_path, text)
    assert str(only(problems)) == (
        f"{file}:{key_line(text, '1', ', target: sub')}: error: "
        "nodes.main.options[0].key: key '1' is already operator_key"
    )


def test_bad_menu_default_value_points_at_menu_defaults(tmp_path: Path) -> None:
    text = MENU_DEFAULTS.replace("timeout: 9", "timeout: 100")
    _, problems = check(tmp_path, text)
    assert problems
    assert all(
        p.line == line_of(text, "timeout: 100") and "timeout" in p.path + p.message
        for p in problems
    ), [str(p) for p in problems]


def test_unknown_target_in_menu_defaults_points_at_menu_defaults(tmp_path: Path) -> None:
    text = MENU_DEFAULTS.replace("on_no_input: agent", "on_no_input: nobody")
    _, problems = check(tmp_path, text)
    assert problems
    assert all(
        p.line == line_of(text, "on_no_input: nobody") and "on_no_input" in p.path + p.message
        for p in problems
    ), [str(p) for p in problems]


# -- graph: targets, keys, speech, languages, prompts ---------------------------------------------

ALL_EDGES = """\
start: main
nodes:
  main:
    kind: menu
    prompt: main
    on_no_input: no_silence
    on_invalid: no_invalid
    operator_key: "0"
    operator: no_operator
    options:
      - {key: "1", target: no_option}
      - {key: "2", target: lang}
      - {key: "3", target: tip}
      - {key: "4", target: open}
      - {key: "5", target: agent}
      - {key: "6", target: desk}
  lang:
    kind: language
    options:
      - {key: "1", language: en}
    next: no_next_lang
  tip:
    kind: say
    prompt: welcome
    next: no_next_say
  open:
    kind: hours
    timezone: Asia/Singapore
    weekly: {mon: ["09:00-18:00"]}
    on_open: no_open
    on_closed: no_closed
  agent:
    kind: queue
    queue: general
    on_leave: no_leave
  desk:
    kind: transfer
    number: "+15005550006"
    on_failure: no_failure
"""


def test_every_unknown_target_is_reported_where_it_is_written(tmp_path: Path) -> None:
    file, problems = check(tmp_path, ALL_EDGES)
    expected = {
        "no_silence": "nodes.main.on_no_input",
        "no_invalid": "nodes.main.on_invalid",
        "no_operator": "nodes.main.operator",
        "no_option": "nodes.main.options[0].target",
        "no_next_lang": "nodes.lang.next",
        "no_next_say": "nodes.tip.next",
        "no_open": "nodes.open.on_open",
        "no_closed": "nodes.open.on_closed",
        "no_leave": "nodes.agent.on_leave",
        "no_failure": "nodes.desk.on_failure",
    }
    lines = {
        target: next(
            n
            for n, line in enumerate(ALL_EDGES.splitlines(), 1)
            if line.endswith(f" {target}}}") or line.endswith(f": {target}")
        )
        for target in expected
    }
    assert sorted(str(p) for p in problems) == sorted(
        f"{file}:{lines[target]}: error: {path}: unknown node '{target}'"
        for target, path in expected.items()
    )


def test_unknown_start_node(tmp_path: Path) -> None:
    file, problems = check(tmp_path, BASE.replace("start: main", "start: welcome"))
    assert str(only(problems)) == f"{file}:1: error: start: unknown node 'welcome'"


def test_duplicate_dtmf_key_in_a_menu(tmp_path: Path) -> None:
    text = BASE.replace('{key: "2", target: bye}', '{key: "1", target: bye}')
    file, problems = check(tmp_path, text)
    assert str(only(problems)) == (
        f"{file}:{key_line(text, '1', ', target: bye')}: error: "
        "nodes.main.options[1].key: key '1' is already options[0]"
    )


def test_option_key_clashing_with_the_default_repeat_key(tmp_path: Path) -> None:
    text = BASE.replace('{key: "2", target: bye}', '{key: "*", target: bye}')
    file, problems = check(tmp_path, text)
    assert str(only(problems)) == (
        f"{file}:{key_line(text, '*')}: error: "
        "nodes.main.options[1].key: key '*' is already repeat_key"
    )


def test_option_key_clashing_with_back_key(tmp_path: Path) -> None:
    text = BASE.replace("    on_invalid: agent\n", '    on_invalid: agent\n    back_key: "2"\n')
    file, problems = check(tmp_path, text)
    assert str(only(problems)) == (
        f"{file}:{key_line(text, '2')}: error: "
        "nodes.main.options[1].key: key '2' is already back_key"
    )


def test_operator_key_clashing_with_repeat_key(tmp_path: Path) -> None:
    text = BASE.replace(
        "    on_invalid: agent\n",
        '    on_invalid: agent\n    operator_key: "*"\n    operator: agent\n',
    )
    file, problems = check(tmp_path, text)
    assert str(only(problems)) == (
        f"{file}:{line_of(text, 'operator_key:')}: error: "
        "nodes.main.operator_key: key '*' is already the repeat_key"
    )


def speech_tree(first: str, second: str) -> str:
    return BASE.replace(
        '{key: "1", target: agent}', f'{{key: "1", speech: {first}, target: agent}}'
    ).replace('{key: "2", target: bye}', f'{{key: "2", speech: {second}, target: bye}}')


def test_duplicate_speech_keyword_after_normalising(tmp_path: Path) -> None:
    text = speech_tree("{en: [Agent, Help]}", '{en: ["help!"], zh-CN: [再见]}')
    file, problems = check(tmp_path, text)
    assert str(only(problems)) == (
        f"{file}:{key_line(text, '2')}: error: "
        "nodes.main.options[1].speech.en: keyword 'help!' is already options[0]"
    )


@pytest.mark.parametrize(
    ("first", "second", "word", "taker"),
    [
        ("{en: [pass]}", "{en: [password]}", "password", "pass"),  # at a word's start
        ("{en: [trading]}", '{en: ["futures trading"]}', "futures trading", "trading"),
        ("{zh-CN: [密]}", "{zh-CN: [密码]}", "密码", "密"),  # Chinese: anywhere
    ],
)
def test_a_keyword_an_earlier_options_keyword_always_takes_is_never_heard(
    tmp_path: Path, first: str, second: str, word: str, taker: str
) -> None:
    """The operator meant it for the second option; every caller who says it reaches the
    first. Said where, and which keyword takes it."""
    text = speech_tree(first, second)
    file, problems = check(tmp_path, text)
    lang = "en" if word.isascii() else "zh-CN"
    assert str(only(problems)) == (
        f"{file}:{key_line(text, '2')}: warning: nodes.main.options[1].speech.{lang}: "
        f"keyword '{word}' is never heard: options[0]'s '{taker}' matches it first (Latin "
        "keywords match at the start of a word, Chinese anywhere; the first option listed wins)"
    )
    menu = load_tree(write(tmp_path, text), PROMPTS).menus["main"]
    heard = match_speech(menu, lang, word)
    assert heard is not None and heard.target == "agent"  # what the warning says


def test_a_keyword_inside_another_is_fine_the_other_way_round_or_to_the_same_place(
    tmp_path: Path,
) -> None:
    """Listed first, the longer keyword is heard; to the same node, nothing is lost."""
    _, problems = check(tmp_path, speech_tree("{en: [password]}", "{en: [pass]}"))
    assert problems == []
    same = BASE.replace(
        '{key: "1", target: agent}', '{key: "1", speech: {en: [agent]}, target: agent}'
    ).replace('{key: "2", target: bye}', '{key: "2", speech: {en: [agent now]}, target: agent}')
    _, problems = check(tmp_path, same)
    assert [p for p in problems if "never heard" in p.message] == []


def not_heard_with(text: str, exceptions: str) -> str:
    """`text` with the tree's `not_heard_with` (its YAML, indented as under the key)."""
    return text.replace("nodes:\n", f"not_heard_with:\n{exceptions}nodes:\n", 1)


def test_a_keyword_said_with_one_of_its_exceptions_is_not_heard(tmp_path: Path) -> None:
    """突然停机 is a SIM swap's sign, but not said with 欠费 (a line cut for an unpaid bill):
    the option's other keywords are still heard with it, and the keyword in every menu."""
    text = not_heard_with(
        speech_tree("{zh-CN: [突然停机, 被盗]}", "{zh-CN: [停机]}"),
        "  zh-CN:\n    突然停机: [欠费, 话费]\n",
    )
    _, problems = check(tmp_path, text)
    assert problems == []
    menu = load_tree(write(tmp_path, text), PROMPTS).menus["main"]

    def target(said: str) -> str | None:
        option = match_speech(menu, "zh-CN", said)
        return option.target if option else None

    assert target("我的手机突然停机了") == "agent"
    assert target("手机 突然 停机 了") == "agent"  # as normalised
    assert target("手机突然停机了,是不是欠费了") == "bye"  # the next option's 停机
    assert target("因为没交话费突然停机") == "bye"
    assert target("突然停机了,账户也被盗了,不是欠费") == "agent"  # 被盗 is heard still


def test_an_exception_takes_a_keyword_back_only_where_it_is_said_beside_it(
    tmp_path: Path,
) -> None:
    """A victim's story holds the exceptions' words too (不要, "why is", "address"): said
    away from the keyword they take nothing back. A word that holds the keyword takes back
    only the place it overlaps; English exceptions are whole words ("id", not "idiot")."""
    text = not_heard_with(
        speech_tree("{zh-CN: [人转走, 码告诉], en: [told me to send my, gave someone my]}", "{}"),
        "  zh-CN:\n    人转走: [本人转走]\n    码告诉: [码告诉任何人, 不要]\n"
        "  en:\n    told me to send my: [id, address]\n    gave someone my: [id]\n",
    )
    _, problems = check(tmp_path, text)
    assert problems == []
    menu = load_tree(write(tmp_path, text), PROMPTS).menus["main"]

    def heard(said: str, lang: str = "zh-CN") -> bool:
        return match_speech(menu, lang, said) is not None

    assert not heard("是我本人转走的")
    assert heard("被人转走了,不是本人转走的")  # the first 人转走 is no 本人转走
    assert not heard("千万不要把验证码告诉任何人")
    assert heard("骗子让我不要声张,后来我把验证码告诉了他")  # 不要, far from 码告诉
    assert not heard("support told me to send my id", "en")
    assert heard("they told me to send my coins to their wallet address", "en")
    assert heard("i gave someone my password what an idiot i am", "en")
    assert not heard("i gave someone my id", "en")
    assert heard("i gave someone my idle wallet's keys", "en")  # "idle" is no "id"


def test_exceptions_for_no_keyword_or_in_the_keyword_itself_are_refused(tmp_path: Path) -> None:
    """A misspelt keyword would leave it heard as before; an exception that is in the keyword
    would leave it never heard; a language with no catalog is no caller's."""
    text = not_heard_with(
        speech_tree("{zh-CN: [突然停机]}", "{en: [bill]}"),
        "  zh-CN:\n    突然停几: [欠费]\n    突然停机: [停机]\n  fr:\n    facture: [payer]\n",
    )
    file, problems = check(tmp_path, text)
    assert [str(p) for p in problems] == [
        f"{file}:{line_of(text, '突然停几:')}: error: not_heard_with.zh-CN.突然停几: '突然停几' "
        "is no option's zh-CN keyword: its exceptions change nothing (did you mean '突然停机'?)",
        f"{file}:{line_of(text, '突然停机:')}: error: not_heard_with.zh-CN.突然停机[0]: '停机' "
        "is in '突然停机' itself: the keyword would never be heard",
        f"{file}:{line_of(text, 'fr:')}: error: not_heard_with.fr: no prompt catalog for "
        "language 'fr'",
        f"{file}:{line_of(text, 'facture:')}: error: not_heard_with.fr.facture: 'facture' is "
        "no option's fr keyword: its exceptions change nothing",
    ]


def test_same_keyword_in_two_languages_is_fine(tmp_path: Path) -> None:
    text = speech_tree("{en: [OK]}", "{zh-CN: [OK]}")
    menu = load_tree(write(tmp_path, text), PROMPTS).menus["main"]
    in_english, in_mandarin = match_speech(menu, "en", "ok"), match_speech(menu, "zh-CN", "OK")
    assert in_english is not None and in_english.target == "agent"
    assert in_mandarin is not None and in_mandarin.target == "bye"


def test_speech_keywords_in_a_language_without_catalog(tmp_path: Path) -> None:
    text = speech_tree("{en: [agent]}", "{fr: [au revoir]}")
    file, problems = check(tmp_path, text)
    assert str(only(problems)) == (
        f"{file}:{key_line(text, '2')}: error: "
        "nodes.main.options[1].speech.fr: no prompt catalog for language 'fr'"
    )


LANGUAGE_TREE = """\
start: lang
nodes:
  lang:
    kind: language
    prompt: welcome
    options:
      - {key: "1", language: en}
      - {key: "2", language: fr, speech: [French]}
      - {key: "1", language: zh-CN}
    next: bye
  bye:
    kind: hangup
"""


def test_language_options_with_unknown_catalog_or_duplicate_key(tmp_path: Path) -> None:
    file, problems = check(tmp_path, LANGUAGE_TREE)
    assert sorted(str(p) for p in problems) == [
        f"{file}:{key_line(LANGUAGE_TREE, '2')}: error: nodes.lang.options[1].language: "
        "no prompt catalog for language 'fr' (have: en, zh-CN)",
        f"{file}:{key_line(LANGUAGE_TREE, '1', ', language: zh-CN')}: error: "
        "nodes.lang.options[2].key: key '1' is already options[0]",
    ]


def test_a_language_menus_shortcut_is_checked_like_an_option(tmp_path: Path) -> None:
    """Its key may not be a language's, its words need a catalog, its target must exist."""
    text = EMERGENCY_LANE.replace("start: main\n", "start: lang\n").replace(
        "nodes:\n",
        "nodes:\n"
        "  lang:\n"
        "    kind: language\n"
        "    options: [{key: '1', language: en}]\n"
        "    shortcuts:\n"
        "      - {key: '1', target: security}\n"
        "      - {target: secruity, speech: {fr: [pirate]}}\n"
        "    next: main\n",
    )
    _, problems = check(tmp_path, text)
    assert {(p.path, p.message.split(":")[0]) for p in problems} == {
        ("nodes.lang.shortcuts[0].key", "key '1' is already options[0]"),
        ("nodes.lang.shortcuts[1].target", "unknown node 'secruity' (did you mean 'security'?)"),
        ("nodes.lang.shortcuts[1].speech.fr", "no prompt catalog for language 'fr'"),
    }


def test_a_likely_language_by_country_must_be_one_of_the_options(tmp_path: Path) -> None:
    text = LANGUAGE_TREE.replace('      - {key: "2", language: fr, speech: [French]}\n', "")
    text = text.replace('{key: "1", language: zh-CN}', '{key: "2", language: zh-CN}')
    text = text.replace(
        "    next: bye\n", '    by_country: {"+86": zh-CN, "+33": fr}\n    next: bye\n'
    )
    file, problems = check(tmp_path, text)
    assert [str(p) for p in problems] == [
        f"{file}:{line_of(text, 'by_country:')}: error: nodes.lang.by_country.+33: 'fr' is not "
        "one of this menu's options (en, zh-CN)",
    ]
    text = text.replace('"+33": fr', '"33": zh-CN')
    file, problems = check(tmp_path, text)
    assert [str(p) for p in problems] == [
        f"{file}:{line_of(text, 'by_country:')}: error: nodes.lang.by_country.33: '33' must be "
        "a country calling code like '+86' (in quotes)",
    ]


def test_prompt_keys_missing_from_the_base_catalog_are_errors(tmp_path: Path) -> None:
    """With the catalog's nearest key offered, when one is close: a typo, not a new prompt."""
    text = BASE.replace(
        "    prompt: main\n",
        "    prompt: mian\n    short_prompt: main_shrot\n    invalid_prompt: invalidd\n",
    )
    file, problems = check(tmp_path, text)
    assert sorted(str(p) for p in problems) == sorted(
        f"{file}:{line_of(text, f'{setting}: {key}')}: error: nodes.main.{setting}: "
        f"prompt '{key}' is missing from the en catalog{hint}"
        for setting, key, hint in (
            ("prompt", "mian", " (did you mean 'main'?)"),
            ("short_prompt", "main_shrot", " (did you mean 'main_short'?)"),
            ("invalid_prompt", "invalidd", " (did you mean 'invalid'?)"),
        )
    )


def test_a_misspelt_target_is_one_error_with_the_node_meant(tmp_path: Path) -> None:
    """Not one more "unreachable" for every node behind the typo: reachability takes the
    closest node as meant, and the message offers it."""
    text = BASE.replace('{key: "2", target: bye}', '{key: "2", target: by}')
    file, problems = check(tmp_path, text)
    assert str(only(problems)) == (
        f"{file}:{key_line(text, '2')}: error: nodes.main.options[1].target: "
        "unknown node 'by' (did you mean 'bye'?)"
    )
    far = BASE.replace('{key: "2", target: bye}', '{key: "2", target: exit}')
    file, problems = check(tmp_path, far)
    assert sorted(p.message for p in problems) == [
        "unknown node 'exit'",
        "unreachable: no path from the start node leads here",
    ]


def test_default_option_prompt_of_a_language_node_is_checked(tmp_path: Path) -> None:
    folder = copy_prompts(tmp_path)
    en = folder / "en.yaml"
    en.write_text(en.read_text().replace("  language_option: For English, press {key}.\n", ""))
    text = dedent(
        """\
        start: lang
        nodes:
          lang:
            kind: language
            options:
              - {key: "1", language: en}
              - {key: "2", language: zh-CN}
            next: bye
          bye:
            kind: hangup
        """
    )
    path = write(tmp_path, text)
    problems = [p for p in check_tree(path, folder) if p.severity == "error"]
    assert [str(p) for p in problems] == [
        # option_prompt is not written in the file: the node is the place to look; the
        # prompt is in the Mandarin catalog, so no other name is offered for it
        f"{path}:{line_of(text, 'lang:')}: error: nodes.lang: "
        "prompt 'language_option' is missing from the en catalog: it is in zh-CN.yaml; add it "
        "to en.yaml (what en callers hear, and every other language's fallback)"
    ]


def test_prompt_missing_only_from_zh_cn_is_a_warning_and_english_is_said(tmp_path: Path) -> None:
    text = BASE.replace("    prompt: goodbye\n", "    prompt: advice\n")
    path = write(tmp_path, text)
    tree = load_tree(path, PROMPTS)
    assert [str(w) for w in tree.warnings] == [
        f"{path}:{line_of(text, 'prompt: advice')}: warning: nodes.bye.prompt: "
        "prompt 'advice' has no zh-CN translation; en is said instead"
    ]
    said = tree.catalogs.render("advice", "zh-CN")
    assert (said.text, said.voice) == ("Never share your two-factor code.", "Polly.Joanna-Neural")


def test_a_prompt_saying_a_variable_nothing_fills_there_is_warned(tmp_path: Path) -> None:
    """ "Your ticket number is {ticket}" as the main menu's prompt: no ticket is open yet, and
    the caller hears "Your ticket number is ." Every such variable is named."""
    text = BASE.replace("    prompt: main\n", "    prompt: ticket_number\n").replace(
        "    prompt: goodbye\n", "    prompt: callback_confirmed\n"
    )
    file, problems = check(tmp_path, text)
    assert [str(p) for p in problems] == [
        f"{file}:{line_of(text, 'prompt: ticket_number')}: warning: nodes.main.prompt: prompt "
        "'ticket_number' says {ticket}, which nothing fills at a menu's prompt: callers would "
        "hear nothing in its place ({ticket} is filled in a queue's ticket_prompt, a ticket "
        "node's status_prompt)",
        f"{file}:{line_of(text, 'prompt: callback_confirmed')}: warning: nodes.bye.prompt: "
        "prompt 'callback_confirmed' says {last4} and {ticket}, which nothing fills at a "
        "hangup's prompt: callers would hear nothing in their places ({last4} is filled in a "
        "number_check's official_prompt and not_official_prompt; {ticket} is filled in a "
        "queue's ticket_prompt, a ticket node's status_prompt)",
    ]


def test_a_variable_the_engine_fills_at_that_node_is_not_warned_of(tmp_path: Path) -> None:
    """A number check's verdict says the number's {last4}, filled there; not {ticket}."""
    text = number_check_tree('official_numbers: ["+15551230001"]\n').replace(
        "    not_official_prompt: goodbye\n", "    not_official_prompt: callback_confirmed\n"
    )
    file, problems = check(tmp_path, text)
    assert [str(p) for p in problems] == [
        f"{file}:{line_of(text, 'not_official_prompt:')}: warning: "
        "nodes.check.not_official_prompt: prompt 'callback_confirmed' says {ticket}, which "
        "nothing fills at a number_check's not_official_prompt: callers would hear nothing in "
        "its place ({ticket} is filled in a queue's ticket_prompt, a ticket node's "
        "status_prompt)"
    ]


def test_a_prompt_saying_opens_where_no_closed_hours_check_leads_is_warned(
    tmp_path: Path,
) -> None:
    """`{opens}` is known only after an hours check found the hours closed (through say nodes):
    anywhere else the caller hears the time left out."""
    text = BASE.replace("    prompt: goodbye\n", "    prompt: closed\n")
    path = write(tmp_path, text)
    opens = [w for w in load_tree(path, PROMPTS).warnings if "{opens}" in w.message]
    assert [str(w) for w in opens] == [
        f"{path}:{line_of(text, 'prompt: closed')}: warning: nodes.bye.prompt: "
        "prompt 'closed' says {opens}, but callers reach 'bye' other than from an hours check "
        "that found the hours closed: they would hear no time"
    ]
    # The mini tree reaches its closed prompt from the hours check's on_closed only.
    mini = load_tree(DATA / "mini.yaml", PROMPTS)
    assert not [w for w in mini.warnings if "{opens}" in w.message]
    # Through a say node too; not once a menu leads there as well.
    through_say = (
        (DATA / "mini.yaml")
        .read_text()
        .replace(
            "    on_closed: closed\n",
            "    on_closed: sorry\n  sorry:\n    kind: say\n    prompt: advice\n    next: closed\n",
        )
    )
    said = load_tree(write(tmp_path, through_say), PROMPTS)
    assert not [w for w in said.warnings if "{opens}" in w.message]
    from_menu = mini_with_option_3("sorry", through_say)
    [warned] = [
        w for w in load_tree(write(tmp_path, from_menu), PROMPTS).warnings if "{opens}" in w.message
    ]
    assert warned.path == "nodes.closed.prompt"


def test_engine_prompts_are_required_in_the_base_catalog(tmp_path: Path) -> None:
    folder = copy_prompts(tmp_path)
    en = folder / "en.yaml"
    en.write_text(en.read_text().replace("  hold: Please hold.\n", ""))
    zh = folder / "zh-CN.yaml"
    zh.write_text(zh.read_text().replace("  goodbye: 再见。\n", ""))
    path = write(tmp_path, BASE)
    problems = check_tree(path, folder)
    engine = sorted((p for p in problems if not p.path), key=lambda p: p.severity)
    assert [(p.file, p.line, p.severity) for p in engine] == [
        (str(path), None, "error"),
        (str(path), None, "warning"),
    ]
    assert engine[0].message.startswith("prompt 'hold' is missing from the en catalog")
    assert engine[1].message.startswith(
        "prompt 'goodbye' has no zh-CN translation; en is said instead"
    )
    assert [str(p) for p in problems if p.path] == [
        f"{path}:{line_of(BASE, 'prompt: goodbye')}: warning: nodes.bye.prompt: "
        "prompt 'goodbye' has no zh-CN translation; en is said instead"
    ]


def test_more_than_nine_options_is_only_a_warning(tmp_path: Path) -> None:
    options = "".join(
        f'      - {{key: "{k}", target: {"bye" if k == 9 else "agent"}}}\n' for k in range(10)
    )
    text = BASE.replace(BASE_OPTIONS, options)
    path = write(tmp_path, text)
    tree = load_tree(path, PROMPTS)
    assert [str(w) for w in fragment_problems(tree.warnings)] == [
        f"{path}:{line_of(text, 'options:')}: warning: nodes.main.options: "
        "10 keyed options: callers cannot hold more than 9 in mind"
    ]
    assert len(tree.menus["main"].by_key) == 10


def test_options_reached_only_by_speech_do_not_count_towards_the_nine(tmp_path: Path) -> None:
    options = "".join(f'      - {{key: "{k}", target: agent}}\n' for k in range(1, 10))
    spoken = "      - {speech: {en: [scam]}, target: bye}\n"
    text = BASE.replace(BASE_OPTIONS, options + spoken)
    tree = load_tree(write(tmp_path, text), PROMPTS)
    assert [w.message for w in fragment_problems(tree.warnings)] == []


# -- number_check and official_numbers -------------------------------------------------------------

NUMBER_CHECK = """\
  check:
    kind: number_check
    prompt: main
    invalid_prompt: invalid
    official_prompt: connecting
    not_official_prompt: goodbye
    short_code_prompt: goodbye
    on_official: bye
    on_not_official: agent
    on_failure: agent
"""


def number_check_tree(official: str) -> str:
    text = BASE.replace('{key: "2", target: bye}', '{key: "2", target: check}') + NUMBER_CHECK
    return text.replace("nodes:\n", official + "nodes:\n", 1)


def test_a_number_check_with_no_official_numbers_is_refused(tmp_path: Path) -> None:
    """Every number checked would be called not ours, the exchange's own included."""
    text = number_check_tree("")
    file, problems = check(tmp_path, text)
    assert_at(only(problems), file, line_of(text, "check:"), "nodes.check", "no official_numbers")


def test_official_numbers_are_e164_or_short_codes(tmp_path: Path) -> None:
    text = number_check_tree(
        'official_numbers:\n  - "+12025550143"\n  - 55501\n  - "202-555-0188"\n'
    )
    file, problems = check(tmp_path, text)
    assert_at(
        only(problems),
        file,
        line_of(text, '- "202-555-0188"'),
        "official_numbers[2]",
        "'202-555-0188' is not a number callers can be told is ours",
    )


def test_an_official_number_listed_twice_is_a_warning(tmp_path: Path) -> None:
    text = number_check_tree('official_numbers: ["+15551230001", "55501", "+15551230001"]\n')
    tree = load_tree(write(tmp_path, text), PROMPTS)
    assert tree.tree.official_numbers == ["+15551230001", "55501", "+15551230001"]
    [warning] = tree.warnings
    assert warning.path == "official_numbers[2]"
    assert "listed already (official_numbers[0])" in warning.message


def test_a_fictional_official_number_is_warned_of_at_its_line(tmp_path: Path) -> None:
    """NANP keeps 555-0100 to 555-0199 for fiction in every area code, and the shipped tree's
    examples are such numbers: a tree still listing one was not given the exchange's own,
    and a caller checking a number the exchange really called them from is told not ours."""
    fictional = ["+12025550143", "+13125550100", "+19895550199"]
    # Beside the range, the same digits in another country, and a short code.
    real = ["+12025550200", "+12025550099", "+15551230001", "+442025550143", "55501"]
    listed = "".join(f'  - "{n}"\n' for n in [*fictional, *real])
    text = number_check_tree(f"official_numbers:\n{listed}")
    path = write(tmp_path, text)
    lines = [line_of(text, f'- "{number}"') for number in fictional]
    warnings = load_tree(path, PROMPTS).warnings
    assert [str(w) for w in warnings] == [
        f"{path}:{lines[i]}: warning: official_numbers[{i}]: "
        f"'{number}' is a fictional number (555-0100 to 555-0199, for examples only): "
        "replace it with the exchange's real numbers; a real one missing here is called not "
        "ours to the customer it called"
        for i, number in enumerate(fictional)
    ]


def test_the_shipped_trees_only_warnings_are_its_example_numbers() -> None:
    """What `routes check` says of routes/hotline.yaml until the exchange's numbers replace
    its examples (production.md): those numbers, and nothing else."""
    tree = load_tree(HOTLINE, HOTLINE_PROMPTS)
    examples = [n for n in tree.tree.official_numbers if re.fullmatch(r"\+1\d{3}55501\d{2}", n)]
    assert [w.message.split("'")[1] for w in tree.warnings] == examples
    assert all(w.path.startswith("official_numbers[") for w in tree.warnings)


# -- graph: reachability, depth, loops ----------------------------------------------------------


def test_unreachable_node(tmp_path: Path) -> None:
    text = BASE + "  orphan:\n    kind: say\n    prompt: welcome\n    next: bye\n"
    file, problems = check(tmp_path, text)
    assert str(only(problems)) == (
        f"{file}:{line_of(text, 'orphan:')}: error: nodes.orphan: "
        "unreachable: no path from the start node leads here"
    )


def test_a_branch_kept_out_of_use_is_warned_of_not_refused(tmp_path: Path) -> None:
    """An incident's detour: the operator sends a key elsewhere for a while and keeps the
    menu it led to for later. Said so (`out_of_use`), neither it nor what only it leads to
    is refused; the check warns, and warns again once a path leads there (the flag is then
    to go). Without it, still an error: a node nobody can reach is most often a mistake."""
    kept = "    kind: say\n    prompt: welcome\n    next: later\n"
    rest = "  later:\n    kind: say\n    prompt: welcome\n    next: bye\n"
    text = BASE + "  orphan:\n    out_of_use: true\n" + kept + rest
    file, problems = check(tmp_path, text)
    assert [str(p) for p in problems] == [
        f"{file}:{line_of(text, 'out_of_use: true')}: warning: nodes.orphan.out_of_use: "
        "out of use: no path from the start node leads here (nor to what only it leads to)"
    ]
    file, problems = check(tmp_path, BASE + "  orphan:\n" + kept + rest)
    assert (
        sorted(p.message for p in problems)
        == ["unreachable: no path from the start node leads here"] * 2
    )
    reached = BASE.replace('{key: "2", target: bye}', '{key: "2", target: orphan}', 1)
    assert reached != BASE
    file, problems = check(tmp_path, reached + "  orphan:\n    out_of_use: true\n" + kept + rest)
    assert [(p.severity, p.message) for p in problems] == [
        (
            "warning",
            "out_of_use, but a path from the start node leads here: callers reach it "
            "(take the flag away, or the path)",
        )
    ]


def menu_chain(depth: int, limit: int) -> str:
    text = f"start: m1\nmax_menu_depth: {limit}\n"
    text += "menu_defaults: {on_no_input: agent, on_invalid: agent}\nnodes:\n"
    for i in range(1, depth + 1):
        target = f"m{i + 1}" if i < depth else "bye"
        text += f"  m{i}:\n    kind: menu\n    prompt: main\n    options:\n"
        text += f'      - {{key: "1", target: {target}}}\n'
    return text + "  bye:\n    kind: hangup\n  agent: {kind: queue, queue: general}\n"


def test_menu_deeper_than_max_menu_depth(tmp_path: Path) -> None:
    text = menu_chain(depth=4, limit=2)
    file, problems = check(tmp_path, text)
    assert sorted(str(p) for p in problems) == [
        f"{file}:{line_of(text, 'm3:')}: error: nodes.m3: "
        "menu is 3 menus deep; the limit is max_menu_depth=2",
        f"{file}:{line_of(text, 'm4:')}: error: nodes.m4: "
        "menu is 4 menus deep; the limit is max_menu_depth=2",
    ]


def test_menus_at_max_menu_depth_are_fine(tmp_path: Path) -> None:
    tree = load_tree(write(tmp_path, menu_chain(depth=3, limit=3)), PROMPTS)
    assert set(tree.menus) == {"m1", "m2", "m3"}


SAY_LOOP = """\
start: main
nodes:
  main:
    kind: menu
    prompt: main
    announcement: true
    on_no_input: tip
    on_invalid: tip
    options:
      - {key: "1", target: tip}
  tip:
    kind: say
    prompt: welcome
    next: more
  more:
    kind: say
    prompt: connecting
    next: tip
"""


def test_say_say_loop_with_no_input_is_named(tmp_path: Path) -> None:
    file, problems = check(tmp_path, SAY_LOOP)
    assert str(only(problems)) == (
        f"{file}:{line_of(SAY_LOOP, 'tip:')}: error: nodes.tip: "
        "loop with no input or exit: tip -> more -> tip"
    )


def test_say_that_leads_to_itself(tmp_path: Path) -> None:
    text = SAY_LOOP.replace("    next: more\n", "    next: tip\n").replace(
        '      - {key: "1", target: tip}\n',
        '      - {key: "1", target: tip}\n      - {key: "2", target: more}\n',
    )
    file, problems = check(tmp_path, text)
    assert str(only(problems)) == (
        f"{file}:{line_of(text, 'tip:')}: error: nodes.tip: loop with no input or exit: tip -> tip"
    )


def test_say_hours_say_loop_with_no_input_is_named(tmp_path: Path) -> None:
    text = SAY_LOOP.replace(
        "  more:\n    kind: say\n    prompt: connecting\n    next: tip\n",
        "  more:\n"
        "    kind: hours\n"
        "    timezone: Asia/Singapore\n"
        '    weekly: {mon: ["09:00-18:00"]}\n'
        "    on_open: tip\n"
        "    on_closed: main\n",
    )
    assert "kind: hours" in text
    file, problems = check(tmp_path, text)
    assert str(only(problems)) == (
        f"{file}:{line_of(text, 'tip:')}: error: nodes.tip: "
        "loop with no input or exit: tip -> more -> tip"
    )


def test_loop_through_a_menu_waits_for_input_and_is_fine(tmp_path: Path) -> None:
    text = SAY_LOOP.replace("    next: tip\n", "    next: main\n").replace(
        '      - {key: "1", target: tip}\n',
        '      - {key: "1", target: tip}\n      - {key: "2", target: bye}\n',
    )
    text = text.replace("    on_no_input: tip\n    on_invalid: tip\n", "")
    text = text.replace(
        "    options:\n", "    on_no_input: agent\n    on_invalid: agent\n    options:\n"
    )
    text += "  bye:\n    kind: hangup\n    prompt: goodbye\n"
    text += "  agent: {kind: queue, prompt: connecting, queue: general}\n"
    assert fragment_problems(load_tree(write(tmp_path, text), PROMPTS).warnings) == []


EMERGENCY_LANE = """\
start: main
nodes:
  main:
    kind: menu
    prompt: main
    announcement: true
    on_no_input: agent
    on_invalid: agent
    options:
      - {key: "1", target: notice}
      - {key: "2", target: bye}
  notice: {kind: say, prompt: connecting, next: check}
  check:
    kind: verify
    steps: [uid, pin]
    step_prompts: {uid: main, pin: main}
    failed_prompt: invalid
    on_success: security
    on_failure: security
  security:
    kind: queue
    prompt: connecting
    queue: security
    priority: emergency
    self_freeze: true
    freeze_prompt: connecting
  agent: {kind: queue, prompt: connecting, queue: general}
  bye: {kind: hangup, prompt: goodbye}
"""


def test_the_emergency_lane_fragment_has_no_problem(tmp_path: Path) -> None:
    assert check(tmp_path, EMERGENCY_LANE)[1] == []


@pytest.mark.parametrize(
    ("change", "at", "path", "severity", "said"),
    [
        # A victim who fails verification is hung up on, or sent round the notice again for
        # ever: refused. Only put in the general line: warned.
        (
            "    on_failure: security\n",
            "    on_failure: bye\n",
            "check.on_failure",
            "error",
            "'bye' here (on_failure) never reaches an emergency queue: a hijack victim",
        ),
        (
            "    on_failure: security\n",
            "    on_failure: notice\n",
            "check.on_failure",
            "error",
            "'notice' here (on_failure) never reaches an emergency queue: a hijack victim",
        ),
        (
            "    on_failure: security\n",
            "    on_failure: agent\n",
            "check.on_failure",
            "warning",
            "'agent' here (on_failure) never reaches an emergency queue: only one that every",
        ),
        (
            "    on_success: security\n    on_failure: security\n",
            "    on_success: security\n    on_failure: security\n    on_locked: bye\n",
            "check.on_locked",
            "error",
            "'bye' here (on_locked) never reaches an emergency",
        ),
    ],
)
def test_a_verdict_that_turns_a_hijack_victim_away_is_refused(
    tmp_path: Path, change: str, at: str, path: str, severity: str, said: str
) -> None:
    text = EMERGENCY_LANE.replace(change, at)
    file, problems = check(tmp_path, text)
    # (Back to the notice, a caller who keys nothing goes round: refused as such too.)
    problem = only([p for p in problems if UNANSWERED_LOOP not in p.message])
    field = path.split(".")[1]
    lines = enumerate(text.splitlines(), 1)
    line = [n for n, written in lines if written.strip().startswith(field + ":")]
    assert (problem.file, problem.line, problem.path, problem.severity) == (
        file,
        line[-1],
        f"nodes.{path}",
        severity,
    )
    assert said in problem.message


@pytest.mark.parametrize(
    ("on_leave", "more", "severity", "said"),
    [
        # Twilio's queue full: the victim hears goodbye, at once or after a word.
        ("bye", "", "error", "'bye' here (on_leave) never reaches an emergency queue: a hijack"),
        (
            "sorry",
            "  sorry: {kind: say, prompt: invalid, next: bye}\n",
            "error",
            "'sorry' here (on_leave) never reaches an emergency queue: a hijack victim the queue",
        ),
        # Put in the line everyone waits in: warned.
        ("agent", "", "warning", "(on_leave) never reaches an emergency queue: only one that"),
    ],
)
def test_an_emergency_queue_that_hangs_up_on_a_victim_it_cannot_take_is_refused(
    tmp_path: Path, on_leave: str, more: str, severity: str, said: str
) -> None:
    text = EMERGENCY_LANE.replace(
        "    freeze_prompt: connecting\n",
        f"    freeze_prompt: connecting\n    on_leave: {on_leave}\n",
    )
    text += more
    file, problems = check(tmp_path, text)
    problem = only(problems)
    assert (problem.file, problem.line, problem.path, problem.severity) == (
        file,
        line_of(text, f"on_leave: {on_leave}"),
        "nodes.security.on_leave",
        severity,
    )
    assert said in problem.message


@pytest.mark.parametrize(
    ("on_leave", "more"),
    [
        ("main", ""),  # the menu again: 1 is the emergency lane still
        ("again", "  again: {kind: say, prompt: connecting, next: security}\n"),
    ],
)
def test_an_emergency_queue_that_sends_a_victim_it_cannot_take_back_to_the_lane_is_fine(
    tmp_path: Path, on_leave: str, more: str
) -> None:
    text = EMERGENCY_LANE.replace(
        "    freeze_prompt: connecting\n",
        f"    freeze_prompt: connecting\n    on_leave: {on_leave}\n",
    )
    assert check(tmp_path, text + more)[1] == []


def test_a_stored_version_whose_emergency_queue_hangs_up_still_serves_its_calls() -> None:
    text = EMERGENCY_LANE.replace(
        "    freeze_prompt: connecting\n", "    freeze_prompt: connecting\n    on_leave: bye\n"
    )
    prompts = dict(load_catalogs(PROMPTS).sources)
    with pytest.raises(SourceError, match="on_leave"):
        tree_from_stored(text, "tree.yaml", prompts)
    tree = tree_from_stored(text, "tree.yaml", prompts, in_progress=True)
    assert [p.path for p in tree.warnings if "never reaches" in p.message] == [
        "nodes.security.on_leave"
    ]


def test_a_queue_whose_callers_it_cannot_take_are_hung_up_on_is_warned(tmp_path: Path) -> None:
    """Not only a menu's silence: a queue's `on_leave` to goodbye ends the call of a caller
    Twilio's full queue turned away; without it they are queued again."""
    text = BASE.replace("    queue: general\n", "    queue: general\n    on_leave: sorry\n")
    text += "  sorry: {kind: say, prompt: invalid, next: bye}\n"
    file, problems = check(tmp_path, text)
    assert [str(p) for p in problems] == [
        f"{file}:{line_of(text, 'on_leave: sorry')}: warning: nodes.agent.on_leave: "
        "'sorry' hangs up on callers the queue could not take (Twilio's queue full, an error); "
        "without on_leave they are queued again, then in the fallback queue"
    ]


def test_the_emergency_lane_behind_business_hours_is_refused(tmp_path: Path) -> None:
    """Closed, the victim pressing 1 would hear goodbye: refused, at the closed branch. (And
    the first menu has no key straight to the emergency queue any more: warned.)"""
    text = EMERGENCY_LANE.replace('{key: "1", target: notice}', '{key: "1", target: open}')
    text += (
        "  open: {kind: hours, timezone: UTC, weekly: {mon: ['09:00-17:00']},\n"
        "         on_open: notice, on_closed: bye}\n"
    )
    _, problems = check(tmp_path, text)
    assert [p.path for p in problems if p.severity == "warning"] == ["nodes.main.options"]
    problem = only([p for p in problems if p.severity == "error"])
    assert (problem.line, problem.path, problem.severity) == (
        line_of(text, "on_open: notice"),
        "nodes.open.on_closed",
        "error",
    )
    assert "'bye' here (on_closed) never reaches an emergency queue" in problem.message


def test_hours_before_a_menu_that_also_leads_back_to_the_emergency_lane_are_fine(
    tmp_path: Path,
) -> None:
    """A topic behind business hours whose menu offers the main menu again: the emergency
    lane is still reached from the start, and this node was not on the way to it."""
    text = EMERGENCY_LANE.replace('{key: "2", target: bye}', '{key: "2", target: open}')
    text += (
        "  open: {kind: hours, timezone: UTC, weekly: {mon: ['09:00-17:00']},\n"
        "         on_open: topic, on_closed: bye}\n"
        "  topic:\n    kind: menu\n    prompt: main\n    on_no_input: agent\n"
        "    on_invalid: agent\n    options:\n      - {key: '1', target: main}\n"
    )
    assert check(tmp_path, text)[1] == []


HIJACK_KEY = '      - key: "1"            # stolen / hacked account: emergency freeze, 24/7\n'


def test_the_main_menu_without_its_emergency_key_is_warned(tmp_path: Path) -> None:
    """Main menu 1 deleted (the emergency option left spoken only): its prompts still say
    "press 1", and a victim who does is told it is not a valid choice."""
    shipped = HOTLINE.read_text(encoding="utf-8")
    assert HIJACK_KEY in shipped
    text = shipped.replace(
        HIJACK_KEY + "        target: emergency\n", "      - target: emergency\n"
    )
    path = write(tmp_path, text)
    main_menu = text.index("  main_menu:\n")

    def line(needle: str) -> int:
        return text.count("\n", 0, text.index(needle, main_menu)) + 1

    said = (
        "which this menu does not have (no option, repeat, back or operator key): a caller "
        "who presses it is told it is not a valid choice"
    )
    # Beside the example official_numbers' warnings, which every copy of the shipped tree has.
    main_menus = [p for p in check_tree(path, HOTLINE_PROMPTS) if p.path.startswith("nodes.")]
    assert [str(p) for p in main_menus] == [
        f"{path}:{line('    prompt: main_menu')}: warning: nodes.main_menu.prompt: prompt "
        f'\'main_menu\' names key 1 ("press 1" in en, "按1" in zh-CN), {said}',
        f"{path}:{line('    short_prompt:')}: warning: nodes.main_menu.short_prompt: prompt "
        f'\'main_menu_short\' names key 1 ("Press 1" in en, "按1" in zh-CN), {said}',
        f"{path}:{line('    options:')}: warning: nodes.main_menu.options: no key leads "
        "straight to an emergency queue (emergency_queue), through say or verify nodes only: "
        "the first menu callers hear must give a hijack victim one key to security, the key "
        "its prompt tells them to press",
    ]


def test_an_emergency_key_one_menu_further_in_is_not_the_first_menus(tmp_path: Path) -> None:
    text = EMERGENCY_LANE.replace('{key: "1", target: notice}', '{key: "1", target: sub}')
    text += (
        "  sub:\n    kind: menu\n    prompt: main\n    on_no_input: agent\n"
        "    on_invalid: agent\n    options:\n      - {key: '1', target: notice}\n"
    )
    _, problems = check(tmp_path, text)
    assert [(p.line, p.path, p.severity) for p in problems] == [
        (text.splitlines().index("    options:") + 1, "nodes.main.options", "warning")
    ]
    assert "no key leads straight to an emergency queue (security)" in problems[0].message


def test_a_menu_prompt_naming_a_key_the_menu_lacks_is_warned(tmp_path: Path) -> None:
    """The emergency option moved from 1 to 3: the prompt still says "Press 1" (and its
    Chinese, 按0, a key this menu never had)."""
    text = EMERGENCY_LANE.replace('{key: "1", target: notice}', '{key: "3", target: notice}')
    path = write(tmp_path, text)
    assert [str(p) for p in check_tree(path, PROMPTS) if p.message != NO_ANNOUNCEMENT] == [
        f"{path}:{line_of(text, 'prompt: main')}: warning: nodes.main.prompt: prompt 'main' "
        'names key 1 ("Press 1" in en, "按1" in zh-CN); key 0 ("按0" in zh-CN), which this menu '
        "does not have (no option, repeat, back or operator key): a caller who presses it is "
        "told it is not a valid choice",
        # and the key it moved to is said nowhere: no caller learns of it
        f"{path}:{key_line(text, '3')}: warning: nodes.main.options[0].key: key 3 (to 'notice'): "
        "prompt 'main' never names it in en, zh-CN: en, zh-CN callers are not told of it; say "
        'it there ("press 3", 请按3), or remove the option',
    ]


@pytest.mark.parametrize(
    ("text", "keys"),
    [
        (
            "For deposits, press 3. To hear this again, press star.",
            {"3": "press 3", "*": "press star"},
        ),
        (
            "Press 1 for a call back, or press the pound key to go back.",
            {"1": "Press 1", "#": "press the pound"},
        ),
        ("Press hash to go back. Press # again.", {"#": "Press hash"}),
        ("For English, press {key}. Press 10 digits.", {}),  # a variable, a number
        (
            "重听请按星号键,返回请按井号键,人工服务请按0。",
            {"*": "按星号", "#": "按井号", "0": "按0"},
        ),
        ("请按1或不要挂机;按照提示操作;请输入UID,以井号键结束。", {"1": "按1"}),
    ],
)
def test_the_keys_a_prompt_tells_callers_to_press(text: str, keys: dict[str, str]) -> None:
    assert keys_said(text) == keys


def edit(path: Path, old: str, new: str) -> None:
    text = path.read_text(encoding="utf-8")
    assert old in text, old
    path.write_text(text.replace(old, new), encoding="utf-8")


def test_a_setting_indented_as_a_node_is_said_to_be_indented_too_little(tmp_path: Path) -> None:
    """A node's last setting typed two spaces short becomes a node of its own: both errors
    (the queue lacks it, a node that is no mapping) say what most likely happened."""
    text = BASE.replace("    queue: general\n", "  queue: general\n")
    file, problems = check(tmp_path, text)
    assert sorted(str(p) for p in problems) == [
        f"{file}:{line_of(text, 'agent:')}: error: nodes.agent: 'queue' is required (a node "
        "is named 'queue': is that this setting, indented too little?)",
        f"{file}:{line_of(text, 'queue:')}: error: nodes.queue: a node is a mapping of "
        "settings starting with `kind`, not the str 'general' (`queue` is a node's setting, "
        "here read as a node of its own: indented too little? Indent it as the settings of the "
        "node above it)",
    ]


def test_a_new_option_its_prompt_offers_in_one_language_only_is_warned(tmp_path: Path) -> None:
    """An incident: option 3 added, and "3 for deposits" added to the English prompt only.
    Mandarin callers are never told of it: warned at the option's key, naming the language
    that lacks it; once both catalogs offer it, nothing is said."""
    prompts = copy_prompts(tmp_path)
    en, zh = prompts / "en.yaml", prompts / "zh-CN.yaml"
    edit(en, "2 for more, 0 for", "2 for more, 3 for deposits, 0 for")
    text = BASE.replace(BASE_OPTIONS, BASE_OPTIONS + '      - {key: "3", target: agent}\n')
    path = write(tmp_path, text)
    warned = [str(p) for p in check_tree(path, prompts) if KEY_NOT_OFFERED in p.message]
    assert warned == [
        f"{path}:{key_line(text, '3')}: warning: nodes.main.options[3].key: key 3 (to 'agent'): "
        "prompt 'main' says \"3 for\" in en but never names it in zh-CN: zh-CN callers are not "
        'told of it; say it there ("press 3", 请按3), or remove the option'
    ]
    edit(zh, "人工服务请按0", "充值请按3,人工服务请按0")
    assert [str(p) for p in check_tree(path, prompts)] == []


def test_a_prompt_that_names_no_key_is_no_list_of_keys(tmp_path: Path) -> None:
    """A menu asked by voice ("Tell us what you need") lists no keys: its keyed options are
    not warned of, nor a catalog whose prompt says none (an untranslated one is the English)."""
    prompts = copy_prompts(tmp_path)
    edit(prompts / "en.yaml", "Main menu. Press 1 for help, 2 for more, 0 for an agent.", "Hi.")
    edit(prompts / "zh-CN.yaml", "  main: 主菜单。求助请按1,更多请按2,人工服务请按0。\n", "")
    problems = check_tree(write(tmp_path, BASE), prompts)
    assert not [str(p) for p in problems if KEY_NOT_OFFERED in p.message]


@pytest.mark.parametrize(
    ("text", "keys"),
    [
        ("Press 1 for help, 2 for more, 0 for an agent.", {"1", "2", "0"}),
        ("Press 1, 2 or 0.", {"1", "2", "0"}),
        ("请按1、2或0。", {"1", "2", "0"}),
        ("Press 1 to continue, or pound to go back.", {"1", "#"}),
        ("Press 1, or stay on the line, for help, 2 if you lost it, or 0 for us.", {"1", "2", "0"}),
        # a list is read in the sentence of its "press" only
        ("For English, press 1. We have 2 offices, 3 for sure.", {"1"}),
    ],
)
def test_the_keys_a_prompt_offers(text: str, keys: set[str]) -> None:
    assert set(keys_offered(text)) == keys


def test_a_self_freezing_queue_is_an_emergency_one(tmp_path: Path) -> None:
    text = EMERGENCY_LANE.replace("    priority: emergency\n", "")
    _, problems = check(tmp_path, text)
    assert "must be priority: emergency, not normal" in only(problems).message
    assert only(problems).severity == "error"


def say_chain(length: int) -> str:
    """BASE with option 1 leading through `length` say nodes in a row to the agent."""
    text = BASE.replace('{key: "1", target: agent}', '{key: "1", target: s0}')
    for i in range(length):
        after = f"s{i + 1}" if i + 1 < length else "agent"
        text += f"  s{i}:\n    kind: say\n    prompt: connecting\n    next: {after}\n"
    return text


def test_as_many_say_nodes_in_a_row_as_one_turn_takes_are_fine(tmp_path: Path) -> None:
    assert check(tmp_path, say_chain(MAX_PASS_THROUGH - 1))[1] == []


@pytest.mark.parametrize("length", [MAX_PASS_THROUGH, 3000])
def test_more_say_nodes_in_a_row_than_one_turn_takes_are_refused(
    tmp_path: Path, length: int
) -> None:
    """The engine would apologise and hang up at the 32nd; a very long run is refused with
    the same message (once a RecursionError, and a 500 from the reload API)."""
    text = say_chain(length)
    file, problems = check(tmp_path, text)
    assert str(only(problems)) == (
        f"{file}:{line_of(text, 's0:')}: error: nodes.s0: {length} say/hours nodes in a row "
        f"from here: a caller is taken through at most {MAX_PASS_THROUGH - 1} before a node "
        "that waits for them"
    )


def test_a_survey_whose_back_key_is_a_score_is_refused(tmp_path: Path) -> None:
    """0 puts a caller not done back in line; a 1-5 key there would do it to one rating."""
    text = EMERGENCY_LANE.replace(
        "    freeze_prompt: connecting\n", "    freeze_prompt: connecting\n    after_agent: rate\n"
    )
    text += "  rate: {kind: survey, prompt: main, operator_key: '5', next: bye}\n"
    file, problems = check(tmp_path, text)
    assert_at(only(problems), file, line_of(text, "rate:"), "nodes.rate.operator_key", "a score")


def test_uid_lengths_that_admit_no_uid_are_refused(tmp_path: Path) -> None:
    text = EMERGENCY_LANE.replace(
        "    steps: [uid, pin]\n",
        "    steps: [uid, pin]\n    uid_min_digits: 9\n    uid_max_digits: 8\n",
    )
    file, problems = check(tmp_path, text)
    assert_at(only(problems), file, line_of(text, "check:"), "nodes.check", "uid_min_digits")


@pytest.mark.parametrize("steps", ["uid", "uid, phone", "phone"])
def test_a_verification_that_asks_for_no_secret_is_refused(tmp_path: Path, steps: str) -> None:
    """A UID is on referral links and P2P pages, and an attacker has the victim's number:
    "verified" on those alone would freeze the account (self_freeze) and show the agent its
    earlier cases, on one anonymous call."""
    text = EMERGENCY_LANE.replace("    steps: [uid, pin]\n", f"    steps: [{steps}]\n").replace(
        "step_prompts: {uid: main, pin: main}", "step_prompts: {uid: main, phone: main}"
    )
    file, problems = check(tmp_path, text)
    assert str(only(problems)) == (
        f"{file}:{line_of(text, 'steps:')}: error: nodes.check.steps: asks for no secret "
        f"({steps}): a UID or a phone number is no proof, anyone who knows them would be "
        "verified, their account frozen and its earlier cases shown to the agent; add one of "
        "id_last4, pin, pin_or_id_last4, totp"
    )


def test_the_tree_and_the_identity_service_agree_on_what_a_secret_is() -> None:
    assert SECRET_STEPS == SECRET_FACTORS


def test_a_verification_asking_for_the_authenticators_code_is_warned_of(tmp_path: Path) -> None:
    """ "Support asked me for my authenticator code" is the scammer's script: a line that asks
    for it teaches callers to give it."""
    text = EMERGENCY_LANE.replace("    steps: [uid, pin]\n", "    steps: [uid, totp]\n").replace(
        "step_prompts: {uid: main, pin: main}", "step_prompts: {uid: main, totp: main}"
    )
    file, problems = check(tmp_path, text)
    assert str(only(problems)) == (
        f"{file}:{line_of(text, 'steps:')}: warning: nodes.check.steps: a totp step {TOTP_ASKED}, "
        "what scammers posing as support ask for: callers who hear us ask for it are readier "
        "to read it out to a scammer posing as us; say in 'main' why this call differs (only "
        "on a call they made to the number in our app), or ask for pin or id_last4"
    )


def test_the_totp_warning_names_the_shipped_prompts_that_promise_never_to_ask_for_it(
    tmp_path: Path,
) -> None:
    """The shipped line says "we will never ask for your two-factor code" before the
    verification (and on hold, in the ticket text): a totp step there contradicts them."""
    shipped = HOTLINE.read_text(encoding="utf-8")
    text = shipped.replace("steps: [uid, pin_or_id_last4]", "steps: [uid, totp]")
    assert text != shipped
    path = write(tmp_path, text)
    problems = [
        p for p in check_tree(path, HOTLINE_PROMPTS) if not p.path.startswith("official_numbers")
    ]
    problem = only(problems)
    assert (problem.line, problem.path, problem.severity) == (
        line_of(text, "steps: [uid, totp]"),
        "nodes.emergency_verify.steps",
        "warning",
    )
    assert TOTP_ASKED in problem.message
    named = problem.message.split("which ")[1].split(" promise we never ask for")[0].split(", ")
    assert {"'emergency_notice'", "'account_2fa_advice'", "'hold_tip_4'"} <= set(named)
    assert "'verify_totp'" not in named  # which says why it asks
    assert "say in 'verify_totp' why this call differs" in problem.message


def test_a_stored_verification_without_a_secret_still_serves_its_calls_in_progress() -> None:
    """Refused as a new tree or a rollback; the calls that began on it end as they began."""
    text = EMERGENCY_LANE.replace("    steps: [uid, pin]\n", "    steps: [uid]\n")
    prompts = dict(load_catalogs(PROMPTS).sources)
    with pytest.raises(SourceError, match="asks for no secret"):
        tree_from_stored(text, "tree.yaml", prompts)
    tree = tree_from_stored(text, "tree.yaml", prompts, in_progress=True)
    assert [(p.path, p.severity) for p in tree.warnings if NO_SECRET in p.message] == [
        ("nodes.check.steps", "warning")
    ]


def test_a_stored_version_refused_by_a_later_check_still_serves_its_calls_in_progress() -> None:
    """A tree live before the emergency-lane checks existed: refused as a new tree or as a
    rollback, rebuilt with a warning for the calls that began on it."""
    text = EMERGENCY_LANE.replace("    on_failure: security\n", "    on_failure: bye\n")
    prompts = dict(load_catalogs(PROMPTS).sources)
    with pytest.raises(SourceError, match="never reaches an emergency queue"):
        tree_from_stored(text, "tree.yaml", prompts)
    tree = tree_from_stored(text, "tree.yaml", prompts, in_progress=True)
    assert [p.path for p in tree.warnings if "never reaches" in p.message] == [
        "nodes.check.on_failure"
    ]


def test_menus_that_only_lead_to_each_other_are_refused(tmp_path: Path) -> None:
    """No operator, no queue, no goodbye: a caller there goes round for ever."""
    text = SAY_LOOP.replace("    next: tip\n", "    next: main\n")
    _, problems = check(tmp_path, text)
    assert [(p.line, p.path, p.severity) for p in problems] == [
        (line_of(text, name + ":"), f"nodes.{name}", "error") for name in ("main", "tip", "more")
    ]
    assert all(p.message.startswith("no way out: from here no path reaches") for p in problems)


LOOPING = (
    "a caller who keys nothing (or only wrong keys) never reaches a queue, a transfer or a "
    "hang-up; escalate to a queue"
)


@pytest.mark.parametrize(
    ("change", "at", "more", "needle", "path", "loop"),
    [
        # Silence at the main menu presents the main menu again, and again.
        (
            "    on_no_input: agent\n",
            "    on_no_input: main\n",
            "",
            "on_no_input: main",
            "nodes.main.on_no_input",
            "main (on_no_input) -> main",
        ),
        # Wrong keys: a word, then the menu again.
        (
            "    on_invalid: agent\n",
            "    on_invalid: sorry\n",
            "  sorry: {kind: say, prompt: invalid, next: main}\n",
            "on_invalid: sorry",
            "nodes.main.on_invalid",
            "main (on_invalid) -> sorry (next) -> main",
        ),
        # Two menus that escalate to each other: the first's escalation is where it is said.
        (
            "    on_no_input: agent\n",
            "    on_no_input: sub\n",
            "  sub:\n    kind: menu\n    prompt: main\n    on_no_input: main\n"
            "    on_invalid: agent\n    options:\n      - {key: '1', target: agent}\n",
            "on_no_input: sub",
            "nodes.main.on_no_input",
            "main (on_no_input) -> sub (on_no_input) -> main",
        ),
    ],
)
def test_silence_or_wrong_keys_that_go_round_for_ever_are_refused(
    tmp_path: Path, change: str, at: str, more: str, needle: str, path: str, loop: str
) -> None:
    text = BASE.replace(change, at) + more
    file, problems = check(tmp_path, text)
    assert [str(p) for p in problems] == [
        f"{file}:{line_of(text, needle)}: error: {path}: silence or wrong keys go round for "
        f"ever: {loop}: {LOOPING}"
    ]


def test_a_silent_loop_menu_defaults_make_is_reported_there(tmp_path: Path) -> None:
    """Every menu's silence to the main menu: the main menu's own goes round (said at
    menu_defaults), and so does its wrong keys' sub menu's silence (said at its on_invalid)."""
    text = MENU_DEFAULTS.replace("  on_no_input: agent\n", "  on_no_input: main\n", 1)
    _, problems = check(tmp_path, text)
    assert [(p.line, p.path, p.severity) for p in problems] == [
        (line_of(text, "on_no_input: main"), "menu_defaults.on_no_input", "error"),
        (line_of(text, "on_invalid: sub"), "nodes.main.on_invalid", "error"),
    ]
    assert "main (on_no_input) -> main:" in problems[0].message
    assert "main (on_invalid) -> sub (on_no_input) -> main:" in problems[1].message


def test_escalating_from_menu_to_menu_to_a_queue_is_fine(tmp_path: Path) -> None:
    text = BASE.replace("    on_no_input: agent\n", "    on_no_input: sub\n") + (
        "  sub:\n    kind: menu\n    prompt: main\n    on_no_input: agent\n"
        "    on_invalid: agent\n    options:\n      - {key: '1', target: main}\n"
    )
    assert check(tmp_path, text)[1] == []


def test_a_stored_version_whose_silence_goes_round_still_serves_its_calls() -> None:
    text = BASE.replace("    on_no_input: agent\n", "    on_no_input: main\n")
    prompts = dict(load_catalogs(PROMPTS).sources)
    with pytest.raises(SourceError, match="go round for ever"):
        tree_from_stored(text, "tree.yaml", prompts)
    tree = tree_from_stored(text, "tree.yaml", prompts, in_progress=True)
    assert [(p.path, p.severity) for p in tree.warnings if UNANSWERED_LOOP in p.message] == [
        ("nodes.main.on_no_input", "warning")
    ]


def test_several_schema_errors_are_all_reported(tmp_path: Path) -> None:
    text = transfer_tree('"555"').replace('{key: "1", target: agent}', '{key: "12", target: agent}')
    text = text.replace("    on_invalid: agent\n", "    on_invalid: agent\n    colour: red\n")
    text = text.replace("  bye:\n    kind: hangup\n", "  bye:\n    kind: goodbye\n")
    file, problems = check(tmp_path, text)
    assert sorted((p.line, p.path) for p in problems) == [
        (line_of(text, "colour: red"), "nodes.main.colour"),
        (line_of(text, '- {key: "12"'), "nodes.main.options[0].key"),
        (line_of(text, "bye:"), "nodes.bye"),
        (line_of(text, "number:"), "nodes.desk.number"),
    ]
    assert all(p.file == file and p.severity == "error" for p in problems)


def test_several_graph_errors_are_all_reported(tmp_path: Path) -> None:
    text = speech_tree("{fr: [aide]}", "{en: [bye]}")
    text = text.replace("    prompt: main\n", "    prompt: nope\n")
    text = text.replace('{key: "2", speech', '{key: "1", speech')
    text = text.replace("    on_invalid: agent\n", "    on_invalid: nobody\n")
    text = text.replace("start: main", "start: begin")
    _, problems = check(tmp_path, text)
    assert sorted((p.line, p.path, p.message) for p in problems) == sorted(
        [
            (1, "start", "unknown node 'begin'"),
            (line_of(text, "on_invalid:"), "nodes.main.on_invalid", "unknown node 'nobody'"),
            (
                line_of(text, "prompt: nope"),
                "nodes.main.prompt",
                "prompt 'nope' is missing from the en catalog",
            ),
            (
                line_of(text, '- {key: "1", speech: {fr'),
                "nodes.main.options[0].speech.fr",
                "no prompt catalog for language 'fr'",
            ),
            (
                line_of(text, '- {key: "1", speech: {en'),
                "nodes.main.options[1].key",
                "key '1' is already options[0]",
            ),
        ]
    )


def test_unreachable_node_is_reported_alongside_a_prompt_error(tmp_path: Path) -> None:
    text = BASE.replace("prompt: connecting", "prompt: conecting")
    text += "  orphan:\n    kind: hangup\n"
    _, problems = check(tmp_path, text)
    assert {p.path for p in problems} == {"nodes.agent.prompt", "nodes.orphan"}


def with_warning(kind: str) -> tuple[str, str, str]:
    """A tree from the tests above that has one graph error, plus a prompt with no zh-CN
    translation (a warning): text, path and message of the error."""
    if kind == "unreachable":
        text = BASE.replace("prompt: goodbye", "prompt: advice") + "  orphan:\n    kind: hangup\n"
        return text, "nodes.orphan", "unreachable: no path from the start node leads here"
    if kind == "loop":
        text = SAY_LOOP.replace("prompt: connecting", "prompt: advice")
        return text, "nodes.tip", "loop with no input or exit: tip -> more -> tip"
    text = menu_chain(depth=3, limit=2).replace("prompt: main", "prompt: more", 1)
    return text, "nodes.m3", "menu is 3 menus deep; the limit is max_menu_depth=2"


@pytest.mark.parametrize("kind", ["unreachable", "loop", "depth"])
def test_trees_for_the_next_test_do_have_a_translation_warning(tmp_path: Path, kind: str) -> None:
    text, _, _ = with_warning(kind)
    _, problems = check(tmp_path, text)
    untranslated = re.findall(r"prompt: (closed|advice|more)$", text, re.MULTILINE)
    assert len(untranslated) == 1
    assert [p.message for p in problems if p.severity == "warning"] == [
        f"prompt '{untranslated[0]}' has no zh-CN translation; en is said instead"
    ]


@pytest.mark.parametrize("kind", ["unreachable", "loop", "depth"])
def test_graph_errors_are_found_even_when_translations_are_missing(
    tmp_path: Path, kind: str
) -> None:
    text, path, message = with_warning(kind)
    _, problems = check(tmp_path, text)
    assert any(p.severity == "warning" for p in problems)
    assert (path, message, "error") in {(p.path, p.message, p.severity) for p in problems}


# -- the compiled tree ----------------------------------------------------------------------------


def test_same_text_gives_the_same_version(tmp_path: Path) -> None:
    a = load_tree(write(tmp_path, BASE, "a.yaml"), PROMPTS)
    b = load_tree(write(tmp_path, BASE, "b.yaml"), PROMPTS)
    assert a.version == b.version
    assert len(a.version) == 16


def test_version_changes_with_the_tree_text(tmp_path: Path) -> None:
    a = load_tree(write(tmp_path, BASE, "a.yaml"), PROMPTS)
    b = load_tree(
        write(tmp_path, BASE.replace("queue: general", "queue: sales"), "b.yaml"), PROMPTS
    )
    assert a.version != b.version


def test_version_changes_with_a_prompt(tmp_path: Path) -> None:
    path = write(tmp_path, BASE)
    before = load_tree(path, PROMPTS)
    folder = copy_prompts(tmp_path)
    zh = folder / "zh-CN.yaml"
    zh.write_text(zh.read_text().replace("再见。", "再见!"))
    after = load_tree(path, folder)
    assert after.version != before.version
    assert after.source == before.source


def test_stored_tree_rebuilds_to_the_same_version(tmp_path: Path) -> None:
    tree = load_tree(write(tmp_path, BASE), PROMPTS)
    again = tree_from_stored(tree.source, tree.file, tree.catalogs.sources)
    assert again.version == tree.version
    assert again.tree == tree.tree


def test_compile_source_names_the_given_file() -> None:
    catalogs = load_catalogs(PROMPTS)
    with pytest.raises(SourceError) as info:
        compile_source(BASE.replace("start: main", "start: x"), "stored:v3", catalogs)
    assert str(info.value) == "stored:v3:1: error: start: unknown node 'x'"
    tree: CompiledTree = compile_source(BASE, "stored:v3", catalogs)
    assert tree.file == "stored:v3"


# -- `ivr routes check` ---------------------------------------------------------------------------


def routes_check(path: Path, prompts: Path = PROMPTS) -> tuple[int, str, str, BaseException | None]:
    result = CliRunner().invoke(app, ["routes", "check", str(path), "--prompts", str(prompts)])
    return result.exit_code, result.stdout, result.output, result.exception


def test_cli_prints_every_error_and_exits_1(tmp_path: Path) -> None:
    text = BASE.replace("    on_invalid: agent\n", "    on_invalid: nobody\n").replace(
        "prompt: goodbye", "prompt: bye_bye"
    )
    path = write(tmp_path, text)
    code, stdout, output, exception = routes_check(path)
    assert code == 1
    assert isinstance(exception, SystemExit)
    assert sorted(stdout.splitlines()) == sorted(
        [
            f"{path}:{line_of(text, 'on_invalid:')}: error: nodes.main.on_invalid: "
            "unknown node 'nobody'",
            f"{path}:{line_of(text, 'prompt: bye_bye')}: error: nodes.bye.prompt: "
            "prompt 'bye_bye' is missing from the en catalog",
        ]
    )
    assert f"{path}: 2 error(s); the tree would be refused" in output
    assert "Traceback" not in output


def test_cli_prints_warnings_and_ok_and_exits_0(tmp_path: Path) -> None:
    text = BASE.replace("prompt: goodbye", "prompt: advice")
    path = write(tmp_path, text)
    code, stdout, output, exception = routes_check(path)
    assert (code, exception) == (0, None)
    lines = stdout.splitlines()
    assert lines[0] == (
        f"{path}:{line_of(text, 'prompt: advice')}: warning: nodes.bye.prompt: "
        "prompt 'advice' has no zh-CN translation; en is said instead"
    )
    assert lines[1].startswith(f"{path}: OK, 3 nodes, 1 warning(s), version ")
    assert len(lines) == 2
    assert "Traceback" not in output


def test_cli_version_is_the_trees_version(tmp_path: Path) -> None:
    path = write(tmp_path, BASE)
    code, stdout, _, _ = routes_check(path)
    assert code == 0
    assert stdout.strip() == (
        f"{path}: OK, 3 nodes, 0 warning(s), version {load_tree(path, PROMPTS).version} "
        f"(catalogs: {PROMPTS})"
    )


def test_cli_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "nope.yaml"
    code, stdout, output, exception = routes_check(path)
    assert code == 1 and isinstance(exception, SystemExit)
    assert stdout.splitlines() == [f"{path}: error: cannot read: No such file or directory"]
    assert "Traceback" not in output


def test_cli_bad_prompt_catalogs(tmp_path: Path) -> None:
    folder = copy_prompts(tmp_path)
    en = folder / "en.yaml"
    text = en.read_text().replace("goodbye: Goodbye.", 'goodbye: "Goodbye {name:upper}."')
    en.write_text(text)
    code, stdout, output, exception = routes_check(write(tmp_path, BASE), folder)
    assert code == 1 and isinstance(exception, SystemExit)
    assert stdout.splitlines() == [
        f"{en}:{line_of(text, 'goodbye:')}: error: prompts.goodbye: "
        "unknown format '{name:upper}' (allowed: {name}, {name:digits})"
    ]
    assert "Traceback" not in output


def test_cli_impossible_holiday_is_an_error_not_a_crash(tmp_path: Path) -> None:
    text = hours_tree('"09:00-18:00"').replace("2026-12-25", "2026-02-30")
    path = write(tmp_path, text)
    code, stdout, output, exception = routes_check(path)
    assert isinstance(exception, SystemExit), repr(exception)
    assert code == 1
    assert stdout.startswith(f"{path}:{line_of(text, 'holidays:')}: error: ")
    assert "Traceback" not in output


def test_escalating_silence_to_a_hang_up_is_warned(tmp_path: Path) -> None:
    text = BASE.replace("    on_no_input: agent\n", "    on_no_input: bye\n")
    file, problems = check(tmp_path, text)
    assert [str(p) for p in problems] == [
        f"{file}:{line_of(text, 'on_no_input: bye')}: warning: nodes.main.on_no_input: "
        "'bye' hangs up on callers who cannot answer; send them to a queue"
    ]


def test_language_choice_words_the_base_recogniser_cannot_hear_are_warned(
    tmp_path: Path,
) -> None:
    text = (DATA / "mini.yaml").read_text().replace("speech: [Chinese]", "speech: [中文]")
    _, problems = check(tmp_path, text)
    warned = [p for p in problems if "cannot be recognised" in p.message]
    assert len(warned) == 1 and warned[0].path == "nodes.language.options[1].speech"


def test_a_prompt_too_long_to_hold_in_mind_is_warned_once_at_its_catalog_line(
    tmp_path: Path,
) -> None:
    """The shared `invalid` prompt made long: one warning, where it is shortened (its line in
    the catalog), naming the menus that say it; not one per menu."""
    folder = copy_prompts(tmp_path)
    en = folder / "en.yaml"
    long = "Sorry, that is not a valid choice. " * 5
    en.write_text(
        en.read_text().replace(
            "  invalid: Sorry, that is not a valid choice.\n", f"  invalid: {long}\n"
        )
    )
    text = BASE.replace('      - {key: "0", target: agent}', '      - {key: "0", target: sub}') + (
        "  sub:\n    kind: menu\n    prompt: main\n    on_no_input: agent\n"
        "    on_invalid: agent\n    options:\n      - {key: '1', target: agent}\n"
    )
    problems = check_tree(write(tmp_path, "max_prompt_seconds: 10\n" + text), folder)
    lines = en.read_text().splitlines()
    assert [str(p) for p in problems if "to say" in p.message] == [
        f"{en}:{lines.index(f'  invalid: {long}') + 1}: warning: prompts.invalid: prompt "
        "'invalid' takes about 14 s to say: more than a caller can hold in mind (the tree's "
        "max_prompt_seconds=10); said at main, sub"
    ]


def mini_with_option_3(target: str, text: str | None = None) -> str:
    """The mini tree (or `text`, one like it) with one more main-menu option: 3 -> `target`."""
    return (text or (DATA / "mini.yaml").read_text()).replace(
        '      - {key: "2", target: more}',
        f'      - {{key: "2", target: more}}\n      - {{key: "3", target: {target}}}',
    )


def test_a_queue_behind_hours_reached_directly_is_warned(tmp_path: Path) -> None:
    text = mini_with_option_3("agent")
    _, problems = check(tmp_path, text)
    [bypass] = [p for p in problems if "business hours" in p.message]
    assert bypass.path == "nodes.main.options[2].target" and "'hours'" in bypass.message
    assert bypass.severity == "warning"


def test_a_survey_reached_before_any_agent_is_warned_at_the_edge(tmp_path: Path) -> None:
    """A survey is for after an agent (a queue's after_agent): from a menu, the caller has
    nobody to rate, and the answer belongs to no case."""
    text = mini_with_option_3("survey")
    file, problems = check(tmp_path, text)
    [warning] = [p for p in problems if "survey" in p.message]
    assert (warning.file, warning.severity) == (file, "warning")
    assert (warning.line, warning.path) == (
        line_of(text, '- {key: "3", target: survey}'),
        "nodes.main.options[2].target",
    )
    assert warning.message == (
        "survey 'survey' reached before any agent: a caller there has no one to rate "
        "(reach it by a queue's after_agent)"
    )
    # The mini tree reaches it by after_agent only: nothing to say.
    assert not [
        p for p in check(tmp_path, (DATA / "mini.yaml").read_text())[1] if "survey" in p.message
    ]


def test_hours_that_are_never_open_are_warned_on_their_weekly_line(tmp_path: Path) -> None:
    text = (DATA / "mini.yaml").read_text()
    start = text.index("    weekly: {")
    text = text[:start] + "    weekly: {sat: []}\n" + text[text.index("\n", start) + 1 :]
    file, problems = check(tmp_path, text)
    [warning] = [p for p in problems if "never open" in p.message]
    assert (warning.file, warning.severity, warning.path) == (file, "warning", "nodes.hours.weekly")
    assert warning.line == line_of(text, "weekly: {sat: []}")
    assert warning.message == (
        "never open: every caller goes to 'closed', and 'agent' is never reached this way"
    )
    assert not [
        p for p in check(tmp_path, (DATA / "mini.yaml").read_text())[1] if "never open" in p.message
    ]


def test_a_tree_where_no_menu_plays_the_announcement_is_warned(tmp_path: Path) -> None:
    """An operator who drops `announcement: true` (or never wrote it) would silence what
    supervisors announce during an incident: said at the start node, as a warning."""
    text = BASE.replace("    announcement: true\n", "", 1)
    path = write(tmp_path, text)
    [warning] = check_tree(path, PROMPTS)
    assert (warning.severity, warning.line, warning.path) == ("warning", 1, "start")
    assert warning.message == NO_ANNOUNCEMENT
    assert load_tree(path, PROMPTS).announced_at == []
    assert check_tree(write(tmp_path, BASE), PROMPTS) == []


def test_a_broken_announcing_menu_is_not_taken_for_no_announcement(tmp_path: Path) -> None:
    """The menu that plays the announcement has a type error: that error is reported, not a
    warning that no menu plays the announcement (which waits, like the rest of what depends
    on the broken node)."""
    text = BASE.replace("    on_invalid: agent\n", "    on_invalid: agent\n    colour: red\n", 1)
    problems = check_tree(write(tmp_path, text), PROMPTS)
    assert [(p.path, p.severity) for p in problems] == [("nodes.main.colour", "error")]


# -- keys offered only while an announcement is up (`incident_options`) ---------------------------

INCIDENT_OPTIONS = """\
    incident_options:
      - key: "8"
        prompt: main_incident
        target: worried
"""
WORRIED = """\
  worried:
    kind: say
    prompt: worried_advice
    next: bye
"""
INCIDENT_PROMPTS = {
    "en": "  main_incident: About the incident, and your account is fine? Press 8.\n"
    "  worried_advice: See our app for news.\n",
    "zh-CN": "  main_incident: 为事件来电、账户正常,请按8。\n  worried_advice: 请看App公告。\n",
}


def incident_tree(announcement: bool = True) -> str:
    """BASE whose main menu offers 8 (to `worried`, a say node reached no other way) while
    an announcement is up."""
    text = BASE.replace("    options:\n", INCIDENT_OPTIONS + "    options:\n", 1)
    if not announcement:
        text = text.replace("    announcement: true\n", "", 1)
    return text + WORRIED


def incident_prompts(tmp_path: Path, **changed: dict[str, str]) -> Path:
    """The test catalogs with INCIDENT_PROMPTS, and `changed` prompts (by language) set."""
    folder = copy_prompts(tmp_path)
    for language, lines in INCIDENT_PROMPTS.items():
        catalog = folder / f"{language}.yaml"
        text = catalog.read_text(encoding="utf-8") + lines
        for key, said in changed.get(language, {}).items():
            text = re.sub(rf"(?m)^  {key}: .*$", f"  {key}: {said}", text)
        catalog.write_text(text, encoding="utf-8")
    return folder


def test_a_menus_incident_key_is_compiled_apart_and_its_branch_is_reachable(
    tmp_path: Path,
) -> None:
    text = incident_tree()
    path, prompts = write(tmp_path, text), incident_prompts(tmp_path)
    assert check_tree(path, prompts) == []  # `worried` is reached: by the incident key
    tree = load_tree(path, prompts)
    menu = tree.menus["main"]
    assert set(menu.by_key) == {"1", "2", "0"}  # never taken as an ordinary key
    assert {k: o.target for k, o in menu.while_announced.items()} == {"8": "worried"}
    # Its prompt is checked as every prompt is: missing from English, an error at its line.
    bare = copy_prompts(tmp_path / "bare")
    problems = check_tree(path, bare)
    assert {(p.severity, p.path) for p in problems} >= {
        ("error", "nodes.main.incident_options[0].prompt")
    }
    assert any(p.line == line_of(text, "prompt: main_incident") for p in problems)


def test_an_incident_key_on_a_menu_that_plays_no_announcement_is_warned_of(
    tmp_path: Path,
) -> None:
    """Never offered there (the engine offers them only where the announcement is played):
    an operator who took `announcement: true` away is told the keys went with it."""
    text = incident_tree(announcement=False)
    problems = check_tree(write(tmp_path, text), incident_prompts(tmp_path))
    problem = only([p for p in problems if p.message != NO_ANNOUNCEMENT])
    assert (problem.severity, problem.path) == ("warning", "nodes.main.incident_options")
    assert problem.line == line_of(text, "incident_options:")
    assert problem.message.startswith(INCIDENT_NEVER_OFFERED)
    assert "does not play it (announcement: true)" in problem.message


@pytest.mark.parametrize(
    ("key", "taken"), [("1", "options[0]"), ("*", "the repeat_key"), ("0", "the operator_key")]
)
def test_an_incident_key_the_menu_has_already_is_refused(
    tmp_path: Path, key: str, taken: str
) -> None:
    """While an announcement is up that key would mean something else: the emergency lane
    (1) above all."""
    text = incident_tree().replace('      - key: "8"\n', f'      - key: "{key}"\n', 1)
    text = text.replace('{key: "0", target: agent}', '{key: "3", target: agent}')
    if key == "0":
        text = text.replace("    on_invalid: agent\n", OPERATOR, 1)
    said = {lang: {"main_incident": f"Incident? Press {key}."} for lang in INCIDENT_PROMPTS}
    problems = check_tree(write(tmp_path, text), incident_prompts(tmp_path, **said))
    errors = [p for p in problems if p.severity == "error"]
    assert [(p.path, p.message) for p in errors] == [
        ("nodes.main.incident_options[0].key", f"key '{key}' is already {taken}")
    ]


OPERATOR = '    on_invalid: agent\n    operator_key: "0"\n    operator: agent\n'


def test_a_menu_prompt_naming_its_incident_key_is_refused(tmp_path: Path) -> None:
    """Said with no announcement up, it sends callers to a key that is then invalid."""
    text = incident_tree()
    named = {"zh-CN": {"main": "主菜单。求助请按1,更多请按2,人工服务请按0,事件请按8。"}}
    problems = check_tree(write(tmp_path, text), incident_prompts(tmp_path, **named))
    problem = only(problems)
    assert (problem.severity, problem.path, problem.line) == (
        "error",
        "nodes.main.prompt",
        text.splitlines().index("    prompt: main") + 1,
    )
    assert problem.message.startswith(
        f"prompt 'main' names key 8 (\"按8\" in zh-CN), {INCIDENT_KEY_SAID} "
        "(incident_options[0]): callers would be told of it when none is"
    ), problem.message


def test_an_incident_prompt_that_never_names_its_key_is_warned_of(tmp_path: Path) -> None:
    silent = {"zh-CN": {"main_incident": "如果您为事件来电,账户正常,请继续收听。"}}
    text = incident_tree()
    problems = check_tree(write(tmp_path, text), incident_prompts(tmp_path, **silent))
    problem = only(problems)
    assert (problem.severity, problem.path) == ("warning", "nodes.main.incident_options[0].prompt")
    assert "never names key 8 in zh-CN" in problem.message


def test_incident_keys_are_no_menu_default(tmp_path: Path) -> None:
    text = "menu_defaults:\n  incident_options: []\n" + BASE
    file, problems = check(tmp_path, text)
    assert [str(p) for p in problems] == [
        f"{file}:2: error: menu_defaults.incident_options: 'incident_options' is not a menu setting"
    ]


# -- when business hours next begin -------------------------------------------------------------


def hours_node(weekly: dict[str, list[str]], holidays: list[str] | None = None) -> HoursNode:
    return HoursNode.model_validate(
        {
            "kind": "hours",
            "timezone": "Asia/Singapore",
            "weekly": weekly,
            "holidays": holidays or [],
            "on_open": "a",
            "on_closed": "b",
        }
    )


SGT = ZoneInfo("Asia/Singapore")
WEEKDAYS_9_TO_6 = {d: ["09:00-18:00"] for d in ("mon", "tue", "wed", "thu", "fri")}


@pytest.mark.parametrize(
    ("weekly", "holidays", "now", "opens"),
    [
        # Saturday noon: Monday morning.
        (WEEKDAYS_9_TO_6, [], datetime(2026, 11, 28, 12, 0), datetime(2026, 11, 30, 9, 0)),
        # Christmas Friday a holiday, New Year's Day too: Monday, then Monday again.
        (WEEKDAYS_9_TO_6, ["2026-12-25"], datetime(2026, 12, 24, 19, 0), datetime(2026, 12, 28, 9)),
        (WEEKDAYS_9_TO_6, ["2026-12-28"], datetime(2026, 12, 26, 9, 0), datetime(2026, 12, 29, 9)),
        # A lunch break, ranges in any order: the afternoon.
        (
            {"mon": ["13:00-18:00", "09:00-12:00"]},
            [],
            datetime(2026, 11, 30, 12, 30),
            datetime(2026, 11, 30, 13, 0),
        ),
        (
            {"mon": ["13:00-18:00", "09:00-12:00"]},
            [],
            datetime(2026, 11, 30, 8),
            datetime(2026, 11, 30, 9),
        ),
        # Closed at 18:00 sharp: next Monday.
        ({"mon": ["09:00-18:00"]}, [], datetime(2026, 11, 30, 18, 0), datetime(2026, 12, 7, 9, 0)),
    ],
)
def test_hours_say_when_they_next_begin(
    weekly: dict[str, list[str]], holidays: list[str], now: datetime, opens: datetime
) -> None:
    node = hours_node(weekly, holidays)
    assert node.next_opening(now.replace(tzinfo=SGT)) == opens.replace(tzinfo=SGT)
    # From any zone: the same moment.
    assert node.next_opening(now.replace(tzinfo=SGT).astimezone(UTC)) == opens.replace(tzinfo=SGT)


def test_hours_that_never_begin_within_a_year_say_none() -> None:
    every_monday = [f"{date(2026, 11, 30) + timedelta(weeks=n)}" for n in range(60)]
    node = hours_node({"mon": ["09:00-10:00"]}, every_monday)
    assert node.next_opening(datetime(2026, 11, 28, tzinfo=SGT)) is None
    assert hours_node({}).next_opening(datetime(2026, 11, 28, tzinfo=SGT)) is None


def test_every_menus_keywords_reach_twilio_as_hints(hotline_tree: CompiledTree) -> None:
    """Twilio takes up to 500 hints: every keyword of the shipped menus fits, the last
    options' too (a cut at 2,000 characters left the main menu's later topics unhinted),
    each once and none cut in the middle."""
    for name, menu in hotline_tree.menus.items():
        for lang, hints in menu.hints.items():
            entries = hints.split(", ")
            assert len(entries) == len(set(entries)) <= 500, name
            spoken = [o for o, _ in menu.by_speech[lang]]
            assert {w.replace(",", " ") for o in spoken for w in o.speech[lang]} == set(entries)


@pytest.mark.parametrize(
    ("old", "new", "path", "message"),
    [
        (
            '{key: "1", target: agent}',
            "{key: yes, target: agent}",
            "nodes.main.options[0].key",
            "should be text: unquoted, YAML reads yes/no, on/off and true/false as the boolean "
            "true (write it in quotes)",
        ),
        (
            "    prompt: main\n",
            "    prompt: 404\n",
            "nodes.main.prompt",
            'should be text: unquoted, YAML reads 404 as a number (write it in quotes, "404")',
        ),
    ],
)
def test_a_value_yaml_reads_as_a_boolean_or_number_says_so(
    tmp_path: Path, old: str, new: str, path: str, message: str
) -> None:
    """Not pydantic's "Input should be a valid string": why the operator's text is not one."""
    _, problems = check(tmp_path, BASE.replace(old, new, 1))
    assert [(p.path, p.message) for p in problems if p.severity == "error"] == [(path, message)]


def test_an_unquoted_country_code_says_yaml_read_a_number(tmp_path: Path) -> None:
    text = LANGUAGE_TREE.replace("    next: bye\n", "    by_country: {+1: en}\n    next: bye\n")
    _, problems = check(tmp_path, text)
    [problem] = [p for p in problems if "by_country" in p.path]
    assert problem.path == "nodes.lang.by_country"
    assert problem.message == (
        "the key 1 is read by YAML as a number, not text: write it in quotes (a country "
        "code too: unquoted, +86 is the number 86)"
    )


def test_an_unquoted_star_says_it_starts_an_alias(tmp_path: Path) -> None:
    text = BASE.replace("    on_invalid: agent\n", "    on_invalid: agent\n    repeat_key: *\n")
    _, problems = check(tmp_path, text)
    assert only(problems).message.endswith(
        '(an unquoted * starts an alias and & an anchor: write "*" in quotes)'
    )


def test_an_operator_word_an_option_takes_first_is_never_heard(tmp_path: Path) -> None:
    """The same word: no option's duplicate (an error), but the operator's words come last,
    so "help" here leads to goodbye, never to a person."""
    text = (
        BASE.replace('{key: "2", target: bye}', '{key: "2", target: bye, speech: {en: [help]}}')
        .replace('      - {key: "0", target: agent}', "", 1)
        .replace(
            "    on_invalid: agent\n",
            '    on_invalid: agent\n    operator_key: "0"\n    operator: agent\n'
            "    operator_speech: {en: [help]}\n",
        )
    )
    file, problems = check(tmp_path, text)
    assert str(only(problems)) == (
        f"{file}:{line_of(text, 'operator_speech:')}: warning: nodes.main.operator_speech.en: "
        "keyword 'help' is never heard: options[1]'s 'help' matches it first (Latin keywords "
        "match at the start of a word, Chinese anywhere; the first option listed wins)"
    )


def test_more_keywords_than_twilio_takes_hints_is_warned_of(tmp_path: Path) -> None:
    words = ", ".join(f"w{n}x" for n in range(501))
    text = speech_tree(f"{{en: [{words}]}}", "{en: [goodbye]}")
    file, problems = check(tmp_path, text)
    assert str(only(problems)) == (
        f"{file}:{line_of(text, 'main:')}: warning: nodes.main: 502 en keywords: Twilio "
        "takes 500 hints, so from 'w500x' on they are not hinted to its recogniser (fewer "
        "words, or fewer options spoken here)"
    )
    fits = speech_tree("{en: [" + ", ".join(f"w{n}x" for n in range(499)) + "]}", "{en: [bye]}")
    assert check(tmp_path, fits)[1] == []


@pytest.mark.parametrize(
    ("heard", "normal"),
    [
        ("我的 账户 被 盗 了。", "我的账户被盗了"),
        ("我的 U 被人 授权 转走了", "我的u被人授权转走了"),
        ("My account  was HACKED!", "my account was hacked"),
        ("my API 密钥 leaked", "my api密钥leaked"),
    ],
)
def test_speech_is_normalised_with_no_space_beside_a_han_character(heard: str, normal: str) -> None:
    """Some recognisers write Chinese with spaces between its words; keywords have none."""
    assert normalise_speech(heard) == normal


@pytest.mark.parametrize(
    ("node", "key"),
    [("紧急", "1"), ("agent", "\uff19")],  # a node named in Chinese; a full-width nine
    ids=["chinese-name", "full-width-key"],
)
def test_an_input_methods_characters_are_said_to_be_so(tmp_path: Path, node: str, key: str) -> None:
    """An operator typing in a Chinese input method: the error says why the name or key is
    refused, not only what a valid one looks like."""
    text = BASE.replace('{key: "1", target: agent}', f'{{key: "{key}", target: {node}}}', 1)
    text = text.replace("  agent:\n", f"  {node}:\n", 1) if node != "agent" else text
    _, problems = check(tmp_path, text)
    said = " ".join(p.message for p in problems)
    assert "a full-width or Chinese character; type it in half-width ASCII" in said, said
