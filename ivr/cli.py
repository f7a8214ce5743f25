"""The `ivr` command: serve the hotline, check and try call trees, manage the database."""

from __future__ import annotations

import logging
import logging.config
import re
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, TypeVar, get_args

import typer
from pydantic import Field, ValidationError
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from ivr.exceptions import ConfigError, IVRError, PhoneError, Problem, SourceError
from ivr.phone import (
    Answer,
    CallRecord,
    HangUp,
    Party,
    Phone,
    Press,
    Prompt,
    ScriptedParty,
    Silent,
    Speak,
    parse_script,
)
from ivr.settings import (
    PROJECT_ROOT,
    AccountSettings,
    DatabaseSettings,
    Settings,
    TwilioAccount,
    load_settings,
)

if TYPE_CHECKING:
    from sqlalchemy import Engine

    from ivr.identity import LocalDirectory
    from ivr.tree import CompiledTree


def utcnow() -> datetime:
    return datetime.now(UTC)


app = typer.Typer(
    help="Exchange support hotline (Twilio Voice IVR).",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
routes_app = typer.Typer(help="Check call tree files.", no_args_is_help=True)
db_app = typer.Typer(help="The hotline's database.", no_args_is_help=True)
users_app = typer.Typer(
    help="People who use the API: agents, supervisors, operators.", no_args_is_help=True
)
accounts_app = typer.Typer(help="The built-in identity directory.", no_args_is_help=True)
app.add_typer(routes_app, name="routes")
app.add_typer(db_app, name="db")
app.add_typer(users_app, name="users")
app.add_typer(accounts_app, name="accounts")
calls_app = typer.Typer(
    help="The call log, for a terminal (caller numbers masked).", no_args_is_help=True
)
app.add_typer(calls_app, name="calls")


# A name as the audit log takes it from the environment (SUDO_USER): a login name's
# characters, the rest replaced; as long as a login name may be.
_NOT_IN_A_LOGIN = re.compile(r"[^A-Za-z0-9._@$-]")


def cli_actor() -> str:
    """Who ran a command, as the audit log names them: `cli:` and the process's effective
    user as the system knows it (its password entry; `uid:1000` in a container whose uid has
    none), never $USER or $LOGNAME, which anyone sets. Run with sudo, the login that ran sudo
    first, as sudo says it (SUDO_USER): `cli:alice via sudo as root`. SUDO_USER is sudo's
    word, unchecked: whoever already runs as the effective user can set it, which is why
    that user is named too. At most 80 characters (the column)."""
    import os
    import pwd

    uid = os.geteuid()
    try:
        name = pwd.getpwuid(uid).pw_name or f"uid:{uid}"
    except KeyError:
        name = f"uid:{uid}"
    sudo = _NOT_IN_A_LOGIN.sub("?", os.environ.get("SUDO_USER", "").strip())[:32]
    said = f"{sudo} via sudo as {name}" if sudo and sudo != name else name
    return f"cli:{said}"[:80]


def _fail(message: str) -> typer.Exit:
    typer.secho(message, err=True, fg=typer.colors.RED)
    return typer.Exit(code=1)


S = TypeVar("S", bound=DatabaseSettings)


def _settings(kind: type[S]) -> S:
    """`kind`'s settings, or the command fails saying which are wrong: Settings for serving;
    AccountSettings for the account directory's commands (the database and IVR_SECRET_KEY
    alone); DatabaseSettings for those that touch only the database (no Twilio token or
    public URL needed)."""
    try:
        return load_settings(kind)
    except ConfigError as exc:
        raise _fail(str(exc)) from None


# `ivr serve`'s own lines, before and beside the server's: in its log format (JSON lines by
# default), at their level, so that what alerts on `"level": "error"` sees a refusal too.
serve_log = logging.getLogger("ivr.cli")


class _LogSettings(BaseSettings):
    """IVR_LOG_FORMAT alone, read as Settings reads it (the environment, then .env): when the
    other settings are refused, the line that says so must still be in the log's format."""

    model_config = SettingsConfigDict(env_file=".env", extra="ignore", frozen=True)
    log_format: str = Field(default="json", validation_alias="IVR_LOG_FORMAT")


def _serve_logging(fmt: str | None = None) -> None:
    from ivr.observe import log_config

    if fmt is None:
        try:
            fmt = _LogSettings().log_format
        except ValidationError:  # an unreadable .env: Settings says what is wrong with it
            fmt = "json"
    logging.config.dictConfig(log_config("text" if fmt == "text" else "json"))


def _refuse(message: str) -> typer.Exit:
    """`ivr serve` will not start: said as an error in the log, and exit status 1."""
    serve_log.error("%s", message)
    return typer.Exit(code=1)


@app.command()
def serve(
    host: Annotated[str, typer.Option(help="interface to listen on")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port")] = 8000,
) -> None:
    """Upgrade the database schema to head, load the call tree, and serve the webhooks."""
    import uvicorn

    from ivr.db import upgrade
    from ivr.hotline import prompts_refused
    from ivr.observe import log_config
    from ivr.tree import load_tree
    from ivr.web import create_app

    try:
        settings = load_settings(Settings)
    except ConfigError as exc:
        _serve_logging()
        raise _refuse(str(exc)) from None
    _serve_logging(settings.log_format)
    tree: CompiledTree | None = None
    refusal: SourceError | None = None
    try:
        loaded = load_tree(settings.routes, settings.prompts_dir)
        refusal = prompts_refused(settings, loaded)
        tree = loaded if refusal is None else None
    except SourceError as exc:
        refusal = exc
    try:
        upgrade(settings.database_url, migrations=settings.migrations_dir)
    except Exception as exc:  # the driver's own message says what is wrong (host, auth, file)
        raise _refuse(
            f"refusing to start: cannot upgrade the database: {type(exc).__name__}: {exc}"
        ) from None
    from_file = tree is not None
    if tree is None:
        # A file saved broken (a reload refused it, and the old tree stayed live) must not
        # keep the hotline down at the next restart: the live version serves on, loudly.
        tree = _live_tree(settings)
        if tree is None:
            raise _refuse(f"refusing to start: the call tree has errors\n{refusal}")
        serve_log.error(
            "the call tree file is refused:\n%s\nserving the live version %s from the "
            "database instead: mend the file, then reload",
            refusal,
            tree.version,
        )
    serve_log.info("database: %s", settings.database_named)
    if settings.database_url.startswith("sqlite") and settings.base_url.startswith("https"):
        # One process, one machine, no second instance: the embedded default, fine for a
        # trial; a public hotline's cases belong in PostgreSQL (docs/production.md).
        serve_log.warning(
            "a public (https) hotline on the embedded SQLite database: set IVR_DATABASE_URL"
            " to PostgreSQL for production"
        )
    serve_log.info(
        "call tree %s version %s: %d nodes", tree.file, tree.version, len(tree.tree.nodes)
    )
    sized = not settings.twilio_account_sid or _size_twilio_queues(settings, tree)
    # In full, as pasted into Twilio's console: a path prefix (IVR_PUBLIC_URL's) included.
    base = settings.base_url
    serve_log.info("Twilio voice URL (a call comes in): %s/twilio/voice", base)
    serve_log.info("Twilio status callback URL: %s/twilio/status", base)
    # Served by these instances: it helps when one of several fails, not when the one host
    # is down, where only a TwiML Bin at Twilio answers (docs/production.md).
    serve_log.info(
        "Twilio fallback URL (primary handler fails): %s/twilio/fallback with several"
        " instances behind a balancer; on one host, a TwiML Bin (docs/production.md)",
        base,
    )
    if settings.page_numbers:
        serve_log.info("Twilio messaging URL (on-call replies): %s/twilio/sms", base)
    uvicorn.run(
        create_app(settings, tree=tree, make_live=from_file, queues_sized=sized),
        host=host,
        port=port,
        proxy_headers=True,
        forwarded_allow_ips=settings.trusted_proxies,
        log_config=log_config(settings.log_format),
    )


def _size_twilio_queues(settings: Settings, tree: CompiledTree) -> bool:
    """The tree's queues made to hold Twilio's most callers (`ivr.queues`). Failing, it is
    said and the hotline serves anyway (the queues Twilio makes still hold 1,000 each), and
    its job tries again every IVR_TREE_SYNC seconds. Whether they were sized."""
    from ivr.queues import size_queues
    from ivr.web import rest_client

    try:
        done = size_queues(rest_client(settings), [*tree.queues, settings.fallback_queue])
    except Exception as exc:  # Twilio's refusal or the network's: said, not fatal
        serve_log.warning(
            "Twilio's queues not sized (%s: %s); a queue Twilio makes holds 1,000 callers, "
            "and the next are told the lines are full; tried again every IVR_TREE_SYNC seconds",
            type(exc).__name__,
            exc,
        )
        return False
    for line in done:
        serve_log.info("Twilio queue %s", line)
    return True


def _live_tree(settings: Settings) -> CompiledTree | None:
    """The version live everywhere (the database says), if it still serves these settings."""
    from ivr.db import create_db_engine
    from ivr.hotline import prompts_refused
    from ivr.store import active_tree_version, load_tree_version
    from ivr.tree import tree_from_stored

    # Upgraded already, by `serve`.
    engine = create_db_engine(settings.database_url, pooler=settings.database_pooler)
    try:
        with engine.connect() as conn:
            version = active_tree_version(conn)
            stored = load_tree_version(conn, version=version) if version else None
    finally:
        engine.dispose()
    if stored is None:
        return None
    try:
        tree = tree_from_stored(stored.source, stored.file, stored.prompts, in_progress=True)
    except SourceError:
        return None
    return None if prompts_refused(settings, tree) is not None else tree


@db_app.command("upgrade")
def db_upgrade() -> None:
    """Bring the database schema to the newest migration (run once per deployment)."""
    from ivr.db import upgrade

    settings = _settings(DatabaseSettings)
    try:
        upgrade(settings.database_url, migrations=settings.migrations_dir)
    except Exception as exc:
        raise _fail(f"cannot upgrade the database: {type(exc).__name__}: {exc}") from None
    typer.echo(f"database is at the newest schema: {settings.database_named}")


@db_app.command("purge")
def db_purge(
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="count what would be deleted, delete nothing")
    ] = False,
) -> None:
    """Delete caller data that ended more than IVR_RETENTION_DAYS ago, as each instance does
    daily: closed cases, calls no case holds, their events, old pages; and, with the Twilio
    account's credentials (TWILIO_ACCOUNT_SID, TWILIO_AUTH_TOKEN), the recordings older than
    IVR_RECORDING_RETENTION_DAYS at Twilio, then their rows. A case with a recording left at
    Twilio is kept. A purge that deleted something is audited (`purge`, as `cli:<user>`)."""

    from ivr.retention import purge, purgeable

    settings = _settings(DatabaseSettings)
    days, recording_days = settings.retention_days, settings.recording_keep_days
    if not (days or recording_days):
        raise _fail("IVR_RETENTION_DAYS is 0: caller data is never purged")
    keep = timedelta(days=days) if days else None
    keep_recordings = timedelta(days=recording_days) if recording_days else None
    account = TwilioAccount()
    twilio = _twilio_client(account) if account.configured else None
    db = _database(settings, patient=True)
    with db.connect() as conn:
        if dry_run:
            counts = purgeable(
                conn, now=utcnow(), keep=keep, twilio=twilio, keep_recordings=keep_recordings
            )
        else:
            counts = purge(
                conn,
                now=utcnow(),
                keep=keep,
                twilio=twilio,
                keep_recordings=keep_recordings,
                actor=cli_actor(),
            )
    said = "would delete" if dry_run else "deleted"
    ended = f"ended over {days} days ago" if days else "caller data kept (IVR_RETENTION_DAYS 0)"
    recorded = (
        f", recordings at Twilio made over {recording_days} days ago"
        if recording_days
        else ", recordings never deleted (IVR_RECORDING_RETENTION_DAYS 0)"
    )
    typer.echo(f"{ended}{recorded}, {said}: {counts.describe()}")
    if counts.recordings_left:
        why = (
            "Twilio failed, or they are a region's (see the log); tried again at the next purge"
            if twilio is not None
            else "no TWILIO_ACCOUNT_SID and TWILIO_AUTH_TOKEN to delete them with"
        )
        typer.echo(
            f"{counts.recordings_left} recordings old enough to go are still at Twilio ({why}):"
            " their rows and cases are kept until they are deleted there"
        )


