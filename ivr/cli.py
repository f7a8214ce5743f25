"""The `ivr` command: serve the hotline, check and try call trees, manage the database."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from ivr.exceptions import ConfigError, IVRError, PhoneError, SourceError
from ivr.phone import (
    Answer,
    HangUp,
    Phone,
    Press,
    Prompt,
    ScriptedParty,
    Silent,
    Speak,
    parse_script,
)
from ivr.settings import PROJECT_ROOT, Settings, load_settings

app = typer.Typer(
    help="Exchange support hotline (Twilio Voice IVR).",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
routes_app = typer.Typer(help="Check call tree files.", no_args_is_help=True)
db_app = typer.Typer(help="The hotline's database.", no_args_is_help=True)
app.add_typer(routes_app, name="routes")
app.add_typer(db_app, name="db")


def _fail(message: str) -> typer.Exit:
    typer.secho(message, err=True, fg=typer.colors.RED)
    return typer.Exit(code=1)


def _settings() -> Settings:
    try:
        return load_settings()
    except ConfigError as exc:
        raise _fail(str(exc)) from None


@app.command()
def serve(
    host: Annotated[str, typer.Option(help="interface to listen on")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port")] = 8000,
) -> None:
    """Upgrade the database schema to head, load the call tree, and serve the webhooks."""
    import uvicorn

    from ivr.db import upgrade
    from ivr.tree import load_tree
    from ivr.web import create_app

    settings = _settings()
    try:
        tree = load_tree(settings.routes, settings.prompts_dir)
    except SourceError as exc:
        raise _fail(f"refusing to start: the call tree has errors\n{exc}") from None
    try:
        upgrade(settings.database_url, migrations=settings.migrations_dir)
    except Exception as exc:  # the driver's own message says what is wrong (host, auth, file)
        raise _fail(
            f"refusing to start: cannot upgrade the database: {type(exc).__name__}: {exc}"
        ) from None
    typer.echo(f"call tree {tree.file} version {tree.version}: {len(tree.tree.nodes)} nodes")
    typer.echo(
        f"Twilio voice URL: {settings.base_url}/twilio/voice (status: /twilio/status, "
        f"fallback: /twilio/fallback)"
    )
    uvicorn.run(
        create_app(settings, tree=tree),
        host=host,
        port=port,
        proxy_headers=True,
        forwarded_allow_ips="*",
    )


@db_app.command("upgrade")
def db_upgrade() -> None:
    """Bring the database schema to the newest migration (run once per deployment)."""
    from ivr.db import upgrade

    settings = _settings()
    try:
        upgrade(settings.database_url, migrations=settings.migrations_dir)
    except Exception as exc:
        raise _fail(f"cannot upgrade the database: {type(exc).__name__}: {exc}") from None
    typer.echo("database is at the newest schema")


@routes_app.command("check")
def routes_check(
    file: Annotated[Path, typer.Argument(help="call tree YAML file")],
    prompts: Annotated[Path, typer.Option(help="prompt catalogs folder")] = PROJECT_ROOT
    / "prompts",
) -> None:
    """Validate a call tree with the prompt catalogs: every error and warning (exit 1 on errors)."""
    from ivr.tree import load_tree

    try:
        tree = load_tree(file, prompts)
    except SourceError as exc:
        for problem in exc.problems:
            typer.echo(str(problem))
        errors = sum(p.severity == "error" for p in exc.problems)
        raise _fail(f"{file}: {errors} error(s); the tree would be refused") from None
    for problem in tree.warnings:
        typer.echo(str(problem))
    typer.echo(
        f"{file}: OK, {len(tree.tree.nodes)} nodes, {len(tree.warnings)} warning(s), "
        f"version {tree.version}"
    )


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
        typer.echo(f"  (the hotline dials {number}; it answers)")
        return "completed"


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
        int, typer.Option(help="hold-loop rounds to wait in a queue before hanging up")
    ] = 1,
) -> None:
    """Call the running hotline as Twilio would, from the terminal."""
    import httpx

    settings = _settings()
    party: ScriptedParty | TerminalParty = TerminalParty()
    if keys is not None:
        try:
            answers = parse_script(keys)
        except ValueError as exc:
            raise _fail(f"--keys: {exc}") from None
        party = ScriptedParty(
            answers,
            hold_polls=hold,
            on_hear=lambda t: typer.echo(f"  hotline: {t}"),
            on_answer=lambda a: typer.echo(f"  caller: {_describe(a)}"),
        )
    phone = Phone(
        httpx.Client(timeout=15),
        public_url=settings.base_url,
        auth_token=settings.twilio_auth_token,
        server_url=url,
    )
    typer.echo(f"calling {settings.base_url}/twilio/voice from {from_number}")
    try:
        record = phone.call(party, from_number=from_number, to_number=to_number)
    except PhoneError as exc:
        raise _fail(str(exc)) from None
    where = f"; queued in '{record.queue}'" if record.queue else ""
    where += f"; transferred to {record.dialed}" if record.dialed else ""
    typer.echo(f"call {record.call_sid} ended by the {record.ended_by}{where}")


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
