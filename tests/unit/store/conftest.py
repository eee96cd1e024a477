"""A migrated store on each backend (a fresh SQLite file, a fresh PostgreSQL database)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date

import pytest

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