def _twilio_client(account: TwilioAccount) -> Any:
    """The Twilio REST client the commands delete recordings with."""
    from ivr.web import rest_client

    return rest_client(account)


class _PromptsFolder(BaseSettings):
    """IVR_PROMPTS alone, read as the server reads it (the environment, then .env): the
    catalogs a tree is checked, drawn or walked with when no --prompts is given."""

    model_config = SettingsConfigDict(env_file=".env", extra="ignore", frozen=True)
    prompts_dir: Path = Field(default=PROJECT_ROOT / "prompts", validation_alias="IVR_PROMPTS")


def _catalogs_folder(given: Path | None) -> Path:
    """--prompts when given (or IVR_PROMPTS in the environment), else IVR_PROMPTS from .env,
    else the project's prompts/: the folder the server beside this .env would load."""
    if given is not None:
        return given
    try:
        return _PromptsFolder().prompts_dir
    except ValidationError as exc:
        wrong = "; ".join(f"{e['loc'][0]}: {e['msg']}" for e in exc.errors())
        raise _fail(f"cannot read IVR_PROMPTS: {wrong}") from None


PromptsOption = Annotated[
    Path | None,
    typer.Option(
        envvar="IVR_PROMPTS",
        show_default=False,
        help="prompt catalogs folder [default: IVR_PROMPTS from the environment or .env, "
        "as the server reads it, else the project's prompts/]",
    ),
]


