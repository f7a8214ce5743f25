"""ivr.prompts: per-language catalogs, templates, rendering and the fallback to English."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from ivr.exceptions import Problem, SourceError
from ivr.prompts import (
    Calendar,
    Catalogs,
    Moment,
    catalogs_from_sources,
    check_template,
    load_catalogs,
)

DATA = Path(__file__).resolve().parent / "data" / "prompts"
EN = (DATA / "en.yaml").read_text(encoding="utf-8")
ZH = (DATA / "zh-CN.yaml").read_text(encoding="utf-8")
VOICE_ERROR = "String should match pattern"


def line_of(text: str, needle: str) -> int:
    """The 1-based line of the only line of `text` that starts with `needle` once indented."""
    hits = [n for n, line in enumerate(text.splitlines(), 1) if line.lstrip().startswith(needle)]
    assert len(hits) == 1, f"{needle!r} is on lines {hits}"
    return hits[0]


def write_catalogs(folder: Path, files: dict[str, str]) -> Path:
    folder.mkdir(exist_ok=True)
    for name, text in files.items():
        (folder / name).write_text(text, encoding="utf-8")
    return folder


def refused(folder: Path) -> list[Problem]:
    with pytest.raises(SourceError) as info:
        load_catalogs(folder)
    return info.value.problems


def only(problems: list[Problem]) -> Problem:
    assert len(problems) == 1, [str(p) for p in problems]
    return problems[0]


def with_prompt(catalog: str, key: str, value: str) -> str:
    """`catalog` with one more prompt, appended as the last line."""
    return catalog.rstrip("\n") + f"\n  {key}: {value}\n"


@pytest.fixture
def catalogs() -> Catalogs:
    return load_catalogs(DATA)


# -- loading ----------------------------------------------------------------------------------


def test_test_catalogs_load_with_english_first(catalogs: Catalogs) -> None:
    assert catalogs.languages == ["en", "zh-CN"]
    assert catalogs.catalog("zh-CN").name == "中文"
    assert catalogs.sources == {"en": EN, "zh-CN": ZH}


def test_base_language_comes_first_even_when_another_sorts_before_it(tmp_path: Path) -> None:
    de = EN.replace("language: en", "language: de").replace("Polly.Joanna", "Polly.Vicki")
    de = with_calendar(de, "calendar: {}\n")
    folder = write_catalogs(tmp_path / "p", {"de.yaml": de, "en.yaml": EN})
    assert load_catalogs(folder).languages == ["en", "de"]


def test_only_yaml_files_are_catalogs(tmp_path: Path) -> None:
    folder = write_catalogs(tmp_path / "p", {"en.yaml": EN, "README.md": "# not a catalog {"})
    assert load_catalogs(folder).languages == ["en"]


def test_an_editors_hidden_files_beside_the_catalogs_are_not_catalogs(tmp_path: Path) -> None:
    """Emacs's lock file, `.#en.yaml`, is a link to nowhere while en.yaml is being edited; a
    `.en.yaml` is some tool's copy. Neither is a language, nor stops a check or a reload."""
    folder = write_catalogs(tmp_path / "p", {"en.yaml": EN, ".en.yaml": "not: [a catalog"})
    (folder / ".#en.yaml").symlink_to("root@host.1234:1700000000")
    assert load_catalogs(folder).languages == ["en"]


def test_missing_base_catalog_is_refused(tmp_path: Path) -> None:
    folder = write_catalogs(tmp_path / "p", {"zh-CN.yaml": ZH})
    problem = only(refused(folder))
    assert str(problem) == f"{folder}: error: no en.yaml: the base catalog is required"


def test_missing_folder_is_refused_as_having_no_base_catalog(tmp_path: Path) -> None:
    folder = tmp_path / "nope"
    problem = only(refused(folder))
    assert str(problem) == f"{folder}: error: no en.yaml: the base catalog is required"


