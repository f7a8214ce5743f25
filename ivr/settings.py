"""The one Settings class: every knob, read from the environment (or a local .env file).

It refuses what would make the hotline insecure rather than defaulting around it:
there is no default Twilio auth token and no switch that turns signature checks off.
"""

from __future__ import annotations

import ipaddress
import re
import zoneinfo
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar, overload

from pydantic import AnyHttpUrl, Field, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from ivr import numbers
from ivr.exceptions import ConfigError

PROJECT_ROOT = Path(__file__).resolve().parent.parent
E164 = numbers.E164.pattern

# A Twilio auth token is 32 hexadecimal digits; tutorials' and example files' placeholders
# ("your_auth_token", "xxxx...", "changeme") are not, and one digit 32 times is no secret.
_AUTH_TOKEN = re.compile(r"[0-9a-fA-F]{32}")


def _comma_list(value: object, pattern: str, what: str) -> object:
    """A list setting given as "a, b,c" (or a list): its items, each matching `pattern`,
    once each, in order; ValueError naming those that do not."""
    if isinstance(value, str):
        value = [item.strip() for item in value.split(",") if item.strip()]
    if not isinstance(value, list | tuple):
        return value
    wrong = [str(item) for item in value if not re.fullmatch(pattern, str(item))]
    if wrong:
        raise ValueError(f"not {what}: {', '.join(wrong)}")
    return tuple(dict.fromkeys(value))


class DatabaseSettings(BaseSettings):
    """What the commands that only touch the database need (`ivr db upgrade`, `ivr users
    ...`, `ivr calls ...`): a migration job is given the database and nothing else, not the
    Twilio auth token."""

    model_config = SettingsConfigDict(env_file=".env", extra="ignore", frozen=True)

    database_url: str = Field(
        default=f"sqlite:///{PROJECT_ROOT / 'ivr.sqlite3'}",
        validation_alias="IVR_DATABASE_URL",
    )
    migrations_dir: Path = Field(
        default=PROJECT_ROOT / "migrations", validation_alias="IVR_MIGRATIONS"
    )
    # A pooler between the hotline and PostgreSQL (docs/scaling.md): "transaction" for one in
    # transaction mode (PgBouncer's pool_mode = transaction), which hands each transaction
    # whichever server connection is free. psycopg prepares a statement by itself once it
    # has run it a few times, under a name that holds on one server connection only: the
    # next transaction's may lack it, or hold another statement by that name. "transaction"
    # prepares none. "none" (direct) and "session" (a server connection per client) need
    # nothing.
    database_pooler: Literal["none", "session", "transaction"] = Field(
        default="none", validation_alias="IVR_DATABASE_POOLER"
    )
    # Days caller data is kept after it ended (`ivr.retention`): purged daily by each instance
    # and by `ivr db purge`. 0: never. Less than 31 is refused: the figures (up to 31 days)
    # and follow-ups of recent tickets would find nothing.
    retention_days: int = Field(default=400, ge=0, validation_alias="IVR_RETENTION_DAYS")
    # Days a recording of an agent's call (IVR_RECORD_AGENT_CALLS) is kept at Twilio after it
    # was made: then the purge deletes it there, and its row here once Twilio said it is gone.
    # Unset: IVR_RETENTION_DAYS. 0: never (a regulator that wants recordings kept for years
    # may want that, or a number of days longer than IVR_RETENTION_DAYS). A case with a
    # recording still at Twilio is kept as long as it is (its caller's recordings can be
    # found by their number, and erased), whatever IVR_RETENTION_DAYS says.
    recording_retention_days: int | None = Field(
        default=None, ge=0, validation_alias="IVR_RECORDING_RETENTION_DAYS"
    )
    # Days a staff API token (the dashboard sign-in too) made by `ivr users add` or `ivr users
    # token` works: one copied once (shell history, a screenshot) does not work forever.
    token_days: int = Field(default=90, ge=1, le=365, validation_alias="IVR_TOKEN_DAYS")

    @field_validator("retention_days")
    @classmethod
    def _long_enough(cls, value: int) -> int:
        if 0 < value < 31:
            raise ValueError(
                "must be 0 (never purge) or at least 31: the figures and follow-ups of "
                "recent tickets need a month"
            )
        return value

    @field_validator("recording_retention_days")
    @classmethod
    def _recordings_long_enough(cls, value: int | None) -> int | None:
        if value is not None and 0 < value < 31:
            raise ValueError(
                "must be 0 (never delete them) or at least 31: supervisors review a month's "
                "calls, and a caller's complaint may come weeks later"
            )
        return value

    @property
    def database_named(self) -> str:
        """The database as whoever runs a command checks it is the right one: its URL without
        a password, and, when IVR_DATABASE_URL is not set, that it is the embedded file and
        where .env was looked for (a command run from another directory finds none, and
        would act on that file as if on production's)."""
        try:
            shown = make_url(self.database_url).render_as_string(hide_password=True)
        except ArgumentError:  # refused when opened, with the driver's words
            shown = "(an IVR_DATABASE_URL that is no database URL)"
        if "database_url" in self.model_fields_set:
            return shown
        return (
            f"{shown} (IVR_DATABASE_URL is not set: the embedded SQLite file; .env is read "
            f"from the current directory, {Path.cwd()})"
        )

    @property
    def recording_keep_days(self) -> int:
        """Days recordings are kept at Twilio (IVR_RECORDING_RETENTION_DAYS, or else
        IVR_RETENTION_DAYS); 0: never deleted."""
        if self.recording_retention_days is None:
            return self.retention_days
        return self.recording_retention_days