@routes_app.command("check")
def routes_check(
    file: Annotated[Path, typer.Argument(help="call tree YAML file")],
    prompts: PromptsOption = None,
) -> None:
    """Validate a call tree with the prompt catalogs: every error and warning (exit 1 on errors).
    What the server's settings in this environment (or .env) turn on is checked too: a catalog
    without `recording_notice` when IVR_RECORD_AGENT_CALLS is on, say, which reload refuses."""
    from ivr.tree import load_tree

    prompts = _catalogs_folder(prompts)
    try:
        tree = load_tree(file, prompts)
        refused = _refused_with_these_settings(tree, prompts)
        if refused:
            raise SourceError(tree.warnings + refused)
    except SourceError as exc:
        for problem in exc.problems:
            typer.echo(str(problem))
        errors = sum(p.severity == "error" for p in exc.problems)
        raise _fail(
            f"{file}: {errors} error(s); the tree would be refused (catalogs: {prompts})"
        ) from None
    for problem in tree.warnings:
        typer.echo(str(problem))
    # Which catalogs: a draft's own folder is checked only when it is named (--prompts).
    typer.echo(
        f"{file}: OK, {len(tree.tree.nodes)} nodes, {len(tree.warnings)} warning(s), "
        f"version {tree.version} (catalogs: {prompts})"
    )


class _PromptSettings(BaseSettings):
    """The settings that make prompts required (`ivr.hotline.prompts_refused`), read as the
    server reads them (the environment, then .env), and no others: a tree is checked where
    the Twilio token and the database are not set."""

    model_config = SettingsConfigDict(env_file=".env", extra="ignore", frozen=True)
    record_agent_calls: bool = Field(default=False, validation_alias="IVR_RECORD_AGENT_CALLS")
    text_tickets: bool = Field(default=False, validation_alias="IVR_TEXT_TICKETS")


def _refused_with_these_settings(tree: CompiledTree, prompts: Path) -> list[Problem]:
    """What reload and `ivr serve` would refuse in these catalogs with the settings of this
    environment, each at its catalog line and naming the setting that made it so."""
    from ivr.hotline import RECORDING_NOTICE, TICKET_TEXT, prompts_refused

    try:
        flags = _PromptSettings()
    except ValidationError as exc:
        wrong = "; ".join(f"{e['loc'][0]}: {e['msg']}" for e in exc.errors())
        raise _fail(f"cannot read the settings that make prompts required: {wrong}") from None
    settings = Settings.model_construct(**flags.model_dump(), prompts_dir=prompts)
    refusal = prompts_refused(settings, tree)
    if refusal is None:
        return []
    on = {
        RECORDING_NOTICE: "IVR_RECORD_AGENT_CALLS" if flags.record_agent_calls else None,
        TICKET_TEXT: "IVR_TEXT_TICKETS" if flags.text_tickets else None,
    }
    return [_at_catalog_line(tree, p, on) for p in refusal.problems]


def _at_catalog_line(tree: CompiledTree, problem: Problem, on: dict[str, str | None]) -> Problem:
    """`problem` (about a catalog file, without a line) at its prompt's line, or at the
    catalog's `prompts:` for one missing, with the setting that requires it named."""
    named = re.match(r"prompt '([^']+)'", problem.message)
    language = Path(problem.file).name.removesuffix(".yaml")
    setting = on.get(named[1]) if named else None
    settings = [setting] if setting else [name for name in on.values() if name]
    message = (
        f"{problem.message} ({' and '.join(settings)} {'is' if len(settings) == 1 else 'are'} "
        "on in this environment: reload would refuse these catalogs)"
    )
    if not named or language not in tree.catalogs.by_language:
        return Problem(problem.file, problem.line, problem.path, message, problem.severity)
    found = tree.catalogs.problem(language, ("prompts", named[1]), message, problem.severity)
    return Problem(problem.file, found.line, found.path, message, problem.severity)


@routes_app.command("graph")
def routes_graph(
    file: Annotated[Path, typer.Argument(help="call tree YAML file")],
    fmt: Annotated[str, typer.Option("--format", help="mermaid, dot or svg")] = "mermaid",
    prompts: PromptsOption = None,
) -> None:
    """Draw the tree: each node with its kind and prompt, each edge with its key or keyword,
    the emergency path highlighted. Prints to standard output. A tree whose graph has errors
    (a loop, a dead end, an unknown target) is drawn with them marked, its errors on
    standard error, exit 1; one whose YAML or schema is wrong is not drawn."""
    from ivr import graph
    from ivr.tree import load_tree, load_tree_to_draw

    draw = {"mermaid": graph.mermaid, "dot": graph.dot, "svg": graph.svg}.get(fmt)
    if draw is None:
        raise _fail("--format must be mermaid, dot or svg")
    folder = _catalogs_folder(prompts)
    refused: SourceError | None = None
    try:
        tree = load_tree(file, folder)
    except SourceError as exc:
        refused = exc
        try:
            tree = load_tree_to_draw(file, folder)
        except SourceError:
            raise _fail(f"the tree has errors:\n{exc}") from None
    try:
        typer.echo(draw(tree), nl=False)
    except (graph.GraphvizMissing, graph.GraphvizFailed) as exc:
        raise _fail(str(exc)) from None
    if refused is not None:
        raise _fail(f"the tree has errors (drawn, its faults marked):\n{refused}")


class TerminalParty:
    """A person at the terminal: keys to press, words to say, Enter for silence."""

    def hear(self, text: str) -> None:
        typer.echo(f"  hotline: {text}")

    def answer(self, prompt: Prompt) -> Answer:
        hint = "keys, or words to say" if "speech" in prompt.input else "keys"
        try:
            line = input(f"[{hint}; Enter = silence; q = hang up] > ").strip()
        except EOFError:
            return HangUp()
        if line.lower() in ("q", "quit", "hangup"):
            return HangUp()
        if not line:
            return Silent()
        if all(c in "0123456789*#" for c in line):
            return Press(line)
        return Speak(line)

    def keep_holding(self, queue: str, polls: int) -> bool:
        try:
            line = input(f"[holding in queue '{queue}'; Enter = keep holding, q = hang up] > ")
        except EOFError:
            return False
        return line.strip().lower() not in ("q", "quit", "hangup")

    def dial_outcome(self, number: str) -> str:
        typer.echo(f"  (the hotline dials {number}; it answers, and takes the call)")
        return "completed"

    def talk(self, number: str) -> None:
        typer.echo("  (you talk; then the agent hangs up)")