def test_language_must_match_the_file_name(tmp_path: Path) -> None:
    zh = ZH.replace("language: zh-CN", "language: zh-TW")
    folder = write_catalogs(tmp_path / "p", {"en.yaml": EN, "zh-CN.yaml": zh})
    problem = only(refused(folder))
    assert str(problem) == (
        f"{folder / 'zh-CN.yaml'}:{line_of(zh, 'language:')}: error: language: "
        "file is named for 'zh-CN' but says 'zh-TW'"
    )


@pytest.mark.parametrize(
    "voice", ["Joanna", "alice", "Polly.", "Polly.Joanna-Standard", "Google.en"]
)
def test_voice_must_match_twilios_pattern(tmp_path: Path, voice: str) -> None:
    en = EN.replace("voice: Polly.Joanna-Neural", f"voice: {voice}")
    folder = write_catalogs(tmp_path / "p", {"en.yaml": en})
    problem = only(refused(folder))
    assert (problem.file, problem.line, problem.path) == (
        str(folder / "en.yaml"),
        line_of(en, "voice:"),
        "voice",
    )
    assert VOICE_ERROR in problem.message


@pytest.mark.parametrize(
    "voice",
    ["man", "woman", "Polly.Zhiyu-Neural", "Polly.Joanna-Generative", "Google.en-US-Standard-C"],
)
def test_twilio_voices_are_accepted(tmp_path: Path, voice: str) -> None:
    en = EN.replace("voice: Polly.Joanna-Neural", f"voice: {voice}")
    folder = write_catalogs(tmp_path / "p", {"en.yaml": en})
    assert load_catalogs(folder).catalog("en").voice == voice


def test_unknown_catalog_setting_is_refused(tmp_path: Path) -> None:
    en = EN.replace("name: English\n", "name: English\ncolour: red\n")
    folder = write_catalogs(tmp_path / "p", {"en.yaml": en})
    problem = only(refused(folder))
    assert (problem.line, problem.path) == (line_of(en, "colour: red"), "colour")
    assert problem.message == "unknown setting 'colour'"


def test_a_misspelt_catalog_setting_is_named_both_ways(tmp_path: Path) -> None:
    """`voise:` for `voice:`: the unknown setting, and the one now missing, each by name."""
    en = EN.replace("voice: ", "voise: ")
    messages = sorted(p.message for p in refused(write_catalogs(tmp_path / "p", {"en.yaml": en})))
    assert messages == ["'voice' is required", "unknown setting 'voise'"]


def test_a_prompt_named_by_a_bare_number_says_so(tmp_path: Path) -> None:
    en = with_prompt(EN, "1", '"one"')
    problem = only(refused(write_catalogs(tmp_path / "p", {"en.yaml": en})))
    assert problem.message.startswith("a prompt's name is a name like ticket_number, not the int 1")


def test_duplicate_prompt_key_is_refused(tmp_path: Path) -> None:
    en = with_prompt(EN, "goodbye", "Bye now.")
    folder = write_catalogs(tmp_path / "p", {"en.yaml": en})
    problem = only(refused(folder))
    first = line_of(en, "goodbye: Goodbye.")
    second = line_of(en, "goodbye: Bye now.")
    assert str(problem) == (
        f"{folder / 'en.yaml'}:{second}: error: prompts.goodbye: "
        f"duplicate key (first on line {first})"
    )


def test_catalog_that_is_not_utf8_is_refused(tmp_path: Path) -> None:
    folder = write_catalogs(tmp_path / "p", {"en.yaml": EN})
    (folder / "fr.yaml").write_bytes("language: fr\nname: Français\n".encode("latin-1"))
    problem = only(refused(folder))
    assert str(problem) == f"{folder / 'fr.yaml'}: error: not UTF-8 text"


def test_empty_catalog_is_refused(tmp_path: Path) -> None:
    folder = write_catalogs(tmp_path / "p", {"en.yaml": EN, "zh-CN.yaml": ""})
    assert str(only(refused(folder))) == f"{folder / 'zh-CN.yaml'}:1: error: file is empty"


def test_audio_prompt_needs_a_url(tmp_path: Path) -> None:
    en = with_prompt(EN, "music", "{audio: not-a-url}")
    folder = write_catalogs(tmp_path / "p", {"en.yaml": en})
    problems = refused(folder)
    assert all(p.line == line_of(en, "music:") for p in problems)
    assert any(p.path == "prompts.music.audio" and "URL" in p.message for p in problems)