# The account's SID as Twilio's console shows it; empty: no account (no REST calls).
ACCOUNT_SID = r"^(AC[0-9a-fA-F]{32})?$"


class TwilioAccount(BaseSettings):
    """The Twilio account's credentials, when set, for the commands that may delete
    recordings there (`ivr db purge`, `ivr calls erase`): both or neither."""

    model_config = SettingsConfigDict(env_file=".env", extra="ignore", frozen=True)

    twilio_account_sid: str = Field(
        default="", pattern=ACCOUNT_SID, validation_alias="TWILIO_ACCOUNT_SID"
    )
    twilio_auth_token: str = Field(default="", validation_alias="TWILIO_AUTH_TOKEN", repr=False)

    @property
    def configured(self) -> bool:
        return bool(self.twilio_account_sid and self.twilio_auth_token)


def _loopback(host: str | None) -> bool:
    if host is None:
        return False
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


class AccountSettings(DatabaseSettings):
    """What the built-in account directory's commands need (`ivr accounts ...`): the database
    and the key its authenticator seeds are encrypted with; not the Twilio auth token."""

    secret_key: str | None = Field(default=None, validation_alias="IVR_SECRET_KEY", repr=False)

    @field_validator("secret_key")
    @classmethod
    def _fernet_key(cls, value: str | None) -> str | None:
        if value:
            from cryptography.fernet import Fernet

            try:
                Fernet(value.encode())
            except ValueError:
                raise ValueError(
                    "must be a Fernet key (32 url-safe base64 bytes); `ivr keygen` prints one"
                ) from None
        return value or None


