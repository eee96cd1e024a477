"""Alembic migrations of the store, run programmatically: ``migrate(url)`` upgrades to head.

Every process that uses the store may call it at start-up, so two of them can migrate at once. The
whole upgrade runs in one transaction that first takes a lock (a PostgreSQL advisory lock, SQLite's
write lock), so the second process waits, then finds the schema at head and does nothing.
"""

from __future__ import annotations

import threading
from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import Connection, Engine, text

from claude_batch.store.engine import WRITE_OPTION, make_engine

SCRIPT_LOCATION = Path(__file__).resolve().parent

# Its own name, so the store may share a database with another alembic-managed schema (Airflow's).
VERSION_TABLE = "claude_batch_alembic_version"

# Any constant unique to this project: the key of the PostgreSQL advisory lock held while migrating.
ADVISORY_LOCK_KEY = 4_711_270_391_355_120_001

# alembic's `op` and `context` are module-level proxies, so two threads of one process must not
# run migrations at the same time; processes are serialized by the database lock.
_PROCESS_LOCK = threading.Lock()


def alembic_config(connection: Connection) -> Config:
    """An alembic Config bound to an open connection; env.py runs on it (also for `command.revision`)."""
    config = Config()
    config.set_main_option("script_location", str(SCRIPT_LOCATION))
    config.attributes["connection"] = connection
    return config


def upgrade(engine: Engine) -> None:
    """Upgrade the store's schema to the latest revision; a no-op when it is already there."""
    with _PROCESS_LOCK, engine.connect() as connection:
        connection = connection.execution_options(**{WRITE_OPTION: True})
        with connection.begin():
            if connection.dialect.name == "postgresql":
                connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": ADVISORY_LOCK_KEY})
            command.upgrade(alembic_config(connection), "head")


def migrate(url: str) -> None:
    """Upgrade the store at ``url`` to the latest revision."""
    engine = make_engine(url)
    try:
        upgrade(engine)
    finally:
        engine.dispose()