def test_every_error_in_every_catalog_is_reported(tmp_path: Path) -> None:
    en = with_prompt(with_prompt(EN, "a", '"{x:foo}"'), "b", '"{y"')
    zh = ZH.replace("language: zh-CN", "language: zh-TW")
    folder = write_catalogs(tmp_path / "p", {"en.yaml": en, "zh-CN.yaml": zh})
    problems = refused(folder)
    assert sorted((Path(p.file).name, p.line, p.path) for p in problems) == [
        ("en.yaml", line_of(en, "a: "), "prompts.a"),
        ("en.yaml", line_of(en, "b: "), "prompts.b"),
        ("zh-CN.yaml", line_of(zh, "language:"), "language"),
    ]
    assert all(p.severity == "error" for p in problems)


# -- templates ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("template", "message"),
    [
        ("Hello {x:foo}.", "unknown format '{x:foo}' (allowed: {name}, {name:digits})"),
        ("Hello {x:>10}.", "unknown format '{x:>10}' (allowed: {name}, {name:digits})"),
        ("Hello {x.", "bad template: expected '}' before end of string"),
        ("Hello x}.", "bad template: Single '}' encountered in format string"),
        ("Hello {}.", "empty variable '{}' (escape a literal brace as '{{')"),
    ],
)
def test_bad_template_is_refused_with_file_and_line(
    tmp_path: Path, template: str, message: str
) -> None:
    en = EN.replace("goodbye: Goodbye.", f'goodbye: "{template}"')
    folder = write_catalogs(tmp_path / "p", {"en.yaml": en})
    problem = only(refused(folder))
    assert str(problem) == (
        f"{folder / 'en.yaml'}:{line_of(en, 'goodbye:')}: error: prompts.goodbye: {message}"
    )


def test_a_variable_the_hotline_does_not_fill_is_refused_with_file_and_line(
    tmp_path: Path,
) -> None:
    """ "{tiket}" would be said as nothing: "Your ticket is ." """
    en = EN.replace(
        "  ticket: Your ticket is {ticket:digits}.", "  ticket: Your ticket is {tiket:digits}."
    )
    folder = write_catalogs(tmp_path / "p", {"en.yaml": en})
    problem = only(refused(folder))
    assert (problem.file, problem.line, problem.path) == (
        str(folder / "en.yaml"),
        line_of(en, "ticket: Your"),
        "prompts.ticket",
    )
    assert problem.message.startswith("'{tiket}' is not a variable the hotline fills")


def test_every_variable_the_hotline_does_not_fill_is_named(tmp_path: Path) -> None:
    en = EN.replace(
        "  ticket: Your ticket is {ticket:digits}.",
        "  ticket: Your ticket {tiket:digits} is {stauts} ({ticket}).",
    )
    folder = write_catalogs(tmp_path / "p", {"en.yaml": en})
    problem = only(refused(folder))
    assert problem.line == line_of(en, "ticket: Your")
    assert problem.message.startswith(
        "'{stauts}' and '{tiket}' are not variables the hotline fills (it fills "
    )
    assert problem.message.endswith("): each would be said as nothing")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('""', "says nothing: Twilio refuses an empty <Say> and the caller hears silence"),
        ('"  "', "says nothing: Twilio refuses an empty <Say> and the caller hears silence"),
        # 1,001 Chinese characters: 3,003 bytes, as Twilio counts them.
        (
            "再" * 1001,
            "is 3,003 bytes long: Twilio's <Say> takes at most 3,000 (UTF-8; a Chinese "
            "character is 3): split it in two prompts",
        ),
        (
            "\"<speak>Goodbye<break time='1s'/></speak>\"",
            "'<speak>' would be read out as written: the hotline escapes text, SSML tags are "
            "not supported",
        ),
    ],
)
def test_a_text_twilio_cannot_say_as_written_is_refused_with_file_and_line(
    tmp_path: Path, text: str, message: str
) -> None:
    en = EN.replace("goodbye: Goodbye.", f"goodbye: {text}")
    folder = write_catalogs(tmp_path / "p", {"en.yaml": en})
    problem = only(refused(folder))
    assert str(problem) == (
        f"{folder / 'en.yaml'}:{line_of(en, 'goodbye:')}: error: prompts.goodbye: {message}"
    )


