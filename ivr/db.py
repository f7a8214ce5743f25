"""Tables, the database engine, and schema upgrades (Alembic, `migrations/`).

SQLite is the embedded default; PostgreSQL is production. Everything here works on both.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Column,
    DateTime,
    Dialect,
    Engine,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    TypeDecorator,
    create_engine,
    event,
)
from sqlalchemy.engine import make_url

MIGRATIONS_DIR = Path(__file__).resolve().parent.parent / "migrations"


class UTCDateTime(TypeDecorator[datetime]):
    """Aware UTC datetimes in and out, on SQLite too (which stores them without a zone)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime: pass an aware UTC datetime")
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


metadata = MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)

calls = Table(
    "calls",
    metadata,
    Column("call_sid", String(64), primary_key=True),
    Column("account_sid", String(64)),
    Column("from_number", String(32)),
    Column("to_number", String(32)),
    Column("tree_version", String(32), nullable=False),
    # The step the next webhook must carry (`s=`); a request with another step is a repeat.
    Column("step", Integer, nullable=False),
    Column("state", JSON, nullable=False),
    # The answer to the request that produced `step`, sent again if Twilio repeats it.
    Column("last_twiml", Text, nullable=False),
    Column("status", String(16), nullable=False),
    Column("status_sequence", Integer),
    Column("started_at", UTCDateTime(), nullable=False),
    Column("updated_at", UTCDateTime(), nullable=False),
    Column("ended_at", UTCDateTime()),
    Column("duration_seconds", Integer),
    Index(None, "ended_at", "updated_at"),  # the sweep for calls whose last callback never came
)

call_events = Table(
    "call_events",
    metadata,
    Column(
        "id", BigInteger().with_variant(Integer(), "sqlite"), primary_key=True, autoincrement=True
    ),
    Column(
        "call_sid", String(64), ForeignKey("calls.call_sid", ondelete="CASCADE"), nullable=False
    ),
    Column("step", Integer, nullable=False),
    Column("at", UTCDateTime(), nullable=False),
    Column("node", String(64)),
    Column("kind", String(16), nullable=False),
    Column("input_kind", String(16)),
    Column("option", String(64)),
    Column("prompt_key", String(64)),
    Column("outcome", String(64)),
    Column("detail", JSON),
    Index(None, "call_sid", "id"),
)

tree_versions = Table(
    "tree_versions",
    metadata,
    Column("version", String(32), primary_key=True),
    Column("file", Text, nullable=False),
    Column("source", Text, nullable=False),
    Column("prompts", JSON, nullable=False),
    Column("loaded_at", UTCDateTime(), nullable=False),
    Column("loaded_by", String(64), nullable=False),
)


def normalise_url(url: str) -> str:
    """Accept the URL forms people paste (postgres://, postgresql://); use the psycopg 3 driver."""
    u = make_url(
        url.replace("postgres://", "postgresql://", 1) if url.startswith("postgres://") else url
    )
    if u.drivername == "postgresql":
        u = u.set(drivername="postgresql+psycopg")
    return u.render_as_string(hide_password=False)


def create_db_engine(url: str, **kwargs: Any) -> Engine:
    url = normalise_url(url)
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"timeout": 30}, hide_parameters=True, **kwargs)
        event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    # hide_parameters: a failed statement's message never carries call data into a log.
    return create_engine(url, pool_pre_ping=True, hide_parameters=True, **kwargs)


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    cur = dbapi_conn.cursor()
    # WAL lets the hold loop read while a webhook writes; foreign keys are off by default.
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.close()


def upgrade(url: str, revision: str = "head", *, migrations: Path = MIGRATIONS_DIR) -> None:
    """Bring the schema to `revision` (what `ivr serve` and `ivr db upgrade` run)."""
    from alembic import command
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(migrations))
    cfg.attributes["url"] = normalise_url(url)
    command.upgrade(cfg, revision)
