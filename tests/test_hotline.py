"""The default call tree (routes/hotline.yaml) end to end, as callers would use it.

Scenario tests go through the Twilio-like phone only: it signs each request, follows the
TwiML it gets and validates every document against Twilio's schema.
"""

from __future__ import annotations

import contextlib
import re
import threading
from collections import deque
from collections.abc import Callable, Iterator
from datetime import UTC, datetime

import pytest
from fastapi.testclient import TestClient
from lxml import etree
from sqlalchemy import Engine, select

from ivr import store
from ivr.db import Busy, calls, cases, impatient, verification_failures
from ivr.engine import (
    AgentDone,
    Announcement,
    CallState,
    CaseSummary,
    Checked,
    DialDone,
    Input,
    Keys,
    Links,
    NumberLookup,
    QueueExit,
    Silence,
    Speech,
    TicketLookup,
    advance,
    begin,
)
from ivr.hotline import Caller, Counted, Hotline
from ivr.identity import LocalAccountActions, LocalDirectory
from ivr.phone import Answer, Phone, Press, ScriptedParty, Silent, Speak
from ivr.settings import Settings
from ivr.store import call_log, get_call
from ivr.tree import CompiledTree, HangupNode, MenuNode, QueueNode, compile_source
from ivr.web import create_app
from tests.conftest import (
    HTTPS_CLIENT,
    PUBLIC_URL,
    TOKEN,
    FakeClock,
    RecordingTwilio,
    bearer,
    make_user,
)
from tests.support.twilio import app_with_twilio, on_the_line, placed_calls


def call(phone: Phone, *answers: Answer, hold: int = 1):  # type: ignore[no-untyped-def]
    return phone.call(ScriptedParty(list(answers), hold_polls=hold))


# -- the emergency path -----------------------------------------------------------------------


def test_hijacked_caller_reaches_security_queue_without_any_details(
    phone: Phone, db: Engine
) -> None:
    # Language, the first main-menu option, then * because they cannot give their UID.
    record = call(phone, Press("1"), Press("1"), Press("*"))
    assert record.queue == "security"
    # Nothing else was asked before the queue: the call, three answers, then the hold loop.
    urls = [url for url, _ in record.requests]
    assert next(i for i, u in enumerate(urls) if "/twilio/wait" in u) == 4
    assert any("never ask for your password" in line for line in record.heard)
    with db.connect() as conn:
        row = get_call(conn, call_sid=record.call_sid)
    assert row is not None
    facts = row["state"]["facts"]
    assert (facts["topic"], facts["queue"], facts["priority"]) == (
        "account_hijack",
        "security",
        "emergency",
    )
    assert facts["verified"] == "skipped"


def test_a_key_stops_the_verify_intro_but_not_the_emergency_notice(phone: Phone) -> None:
    """A victim calling again knows the way to skip: the verify node's intro is inside the
    UID prompt's <Gather>, so a key stops it and is taken (Twilio stops a <Gather>'s <Say>
    at a key). The notice before it is heard whole: a key there (* to hear the menu again,
    a repeated 1) would be taken for an answer to a prompt not yet heard."""
    record = call(phone, Press("1"), Press("1"), Press("*"))
    [asking] = [d for d in record.documents if "Emergency service for hacked" in d]
    doc = etree.fromstring(asking.encode())
    assert [child.tag for child in doc] == ["Say", "Gather", "Redirect"]
    assert (doc[0].text or "").startswith("Emergency service for hacked accounts")
    said = [say.text or "" for say in doc.find("Gather").iter("Say")]
    assert said[0].startswith("To freeze your account we first need to find it.")
    assert said[-1] == "Please enter your account U I D, then press pound."
    assert record.queue == "security"


@pytest.mark.parametrize(
    ("language_key", "words"),
    [
        ("1", "my account was hacked"),
        ("1", "someone hacked my account and withdrew everything"),  # emergency beats withdrawals
        ("1", "there are transactions I didn't make"),
        ("1", "someone stole my bitcoin"),
        ("1", "I think my account is compromised"),
        ("1", "there is a withdrawal I did not make"),  # before withdrawals, as listed
        ("1", "please freeze it now"),
        ("2", "我的账户被盗了"),
        ("2", "有人盗号还提币了"),
        ("2", "我的币被偷了"),
        ("2", "这笔提币不是我操作的"),
        ("2", "有人盗了我的账户"),  # 盗 and 了 apart: 被盗 is not in it
        ("2", "我的钱被人转走了"),
        ("2", "我的币被人提走了"),
        ("2", "有人登录了我的账户"),
        ("1", "someone logged into my account"),
        # Contacted by a thief posing as us, and already fell for it: a victim, not a check.
        ("1", "someone called me pretending to be support and I gave them my two factor code"),
        ("2", "有人冒充客服打电话,我把验证码告诉了他"),
    ],
)
def test_saying_hacked_reaches_the_emergency_path(
    phone: Phone, language_key: str, words: str
) -> None:
    record = call(phone, Press(language_key), Speak(words), Press("*"))
    assert record.queue == "security"


def test_mandarin_caller_hears_mandarin_voice_all_the_way(phone: Phone) -> None:
    record = call(phone, Press("2"), Press("1"))
    after_choice = record.documents[1:]
    voices = {
        s.get("voice") for doc in after_choice for s in etree.fromstring(doc.encode()).iter("Say")
    }
    assert voices == {"Polly.Zhiyu-Neural"}
    assert any("密码" in line for line in record.heard)


def test_suspicious_login_offers_the_emergency_freeze(phone: Phone) -> None:
    record = call(phone, Press("1"), Press("2"), Press("3"), Press("1"), Press("*"))
    assert record.queue == "security"


# -- the language menu --------------------------------------------------------------------------


def test_a_caller_from_china_hears_mandarin_first_and_keeps_it_choosing_nothing(
    phone: Phone,
) -> None:
    record = phone.call(ScriptedParty([Silent(), Silent()]), from_number="+8613912345678")
    first = record.heard[:4]
    assert first[0] == "您好,感谢致电交易所客服热线。"  # the welcome, Mandarin first
    assert first.index("普通话服务请按2。") < first.index("For English, press 1.")
    # A miss: sorry in both languages (Mandarin first), then the options again.
    again = record.heard[4:8]
    assert again[:2] == ["抱歉,我没有听到您的选择。", "Sorry, I didn't hear anything."]
    # Nothing chosen: the main menu in Mandarin, not English.
    assert record.heard[8].startswith("如果您的账户被盗")


def test_a_mandarin_caller_silent_at_a_digits_prompt_is_told_no_keys_came_not_no_choice(
    phone: Phone,
) -> None:
    record = call(phone, Press("2"), Press("9"), Silent(), Silent())
    assert record.heard.count("抱歉,没有收到您的输入。") == 2
    assert "抱歉,我没有听到您的选择。" not in record.heard


@pytest.mark.parametrize(
    ("language_key", "words", "not_understood"),
    [
        ("1", "please don't hang up", "Sorry, that is not a valid choice."),
        ("1", "no don't end the call", "Sorry, that is not a valid choice."),
        ("2", "不要挂断", "抱歉,没能识别您的选择。"),
        ("2", "先别结束", "抱歉,没能识别您的选择。"),
    ],
)
def test_asking_the_hotline_not_to_hang_up_does_not_end_the_call(
    phone: Phone, language_key: str, words: str, not_understood: str
) -> None:
    """After the withdrawal advice (3, 2): "hang up" and 挂断 inside a plea not to are not
    a choice to end the call. Nobody needs to say it to end a call: 9, or hanging up."""
    record = call(phone, Press(language_key), Press("3"), Press("2"), Speak(words), Press("1"))
    assert not_understood in record.heard
    assert record.queue == "payments"


@pytest.mark.parametrize(
    ("answers", "caller", "reached"),
    [
        # No keypad tones, or a caller who talks: the key said, at the language menu too.
        ([Speak("one"), Speak("three"), Speak("press 1")], "+15005550006", "A deposit is credited"),
        ([Press("1"), Speak("number 3"), Speak("one")], "+15005550006", "A deposit is credited"),
        ([Speak("二"), Speak("按三"), Speak("一")], "+8613912345678", "充值需要达到足够的区块"),
        ([Press("2"), Speak("三"), Speak("按1")], "+8613912345678", "充值需要达到足够的区块"),
    ],
)
def test_a_key_said_instead_of_pressed_is_that_key(
    phone: Phone, answers: list[Answer], caller: str, reached: str
) -> None:
    record = phone.call(ScriptedParty(list(answers)), from_number=caller)  # a party pops
    assert any(line.startswith(reached) for line in record.heard)
    assert not any("not a valid choice" in line or "没能识别" in line for line in record.heard)


@pytest.mark.parametrize(
    ("answers", "menu"),
    [
        ([Press("1"), Speak("repeat that")], "If your account has been hacked or stolen"),
        ([Press("2"), Speak("再说一遍")], "如果您的账户被盗"),
    ],
)
def test_asking_to_hear_a_menu_again_repeats_it_whole(
    phone: Phone, answers: list[Answer], menu: str
) -> None:
    """As the repeat key does: the full menu again, not "not a valid choice" and the short
    one, and no wrong answer counted."""
    record = phone.call(ScriptedParty(list(answers)))
    assert sum(line.startswith(menu) for line in record.heard) == 2
    assert not any("not a valid choice" in line or "没能识别" in line for line in record.heard)


def test_words_with_a_number_in_them_are_words_not_a_key(phone: Phone) -> None:
    """ "one of my withdrawals" is the withdrawals option (3), not 1 (a hacked account)."""
    record = call(phone, Press("1"), Speak("one of my withdrawals is missing"))
    assert record.heard[-1].startswith("Deposits and withdrawals")


def test_a_caller_from_elsewhere_choosing_nothing_gets_english(phone: Phone) -> None:
    record = phone.call(ScriptedParty([Press("5"), Silent()]), from_number="+15005550006")
    assert record.heard[0] == "Thank you for calling the exchange support hotline."
    assert "Sorry, that is not a valid choice." in record.heard
    assert record.heard[-1].startswith("Main menu") or "press 1" in record.heard[-1]


CHECKED = ["如需普通话服务,请现在按2。", "Otherwise, we continue in English."]


def test_a_caller_from_china_may_still_choose_english(phone: Phone, db: Engine) -> None:
    """1 is English here, and 中文请按1 a habit of Chinese hotlines: a caller from China who
    keys 1 is asked once, in Mandarin, for 2; silence (or any other key) and the call goes
    on in English, with the case in English."""
    for answer in (Silent(), Press("1")):
        record = phone.call(
            ScriptedParty([Press("1"), answer, Press("0")]), from_number="+8613912345678"
        )
        at = record.heard.index(CHECKED[0])
        assert record.heard[at : at + 2] == CHECKED and record.heard.count(CHECKED[0]) == 1
        assert record.heard[at + 2].startswith("If your account has been hacked")
        assert record.queue == "general"
    assert [c["language"] for c in cases_of(db)] == ["en", "en"]


def test_a_caller_from_china_who_keyed_1_by_habit_gets_mandarin_with_2(
    phone: Phone, db: Engine
) -> None:
    record = phone.call(
        ScriptedParty([Press("1"), Press("2"), Press("0")]), from_number="+8613912345678"
    )
    at = record.heard.index(CHECKED[0])
    assert record.heard[at + 2].startswith("如果您的账户被盗")
    assert record.queue == "general" and cases_of(db)[0]["language"] == "zh-CN"


@pytest.mark.parametrize(
    ("answers", "caller"),
    [
        ([Press("1")], "+15005550006"),  # English, from a country with no language of its own
        ([Press("2")], "+8613912345678"),  # the likely language
        ([Speak("English")], "+8613912345678"),  # said, not a key pressed by habit
    ],
)
def test_no_question_for_a_language_chosen_as_expected_or_said(
    phone: Phone, answers: list[Answer], caller: str
) -> None:
    record = phone.call(ScriptedParty([*answers, Press("0")]), from_number=caller)
    assert CHECKED[0] not in record.heard and CHECKED[1] not in record.heard
    assert record.queue == "general"


# -- is the number that contacted me really yours? (account menu, 4) ---------------------------

CHECK = (Press("1"), Press("2"), Press("4"))  # English, account access, check a number
SCAMMER = "12025550199"  # not in routes/hotline.yaml's official_numbers


def cases_of(db: Engine) -> list[dict[str, object]]:
    with db.connect() as conn:
        return [dict(r) for r in conn.execute(select(cases).order_by(cases.c.id)).mappings()]


def checks_counted(phone: Phone, result: str) -> float:
    for line in phone.client.get("/metrics").text.splitlines():
        if line.startswith(f'ivr_number_checks_total{{result="{result}"}} '):
            return float(line.split()[1])
    return 0.0


@pytest.mark.parametrize(
    "keyed",
    [
        "12025550143",  # listed in the tree, keyed with its country code
        "15005550001",  # IVR_CALLER_ID: call backs and ticket texts come from it, unlisted
        "55501",  # the tree's SMS short code
        "2025550143",  # without the country code, by a caller of the same country
    ],
)
def test_a_number_of_ours_is_said_to_be_ours_with_the_warning_that_numbers_can_be_faked(
    phone: Phone, db: Engine, keyed: str
) -> None:
    record = call(phone, *CHECK, Press(keyed), Press("9"))
    said = record.transcript
    assert f"ending in {' '.join(keyed[-4:])} is one of our official numbers" in said
    assert "anyone can fake the number" in said and "never ask for your password" in said
    assert "not one of our numbers" not in said
    assert record.ended_by == "hotline" and record.queue is None
    assert cases_of(db) == []
    assert checks_counted(phone, "official") == 1


def test_a_number_not_ours_is_said_so_and_a_victim_who_gave_a_code_reaches_security(
    phone: Phone, db: Engine
) -> None:
    """Told it was not us; one who gave the thief a code is put through to security at
    emergency priority, the number they were contacted from on their case for the agent."""
    record = call(phone, *CHECK, Press(SCAMMER), Press("1"), Press("*"))
    said = record.transcript
    assert "ending in 0 1 9 9 is not one of our numbers" in said
    assert "Do not call it back" in said
    assert record.queue == "security"
    [case] = cases_of(db)
    assert case["priority"] == "emergency"
    assert case["flags"]["reported_number"] == "+" + SCAMMER  # type: ignore[index]
    assert checks_counted(phone, "not_official") == 1


def test_a_scammers_short_code_leads_to_security_like_any_number_not_ours(
    phone: Phone, db: Engine
) -> None:
    record = call(phone, *CHECK, Press("95555"), Press("1"), Press("*"))
    assert "That is not one of our short codes" in record.transcript
    assert record.queue == "security"
    [case] = cases_of(db)
    assert case["priority"] == "emergency" and "reported_number" not in case["flags"]  # type: ignore[operator]


def test_a_text_from_a_mainland_sms_sender_is_checked_as_the_short_code_it_is(
    phone: Phone, db: Engine
) -> None:
    """106... is how texts reach Chinese phones, the exchange's and a scammer's: "not ours"
    as a short code, not "that is no number we can check" twice."""
    keys = [Press("2"), Press("2"), Press("4"), Press("1069012345678"), Press("1"), Press("*")]
    record = phone.call(ScriptedParty(keys, hold_polls=1), from_number="+8613912345678")
    assert "这不是我们的短信号码" in record.transcript
    assert "不是可以核实的号码" not in record.transcript
    assert record.queue == "security"


def test_one_who_fell_for_a_call_from_a_number_of_ours_still_reaches_security(
    phone: Phone, db: Engine
) -> None:
    """Our number, faked: a caller who gave the thief a code is a victim all the same."""
    record = call(phone, *CHECK, Press("12025550143"), Press("1"), Press("*"))
    assert "is one of our official numbers" in record.transcript
    assert record.queue == "security"
    [case] = cases_of(db)
    assert case["priority"] == "emergency"


def test_a_number_not_ours_goes_with_the_caller_to_an_agent(phone: Phone, db: Engine) -> None:
    record = call(phone, *CHECK, Press(SCAMMER), Press("0"))
    assert record.queue == "account"
    [case] = cases_of(db)
    assert case["flags"]["reported_number"] == "+" + SCAMMER  # type: ignore[index]
    # The agent who takes the case sees the number the caller was contacted from.
    agent = make_user(db, "alice", "agent")
    taken = phone.client.post("/api/agents/next", headers=bearer(agent)).json()["case"]
    assert taken["risk"]["reported_number"] == "+" + SCAMMER


def test_a_mandarin_caller_keys_a_mainland_number_as_it_was_shown(phone: Phone, db: Engine) -> None:
    """No country code: a caller on a +86 phone means a mainland number, and hears so in
    Mandarin; the case has it in full."""
    record = phone.call(
        ScriptedParty([Press("2"), Press("2"), Press("4"), Press("13800138000"), Press("0")]),
        from_number="+8613912345678",
    )
    assert any("尾号为 8 0 0 0 的号码不是我们的号码" in line for line in record.heard)
    [case] = cases_of(db)
    assert case["flags"]["reported_number"] == "+8613800138000"  # type: ignore[index]


def test_keys_that_are_not_a_number_are_asked_again_then_an_agent(phone: Phone, db: Engine) -> None:
    """No number after two tries: asked once whether they gave a code or moved funds, and,
    silent again, put through to an account agent."""
    record = call(phone, *CHECK, Press("12"), Silent(), Silent())
    assert record.transcript.count("not a number we can check") == 1
    assert record.transcript.count("didn't hear anything") == 1  # the last silence: an agent
    assert "moved funds because of them, press 1 now" in record.transcript
    assert "official numbers" not in record.transcript
    assert record.queue == "account"
    [case] = cases_of(db)
    assert "reported_number" not in case["flags"]  # type: ignore[operator]
    assert checks_counted(phone, "not_a_number") == 1