def test_the_longest_text_a_say_takes_is_fine(tmp_path: Path) -> None:
    en = EN.replace("goodbye: Goodbye.", f"goodbye: {'再' * 1000}")
    load_catalogs(write_catalogs(tmp_path / "p", {"en.yaml": en}))


def test_a_translation_that_leaves_out_a_variable_is_warned_of(tmp_path: Path) -> None:
    """The Mandarin text of a prompt that says the ticket number in English, but not in
    Mandarin: its callers never hear their ticket."""
    from ivr.tree import check_tree

    folder = write_catalogs(
        tmp_path / "p",
        {"en.yaml": EN, "zh-CN.yaml": with_prompt(ZH, "ticket", "您的工单已创建。")},
    )
    tree = tmp_path / "tree.yaml"
    tree.write_text(
        "start: main\nnodes:\n  main:\n    kind: queue\n    prompt: ticket\n"
        "    queue: general\n    announce_ticket: false\n",
        encoding="utf-8",
    )
    found = [str(p) for p in check_tree(tree, folder) if "does not say" in p.message]
    assert found == [
        f"{tree}:5: warning: nodes.main.prompt: prompt 'ticket' in zh-CN does not say "
        "{ticket}, which en does: zh-CN callers do not hear it"
    ]


def test_every_variable_a_translation_leaves_out_is_named(tmp_path: Path) -> None:
    from ivr.tree import check_tree

    folder = write_catalogs(
        tmp_path / "p",
        {
            "en.yaml": EN,
            "zh-CN.yaml": ZH.replace(
                "我们会回拨尾号{last4:digits}。工单{ticket:digits}。", "我们会回拨您。"
            ),
        },
    )
    tree = tmp_path / "tree.yaml"
    tree.write_text(
        "start: main\nnodes:\n  main:\n    kind: queue\n    queue: general\n"
        "    ticket_prompt: callback_confirmed\n",
        encoding="utf-8",
    )
    found = [str(p) for p in check_tree(tree, folder) if "does not say" in p.message and p.path]
    assert found == [
        f"{tree}:6: warning: nodes.main.ticket_prompt: prompt 'callback_confirmed' in zh-CN "
        "does not say {last4} and {ticket}, which en does: zh-CN callers do not hear them"
    ]


@pytest.mark.parametrize("template", ["Press {key}.", "Ticket {ticket:digits}.", "Literal {{x}}."])
def test_good_templates_pass(template: str) -> None:
    assert check_template(template) is None


@pytest.mark.parametrize(
    "template", ["You are caller {0}.", "Hi {caller.name}.", "Hi {x[0]}.", "Hi {x!z}."]
)
def test_templates_that_cannot_render_are_refused(tmp_path: Path, template: str) -> None:
    en = EN.replace("goodbye: Goodbye.", f'goodbye: "{template}"')
    folder = write_catalogs(tmp_path / "p", {"en.yaml": en})
    problem = only(refused(folder))
    assert (problem.line, problem.path) == (line_of(en, "goodbye:"), "prompts.goodbye")


# -- rendering ----------------------------------------------------------------------------------


def test_digits_are_read_one_by_one(catalogs: Catalogs) -> None:
    assert catalogs.render("ticket", "en", ticket=123).text == "Your ticket is 1 2 3."


def test_digits_keep_leading_zeros_of_a_string(catalogs: Catalogs) -> None:
    assert catalogs.render("ticket", "en", ticket="0042").text == "Your ticket is 0 0 4 2."


def test_missing_variable_renders_empty(catalogs: Catalogs) -> None:
    assert catalogs.render("ticket", "en").text == "Your ticket is ."
    assert catalogs.render("language_option", "en").text == "For English, press ."