@app.command()
def dial(
    keys: Annotated[
        str | None,
        typer.Option(
            help='scripted call, one answer per prompt: "1,2,#"; "-" is silence; "say:words" speaks'
        ),
    ] = None,
    from_number: Annotated[str, typer.Option("--from", help="caller ID")] = "+15005550006",
    to_number: Annotated[str, typer.Option("--to", help="the hotline's number")] = "+15005550001",
    url: Annotated[
        str | None,
        typer.Option(
            help="where the server listens, if not at IVR_PUBLIC_URL (e.g. behind a tunnel)"
        ),
    ] = None,
    hold: Annotated[
        int, typer.Option(min=0, help="hold-loop rounds to wait in a queue before hanging up")
    ] = 1,
    hold_seconds: Annotated[
        float,
        typer.Option(
            min=0,
            max=600,
            help="seconds each hold round lasts, as its music would: time to take the case",
        ),
    ] = 0.0,
    routes: Annotated[
        Path | None,
        typer.Option(help="try this tree file in-process, no server needed (a draft)"),
    ] = None,
    prompts: Annotated[
        Path | None,
        typer.Option(
            envvar="IVR_PROMPTS",
            show_default=False,
            help="catalogs for --routes [default: IVR_PROMPTS from the environment or .env, "
            "else the project's prompts/]",
        ),
    ] = None,
    at: Annotated[
        datetime | None,
        typer.Option(
            formats=["%Y-%m-%dT%H:%M%z", "%Y-%m-%dT%H:%M:%S%z"],
            help="with --routes: call as if it were then (with its zone, e.g. "
            "2026-12-06T22:00+08:00), to hear business hours and holidays",
        ),
    ] = None,
    announce: Annotated[
        str | None,
        typer.Option(
            help="with --routes: call as if supervisors had announced this (in every "
            "language), to hear the announcement and walk a menu's incident_options",
        ),
    ] = None,
) -> None:
    """Call the hotline as Twilio would, from the terminal: the running server, or with
    --routes a draft tree served in-process on a throwaway database (with the demo
    accounts, so verification can be walked too)."""
    if at is not None and routes is None:
        raise _fail("--at is for a draft (--routes): a running server keeps its own clock")
    if announce is not None and routes is None:
        raise _fail(
            "--announce is for a draft (--routes): announce on a server from its queue page"
        )
    if at is not None and not 1970 <= at.year <= 2200:
        raise _fail("--at: a time between 1970 and 2200")
    party: ScriptedParty | TerminalParty = TerminalParty()
    if keys is not None:
        try:
            answers = parse_script(keys)
        except ValueError as exc:
            raise _fail(f"--keys: {exc}") from None
        party = ScriptedParty(
            answers,
            hold_polls=hold,
            hold_seconds=hold_seconds,
            on_hear=lambda t: typer.echo(f"  hotline: {t}"),
            on_answer=lambda a: typer.echo(f"  caller: {_describe(a)}"),
        )
    try:
        if routes is not None:
            folder = _catalogs_folder(prompts)
            record = _dial_draft(routes, folder, party, from_number, to_number, at, announce)
        else:
            record = _dial_server(party, from_number, to_number, url)
    except PhoneError as exc:
        raise _fail(str(exc)) from None
    where = f"; queued in '{record.queue}'" if record.queue else ""
    where += f"; transferred to {record.dialed}" if record.dialed else ""
    typer.echo(f"call {record.call_sid} ended by the {record.ended_by}{where}")


def _database(settings: DatabaseSettings, *, patient: bool = False) -> Engine:
    """The database, upgraded. `patient`: without the webhooks' time limits (PostgreSQL's
    statement_timeout 5 s, lock_timeout 3 s), for the commands that read whole tables of a
    hotline that ran for years: `db purge --dry-run` counts them, `calls erase` reads the
    whole audit log for the number. Their writes are batched or few, so no webhook waits
    on them long."""
    from ivr.db import create_db_engine, upgrade

    # On stderr: what a script reads from stdout (a token, a listing) stays as it was.
    typer.echo(f"database: {settings.database_named}", err=True)
    try:
        upgrade(settings.database_url, migrations=settings.migrations_dir)
    except Exception as exc:
        raise _fail(f"cannot open the database: {type(exc).__name__}: {exc}") from None
    return create_db_engine(
        settings.database_url, webhook_timeouts=not patient, pooler=settings.database_pooler
    )


TokenDays = Annotated[
    int | None,
    typer.Option(
        "--days",
        min=1,
        max=365,
        help="days the token works (the dashboard sign-in too); default IVR_TOKEN_DAYS (90)",
    ),
]


def _token_expiry(settings: DatabaseSettings, days: int | None) -> datetime:
    return utcnow() + timedelta(days=days or settings.token_days)


def _expires_text(expires_at: datetime) -> str:
    return f"expires {expires_at:%Y-%m-%d %H:%M} UTC"


@users_app.command("add")
def users_add(
    name: Annotated[str, typer.Argument(help="login name")],
    role: Annotated[str, typer.Option(help="agent, supervisor or operator")],
    phone: Annotated[str | None, typer.Option(help="E.164 number agents are dialled on")] = None,
    days: TokenDays = None,
) -> None:
    """Create a user and print their API token (shown once; only its hash is kept). It stops
    working after IVR_TOKEN_DAYS (or --days): `ivr users token` issues the next one."""
    from ivr.cases import create_user

    settings = _settings(DatabaseSettings)
    db = _database(settings)
    expires_at = _token_expiry(settings, days)
    try:
        with db.connect() as conn:
            token = create_user(
                conn,
                name=name,
                role=role,
                phone=phone,
                now=utcnow(),
                expires_at=expires_at,
                actor=cli_actor(),
            )
    except ValueError as exc:
        raise _fail(str(exc)) from None
    typer.echo(
        f"{role} {name} created; the token {_expires_text(expires_at)}. "
        f"API token (shown once, keep it secret):\n{token}"
    )


def _token_state(expires_at: datetime | None, now: datetime) -> str:
    """What `users list` says of a token's expiry."""
    if expires_at is None:
        return "token never expires (made before tokens expired: rotate it with `users token`)"
    if expires_at <= now:
        return f"token expired {expires_at:%Y-%m-%d %H:%M} UTC"
    return f"token {_expires_text(expires_at)}"


@users_app.command("list")
def users_list() -> None:
    """Every user: name, role, agent phone, whether revoked, when their token expires, and
    presence and languages (no tokens)."""
    from ivr.cases import list_users

    db = _database(_settings(DatabaseSettings))
    now = utcnow()
    with db.connect() as conn:
        rows = list_users(conn, now=now)
    for row in rows:
        state = f"revoked {row['revoked_at']:%Y-%m-%d %H:%M}" if row["revoked_at"] else "active"
        if not row["revoked_at"]:
            state += f", {_token_state(row['expires_at'], now)}"
        if row["available_since"] and not row["revoked_at"]:
            state += f", available since {row['available_since']:%Y-%m-%d %H:%M} UTC"
        if row["languages"]:
            state += f", speaks {row['languages']}"
        phone = row["phone"] or "-"
        typer.echo(f"{row['name']:20} {row['role']:10} {phone:16} {state}")


@users_app.command("away")
def users_away(name: Annotated[str, typer.Argument(help="the agent's login name")]) -> None:
    """Set an agent away (gone without saying so): no case comes to them unasked until they
    say they are available again. They can still take cases by asking."""

    from ivr.cases import set_away_by_name

    db = _database(_settings(DatabaseSettings))
    with db.connect() as conn:
        found = set_away_by_name(conn, name=name, actor=cli_actor(), now=utcnow())
    if not found:
        raise _fail(f"no agent named {name!r}")
    typer.echo(f"{name} is away: no case comes to them until they say they are available.")