@pytest.mark.parametrize("keyed", ["482913", "5064", "1234567"])
def test_a_secret_keyed_at_the_number_prompt_is_neither_said_back_nor_kept(
    phone: Phone, db: Engine, keyed: str
) -> None:
    """A PIN, an ID's last four, a code: short digits that are none of our short codes are
    not ours (as a scammer's short code is), and are not read back or stored anywhere."""
    record = call(phone, *CHECK, Press(keyed), Press("0"))
    assert "That is not one of our short codes" in record.transcript
    assert "ending in" not in record.transcript
    assert record.queue == "account"
    # Not the random ticket number or CallSid, which may hold those digits by chance.
    made_up = {"ticket", "call_sid"}
    with db.connect() as conn:
        stored = [
            str(value)
            for table in (cases, calls)
            for row in conn.execute(select(table)).mappings()
            for column, value in row.items()
            if column not in made_up
        ]
    assert not any(keyed in value for value in stored)


@pytest.mark.parametrize("out", ["*", "0"])
def test_star_or_zero_at_the_number_prompt_is_asked_about_a_code_then_reaches_an_agent(
    phone: Phone, out: str
) -> None:
    """No number to check: the caller is asked once whether they gave a code or moved funds
    (a victim all the same), and 0 there puts them through to an account agent."""
    record = call(phone, *CHECK, Press(out), Press("0"))
    assert record.queue == "account"
    assert "not a number we can check" not in record.transcript
    assert "moved funds because of them, press 1 now" in record.transcript


def test_asking_for_customer_service_in_mandarin_reaches_an_agent(phone: Phone) -> None:
    record = call(phone, Press("2"), Speak("我找客服"))
    assert record.queue == "general"


def test_saying_someone_called_pretending_to_be_us_reaches_the_number_check(
    phone: Phone,
) -> None:
    record = call(
        phone, Press("1"), Speak("someone called me pretending to be your support"), Press("9")
    )
    assert "enter the phone number that called or texted you" in record.transcript


@pytest.mark.parametrize(
    ("language_key", "words", "heard"),
    [
        # Spot trading's "trading" and 订单 are in these too: the first option listed wins.
        ("1", "a question about futures trading", "Futures and derivatives."),
        ("1", "my margin trading account", "Futures and derivatives."),
        ("2", "我的合约订单有问题", "合约交易服务。"),
        ("1", "my trading bot stopped working", "API support."),
        ("1", "my spot trading order failed", "Spot trading and fees."),
        # A scam call is the number check's; "I was scammed", funds gone, is asked who.
        ("1", "I got a scam call", "enter the phone number that called or texted you"),
        ("1", "I was scammed", "We are sorry your funds are missing."),
        ("1", "it was a scam and all my money is gone", "We are sorry your funds are missing."),
        # DeFi is heard after the weak words: a drained wallet is asked whether it was stolen.
        ("1", "my DeFi wallet was drained", "We are sorry your funds are missing."),
    ],
)
def test_words_inside_another_options_words_reach_the_option_that_names_them(
    phone: Phone, language_key: str, words: str, heard: str
) -> None:
    record = call(phone, Press(language_key), Speak(words), Press("9"))
    assert heard in record.transcript, record.heard


def test_an_upload_that_failed_hears_the_upload_advice_not_a_refused_verification(
    phone: Phone,
) -> None:
    for language_key, words, advice in (
        ("1", "my upload failed", "Take the photo in good light"),
        ("2", "证件上传失败", "请在光线充足的地方拍摄"),
    ):
        record = call(phone, Press(language_key), Press("7"), Speak(words))  # 7: KYC
        assert any(line.startswith(advice) for line in record.heard), record.heard


@pytest.mark.parametrize(
    ("language_key", "words"),
    [
        ("1", "um yeah so i think somebody hacked into my account"),
        ("1", "someone took over my account"),
        ("1", "there are withdrawals i didnt make"),
        ("1", "i didnt authorize this withdrawal"),
        ("1", "somebody sent my coins to another wallet"),
        ("1", "i got sim swapped and now my account is empty"),
        ("1", "my password got reset and it wasnt me"),  # no apostrophe, as recognisers write
        ("1", "a man called from your support and i told him the verification code"),
        ("1", "they told me to transfer my funds to a secure account"),
        ("1", "someone is trading on my account"),
        ("1", "someone created an api key on my account"),
        ("1", "he asked me to install anydesk"),
        ("2", "我把验证码告诉对方了"),
        ("2", "有人登陆了我的账户"),  # 登陆, as often written for 登录
        ("2", "我的二次验证被人解绑了"),
        ("2", "手机号被人换了"),
        ("2", "有人用我的账户下单"),
        ("2", "我收到提现成功的短信但我根本没提现"),
        ("2", "有个假客服骗我把USDT转走了"),
        # A drainer's approval, phishing, a login that was not theirs (a Mandarin review).
        ("2", "我的U被人授权转走了"),
        ("2", "有人转走了我的USDT"),
        ("2", "有人登录了,不是我"),
        ("2", "我在钓鱼网站输入了助记词"),
        ("2", "我被钓鱼了"),
        ("2", "钱包被清空了"),
    ],
)
def test_a_victim_in_their_own_words_reaches_the_emergency_lane(
    phone: Phone, language_key: str, words: str
) -> None:
    """Said the way victims say it (a reviewer's 300 phrasings): not the topic's menu, the
    scam check or a retry, where a thief has minutes more."""
    record = call(phone, Press(language_key), Speak(words), Press("*"))
    assert record.queue == "security", record.heard


@pytest.mark.parametrize(
    ("language_key", "in_the_app", "promised"),
    [
        (
            "1",
            "A reset is done only through the verification in our app, never on a call you did "
            "not make.",
            "an agent can help once your identity is verified",
        ),
        (
            "2",
            "重置只能通过App内的身份验证完成,绝不会在不是您主动拨打的电话里办理。",
            "由客服核实身份后协助处理",
        ),
    ],
    ids=["en", "zh-CN"],
)
def test_the_2fa_advice_says_a_reset_is_never_done_on_a_call_the_customer_did_not_make(
    phone: Phone, language_key: str, in_the_app: str, promised: str
) -> None:
    """ "An agent can reset your 2FA" is what a scammer calling to do it says too: a reset is
    done in the app, and never on a call the customer did not make."""
    record = call(phone, Press(language_key), Press("2"), Press("2"), Press("9"))
    assert any(in_the_app in line for line in record.heard), record.heard
    assert promised not in record.transcript


@pytest.mark.parametrize(
    ("language_key", "greeting", "no_secrets"),
    [
        (
            "1",
            "Hello, this is exchange support returning your call about ticket",
            "We will not ask for your PIN, password or any code on this call: if in doubt, hang "
            "up and call the number in our app.",
        ),
        (
            "2",
            "您好,这里是交易所客服,就工单",
            "本次通话中,我们不会向您索要PIN码、密码或任何验证码;如有疑问,请挂断,再拨打App上"
            "公布的客服电话。",
        ),
    ],
    ids=["en", "zh-CN"],
)
def test_a_call_back_says_it_asks_for_no_pin_or_code_and_to_call_the_apps_number_in_doubt(
    database_url: str,
    hotline_tree: CompiledTree,
    db: Engine,
    clock: FakeClock,
    check_twiml: Callable[[str], None],
    language_key: str,
    greeting: str,
    no_secrets: str,
) -> None:
    """We call whatever number called us, a spoofed one too: the customer who answers is told
    that this call asks for no PIN, password or code, and where the real number is."""
    twilio = RecordingTwilio()
    app = app_with_twilio(database_url, hotline_tree, db, clock, twilio)
    with on_the_line(app, check_twiml, twilio) as (client, phone):
        # An agent, then 1 at the hold's offer of a call back, and 2 to confirm it.
        call(phone, Press(language_key), Press("0"), Press("1"), Press("2"))
        alice = make_user(db, "alice", "agent", "+15005559999")
        claimed = client.post("/api/agents/next", headers=bearer(alice)).json()
        assert claimed["connect"]["mode"] == "calling_back"
        customer = phone.answer(
            placed_calls(twilio)[-1], ScriptedParty([]), call_sid=twilio.sids[-1]
        )
    assert customer.heard[0].startswith(greeting), customer.heard
    assert no_secrets in customer.heard[0]


@pytest.mark.parametrize(
    ("language_key", "words"),
    [
        ("1", "someone ported my number to another sim"),
        ("1", "somebody ported my number"),
        ("1", "someone took my number"),
        ("1", "someone took my phone number"),
        ("1", "my sim stopped working"),
        ("1", "my sim card stopped working and I got a message my number moved"),
        ("1", "my number moved to another sim"),
        ("2", "我的手机号被别人补卡了"),
        ("2", "我的号码被转到别的手机上了"),
        ("2", "号码被转移了"),
        ("2", "手机号被过户了"),
        ("2", "手机突然没信号了"),
    ],
)
def test_a_sim_swap_victim_in_their_own_words_reaches_the_emergency_lane(
    phone: Phone, db: Engine, language_key: str, words: str
) -> None:
    """A number taken to a thief's SIM is how their second factor is taken: its owner is the
    exchange's most urgent caller, not one for the 2FA advice or "not a valid choice"."""
    record = call(phone, Press(language_key), Speak(words), Press("*"))
    assert record.queue == "security", record.heard
    [case] = cases_of(db)
    assert case["priority"] == "emergency"


@pytest.mark.parametrize(
    ("language_key", "told", "answer"),
    [
        (
            "1",
            "If your phone suddenly lost service, or your number moved to another SIM, someone "
            "may have taken your number: press 3 now for our security team.",
            Press("3"),
        ),
        ("1", "If your phone suddenly lost service", Speak("my phone has no service")),
        (
            "2",
            "如果手机突然没信号,或者号码被转到了别的SIM卡上,可能是有人盗用了您的号码,请立即按3",
            Press("3"),
        ),
        ("2", "如果手机突然没信号", Speak("手机没有信号了")),
    ],
)
def test_after_the_2fa_advice_a_phone_that_lost_service_reaches_the_security_team(
    phone: Phone, db: Engine, language_key: str, told: str, answer: Answer
) -> None:
    """One who lost their codes because their phone suddenly lost service may be a SIM swap's
    victim: the advice's next menu says so, and its 3 (or saying it) is the security team."""
    record = call(phone, Press(language_key), Press("2"), Press("2"), answer, Press("*"))
    assert any(told in line for line in record.heard), record.heard
    assert record.queue == "security"
    [case] = cases_of(db)
    assert case["priority"] == "emergency"


@pytest.mark.parametrize(
    ("language_key", "words"),
    [
        ("1", "my deposit took over an hour to arrive"),
        ("1", "my order didn't place"),
        ("1", "i ported my phone number to a new carrier"),
        ("1", "i ported my number to a new carrier"),  # "someone ported" is a SIM swap
        ("1", "your agent took my number for a call back"),  # "someone took my number" is
        ("1", "why did you block my account"),
        ("1", "support told me to send a selfie for kyc"),
        ("1", "my api key leaked on github"),
        ("1", "is there a hackathon"),
        ("1", "someone is using my referral code"),
        ("1", "i want to move my coins to a secure wallet like a ledger"),
        ("2", "我登陆了我的账号但是看不到余额"),
        ("2", "验证码发给我的手机收不到"),
        ("2", "买家问我怎么告诉对方付款了"),
        ("2", "有人用我的邀请码注册了"),
        ("2", "我去营业厅补卡了"),
        ("2", "为什么锁定我的账户"),
    ],
)
def test_an_everyday_question_is_no_emergency(phone: Phone, language_key: str, words: str) -> None:
    """Near a victim's words, but not theirs: the emergency lane would ask them to verify and
    freeze their account, which no phone call undoes. (A review's 74 everyday phrasings.)"""
    record = call(phone, Press(language_key), Speak(words), Press("9"))
    assert record.queue != "security"
    notice = ("Emergency service for hacked accounts", "这里是账户被盗紧急服务")
    assert not any(line.startswith(notice) for line in record.heard), record.heard


@pytest.mark.parametrize(
    ("keys", "words", "queue"),
    [
        # After the account-safety advice (2, 5): typed it, or gave it away: security; a "no":
        # an account agent. After DeFi's (8, 6): approved or signed something, phished.
        (["2", "5"], "我在上面输入了我的密码", "security"),
        (["2", "5"], "我告诉别人了", "security"),
        (["2", "5"], "我没有输入过密码", "account"),
        (["8", "6"], "我授权了", "security"),
        (["8", "6"], "被钓鱼了", "security"),
    ],
)
def test_what_a_mandarin_caller_answers_after_the_safety_advice(
    phone: Phone, keys: list[str], words: str, queue: str
) -> None:
    record = call(phone, Press("2"), *(Press(k) for k in keys), Speak(words), Press("*"))
    assert record.queue == queue, record.heard


@pytest.mark.parametrize(
    ("keys", "words", "heard"),
    [
        (["2", "3", "1"], "再说一遍", "充值需要达到足够的区块确认数"),  # no repeat key: * replays
        (["2"], "能再说一遍吗", "如果您的账户被盗"),
        (["2"], "麻烦你能不能再说一遍好吗", "如果您的账户被盗"),
        (["2"], "好的,按三", "充值和提现服务"),
    ],
)
def test_a_mandarin_caller_asks_again_or_says_a_key_in_their_own_way(
    phone: Phone, keys: list[str], words: str, heard: str
) -> None:
    record = call(phone, *(Press(k) for k in keys), Speak(words))
    assert record.heard[-1].startswith(heard) or any(
        line.startswith(heard) for line in record.heard[-2:]
    ), record.heard
    assert not any("没能识别" in line for line in record.heard)


@pytest.mark.parametrize(
    ("language_key", "words", "heard"),
    [
        ("1", "my withdrawal didn't make it to my wallet", "Deposits and withdrawals."),
        ("1", "the api says 401 unauthorized access", "API support."),
        ("2", "API提示未授权的IP", "API技术支持。"),
        ("1", "you scammers liquidated my position", "We understand that losing a position"),
        ("1", "is this a scam", "enter the phone number that called or texted you"),
        ("2", "有人打电话说是你们客服", "请输入给您打电话或发短信的号码"),  # 打电话说
    ],
)
def test_words_near_a_victims_reach_their_own_menu(
    phone: Phone, language_key: str, words: str, heard: str
) -> None:
    record = call(phone, Press(language_key), Speak(words), Press("9"))
    assert record.queue != "security"
    assert heard in record.transcript, record.heard


# -- never turned away -------------------------------------------------------------------------


def test_silence_at_the_main_menu_reaches_an_agent(phone: Phone) -> None:
    # Two silences at the language choice (English is kept), three at the main menu.
    record = call(phone, *[Silent()] * 5)
    assert record.queue == "general"
    assert record.ended_by == "caller"  # the hotline never hung up on them


def test_wrong_keys_at_the_main_menu_reach_an_agent(phone: Phone) -> None:
    record = call(phone, Press("1"), Press("#"), Press("#"), Press("#"))
    assert record.queue == "general"


def test_zero_reaches_an_agent_from_the_main_menu(phone: Phone) -> None:
    assert call(phone, Press("1"), Press("0")).queue == "general"


# -- self-help leaves --------------------------------------------------------------------------


def test_deposit_not_credited_gives_txid_advice_then_payments_agent(
    phone: Phone, db: Engine
) -> None:
    record = call(phone, Press("1"), Press("3"), Press("1"), Press("1"))
    assert any("T X I D" in line and "network" in line for line in record.heard)  # spelled for TTS
    assert record.queue == "payments"
    with db.connect() as conn:
        topics = {
            e["node"] for e in call_log(conn, call_sid=record.call_sid) if e["kind"] == "entered"
        }
    assert {"deposits_menu", "deposits_not_credited", "agent_payments"} <= topics


def test_products_queue_respects_business_hours(phone: Phone, clock: FakeClock) -> None:
    clock.now = datetime(2026, 11, 28, 4, 0, tzinfo=UTC)  # Saturday noon in Singapore
    record = call(phone, Press("1"), Press("8"), Press("1"), Press("1"))
    assert record.queue == "general"  # closed: told so, and still handed to a person
    assert any("It opens again Monday at 9 AM, Singapore time." in line for line in record.heard)


@pytest.mark.parametrize(
    ("now", "english", "mandarin"),
    [
        # Christmas Day is a Friday: the next opening is after the weekend.
        (datetime(2026, 12, 25, 4, 0, tzinfo=UTC), "Monday at 9 AM", "周一上午9点"),
        # Thursday 22:00 in Singapore: closed since 21:00, open again the next morning.
        (datetime(2026, 12, 3, 14, 0, tzinfo=UTC), "tomorrow at 9 AM", "明天上午9点"),
        # Monday 07:00: later the same day.
        (datetime(2026, 11, 29, 23, 0, tzinfo=UTC), "today at 9 AM", "今天上午9点"),
    ],
)
def test_a_caller_after_hours_hears_when_the_team_opens_from_the_trees_hours(
    phone: Phone, clock: FakeClock, now: datetime, english: str, mandarin: str
) -> None:
    """The hours are written once, in the tree (products_hours, holidays and all); the
    prompt says what they give, in the caller's language."""
    clock.now = now
    record = call(phone, Press("1"), Press("8"), Press("1"), Press("1"))
    assert any(f"It opens again {english}, Singapore time." in line for line in record.heard)
    record = call(phone, Press("2"), Press("8"), Press("1"), Press("1"))
    assert record.queue == "general"
    assert any(f"将于新加坡时间{mandarin}恢复服务" in line for line in record.heard)


