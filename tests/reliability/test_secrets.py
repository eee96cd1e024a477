"""Secrets: after a full run with faults on every endpoint (so error paths log too), the API key of
the ``anthropic_default`` connection appears in no log, XCom, rendered template field, run report,
file under the data folder, nor any table of the store or the Airflow metadata DB."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import sqlalchemy as sa

from tests.reliability import driver

API_KEY = "sk-ant-api03-RELIABILITY-CANARY-7f3c9e1d2b4a-0000"
# The whole key, and pieces of it: a key cut or partly masked in a message still leaks.
FRAGMENTS = [API_KEY, "RELIABILITY-CANARY-7f3c9e1d2b4a", "7f3c9e1d2b4a"]
FAULTS = {
    "requests": {
        "errored": {"api_error": 0.03, "invalid_request_error": 0.03, "overloaded_error": 0.02},
        "expired": 0.03,
        "invalid_output": 0.03,
    },
    "endpoints": {
        endpoint: {"api_error": 0.05, "rate_limited": 0.05, "retry_after_seconds": 0}
        for endpoint in ("messages", "count_tokens", "retrieve_batch", "list_batches", "cancel_batch")
    }
    | {
        "create_batch": {"connection_reset": 0.3, "api_error": 0.1, "retry_after_seconds": 0},
        "results": {"truncated": 0.3},
    },
}


def text_of(value: object) -> str:
    if isinstance(value, bytes | memoryview):
        return bytes(value).decode("latin-1")
    return "" if value is None else str(value)


def dump_tables(db_file: Path) -> dict[str, str]:
    """Every column of every row of every table, as text, per table."""
    engine = sa.create_engine(f"sqlite:///{db_file}")
    dumped = {}
    with engine.connect() as connection:
        for table in sa.inspect(engine).get_table_names():
            rows = connection.execute(sa.text(f'SELECT * FROM "{table}"')).all()
            dumped[table] = "\n".join("\x1f".join(text_of(v) for v in row) for row in rows)
    engine.dispose()
    return dumped


def files_under(*folders: Path) -> dict[Path, str]:
    return {p: text_of(p.read_bytes()) for folder in folders for p in folder.rglob("*") if p.is_file()}


def leaks(text: str) -> list[str]:
    return [fragment for fragment in FRAGMENTS if fragment in text]


def test_the_api_key_reaches_no_log_xcom_rendered_field_report_file_or_table(
    emulator_factory, tmp_path: Path
) -> None:
    emulator = emulator_factory(processing_seconds=1.0, faults=FAULTS, seed=11)
    template = driver.migrate(tmp_path / "template")
    home = driver.migrated_home(template, tmp_path / "airflow_home")
    data, store_db = tmp_path / "data", tmp_path / "store" / "store.db"
    store_db.parent.mkdir()
    env = driver.environment(
        home, emulator_url=emulator.base_url, api_key=API_KEY, store_url=f"sqlite:///{store_db}",
        data_uri=f"file://{data}",
    )  # fmt: skip
    from claude_demo.loans import write_loan_files

    loans = write_loan_files(tmp_path / "inputs" / "loans.jsonl", 130)
    with loans.open("a") as out:  # a bad record: its quarantine reason is written too
        out.write('{"loan_file_id": "bad-1", "product": "auto", "borrower_state": "CA", "text": ""}\n')

    code, output = driver.run(env, loans, logical_date=datetime(2026, 6, 7, 5, tzinfo=UTC))

    assert output.splitlines()[-1] == f"{driver.STATE_PREFIX}success", output[-3000:]
    assert code == 0
    # Where a key could end up, each looked at (and shown to hold the run, so the scan is real).
    assert leaks(output) == []
    assert "loan-2026-06-07-100000" in output or "Created batch" in output or "created batch" in output
    files = files_under(home, data, store_db.parent)
    assert any(p.name == "report.json" for p in files)
    assert {p: leaks(t) for p, t in files.items() if leaks(t)} == {}
    metadata = dump_tables(home / "airflow.db")
    assert "loans.jsonl" in metadata["xcom"]
    assert "loans.jsonl" in metadata["rendered_task_instance_fields"]
    assert {t: leaks(text) for t, text in metadata.items() if leaks(text)} == {}
    store = dump_tables(store_db)
    assert "loan-2026-06-07-100000" in store["manifest"] and "bad-1" in store["quarantine"]
    assert "all_sync_cost_usd" in store["runs"]  # the run report
    assert {t: leaks(text) for t, text in store.items() if leaks(text)} == {}
    # The run really went through the faults it was meant to exercise.
    stats = emulator.stats()
    assert stats["batches_created"] >= 1
    assert sum(n for kinds in stats["http_faults_injected"].values() for n in kinds.values()) > 0