def test_variables_render_in_the_callers_language_and_voice(catalogs: Catalogs) -> None:
    said = catalogs.render("language_option", "zh-CN", key="2")
    assert said.text == "普通话服务请按2。"
    assert said.audio is None
    assert (said.key, said.voice, said.say_language) == (
        "language_option",
        "Polly.Zhiyu-Neural",
        "cmn-CN",
    )


def test_escaped_braces_render_literally(tmp_path: Path) -> None:
    en = with_prompt(EN, "braces", '"Press {{key}} then {key}."')
    cats = load_catalogs(write_catalogs(tmp_path / "p", {"en.yaml": en}))
    assert cats.render("braces", "en", key="5").text == "Press {key} then 5."


def test_missing_translation_falls_back_to_english_in_the_english_voice(catalogs: Catalogs) -> None:
    assert not catalogs.has("advice", "zh-CN")
    said = catalogs.render("advice", "zh-CN")
    assert said.text == "Never share your two-factor code."
    assert (said.voice, said.say_language) == ("Polly.Joanna-Neural", "en-US")


def test_unknown_language_uses_the_base_catalog(catalogs: Catalogs) -> None:
    said = catalogs.render("welcome", "fr")
    assert (said.text, said.voice) == ("Welcome to the test line.", "Polly.Joanna-Neural")
    assert catalogs.catalog("fr").language == "en"


def test_has(catalogs: Catalogs) -> None:
    assert catalogs.has("advice", "en")
    assert not catalogs.has("advice", "zh-CN")
    assert not catalogs.has("welcome", "fr")
    assert not catalogs.has("nope", "en")


def test_audio_prompt_renders_as_audio(tmp_path: Path) -> None:
    zh = with_prompt(ZH, "music", '{audio: "https://cdn.example.test/zh.mp3", text: 音乐}')
    en = with_prompt(EN, "music", '{audio: "https://cdn.example.test/en.mp3"}')
    cats = load_catalogs(write_catalogs(tmp_path / "p", {"en.yaml": en, "zh-CN.yaml": zh}))
    zh_said = cats.render("music", "zh-CN", ticket=1)
    assert (zh_said.audio, zh_said.text) == ("https://cdn.example.test/zh.mp3", "音乐")
    assert zh_said.voice == "Polly.Zhiyu-Neural"
    en_said = cats.render("music", "en")
    assert (en_said.audio, en_said.text) == ("https://cdn.example.test/en.mp3", None)


def test_stored_sources_rebuild_the_same_catalogs(catalogs: Catalogs) -> None:
    rebuilt = catalogs_from_sources(catalogs.sources)
    assert rebuilt.languages == catalogs.languages
    assert rebuilt.by_language == catalogs.by_language
    assert rebuilt.render("ticket", "zh-CN", ticket=7) == catalogs.render(
        "ticket", "zh-CN", ticket=7
    )


# -- times --------------------------------------------------------------------------------------

ZH_CALENDAR = """calendar:
  weekdays: [周一, 周二, 周三, 周四, 周五, 周六, 周日]
  today: 今天
  tomorrow: 明天
  am: 上午
  pm: 下午
  noon: 中午
  evening: 晚上
  hours: {2: 两}
  time: "{period}{hour}点{minute}分"
  time_on_the_hour: "{period}{hour}点"
  day_time: "{day}{time}"
"""
SGT = ZoneInfo("Asia/Singapore")
SATURDAY_NIGHT = datetime(2026, 11, 28, 22, 15, tzinfo=SGT)


def with_calendar(catalog: str, calendar: str) -> str:
    return catalog.replace("prompts:\n", calendar + "prompts:\n", 1)