def test_a_caller_queued_back_by_their_ticket_is_asked_that_queues_survey(
    hotline_tree: CompiledTree,
) -> None:
    """Queued back to an earlier case's team by the ticket node, the caller waits at that
    node, not at a queue node: after the agent, the survey of the payments queue's node."""
    links, now = Links("https://hotline.example.test"), datetime(2026, 11, 23, 4, 0, tzinfo=UTC)
    waiting = CallState(
        node="ticket_lookup", facts={"queue": "payments", "priority": "normal", "ticket": "7"}
    )
    step = advance(hotline_tree, waiting, AgentDone(12), links=links, step=5, now=now)
    assert step.state.node == "survey" and step.state.facts["served_case"] == "12"
    # A queue no queue node serves (the fallback's): goodbye, as before.
    elsewhere = waiting.model_copy(update={"facts": {**waiting.facts, "queue": "overflow"}})
    step = advance(hotline_tree, elsewhere, AgentDone(12), links=links, step=5, now=now)
    assert step.state.ended and step.state.node == "ticket_lookup"


def test_star_repeats_and_hash_goes_back(phone: Phone) -> None:
    record = call(phone, Press("1"), Press("3"), Press("#"), Press("*"))
    main_prompts = [
        line for line in record.heard if "press 1" in line.lower() and "stolen" in line.lower()
    ]
    assert len(main_prompts) == 3  # first time, after # (back), after * (repeat)


# -- the whole tree, every key, both languages ---------------------------------------------------

FOUND = CaseSummary("1234567", "waiting", "payments", "normal", "deposits_withdrawals")
INPUTS: tuple[Input, ...] = (
    *(Keys(k) for k in "0123456789*#"),
    Keys("10000001"),
    Silence(),
    Speech("hacked"),
    Speech("my money is gone"),  # spoken only: stolen, or lost trading?
    Checked(ok=True),
    Checked(ok=False),
    Checked(ok=False, locked=True),
    Checked(ok=False, unavailable=True),
    TicketLookup(None),
    TicketLookup(FOUND),
    NumberLookup("+12025550143", official=True),
    NumberLookup("+12025550199"),
    NumberLookup(None),
    NumberLookup(None, short=True),
    QueueExit("queue-full"),
    QueueExit("leave"),
    QueueExit("bridged"),
    DialDone("no-answer"),
    AgentDone(1),
)


# An incident announced: the main menu's incident keys are offered and taken meanwhile.
NEWS = Announcement("1", {"en": "Logins are slow today.", "zh-CN": "今天登录较慢。"})


@pytest.mark.parametrize("news", [None, NEWS], ids=["no announcement", "announced"])
def test_every_node_every_key_both_languages_gives_valid_twiml_and_no_dead_end(
    hotline_tree: CompiledTree, check_twiml: Callable[[str], None], news: Announcement | None
) -> None:
    links, now = Links("https://hotline.example.test"), datetime(2026, 11, 23, 4, 0, tzinfo=UTC)
    first = begin(hotline_tree, links=links, step=1, now=now, announcement=news)
    check_twiml(first.twiml)
    seen: set[tuple[str, str, int, int]] = set()
    todo: deque[CallState] = deque([first.state])
    visited_nodes: set[str] = set()
    while todo:
        state = todo.popleft()
        key = (state.node, state.lang, state.no_input, state.invalid)
        if key in seen or state.ended:
            continue
        seen.add(key)
        visited_nodes.add(state.node)
        for event in INPUTS:
            step = advance(
                hotline_tree, state, event, links=links, step=2, now=now, announcement=news
            )
            check_twiml(step.twiml)
            root = etree.fromstring(step.twiml.encode())
            last = root[-1].tag if len(root) else None
            # Every answer either waits for the caller, queues them, or ends deliberately.
            assert last in ("Redirect", "Enqueue", "Hangup", "Dial"), (
                state.node,
                event,
                step.twiml,
            )
            if last == "Hangup":
                # Only a goodbye node, or a caller an agent has served, is hung up on.
                served = event == QueueExit("bridged") or isinstance(event, AgentDone)
                assert served or isinstance(hotline_tree.node(step.state.node), HangupNode), (
                    state.node,
                    event,
                )
            todo.append(step.state.model_copy(update={"trail": step.state.trail[-2:]}))
    # Without an announcement, what only main menu # leads to (its advice's menu) is out of
    # reach; announced, it is reached and walked like any other.
    only_announced = {"incident_next"}
    assert (news is not None) == (only_announced <= visited_nodes)
    if news is not None:
        only_announced = set()
    assert visited_nodes >= {
        n
        for n, node in hotline_tree.tree.nodes.items()
        if isinstance(node, MenuNode | QueueNode) and n not in only_announced
    }
    assert {lang for _, lang, _, _ in seen} == {"en", "zh-CN"}


def test_every_escalation_leads_to_a_person(hotline_tree: CompiledTree) -> None:
    """Silence and wrong keys never end a call: each menu escalates (via say/hours, or the
    emergency lane's verification, whatever its outcome) to a queue."""
    nodes = hotline_tree.tree.nodes

    def ends_in_queue(name: str, depth: int = 0) -> bool:
        node = nodes[name]
        if isinstance(node, QueueNode):
            return True
        ways = ("next", "on_open", "on_closed", "on_success", "on_failure", "on_locked")
        nxt = [t for t in (getattr(node, a, None) for a in ways) if t]
        return bool(nxt) and depth < 10 and all(ends_in_queue(t, depth + 1) for t in nxt)

    for name, node in nodes.items():
        if isinstance(node, MenuNode):
            assert ends_in_queue(node.on_no_input), name
            assert ends_in_queue(node.on_invalid), name
            assert node.operator is not None and ends_in_queue(node.operator), name


def test_main_menu_follows_the_contract(hotline_tree: CompiledTree) -> None:
    menu = hotline_tree.menus["main_menu"]
    targets = {k: o.target for k, o in menu.by_key.items()}
    assert targets["1"] == "emergency"
    assert set(targets) == set("123456789")
    assert (menu.node.operator_key, menu.node.repeat_key) == ("0", "*")
    # 1 is the first key; the only option before it is spoken only, a freeze to lift
    # (解除冻结我的账户 holds 冻结我的, a strong word), and never leads to a freeze.
    first = next(i for i, o in enumerate(menu.node.options) if o.key is not None)
    assert menu.node.options[first].key == "1"
    assert [o.target for o in menu.node.options[:first]] == ["agent_account"]
    emergency_queue = hotline_tree.node("emergency_queue")
    assert isinstance(emergency_queue, QueueNode) and emergency_queue.priority == "emergency"


@pytest.mark.parametrize(
    ("language_key", "words", "queue"),
    [
        ("1", "can I talk to a real person", "general"),
        ("2", "转人工", "general"),
        ("1", "I have a question about my deposits", None),  # "deposit" starts "deposits"
    ],
)
def test_spoken_requests_for_a_person(
    phone: Phone, language_key: str, words: str, queue: str | None
) -> None:
    record = call(phone, Press(language_key), Speak(words), Press("1"), Press("1"))
    if queue:
        assert record.queue == queue
    else:
        assert record.queue == "payments"


@pytest.mark.parametrize(
    ("language", "words"),
    [
        ("zh-CN", "请帮我解除冻结我的账户"),  # unfreeze: frozen by risk control
        ("zh-CN", "你们为什么冻结我的账户"),
        ("zh-CN", "怎么开启防盗设置"),  # anti-theft settings
        ("en", "why is there a freeze on my withdrawals"),
        ("en", "I am locked out of my account"),  # option 2, not an emergency
        ("zh-CN", "我想把币转出去"),  # a withdrawal
        ("zh-CN", "我的充值不见了"),  # a deposit not credited
        ("zh-CN", "我登录不了我的账户"),
        ("en", "I cannot log into my account"),
        # Near the words of a victim who fell for a scam, said by callers with other problems.
        ("zh-CN", "为什么不让我转账"),
        ("zh-CN", "系统不让我转账到合约账户"),
        ("zh-CN", "提现的时候它让我转账到资金账户"),
        ("zh-CN", "我按对方的要求转了款但是对方一直不放币"),
        ("zh-CN", "短信提示不要把验证码告诉任何人,但是我收不到验证码"),
        ("en", "I shared my code with a friend but never got the referral bonus"),
        ("en", "I gave them my ID and passport but verification still failed"),
        ("en", "I already gave them my transaction ID and my deposit is still not credited"),
        ("en", "the app made me send a selfie again"),
        ("en", "it made me transfer to spot before withdrawing"),
        ("en", "I gave away my old phone and need to reset two factor"),
    ],
)
def test_a_freeze_or_theft_setting_asked_about_is_no_emergency(
    hotline_tree: CompiledTree, language: str, words: str
) -> None:
    """Words near the emergency's that a caller with another problem says: the emergency
    lane is for victims, and a verified caller there is frozen, never unfrozen by phone."""
    from ivr.tree import match_speech

    option = match_speech(hotline_tree.menus["main_menu"], language, words)
    assert option is None or option.target != "emergency"


def test_latin_keywords_match_whole_word_starts_only(hotline_tree: CompiledTree) -> None:
    from ivr.tree import match_speech

    menu = hotline_tree.menus["main_menu"]
    assert match_speech(menu, "en", "what about my capital") is None  # not "api"
    option = match_speech(menu, "en", "API keys")
    assert option is not None and option.target == "api_menu"
    option = match_speech(menu, "zh-CN", "我的API接口连不上")  # Chinese: anywhere in the phrase
    assert option is not None and option.target == "api_menu"
    option = match_speech(menu, "zh-CN", "我的API签名错误")  # the error named: its advice
    assert option is not None and option.target == "api_signature"


def test_back_after_replaying_advice_leaves_the_menu(phone: Phone) -> None:
    # deposits -> not credited (advice) -> * replays it -> # goes back to the deposits menu
    record = call(phone, Press("1"), Press("3"), Press("1"), Press("*"), Press("#"))
    # Back at the deposits menu (not the advice menu), with its reminder: heard it already.
    assert record.heard[-1].startswith("Press 1 for a missing deposit")
    assert sum(line.startswith("Deposits and withdrawals.") for line in record.heard) == 1


def test_a_menu_heard_already_is_presented_again_with_its_short_prompt(phone: Phone) -> None:
    """The main menu is long: back to it (#), after silence, or by an option leading up to it,
    the caller hears its reminder; they asked for the whole of it only with star."""
    full, short = "If your account has been hacked", "Press 1 for a hacked or stolen account"
    back = call(phone, Press("1"), Press("3"), Press("#"), Silent(), Press("*"))
    menus = ["full" if line.startswith(full) else "short" for line in back.heard]
    menus = [m for m, line in zip(menus, back.heard, strict=True) if line.startswith((full, short))]
    # first visit, back with #, after the silence, and star: the whole again
    assert menus == ["full", "short", "short", "full"]


# -- a secret factor on the event loop: counted once, whatever gives way ------------------------


def _hotline_at_the_pin_prompt(
    settings: Settings, tree: CompiledTree, db: Engine, clock: FakeClock, *, locked: bool
) -> tuple[Hotline, str, int]:
    directory = LocalDirectory(db, settings.secret_key)
    directory.add(
        uid=VICTIM_UID, pin="739182", id_last4=None, phone=None, totp_secret=None, now=clock.now
    )
    hotline = Hotline(
        settings, tree, db, identity=directory, actions=LocalAccountActions(db), clock=clock
    )
    sid = "CA" + "e" * 32
    hotline.start(Caller(sid, "AC" + "0" * 32, "+15005550006", "+15005550001"))
    for step, keys in ((1, "1"), (2, "1"), (3, VICTIM_UID)):  # English, hijack, UID
        hotline.advance(sid, step, Keys(keys))
    if locked:  # other callers guessed this account's PIN already
        with db.connect() as conn:
            for _ in range(settings.lockout_failures):
                store.record_failure(
                    conn,
                    uid=VICTIM_UID,
                    caller="+15005559999",
                    call_sid="CA" + "f" * 32,
                    now=clock.now,
                )
    return hotline, sid, 4


def _failures(db: Engine) -> int:
    with db.connect() as conn:
        return len(conn.execute(select(verification_failures.c.id)).all())


@contextlib.contextmanager
def _another_write(db: Engine) -> Iterator[None]:
    """Another webhook's write in a worker thread, holding this process's writer lock."""
    started, done = threading.Event(), threading.Event()

    def write() -> None:
        with db.connect() as conn, store.writing(conn):
            started.set()
            done.wait(10)

    thread = threading.Thread(target=write)
    thread.start()
    started.wait(10)
    try:
        yield
    finally:
        done.set()
        thread.join()


VICTIM_UID = "10000001"


@pytest.mark.parametrize("locked", [True, False], ids=["locked-out", "wrong"])
@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)  # the event loop's path
def test_a_pin_counted_on_the_loop_counts_once_when_its_step_goes_to_a_thread(
    settings: Settings,
    hotline_tree: CompiledTree,
    db: Engine,
    clock: FakeClock,
    database_url: str,
    locked: bool,
) -> None:
    hotline, sid, step = _hotline_at_the_pin_prompt(
        settings, hotline_tree, db, clock, locked=locked
    )
    before = _failures(db)
    with impatient(), pytest.raises(Counted) as counted:  # on the loop: counted, committed
        hotline.advance(sid, step, Keys("000000"), may_block=False)
    assert counted.value.locked is locked and _failures(db) == before + 1
    verdict = Checked(ok=False, locked=True) if locked else Checked(ok=False)
    checked = (counted.value.attempt, verdict)
    with _another_write(db), impatient(), pytest.raises(Busy):  # the step meets a held lock
        hotline.advance(sid, step, Keys("000000"), may_block=False, checked=checked)
    hotline.advance(sid, step, Keys("000000"), checked=checked)  # again, in a thread
    # One keyed attempt, one count; made while locked out (and not checked), taken back
    # with its step: it does not keep the lock on.
    assert _failures(db) == before + (0 if locked else 1)
    with db.connect() as conn:
        row = store.load_call(conn, call_sid=sid)
    assert row is not None and row.step == step + 1


class _DirectoryDown(LocalDirectory):
    def registered_phone(self, *, uid: str) -> str | None:
        raise TimeoutError("the directory did not answer")


def test_a_final_status_is_recorded_even_if_the_hung_up_case_cannot_open(
    settings: Settings, hotline_tree: CompiledTree, db: Engine, clock: FakeClock
) -> None:
    hotline, sid, _ = _hotline_at_the_pin_prompt(settings, hotline_tree, db, clock, locked=False)
    hotline.identity = _DirectoryDown(db, settings.secret_key)
    with pytest.raises(TimeoutError):
        hotline.status(sid, "completed", duration=30, sequence=9)
    with db.connect() as conn:
        call = get_call(conn, call_sid=sid)
    assert call is not None and call["status"] == "completed"  # the hang-up is not lost with it
    hotline.identity = LocalDirectory(db, settings.secret_key)
    hotline.status(sid, "completed", duration=30, sequence=9)  # Twilio's repeat finishes it
    with db.connect() as conn:
        opened = conn.execute(select(cases.c.priority, cases.c.status)).all()
    assert [tuple(r) for r in opened] == [("emergency", "abandoned")]


def test_a_victim_whose_final_status_never_comes_gets_the_case_when_the_call_goes_stale(
    settings: Settings, hotline_tree: CompiledTree, db: Engine, clock: FakeClock
) -> None:
    hotline, sid, _ = _hotline_at_the_pin_prompt(settings, hotline_tree, db, clock, locked=False)
    clock.advance(seconds=settings.call_max_age_seconds - 1)
    assert hotline.close_stale_calls() == 0
    clock.advance(seconds=2)  # quiet for longer than IVR_CALL_MAX_AGE: hung up, unheard
    assert hotline.close_stale_calls() == 1
    with db.connect() as conn:
        call = get_call(conn, call_sid=sid)
        opened = conn.execute(select(cases.c.priority, cases.c.status, cases.c.account_uid)).all()
    assert call is not None and call["status"] == "stale"
    assert [tuple(r) for r in opened] == [("emergency", "abandoned", VICTIM_UID)]


# -- victims in their own words, wherever they are in the tree -------------------------------


@pytest.mark.parametrize(
    ("language_key", "words"),
    [
        ("1", "someone changed my password and I cannot log in"),  # not the password advice
        ("1", "I gave someone my 2FA code"),  # not the 2FA advice
        ("2", "我的密码被人改了 登不上了"),
        ("2", "有人改了我的密码"),
        ("2", "我把验证码给了别人"),
        ("1", "money was withdrawn from my account and it was not me"),  # not deposits
    ],
)
def test_a_hijack_victim_describing_it_in_their_own_words_reaches_the_emergency_lane(
    phone: Phone, language_key: str, words: str
) -> None:
    """The caller does not say "hacked": they say what happened to them. Whatever else they
    mention (a password, a login, a withdrawal), they reach the security team."""
    record = call(phone, Press(language_key), Speak(words), Press("*"))
    assert record.queue == "security"


