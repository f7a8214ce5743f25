"""The engine alone: state + input -> state, TwiML, log. No server, no database."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import pytest
from lxml import etree

from ivr.engine import (
    AgentDone,
    Announcement,
    CallState,
    DialDone,
    Keys,
    Links,
    OpenCase,
    QueueExit,
    Silence,
    Speech,
    Step,
    Transferred,
    advance,
    begin,
    fallback_twiml,
    hold_twiml,
)
from ivr.settings import PROJECT_ROOT
from ivr.tree import CompiledTree, compile_source, load_tree
from tests.conftest import DATA
from tests.support.catalogs import catalogs_without

LINKS = Links("https://hotline.example.test")
MONDAY_NOON_SGT = datetime(2026, 11, 23, 4, 0, tzinfo=UTC)
SATURDAY_SGT = datetime(2026, 11, 28, 4, 0, tzinfo=UTC)
CHRISTMAS_SGT = datetime(2026, 12, 25, 4, 0, tzinfo=UTC)


def said(step: Step) -> list[str]:
    root = etree.fromstring(step.twiml.encode())
    return [el.text or "" for el in root.iter("Say")]


def verbs(step: Step) -> list[str]:
    return [el.tag for el in etree.fromstring(step.twiml.encode())]


class Call:
    """Drives the engine the way the web layer does, checking each document."""

    def __init__(
        self,
        tree: CompiledTree,
        check: Callable[[str], None],
        now: datetime = MONDAY_NOON_SGT,
        *,
        caller: str | None = None,
        called: str | None = None,
    ):
        self.tree, self.check, self.now, self.n = tree, check, now, 1
        self.step = begin(tree, links=LINKS, step=1, now=now, caller=caller, called=called)
        check(self.step.twiml)

    def send(self, event: object) -> Step:
        self.n += 1
        self.step = advance(
            self.tree, self.step.state, event, links=LINKS, step=self.n, now=self.now
        )  # type: ignore[arg-type]
        self.check(self.step.twiml)
        return self.step

    @property
    def state(self) -> CallState:
        return self.step.state


@pytest.fixture
def call(mini_tree: CompiledTree, check_twiml: Callable[[str], None]) -> Call:
    return Call(mini_tree, check_twiml)


def test_first_answer_offers_every_language_in_its_own_voice(call: Call) -> None:
    assert call.state.node == "language"
    assert said(call.step) == [
        "Welcome to the test line.",
        "欢迎致电测试热线。",
        "For English, press 1.",
        "普通话服务请按2。",
    ]
    root = etree.fromstring(call.step.twiml.encode())
    voices = [s.get("voice") for s in root.iter("Say")]
    assert voices == [
        "Polly.Joanna-Neural",
        "Polly.Zhiyu-Neural",
        "Polly.Joanna-Neural",
        "Polly.Zhiyu-Neural",
    ]
    gather = root.find("Gather")
    assert (
        gather is not None
        and gather.get("action") == "https://hotline.example.test/twilio/gather?s=1"
    )
    assert gather.get("actionOnEmptyResult") == "true"


def test_choosing_mandarin_speaks_mandarin_from_then_on(call: Call) -> None:
    step = call.send(Keys("2"))
    assert call.state.lang == "zh-CN" and call.state.node == "main"
    gather = etree.fromstring(step.twiml.encode()).find("Gather")
    assert gather is not None and gather.get("language") == "cmn-Hans-CN"
    assert said(step) == ["主菜单。求助请按1,更多请按2,人工服务请按0。"]
    assert "?s=2" in (gather.get("action") or "")


def test_language_by_speech(call: Call) -> None:
    call.send(Speech("Chinese please", 0.8))
    assert call.state.lang == "zh-CN"


SHORTCUTS = """\
    shortcuts:
      - {key: "0", target: agent}
      - {target: emergency, speech: {en: [hacked], zh-CN: [被盗]}}
    by_country: {"+86": zh-CN}