@pytest.mark.parametrize(
    ("at", "english", "mandarin"),
    [
        (datetime(2026, 11, 30, 9, 0, tzinfo=SGT), "Monday at 9 AM", "周一上午9点"),
        (datetime(2026, 11, 29, 9, 30, tzinfo=SGT), "tomorrow at 9:30 AM", "明天上午9点30分"),
        (datetime(2026, 11, 28, 23, 0, tzinfo=SGT), "today at 11 PM", "今天晚上11点"),
        (datetime(2026, 12, 2, 12, 5, tzinfo=SGT), "Wednesday at 12:05 PM", "周三中午12点05分"),
        (datetime(2026, 12, 2, 13, 30, tzinfo=SGT), "Wednesday at 1:30 PM", "周三下午1点30分"),
        (datetime(2026, 12, 3, 0, 0, tzinfo=SGT), "Thursday at 12 AM", "周四上午12点"),
        # 2 is 两 (`hours`), as Chinese says the hour: 两点, never 二点; 12 stays 12.
        (datetime(2026, 12, 2, 14, 0, tzinfo=SGT), "Wednesday at 2 PM", "周三下午两点"),
        (datetime(2026, 11, 29, 2, 30, tzinfo=SGT), "tomorrow at 2:30 AM", "明天上午两点30分"),
        (datetime(2026, 12, 2, 12, 0, tzinfo=SGT), "Wednesday at 12 PM", "周三中午12点"),
    ],
)
def test_a_time_is_said_in_the_callers_language(
    tmp_path: Path, at: datetime, english: str, mandarin: str
) -> None:
    en = with_prompt(EN, "closed_until", '"Closed. We open {opens}."')
    zh = with_prompt(with_calendar(ZH, ZH_CALENDAR), "closed_until", '"现在休息,{opens}开始服务。"')
    cats = load_catalogs(write_catalogs(tmp_path / "p", {"en.yaml": en, "zh-CN.yaml": zh}))
    moment = Moment(at, SATURDAY_NIGHT)
    assert cats.render("closed_until", "en", opens=moment).text == f"Closed. We open {english}."
    assert (
        cats.render("closed_until", "zh-CN", opens=moment).text == f"现在休息,{mandarin}开始服务。"
    )


def test_the_shipped_mandarin_catalog_says_two_oclock_as_liang_dian() -> None:
    """两点, as Chinese says the hour (两分钟 likewise): a team opening at 2 or 14:00."""
    shipped = load_catalogs(Path(__file__).resolve().parent.parent / "prompts")
    said = [
        shipped.render("products_closed", "zh-CN", opens=Moment(at, SATURDAY_NIGHT)).text
        for at in (
            datetime(2026, 11, 30, 14, 0, tzinfo=SGT),
            datetime(2026, 11, 29, 2, 30, tzinfo=SGT),
            datetime(2026, 11, 30, 12, 0, tzinfo=SGT),
            datetime(2026, 11, 30, 20, 0, tzinfo=SGT),
        )
    ]
    assert [s.split("新加坡时间")[1].split("恢复")[0] for s in said] == [
        "周一下午两点",
        "明天上午两点30分",
        "周一中午12点",
        "周一晚上8点",
    ]


def test_a_calendar_may_read_the_hour_digit_by_digit() -> None:
    calendar = Calendar(clock=24, time_on_the_hour="{hour:digits} hundred hours")
    assert calendar.say(datetime(2026, 12, 2, 21, 0), SATURDAY_NIGHT.replace(tzinfo=None)) == (
        "Wednesday at 2 1 hundred hours"
    )


def test_a_24_hour_clock_says_no_period() -> None:
    calendar = Calendar(clock=24, time="{hour}.{minute} Uhr", time_on_the_hour="{hour} Uhr")
    assert calendar.say(datetime(2026, 12, 2, 21, 0), SATURDAY_NIGHT.replace(tzinfo=None)) == (
        "Wednesday at 21 Uhr"
    )


def test_a_catalog_saying_a_time_without_a_calendar_is_refused_with_its_line(
    tmp_path: Path,
) -> None:
    """Mandarin callers would hear "Monday at 9 AM" in a Mandarin voice."""
    zh = with_prompt(ZH, "closed_until", '"{opens}开始服务。"')
    folder = write_catalogs(tmp_path / "p", {"en.yaml": EN, "zh-CN.yaml": zh})
    problem = only(refused(folder))
    assert (problem.line, problem.path) == (line_of(zh, "closed_until:"), "prompts.closed_until")
    assert "no `calendar:` to say it in zh-CN" in problem.message
    # English is the base language: its calendar is English by default.
    en = with_prompt(EN, "closed_until", '"We open {opens}."')
    load_catalogs(write_catalogs(tmp_path / "q", {"en.yaml": en}))