@users_app.command("languages")
def users_languages(
    name: Annotated[str, typer.Argument(help="the agent's login name")],
    languages: Annotated[
        str, typer.Argument(help='the languages they speak, comma-separated ("en,zh-CN"), or "all"')
    ],
    prompts: Annotated[
        Path,
        typer.Option(envvar="IVR_PROMPTS", help="the prompt catalogs callers choose from"),
    ] = PROJECT_ROOT / "prompts",
) -> None:
    """Say which languages an agent speaks: callers in them are offered to this agent first,
    and callers in others only once they have waited IVR_LANGUAGE_OVERFLOW. "all": every
    language (the default)."""
    from ivr.cases import languages_typed, set_languages, unspoken
    from ivr.prompts import load_catalogs

    codes = languages_typed(languages)
    try:
        why_not = unspoken(codes, load_catalogs(prompts).languages)
    except SourceError as exc:
        raise _fail(str(exc)) from None
    if why_not:
        raise _fail(why_not)
    db = _database(_settings(DatabaseSettings))
    try:
        with db.connect() as conn:
            found = set_languages(conn, name=name, languages=codes, actor=cli_actor(), now=utcnow())
    except ValueError as exc:
        raise _fail(str(exc)) from None
    if not found:
        raise _fail(f"no agent named {name!r}")
    spoken = "every language" if codes is None else ", ".join(sorted(set(codes)))
    typer.echo(f"{name} speaks {spoken}: callers in it are offered to them first.")


@users_app.command("revoke")
def users_revoke(name: Annotated[str, typer.Argument(help="login name")]) -> None:
    """Stop a user's token and dashboard sessions now (someone left, or a token leaked)."""
    from ivr.cases import revoke_user

    db = _database(_settings(DatabaseSettings))
    try:
        with db.connect() as conn:
            requeued = revoke_user(conn, name=name, now=utcnow(), actor=cli_actor())
    except ValueError as exc:
        raise _fail(str(exc)) from None
    typer.echo(f"{name} revoked: their token no longer works.")
    if requeued:
        typer.echo(f"{requeued} case(s) offered to them went back in line.")


@users_app.command("token")
def users_token(
    name: Annotated[str, typer.Argument(help="login name")], days: TokenDays = None
) -> None:
    """Issue a user a new API token (shown once); the old one stops working. Lifts a revoke.
    The new one works for IVR_TOKEN_DAYS (or --days)."""
    from ivr.cases import reissue_token

    settings = _settings(DatabaseSettings)
    db = _database(settings)
    expires_at = _token_expiry(settings, days)
    try:
        with db.connect() as conn:
            token = reissue_token(
                conn, name=name, expires_at=expires_at, actor=cli_actor(), now=utcnow()
            )
    except ValueError as exc:
        raise _fail(str(exc)) from None
    typer.echo(
        f"New API token for {name}, {_expires_text(expires_at)} "
        "(shown once, keep it secret; the old one is void):"
    )
    typer.echo(token)


def _directory(settings: AccountSettings) -> LocalDirectory:
    from ivr.identity import LocalDirectory

    return LocalDirectory(_database(settings), settings.secret_key)


# The secrets `accounts add` reads from a no-echo prompt or from stdin, never from its command
# line (kept in shell history, seen by anyone on the host in ps and /proc/PID/cmdline): named
# as `accounts import`'s columns, with what a prompt calls them.
ACCOUNT_SECRETS = {
    "pin": "Phone PIN (6 digits)",
    "id_last4": "ID document's last 4 digits",
    "totp_secret": "Authenticator seed (base32)",
}


def _secrets_asked() -> dict[str, str | None]:
    """Each secret typed twice at the terminal, without echo; none if left empty."""
    import getpass

    secrets: dict[str, str | None] = {}
    for name, label in ACCOUNT_SECRETS.items():
        typed = getpass.getpass(f"{label}, empty for none: ").strip()
        if typed and getpass.getpass(f"{label}, again: ").strip() != typed:
            raise _fail(f"{label}: the two entries differ; nothing saved")
        secrets[name] = typed or None
    return secrets


def _secrets_read(text: str) -> dict[str, str | None]:
    """`pin=...`, `id_last4=...`, `totp_secret=...` lines, each at most once; one left out
    or empty is none. A line that is wrong is named by its number, never shown: it may be a
    secret."""
    secrets: dict[str, str | None] = dict.fromkeys(ACCOUNT_SECRETS)
    seen = set()
    for n, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        name, equals, value = line.partition("=")
        name = name.strip()
        if not equals or name not in ACCOUNT_SECRETS:
            raise _fail(f"stdin line {n}: not pin=, id_last4= or totp_secret= (not shown)")
        if name in seen:
            raise _fail(f"stdin line {n}: {name} given twice")
        seen.add(name)
        secrets[name] = value.strip() or None
    return secrets


def _refused_on_the_command_line(option: str) -> typer.Exit:
    return _fail(
        f"{option} is not taken on the command line (it stays in shell history and shows in "
        "ps): leave it out to be asked for it without echo, or pipe it with --secrets-stdin. "
        "If that value is a real one, change it: it is in your shell history now"
    )


@accounts_app.command("add")
def accounts_add(
    uid: Annotated[str, typer.Option(help="account UID (digits)")],
    phone: Annotated[str | None, typer.Option(help="registered phone, E.164")] = None,
    secrets_stdin: Annotated[
        bool,
        typer.Option(
            "--secrets-stdin",
            help="read the secrets from stdin (a pipe or file), one a line: pin=, id_last4=, "
            "totp_secret=; those left out are none. Without it they are asked at the terminal",
        ),
    ] = False,
    pin: Annotated[str | None, typer.Option(hidden=True)] = None,
    id_last4: Annotated[str | None, typer.Option("--id-last4", hidden=True)] = None,
    totp_secret: Annotated[str | None, typer.Option(hidden=True)] = None,
) -> None:
    """Add or replace an account (its secrets too: any not given is removed); secrets are
    asked at the terminal without echo (or read with --secrets-stdin) and stored only as
    argon2 hashes (TOTP: encrypted)."""
    for option, given in (("--pin", pin), ("--id-last4", id_last4), ("--totp-secret", totp_secret)):
        if given is not None:
            raise _refused_on_the_command_line(option)
    directory = _directory(_settings(AccountSettings))
    if secrets_stdin:
        if sys.stdin.isatty():
            # Typed there, they would be echoed on the screen.
            raise _fail("--secrets-stdin reads a pipe or a file: at a terminal, leave it out")
        secrets = _secrets_read(sys.stdin.read())
    elif sys.stdin.isatty():
        secrets = _secrets_asked()
    else:
        raise _fail("stdin is not a terminal to ask the secrets at: pass --secrets-stdin")
    try:
        changed = directory.add(
            uid=uid, phone=phone, now=utcnow(), actor=cli_actor(), via="accounts add", **secrets
        )
    except (ValueError, ConfigError) as exc:
        raise _fail(f"account {uid}: {exc}") from None
    said = f"changed: {', '.join(changed)}; audited" if changed else "nothing changed"
    typer.echo(f"account {uid} saved ({said})")


@accounts_app.command("unfreeze")
def accounts_unfreeze(
    uid: Annotated[str, typer.Argument(help="account UID")],
    reason: Annotated[str, typer.Option(help="why: who checked the owner, and how")],
) -> None:
    """Lift an emergency freeze, audited. Adding or importing an account again never does."""

    if len(reason.strip()) < 3:
        raise _fail("say why the freeze is lifted (--reason)")
    directory = _directory(_settings(AccountSettings))
    actor = cli_actor()
    if not directory.unfreeze(uid=uid, actor=actor, reason=reason.strip(), now=utcnow()):
        raise _fail(f"account {uid} is not frozen (or does not exist)")
    typer.echo(f"account {uid} unfrozen; audited as {actor}")


