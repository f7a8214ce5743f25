"""Alembic environment: the URL comes from the caller (ivr.db.upgrade) or IVR_DATABASE_URL."""

import os

from alembic import context
from sqlalchemy import text

from ivr.db import create_db_engine, metadata
from ivr.settings import PROJECT_ROOT

config = context.config
url = (
    config.attributes.get("url")
    or os.environ.get("IVR_DATABASE_URL")
    or (f"sqlite:///{PROJECT_ROOT / 'ivr.sqlite3'}")
)
LOCK_KEY = 0x1F0_5EED  # any constant; only our migrations take this advisory lock


def run_migrations_offline() -> None:
    context.configure(url=url, target_metadata=metadata, literal_binds=True, render_as_batch=True)
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    engine = create_db_engine(url, webhook_timeouts=False)  # a migration may take its time
    with engine.connect() as connection:
        context.configure(connection=connection, target_metadata=metadata, render_as_batch=True)
        with context.begin_transaction():
            if connection.dialect.name == "postgresql":
                # Instances started together each run `ivr serve`'s upgrade: one migrates, the
                # others wait here, then find the schema at head. Held until this commits.
                connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": LOCK_KEY})
            context.run_migrations()
    engine.dispose()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