@pytest.mark.parametrize(
    ("language_key", "words"),
    [
        ("1", "someone called me from support and I gave them the code"),
        ("2", "客服让我把币转到安全账户"),  # the "safe account" scam
        ("1", "a guy on telegram told me to move my funds"),
    ],
)
def test_a_scam_victim_who_gave_a_code_or_moved_funds_reaches_the_emergency_lane(
    phone: Phone, db: Engine, language_key: str, words: str
) -> None:
    """Contacted by a thief posing as us, and already fell for it: the caller is put through
    to the security team at emergency priority, not asked to key the thief's number first."""
    record = call(phone, Press(language_key), Speak(words), Press("*"))
    assert record.queue == "security"
    assert "enter the phone number" not in record.transcript
    assert "请输入给您打电话或发短信的号码" not in record.transcript
    [case] = cases_of(db)
    assert case["priority"] == "emergency"


@pytest.mark.parametrize(
    ("keys", "words"),
    [
        # deposits and withdrawals: "withdrew" is no withdrawal question here
        (("1", "3"), "my account was hacked and someone withdrew everything"),
        (("1", "3", "2"), "someone withdrew everything and it was not me"),  # after the advice
        (("1", "2"), "someone logged into my account and changed my email"),
        (("1", "5"), "my account was stolen"),
        (("2", "4"), "有人盗了我的账户在乱下单"),
        (("2", "7"), "我的账户被盗了"),
        (("2", "8", "1"), "我的币被人转走了"),
    ],
)
def test_a_victim_who_took_another_turn_is_still_heard_in_the_submenus(
    phone: Phone, keys: tuple[str, ...], words: str
) -> None:
    """A victim who pressed a topic first (withdrawals, account access, trading ...) and then
    says what happened is put through to the security team, not told "not a valid choice"."""
    record = call(phone, *(Press(k) for k in keys), Speak(words), Press("*"))
    assert record.queue == "security"
    assert "not a valid choice" not in record.transcript
    assert "您的选择无效" not in record.transcript


def test_every_menu_after_the_main_menu_hears_a_victims_strong_words_first(
    hotline_tree: CompiledTree,
) -> None:
    """Each menu's first option, spoken only, is the emergency lane with the main menu's
    strong words: no topic or advice menu leaves a victim's words unheard."""
    from ivr.tree import match_speech

    for name, menu in hotline_tree.menus.items():
        for language, words in (("en", "my account was hacked"), ("zh-CN", "我的账户被盗了")):
            option = match_speech(menu, language, words)
            assert option is not None and option.target == "emergency", (name, language)


@pytest.mark.parametrize(
    ("keys", "asked"),
    [
        (("1", "2", "1"), "If someone else changed your password, press 3 now"),
        (("1", "2", "2"), "someone else changed your two-factor settings"),
        (("1", "3", "2"), "If you did not make this withdrawal yourself, press 3 now"),
        (("2", "3", "2"), "如果这笔提现不是您本人操作的,请立即按3"),
    ],
)
def test_the_password_2fa_and_withdrawal_advice_offer_the_security_team_if_it_was_not_them(
    phone: Phone, keys: tuple[str, ...], asked: str
) -> None:
    """After the self-help advice, a caller who realises someone else did it presses 3 and
    is put through to the security team."""
    record = call(phone, *(Press(k) for k in keys), Press("3"), Press("*"))
    assert any(asked in line for line in record.heard)
    assert record.queue == "security"


def test_a_caller_who_keys_no_number_but_gave_a_code_reaches_the_security_team(
    phone: Phone, db: Engine
) -> None:
    """The thief wrote on a messaging app, or hid their number: nothing to key. The caller is
    still asked whether they gave a code or moved funds, and 1 is the emergency lane, not the
    account line."""
    record = call(phone, *CHECK, Press("*"), Press("1"), Press("*"))
    assert record.queue == "security"
    [case] = cases_of(db)
    assert case["priority"] == "emergency"


def test_one_who_said_someone_called_them_and_keys_no_number_is_asked_about_a_code(
    phone: Phone,
) -> None:
    record = call(
        phone,
        Press("1"),
        Speak("someone called me saying they were from your support"),
        Press("*"),
        Speak("yes I gave them a code"),
        Press("*"),
    )
    assert record.queue == "security"


# -- a trader who lost a position is a trader, not a hijack victim ---------------------------


@pytest.mark.parametrize(
    ("language_key", "words"),
    [
        ("1", "this is fraud. you liquidated me at a price that never happened"),
        ("2", "我合约爆仓了 钱全没了"),
        ("2", "爆仓了 我的币没了"),
    ],
)
def test_an_angry_liquidated_trader_reaches_derivatives_not_the_emergency_lane(
    phone: Phone, language_key: str, words: str
) -> None:
    """Liquidated, angry, saying "fraud" or 钱没了: the caller reaches the derivatives team
    with the liquidation advice, and is never sent into the freeze."""
    record = call(phone, Press(language_key), Speak(words), Press("1"), Press("1"))
    assert record.queue == "derivatives"
    assert "emergency service" not in record.transcript
    assert "紧急服务" not in record.transcript


def test_the_liquidation_advice_acknowledges_the_loss_and_says_where_the_record_is(
    phone: Phone,
) -> None:
    record = call(phone, Press("1"), Press("5"), Press("1"))
    [advice] = [line for line in record.heard if "liquidation record" in line]
    assert advice.startswith("We understand that losing a position is distressing.")
    assert "mark price" in advice and "an agent can review the record" in advice
    assert "stop loss" not in advice  # no lecture
    record = call(phone, Press("2"), Press("5"), Press("1"))
    [advice] = [line for line in record.heard if "强平记录" in line]
    assert advice.startswith("仓位被强平,我们理解您现在的心情。")
    assert "标记价格" in advice and "客服可以和您一起核查" in advice


# -- advice a victim needs ---------------------------------------------------------------------


def test_the_withdrawal_advice_asks_for_the_txid_and_warns_of_fees_to_release_it(
    phone: Phone,
) -> None:
    record = call(phone, Press("1"), Press("3"), Press("2"))
    [advice] = [line for line in record.heard if line.startswith("Check the withdrawal status")]
    assert "T X I D or the withdrawal order ID" in advice
    assert "We never charge a fee or a deposit to release a withdrawal" in advice
    record = call(phone, Press("2"), Press("3"), Press("2"))
    [advice] = [line for line in record.heard if line.startswith("请在App的资产记录中查看提现状态")]
    assert "TXID或提现订单号" in advice and "都是骗子" in advice


def test_the_web3_advice_tells_one_who_gave_away_a_seed_phrase_to_move_to_a_new_wallet(
    phone: Phone,
) -> None:
    record = call(phone, Press("1"), Press("8"), Press("2"))
    assert "create a new wallet now, and move your remaining funds to it" in record.transcript
    record = call(phone, Press("2"), Press("8"), Press("2"))
    assert "请立即创建一个新钱包,把剩余资产转到新钱包" in record.transcript


@pytest.mark.parametrize(
    ("keyed", "verdict"),
    [
        ("12025550143", "is one of our official numbers"),
        (SCAMMER, "is not one of our numbers"),
        ("95555", "That is not one of our short codes"),
    ],
)
def test_a_number_checked_is_first_said_to_be_no_excuse_for_asking_codes_or_funds(
    phone: Phone, keyed: str, verdict: str
) -> None:
    """Whatever the number, the caller first hears that whoever asked for codes or for funds
    to be moved was not us, before whether the number is ours (a number can be faked)."""
    record = call(phone, *CHECK, Press(keyed), Press("0"))
    [result] = [line for line in record.heard if verdict in line]
    assert result.startswith("If they asked you for a code, a password or a key")
    assert result.index("it was not us") < result.index(verdict)


def test_a_mandarin_number_check_leads_with_it_was_not_us(phone: Phone) -> None:
    record = call(phone, Press("2"), Press("2"), Press("4"), Press("12025550143"), Press("0"))
    [result] = [line for line in record.heard if "是我们的官方号码" in line]
    assert result.startswith("只要对方向您索要验证码")
    assert result.index("都不是我们") < result.index("是我们的官方号码")


@pytest.mark.parametrize(
    ("language_key", "never_charged", "put_through", "untrue"),
    [
        (
            "1",
            "We never ask for your password or two-factor code, or charge to unfreeze.",
            "We are putting you through to our security team. Please stay on the line.",
            "Connecting you to our security team now.",
        ),
        (
            "2",
            "我们绝不索要密码或两步验证码,解冻也绝不收费。",
            "我们正在为您转接安全团队,请不要挂机。",
            "正在为您转接安全团队,请稍候。",
        ),
    ],
)
def test_the_emergency_lane_says_we_never_ask_for_codes_nor_charge_to_unfreeze(
    phone: Phone,
    language_key: str,
    never_charged: str,
    put_through: str,
    untrue: str,
) -> None:
    """A victim about to key their details hears that we never ask for their password or
    code and never charge to unfreeze (once: the notice; the UID prompt's introduction does
    not say it again); then that they are being put through and should stay on the line
    (a ticket, their place in line and a wait follow), not that they are connected now."""
    record = call(phone, Press(language_key), Press("1"), Press("*"))
    assert record.queue == "security"
    assert never_charged in record.transcript
    assert put_through in record.heard and untrue not in record.heard


@pytest.fixture
def totp_phone(
    settings: Settings,
    hotline_tree: CompiledTree,
    db: Engine,
    clock: FakeClock,
    check_twiml: Callable[[str], None],
) -> Iterator[Phone]:
    """A phone to the shipped tree verifying by the authenticator's code, as an operator may
    set it (`routes check` warns of it)."""
    source = hotline_tree.source.replace("steps: [uid, pin_or_id_last4]", "steps: [uid, totp]")
    assert source != hotline_tree.source
    tree = compile_source(source, "totp.yaml", hotline_tree.catalogs)
    with TestClient(
        create_app(settings, tree=tree, db=db, clock=clock), base_url=HTTPS_CLIENT
    ) as c:
        yield Phone(
            c, public_url=PUBLIC_URL, auth_token=TOKEN, check_twiml=check_twiml, clock=clock
        )


@pytest.mark.parametrize(
    ("language_key", "why"),
    [
        (
            "1",
            "We ask for this code only on a call you made yourself to the number in our app, and "
            "none of our staff will ever ask you to read it out: anyone who does is a scammer.",
        ),
        (
            "2",
            "只有您自己拨打App上公布的客服电话时,才需要在这里按键输入这个验证码;"
            "我们的工作人员绝不会让您把它念出来,谁让您念,谁就是骗子。",
        ),
    ],
    ids=["en", "zh-CN"],
)
def test_a_line_asking_for_the_authenticators_code_says_why_that_is_no_scam(
    totp_phone: Phone, language_key: str, why: str
) -> None:
    """Just after "we will never ask for your two-factor code", the code is asked for: the
    caller hears why this call differs, and that nobody will ever ask them to read it out."""
    record = call(totp_phone, Press(language_key), Press("1"), Press("10000001"), Press("*"))
    assert record.queue == "security"
    [asked] = [line for line in record.heard if why in line]
    assert asked.startswith(why)


@pytest.mark.parametrize(
    ("language_key", "words"),
    [
        ("1", "my wallet was drained"),
        ("1", "all my money is gone"),
        ("1", "this is fraud"),
        ("2", "账户里的钱没了"),
        ("2", "账户里的币全没了"),
        ("2", "我被骗了"),
    ],
)
@pytest.mark.parametrize("answer", [Press("1"), Silent()], ids=["1", "silence"])
def test_a_caller_who_only_says_their_money_is_gone_is_asked_once_then_the_emergency_lane(
    phone: Phone, language_key: str, words: str, answer: Answer
) -> None:
    """No trade, no liquidation, no word of how the money went: asked once whether someone
    else took it, and 1, or saying nothing, is the emergency lane."""
    record = call(phone, Press(language_key), Speak(words), answer, Press("*"))
    assert record.queue == "security"
    asked = next(
        i
        for i, line in enumerate(record.heard)
        if line.startswith(("We are sorry your funds are missing.", "很抱歉您的资产不见了。"))
    )
    assert record.heard[asked + 1].startswith(
        ("Emergency service for hacked accounts", "这里是账户被盗紧急服务")
    )


@pytest.mark.parametrize(
    ("language_key", "words", "answer"),
    [
        ("1", "all my money is gone", Press("2")),
        ("1", "my money is gone", Speak("I lost it trading futures")),
        ("2", "我的钱全没了", Speak("是爆仓亏的")),
    ],
)
def test_a_caller_whose_money_went_in_a_trade_says_so_and_reaches_derivatives(
    phone: Phone, language_key: str, words: str, answer: Answer
) -> None:
    """Asked whether someone else took it, a trader who lost it in a liquidation presses 2
    (or says so) and reaches the derivatives team, never the freeze."""
    record = call(phone, Press(language_key), Speak(words), answer, Press("1"), Press("1"))
    assert record.queue == "derivatives"
    assert "Emergency service for hacked" not in record.transcript
    assert "紧急冻结" not in record.transcript


@pytest.mark.parametrize(
    ("caller", "words", "language"),
    [
        ("+15005550006", "my account was hacked", "en"),
        ("+15005550006", "someone logged into my account and took my bitcoin", "en"),
        ("+8613912345678", "我的账户被盗了", "zh-CN"),
        ("+8613912345678", "中文 有人登录了我的账户", "zh-CN"),
    ],
)
def test_a_victim_who_says_what_happened_at_the_first_prompt_reaches_the_emergency_lane(
    phone: Phone, caller: str, words: str, language: str
) -> None:
    """A frightened victim's first words are what happened, not "English": said at the
    language menu, they lead straight to the emergency lane, in the language they said it
    in (a caller from China is heard by the Mandarin recogniser there)."""
    record = phone.call(ScriptedParty([Speak(words), Press("*")]), from_number=caller)
    assert record.queue == "security"
    notice = ("Emergency service for hacked accounts", "这里是账户被盗紧急服务")
    assert any(line.startswith(notice[language != "en"]) for line in record.heard)


def test_chinese_said_at_an_english_first_prompt_is_not_heard_until_mandarin_is_chosen(
    phone: Phone,
) -> None:
    """From a number the tree gives no Mandarin (here +1), the first prompt listens in English,
    and Twilio's English recogniser makes nothing of Chinese: the caller hears the language
    menu again, and is heard once they press 2."""
    record = phone.call(
        ScriptedParty([Speak("我的账户被盗了"), Press("2"), Speak("我的账户被盗了"), Press("*")]),
        from_number="+15005550006",
    )
    assert record.queue == "security"
    assert record.heard.count("For English, press 1.") == 2  # not heard the first time
    assert any(line.startswith("这里是账户被盗紧急服务") for line in record.heard)


def test_a_mandarin_speaker_from_a_number_we_cannot_place_is_heard_on_the_second_try(
    phone: Phone,
) -> None:
    """From Hong Kong the tree guesses no language: the first prompt listens in English and
    makes nothing of 我的账户被盗了; the second listens in Mandarin, and the victim is on the
    emergency path in it without a key."""
    record = phone.call(
        ScriptedParty([Speak("我的账户被盗了"), Speak("我的账户被盗了"), Press("*")]),
        from_number="+85291234567",
    )
    assert record.queue == "security"
    assert record.heard.count("For English, press 1.") == 2
    assert any(line.startswith("这里是账户被盗紧急服务") for line in record.heard)


def test_an_english_speaker_silent_at_the_first_prompt_still_gets_english(phone: Phone) -> None:
    """The second try listens in Mandarin; an English speaker who says nothing again, or
    says it in English, still ends in English, the language their number suggests."""
    record = phone.call(
        ScriptedParty([Silent(), Speak("my account was stolen"), Press("1"), Press("*")]),
        from_number="+15005550006",
    )
    assert record.queue == "security"
    assert record.heard.count("For English, press 1.") == 2
    assert any(line.startswith("Emergency service for hacked accounts") for line in record.heard)
    listened = [re.findall(r'<Gather [^>]*language="([^"]+)"', d) for d in record.documents[:2]]
    assert listened == [["en-US"], ["cmn-Hans-CN"]]


def test_a_caller_from_china_silent_at_first_is_still_heard_in_mandarin(phone: Phone) -> None:
    """Their number names Mandarin: every try listens in it, the second too."""
    record = phone.call(
        ScriptedParty([Silent(), Speak("我的账户被盗了"), Press("*")]),
        from_number="+8613912345678",
    )
    assert record.queue == "security"
    listened = [re.findall(r'<Gather [^>]*language="([^"]+)"', d) for d in record.documents[:2]]
    assert listened == [["cmn-Hans-CN"], ["cmn-Hans-CN"]]


@pytest.mark.parametrize(
    ("language_key", "words"),
    [("1", "nine"), ("1", "press 9"), ("2", "九"), ("2", "按九")],
)
def test_a_nine_said_at_a_follow_up_menu_does_not_end_the_call(
    phone: Phone, language_key: str, words: str
) -> None:
    """9 pressed ends the call; said, it may be a "nine" heard in "don't hang up" or a
    number read out, and ends nothing: not a valid choice, then on."""
    record = call(phone, Press(language_key), Press("3"), Press("2"), Speak(words), Press("1"))
    assert record.queue == "payments"
    assert any("not a valid choice" in line or "没能识别" in line for line in record.heard)


def test_zero_at_the_first_prompt_reaches_a_person(phone: Phone) -> None:
    """As in every menu, in the caller's likely language: no main menu on the way."""
    record = phone.call(ScriptedParty([Press("0")]), from_number="+8613912345678")
    assert record.queue == "general"
    assert not any(line.startswith("如果您的账户被盗") for line in record.heard)


EMERGENCY_NOTICE = ("Emergency service for hacked accounts", "这里是账户被盗紧急服务")
# The DeFi follow-up's first words: the security team offered before any advice.
DEFI_FIRST = (
    "If funds left your wallet without you, or you approved or signed something you now doubt",
    "如果钱包里的资产不是您本人转出的,或者您授权、签名了现在觉得可疑的内容",
)