class Settings(AccountSettings):
    """Everything `ivr serve` needs; refused whole if any of it is missing or unsafe."""

    twilio_auth_token: Annotated[str, Field(validation_alias="TWILIO_AUTH_TOKEN", repr=False)]
    # The token being rotated to (the console's secondary token): webhooks signed with it are
    # taken too, so that promoting it in the console turns away no caller on an instance not
    # yet given it. Only for checking signatures; REST calls use TWILIO_AUTH_TOKEN.
    twilio_auth_token_next: str | None = Field(
        default=None, validation_alias="TWILIO_AUTH_TOKEN_NEXT", repr=False
    )
    twilio_account_sid: str = Field(
        default="", pattern=ACCOUNT_SID, validation_alias="TWILIO_ACCOUNT_SID"
    )
    public_url: AnyHttpUrl = Field(validation_alias="IVR_PUBLIC_URL")
    routes: Path = Field(
        default=PROJECT_ROOT / "routes" / "hotline.yaml", validation_alias="IVR_ROUTES"
    )
    prompts_dir: Path = Field(default=PROJECT_ROOT / "prompts", validation_alias="IVR_PROMPTS")
    # Played between hold messages; Twilio's own public hold-music bucket by default.
    hold_music_url: AnyHttpUrl | None = Field(
        default=AnyHttpUrl(
            "http://com.twilio.sounds.music.s3.amazonaws.com/MARKOVICHAMP-Borghestral.mp3"
        ),
        validation_alias="IVR_HOLD_MUSIC_URL",
    )
    fallback_queue: str = Field(default="general", validation_alias="IVR_FALLBACK_QUEUE")
    # Twilio ends a call after 4 hours by default: a call quiet for longer lost its callback.
    call_max_age_seconds: int = Field(default=6 * 3600, ge=300, validation_alias="IVR_CALL_MAX_AGE")
    sweep_interval_seconds: float = Field(
        default=300.0, gt=0, validation_alias="IVR_SWEEP_INTERVAL"
    )
    # How often an instance checks which call-tree version is live (another may have reloaded).
    tree_sync_seconds: float = Field(default=5.0, gt=0, validation_alias="IVR_TREE_SYNC")
    # Reload by itself when the tree file or a prompt catalog changes (checked every 2 s).
    watch_routes: bool = Field(default=False, validation_alias="IVR_WATCH_ROUTES")
    # Peers whose X-Forwarded-For/-Proto `ivr serve` believes (uvicorn's forwarded_allow_ips:
    # comma-separated addresses or networks, "*" for any). The sign-in throttle counts by the
    # client address, so a header anyone could send must not decide it: name the TLS proxy.
    trusted_proxies: str = Field(
        default="127.0.0.1", min_length=1, validation_alias="IVR_TRUSTED_PROXIES"
    )

    @field_validator("trusted_proxies")
    @classmethod
    def _trusted_proxies(cls, value: str) -> str:
        # uvicorn ignores an entry it cannot read, and with it the proxy's headers: every
        # user would then share the proxy's address, silently.
        if value.strip() == "*":
            return value
        for entry in (e.strip() for e in value.split(",")):
            try:
                ipaddress.ip_network(entry)  # an address is a network of one
            except ValueError:
                raise ValueError(
                    f"{entry!r} is no IP address or network such as 172.30.57.0/24 "
                    "(comma-separated; or * alone, for any peer)"
                ) from None
        return value

    # Twilio waits 15 s for a webhook, then plays its own error: past this, answer from memory.
    webhook_deadline_seconds: float = Field(
        default=10.0, gt=0, le=14, validation_alias="IVR_WEBHOOK_DEADLINE"
    )
    # JSON lines for log collectors; text for a person at a terminal.
    log_format: Literal["json", "text"] = Field(default="json", validation_alias="IVR_LOG_FORMAT")
    # PostgreSQL connections per instance: a pool of `db_pool_size` kept open, and up to
    # `db_max_overflow` more under load. N instances open up to N x (size + overflow): keep that
    # under the server's max_connections (docs/scaling.md). Unused with SQLite.
    db_pool_size: int = Field(default=5, ge=1, le=100, validation_alias="IVR_DB_POOL_SIZE")
    db_max_overflow: int = Field(default=10, ge=0, le=200, validation_alias="IVR_DB_MAX_OVERFLOW")

    # PIN hashes the built-in directory computes at once per process (each about 23 ms of one
    # core). Unset: one fewer than the CPUs the process may use. Several `ivr serve` processes
    # on one machine share its CPUs: give each its share (docs/scaling.md).
    hashing_at_once: int | None = Field(
        default=None, ge=1, le=64, validation_alias="IVR_HASHING_AT_ONCE"
    )

    # Identity and account actions: the built-in directory (its key: AccountSettings), or the
    # exchange's own endpoint.
    identity_url: AnyHttpUrl | None = Field(default=None, validation_alias="IVR_IDENTITY_URL")
    identity_key: str | None = Field(default=None, validation_alias="IVR_IDENTITY_KEY", repr=False)
    identity_timeout: float = Field(
        default=3.0, gt=0, le=10, validation_alias="IVR_IDENTITY_TIMEOUT"
    )
    # Lockout: this many failed factors within the window locks verification for `seconds`.
    # At most 10: more, and a PIN's guesses per window stop being few (a lockout in name only).
    lockout_failures: int = Field(default=5, ge=1, le=10, validation_alias="IVR_LOCKOUT_FAILURES")
    lockout_window_seconds: int = Field(default=1800, ge=60, validation_alias="IVR_LOCKOUT_WINDOW")
    lockout_seconds: int = Field(default=1800, ge=60, validation_alias="IVR_LOCKOUT_SECONDS")
    # Password spraying: past this many failed factors from withheld or unattested calls
    # within the window, across accounts, such calls' secrets are not checked (they reach an
    # agent unverified). At most 500 (the lockout's read fetches that many) and a day (the
    # sweep keeps failures that long).
    unattested_failures: int = Field(
        default=30, ge=5, le=500, validation_alias="IVR_UNATTESTED_FAILURES"
    )
    unattested_window_seconds: int = Field(
        default=600, ge=60, le=86400, validation_alias="IVR_UNATTESTED_WINDOW"
    )
    # The hold loop's wait estimate, and when the call-back offer comes first.
    avg_handle_seconds: int = Field(default=240, ge=10, validation_alias="IVR_AVG_HANDLE_SECONDS")
    max_wait_seconds: int = Field(default=900, ge=30, validation_alias="IVR_MAX_WAIT")
    # A call back nobody answered is not offered again for this long, doubled at each miss.
    callback_retry_seconds: int = Field(
        default=300, ge=0, le=3600, validation_alias="IVR_CALLBACK_RETRY"
    )
    # A case an agent took but no caller was connected to within this time goes back in line;
    # one the agent finishes by hand stays theirs, and pages the on-call if an emergency
    # (`ivr.oncall.held_untalked`).
    offer_timeout_seconds: int = Field(default=600, ge=30, validation_alias="IVR_OFFER_TIMEOUT")
    # The agent's phone must take the call with a key (1) before the caller is put through: a
    # voicemail that picks up is not an agent. Off: any answer of the agent's phone counts.
    agent_screening: bool = Field(default=True, validation_alias="IVR_AGENT_SCREENING")
    # A case offered to an available agent at their desk (nothing to ring their phone for: a
    # call back to dial by hand, a withheld number) must be accepted within this time, or it
    # goes to the next agent and they are set away: an empty desk must not hold a victim.
    accept_timeout_seconds: int = Field(
        default=30, ge=5, le=3600, validation_alias="IVR_ACCEPT_TIMEOUT"
    )
    # A case waits this long for an agent who speaks its caller's language (`ivr users
    # languages`) before any agent is offered it; less in the emergency lane, where any agent
    # can freeze the account of a caller who verified by keypad. 0: at once.
    language_overflow_seconds: int = Field(
        default=60, ge=0, le=3600, validation_alias="IVR_LANGUAGE_OVERFLOW"
    )
    emergency_language_overflow_seconds: int = Field(
        default=15, ge=0, le=3600, validation_alias="IVR_EMERGENCY_LANGUAGE_OVERFLOW"
    )
    # A case an agent sent on (a transfer; back in line to be called back) is not offered to
    # them again for this long, as a contact centre's after-call work keeps a transfer from
    # its sender: another agent takes it meanwhile, however busy the others are now. Then
    # they may too (sooner in the emergency lane): a victim never waits for nobody because
    # only the agent who sent them on is free. 0: at once.
    transfer_return_seconds: int = Field(
        default=120, ge=0, le=3600, validation_alias="IVR_TRANSFER_RETURN"
    )
    emergency_transfer_return_seconds: int = Field(
        default=20, ge=0, le=3600, validation_alias="IVR_EMERGENCY_TRANSFER_RETURN"
    )
    # How often each instance offers the cases in line to the agents who said they are
    # available and have none (presence): the most a case waits for a free agent's phone.
    dispatch_seconds: float = Field(
        default=1.0, gt=0, le=3600, validation_alias="IVR_DISPATCH_INTERVAL"
    )
    # The API's reference pages (/docs, /redoc) and its schema (/openapi.json): a map of every
    # route for whoever reaches the server. Unset: on for a local http IVR_PUBLIC_URL (a
    # developer's), off for an https one (a public server), unless someone needs them.
    api_docs: bool | None = Field(default=None, validation_alias="IVR_API_DOCS")
    # Bearer token Prometheus must send for /metrics (its `authorization` scrape setting).
    # Unset (or empty): IVR_METRICS_OPEN says whether /metrics answers without one.
    metrics_token: str | None = Field(
        default=None, validation_alias="IVR_METRICS_TOKEN", repr=False
    )
    # Whether /metrics answers anyone who reaches it while IVR_METRICS_TOKEN is unset (404
    # otherwise). Unset: yes for a local http IVR_PUBLIC_URL (a developer's), no for an https
    # one (a public server), as for IVR_API_DOCS: a proxy or load balancer that passes it on
    # would show anyone when the security desk is swamped, and the lockout counters. true:
    # Prometheus scrapes the private address without a token and the proxy keeps it out.
    metrics_open: bool | None = Field(default=None, validation_alias="IVR_METRICS_OPEN")
    # The number outbound call-backs come from (a Twilio number of this account).
    caller_id: str | None = Field(default=None, pattern=E164, validation_alias="IVR_CALLER_ID")
    # The country codes of numbers the hotline contacts on a caller's say-so: a number keyed
    # to be called back on (a caller who withheld theirs keys one), a ticket texted to the
    # calling number (IVR_TEXT_TICKETS; caller IDs are spoofed at will): "+86,+1". Empty: any,
    # within the account's geographic permissions (voice, SMS) in the Twilio Console, which
    # are what stops a premium-rate number abroad (toll fraud, SMS pumping) costing the
    # exchange.
    callback_prefixes: Annotated[tuple[str, ...], NoDecode] = Field(
        default=(), validation_alias="IVR_CALLBACK_PREFIXES"
    )
    # Twilio records calls with agents, from the agent's answer, each side on its own channel
    # (the audio stays at Twilio; `recordings` keeps where). Callers are told first.
    record_agent_calls: bool = Field(default=False, validation_alias="IVR_RECORD_AGENT_CALLS")
    # Text each case's ticket to the calling number, from IVR_CALLER_ID, in the caller's
    # language (the catalogs' `ticket_text`): the reference callers are told to keep.
    text_tickets: bool = Field(default=False, validation_alias="IVR_TEXT_TICKETS")
    # The on-call's phones (comma-separated), texted from IVR_CALLER_ID when the emergency
    # case first in line has waited IVR_PAGE_AFTER seconds, and again every IVR_PAGE_REPEAT
    # while emergencies keep waiting that long (`ivr.oncall`). None: the page is only logged.
    page_numbers: Annotated[tuple[str, ...], NoDecode] = Field(
        default=(), validation_alias="IVR_PAGE_NUMBERS"
    )
    # Who pages come from: a number of the account, or a Messaging Service (MG...). None:
    # IVR_CALLER_ID, whose per-sender queue the ticket texts share: on a hack day a page
    # would wait behind hundreds of them (about one a second leaves a long code).
    page_from: str | None = Field(
        default=None, pattern=rf"{E164}|^MG[0-9a-fA-F]{{32}}$", validation_alias="IVR_PAGE_FROM"
    )
    # The next tier (a lead, a manager): paged as well, from the page that follows one
    # nobody acknowledged while the victims it was about still wait. Needs IVR_PAGE_NUMBERS.
    page_escalate: Annotated[tuple[str, ...], NoDecode] = Field(
        default=(), validation_alias="IVR_PAGE_ESCALATE"
    )
    # Ring the on-call numbers too, saying the page twice: a text may not wake anyone.
    page_call: bool = Field(default=False, validation_alias="IVR_PAGE_CALL")
    page_after_seconds: int = Field(default=60, ge=10, le=3600, validation_alias="IVR_PAGE_AFTER")
    page_repeat_seconds: int = Field(
        default=900, ge=60, le=86400, validation_alias="IVR_PAGE_REPEAT"
    )
    # A page nobody has acknowledged is sent again after this (while emergencies wait), not
    # after IVR_PAGE_REPEAT: a phone on silent must not cost a victim a quarter of an hour.
    # IVR_PAGE_REPEAT is the hold after someone said they are coming.
    page_unacked_seconds: int = Field(
        default=300, ge=60, le=86400, validation_alias="IVR_PAGE_UNACKED"
    )
    # A surge is paged at once, whatever the last page holds back: once the emergency lane is
    # at least twice what the last page said, and this many more (0: never).
    page_surge: int = Field(default=10, ge=0, le=10000, validation_alias="IVR_PAGE_SURGE")
    # Callers already holding when an announcement goes up hear it at the start of their hold
    # rounds that begin within this many seconds of it (a round remembers nothing: longer
    # rounds say it once, shorter ones again until then); 0: only the menus say it.
    announce_on_hold_seconds: int = Field(
        default=240, ge=0, le=3600, validation_alias="IVR_ANNOUNCE_ON_HOLD"
    )
    # The hotline's time zone (an IANA name): the figures' when a request names none (`tz`),
    # their hour and day bars on its clock, and the clock every dashboard page shows (the
    # call log's since/until typed on it). What is stored, and the API, stay UTC.
    report_tz: str = Field(default="UTC", validation_alias="IVR_REPORT_TZ")

    @field_validator("metrics_token")
    @classmethod
    def _metrics_token(cls, value: str | None) -> str | None:
        value = (value or "").strip()
        if value and len(value) < 16:
            raise ValueError("must be at least 16 characters (e.g. `openssl rand -hex 24`)")
        return value or None

    @field_validator("report_tz")
    @classmethod
    def _time_zone(cls, value: str) -> str:
        if value not in zoneinfo.available_timezones():
            raise ValueError("must be an IANA time zone name, e.g. Asia/Singapore or UTC")
        return value

    @field_validator("twilio_auth_token_next", mode="before")
    @classmethod
    def _no_next_token(cls, value: object) -> object:
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator("twilio_auth_token", "twilio_auth_token_next")
    @classmethod
    def _token_is_real(cls, value: str | None) -> str | None:
        if value is None:  # no rotation under way
            return None
        value = value.strip()
        if not _AUTH_TOKEN.fullmatch(value) or len(set(value.lower())) == 1:
            raise ValueError(
                "must be the real Twilio auth token (32 hexadecimal digits, Console -> "
                "Account -> API keys & tokens), not a placeholder"
            )
        return value

    @field_validator("page_numbers", "page_escalate", mode="before")
    @classmethod
    def _page_numbers(cls, value: object) -> object:
        # A number given twice is paged once.
        return _comma_list(value, E164, "phone numbers in E.164 form (+ and 7 to 15 digits)")

    @field_validator("callback_prefixes", mode="before")
    @classmethod
    def _callback_prefixes(cls, value: object) -> object:
        return _comma_list(value, r"\+[1-9][0-9]{0,3}", "country codes (+ and 1 to 4 digits)")

    @field_validator("fallback_queue")
    @classmethod
    def _queue_name(cls, value: str) -> str:
        if not 0 < len(value) <= 64:
            raise ValueError("a Twilio queue name has 1 to 64 characters")
        return value

    @model_validator(mode="after")
    def _nothing_secret_in_clear_text(self) -> Settings:
        # Twilio posts what callers key to IVR_PUBLIC_URL, and the hotline sends PINs to
        # IVR_IDENTITY_URL and believes its unsigned verdict: plain http only on this machine.
        for name, url in (
            ("IVR_PUBLIC_URL", self.public_url),
            ("IVR_IDENTITY_URL", self.identity_url),
        ):
            if url is not None and url.scheme != "https" and not _loopback(url.host):
                raise ValueError(
                    f"{name} must be https: plain http only on this machine (127.0.0.1, "
                    "localhost), or callers' PINs cross the network in clear text"
                )
        return self

    @model_validator(mode="after")
    def _identity_endpoint_is_signed(self) -> Settings:
        if self.identity_url and not (self.identity_key and len(self.identity_key) >= 16):
            raise ValueError(
                "IVR_IDENTITY_URL needs IVR_IDENTITY_KEY (16+ characters) to sign requests"
            )
        return self

    @model_validator(mode="after")
    def _pages_can_be_sent(self) -> Settings:
        if self.page_call and not self.page_numbers:
            raise ValueError("IVR_PAGE_CALL needs IVR_PAGE_NUMBERS: the numbers to ring")
        if self.page_escalate and not self.page_numbers:
            raise ValueError("IVR_PAGE_ESCALATE needs IVR_PAGE_NUMBERS: the first tier")
        if self.page_numbers and not (
            self.twilio_account_sid and (self.caller_id or self.page_from)
        ):
            raise ValueError(
                "IVR_PAGE_NUMBERS needs TWILIO_ACCOUNT_SID and IVR_PAGE_FROM or IVR_CALLER_ID: "
                "the on-call are texted through Twilio, from that number"
            )
        if self.page_call and not self.page_caller_id:
            raise ValueError(
                "IVR_PAGE_CALL needs a number to ring the on-call from: IVR_PAGE_FROM is a "
                "Messaging Service, which sends texts only; set IVR_CALLER_ID"
            )
        return self

    @property
    def on_call_numbers(self) -> tuple[str, ...]:
        """Every number a page may go to: the on-call, then the next tier."""
        return self.page_numbers + tuple(
            n for n in self.page_escalate if n not in self.page_numbers
        )

    @property
    def page_caller_id(self) -> str | None:
        """The number the on-call's phones are rung from: IVR_PAGE_FROM, unless that is a
        Messaging Service; else IVR_CALLER_ID."""
        if self.page_from and not self.page_from.startswith("MG"):
            return self.page_from
        return self.caller_id

    @model_validator(mode="after")
    def _tickets_can_be_texted(self) -> Settings:
        if self.text_tickets and not (self.twilio_account_sid and self.caller_id):
            raise ValueError(
                "IVR_TEXT_TICKETS needs TWILIO_ACCOUNT_SID and IVR_CALLER_ID: tickets are "
                "texted through Twilio, from that number"
            )
        if self.text_tickets and not self.callback_prefixes:
            raise ValueError(
                "IVR_TEXT_TICKETS needs IVR_CALLBACK_PREFIXES, the country codes the exchange "
                "serves: caller IDs are spoofed at will, and texts to premium numbers abroad "
                "are paid by the exchange (SMS pumping)"
            )
        return self

    @model_validator(mode="after")
    def _pool_fits_a_verifying_webhook(self) -> Settings:
        # A webhook that opens a case holds two connections at once (the call's, and the
        # identity directory's for the caller-ID signal): with fewer, it would time out to the
        # fallback.
        if self.db_pool_size + self.db_max_overflow < 2:
            raise ValueError("IVR_DB_POOL_SIZE + IVR_DB_MAX_OVERFLOW must be at least 2")
        return self

    @property
    def hold_music_url_str(self) -> str | None:
        return str(self.hold_music_url) if self.hold_music_url else None

    @property
    def base_url(self) -> str:
        """IVR_PUBLIC_URL without its trailing slash: the prefix of every URL Twilio signs."""
        return str(self.public_url).rstrip("/")

    @property
    def public_https(self) -> bool:
        """Whether IVR_PUBLIC_URL is https: a public server (plain http is a developer's)."""
        return self.public_url.scheme == "https"

    @property
    def serves_api_docs(self) -> bool:
        """IVR_API_DOCS, or by default whether the public URL is plain http (not public)."""
        return self.api_docs if self.api_docs is not None else not self.public_https

    @property
    def serves_open_metrics(self) -> bool:
        """Whether /metrics answers without a token, IVR_METRICS_TOKEN being unset:
        IVR_METRICS_OPEN, or by default whether the public URL is plain http (not public)."""
        return self.metrics_open if self.metrics_open is not None else not self.public_https


