"""Alembic environment: the URL comes from the caller (ivr.db.upgrade) or IVR_DATABASE_URL."""

import os

from alembic import context

from ivr.db import create_db_engine, metadata
from ivr.settings import PROJECT_ROOT

config = context.config
url = (
    config.attributes.get("url")
    or os.environ.get("IVR_DATABASE_URL")
    or (f"sqlite:///{PROJECT_ROOT / 'ivr.sqlite3'}")
)


def run_migrations_offline() -> None:
    context.configure(url=url, target_metadata=metadata, literal_binds=True, render_as_batch=True)
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    engine = create_db_engine(url, webhook_timeouts=False)  # a migration may take its time
    with engine.connect() as connection:
        context.configure(connection=connection, target_metadata=metadata, render_as_batch=True)
        with context.begin_transaction():
            context.run_migrations()
    engine.dispose()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
