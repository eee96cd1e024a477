"""A migrated store on each backend (a fresh SQLite file, a fresh PostgreSQL database)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date

import pytest
from sqlalchemy import event

from claude_batch.store import RunRecord, Store

LOGICAL_DATE = date(2026, 6, 7)


@pytest.fixture
def store(store_url: str) -> Iterator[Store]:
    with Store.connect(store_url) as opened:
        opened.migrate()
        yield opened


@pytest.fixture
def run(store: Store) -> RunRecord:
    return store.open_run("loan_review", LOGICAL_DATE, "scheduled__2026-06-07T00:00:00+00:00")


@pytest.fixture
def statement_log(store: Store) -> Iterator[list[int]]:
    """One entry per SQL statement the store sends from now on: how many rows' parameters it carries
    as separate sets. Above 1 it went as a DB-API ``executemany``, which psycopg2 runs once per row,
    about 30 times slower than the multi-row INSERTs SQLAlchemy pages rows into."""
    log: list[int] = []

    def record(conn, cursor, statement, parameters, context, executemany) -> None:
        log.append(len(parameters) if executemany and isinstance(parameters, list) else 1)

    engine = store._engine  # the test listens on the store's own engine; nothing else reaches it
    event.listen(engine, "before_cursor_execute", record)
    yield log
    event.remove(engine, "before_cursor_execute", record)