S = TypeVar("S", bound=DatabaseSettings)

# What a setting refused for its form must be, as an example to copy.
_WANTED = {
    "IVR_PUBLIC_URL": "a whole URL, such as https://hotline.example.com",
    "IVR_IDENTITY_URL": "a whole URL, such as https://accounts.internal.example.com",
    "IVR_HOLD_MUSIC_URL": "a whole URL, such as https://cdn.example.com/hold.mp3",
    "IVR_CALLER_ID": "a number in E.164, such as +15551234567",
    "IVR_PAGE_FROM": "a number in E.164, such as +15551234567, or a Messaging Service SID (MG...)",
    "TWILIO_ACCOUNT_SID": "the account's SID from Twilio's console: AC and 32 hexadecimal digits",
}

_ENV_NAMES = {
    "twilio_auth_token": "TWILIO_AUTH_TOKEN",
    "twilio_auth_token_next": "TWILIO_AUTH_TOKEN_NEXT",
    "public_url": "IVR_PUBLIC_URL",
    "database_url": "IVR_DATABASE_URL",
    "database_pooler": "IVR_DATABASE_POOLER",
    "fallback_queue": "IVR_FALLBACK_QUEUE",
    "hold_music_url": "IVR_HOLD_MUSIC_URL",
    "secret_key": "IVR_SECRET_KEY",
    "metrics_token": "IVR_METRICS_TOKEN",
    "identity_url": "IVR_IDENTITY_URL",
    "identity_key": "IVR_IDENTITY_KEY",
    "caller_id": "IVR_CALLER_ID",
    "page_from": "IVR_PAGE_FROM",
    "page_numbers": "IVR_PAGE_NUMBERS",
    "callback_prefixes": "IVR_CALLBACK_PREFIXES",
    "text_tickets": "IVR_TEXT_TICKETS",
    "call_max_age_seconds": "IVR_CALL_MAX_AGE",
    "sweep_interval_seconds": "IVR_SWEEP_INTERVAL",
    "db_pool_size": "IVR_DB_POOL_SIZE",
    "db_max_overflow": "IVR_DB_MAX_OVERFLOW",
    "webhook_deadline_seconds": "IVR_WEBHOOK_DEADLINE",
    "trusted_proxies": "IVR_TRUSTED_PROXIES",
    "hashing_at_once": "IVR_HASHING_AT_ONCE",
    "report_tz": "IVR_REPORT_TZ",
    "token_days": "IVR_TOKEN_DAYS",
}


