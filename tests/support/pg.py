"""The PostgreSQL database of the session (conftest's `pg_database_url`), emptied for a module."""

from __future__ import annotations

from sqlalchemy import text

from ivr.db import create_db_engine, metadata


def truncate_all(url: str) -> None:
    engine = create_db_engine(url)
    try:
        with engine.begin() as conn:
            names = ", ".join(t.name for t in reversed(metadata.sorted_tables))
            conn.execute(text(f"TRUNCATE {names} RESTART IDENTITY CASCADE"))
    finally:
        engine.dispose()
