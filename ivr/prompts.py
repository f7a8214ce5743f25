"""What the hotline says: one catalog per language (prompts/en.yaml, prompts/zh-CN.yaml).

A prompt is TTS text (with `{name}` variables; `{name:digits}` reads a number digit by
digit, as a ticket number must be) or an audio URL to <Play>. A key missing from a
language falls back to the base language (English), and `ivr routes check` reports it.

A time is said as each language says it (`calendar:`): `{opens}`, in the prompts after an
hours check found the hours closed, is when they next begin ("Monday at 9 AM",
"周一上午9点"), so the hours are written once, in the tree, holidays and all.
"""

from __future__ import annotations

import re
import string
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    HttpUrl,
    ValidationError,
    ValidationInfo,
    field_validator,
)

from ivr.exceptions import Problem, SourceError
from ivr.yamlfile import PathKey, YamlDoc, load_text, read_source

BASE_LANGUAGE = "en"
FORMAT_SPECS = {"", "digits"}
# Twilio's <Say voice> pattern (see the TwiML schema's voiceType).
VOICE_PATTERN = (
    r"^(man|woman|Polly\.[A-Za-z]+(-Neural|-Generative)?"
    r"|Google\.[a-zA-Z]{2,3}-[a-zA-Z0-9]+-[a-zA-Z0-9\-]+)$"
)