@accounts_app.command("import")
def accounts_import(
    file: Annotated[
        Path, typer.Argument(help="CSV with columns uid,pin,id_last4,phone,totp_secret")
    ],
) -> None:
    """Add or replace accounts from a CSV file; every row is checked before any is saved."""
    import csv

    directory = _directory(_settings(AccountSettings))
    try:
        with file.open(newline="", encoding="utf-8") as fh:
            rows = list(csv.DictReader(fh))
    except OSError as exc:
        raise _fail(f"{file}: {exc.strerror}") from None
    if not rows or "uid" not in rows[0]:
        raise _fail(f"{file}: needs a header row with at least a uid column")
    problems = []
    for n, row in enumerate(rows, start=2):
        for column, length in (("uid", None), ("pin", 6), ("id_last4", 4)):
            value = row.get(column) or ""
            if (column == "uid" or value) and not (
                value.isdigit() and length in (None, len(value))
            ):
                what = f"{length} digits" if length else "digits"
                problems.append(f"{file}:{n}: {column} must be {what}")
    if problems:
        raise _fail("\n".join(problems))
    actor = cli_actor()
    for n, row in enumerate(rows, start=2):
        try:
            directory.add(
                uid=row["uid"],
                pin=row.get("pin") or None,
                id_last4=row.get("id_last4") or None,
                phone=row.get("phone") or None,
                totp_secret=row.get("totp_secret") or None,
                now=utcnow(),
                actor=actor,
                via=f"accounts import {file.name}:{n}",
            )
        except (ValueError, ConfigError) as exc:
            raise _fail(f"{file}:{n}: {exc} (rows before it were saved)") from None
    typer.echo(f"{len(rows)} account(s) saved")


DEMO_ACCOUNTS = (
    {"uid": "10000001", "pin": "123456", "id_last4": "4321", "phone": "+15005550006"},
    {"uid": "10000002", "pin": "654321", "id_last4": "8765", "phone": "+15005550007"},
)


def _someone_elses(directory: LocalDirectory, account: dict[str, str]) -> bool:
    """Whether a demo account's UID is an account already, with secrets other than the demo's
    (a real customer's, on a directory in use): not one an earlier `ivr demo` seeded."""
    from sqlalchemy import select

    from ivr.db import accounts

    with directory.db.connect() as conn:
        row = conn.execute(
            select(accounts.c.totp_secret).where(accounts.c.uid == account["uid"])
        ).first()
    if row is None:
        return False
    now = utcnow()
    factors = (("pin", "pin"), ("id_last4", "id_last4"), ("phone", "phone"))
    return row.totp_secret is not None or not all(
        directory.check(uid=account["uid"], factor=factor, digits=account[key], now=now)
        for factor, key in factors
    )


@app.command()
def demo(
    force: Annotated[
        bool,
        typer.Option(
            "--force",
            help="seed them even on a public server (https IVR_PUBLIC_URL), and over "
            "accounts with the demo's UIDs and other secrets",
        ),
    ] = False,
) -> None:
    """Seed demo accounts and an agent for trying the hotline locally, and print them.

    Refused on a public server, and over accounts of the same UIDs with other secrets, unless
    --force: anyone could then verify as those accounts' owners by phone with published PINs."""
    from ivr.cases import create_user

    settings = _settings(Settings)
    if settings.public_https and not force:
        raise _fail(
            "refusing: IVR_PUBLIC_URL is https, a public server. `ivr demo` gives accounts "
            f"{' and '.join(a['uid'] for a in DEMO_ACCOUNTS)} published PINs (anyone could "
            "verify as them by phone) and makes an agent. Try it on a local http "
            "IVR_PUBLIC_URL, or add --force. Nothing was changed."
        )
    directory = _directory(settings)
    taken = [a["uid"] for a in DEMO_ACCOUNTS if _someone_elses(directory, a)]
    if taken and not force:
        raise _fail(
            f"refusing: account(s) {', '.join(taken)} exist already with other secrets (a "
            "customer's?): `ivr demo` would replace them with published PINs. --force "
            "replaces them. Nothing was changed."
        )
    typer.echo("demo accounts (call with ivr dial; the emergency path asks for UID and PIN):")
    for account in DEMO_ACCOUNTS:
        directory.add(
            **account,
            totp_secret=None,
            now=utcnow(),
            actor=cli_actor(),
            via="ivr demo --force" if force else "ivr demo",
        )
        typer.echo(
            f"  uid {account['uid']}  pin {account['pin']}  id-last4 {account['id_last4']}"
            f"  phone {account['phone']}"
        )
    typer.echo(
        f'  e.g. ivr dial --from {DEMO_ACCOUNTS[0]["phone"]} --keys "1,1,'
        f'{DEMO_ACCOUNTS[0]["uid"]},{DEMO_ACCOUNTS[0]["pin"]}" --hold 30 --hold-seconds 4'
    )
    try:
        with directory.db.connect() as conn:
            expires_at = _token_expiry(settings, None)
            token = create_user(
                conn,
                name="demo-agent",
                role="agent",
                phone=None,
                now=utcnow(),
                expires_at=expires_at,
                actor=cli_actor(),
            )
        typer.echo(f"demo agent 'demo-agent', API token: {token}")
        typer.echo(f"  (the token {_expires_text(expires_at)})")
        typer.echo(f"  sign in with it at {settings.base_url}/dashboard (the agent's desk), or")
        typer.echo(f"  curl -H 'Authorization: Bearer {token}' {settings.base_url}/api/queue")
    except ValueError:
        typer.echo(
            "demo agent exists already (its token was shown when it was made); "
            "add another with: ivr users add NAME --role agent"
        )


@app.command()
def keygen() -> None:
    """Print a new key for IVR_SECRET_KEY (encrypts TOTP secrets at rest)."""
    from cryptography.fernet import Fernet

    typer.echo(Fernet.generate_key().decode())


def _call_line(row: dict[str, Any]) -> str:
    from ivr.api import mask

    facts = (row["state"] or {}).get("facts", {})
    priority = row["case_priority"] or facts.get("priority") or "-"
    return (
        f"{row['started_at']:%Y-%m-%d %H:%M:%S}  {row['call_sid']}  {mask(row['from_number']):>8}"
        f"  {row['outcome']:<12} {facts.get('topic') or '-':<22} {priority:<9}"
        f" {facts.get('verified') or '-':<8} {row['ticket'] or ''}"
    )


def _utc(moment: datetime | None) -> datetime | None:
    return moment.replace(tzinfo=UTC) if moment and moment.tzinfo is None else moment


