"""Engines for the store: PostgreSQL in production, a SQLite file by default.

SQLite needs care to let several processes (scheduler, workers, triggerer) write the same file:
WAL so readers never block the writer, a busy timeout so a writer waits for the lock instead of
failing, and ``BEGIN IMMEDIATE`` for write transactions, because a deferred transaction that reads
first and writes later can fail with "database is locked" without waiting at all.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, Engine, create_engine, event, make_url

# Execution option that marks a connection as a writer; see the module docstring.
WRITE_OPTION = "claude_batch_write"

SQLITE_BUSY_TIMEOUT_S = 30.0


def make_engine(url: str) -> Engine:
    """Create an engine for the store's database URL with settings fit for concurrent writers."""
    if make_url(url).get_backend_name() == "sqlite":
        return _sqlite_engine(url)
    # pre_ping: Airflow workers and triggerers hold engines for hours and the server may drop idle
    # connections; recycle keeps them under common proxy idle limits.
    return create_engine(url, pool_pre_ping=True, pool_recycle=1800, pool_size=5, max_overflow=5)


def _sqlite_engine(url: str) -> Engine:
    # The driver's timeout is SQLite's busy timeout, in force from the first statement on.
    engine = create_engine(url, connect_args={"timeout": SQLITE_BUSY_TIMEOUT_S})

    @event.listens_for(engine, "connect")
    def _configure(dbapi_connection: Any, connection_record: Any) -> None:
        # The driver's own implicit BEGIN is switched off so that _begin below decides the lock mode.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode = WAL")
        cursor.execute("PRAGMA synchronous = NORMAL")
        cursor.execute("PRAGMA foreign_keys = ON")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _begin(connection: Connection) -> None:
        writer = connection.get_execution_options().get(WRITE_OPTION, False)
        connection.exec_driver_sql("BEGIN IMMEDIATE" if writer else "BEGIN")

    return engine