class AudioPrompt(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    audio: HttpUrl
    text: str | None = Field(default=None, description="transcript, shown by `ivr dial`")


# The variables each of a calendar's templates may use.
CALENDAR_FIELDS = {
    "time": {"hour", "minute", "period"},
    "time_on_the_hour": {"hour", "period"},
    "day_time": {"day", "time"},
}
# Prompt variables that are times (`Moment`): a catalog that uses one needs a `calendar`.
MOMENT_VARIABLES = frozenset({"opens"})
# Every variable the hotline fills in a prompt: a name outside these is a typo that would be
# said as nothing ("Your ticket number is ."). `render` holds the engine to the same list.
VARIABLES = frozenset(
    {"ticket", "last4", "key", "position", "minutes", "opens", "priority", "language"}
)


class Calendar(BaseModel):
    """How a language says a time ("Monday at 9:30 AM"). The defaults are English."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    weekdays: list[str] = Field(
        default=["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"],
        min_length=7,
        max_length=7,
        description="Monday first",
    )
    today: str = "today"
    tomorrow: str = "tomorrow"
    clock: Literal[12, 24] = 12
    am: str = "AM"
    pm: str = "PM"
    noon: str | None = Field(default=None, description="12:00-12:59, if said apart (中午)")
    evening: str | None = Field(default=None, description="from 18:00, if said apart (晚上)")
    hours: dict[Annotated[int, Field(ge=0, le=23)], Annotated[str, Field(min_length=1)]] = Field(
        default={},
        description="an hour said as a word, not as its numeral, by the hour the clock says "
        "(1-12 on a 12-hour clock): 2 is 两 in Chinese, 两点 as Chinese says it, never 二点 "
        "(spelled out, as 两分钟 is, for the voice to read no numeral)",
    )
    time: str = "{hour}:{minute} {period}"
    time_on_the_hour: str = Field(default="{hour} {period}", description="9 AM, not 9:00 AM")
    day_time: str = "{day} at {time}"

    @field_validator("time", "time_on_the_hour", "day_time")
    @classmethod
    def _template(cls, value: str, info: ValidationInfo) -> str:
        why = check_template(value)
        if why:
            raise ValueError(why)
        allowed = CALENDAR_FIELDS[info.field_name or ""]
        for _, name, _, _ in _FORMATTER.parse(value):
            if name is not None and name not in allowed:
                raise ValueError(
                    f"'{{{name}}}' is not known here (use {', '.join(sorted(allowed))})"
                )
        return value

    def say(self, at: datetime, now: datetime) -> str:
        """`at` as said on `now`'s day (both in the same time zone)."""
        if at.date() == now.date():
            day = self.today
        elif at.date() == now.date() + timedelta(days=1):
            day = self.tomorrow
        else:
            day = self.weekdays[at.weekday()]
        hour = at.hour
        period = ""
        if self.clock == 12:
            if hour < 12:
                period = self.am
            elif hour == 12 and self.noon:
                period = self.noon
            elif hour >= 18 and self.evening:
                period = self.evening
            else:
                period = self.pm
            hour = hour % 12 or 12
        fields = {
            "hour": self.hours.get(hour, hour),
            "minute": f"{at.minute:02d}",
            "period": period,
        }
        template = self.time_on_the_hour if at.minute == 0 else self.time
        said = _FORMATTER.format(template, **fields).strip()
        return _FORMATTER.format(self.day_time, day=day, time=said)


ENGLISH = Calendar()


@dataclass(frozen=True)
class Moment:
    """A time a prompt says in the caller's language: `at`, told on `now` (same zone)."""

    at: datetime
    now: datetime


# A catalog's language code (BCP 47's shape: en, zh-CN, zh-Hans-CN), as cases and agents name it.
LANGUAGE_CODE = r"^[a-z]{2,3}(-[A-Za-z0-9]{2,8})*$"


class CatalogFile(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    language: str = Field(pattern=LANGUAGE_CODE)
    name: str = Field(min_length=1, description="the language's own name, e.g. 中文")
    english_name: str | None = Field(
        default=None,
        min_length=1,
        description="its name in English, e.g. Mandarin Chinese: how the screen on an agent's "
        "phone (said in English) names a caller's language",
    )
    voice: str = Field(pattern=VOICE_PATTERN)
    say_language: str = Field(min_length=2, description="<Say language>, e.g. en-US, cmn-CN")
    speech_language: str = Field(min_length=2, description="<Gather language>, e.g. cmn-Hans-CN")
    calendar: Calendar | None = Field(
        default=None, description="how times are said; English if not given"
    )
    digits: list[Annotated[str, Field(min_length=1, pattern=r"^[^{}\s]+$")]] | None = Field(
        default=None,
        min_length=10,
        max_length=10,
        description="how `{name:digits}` says each digit, 0 to 9, where not as its numeral: "
        "a Chinese phone line says a lone 1 as 幺 (yao), never 一, which it blurs with 七",
    )
    prompts: dict[str, str | AudioPrompt]


@dataclass(frozen=True)
class Utterance:
    """One thing said or played: exactly one of text / audio is what Twilio gets."""

    key: str
    text: str | None
    audio: str | None
    voice: str
    say_language: str


class _Blank(dict[str, Any]):
    def __missing__(self, key: str) -> str:
        return ""


class _Formatter(string.Formatter):
    def __init__(self, digits: Sequence[str] | None = None) -> None:
        super().__init__()
        self.digits = digits  # a catalog's words for 0-9 (`CatalogFile.digits`)

    def format_field(self, value: Any, format_spec: str) -> str:
        if format_spec == "digits":
            # Twilio's TTS reads "1 2 3 4" digit by digit; "1234" would be "one thousand...".
            said = str(value)
            if self.digits is not None:
                return " ".join(self.digits[int(c)] if c in _NUMERALS else c for c in said)
            return " ".join(said)
        return str(super().format_field(value, format_spec))


_NUMERALS = frozenset("0123456789")


_FORMATTER = _Formatter()


@dataclass(frozen=True)
class Catalogs:
    """Every language's catalog; the base language is the fallback for missing keys."""

    by_language: Mapping[str, CatalogFile]
    sources: Mapping[str, str]  # language -> file text, kept so a tree version can be stored whole
    # language -> where each setting and prompt is in its file (its data dropped): findings
    # about a catalog are said at its line.
    places: Mapping[str, YamlDoc] = field(default_factory=dict, compare=False, repr=False)
    _keys_starting: dict[str, tuple[str, ...]] = field(
        default_factory=dict, init=False, compare=False, repr=False
    )

    @property
    def languages(self) -> list[str]:
        return list(self.by_language)

    def spoken(self, language: str | None) -> str:
        """`language` if a catalog speaks it, else the first catalog's."""
        return (
            language if language is not None and language in self.by_language else self.languages[0]
        )

    def keys_starting(self, prefix: str) -> tuple[str, ...]:
        """The base language's keys starting with `prefix`, sorted. Worked out once per prefix:
        the hold loop asks for its tips on every round of every waiting caller."""
        found = self._keys_starting.get(prefix)
        if found is None:
            found = tuple(
                sorted(k for k in self.catalog(BASE_LANGUAGE).prompts if k.startswith(prefix))
            )
            self._keys_starting[prefix] = found
        return found

    def variables(self, key: str) -> set[str]:
        """The variables the prompt `key` says, in any language."""
        found: set[str] = set()
        for cat in self.by_language.values():
            value = cat.prompts.get(key)
            if isinstance(value, str):
                found.update(variables_in(value))
        return found

    def variables_of(self, key: str, language: str) -> set[str]:
        """The variables `language`'s text of `key` says (none for a recording)."""
        value = self.by_language[language].prompts.get(key)
        return variables_in(value) if isinstance(value, str) else set()

    def has(self, key: str, language: str) -> bool:
        cat = self.by_language.get(language)
        return cat is not None and key in cat.prompts

    def problem(
        self, language: str, path: PathKey, message: str, severity: str = "error"
    ) -> Problem:
        """A finding about `language`'s catalog, at the line of `path` in its file (or of the
        nearest part of it there is)."""
        place = self.places.get(language) or YamlDoc(f"{language}.yaml", None)
        return place.problem(path, message, severity)

    def catalog(self, language: str) -> CatalogFile:
        return self.by_language.get(language) or self.by_language[BASE_LANGUAGE]

    def render(self, key: str, language: str, /, **variables: Any) -> Utterance:
        cat = self.catalog(language)
        value = cat.prompts.get(key)
        if value is None:
            cat = self.by_language[BASE_LANGUAGE]
            value = cat.prompts[key]
        if isinstance(value, AudioPrompt):
            return Utterance(key, value.text, str(value.audio), cat.voice, cat.say_language)
        assert variables.keys() <= VARIABLES, f"not in prompts.VARIABLES: {set(variables)}"
        if variables:
            calendar = cat.calendar or ENGLISH
            variables = {
                k: calendar.say(v.at, v.now) if isinstance(v, Moment) else v
                for k, v in variables.items()
            }
        formatter = _FORMATTER if cat.digits is None else _Formatter(cat.digits)
        try:
            text = formatter.vformat(value, (), _Blank(variables))
        except (IndexError, KeyError, AttributeError, ValueError):
            # Refused at load; should a stored older catalog still hold one, say it plainly.
            text = value.replace("{", "").replace("}", "")
        return Utterance(key, text, None, cat.voice, cat.say_language)


def variables_in(text: str) -> set[str]:
    """The variable names a well-formed template uses."""
    try:
        return {name for _, name, _, _ in _FORMATTER.parse(text) if name}
    except ValueError:
        return set()


def unknown_variables(doc: YamlDoc, cat: CatalogFile) -> list[Problem]:
    """Variables no part of the hotline fills: refused in a catalog file, where an operator
    can mend them (a stored older version is rebuilt as it was)."""
    problems = []
    for key, value in cat.prompts.items():
        if not isinstance(value, str) or check_template(value):
            continue
        unknown = [f"'{{{v}}}'" for v in sorted(variables_in(value) - VARIABLES)]
        if unknown:
            named = ", ".join(unknown[:-1]) + " and " + unknown[-1] if unknown[1:] else unknown[0]
            problems.append(
                doc.problem(
                    ("prompts", key),
                    f"{named} {'is not a variable' if len(unknown) == 1 else 'are not variables'}"
                    " the hotline fills (it fills "
                    + ", ".join(f"{{{v}}}" for v in sorted(VARIABLES))
                    + "): "
                    + (
                        "it would be said as nothing"
                        if len(unknown) == 1
                        else "each would be said as nothing"
                    ),
                )
            )
    return problems


# Twilio's <Say> takes at most 3,000 bytes of UTF-8 with Amazon Polly's voices (error 13521;
# 4,096 with its basic voices, 5,000 with Google's): past it, the text is cut or refused.
MAX_SAY_BYTES = 3000
_TAG = re.compile(r"<\s*/?\s*[A-Za-z][^<>]*>")


def unspeakable(doc: YamlDoc, cat: CatalogFile) -> list[Problem]:
    """Texts Twilio cannot say as written: empty (its warning 13520: the caller hears
    nothing), longer than a <Say> takes, or tagged as SSML (escaped, the tags are read out).
    Refused in a catalog file, where an operator can mend them; a stored older version is
    rebuilt as it was."""
    problems = []
    for key, value in cat.prompts.items():
        if not isinstance(value, str):
            continue
        size = len(value.encode())
        if not value.strip():
            why = "says nothing: Twilio refuses an empty <Say> and the caller hears silence"
        elif size > MAX_SAY_BYTES:
            why = (
                f"is {size:,} bytes long: Twilio's <Say> takes at most {MAX_SAY_BYTES:,} "
                "(UTF-8; a Chinese character is 3): split it in two prompts"
            )
        elif tag := _TAG.search(value):
            why = (
                f"'{tag.group()}' would be read out as written: the hotline escapes text, "
                "SSML tags are not supported"
            )
        else:
            continue
        problems.append(doc.problem(("prompts", key), why))
    return problems


# Tags whose first part differs but name one language, as Twilio's voices and recognisers
# name them: Mandarin is cmn or zh; Norwegian no/nb/nn; Filipino fil for Tagalog tl; the old
# codes iw (Hebrew), in (Indonesian), ji (Yiddish). Cantonese is spoken Chinese too, but
# another language to the ear: yue, and zh of Hong Kong or Macau (`_primary`).
_SAME_LANGUAGE = {
    "cmn": "zh",
    "nb": "no",
    "nn": "no",
    "fil": "tl",
    "iw": "he",
    "in": "id",
    "ji": "yi",
}


def _primary(tag: str) -> str:
    parts = tag.lower().split("-")
    if parts[0] == "zh" and ("hk" in parts or "mo" in parts or "yue" in parts):
        # Twilio's zh-HK voices and recogniser are Cantonese; Taiwan's zh-TW is Mandarin.
        return "yue"
    return _SAME_LANGUAGE.get(parts[0], parts[0])


def wrong_voice(doc: YamlDoc, cat: CatalogFile) -> list[Problem]:
    """A catalog whose voice or recogniser is another language's: a zh-CN catalog said
    with `say_language: en-US` reads Chinese characters to Mandarin callers in an English
    voice (or not at all), and heard with an English recogniser, no Mandarin word is."""
    problems = []
    own = _primary(cat.language)
    for name in ("say_language", "speech_language"):
        tag = str(getattr(cat, name))
        if _primary(tag) != own:
            problems.append(
                doc.problem(
                    (name,),
                    f"'{tag}' is not {cat.language}'s language: the callers of this catalog "
                    f"would be {'spoken to' if name == 'say_language' else 'heard'} in another",
                )
            )
    # Google's voices name their language ("Google.cmn-CN-Standard-A"); Polly's do not.
    voice_tag = cat.voice.removeprefix("Google.")
    if voice_tag != cat.voice and _primary(voice_tag) != own:
        problems.append(doc.problem(("voice",), f"'{cat.voice}' is not a {cat.language} voice"))
    return problems


def check_template(text: str) -> str | None:
    """Why a prompt template is unusable, or None."""
    try:
        for _, field, spec, conversion in _FORMATTER.parse(text):
            if field is None:
                continue
            if field == "":
                return "empty variable '{}' (escape a literal brace as '{{')"
            if not field.isidentifier():
                return (
                    f"'{{{field}}}': a variable is a plain name like {{ticket}} "
                    "(a literal brace is '{{')"
                )
            if conversion:
                return f"'{{{field}!{conversion}}}': conversions are not supported"
            if spec not in FORMAT_SPECS:
                return f"unknown format '{{{field}:{spec}}}' (allowed: {{name}}, {{name:digits}})"
    except ValueError as exc:
        return f"bad template: {exc}"
    return None


def _catalog_problem(doc: YamlDoc, err: Any) -> Problem:
    """Pydantic's finding, said as an operator reads the file: the setting's own name."""
    loc = tuple(err["loc"])
    message = str(err["msg"]).removeprefix("Value error, ")
    if err["type"] == "missing":
        message = f"'{loc[-1]}' is required"
    elif err["type"] == "extra_forbidden":
        message = f"unknown setting '{loc[-1]}'"
    elif loc[:1] == ("prompts",) and loc[-1:] == ("[key]",):
        loc = loc[:-1]
        message = (
            f"a prompt's name is a name like ticket_number, not the {type(loc[-1]).__name__} "
            f"{loc[-1]!r} (YAML reads unquoted numbers and yes/no as such)"
        )
    return doc.problem(loc, message)


def parse_catalog(doc: YamlDoc, expected_language: str | None = None) -> CatalogFile:
    problems: list[Problem] = []
    try:
        cat = CatalogFile.model_validate(doc.data)
    except ValidationError as exc:
        raise SourceError([_catalog_problem(doc, e) for e in exc.errors()]) from None
    if expected_language and cat.language != expected_language:
        problems.append(
            doc.problem(
                ("language",), f"file is named for '{expected_language}' but says '{cat.language}'"
            )
        )
    for key, value in cat.prompts.items():
        if isinstance(value, str):
            why = check_template(value)
            if why:
                problems.append(doc.problem(("prompts", key), why))
            elif cat.calendar is None and cat.language != BASE_LANGUAGE:
                times = MOMENT_VARIABLES.intersection(variables_in(value))
                if times:
                    problems.append(
                        doc.problem(
                            ("prompts", key),
                            f"says a time ({{{min(times)}}}) but the catalog has no `calendar:` "
                            f"to say it in {cat.language} (add one; `calendar: {{}}` says it "
                            "in English)",
                        )
                    )
    if problems:
        raise SourceError(problems)
    return cat


def catalog_files(folder: Path) -> list[Path]:
    """The catalogs in `folder`: every `<language>.yaml`, but hidden files, which editors
    leave beside the file being edited (Emacs's lock `.#en.yaml`, a link to nowhere; a
    `.en.yaml` backup) and no operator means as a language."""
    return sorted(f for f in folder.glob("*.yaml") if not f.name.startswith("."))


def load_catalogs(directory: Path | str) -> Catalogs:
    """Every `<language>.yaml` in `directory`; the base language must be among them."""
    folder = Path(directory)
    files = catalog_files(folder)
    problems: list[Problem] = []
    cats: dict[str, CatalogFile] = {}
    sources: dict[str, str] = {}
    places: dict[str, YamlDoc] = {}
    for f in files:
        try:
            text = read_source(f)
            doc = load_text(text, str(f))
            places[f.stem] = YamlDoc(doc.file, None, doc.lines)
            cats[f.stem] = parse_catalog(doc, f.stem)
            problems.extend(unknown_variables(doc, cats[f.stem]))
            problems.extend(unspeakable(doc, cats[f.stem]))
            problems.extend(wrong_voice(doc, cats[f.stem]))
            sources[f.stem] = text
        except SourceError as exc:
            problems.extend(exc.problems)
    if not problems and BASE_LANGUAGE not in cats:
        problems.append(
            Problem(str(folder), None, "", f"no {BASE_LANGUAGE}.yaml: the base catalog is required")
        )
    if problems:
        raise SourceError(problems)
    # Base language first: it is the default and the fallback.
    ordered = {BASE_LANGUAGE: cats[BASE_LANGUAGE], **cats}
    return Catalogs(ordered, {lang: sources[lang] for lang in ordered}, places)


def catalogs_from_sources(sources: Mapping[str, str]) -> Catalogs:
    """Rebuild catalogs from stored file texts (an older tree version)."""
    docs = {lang: load_text(text, f"{lang}.yaml", stored=True) for lang, text in sources.items()}
    cats = {lang: parse_catalog(doc, lang) for lang, doc in docs.items()}
    places = {lang: YamlDoc(doc.file, None, doc.lines) for lang, doc in docs.items()}
    ordered = {BASE_LANGUAGE: cats[BASE_LANGUAGE], **cats}
    return Catalogs(ordered, dict(sources), places)