@pytest.mark.parametrize(
    ("calendar", "message"),
    [
        ('calendar:\n  day_time: "{day} at {hour}"\n', "'{hour}' is not known here"),
        ('calendar:\n  time: "{hour:>3}"\n', "unknown format"),
        ("calendar:\n  weekdays: [Mon, Tue]\n", "List should have at least 7 items"),
        ("calendar:\n  clock: 13\n", "Input should be 12 or 24"),
        ("calendar:\n  hours: {24: 两}\n", "less than or equal to 23"),  # no such hour
    ],
)
def test_a_bad_calendar_is_refused_with_its_line(
    tmp_path: Path, calendar: str, message: str
) -> None:
    zh = with_calendar(ZH, calendar)
    folder = write_catalogs(tmp_path / "p", {"en.yaml": EN, "zh-CN.yaml": zh})
    problem = only(refused(folder))
    assert message in problem.message
    assert problem.path.startswith("calendar.")
    assert problem.line == line_of(zh, calendar.splitlines()[1].strip().split(":")[0] + ":")


@pytest.mark.parametrize(
    ("old", "new", "path", "message"),
    [
        (
            "say_language: cmn-CN",
            "say_language: en-US",
            "say_language",
            "'en-US' is not zh-CN's language: the callers of this catalog would be spoken to "
            "in another",
        ),
        (
            "speech_language: cmn-Hans-CN",
            "speech_language: en-US",
            "speech_language",
            "'en-US' is not zh-CN's language: the callers of this catalog would be heard in "
            "another",
        ),
        (
            "voice: Polly.Zhiyu-Neural",
            "voice: Google.en-US-Standard-C",
            "voice",
            "'Google.en-US-Standard-C' is not a zh-CN voice",
        ),
    ],
)
def test_a_catalog_said_or_heard_in_another_language_is_refused(
    tmp_path: Path, old: str, new: str, path: str, message: str
) -> None:
    """Chinese text in an English voice is garbled or silence to a Mandarin caller."""
    zh = ZH
    assert old in zh
    folder = write_catalogs(tmp_path / "p", {"en.yaml": EN, "zh-CN.yaml": zh.replace(old, new)})
    problem = only(refused(folder))
    assert (problem.path, problem.message) == (path, message)


def test_mandarin_tags_are_chinese(tmp_path: Path) -> None:
    zh = ZH
    mended = zh.replace("voice: Polly.Zhiyu-Neural", "voice: Google.cmn-CN-Standard-A")
    mended = mended.replace("speech_language: cmn-Hans-CN", "speech_language: zh-TW")
    load_catalogs(write_catalogs(tmp_path / "p", {"en.yaml": EN, "zh-CN.yaml": mended}))


@pytest.mark.parametrize("hear", ["yue-Hant-HK", "zh-HK"])
def test_a_mandarin_catalog_heard_by_a_cantonese_recogniser_is_refused(
    tmp_path: Path, hear: str
) -> None:
    """Written Chinese is one, but a Cantonese recogniser hears few Mandarin words."""
    zh = ZH.replace("speech_language: cmn-Hans-CN", f"speech_language: {hear}")
    problem = only(refused(write_catalogs(tmp_path / "p", {"en.yaml": EN, "zh-CN.yaml": zh})))
    assert problem.path == "speech_language"


def test_a_cantonese_catalog_said_and_heard_in_cantonese_is_fine(tmp_path: Path) -> None:
    yue = (
        ZH.replace("language: zh-CN\n", "language: zh-HK\n", 1)
        .replace("say_language: cmn-CN", "say_language: yue-CN")
        .replace("voice: Polly.Zhiyu-Neural", "voice: Google.yue-HK-Standard-A")
        .replace("speech_language: cmn-Hans-CN", "speech_language: yue-Hant-HK")
    )
    files = {"en.yaml": EN, "zh-HK.yaml": yue}
    assert "zh-HK" in load_catalogs(write_catalogs(tmp_path / "p", files)).by_language


