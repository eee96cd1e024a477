"""The alembic migrations build exactly the schema the models describe, once, even when raced."""

from __future__ import annotations

import subprocess
import sys

import sqlalchemy as sa
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from claude_batch.store import migrate
from claude_batch.store.engine import make_engine
from claude_batch.store.migrations import VERSION_TABLE, alembic_config
from claude_batch.store.models import Base

STORE_TABLES = {
    "runs",
    "shards",
    "batch_attempts",
    "manifest",
    "outputs",
    "quarantine",
    "sample_validations",
    "reruns",
    "round_routes",
}
# The newest revision: a new migration moves it.
HEAD = "0006"


def _schema_diff(url: str) -> list[object]:
    engine = make_engine(url)
    try:
        with engine.connect() as connection:
            context = MigrationContext.configure(
                connection, opts={"version_table": VERSION_TABLE, "compare_type": True}
            )
            return compare_metadata(context, Base.metadata)
    finally:
        engine.dispose()


def _tables_and_head(url: str) -> tuple[set[str], list[str]]:
    engine = make_engine(url)
    try:
        with engine.connect() as connection:
            tables = set(sa.inspect(connection).get_table_names())
            heads = (
                connection.execute(sa.text(f"SELECT version_num FROM {VERSION_TABLE}")).scalars().all()
                if VERSION_TABLE in tables
                else []
            )
            return tables, heads
    finally:
        engine.dispose()


def test_migrate_builds_every_table_from_an_empty_database(store_url: str) -> None:
    migrate(store_url)

    tables, heads = _tables_and_head(store_url)
    assert tables == STORE_TABLES | {VERSION_TABLE}
    assert heads == [HEAD]


def test_migrated_schema_agrees_with_the_models(store_url: str) -> None:
    migrate(store_url)

    assert _schema_diff(store_url) == []


def test_schema_comparison_notices_a_drift(store_url: str) -> None:
    migrate(store_url)
    engine = make_engine(store_url)
    with engine.begin() as connection:
        connection.execute(sa.text("DROP INDEX ix_sample_validations_workload_prompt_fingerprint_model"))
    engine.dispose()

    assert [diff[0] for diff in _schema_diff(store_url)] == ["add_index"]


def test_migrating_again_changes_nothing(store_url: str) -> None:
    migrate(store_url)
    migrate(store_url)

    assert _tables_and_head(store_url) == (STORE_TABLES | {VERSION_TABLE}, [HEAD])


def test_upgrading_a_store_of_the_first_revision_keeps_its_runs(store_url: str) -> None:
    engine = make_engine(store_url)
    with engine.begin() as connection:
        command.upgrade(alembic_config(connection), "0001")
        connection.execute(
            sa.text(
                "INSERT INTO runs (workload, logical_date, status, params, created_at) "
                "VALUES ('w', '2026-06-07', 'succeeded', '{}', '2026-06-07 08:00:00')"
            )
        )
    engine.dispose()

    migrate(store_url)

    engine = make_engine(store_url)
    with engine.connect() as connection:
        rows = connection.execute(sa.text("SELECT workload, status, error FROM runs")).all()
    engine.dispose()
    assert [tuple(r) for r in rows] == [("w", "succeeded", None)]
    assert _schema_diff(store_url) == []


def test_downgrade_to_base_removes_the_store(store_url: str) -> None:
    migrate(store_url)
    engine = make_engine(store_url)
    with engine.begin() as connection:
        command.downgrade(alembic_config(connection), "base")
    engine.dispose()

    assert _tables_and_head(store_url) == ({VERSION_TABLE}, [])


def test_processes_migrating_at_the_same_time_all_succeed(store_url: str) -> None:
    script = "import sys; from claude_batch.store import migrate; migrate(sys.argv[1])"
    processes = [
        subprocess.Popen([sys.executable, "-c", script, store_url], stderr=subprocess.PIPE, text=True)
        for _ in range(4)
    ]
    stderrs = [process.communicate(timeout=120)[1] for process in processes]
    failures = [stderr for process, stderr in zip(processes, stderrs, strict=True) if process.returncode != 0]

    assert failures == []
    assert _tables_and_head(store_url) == (STORE_TABLES | {VERSION_TABLE}, [HEAD])
    assert _schema_diff(store_url) == []