@pytest.mark.parametrize(
    "answers",
    [
        [Press("1"), Speak("someone took my order")],
        [Press("1"), Speak("support told me to transfer my funds to the futures account")],
        [Press("1"), Speak("my identity verification did not meet the requirements")],
        [Press("1"), Press("6"), Speak("my API key returns unauthorized")],
        [Press("2"), Press("6"), Speak("API未授权")],
        [Press("2"), Press("3"), Speak("我充值给了别人的地址")],
    ],
    ids=["order", "futures-transfer", "kyc", "api-en", "api-zh", "wrong-address"],
)
def test_ordinary_callers_are_not_taken_for_hijack_victims(
    phone: Phone, answers: list[Answer]
) -> None:
    """Words a victim says, cut too short, are an ordinary caller's too: these reach their
    topic, not the emergency notice and a freeze."""
    record = phone.call(ScriptedParty([*answers, Silent()]))
    assert not any(line.startswith(EMERGENCY_NOTICE) for line in record.heard), record.heard


@pytest.mark.parametrize(
    ("language_key", "answer"),
    [
        ("1", "someone else made trades on my account"),
        ("1", "I never traded, it is just gone"),
        ("2", "有不是我做的交易"),
        ("2", "没有交易,钱就没了"),
    ],
)
def test_a_victim_whose_money_is_gone_who_mentions_trades_is_still_a_victim(
    phone: Phone, language_key: str, answer: str
) -> None:
    """Asked whether someone else took it or it went in trading, a victim's answer names
    trades too: someone else's, or none."""
    record = call(
        phone,
        Press(language_key),
        Speak("my money is gone" if language_key == "1" else "我的钱全没了"),
        Speak(answer),
        Press("*"),
    )
    assert record.queue == "security"


def test_a_caller_from_china_who_does_not_understand_english_gets_mandarin(phone: Phone) -> None:
    record = phone.call(
        ScriptedParty([Speak("我听不懂英文"), Silent()]), from_number="+8613912345678"
    )
    assert any(line.startswith("如果您的账户被盗") for line in record.heard)


@pytest.mark.parametrize(
    ("language_key", "words", "advice"),
    [
        ("1", "my position was liquidated", "We understand that losing a position"),
        ("2", "我的合约爆仓了", "仓位被强平,我们理解"),
        ("1", "my withdrawal is stuck", "Check the withdrawal status in the app"),
        ("2", "我的提现一直没到账", "请在App的资产记录中查看提现状态"),
        ("1", "my deposit has not arrived", "A deposit is credited once it has enough"),
        ("2", "充值没到账", "充值需要达到足够的区块确认数"),
    ],
)
def test_a_caller_who_names_what_went_wrong_hears_its_advice_at_once(
    phone: Phone, language_key: str, words: str, advice: str
) -> None:
    """Said at the main menu, a liquidation, a stuck withdrawal or a deposit not credited
    leads to its advice, not to the topic's menu to choose it again by key."""
    record = call(phone, Press(language_key), Speak(words))
    after = record.heard[next(i for i, a in enumerate(record.answers) if isinstance(a, Speak)) :]
    topic_menus = (
        "Futures and derivatives.",
        "Deposits and withdrawals.",
        "合约交易服务",
        "充值和提现服务",
    )
    assert not any(line.startswith(topic_menus) for line in after)
    assert any(line.startswith(advice) for line in record.heard), record.heard


# -- the seed article's other common problems, named at the main menu --------------------------

TOPIC_MENUS = (
    "Account access.",
    "Deposits and withdrawals.",
    "Identity verification.",
    "API support.",
    "Products and promotions.",
    "账户登录与安全服务",
    "充值和提现服务",
    "实名认证服务",
    "API技术支持",
    "产品与活动服务",
)


@pytest.mark.parametrize(
    ("language_key", "words", "advice"),
    [
        ("1", "I lost my authenticator app", "If you lost your authenticator app or your phone"),
        ("1", "I need to reset my 2FA", "If you lost your authenticator app or your phone"),
        ("2", "我的谷歌验证器丢了", "如果验证器App或手机丢失"),
        ("2", "我要重置两步验证", "如果验证器App或手机丢失"),
        ("1", "I forgot my password", "To reset your password, open our official app"),
        ("2", "我忘记密码了", "重置密码,请打开官方App或官网"),
        # A login alert: its menu first (1 freezes the account), the advice its star.
        ("1", "I got a suspicious login alert", "If this sign-in was not you, press 1 now"),
        ("2", "我收到了异常登录提醒", "如果这次登录不是您本人操作,请立即按1"),
        ("1", "my KYC was rejected", "Verification usually fails when a photo is blurred"),
        ("1", "my identity verification failed", "Verification usually fails when a photo"),
        ("2", "我的实名认证没通过", "认证未通过,通常是因为照片模糊"),
        ("2", "KYC被拒了", "认证未通过,通常是因为照片模糊"),
        ("1", "I get an invalid signature error", "Most signature errors come from a wrong"),
        ("2", "API签名验证失败", "签名验证失败,大多是时间戳不准确"),
        ("1", "I keep getting too many requests", "A rate limit error means you sent too many"),
        ("2", "API请求过多", "出现限频错误"),
        ("1", "how do I set my API key permissions", "If a request is refused for permissions"),
        ("2", "API权限不够", "如果请求因权限不足被拒绝"),
        ("1", "I sent my USDT on the wrong network", "If you sent funds to a wrong address"),
        ("1", "I withdrew to the wrong address", "If you sent funds to a wrong address"),
        ("2", "我转错地址了", "如果您转错了地址或选错了网络"),
        ("2", "我选错网络了", "如果您转错了地址或选错了网络"),
        ("1", "I forgot the memo on my XRP deposit", "A deposit is credited once it has enough"),
        ("2", "充值的时候忘了填标签", "充值需要达到足够的区块确认数"),
        ("1", "my airdrop was not credited", "Rewards are usually paid after an event ends"),
        ("1", "I didn't get my referral bonus", "Rewards are usually paid after an event ends"),
        ("2", "我的活动奖励没到账", "活动奖励通常在活动结束"),
        ("2", "空投没收到", "活动奖励通常在活动结束"),
        ("1", "I want to unstake my ETH", "Each Earn product has its own rate"),
        ("1", "my staking rewards have not arrived", "Each Earn product has its own rate"),
        ("2", "我想赎回理财", "每款理财产品的收益率"),
        ("2", "质押奖励没到账", "每款理财产品的收益率"),
    ],
)
def test_a_caller_who_names_a_common_problem_hears_its_advice_at_once(
    phone: Phone, language_key: str, words: str, advice: str
) -> None:
    """The seed article's common scenarios with advice of their own (a lost authenticator,
    a forgotten password, a login alert, a failed KYC, an API error, a wrong address or
    network, a memo left out, a reward or Earn redemption): said at the main menu, their
    advice at once, not the topic's menu to choose it again by key. Earn and rewards come
    before deposits: an airdrop not credited, 奖励没到账, is no deposit."""
    record = call(phone, Press(language_key), Speak(words))
    assert not any(line.startswith(TOPIC_MENUS) for line in record.heard), record.heard
    assert any(line.startswith(advice) for line in record.heard), record.heard


@pytest.mark.parametrize(
    ("language_key", "words"),
    [
        ("1", "someone hacked my account and changed my 2FA"),
        ("1", "someone reset my two factor"),
        ("1", "my password was changed and now I can't log in"),
        ("1", "I forgot my password and someone logged into my account"),
        ("1", "someone stole my phone and reset my 2FA"),
        ("1", "they reset my password and took my bitcoin"),  # "they", as victims say it
        ("2", "有人重置了我的两步验证"),  # 有人重置, as "someone reset": not 重置两步验证's advice
        ("2", "有人重置密码"),
        ("2", "我的账户被盗了,谷歌验证器也被改了"),
        ("2", "我把验证码给了别人 现在忘记密码了"),
    ],
)
def test_a_victim_who_names_their_2fa_or_password_still_reaches_the_emergency_lane(
    phone: Phone, language_key: str, words: str
) -> None:
    """The account's advice words follow the hijack words: a victim who names the 2FA or the
    password the thief changed is put through to the security team, not told how to reset."""
    record = call(phone, Press(language_key), Speak(words), Press("*"))
    assert record.queue == "security"
    assert not any(
        "reset your password" in line or "two-factor reset" in line for line in record.heard
    )
    assert not any("重置密码,请打开" in line or "申请重置两步验证" in line for line in record.heard)


@pytest.mark.parametrize(
    ("language_key", "words", "menu"),
    [
        # A login that fails may be a thief's doing: the account menu, which asks.
        ("1", "I can't log in", "Account access."),
        ("2", "我登录不了我的账户", "账户登录与安全服务"),
        ("2", "登录异常", "账户登录与安全服务"),  # what the app says when a login fails
        ("1", "my 2FA was changed", "Account access."),  # changed, not lost: asked
        # Two-step verification fails too: no KYC advice.
        ("1", "my two step verification failed", "Account access."),
        ("2", "谷歌认证失败", "账户登录与安全服务"),
        ("1", "I have a question about identity verification", "Identity verification."),
        ("1", "I have a problem with my API key", "API support."),
        ("2", "我转错账户了", "充值和提现服务"),  # between their own accounts: no blockchain
        ("1", "I have a question about staking", "Products and promotions."),
    ],
)
def test_a_caller_who_names_only_a_topic_still_chooses_in_its_menu(
    phone: Phone, language_key: str, words: str, menu: str
) -> None:
    """Words near the advice's that name no one problem: the topic's menu, as before, and
    no advice of another topic."""
    record = call(phone, Press(language_key), Speak(words))
    assert any(line.startswith(menu) for line in record.heard), record.heard
    assert not any(line.startswith(EMERGENCY_NOTICE) for line in record.heard)


@pytest.mark.parametrize(
    ("language_key", "words"),
    [("1", "my money is gone and I lost my phone"), ("2", "我的钱全没了 手机也丢了")],
)
def test_a_caller_whose_money_is_gone_with_a_lost_phone_is_asked_if_it_was_stolen(
    phone: Phone, language_key: str, words: str
) -> None:
    """A lost phone may be in a thief's hands: no 2FA advice for it, the weak words' question."""
    record = call(phone, Press(language_key), Speak(words), Silent(), Press("*"))
    asked = ("We are sorry your funds are missing", "很抱歉您的资产不见了")
    assert any(line.startswith(asked) for line in record.heard), record.heard
    assert record.queue == "security"


# -- a Mandarin reviewer's calls: victims in their words, everyday questions in theirs ------

MAIN_MENU_AGAIN = ("Press 1 for a hacked or stolen account", "账户被盗请按1,账户登录请按2")


@pytest.mark.parametrize(
    "words",
    [
        # 被 not right before the verb: 被别人, 被人 ... 出去, 划走; 账号 as well as 账户.
        "我的钱被别人转走了",
        "我的币被别人提走了",
        "我的USDT被人转出去了",
        "我的资产被别人划走了",
        "钱被人转了",
        "我的账号被人黑了",
        "我的账号被hack了",
        "有人动了我的账户",
        "有人在用我的账户交易",
        "我的账户被别人控制了",
        "我的账号被人登了",
        "有陌生人登录我的账户",
        # Fell for a scam: a fake support agent, remote control, a SIM or an email taken.
        "我被人骗了转了币",
        "我按照客服的要求转了币",
        "对方让我装了向日葵",
        "客服让我下载了ToDesk",
        "他让我开了屏幕共享",
        "我的手机卡被人补办了",
        "我的邮箱被别人绑定了",
        "我的密码泄露了",
        "我把验证码发给别人了",
        "我的助记词泄露了",
        "有人用我的API下单",
        # Asking for the freeze itself.
        "我想冻结我的账户",
        "请帮我把账户冻结",
        "我要冻结账号",
        "赶紧冻结我的账号",
        # Cantonese-flavoured, as a Mandarin recogniser may still write it (帐 for 账).
        "我的帐号被人盗咗",
        "我的帐户被人用了",
        "有人偷咗我的币",
        "我嘅account俾人hack咗",
    ],
)
def test_a_mandarin_victim_in_their_own_words_reaches_the_emergency_lane(
    phone: Phone, words: str
) -> None:
    """Said at the main menu the way a Mandarin-speaking victim says it: the emergency lane,
    not 选择无效 or a topic's menu."""
    record = call(phone, Press("2"), Speak(words), Press("*"))
    assert record.queue == "security", record.heard
    assert any(line.startswith(EMERGENCY_NOTICE) for line in record.heard)
    assert not any("选择无效" in line for line in record.heard)


@pytest.mark.parametrize(
    ("language_key", "words", "heard"),
    [
        # Asked how to keep an account safe, or about a freeze by risk control: not a
        # victim's words, and nothing that names one topic: the main menu again, with 1 first.
        ("2", "怎么防止黑客攻击我的账户", MAIN_MENU_AGAIN[1]),
        ("2", "怎样防止账户被入侵", MAIN_MENU_AGAIN[1]),
        ("2", "你们可以远程协助我操作吗", MAIN_MENU_AGAIN[1]),
        ("2", "为什么要冻结账户", MAIN_MENU_AGAIN[1]),
        # A freeze to lift (解冻, 解除冻结): the account team, never the emergency lane.
        ("2", "冻结账户之后怎么解冻", "正在为您转接账户服务专员"),
        ("2", "怎么申请解除冻结账户", "正在为您转接账户服务专员"),
        ("2", "手机号不是我本人的能注册吗", MAIN_MENU_AGAIN[1]),
        ("2", "APP让我转移资产到资金账户", MAIN_MENU_AGAIN[1]),
        ("2", "我想设置安全账户", MAIN_MENU_AGAIN[1]),
        # A hacker who did nothing yet: the account's safety advice (main menu, said).
        ("1", "how do I protect my account from hackers", "To keep your account safe"),
        # Near the words added for victims (我要冻结账, 有人在用我的账, 有人用我的API, 密码泄露了).
        ("2", "我要冻结多久才能解冻", "正在为您转接账户服务专员"),
        ("2", "我在用我的账户买币的时候提示错误", MAIN_MENU_AGAIN[1]),
        # A topic named: its menu.
        ("2", "我的API请求一直返回未经授权", "API技术支持。"),
        ("2", "不是我本人实名认证的账户能用吗", "实名认证服务。"),
        ("2", "怎么用我的API下单", "API技术支持。"),
        ("2", "怎么防止密码泄露", "账户登录与安全服务。"),
        ("2", "客服让我把资金转到合约账户", "合约交易服务。"),
    ],
)
def test_a_question_near_a_victims_words_is_no_emergency_and_goes_where_it_belongs(
    phone: Phone, language_key: str, words: str, heard: str
) -> None:
    """黑客, 入侵, 冻结账户, 不是我本人, 安全账户 and "hackers" are a victim's words only in a
    victim's sentence: a verified caller in the emergency lane is frozen, and no phone call
    unfreezes them."""
    record = call(phone, Press(language_key), Speak(words))
    assert record.queue != "security"
    assert not any(line.startswith(EMERGENCY_NOTICE) for line in record.heard), record.heard
    spoken = next(i for i, a in enumerate(record.answers) if isinstance(a, Speak))
    assert any(line.startswith(heard) for line in record.heard[spoken:]), record.heard


@pytest.mark.parametrize(
    "words",
    [
        "我的USDT没了",
        "账户里的U不见了",
        "我的资金没了",
        "我的账户余额变成零了",
        "账户被清空了",
        "我的以太坊没了",
        "我的资产少了很多",
        "我被人骗了",
    ],
)
def test_a_mandarin_caller_whose_funds_are_gone_is_asked_once_then_the_emergency_lane(
    phone: Phone, words: str
) -> None:
    """The coin or the money by name, a balance emptied, 被人骗: the weak words' question."""
    record = call(phone, Press("2"), Speak(words), Press("1"), Press("*"))
    assert any(line.startswith("很抱歉您的资产不见了。") for line in record.heard), record.heard
    assert record.queue == "security"


# -- a "no" is no admission, and a loss of one's own is a trade's ------------------------------


@pytest.mark.parametrize(
    ("language_key", "keyed", "words"),
    [
        ("2", "12025550143", "我没有告诉他密码"),  # ours
        ("2", SCAMMER, "我没有给他验证码"),  # not ours
        ("2", "*", "我没有告诉他密码"),  # no number keyed
        ("2", SCAMMER, "我没有把验证码告诉他"),  # 把 before it: no 验证码告诉他 admission
        ("2", SCAMMER, "没转,我什么都没给他"),
        ("2", "12025550143", "我没把密码告诉对方"),
        ("1", SCAMMER, "I didn't give them the code"),
        ("1", "12025550143", "I did not tell him my password"),
        ("1", "*", "I didn't send them anything"),
        ("1", SCAMMER, "I never gave them anything"),
    ],
)
def test_one_who_says_they_gave_nothing_after_a_number_check_is_no_emergency(
    phone: Phone, language_key: str, keyed: str, words: str
) -> None:
    """Asked whether they gave the caller a code or moved funds, a "no" that names the code
    or the password is a no: an account agent, as silence there is, not the freeze."""
    record = call(phone, Press(language_key), Press("2"), Press("4"), Press(keyed), Speak(words))
    assert record.queue == "account", record.heard
    assert not any(line.startswith(EMERGENCY_NOTICE) for line in record.heard)


