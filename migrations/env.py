"""Alembic environment: the URL comes from the caller (ivr.db.upgrade) or IVR_DATABASE_URL."""

import contextlib
import os
import time
from collections.abc import Iterator

from alembic import context
from sqlalchemy import Engine, text

from ivr.db import create_db_engine, metadata
from ivr.settings import PROJECT_ROOT

config = context.config
url = (
    config.attributes.get("url")
    or os.environ.get("IVR_DATABASE_URL")
    or (f"sqlite:///{PROJECT_ROOT / 'ivr.sqlite3'}")
)
LOCK_KEY = 0x1F0_5EED  # any constant; only our migrations take this advisory lock
LOCK_WAIT_SECONDS = 1800  # an index built on a large table takes minutes


def run_migrations_offline() -> None:
    context.configure(url=url, target_metadata=metadata, literal_binds=True, render_as_batch=True)
    with context.begin_transaction():
        context.run_migrations()


@contextlib.contextmanager
def _migrating_alone(engine: Engine) -> Iterator[None]:
    """Instances started together each run `ivr serve`'s upgrade: one migrates, the others
    wait here, then find the schema at head. A session's lock, on a connection of its own:
    a migration that builds an index CONCURRENTLY commits midway. Waited for by trying
    again, not by blocking: that build waits for every open snapshot to end, a blocked
    waiter's too, which would wait for the build (a deadlock)."""
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as locker:
        give_up = time.monotonic() + LOCK_WAIT_SECONDS
        take = text("SELECT pg_try_advisory_lock(:key)")
        while not locker.execute(take, {"key": LOCK_KEY}).scalar():
            if time.monotonic() > give_up:
                raise TimeoutError(f"another instance has migrated for {LOCK_WAIT_SECONDS} s")
            time.sleep(0.2)
        try:
            yield
        finally:
            # A dead connection cannot unlock, and its session's end has freed the lock: a
            # failure here must not hide what went wrong in the migration.
            with contextlib.suppress(Exception):
                locker.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": LOCK_KEY})


def run_migrations_online() -> None:
    engine = create_db_engine(url, webhook_timeouts=False)  # a migration may take its time
    try:
        with contextlib.ExitStack() as stack:
            if engine.dialect.name == "postgresql":
                stack.enter_context(_migrating_alone(engine))
            with engine.connect() as connection:
                context.configure(
                    connection=connection, target_metadata=metadata, render_as_batch=True
                )
                with context.begin_transaction():
                    context.run_migrations()
    finally:
        engine.dispose()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