@pytest.mark.parametrize(
    ("language", "say", "hear"),
    [("nb", "nb-NO", "no-NO"), ("tl", "fil-PH", "fil-PH"), ("he", "he-IL", "iw-IL")],
)
def test_one_language_under_its_two_codes_is_fine(
    tmp_path: Path, language: str, say: str, hear: str
) -> None:
    """Twilio names Norwegian, Filipino and Hebrew by codes of their own (nb or no, fil, iw)."""
    other = (
        EN.replace("language: en\n", f"language: {language}\n", 1)
        .replace("say_language: en-US", f"say_language: {say}")
        .replace("speech_language: en-US", f"speech_language: {hear}\ncalendar: {{}}")
    )
    files = {"en.yaml": EN, f"{language}.yaml": other}
    assert language in load_catalogs(write_catalogs(tmp_path / "p", files)).by_language


def test_a_finding_about_a_catalog_is_said_at_its_line(catalogs: Catalogs) -> None:
    """Loaded from the folder or rebuilt from a stored version, a catalog knows its lines."""
    stored = catalogs_from_sources(catalogs.sources)
    for cats, file in ((catalogs, str(DATA / "zh-CN.yaml")), (stored, "zh-CN.yaml")):
        problem = cats.problem("zh-CN", ("prompts", "goodbye"), "why", "warning")
        assert str(problem) == f"{file}:{line_of(ZH, 'goodbye:')}: warning: prompts.goodbye: why"
        missing = cats.problem("zh-CN", ("prompts", "nope"), "why")
        assert (missing.line, missing.path) == (line_of(ZH, "prompts:"), "prompts")


# -- digits said as a language says them alone ------------------------------------------------

ZH_DIGITS = 'digits: ["0", 幺, "2", "3", "4", "5", "6", "7", "8", "9"]\n'


def test_a_catalog_says_each_digit_its_own_way(tmp_path: Path) -> None:
    """A Chinese phone line says a lone 1 as 幺 (yao): 一 (yi) is blurred with 七 (qi), and a
    frightened caller writing their ticket number down gets it wrong. Other languages, and
    a number said whole, are untouched."""
    zh = ZH.replace("prompts:\n", ZH_DIGITS + "prompts:\n")
    cats = load_catalogs(write_catalogs(tmp_path / "p", {"en.yaml": EN, "zh-CN.yaml": zh}))
    said = cats.render("ticket_number", "zh-CN", ticket="1071").text
    assert said == "您的工单号是幺 0 7 幺。"
    assert cats.render("ticket", "en", ticket="1071").text == "Your ticket is 1 0 7 1."
    assert cats.render("hold_position", "zh-CN", position=1, minutes=11).text == (
        "您排在第1位,约11分钟。"  # a number said whole: its numerals
    )


@pytest.mark.parametrize(
    "digits",
    [
        '["0", 幺, "2"]',
        '["0", "", "2", "3", "4", "5", "6", "7", "8", "9"]',
        '["{x}", 幺, "2", "3", "4", "5", "6", "7", "8", "9"]',
    ],
    ids=["too-few", "empty", "a-brace"],
)
def test_a_catalogs_digits_must_be_ten_words(tmp_path: Path, digits: str) -> None:
    zh = ZH.replace("prompts:\n", f"digits: {digits}\nprompts:\n")
    problem = only(refused(write_catalogs(tmp_path / "p", {"en.yaml": EN, "zh-CN.yaml": zh})))
    assert problem.line == line_of(zh, "digits:")
    assert problem.path.startswith("digits")
    assert problem.message != "unknown setting 'digits'"  # a setting, said wrong


def test_the_shipped_mandarin_catalog_reads_a_lone_one_as_yao() -> None:
    shipped = load_catalogs(Path(__file__).resolve().parent.parent / "prompts")
    said = shipped.render("number_check_not_official", "zh-CN", last4="0101").text
    assert "尾号为 0 幺 0 幺 的号码不是我们的号码" in said
    said = shipped.render("number_check_not_official", "en", last4="0101").text
    assert "The number ending in 0 1 0 1 is not one of our numbers" in said