@pytest.mark.parametrize(
    "words",
    [
        "没有,是他打电话给了我一个链接",
        "没有,他挂了电话就不见了",
        "没有,没有人登录我的账户",
        "没人登录我的账户,我就是想确认一下",
        "没有,他让我登录我的账户看看,我没登录",
    ],
)
def test_a_plain_no_that_says_given_or_gone_is_not_taken_for_a_theft(
    phone: Phone, words: str
) -> None:
    """给了 and 不见了 in a "no" about something else: asked again, not frozen."""
    record = call(phone, Press("2"), Press("2"), Press("4"), Press(SCAMMER), Speak(words))
    assert record.queue != "security"
    assert not any(line.startswith(EMERGENCY_NOTICE) for line in record.heard)


@pytest.mark.parametrize(
    ("language_key", "keyed", "words"),
    [
        ("2", SCAMMER, "我没告诉他验证码,可是账户还是被盗了"),
        ("2", SCAMMER, "我告诉了他密码,但是没有转账"),
        ("2", "12025550143", "我把验证码告诉他了"),
        ("2", "*", "我没有转账,但是币被人转走了"),
        ("2", SCAMMER, "我按他说的转移了资产"),
        ("2", SCAMMER, "他没给我打电话,是发短信,我把验证码发给他了"),
        ("1", SCAMMER, "I didn't give them my password but my account was hacked"),
        ("1", "12025550143", "I didn't give them anything but someone logged into my account"),
        ("1", "*", "yes I gave them a code"),
        ("2", SCAMMER, "我没转账,账户被盗"),
        ("2", SCAMMER, "我没有给他验证码,但是账户被黑"),
        ("2", SCAMMER, "我没发验证码,但是有人登录我的账户"),
        ("2", SCAMMER, "我没有转账,我的资产被划走"),
        ("2", SCAMMER, "没有告诉他,但是我已经转了五千U"),
        ("2", SCAMMER, "我没给他密码,但我按他说的转了一笔USDT"),
        ("2", SCAMMER, "我没告诉他密码,不过我按他说的把币转了过去"),
        ("2", SCAMMER, "我没告诉他密码,但是验证码已经给了"),
        ("2", SCAMMER, "没有,我没给他验证码,但是我的USDT不见了"),
        ("2", SCAMMER, "我没给他验证码,但我的币全部不见了"),
    ],
)
def test_one_who_gave_something_after_a_number_check_still_reaches_the_emergency_lane(
    phone: Phone, language_key: str, keyed: str, words: str
) -> None:
    """A "no" to one thing and a theft or a "yes" to another is a victim's answer."""
    record = call(
        phone, Press(language_key), Press("2"), Press("4"), Press(keyed), Speak(words), Press("*")
    )
    assert record.queue == "security", record.heard


@pytest.mark.parametrize(
    ("language_key", "answer", "queue"),
    [
        ("2", Speak("不是被盗 是我自己亏掉的"), "derivatives"),
        ("2", Speak("不是别人 是我自己操作失误"), "derivatives"),
        ("1", Speak("it wasn't stolen, it was my own mistake"), "derivatives"),
        # Spot losses: the trading team, by key or by word.
        ("2", Speak("现货亏了"), "trading"),
        ("2", Speak("是我炒币亏了"), "trading"),
        ("2", Press("3"), "trading"),
        ("1", Speak("I lost it in spot trading"), "trading"),
        ("1", Press("3"), "trading"),
        ("2", Speak("合约爆仓了"), "derivatives"),
    ],
)
def test_a_caller_whose_money_went_in_their_own_trade_reaches_that_trades_team(
    phone: Phone, language_key: str, answer: Answer, queue: str
) -> None:
    """Asked whether someone else took it: "not stolen, my own loss" is a trader's answer,
    and a spot loss is the trading team's, not the futures menu's."""
    words = "my money is gone" if language_key == "1" else "我的钱全没了"
    record = call(phone, Press(language_key), Speak(words), answer, Press("0"))
    assert record.queue == queue, record.heard
    assert not any(line.startswith(EMERGENCY_NOTICE) for line in record.heard)


@pytest.mark.parametrize(
    ("language_key", "answer"),
    [
        ("2", "我也不知道是不是被盗了"),
        ("2", "不是我自己操作的"),
        ("2", "不是我自己亏的,是被别人转走了"),
        ("1", "it was not my own mistake, someone took it"),
    ],
)
def test_a_victim_asked_if_it_was_a_trade_loss_is_not_taken_for_a_trader(
    phone: Phone, language_key: str, answer: str
) -> None:
    words = "my money is gone" if language_key == "1" else "我的钱全没了"
    record = call(phone, Press(language_key), Speak(words), Speak(answer), Press("*"))
    assert record.queue == "security", record.heard


@pytest.mark.parametrize(
    ("language_key", "offered"),
    [
        ("1", "If you lost them in spot trading, press 3."),
        ("2", "如果是现货交易亏损,请按3"),
    ],
)
def test_the_funds_missing_question_offers_spot_losses_their_own_key(
    phone: Phone, language_key: str, offered: str
) -> None:
    words = "my money is gone" if language_key == "1" else "我的钱全没了"
    record = call(phone, Press(language_key), Speak(words), Press("*"))
    assert offered in record.transcript


# -- the seed article's scenarios the tree lacked ------------------------------------------------

# Keys after the language, what the topic's menu offers, how the advice begins, what else it
# says, and the queue its follow-up's 1 reaches: in English, then in Mandarin.
SEED_ADVICE = [
    pytest.param(
        ("1", "5", "4"),
        "For stop-loss and take-profit orders, or slippage, press 4.",
        "To limit your risk, set a stop-loss and a take-profit on each position",
        ("before the position can be liquidated", "keep some margin in reserve", "called slippage"),
        "derivatives",
        id="en-stop-loss",
    ),
    pytest.param(
        ("2", "5", "4"),
        "设置止盈止损,或者滑点问题,请按4",
        "控制合约风险,建议给每个仓位都设置止盈止损",
        ("避免被强平", "预留一些保证金", "这就是滑点"),
        "derivatives",
        id="zh-stop-loss",
    ),
    pytest.param(
        ("1", "3", "4"),
        "To check which tokens and networks we support before you send, press 4.",
        "Before you deposit or withdraw, check in the app that we support both the token",
        ("the minimum amount", "never send funds to it", "send a small test first"),
        "payments",
        id="en-networks",
    ),
    pytest.param(
        ("2", "3", "4"),
        "转账前查询支持的币种和网络,请按4",
        "充值或提现前,请先在App里确认,我们支持这个币种",
        ("最低充值数量", "千万不要往合约地址转账", "建议先小额测试"),
        "payments",
        id="zh-networks",
    ),
    # DeFi's advice is its follow-up's star: the security team is offered first.
    pytest.param(
        ("1", "8", "6", "*"),
        "For DeFi, press 6.",
        "If you approved or signed something you doubt, revoke that approval now",
        (
            "check each token's contract address",
            "never through a link someone sends",
            "to pay gas fees",
        ),
        "products",
        id="en-defi",
    ),
    pytest.param(
        ("2", "8", "6", "*"),
        "DeFi,请按6",
        "如果您授权或签名了现在觉得可疑的内容,请立即",
        ("核对代币的合约地址", "不要点别人发来的链接", "用来支付Gas费"),
        "products",
        id="zh-defi",
    ),
    pytest.param(
        ("1", "7", "4"),
        "If you entered a detail wrongly, such as your name or date of birth, press 4.",
        "If you entered a detail wrongly and your verification is still under review",
        ("wait for the result", "exactly as it appears", "never on a call you did not make"),
        "kyc",
        id="en-kyc-details",
    ),
    pytest.param(
        ("2", "7", "4"),
        "姓名、出生日期等信息填错了,需要修改,请按4",
        "如果您填错了信息,而认证还在审核中",
        (
            "请先等待审核结果",
            "按照证件上的信息逐项如实填写",
            "绝不会在不是您主动拨打的电话里办理",
        ),
        "kyc",
        id="zh-kyc-details",
    ),
    pytest.param(
        ("1", "6", "4"),
        "For other errors, or data that looks wrong, press 4.",
        "For any other error, look up its error code in the official API documentation",
        ("An SDK listed in the documentation", "compare the result with", "full error message"),
        "api",
        id="en-api-errors",
    ),
    pytest.param(
        ("2", "6", "4"),
        "其他报错或数据异常,请按4",
        "遇到其他报错,请先用错误码在官方API文档中查询",
        ("使用官方文档中列出的SDK", "和App里显示的数据对比", "完整的报错信息"),
        "api",
        id="zh-api-errors",
    ),
    pytest.param(
        ("1", "2", "5"),
        "For tips to keep your account safe, or about a link or website you doubt, press 5.",
        "To keep your account safe, turn on two-factor authentication",
        ("Change it from time to time", "a web address you typed yourself", "texts and emails"),
        "account",
        id="en-account-safety",
    ),
    pytest.param(
        ("2", "2", "5"),
        "账户安全建议,或者对收到的链接、网站有疑问,请按5",
        "为了保护账户安全,请开启两步验证",
        ("还要定期更换", "您自己输入的官网网址", "钓鱼网站会仿冒我们的网站"),
        "account",
        id="zh-account-safety",
    ),
]


@pytest.mark.parametrize(("keys", "offered", "advice", "says", "queue"), SEED_ADVICE)
def test_the_seed_articles_advice_the_tree_lacked_is_offered_in_its_topics_menu(
    phone: Phone,
    keys: tuple[str, ...],
    offered: str,
    advice: str,
    says: tuple[str, ...],
    queue: str,
) -> None:
    """The seed article's advice for a scenario no key led to: offered by the topic's menu on
    a key of its own, said, then the follow-up's agent (1) of the topic's team."""
    record = call(phone, *(Press(k) for k in keys), Press("1"))
    assert offered in record.transcript, record.heard
    [said] = [line for line in record.heard if line.startswith(advice)]
    assert all(words in said for words in says), said
    assert record.queue == queue


@pytest.mark.parametrize(
    ("language_key", "words", "then", "advice"),
    [
        # Stop-loss and take-profit: the derivatives menu, which hears them too.
        ("1", "how do I set a take profit", "stop loss", "To limit your risk, set a stop-loss"),
        ("2", "止盈止损怎么设置", "我想设置止损", "控制合约风险,建议给每个仓位"),
        # A token's contract address is no futures contract: the tokens and networks advice.
        ("1", "what is the contract address for USDT", None, "Before you deposit or withdraw"),
        ("2", "USDT的合约地址是多少", None, "充值或提现前,请先在App里确认"),
        ("1", "a question about deposits", "which network should I use", "Before you deposit"),
        ("2", "充值问题", "充值要用哪个网络", "充值或提现前,请先在App里确认"),
        # DeFi: a smart contract, no futures contract either, is its advice at once; DeFi
        # itself the products menu, which hears it too.
        ("1", "is this smart contract safe", None, "If you approved or signed something"),
        ("2", "这个智能合约靠谱吗", None, "如果您授权或签名了现在觉得可疑的内容"),
        # DeFi named at the products menu: its follow-up, the security team offered first.
        ("1", "I have a question about DeFi", "DeFi", DEFI_FIRST[0]),
        ("2", "去中心化金融的问题", "DeFi", DEFI_FIRST[1]),
        # A KYC detail entered wrongly: not the documents' advice, though it names one.
        ("1", "identity verification", "I entered my passport number wrong", "If you entered"),
        ("2", "实名认证", "身份证号填错了", "如果您填错了信息,而认证还在审核中"),
        # An API call that fails or data that looks wrong, at the API menu.
        ("1", "my API calls keep failing", "the call failed", "For any other error, look up"),
        ("2", "API调用失败", "返回的数据不对", "遇到其他报错,请先用错误码"),
        # Protecting an account before anything happened; a phishing link, at its menu.
        ("1", "how do I protect my account from hackers", None, "To keep your account safe"),
        ("2", "怎么保护我的账户", None, "为了保护账户安全,请开启两步验证"),
        ("1", "I can't log in", "I clicked a phishing link", "To keep your account safe"),
        ("2", "账户登录问题", "我点了一个钓鱼链接", "为了保护账户安全,请开启两步验证"),
    ],
)
def test_a_seed_scenario_named_at_the_main_menu_reaches_its_advice(
    phone: Phone, language_key: str, words: str, then: str | None, advice: str
) -> None:
    """Said at the main menu (and, where it leads to a topic's menu, said there too), the
    scenario's advice, and never the emergency notice."""
    answers = [Speak(words)] if then is None else [Speak(words), Speak(then)]
    record = call(phone, Press(language_key), *answers)
    assert any(line.startswith(advice) for line in record.heard), record.heard
    assert not any(line.startswith(EMERGENCY_NOTICE) for line in record.heard)


@pytest.mark.parametrize(
    ("keys", "offered"),
    [
        (
            ("1", "8", "6"),
            "If funds left your wallet without you, or you approved or signed something you now"
            " doubt, press 3 now for our security team.",
        ),
        (
            ("2", "8", "6"),
            "如果钱包里的资产不是您本人转出的,或者您授权、签名了现在觉得可疑的内容,请立即按3,"
            "转接安全团队",
        ),
        (
            ("1", "2", "5"),
            "If you typed your password or a code on a site you doubt, or gave them to anyone,"
            " press 3 now for our security team.",
        ),
        (
            ("2", "2", "5"),
            "如果您在可疑的网站上输入过密码或验证码,或者把它们告诉了别人,请立即按3,转接安全团队",
        ),
    ],
)
def test_seed_advice_on_what_a_thief_may_have_used_offers_the_security_team_on_3(
    phone: Phone, keys: tuple[str, ...], offered: str
) -> None:
    """After advice on what a thief uses (a contract approved, a fake site), one to whom it
    already happened is offered the security team first, and 3 puts them in its line."""
    record = call(phone, *(Press(k) for k in keys), Press("3"), Press("*"))
    assert offered in record.transcript, record.heard
    assert record.queue == "security"


@pytest.mark.parametrize(
    ("language_key", "answer", "victim"),
    [
        ("1", "I typed my password on that site", True),
        ("2", "我在那个网站上输入了密码", True),
        ("1", "no I didn't enter my password anywhere", False),
        ("2", "我没有输入过密码", False),
    ],
)
def test_one_who_says_they_typed_their_password_on_a_site_they_doubt_reaches_security(
    phone: Phone, language_key: str, answer: str, victim: bool
) -> None:
    """Asked after the account-safety advice, a caller who says they typed their password
    there is put through to the security team; one who says they did not is not."""
    record = call(phone, Press(language_key), Press("2"), Press("5"), Speak(answer), Press("*"))
    assert (record.queue == "security") is victim, record.heard
    assert any(line.startswith(EMERGENCY_NOTICE) for line in record.heard) is victim


@pytest.mark.parametrize(
    ("language_key", "advice", "says"),
    [
        (
            "1",
            "An order can fail or stay unfilled",
            "If you need an agent, have the order ID ready.",
        ),
        ("2", "订单失败或迟迟没有成交", "如需客服协助,请准备好订单号。"),
    ],
)
def test_the_failed_order_advice_says_to_have_the_order_id_ready_for_an_agent(
    phone: Phone, language_key: str, advice: str, says: str
) -> None:
    """The seed article: for a trade that failed, have its order number ready (交易记录、
    订单号), as the withdrawal advice asks for its TXID; then a trading agent by 1."""
    record = call(phone, Press(language_key), Press("4"), Press("1"), Press("1"))
    [said] = [line for line in record.heard if line.startswith(advice)]
    assert said.endswith(says)
    assert record.queue == "trading"


@pytest.mark.parametrize(
    ("answers", "advice", "says"),
    [
        (
            (Press("1"), Speak("I put the wrong memo on my XRP deposit")),
            "A deposit is credited once it has enough",
            "If the token needs a memo or tag and you left it out or got it wrong",
        ),
        ((Press("2"), Speak("充值的标签填错了")), "充值需要达到足够的区块确认数", "漏填或填错了"),
        # At the deposits menu, 填错 is a wrong address's (3): a tag is heard first.
        (
            (Press("2"), Press("3"), Speak("标签填错了")),
            "充值需要达到足够的区块确认数",
            "漏填或填错了",
        ),
    ],
)
def test_a_memo_or_tag_entered_wrong_is_a_deposit_an_agent_can_credit_not_a_wrong_address(
    phone: Phone, answers: tuple[Answer, ...], advice: str, says: str
) -> None:
    """The seed article's deposit advice (核实地址, 了解不同代币的充提币规则): a memo or tag
    got wrong, like one left out, is a deposit an agent can help credit, never the wrong
    address's "transfers cannot be reversed"."""
    record = call(phone, *answers)
    [said] = [line for line in record.heard if line.startswith(advice)]
    assert says in said
    wrong_address = ("If you sent funds to a wrong address", "如果您转错了地址")
    assert not any(line.startswith(wrong_address) for line in record.heard), record.heard


# -- what is said -------------------------------------------------------------------------------


def test_a_mandarin_caller_not_understood_is_not_told_their_choice_is_invalid(
    phone: Phone,
) -> None:
    """A victim who has just described a theft in words the tree lacks hears that they were
    not understood, not that their choice was wrong, and the menu again, 1 first."""
    record = call(phone, Press("2"), Speak("今天天气很好"))
    assert not any("选择无效" in line for line in record.heard), record.heard
    assert "抱歉,没能识别您的选择。" in record.heard
    assert record.heard[-1].startswith(MAIN_MENU_AGAIN[1])