@overload
def load_settings(**overrides: Any) -> Settings: ...
@overload
def load_settings(kind: type[S], **overrides: Any) -> S: ...
def load_settings(kind: type[DatabaseSettings] = Settings, **overrides: Any) -> DatabaseSettings:
    """Settings from the environment, or a ConfigError naming each bad variable (no traceback)."""
    try:
        return kind(**overrides)
    except ValidationError as exc:
        lines = []
        for err in exc.errors():
            if not err["loc"]:  # a check of several settings: its words name them
                lines.append(str(err["msg"]).removeprefix("Value error, "))
                continue
            name = _ENV_NAMES.get(str(err["loc"][0]), str(err["loc"][0]))
            if err["type"] == "missing":
                reason = "is not set"
            elif name in _WANTED and err["type"] in ("string_pattern_mismatch", "url_parsing"):
                # pydantic's words ("should match pattern '^\\+[1-9]...'") say what is
                # wrong to a developer; an operator needs what to type.
                reason = f"must be {_WANTED[name]}"
            else:
                reason = str(err["msg"]).removeprefix("Value error, ")
            lines.append(f"{name} {reason}")
        missing = any(err["type"] == "missing" for err in exc.errors())
        refusing = "refusing to start" if kind is Settings else "refusing to run"
        raise ConfigError(f"{refusing}: " + "; ".join(lines) + _where_env(missing)) from None


def _where_env(missing: bool) -> str:
    """Where settings are read from, when one is missing: `.env` is read from the current
    directory, so a command run from anywhere else does not see the checkout's."""
    if not missing or Path(".env").exists():
        return ""
    here = Path.cwd()
    hint = f" (read from the environment, or from .env in the current directory: {here} has none"
    checkout = PROJECT_ROOT / ".env"
    if checkout.exists() and checkout.parent.resolve() != here.resolve():
        hint += f"; run it from {checkout.parent}, where .env is"
    return hint + ")"