@calls_app.command("list")
def calls_list(
    since: Annotated[datetime | None, typer.Option(help="from (ISO time, UTC if no zone)")] = None,
    until: Annotated[
        datetime | None, typer.Option(help="before (ISO time, UTC if no zone); not included")
    ] = None,
    outcome: Annotated[
        str | None, typer.Option(help="how the call ended: agent, abandoned, callback, ...")
    ] = None,
    topic: Annotated[str | None, typer.Option()] = None,
    queue: Annotated[str | None, typer.Option()] = None,
    verified: Annotated[
        str | None, typer.Option(help="what verification came to: yes, no, skipped, ...")
    ] = None,
    emergency: Annotated[bool | None, typer.Option("--emergency/--no-emergency")] = None,
    caller: Annotated[
        str | None, typer.Option(help="the caller's whole number, or its last digits")
    ] = None,
    limit: Annotated[int, typer.Option(min=1, max=1000)] = 50,
    cursor: Annotated[str | None, typer.Option(help="the next page, as the last one said")] = None,
) -> None:
    """Calls, newest first, with the same filters as GET /api/calls."""
    from ivr.calllog import (
        CALLER_PATTERN,
        SEARCH_CALLS,
        CallFilter,
        Outcome,
        Verified,
        audit_lookup,
        list_calls,
        searches_someone,
    )

    # Checked here rather than typed as Literal: the choices live with the call log, and
    # importing it (SQLAlchemy) for every command would slow down all of them.
    choices = (("--outcome", outcome, Outcome), ("--verified", verified, Verified))
    for option, value, kind in choices:
        if value is not None and value not in get_args(kind):
            raise _fail(f"{option}: one of {', '.join(get_args(kind))}")
    if caller is not None and not re.fullmatch(CALLER_PATTERN, caller):
        raise _fail("--caller: a phone number, or at least its last two digits")
    filters = CallFilter(
        since=_utc(since),
        until=_utc(until),
        outcome=outcome,
        topic=topic,
        queue=queue,
        verified=verified,
        emergency=emergency,
        caller=caller,
    )
    db = _database(_settings(DatabaseSettings))
    try:
        with db.connect() as conn:
            rows, after = list_calls(conn, filters=filters, limit=limit, cursor=cursor)
            if searches_someone(filters):
                audit_lookup(
                    conn,
                    actor=cli_actor(),
                    action=SEARCH_CALLS,
                    filters=filters,
                    rows=len(rows),
                    now=utcnow(),
                )
    except ValueError as exc:  # a cursor this command did not print
        raise _fail(f"--cursor: {exc}") from None
    for row in rows:
        typer.echo(_call_line(row))
    if after:
        typer.echo(f"more: the same command with --cursor {after}", err=True)


@calls_app.command("show")
def calls_show(call_sid: Annotated[str, typer.Argument(help="the CallSid")]) -> None:
    """One call's timeline: every node, input, case, agent action and the hang-up. Audited
    (`show_call`: who read which call), as the API audits a search for a caller's calls."""
    from ivr.calllog import audit_shown, timeline

    db = _database(_settings(DatabaseSettings))
    with db.connect() as conn:
        found = timeline(conn, call_sid=call_sid)
        if found is not None:
            audit_shown(conn, actor=cli_actor(), call_sid=call_sid, now=utcnow())
    if found is None:
        raise _fail(f"no call {call_sid}")
    typer.echo(_call_line(found["call"]))
    for e in found["events"]:
        typer.echo(_event_line(e))
    for c in found["cases"]:
        typer.echo(
            f"  case {c['ticket']}: {c['priority']} in {c['queue']}, {c['status']}, "
            f"verified {(c['flags'] or {}).get('verified', 'not_attempted')}"
        )
    for a in found["audit"]:
        typer.echo(f"  {a['at']:%H:%M:%S} {a['actor']} {a['action']}: {a['result']}")


@calls_app.command("erase")
def calls_erase(
    number: Annotated[str, typer.Argument(help="the caller's whole number, E.164 (+8613...)")],
    reason: Annotated[str, typer.Option(help="why: the caller's request, its reference")],
    yes: Annotated[
        bool, typer.Option("--yes", help="delete the recordings at Twilio without asking")
    ] = False,
) -> None:
    """Erase a caller's data at their request: every call from the number and every case whose
    caller or call-back number it is, with their events and recordings rows. Refused while one
    of those cases is open or a call in progress. Audited, without the number. With the
    Twilio account's credentials (TWILIO_ACCOUNT_SID, TWILIO_AUTH_TOKEN), offers to delete
    the recordings at Twilio too; what it could not delete there is listed."""

    from ivr.recordings import CONFIRMED, delete_at_twilio
    from ivr.retention import StillOpen, audit_erased_at_twilio, erase

    if len(reason.strip()) < 3:
        raise _fail("say why the number's data is erased (--reason)")
    db = _database(_settings(DatabaseSettings), patient=True)
    actor = cli_actor()
    try:
        with db.connect() as conn:
            erased = erase(conn, number=number, actor=actor, reason=reason.strip(), now=utcnow())
    except ValueError as exc:
        raise _fail(str(exc)) from None
    except StillOpen as exc:
        why = []
        if exc.tickets:
            why.append(f"open tickets {', '.join(exc.tickets)} (resolve them first)")
        if exc.calls_in_progress:
            why.append(f"{exc.calls_in_progress} call(s) in progress")
        raise _fail(f"nothing erased: {'; '.join(why)}") from None
    typer.echo(f"erased: {erased.describe()}; audited as {actor}")
    left = list(erased.recording_sids)
    account = TwilioAccount()
    asked = f"Delete its {len(left)} recordings at Twilio now?"
    if left and account.configured and not yes:
        # The rows are gone: this list is the only record of the audio left at Twilio, so it
        # is printed before asking (a script with no terminal, or Ctrl-C, ends the asking).
        typer.echo(f"  recordings at Twilio: {' '.join(left)}")
        try:
            yes = typer.confirm(asked, default=True)
        except (typer.Abort, EOFError):
            yes = False
    if left and account.configured and yes:
        twilio = _twilio_client(account)
        urls = erased.recording_urls or (None,) * len(left)
        results = {
            sid: delete_at_twilio(twilio, sid, url)
            for sid, url in zip(erased.recording_sids, urls, strict=True)
        }
        left = [sid for sid, result in results.items() if result not in CONFIRMED]
        typer.echo(
            f"deleted at Twilio: {len(results) - len(left)} recordings"
            + (f"; NOT deleted (Twilio failed, or a region's): {len(left)}" if left else "")
        )
    if erased.recording_sids:
        if not account.configured:
            not_deleted = "no TWILIO_ACCOUNT_SID and TWILIO_AUTH_TOKEN"
        elif not yes:
            not_deleted = "not deleted when asked"
        else:
            not_deleted = "Twilio failed, or a region's or another account's"
        with db.connect() as conn:
            audit_erased_at_twilio(
                conn,
                actor=actor,
                deleted=len(erased.recording_sids) - len(left),
                left=left,
                why=not_deleted,
                now=utcnow(),
            )
    typer.echo(
        "Twilio keeps its own logs of these calls, of calls and texts to the number"
        + (", and the recordings below" if left else "")
        + ": delete them there too (Console, or its REST API)."
    )
    if erased.call_sids:
        typer.echo(f"  calls: {' '.join(erased.call_sids)}")
    if left:
        typer.echo(f"  recordings: {' '.join(left)}")


def _event_line(e: dict[str, Any]) -> str:
    parts = [f"  {e['at']:%H:%M:%S}", e["kind"], e["node"] or "-"]
    parts += [f"{k}={e[k]}" for k in ("input_kind", "option", "outcome", "prompt_key") if e[k]]
    return " ".join(parts)