def test_the_pin_or_id_prompt_says_an_id_ending_in_x_takes_the_pin_in_both_languages(
    phone: Phone,
) -> None:
    record = call(phone, Press("1"), Press("1"), Press(VICTIM_UID), Press("*"))
    assert "If your ID number ends in X, enter your PIN instead." in record.transcript
    record = call(phone, Press("2"), Press("1"), Press(VICTIM_UID), Press("*"))
    assert "证件号码末位是X的,请输入PIN码。" in record.transcript


# -- what a Mandarin-speaking victim says ---------------------------------------------------------

CALLER_IN_CHINA = "+8613912345678"


@pytest.mark.parametrize(
    "words",
    [
        "黑客盗取了我的资产",
        "有人盗币",
        "我的资产失窃了",
        "我的账户有异常提币",  # the seed's 异常交易, said of a withdrawal
        "收到一条异常提现的通知",
        "账户有一笔异常转账",
        "这笔提现不是我申请的",
        "我的手机突然没有信号了",  # a SIM swap's first sign, said in full
        "手机突然无服务",
        "我的SIM卡被换了",
        "快点冻结我的账户",
        "赶快冻结我的账号",
        "我把助记词告诉别人了",
        "我刚才把验证码告诉别人了",
    ],
)
def test_a_mandarin_victims_own_words_reach_the_emergency_lane(phone: Phone, words: str) -> None:
    """Words a frightened Mandarin caller uses for a theft, a SIM swap or a secret given
    away: heard at the first prompt (a caller from China is heard in Mandarin there) and at
    the main menu alike, never sent to the withdrawals menu for the 提币 in them."""
    at_once = phone.call(ScriptedParty([Speak(words), Press("*")]), from_number=CALLER_IN_CHINA)
    assert at_once.queue == "security"
    assert at_once.heard[4].startswith("这里是账户被盗紧急服务")
    record = call(phone, Press("2"), Speak(words), Press("*"))
    assert record.queue == "security"


@pytest.mark.parametrize(
    ("words", "target"),
    [
        ("为什么这么快冻结我的账户", None),  # a freeze by risk control, complained of
        ("我的提现异常", "deposits_menu"),  # a withdrawal that failed, no theft
        ("提现异常怎么办", "deposits_menu"),
        # The shorter words that made room for the victims' in the main menu's 500 hints
        # still hear what the longer ones did.
        ("没有收到奖励", "products_rewards"),
        ("活动奖励没有发放", "products_rewards"),
        ("我的空投没收到", "products_rewards"),
        ("两步验证失效了", "account_2fa"),
        ("谷歌验证丢了", "account_2fa"),
        ("二次验证用不了", "account_2fa"),
        ("我转错了网络", "deposits_wrong_address"),
        ("我填错地址了", "deposits_wrong_address"),
        ("密码忘记了", "account_password"),
        ("实名认证没有通过", "kyc_failed"),
    ],
)
def test_words_near_a_mandarin_victims_lead_where_they_did(
    hotline_tree: CompiledTree, words: str, target: str | None
) -> None:
    from ivr.tree import match_speech

    option = match_speech(hotline_tree.menus["main_menu"], "zh-CN", words)
    assert (option.target if option else None) == target


@pytest.mark.parametrize(
    ("words", "then", "next_said", "queue"),
    [
        # The scam check: the number that called, checked.
        (
            "有人冒充客服给我打电话",
            [Press("8613800138000#")],
            "请输入给您打电话或发短信的号码",
            None,
        ),
        # Asked once whether someone else took it; silence is the emergency lane.
        ("我被骗了", [Silent(), Press("*")], "很抱歉您的资产不见了。", "security"),
        ("我要转人工", [], "正在为您转接人工客服", "general"),
        ("爆仓了 钱全没了", [], "仓位被强平,我们理解您现在的心情。", None),  # a trader, no victim
    ],
)
def test_a_caller_from_china_who_says_what_happened_at_once_is_answered_in_mandarin(
    phone: Phone, words: str, then: list[Answer], next_said: str, queue: str | None
) -> None:
    """A frightened caller's first words are what happened, not 中文: the main menu's answer
    to them, in Mandarin, and never "not a valid choice" in two languages and the language
    menu again."""
    record = phone.call(ScriptedParty([Speak(words), *then]), from_number=CALLER_IN_CHINA)
    assert record.heard[4].startswith(next_said), record.heard
    assert "Sorry, that is not a valid choice." not in record.heard
    assert "抱歉,没能识别您的选择。" not in record.heard
    assert record.queue == queue
    if "冒充" in words:
        assert any("尾号为 8 0 0 0 的号码不是我们的号码" in line for line in record.heard)


# A Mandarin caller's story, as they tell it: a scammer's script (the scam check asks for the
# number), a pig butchering (asked once whether someone else took the funds; silence is the
# emergency lane), the funds or the phone number taken (the emergency lane), and a freeze
# already on the account (the account team, never the emergency lane's freeze).
SCAM_CHECK = "请输入给您打电话或发短信的号码"
FUNDS_QUESTION = "很抱歉您的资产不见了。"
ACCOUNT_TEAM = "正在为您转接账户服务专员"
A_STRANGERS_NUMBER = Press("8613800138000#")


@pytest.mark.parametrize(
    ("words", "next_said", "then", "queue"),
    [
        ("我遇到了杀猪盘", FUNDS_QUESTION, [Silent(), Press("*")], "security"),
        ("杀猪盘", FUNDS_QUESTION, [Press("1"), Press("*")], "security"),
        ("对方说我的账户有风险", SCAM_CHECK, [A_STRANGERS_NUMBER], None),
        ("他打来说账户存在风险", SCAM_CHECK, [A_STRANGERS_NUMBER], None),
        ("我的账号有风险要我处理", SCAM_CHECK, [A_STRANGERS_NUMBER], None),
        ("对方说我账号存在风险", SCAM_CHECK, [A_STRANGERS_NUMBER], None),
        ("客服让我下载APP", SCAM_CHECK, [A_STRANGERS_NUMBER], None),
        ("他让我下载一个APP", SCAM_CHECK, [A_STRANGERS_NUMBER], None),
        ("他叫我下载一个软件", SCAM_CHECK, [A_STRANGERS_NUMBER], None),
        ("我的币被转到陌生地址了", EMERGENCY_NOTICE[1], [Press("*")], "security"),
        ("币被转到陌生地址", EMERGENCY_NOTICE[1], [Press("*")], "security"),
        ("我的手机卡突然停机了", EMERGENCY_NOTICE[1], [Press("*")], "security"),
        ("手机卡突然停机", EMERGENCY_NOTICE[1], [Press("*")], "security"),
        ("我的号码被过户了", EMERGENCY_NOTICE[1], [Press("*")], "security"),
        ("我的账户被冻结了", ACCOUNT_TEAM, [], "account"),
        ("我的账号被冻结了怎么办", ACCOUNT_TEAM, [], "account"),
    ],
)
def test_a_mandarin_callers_scam_takeover_or_freeze_reaches_its_branch(
    phone: Phone, words: str, next_said: str, then: list[Answer], queue: str | None
) -> None:
    """Said at the main menu: the branch for it at once, never 没能识别 and the menu again;
    the emergency lane (a verified caller there is frozen) only for the funds or the number
    taken, or a pig butchering confirmed."""
    record = call(phone, Press("2"), Speak(words), *then)
    menu = next(i for i, line in enumerate(record.heard) if line.startswith("如果您的账户被盗"))
    assert record.heard[menu + 1].startswith(next_said), record.heard
    assert "抱歉,没能识别您的选择。" not in record.heard
    assert record.queue == queue
    hijacked = any(line.startswith(EMERGENCY_NOTICE[1]) for line in record.heard)
    assert hijacked == (queue == "security"), record.heard
    if next_said == SCAM_CHECK:
        assert any("尾号为 8 0 0 0 的号码不是我们的号码" in line for line in record.heard)
    if queue == "account":
        assert not any("冻结" in line for line in record.heard[menu + 1 :]), record.heard


@pytest.mark.parametrize(
    ("words", "next_said"),
    [
        ("我遇到杀猪盘了", FUNDS_QUESTION),
        ("有人打电话说我的账户存在风险", SCAM_CHECK),
        ("他让我下载一个APP", SCAM_CHECK),
        ("我的币被转到陌生地址", EMERGENCY_NOTICE[1]),
        ("手机卡突然停机了", EMERGENCY_NOTICE[1]),
        ("号码被过户了", EMERGENCY_NOTICE[1]),
    ],
)
def test_a_caller_from_china_who_tells_a_scam_or_a_takeover_at_once_is_answered(
    phone: Phone, words: str, next_said: str
) -> None:
    """The same words as the first a caller from China says, before any language is chosen
    (the language menu's shortcuts): the main menu's answer, in Mandarin."""
    record = phone.call(ScriptedParty([Speak(words)]), from_number=CALLER_IN_CHINA)
    assert record.heard[4].startswith(next_said), record.heard
    assert "抱歉,没能识别您的选择。" not in record.heard


@pytest.mark.parametrize(
    ("language_key", "words"),
    [
        ("1", "they told me to send my coins to their wallet address"),
        ("1", "I gave someone my password, what an idiot I am"),
        ("1", "why is my balance zero, someone got in, freeze my account"),
        ("2", "被人转走了,不是本人转走的"),
        ("2", "骗子告诉我不要告诉任何人,我把验证码告诉了他"),
        ("2", "我把验证码告诉了客服,他告诉我账户安全"),
        ("2", "为什么有人在转我的钱,快冻结我的账户"),
    ],
)
def test_a_victims_story_with_an_exceptions_word_in_it_still_reaches_the_emergency_lane(
    phone: Phone, language_key: str, words: str
) -> None:
    """`not_heard_with`'s words take a keyword back only said right beside it: a victim's
    story holds 不要, "address" or "why is" elsewhere (found by a review of the change that
    made them take it back anywhere in the sentence)."""
    record = call(phone, Press(language_key), Speak(words), Press("*"))
    assert record.queue == "security", record.heard


@pytest.mark.parametrize(
    "words", ["我的手机突然停机了,是不是欠费了", "话费用完了突然停机", "手机突然停机了,我去缴费了"]
)
def test_a_mandarin_callers_line_cut_for_an_unpaid_bill_is_not_the_emergency_lane(
    phone: Phone, words: str
) -> None:
    """突然停机 is a SIM swap's sign (the thief's SIM takes the number), but said with 欠费,
    话费 or 缴费 it is a line cut for an unpaid bill: the emergency lane would take a
    victim's place and freeze a verified caller's account. Not understood, the caller hears
    the main menu again and chooses; said at once, the language menu again."""
    record = call(phone, Press("2"), Speak(words), Press("0"))
    assert not any(line.startswith(EMERGENCY_NOTICE[1]) for line in record.heard), record.heard
    assert "抱歉,没能识别您的选择。" in record.heard
    assert record.queue == "general"
    at_once = phone.call(ScriptedParty([Speak(words), Press("0")]), from_number=CALLER_IN_CHINA)
    assert not any(line.startswith(EMERGENCY_NOTICE[1]) for line in at_once.heard)
    assert at_once.queue == "general", at_once.heard


@pytest.mark.parametrize(
    ("words", "target"),
    [
        # Made room for the words above in the main menu's 500 Mandarin hints: each phrase
        # merged into a shorter word still leads where it did.
        ("我的账户被人登录了", "emergency"),
        ("账号被人登陆了", "emergency"),
        ("我的账户被人登了", "emergency"),
        ("我的账户被别人登录了", "emergency"),
        ("账号被别人登陆过", "emergency"),
        ("我的账户被登录了", "emergency"),
        ("账号被登录了", "emergency"),
        ("未经我授权就提现了", "emergency"),
        ("这笔提现未经我的授权", "emergency"),
        ("我的手机卡被换了", "emergency"),
        ("SIM卡被换了", "emergency"),
        ("活动奖励未到账", "products_rewards"),
        ("奖励未发放", "products_rewards"),
        ("我充值转错链了", "deposits_wrong_address"),
        ("选错链了", "deposits_wrong_address"),
        ("API签名不对", "api_signature"),
        ("签名不匹配", "api_signature"),
        # Near the words added, said by callers with other questions.
        ("合约交易有风险吗", "derivatives_menu"),
        ("在哪里下载APP", None),
        ("我本人登录不了", "account_menu"),
        ("为什么要冻结账户", None),  # a freeze asked about: the main menu again, as before
        # 突然停机 with an unpaid bill (`not_heard_with`): no victim; the victim's other
        # words still are one's.
        ("我的手机欠费停机了", None),
        ("手机突然停机了,原来是欠费", None),
        ("因为没交话费手机突然停机了", None),
        ("手机突然停机了 话费 也 充了", None),
        ("月租没交突然停机", None),
        ("手机突然停机了,账户被盗了,不是欠费", "emergency"),
        ("突然停机了,突然没信号,话费是够的", "emergency"),
    ],
)
def test_words_near_the_mandarin_scam_and_freeze_words_lead_where_they_did(
    hotline_tree: CompiledTree, words: str, target: str | None
) -> None:
    from ivr.tree import match_speech

    option = match_speech(hotline_tree.menus["main_menu"], "zh-CN", words)
    assert (option.target if option else None) == target


def test_the_mandarin_scam_and_freeze_words_are_hinted_within_twilios_500(
    hotline_tree: CompiledTree,
) -> None:
    """Twilio hears a word better when it is hinted, and takes 500 hints per <Gather>: the
    main menu's Mandarin words fit, the ones added for these callers among them."""
    menu = hotline_tree.menus["main_menu"]
    hints = menu.hints["zh-CN"].split(", ")
    said = dict.fromkeys(w for option, _ in menu.by_speech["zh-CN"] for w in option.speech["zh-CN"])
    assert len(said) <= 500 and list(said) == hints  # none cut off at 500
    for word in ("杀猪盘", "账户有风险", "账户存在风险", "让我下载", "突然停机", "被冻结"):
        assert word in hints, word


def test_an_english_caller_who_says_someone_called_them_is_asked_for_the_number_at_once(
    phone: Phone,
) -> None:
    record = phone.call(ScriptedParty([Speak("someone called me pretending to be support")]))
    assert record.heard[4].startswith("Please enter the phone number that called or texted you")


def test_a_mandarin_caller_hears_a_lone_one_in_a_number_as_yao(phone: Phone) -> None:
    """Digits read one by one (a number's last four, a ticket) say 1 as 幺, as a Chinese
    phone line does: 一 is heard as 七."""
    record = phone.call(
        ScriptedParty([Press("2"), Press("2"), Press("4"), Press("8613800130101#")]),
        from_number=CALLER_IN_CHINA,
    )
    assert any("尾号为 0 幺 0 幺 的号码不是我们的号码" in line for line in record.heard)
    tickets = [line for line in call(phone, Press("2"), Press("0")).heard if "工单号是" in line]
    assert tickets and all(" 1" not in line for line in tickets), tickets


# -- an incident: main menu # for the worried whose account is fine ---------------------------

INCIDENT_NEWS = {
    "en": "We know some customers saw failed logins today. We are investigating.",
    "zh-CN": "我们已知晓今天部分用户登录失败,正在调查。",
}
WORRIED_OFFER = "If you are calling about the incident we just told you about"
WORRIED_ADVICE = "Thank you for checking on your account."


def test_while_an_announcement_is_up_the_worried_press_pound_for_advice_not_the_emergency_lane(
    client: TestClient, phone: Phone, db: Engine
) -> None:
    """A supervisor announces the incident; the main menu then offers # to callers whose
    account is fine: advice, and a polite goodbye, with no case opened and no line joined."""
    sam = make_user(db, "sam", "supervisor")
    put = client.put("/api/announcement", json={"texts": INCIDENT_NEWS}, headers=bearer(sam))
    assert put.status_code == 200, put.text
    record = call(phone, Press("1"), Press("#"), Press("9"))
    news = record.heard.index(INCIDENT_NEWS["en"])
    assert record.heard[news + 1].startswith("If your account has been hacked")  # the menu
    offer = record.heard[news + 2]  # after the menu: this key, and only while announced
    assert offer.startswith(WORRIED_OFFER) and offer.endswith("press pound.")
    assert record.heard[news + 3].startswith(WORRIED_ADVICE)
    assert "never share your password or codes" in record.heard[news + 3]
    assert record.heard[news + 4].startswith("If you now see something wrong with your account")
    assert record.heard[-1] == "Thank you for calling. Goodbye."
    assert record.queue is None
    with db.connect() as conn:
        row = get_call(conn, call_sid=record.call_sid)
    assert row is not None and row["state"]["facts"]["topic"] == "incident_worried"
    with db.connect() as conn:
        assert conn.execute(select(cases.c.id)).first() is None  # nobody waits on an agent
    # In Mandarin, in Mandarin; 3 after the advice is still the security team.
    mandarin = call(phone, Press("2"), Press("#"), Press("3"), Press("*"))
    assert any(line.endswith("请按井号键。") for line in mandarin.heard)
    assert any(line.startswith("感谢您关心账户安全") for line in mandarin.heard)
    assert mandarin.queue == "security"


def test_without_an_announcement_pound_at_the_main_menu_is_invalid_and_never_offered(
    phone: Phone,
) -> None:
    record = call(phone, Press("1"), Press("#"), Press("3"))
    menu = next(i for i, line in enumerate(record.heard) if line.startswith("If your account"))
    assert record.heard[menu + 1] == "Sorry, that is not a valid choice."
    assert record.heard[menu + 2].startswith("Press 1 for a hacked or stolen account")
    assert not any(WORRIED_OFFER in line or WORRIED_ADVICE in line for line in record.heard)
    assert record.heard[-1].startswith("Deposits and withdrawals.")  # 3: as ever