"""


@pytest.fixture
def shortcut_tree(tmp_path: Path) -> CompiledTree:
    """The mini tree whose language menu has shortcuts: 0 for a person, and "hacked" (被盗)
    straight to the emergency queue."""
    text = (DATA / "mini.yaml").read_text(encoding="utf-8")
    tree = tmp_path / "tree.yaml"
    tree.write_text(text.replace("    next: main\n", SHORTCUTS + "    next: main\n", 1))
    return load_tree(tree, DATA / "prompts")


@pytest.mark.parametrize(
    ("caller", "event", "target", "language"),
    [
        ("+15005550006", Speech("my account was hacked", 0.9), "emergency", "en"),
        ("+8613912345678", Speech("我的账户被盗了", 0.9), "emergency", "zh-CN"),
        ("+15005550006", Speech("我的账户被盗了", 0.9), "emergency", "zh-CN"),
        # A recogniser that writes Chinese with spaces between its words.
        ("+8613912345678", Speech("我的 账户 被 盗 了。", 0.9), "emergency", "zh-CN"),
        ("+15005550006", Speech("Chinese, I was hacked", 0.9), "emergency", "zh-CN"),
        ("+8613912345678", Keys("0"), "agent", "zh-CN"),  # their likely language
        ("+15005550006", Keys("0"), "agent", "en"),
    ],
)
def test_a_shortcut_at_the_language_menu_skips_the_menus(
    shortcut_tree: CompiledTree,
    check_twiml: Callable[[str], None],
    caller: str,
    event: object,
    target: str,
    language: str,
) -> None:
    """The first thing a frightened victim says is what happened, not "English": heard at
    the language menu, it leads straight on, in the language of the words (or chosen with
    them, or the caller's likely one); 0 reaches a person from the first prompt."""
    first = begin(shortcut_tree, links=LINKS, step=1, now=MONDAY_NOON_SGT, caller=caller)
    check_twiml(first.twiml)
    step = advance(shortcut_tree, first.state, event, links=LINKS, step=2, now=MONDAY_NOON_SGT)  # type: ignore[arg-type]
    check_twiml(step.twiml)
    assert (step.state.node, step.state.lang) == (target, language)
    assert "<Enqueue" in step.twiml


def test_a_caller_from_china_is_heard_in_mandarin_at_the_language_menu(
    shortcut_tree: CompiledTree, check_twiml: Callable[[str], None]
) -> None:
    """They hear Mandarin first, and say 中文 or 账户被盗 in it: the recogniser is Mandarin's,
    with the shortcut's Mandarin words as hints. Anyone else's is the base language's."""

    def gather(caller: str) -> etree._Element:
        first = begin(shortcut_tree, links=LINKS, step=1, now=MONDAY_NOON_SGT, caller=caller)
        check_twiml(first.twiml)
        found = etree.fromstring(first.twiml.encode()).find("Gather")
        assert found is not None
        return found

    china = gather("+8613912345678")
    assert china.get("language") == "cmn-Hans-CN" and "被盗" in (china.get("hints") or "")
    other = gather("+15005550006")
    assert other.get("language") == "en-US" and "被盗" not in (other.get("hints") or "")


def test_silence_at_language_choice_continues_in_english(call: Call) -> None:
    call.send(Silence())
    assert call.state.node == "language"
    call.send(Silence())
    assert (call.state.node, call.state.lang) == ("main", "en")
    assert call.step.log[0].kind == "escalated"


def test_menu_option_by_key_and_by_speech_reach_the_same_node(
    mini_tree: CompiledTree, check_twiml: Callable[[str], None]
) -> None:
    by_key, by_voice = Call(mini_tree, check_twiml), Call(mini_tree, check_twiml)
    by_key.send(Keys("1"))
    by_voice.send(Keys("1"))
    by_key.send(Keys("1"))
    by_voice.send(Speech("my account was HACKED!", 0.9))
    assert by_key.state.node == by_voice.state.node == "emergency"
    assert by_voice.step.log[0].input_kind == "speech"
    assert by_key.state.facts["priority"] == "emergency"


def test_mandarin_keyword_routes_to_emergency(call: Call) -> None:
    call.send(Keys("2"))
    step = call.send(Speech("我的账户被盗了"))
    assert call.state.node == "emergency"
    enqueue = etree.fromstring(step.twiml.encode()).find("Enqueue")
    assert enqueue is not None and enqueue.text == "security"
    assert (
        enqueue.get("waitUrl")
        == "https://hotline.example.test/twilio/wait?lang=zh-CN&queue=security"
    )


def test_no_input_reprompts_then_escalates_after_max(call: Call) -> None:
    call.send(Keys("1"))
    first = call.send(Silence())
    assert said(first)[0] == "Sorry, I did not hear anything."
    assert call.state.no_input == 1 and call.state.node == "main"
    call.send(Silence())
    assert call.state.no_input == 2
    step = call.send(Silence())  # the third silence: max_no_input defaults to 3
    assert call.state.node == "agent"
    assert [e.kind for e in step.log][:1] == ["escalated"]
    assert step.log[0].detail["reason"] == "max_no_input"


def test_invalid_key_uses_short_prompt_and_escalates_after_max(call: Call) -> None:
    call.send(Keys("1"))
    step = call.send(Keys("7"))
    assert said(step) == ["Sorry, that is not a valid choice.", "Press 1, 2 or 0."]
    assert step.log[0].outcome == "invalid" and step.log[0].detail == {"count": 1, "length": 1}
    call.send(Keys("8"))
    call.send(Speech("pizza"))
    assert call.state.node == "agent"


def test_silences_and_wrong_keys_together_reach_a_person_as_soon(call: Call) -> None:
    """Silent, a wrong key, silent again: three misses, as three silences would be."""
    call.send(Keys("1"))
    call.send(Silence())
    call.send(Keys("7"))
    assert call.state.node == "main"
    step = call.send(Silence())
    assert call.state.node == "agent"
    assert step.log[0].kind == "escalated" and step.log[0].detail["reason"] == "max_misses"


def test_repeat_key_replays_full_prompt_without_counting(call: Call) -> None:
    call.send(Keys("1"))
    call.send(Keys("9"))
    step = call.send(Keys("*"))
    assert said(step) == ["Main menu. Press 1 for help, 2 for more, 0 for an agent."]
    assert call.state.invalid == 1


def test_operator_key_reaches_an_agent(call: Call) -> None:
    call.send(Keys("1"))
    call.send(Keys("0"))
    assert call.state.node == "agent" and call.state.facts["queue"] == "general"


INCIDENT = Announcement(
    "7", {"en": "Withdrawals are paused while we investigate.", "zh-CN": "提现暂停处理中。"}
)


def announced(mini_tree: CompiledTree, check: Callable[[str], None], *keys: str) -> Call:
    """A call that hears INCIDENT wherever the tree plays it, after `keys`."""
    call = Call(mini_tree, check)
    for key in keys:
        call.n += 1
        call.step = advance(
            mini_tree,
            call.state,
            Keys(key),
            links=LINKS,
            step=call.n,
            now=call.now,
            announcement=INCIDENT,
        )
        check(call.step.twiml)
    return call


def test_an_announcement_comes_first_inside_the_menu_so_a_key_cuts_it_short(
    mini_tree: CompiledTree, check_twiml: Callable[[str], None]
) -> None:
    call = announced(mini_tree, check_twiml, "2")  # Mandarin: the main menu, announcement on
    gather = etree.fromstring(call.step.twiml.encode()).find("Gather")
    assert gather is not None
    says = [(el.text, el.get("language")) for el in gather.iter("Say")]
    assert says == [
        ("提现暂停处理中。", "cmn-CN"),
        ("主菜单。求助请按1,更多请按2,人工服务请按0。", "cmn-CN"),
    ]
    assert call.state.facts["announced"] == "7"
    assert [e.kind for e in call.step.log][-1] == "announced"


def test_an_announcement_xml_cannot_carry_never_breaks_the_menu(
    mini_tree: CompiledTree, check_twiml: Callable[[str], None]
) -> None:
    """Refused when set; should one get through all the same, the menu still parses."""
    broken = Announcement("9", {"en": "Paused\ufffe now.", "zh-CN": "暂停\uffff。"})
    call = Call(mini_tree, check_twiml)
    step = advance(
        mini_tree, call.state, Keys("1"), links=LINKS, step=2, now=call.now, announcement=broken
    )
    check_twiml(step.twiml)
    assert said(step)[0] == "Paused now."


def test_an_announcement_is_heard_once_per_call_and_only_where_the_tree_says(
    mini_tree: CompiledTree, check_twiml: Callable[[str], None]
) -> None:
    call = announced(mini_tree, check_twiml, "1", "2")  # English; "more": no announcement
    assert call.state.node == "more" and INCIDENT.texts["en"] not in said(call.step)
    call = announced(mini_tree, check_twiml, "1", "2", "#")  # back to the main menu
    assert call.state.node == "main" and INCIDENT.texts["en"] not in said(call.step)
    call = announced(mini_tree, check_twiml, "1", "9")  # an invalid key: the menu again
    assert INCIDENT.texts["en"] not in said(call.step)
    # A new announcement is news, even to a caller who heard the old one.
    newer = Announcement("8", {"en": "Withdrawals are back.", "zh-CN": "提现已恢复。"})
    step = advance(
        mini_tree,
        call.state,
        Keys("9"),
        links=LINKS,
        step=call.n + 1,
        now=call.now,
        announcement=newer,
    )
    assert said(step)[-2:] == ["Withdrawals are back.", "Press 1, 2 or 0."]  # the short one
    # Without one, nothing extra is said, and nothing is marked.
    plain = Call(mini_tree, check_twiml)
    plain.send(Keys("1"))
    assert said(plain.step) == ["Main menu. Press 1 for help, 2 for more, 0 for an agent."]
    assert "announced" not in plain.state.facts


# The mini tree's main menu with a key for the worried whose account is fine (8), offered
# only while an announcement is up; its prompts added to a copy of the test catalogs.
INCIDENT_OPTION = """\
    incident_options:
      - {key: "8", prompt: main_incident, target: worried}
"""
WORRIED = """\
  worried:
    kind: say
    prompt: worried_advice
    next: thanks
"""
INCIDENT_PROMPTS = {
    "en": (
        "  main_incident: About the incident, and your account is fine? Press 8.\n"
        "  worried_advice: See our app for news. Never share a code.\n"
    ),
    "zh-CN": "  main_incident: 为事件来电、账户正常,请按8。\n  worried_advice: 请看App公告。\n",
}


@pytest.fixture
def incident_tree(tmp_path: Path) -> CompiledTree:
    prompts = tmp_path / "prompts"
    shutil.copytree(DATA / "prompts", prompts)
    for language, lines in INCIDENT_PROMPTS.items():
        with (prompts / f"{language}.yaml").open("a", encoding="utf-8") as catalog:
            catalog.write(lines)
    text = (DATA / "mini.yaml").read_text(encoding="utf-8")
    text = text.replace("    announcement: true\n", "    announcement: true\n" + INCIDENT_OPTION, 1)
    tree = tmp_path / "tree.yaml"
    tree.write_text(text + WORRIED, encoding="utf-8")
    return load_tree(tree, prompts)


def menu_says(step: Step) -> list[str]:
    gather = etree.fromstring(step.twiml.encode()).find("Gather")
    assert gather is not None, step.twiml
    return [el.text or "" for el in gather.iter("Say")]


def test_an_incident_key_is_offered_after_the_menu_and_taken_while_an_announcement_is_up(
    incident_tree: CompiledTree, check_twiml: Callable[[str], None]
) -> None:
    call = announced(incident_tree, check_twiml, "1")
    assert menu_says(call.step) == [
        INCIDENT.texts["en"],
        "Main menu. Press 1 for help, 2 for more, 0 for an agent.",
        "About the incident, and your account is fine? Press 8.",
    ]
    # A wrong key: the short prompt, and the incident key still offered after it.
    call = announced(incident_tree, check_twiml, "1", "9")
    assert menu_says(call.step) == [
        "Press 1, 2 or 0.",
        "About the incident, and your account is fine? Press 8.",
    ]
    call = announced(incident_tree, check_twiml, "1", "8")
    assert said(call.step) == ["See our app for news. Never share a code.", "Goodbye."]
    assert call.state.ended and call.state.trail == ("main",)
    chosen = [e for e in call.step.log if e.kind == "input"][-1]
    assert (chosen.option, chosen.outcome) == ("8", "worried")
    assert chosen.detail == {"announcement": "7"}
    # In Mandarin, in Mandarin; and "eight" said is the key.
    call = announced(incident_tree, check_twiml, "2")
    assert menu_says(call.step)[-1] == "为事件来电、账户正常,请按8。"
    step = advance(
        incident_tree,
        announced(incident_tree, check_twiml, "1").state,
        Speech("eight"),
        links=LINKS,
        step=3,
        now=MONDAY_NOON_SGT,
        announcement=INCIDENT,
    )
    check_twiml(step.twiml)
    assert step.state.ended and said(step)[0] == "See our app for news. Never share a code."


def test_without_an_announcement_an_incident_key_is_neither_said_nor_taken(
    incident_tree: CompiledTree, check_twiml: Callable[[str], None]
) -> None:
    """No announcement up (none set, or cleared between the menu and the key): the key is
    an invalid one, counted as such, and the menu never mentions it."""
    call = Call(incident_tree, check_twiml)
    call.send(Keys("1"))
    assert menu_says(call.step) == ["Main menu. Press 1 for help, 2 for more, 0 for an agent."]
    step = call.send(Keys("8"))
    assert said(step) == ["Sorry, that is not a valid choice.", "Press 1, 2 or 0."]
    assert (call.state.node, call.state.invalid) == ("main", 1)
    assert [e.outcome for e in step.log] == ["invalid"]
    # Offered while one was up, pressed once it was gone: not valid either.
    up = announced(incident_tree, check_twiml, "1")
    step = advance(
        incident_tree, up.state, Keys("8"), links=LINKS, step=3, now=up.now, announcement=None
    )
    check_twiml(step.twiml)
    assert (step.state.node, step.state.invalid) == ("main", 1)
    assert "About the incident, and your account is fine? Press 8." not in said(step)


def test_an_incident_key_is_not_offered_to_a_caller_the_announcement_has_no_words_for(
    incident_tree: CompiledTree, check_twiml: Callable[[str], None]
) -> None:
    """An announcement set before a language was added to the tree: its callers heard no
    incident, so "about the incident we told you of, press 8" is not theirs to hear."""
    english_only = Announcement("8", {"en": INCIDENT.texts["en"]})
    call = Call(incident_tree, check_twiml)
    step = call.send(Keys("2"))  # Mandarin
    step = advance(
        incident_tree,
        step.state,
        Keys("8"),
        links=LINKS,
        step=3,
        now=call.now,
        announcement=english_only,
    )
    check_twiml(step.twiml)
    assert (step.state.node, step.state.invalid) == ("main", 1)
    assert "为事件来电、账户正常,请按8。" not in said(step)


def test_an_incident_key_is_offered_only_where_the_announcement_is_played(
    incident_tree: CompiledTree, check_twiml: Callable[[str], None]
) -> None:
    """A menu with the keys but no `announcement: true` (warned of) never offers them."""
    quiet = compile_source(
        incident_tree.source.replace("    announcement: true\n", ""),
        incident_tree.file,
        incident_tree.catalogs,
    )
    call = announced(quiet, check_twiml, "1")
    assert menu_says(call.step) == ["Main menu. Press 1 for help, 2 for more, 0 for an agent."]
    call = announced(quiet, check_twiml, "1", "8")
    assert (call.state.node, call.state.invalid) == ("main", 1)


def test_back_key_returns_to_previous_menu(call: Call) -> None:
    call.send(Keys("1"))
    call.send(Keys("2"))
    assert call.state.trail == ("main",)
    call.send(Keys("#"))
    assert call.state.node == "main" and call.state.trail == ()


@pytest.mark.parametrize(
    ("now", "expected"),
    [(MONDAY_NOON_SGT, "agent"), (SATURDAY_SGT, "closed"), (CHRISTMAS_SGT, "closed")],
)
def test_hours_node_by_local_time_and_holidays(
    mini_tree: CompiledTree, check_twiml: Callable[[str], None], now: datetime, expected: str
) -> None:
    call = Call(mini_tree, check_twiml, now)
    call.send(Keys("1"))
    call.send(Keys("2"))
    step = call.send(Keys("1"))  # advice (say) -> hours -> agent or closed, in one answer
    assert call.state.node == expected
    assert said(step)[0] == "Never share your two-factor code."
    assert call.state.facts["topic"] == "security_tips"


def test_closed_says_fallback_translation_and_hangs_up(
    mini_tree: CompiledTree, check_twiml: Callable[[str], None]
) -> None:
    call = Call(mini_tree, check_twiml, SATURDAY_SGT)
    call.send(Keys("2"))
    call.send(Keys("2"))
    step = call.send(Keys("1"))
    assert said(step) == [
        "Never share your two-factor code.",
        "We are closed. We open again Monday at 9 AM.",
    ]  # no zh-CN: English, and the time said the English way
    assert verbs(step)[-1] == "Hangup" and call.state.ended


def test_queue_exit_after_agent_ends_the_call(call: Call) -> None:
    call.send(Keys("1"))
    call.send(Keys("0"))
    step = call.send(QueueExit("bridged"))
    assert call.state.ended and verbs(step)[-1] == "Hangup"


def survey_log(step: Step) -> list[tuple[str | None, dict[str, object]]]:
    return [(e.outcome, e.detail) for e in step.log if e.kind == "survey"]


def test_after_the_agent_hangs_up_the_caller_is_asked_once_how_satisfied_they_are(
    call: Call,
) -> None:
    call.send(Keys("1"))
    call.send(Keys("0"))  # the general queue, whose after_agent is the survey
    step = call.send(AgentDone(41))
    assert call.state.node == "survey" and call.state.facts["served_case"] == "41"
    assert said(step) == ["Press 1 to 5 for how happy you are."]
    gather = etree.fromstring(step.twiml.encode()).find("Gather")
    assert gather is not None
    assert (gather.get("numDigits"), gather.get("finishOnKey"), gather.get("input")) == (
        "1",
        "",
        "dtmf",
    )
    assert [e.outcome for e in step.log if e.kind == "input"] == ["agent_done"]
    # Asked: the case is on the survey's entry, so a caller who hangs up now still counts.
    entered = [e.detail for e in step.log if e.kind == "entered" and e.node == "survey"]
    assert entered == [{"node_kind": "survey", "case": 41}]
    # Twilio asking again changes nothing: the same question, nothing logged as done twice.
    again = call.send(AgentDone(41))
    assert said(again) == said(step) and call.state.node == "survey"
    assert [e.outcome for e in again.log if e.kind == "input"] == ["ignored"]
    step = call.send(Keys("4"))
    assert survey_log(step) == [("4", {"case": 41})]
    assert said(step) == ["Goodbye."] and verbs(step)[-1] == "Hangup" and call.state.ended


@pytest.mark.parametrize("answer", [Silence(), Keys("9"), Keys("#"), Speech("five")])
def test_a_survey_not_answered_with_1_to_5_is_no_answer_and_not_asked_again(
    call: Call, answer: object
) -> None:
    call.send(Keys("1"))
    call.send(Keys("0"))
    call.send(AgentDone(7))
    step = call.send(answer)
    assert survey_log(step) == [("none", {"case": 7})]
    assert verbs(step)[-1] == "Hangup" and call.state.ended


def test_zero_at_the_survey_puts_the_caller_back_in_their_teams_line(call: Call) -> None:
    call.send(Keys("1"))
    call.send(Keys("0"))  # the general queue
    first = call.state.facts["ticket"]
    call.send(AgentDone(7))
    step = call.send(Keys("0"))
    assert survey_log(step) == [("back", {"case": 7})]
    assert verbs(step)[-1] == "Enqueue" and ">general</Enqueue>" in step.twiml
    [opened] = [e for e in step.effects if isinstance(e, OpenCase)]
    assert (opened.queue, opened.priority, opened.parent_ticket) == ("general", "normal", first)
    assert not call.state.ended and call.state.facts["served_case"] == "7"
    # A late copy of the first agent's report is no news; the next agent's hang-up asks the
    # survey again, for their case.
    step = call.send(AgentDone(7))
    assert verbs(step)[-1] == "Enqueue" and survey_log(step) == []
    step = call.send(AgentDone(8))
    assert call.state.node == "survey" and call.state.facts["served_case"] == "8"


def test_a_queue_without_after_agent_says_goodbye_when_the_agent_hangs_up(call: Call) -> None:
    call.send(Keys("1"))
    call.send(Keys("1"))  # the emergency queue: no after_agent in this tree
    step = call.send(AgentDone(3))
    assert said(step) == ["Goodbye."] and verbs(step) == ["Say", "Hangup"]
    assert call.state.ended and survey_log(step) == []


def test_a_failing_queue_moves_the_caller_to_the_fallback_queue(call: Call) -> None:
    call.send(Keys("1"))
    call.send(Keys("1"))  # emergency: the security queue
    for _ in range(3):
        step = call.send(QueueExit("queue-full"))
        assert verbs(step)[-1] == "Enqueue" and ">security</Enqueue>" in step.twiml
    step = call.send(QueueExit("queue-full"))
    assert ">general</Enqueue>" in step.twiml and not call.state.ended
    for _ in range(10):  # a hijack victim is never hung up on, whatever keeps failing
        step = call.send(QueueExit("error"))
        assert verbs(step)[-1] == "Enqueue" and not call.state.ended


def test_a_full_queue_is_told_once_as_busy_lines_and_waited_out_before_each_try(
    call: Call,
) -> None:
    """Twilio's queue at its max size is no fault to apologise for, round after round: the
    caller hears once that the lines are busy, then waits between tries (not a webhook loop)."""
    call.send(Keys("1"))
    call.send(Keys("1"))  # emergency: the security queue
    step = call.send(QueueExit("queue-full"))
    assert said(step) == ["Every line is busy. Please hold."]
    assert verbs(step) == ["Say", "Pause", "Enqueue"]
    step = call.send(QueueExit("queue-full"))
    assert said(step) == ["Please hold."] and verbs(step) == ["Say", "Pause", "Enqueue"]
    # An error after it is still one: apologised for.
    step = call.send(QueueExit("error"))
    assert said(step) == ["Sorry, we are having trouble. Connecting you to an agent."]


def test_a_full_queue_with_catalogs_older_than_its_prompt_hears_the_apology(
    tmp_path: Path, check_twiml: Callable[[str], None]
) -> None:
    prompts = catalogs_without(tmp_path / "prompts", "queue_full")
    call = Call(load_tree(PROJECT_ROOT / "routes" / "hotline.yaml", prompts), check_twiml)
    call.send(Keys("2"))  # Mandarin
    call.send(Keys("1"))  # the emergency lane
    while call.state.node != "emergency_queue" and not call.state.ended:
        call.send(Keys("*"))  # skips verification
    step = call.send(QueueExit("queue-full"))
    assert said(step)[0].startswith("非常抱歉,系统暂时出现问题")
    assert verbs(step)[-2:] == ["Pause", "Enqueue"]


def test_a_normal_caller_a_full_queue_refuses_is_held_and_never_let_go(call: Call) -> None:
    """A full queue is a long line, not a broken one: the caller keeps trying, as long as
    they hold (their case is in line all the while), hearing a word every try."""
    call.send(Keys("1"))
    call.send(Keys("0"))  # the general queue (the fallback), normal priority
    for _ in range(20):
        step = call.send(QueueExit("queue-full"))
        assert verbs(step)[-3:] == ["Say", "Pause", "Enqueue"] and not call.state.ended


def test_a_normal_caller_is_let_go_only_when_even_the_fallback_queue_refuses(call: Call) -> None:
    call.send(Keys("1"))
    call.send(Keys("0"))  # the general queue, normal priority
    for _ in range(3):
        assert verbs(call.send(QueueExit("error")))[-1] == "Enqueue"
    step = call.send(QueueExit("error"))
    assert call.state.ended and verbs(step)[-1] == "Hangup"


def test_an_agent_who_does_not_answer_puts_the_caller_back_quietly(call: Call) -> None:
    call.send(Keys("1"))
    call.send(Keys("0"))
    for _ in range(10):
        step = call.send(QueueExit("agent-no-answer"))
        assert verbs(step) == ["Enqueue"]  # no apology, nothing counted
    assert "requeues" not in call.state.facts


@pytest.fixture
def with_a_desk(mini_tree: CompiledTree) -> CompiledTree:
    """The mini tree, its main menu's 3 a transfer to a desk's number."""
    from ivr.tree import compile_source

    source = (
        mini_tree.source.replace(
            '      - {key: "2", target: more}',
            '      - {key: "2", target: more}\n      - {key: "3", target: desk}',
        )
        + '  desk:\n    kind: transfer\n    number: "+15005550009"\n'
    )
    return compile_source(source, "t.yaml", mini_tree.catalogs)


def test_a_transfer_nobody_answers_reaches_the_fallback_queue(
    with_a_desk: CompiledTree, check_twiml: Callable[[str], None]
) -> None:
    call = Call(with_a_desk, check_twiml)
    call.send(Keys("1"))
    step = call.send(Keys("3"))
    assert verbs(step)[-1] == "Dial"
    step = call.send(DialDone("no-answer"))
    assert ">general</Enqueue>" in step.twiml and not call.state.ended
    assert any(isinstance(e, OpenCase) and e.reason == "transfer_failed" for e in step.effects)


@pytest.mark.parametrize(
    ("caller", "shown"), [("anonymous", "+15005550001"), ("+15005550006", None)]
)
def test_a_transfer_of_a_caller_who_withheld_their_number_shows_the_number_they_called(
    with_a_desk: CompiledTree, check_twiml: Callable[[str], None], caller: str, shown: str | None
) -> None:
    """A carrier may refuse a call from "anonymous" (Twilio's error 13214: the <Dial> fails):
    the transfer shows the hotline's number, which the caller called, instead."""
    call = Call(with_a_desk, check_twiml, caller=caller, called="+15005550001")
    call.send(Keys("1"))
    step = call.send(Keys("3"))
    [dial] = etree.fromstring(step.twiml.encode()).iter("Dial")
    assert dial.get("callerId") == shown


def test_input_a_node_does_not_take_is_ignored_and_the_node_presented_again(call: Call) -> None:
    call.send(Keys("1"))
    call.send(Keys("0"))
    step = call.send(DialDone("completed"))
    assert call.state.node == "agent" and verbs(step) == ["Enqueue"]
    assert step.log[0].outcome == "ignored"


def test_ended_call_only_hangs_up(call: Call) -> None:
    call.send(Keys("1"))
    call.send(Keys("0"))
    call.send(QueueExit("hangup"))
    step = call.send(Keys("1"))
    assert verbs(step) == ["Hangup"] and step.log == []


def test_invalid_input_never_logs_what_was_typed(call: Call) -> None:
    call.send(Keys("1"))
    step = call.send(Keys("987654"))
    assert "987654" not in repr(step.log)
    step = call.send(Speech("my pin is 987654"))
    assert "987654" not in repr(step.log)


def test_hold_and_fallback_documents(
    mini_tree: CompiledTree, check_twiml: Callable[[str], None]
) -> None:
    hold = hold_twiml(mini_tree.catalogs, "zh-CN", "https://example.test/music.mp3")
    check_twiml(hold)
    assert "请稍候" in hold and "<Play>https://example.test/music.mp3</Play>" in hold
    fallback = fallback_twiml(mini_tree.catalogs, LINKS, "general")
    check_twiml(fallback)
    root = etree.fromstring(fallback.encode())
    assert [e.tag for e in root] == ["Say", "Say", "Enqueue"]
    assert root[2].text == "general"


def test_ticket_numbers_are_read_digit_by_digit(mini_tree: CompiledTree) -> None:
    assert (
        mini_tree.catalogs.render("ticket", "en", ticket="4821").text == "Your ticket is 4 8 2 1."
    )


def test_hold_loop_position_tips_and_the_call_back_offer(
    mini_tree: CompiledTree, check_twiml: Callable[[str], None]
) -> None:
    def sayings(twiml: str) -> list[str]:
        return [el.text or "" for el in etree.fromstring(twiml.encode()).iter("Say")]

    offer = "https://hotline.example.test/twilio/callback-request?lang=en"
    first = hold_twiml(
        mini_tree.catalogs, "en", None, position=3, wait_minutes=12, tip=0, callback_url=offer
    )
    later = hold_twiml(
        mini_tree.catalogs,
        "en",
        None,
        position=2,
        wait_minutes=8,
        tip=1,
        callback_url=offer,
        offer_first=True,
    )
    for doc in (first, later):
        check_twiml(doc)
    assert sayings(first) == [
        "You are number 3 in line, about 12 minutes.",
        "Tip one.",
        "Press 1 for a call back.",
    ]
    # Past the maximum wait the offer comes first; the tips take turns.
    assert sayings(later) == [
        "Press 1 for a call back.",
        "You are number 2 in line, about 8 minutes.",
        "Tip two.",
    ]
    gather = etree.fromstring(first.encode()).find("Gather")
    assert gather is not None and gather.get("action") == offer and gather.get("numDigits") == "1"


def test_a_key_pressed_while_the_hold_music_plays_is_heard(
    mini_tree: CompiledTree, check_twiml: Callable[[str], None]
) -> None:
    """Keys pressed outside a <Gather> are lost: the music (or the pause) plays inside the
    call-back offer's, so a caller who decides to be called back while it plays is heard.
    With nothing to offer (a call back asked for already), it plays as it is."""
    music = "https://example.test/hold.mp3"
    offer = "https://hotline.example.test/twilio/callback-request?lang=en"
    for url, verb in ((music, "Play"), (None, "Pause")):
        offered = hold_twiml(mini_tree.catalogs, "en", url, position=1, callback_url=offer)
        check_twiml(offered)
        root = etree.fromstring(offered.encode())
        assert [el.tag for el in root] == ["Gather"]
        assert [el.tag for el in root[0]][-1] == verb
    plain = hold_twiml(mini_tree.catalogs, "en", music, position=1)
    check_twiml(plain)
    assert [el.tag for el in etree.fromstring(plain.encode())] == ["Say", "Say", "Play"]


def test_a_place_in_line_with_no_estimate(
    hotline_tree: CompiledTree, mini_tree: CompiledTree
) -> None:
    """No minutes (nobody at work): the place and that no agent is free, in each language; a
    catalog without the prompt says the plain hold prompt rather than a made-up estimate."""

    def said(tree: CompiledTree, language: str) -> list[str]:
        twiml = hold_twiml(tree.catalogs, language, None, position=4)
        return [el.text or "" for el in etree.fromstring(twiml.encode()).iter("Say")]

    assert said(hotline_tree, "en")[0] == (
        "You are number 4 in line. No agent is free yet, so we cannot say how long the wait "
        "will be."
    )
    assert said(hotline_tree, "zh-CN")[0].startswith("您目前排在第 4 位。暂时没有空闲的客服人员")
    assert not mini_tree.catalogs.has("hold_position_no_estimate", "en")
    assert said(mini_tree, "en")[0] == mini_tree.catalogs.render("hold", "en").text


def test_a_wait_of_a_minute_is_said_in_the_singular(hotline_tree: CompiledTree) -> None:
    """ "About 1 minutes" is wrong English; Mandarin has no plural, and says the number."""

    def first_said(language: str, minutes: int) -> str:
        twiml = hold_twiml(hotline_tree.catalogs, language, None, position=2, wait_minutes=minutes)
        return next(etree.fromstring(twiml.encode()).iter("Say")).text or ""

    assert first_said("en", 1).endswith("The estimated wait is about one minute.")
    assert first_said("en", 3).endswith("The estimated wait is about 3 minutes.")
    assert first_said("zh-CN", 1).endswith("预计等待约1分钟。")


@pytest.mark.parametrize(
    ("minutes", "said"),
    [(2, "预计等待约两分钟。"), (3, "预计等待约 3 分钟。"), (12, "预计等待约 12 分钟。")],
)
def test_a_mandarin_wait_of_two_minutes_is_said_with_liang(
    hotline_tree: CompiledTree, minutes: int, said: str
) -> None:
    """Polly reads "约 2 分钟" as 二分钟, which no one says of a count: 两分钟. A number said
    whole past 2 (12 is 十二) is read right; an English two is "two minutes"."""

    def first_said(language: str) -> str:
        twiml = hold_twiml(hotline_tree.catalogs, language, None, position=2, wait_minutes=minutes)
        return next(etree.fromstring(twiml.encode()).iter("Say")).text or ""

    assert first_said("zh-CN") == f"您目前排在第 2 位,{said}"
    english = "two" if minutes == 2 else str(minutes)
    assert first_said("en").endswith(f"The estimated wait is about {english} minutes.")


def test_a_caller_sent_on_hears_so_in_their_language_and_waits_in_the_new_queue(
    call: Call,
) -> None:
    call.send(Keys("1"))
    call.send(Keys("0"))  # English, the general queue (whose after_agent is the survey)
    step = call.send(Transferred(41, "security", "emergency", "zh-CN"))
    assert said(step) == ["正在为您转接其他团队。"] and verbs(step) == ["Say", "Enqueue"]
    enqueue = etree.fromstring(step.twiml.encode()).find("Enqueue")
    assert enqueue is not None and enqueue.text == "security"
    assert "lang=zh-CN" in enqueue.get("waitUrl", "") and "queue=security" in enqueue.get(
        "waitUrl", ""
    )
    assert (call.state.node, call.state.lang) == ("emergency", "zh-CN")
    assert (call.state.facts["queue"], call.state.facts["priority"]) == ("security", "emergency")
    assert [(e.outcome, e.detail) for e in step.log if e.kind == "input"] == [
        ("transferred", {"case": 41, "priority": "emergency"})
    ]
    # The security queue's node says what comes after its agent: goodbye, not the survey.
    done = call.send(AgentDone(41))
    assert said(done) == ["再见。"] and call.state.ended


def test_a_caller_sent_on_in_a_language_no_catalog_speaks_keeps_their_own(call: Call) -> None:
    call.send(Keys("1"))
    call.send(Keys("0"))
    step = call.send(Transferred(41, "general", "high", "fr"))
    assert said(step) == ["Passing you on to another team."]
    assert (call.state.node, call.state.lang) == ("agent", "en")
    assert call.state.facts["priority"] == "high"