@calls_app.command("tail")
def calls_tail(
    seconds: Annotated[float, typer.Option(help="stop after this long (0: until Ctrl-C)")] = 0,
) -> None:
    """Follow every call's events as they happen. Audited as it starts (`tail_calls`)."""
    import time

    from sqlalchemy import select

    from ivr.calllog import TAIL_CALLS
    from ivr.cases import audit
    from ivr.db import call_events

    db = _database(_settings(DatabaseSettings))
    with db.connect() as conn:
        # Before anything is shown: a tail stopped with Ctrl-C (its usual end) is audited too.
        audit(
            conn,
            actor=cli_actor(),
            action=TAIL_CALLS,
            uid=None,
            case_id=None,
            reason=f"for {seconds:g} s" if seconds else "until stopped",
            result="ok",
            now=utcnow(),
        )
        last = (
            conn.execute(select(call_events.c.id).order_by(call_events.c.id.desc())).scalar() or 0
        )
    stop = time.monotonic() + seconds if seconds else None
    while stop is None or time.monotonic() < stop:
        with db.connect() as conn:
            rows = (
                conn.execute(
                    select(call_events).where(call_events.c.id > last).order_by(call_events.c.id)
                )
                .mappings()
                .all()
            )
        for e in rows:
            typer.echo(f"{e['call_sid']} {_event_line(dict(e)).strip()}")
            last = e["id"]
        time.sleep(0.5)


def _dial_server(party: Party, from_number: str, to_number: str, url: str | None) -> CallRecord:
    import httpx

    settings = _settings(Settings)
    phone = Phone(
        httpx.Client(timeout=15),
        public_url=settings.base_url,
        auth_token=settings.twilio_auth_token,
        server_url=url,
    )
    # The public URL is what Twilio signs; --url is where the requests actually go.
    at = f" (at {url.rstrip('/')})" if url else ""
    typer.echo(f"calling {settings.base_url}/twilio/voice{at} from {from_number}")
    return phone.call(party, from_number=from_number, to_number=to_number)


def _dial_draft(
    routes: Path,
    prompts: Path,
    party: Party,
    from_number: str,
    to_number: str,
    at: datetime | None = None,
    announce: str | None = None,
) -> CallRecord:
    """The same phone, against the app in this process: nothing is loaded until it is tried.
    `at`: the call's time, running on from there. `announce`: an announcement up, as
    supervisors make one (the same words in every language)."""
    import secrets
    import tempfile
    import time
    import warnings

    from ivr.identity import LocalDirectory

    with warnings.catch_warnings():  # Starlette's notice about httpx is not for operators
        warnings.simplefilter("ignore")
        from fastapi.testclient import TestClient

    from ivr.tree import load_tree
    from ivr.web import create_app

    try:
        tree = load_tree(routes, prompts)
    except SourceError as exc:
        raise _fail(f"the tree has errors:\n{exc}") from None
    for warning in tree.warnings:
        typer.echo(str(warning))
    token, public = secrets.token_hex(16), "https://draft.invalid"
    with tempfile.TemporaryDirectory() as scratch:
        url = f"sqlite:///{scratch}/draft.sqlite3"
        settings = _DraftSettings(
            TWILIO_AUTH_TOKEN=token,
            IVR_PUBLIC_URL=public,
            IVR_DATABASE_URL=url,
            IVR_ROUTES=str(routes),
            IVR_PROMPTS=str(prompts),
            IVR_HOLD_MUSIC_URL=None,
        )
        db = _database(settings)
        demo = LocalDirectory(db, None)
        for account in DEMO_ACCOUNTS:
            demo.add(**account, totp_secret=None, now=utcnow())
        first = DEMO_ACCOUNTS[0]
        typer.echo(
            f"demo accounts to verify with: uid {first['uid']} pin {first['pin']} "
            f"id-last4 {first['id_last4']} (and `ivr demo`'s others)"
        )
        clock = utcnow
        if at is not None:
            started = time.monotonic()
            start = at.astimezone(UTC)

            def clock() -> datetime:
                return start + timedelta(seconds=time.monotonic() - started)

            typer.echo(f"as if it were {at.isoformat()}")
        # Printed above once, plainly: not again as the app logs them making the draft live.
        hotline_log = logging.getLogger("ivr.hotline")
        said_above = _DropMessage("call tree version %s: %s")
        hotline_log.addFilter(said_above)
        try:
            app = create_app(settings, tree=tree, clock=clock)
            with TestClient(app, base_url=public) as client:
                typer.echo(f"trying {routes} (version {tree.version}) in-process")
                if announce is not None:
                    from ivr.announcements import problems, tidied
                    from ivr.cases import User

                    texts = tidied(dict.fromkeys(tree.catalogs.languages, announce))
                    languages = set(tree.catalogs.languages)
                    if found := problems(texts, languages=languages):  # as the queue refuses
                        raise _fail(f"--announce: {'; '.join(found)}")
                    draft = User(0, "draft", "operator", None)
                    app.state.hotline.announce(texts, by=draft, minutes=60)
                    typer.echo("as if this were announced")
                record = Phone(client, public_url=public, auth_token=token).call(
                    party, from_number=from_number, to_number=to_number
                )
            typer.echo(f"nodes: {_node_path(db, record.call_sid)}")
            return record
        finally:
            hotline_log.removeFilter(said_above)
            db.dispose()


def _node_path(db: Engine, call_sid: str) -> str:
    """The nodes a draft walk went through, in order, from its event log: what the operator
    checks a draft's wiring by ("1,3" reached deposits_incident, then deposits_menu). A node
    entered again at once (a menu said again after a silence) is named once, with a count."""
    from ivr.store import call_log

    with db.connect() as conn:
        entered = [e["node"] for e in call_log(conn, call_sid=call_sid) if e["kind"] == "entered"]
    path: list[tuple[str, int]] = []
    for node in entered:
        if path and path[-1][0] == node:
            path[-1] = (node, path[-1][1] + 1)
        else:
            path.append((node, 1))
    return " > ".join(f"{node} (x{n})" if n > 1 else node for node, n in path) or "(none)"


class _DraftSettings(Settings):
    """A draft walk's settings: what it is given, nothing from the environment or .env. In a
    shell set up for production, the walk's UID and PIN must not reach the exchange's
    identity service, nor its Twilio account place a call or send a text."""

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (init_settings,)


class _DropMessage(logging.Filter):
    """Drops the log records made from one message template."""

    def __init__(self, template: str) -> None:
        super().__init__()
        self.template = template

    def filter(self, record: logging.LogRecord) -> bool:
        return record.msg != self.template


def _describe(answer: Answer) -> str:
    if isinstance(answer, Press):
        return f"presses {answer.digits}"
    if isinstance(answer, Speak):
        return f'says "{answer.words}"'
    if isinstance(answer, Silent):
        return "(silence)"
    return "hangs up"


def main() -> None:
    try:
        app()
    except IVRError as exc:  # a last guard: an operator sees a message, never a traceback
        typer.secho(str(exc), err=True, fg=typer.colors.RED)
        sys.exit(1)