def test_the_shipped_main_menu_offers_pound_only_while_announced(
    hotline_tree: CompiledTree,
) -> None:
    menu = hotline_tree.menus["main_menu"]
    assert {k: o.target for k, o in menu.while_announced.items()} == {"#": "incident_advice"}
    assert "#" not in menu.by_key and menu.node.back_key is None
    for language in ("en", "zh-CN"):
        offer = hotline_tree.catalogs.catalog(language).prompts["main_menu_incident"]
        assert isinstance(offer, str) and offer  # a prompt of its own, in every language


# -- a frightened caller's review: approvals, phishing, takeovers said their way -----------------

EN_NOTICE, ZH_NOTICE = EMERGENCY_NOTICE
MAIN_MENU_SAID = ("If your account has been hacked or stolen", "如果您的账户被盗")
NUMBER_PROMPT = "Please enter the phone number that called or texted you"


def after_the_main_menu(record) -> str:  # type: ignore[no-untyped-def]
    """What the caller heard right after the main menu, the first time."""
    menu = next(i for i, line in enumerate(record.heard) if line.startswith(MAIN_MENU_SAID))
    return str(record.heard[menu + 1])


@pytest.mark.parametrize(
    ("language_key", "words"),
    [
        ("1", "I approved a contract and my tokens are gone"),  # not the futures' "contract"
        ("1", "I signed a malicious approval"),
        ("1", "it was an approval scam"),
        ("1", "a wallet drainer took my tokens"),
        ("1", "I connected my wallet to a fake site"),
        ("2", "我的钱包授权给了一个网站"),
        ("2", "授权诈骗"),  # not the scam check's 诈骗
        ("2", "我签了授权,现在币少了"),
    ],
)
def test_a_token_approval_is_offered_the_security_team_before_any_advice(
    phone: Phone, language_key: str, words: str
) -> None:
    """A token approval signed on a drainer's site: the DeFi follow-up at once, whose first
    words offer the security team (3), never the futures menu or the scam check's number."""
    record = call(phone, Press(language_key), Speak(words), Press("3"), Press("*"))
    assert after_the_main_menu(record).startswith(DEFI_FIRST), record.heard
    assert record.queue == "security"
    assert (
        "Futures and derivatives." not in record.heard and "合约交易服务" not in record.transcript
    )
    assert "enter the phone number" not in record.transcript


@pytest.mark.parametrize(
    ("language_key", "words"),
    [
        ("1", "I clicked a phishing link and entered my password"),
        ("1", "I typed my password on a fake website"),
        ("1", "I entered my seed phrase on a website"),
        ("1", "I shared my screen with someone from support"),
        ("1", "they wanted screen sharing"),
        ("1", "I was told to move my crypto to a new wallet for safety"),
        ("2", "客服让我把币转到新钱包"),
        ("2", "他让我屏幕分享"),
        ("2", "我给他分享屏幕了"),
        # A takeover, said in words the review heard missed.
        ("1", "someone is hijacking my account"),
        ("1", "I think this is an account takeover"),
        ("1", "my account got taken over"),
        ("1", "my SIM was swapped"),
        ("1", "my SIM card was swapped yesterday"),
        ("1", "someone swapped my SIM"),
        ("1", "my phone suddenly has no service"),
        ("1", "my number was transferred to another phone"),
        ("1", "my account was locked by hackers"),
        ("1", "it was taken by a hacker"),
        ("2", "黑客把我的币转走了"),
        ("2", "手机没服务了"),
        ("2", "手机号码被人过户了"),
        ("2", "我的账户被到了"),  # 被盗, as a recogniser may write it
        ("2", "账户被道了"),
        # "Freeze my account", asked for (解除冻结 is the account team's: below).
        ("2", "冻结我的账户"),
        ("2", "能不能冻结我的账户"),
        ("2", "把我的账户冻结"),
        ("2", "立刻冻结我的账户"),
        ("2", "先冻结账户"),
        ("2", "冻结账号"),
        # Merged words still heard as the longer ones were.
        ("2", "有人转走了我的USDT"),
        ("2", "我的币被别人提走了"),
        ("2", "我把验证码告诉他了"),
        ("2", "我的密码告诉别人了"),
        ("2", "验证码发给了客服"),
        ("2", "账户有未授权的提现"),
        ("1", "there was an unauthorized transfer"),
        ("1", "an unauthorized log in on my account"),
        ("1", "I gave someone my password"),
        ("1", "they told me to send my coins to a safe wallet"),
        ("1", "someone is using my account"),
    ],
)
def test_a_victim_in_words_the_review_found_missed_reaches_the_emergency_lane_at_once(
    phone: Phone, language_key: str, words: str
) -> None:
    """Said at the main menu: the emergency notice next, not a retry, the number check or the
    futures menu; and at once, from the first prompt, in the language of the words."""
    record = call(phone, Press(language_key), Speak(words), Press("*"))
    assert after_the_main_menu(record).startswith(EMERGENCY_NOTICE), record.heard
    assert record.queue == "security"
    country = CALLER_IN_CHINA if language_key == "2" else "+15005550006"
    at_once = phone.call(ScriptedParty([Speak(words), Press("*")]), from_number=country)
    assert at_once.heard[4].startswith(EMERGENCY_NOTICE), at_once.heard
    assert at_once.queue == "security"


@pytest.mark.parametrize(
    ("language_key", "words"),
    [
        ("1", "my funds are missing"),
        ("1", "my bitcoin is gone"),
        ("1", "all my tokens are gone"),
        ("1", "my USDT is gone"),
        ("2", "我的钱没有了"),
        ("2", "我的USDT没有了"),
        ("2", "我的以太坊不见了"),
        ("2", "我的币都没有了"),
        ("2", "我被诈骗了"),  # not the scam check's 诈骗: the money is gone
        ("2", "被诈骗了怎么办"),
    ],
)
def test_money_gone_or_scammed_in_other_words_is_asked_once_who_took_it(
    phone: Phone, language_key: str, words: str
) -> None:
    """The weak words' question ("did someone else take it?"), never a number asked for
    first; silence there is the emergency lane."""
    record = call(phone, Press(language_key), Speak(words), Silent(), Press("*"))
    assert after_the_main_menu(record).startswith(
        ("We are sorry your funds are missing.", "很抱歉您的资产不见了。")
    ), record.heard
    assert record.queue == "security"


@pytest.mark.parametrize(
    ("language_key", "words", "said"),
    [
        ("1", "I clicked a phishing link", "To keep your account safe"),
        ("1", "is this a phishing website", "To keep your account safe"),
        ("1", "customer support called me and asked for my code", NUMBER_PROMPT),
        ("1", "a guy from customer service called me", NUMBER_PROMPT),
    ],
)
def test_phishing_is_the_safety_advice_and_support_that_called_is_the_number_check(
    phone: Phone, language_key: str, words: str, said: str
) -> None:
    """A phishing link: the safety advice, whose 3 is the security team, not a number asked
    for twice; "support called me" is the number check, not the operator's "customer
    service"."""
    record = call(phone, Press(language_key), Speak(words), Press("3"), Press("*"))
    assert after_the_main_menu(record).startswith(said), record.heard
    if said != NUMBER_PROMPT:
        assert "enter the phone number" not in record.transcript
        assert record.queue == "security"


@pytest.mark.parametrize(
    ("words", "at_once"),
    [
        ("解除冻结我的账户", True),  # holds 冻结我的: the account team all the same
        ("我的账户怎么解冻", True),
        ("能不能取消冻结", True),
        ("我的账户被冻结了", False),  # the account team's, as before
    ],
)
def test_a_freeze_to_lift_is_the_account_teams_a_freeze_asked_for_the_emergency_lanes(
    phone: Phone, words: str, at_once: bool
) -> None:
    """解除冻结我的账户 holds 冻结我的, a freeze asked for: the first option in file order
    wins, so the one to lift it is heard first, and the caller reaches the account team, at
    the main menu and (for these) said at once from China, never the emergency lane's
    freeze."""
    record = call(phone, Press("2"), Speak(words))
    assert after_the_main_menu(record).startswith(ACCOUNT_TEAM), record.heard
    assert record.queue == "account"
    assert not any(line.startswith(ZH_NOTICE) for line in record.heard)
    if at_once:
        first = phone.call(ScriptedParty([Speak(words)]), from_number=CALLER_IN_CHINA)
        assert first.heard[4].startswith(ACCOUNT_TEAM), first.heard
        assert first.queue == "account"


@pytest.mark.parametrize(
    ("keys", "words"),
    [
        (["2"], "为什么冻结我的账户"),  # a freeze complained of (`not_heard_with`)
        (["2"], "你们凭什么立刻冻结账号"),
        (["2", "2"], "解除冻结我的账户"),  # a submenu: not the strong words either
        (["2"], "我的手机没服务了,是不是欠费了"),
        (["2"], "是我本人转走的"),
        (["2"], "怎么把币转到新钱包"),
        (["2"], "不要把验证码告诉任何人"),
        (["2"], "验证码发给了我的手机但收不到"),
        (["1"], "I entered my password wrong too many times"),
        (["1"], "I typed my password again and it is not working"),
        (["1"], "I entered my seed phrase to restore my wallet"),
        # Said beside it: "the bill" far off ("because I forgot to pay the bill") takes
        # nothing back, and errs toward the emergency lane.
        (["1"], "my sim stopped, the bill was not paid"),
        (["1"], "my phone has no service, I need to top up"),
        (["1"], "why did you freeze my account"),
        (["1"], "how long does kyc approval take"),
        (["1"], "my withdrawal is waiting for approval"),
        (["1"], "I gave someone my UID for a referral"),
        (["1"], "support told me to send my ID again"),
    ],
)
def test_words_near_the_new_victims_words_are_no_emergency(
    phone: Phone, keys: list[str], words: str
) -> None:
    """Near the words added for victims, but not theirs: never the emergency lane, which
    freezes a verified caller's account."""
    record = call(phone, *(Press(k) for k in keys), Speak(words), Press("0"))
    assert record.queue != "security"
    assert not any(line.startswith(EMERGENCY_NOTICE) for line in record.heard), record.heard


@pytest.mark.parametrize("language_key", ["1", "2"])
def test_the_emergency_notice_is_short_and_says_never_ask_once_before_the_uid(
    phone: Phone, language_key: str
) -> None:
    """Said whole, outside the UID prompt's <Gather> (a key there is lost): about 10 seconds
    (15 characters a second in English, 4.5 Han characters in Mandarin), with what a victim
    must hear: stay on the line, the freeze comes first, we never ask for the password or the
    two-factor code, nor charge to unfreeze. Said once before the UID prompt, not again in
    its introduction."""
    record = call(phone, Press(language_key), Press("1"), Press("*"))
    [notice] = [line for line in record.heard if line.startswith(EMERGENCY_NOTICE)]
    if language_key == "1":
        assert len(notice) / 15 <= 11.5, len(notice)
        for words in (
            "Stay on the line",
            "freeze your account first",
            "never ask for your password or two-factor code",
            "charge to unfreeze",
        ):
            assert words in notice, words
    else:
        han = len(re.findall("[\u4e00-\u9fff]", notice))
        assert han / 4.5 <= 11.5, han
        for words in ("请不要挂机", "先冻结您的账户", "绝不索要密码或两步验证码", "解冻也绝不收费"):
            assert words in notice, words
    uid = next(i for i, line in enumerate(record.heard) if "UID" in line or "U I D" in line)
    before = record.heard[: uid + 1]
    never = ("never ask", "never call", "绝不索要", "绝不会")
    assert sum(any(w in line for w in never) for line in before) == 1, before


@pytest.mark.parametrize(
    ("language_key", "menu_first", "advice"),
    [
        ("1", "If this sign-in was not you, press 1 now", "If you did not sign in yourself"),
        ("2", "如果这次登录不是您本人操作,请立即按1", "如果这次登录不是您本人操作,请马上"),
    ],
)
def test_a_login_alert_is_offered_the_freeze_before_the_advice_which_is_its_star(
    phone: Phone, language_key: str, menu_first: str, advice: str
) -> None:
    """A login not theirs may be a takeover in progress: the freeze first (1), the advice on
    star, then the freeze again; and by words at the main menu too."""
    frozen = call(phone, Press(language_key), Press("2"), Press("3"), Press("1"), Press("*"))
    menu = next(i for i, line in enumerate(frozen.heard) if line.startswith(menu_first))
    assert not any(line.startswith(advice) for line in frozen.heard[:menu]), frozen.heard
    assert not any(line.startswith(advice) for line in frozen.heard)
    assert frozen.queue == "security"
    starred = call(
        phone, Press(language_key), Press("2"), Press("3"), Press("*"), Press("1"), Press("*")
    )
    said = [line for line in starred.heard if line.startswith(advice)]
    assert len(said) == 1 and starred.queue == "security", starred.heard
    words = "I got a suspicious login alert" if language_key == "1" else "收到异常登录提醒"
    spoken = call(phone, Press(language_key), Speak(words), Press("1"), Press("*"))
    assert after_the_main_menu(spoken).startswith(menu_first), spoken.heard
    assert spoken.queue == "security"


@pytest.mark.parametrize(
    ("language_key", "revoke"),
    [
        (
            "1",
            "If you approved or signed something you doubt, revoke that approval now, in your "
            "wallet or on the block explorer's official page, never through a link someone sends "
            "you, and move what is left to a new wallet.",
        ),
        (
            "2",
            "如果您授权或签名了现在觉得可疑的内容,请立即在钱包里或区块浏览器的官方页面取消这个授权,"
            "不要点别人发来的链接,并把剩余资产转到新钱包。",
        ),
    ],
)
def test_defi_offers_the_security_team_first_and_its_advice_begins_revoke_it_now(
    phone: Phone, language_key: str, revoke: str
) -> None:
    """8, 6: the security team (3) is offered before any advice; the advice (star) begins
    with the one urgent line for a victim, then the menu again, whose 3 is the security
    team."""
    record = call(
        phone, Press(language_key), Press("8"), Press("6"), Press("*"), Press("3"), Press("*")
    )
    after = record.heard.index(next(line for line in record.heard if line.startswith(DEFI_FIRST)))
    assert record.heard[after + 1].startswith(revoke), record.heard
    assert record.queue == "security"


@pytest.mark.parametrize(
    ("language_key", "words", "queue"),
    [
        ("2", "对", "security"),
        ("2", "对的", "security"),
        ("2", "我不知道", "security"),
        ("1", "it was a scam", "security"),
        ("1", "I think someone took it", "security"),
        ("1", "I'm not sure", "security"),
        ("2", "对,是合约爆仓", "derivatives"),  # a trade named: 2's, though it says 对
        ("2", "不对", "derivatives"),  # a plain no: not stolen, as 不是被盗
        ("2", "不是的", "derivatives"),  # holds 1's 是的
    ],
)
def test_the_funds_question_hears_yes_and_no_in_the_callers_own_words(
    phone: Phone, language_key: str, words: str, queue: str
) -> None:
    """Asked whether someone else took the money: a plain yes, "it was a scam", or not
    knowing is the emergency lane at once, never "not a valid choice"; a plain no is a
    trade loss (2)."""
    money_gone = "all my money is gone" if language_key == "1" else "我的钱全没了"
    record = call(
        phone, Press(language_key), Speak(money_gone), Speak(words), Press("*"), Press("0")
    )
    assert record.queue == queue, record.heard
    assert "Sorry, that is not a valid choice." not in record.heard
    assert "抱歉,没能识别您的选择。" not in record.heard


@pytest.mark.parametrize(
    ("language_key", "keyed", "words"),
    [
        ("1", "12025550143", "no"),  # a number of ours
        ("1", SCAMMER, "no"),
        ("1", SCAMMER, "nope"),
        ("2", "12025550143", "没有"),
        ("2", "8613800138000", "没有"),
        ("2", "8613800138000", "不是"),
    ],
)
def test_a_plain_no_after_a_number_check_is_an_account_agent_not_a_retry(
    phone: Phone, language_key: str, keyed: str, words: str
) -> None:
    """ "Did you give them a code or move funds?": a plain no is an account agent, as
    silence, never "not a valid choice"; a no with a theft in it is still the emergency
    lane (test_a_plain_no_that_says_given_or_gone_is_not_taken_for_a_theft)."""
    record = call(phone, Press(language_key), Press("2"), Press("4"), Press(keyed), Speak(words))
    assert record.queue == "account", record.heard
    assert "Sorry, that is not a valid choice." not in record.heard
    assert "抱歉,没能识别您的选择。" not in record.heard


@pytest.mark.parametrize(
    ("language_key", "told"),
    [
        ("1", "If you don't have it, press star, then pound."),
        ("2", "如果没有号码,请先按星号键,再按井号键。"),
    ],
)
def test_the_number_prompt_says_star_for_no_number(
    phone: Phone, language_key: str, told: str
) -> None:
    record = call(phone, Press(language_key), Press("2"), Press("4"), Press("*"), Press("0"))
    assert any(told in line for line in record.heard), record.heard
    assert record.queue == "account"


@pytest.mark.parametrize(
    ("language_key", "told"),
    [
        ("1", "If you cannot, press star, then pound."),
        ("2", "如果无法查看,请先按星号键,再按井号键。"),
    ],
)
def test_a_pin_keyed_for_a_uid_is_told_star_skips(
    phone: Phone, language_key: str, told: str
) -> None:
    """A victim locked out of the app cannot look up their UID: one who keys their PIN at the
    UID prompt is told star skips, and star puts them through all the same."""
    record = call(phone, Press(language_key), Press("1"), Press("123456"), Press("*"))
    assert any(told in line for line in record.heard), record.heard
    assert record.queue == "security"
