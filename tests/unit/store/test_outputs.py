"""Outputs: upserted by workload, business key and logical date, so a re-run never duplicates."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from datetime import timedelta

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from claude_batch.store import OutputRow, RunRecord, Store, repository
from tests.unit.store.conftest import LOGICAL_DATE
from tests.unit.store.test_manifest import BULK_ROWS, BULK_STATEMENTS


def _output(key: str, risk: str = "low", source: str = "batch", round: int = 0) -> OutputRow:
    return OutputRow(
        business_key=key,
        custom_id=f"loan-{key}",
        output={"risk_level": risk, "missing_disclosures": []},
        model="claude-sonnet-4-5",
        source=source,  # type: ignore[arg-type]
        round=round,
        input_tokens=1200,
        output_tokens=80,
    )


def _outputs(count: int, risk: str = "low") -> Iterator[OutputRow]:
    return (_output(f"LF-{position:06d}", risk) for position in range(count))


def test_rerun_upserts_without_duplicating(store: Store, run: RunRecord) -> None:
    store.upsert_outputs("loan_review", LOGICAL_DATE, _outputs(500))
    first = store.get_output("loan_review", "LF-000042", LOGICAL_DATE)

    store.upsert_outputs("loan_review", LOGICAL_DATE, _outputs(500, risk="high"))
    rerun = store.get_output("loan_review", "LF-000042", LOGICAL_DATE)

    assert store.outputs_count("loan_review", LOGICAL_DATE) == 500
    assert first is not None and rerun is not None
    assert rerun.output["risk_level"] == "high"
    assert rerun.created_at == first.created_at
    assert rerun.updated_at >= first.updated_at


def test_outputs_of_other_dates_and_workloads_stay_apart(store: Store) -> None:
    store.upsert_outputs("loan_review", LOGICAL_DATE, _outputs(3))
    store.upsert_outputs("loan_review", LOGICAL_DATE + timedelta(days=1), _outputs(3))
    store.upsert_outputs("document_tagging", LOGICAL_DATE, _outputs(3))

    assert store.outputs_count("loan_review", LOGICAL_DATE) == 3
    assert store.get_output("loan_review", "LF-000099", LOGICAL_DATE) is None


def test_a_synchronous_rerun_of_one_record_replaces_its_output(store: Store) -> None:
    store.upsert_outputs("loan_review", LOGICAL_DATE, _outputs(10))

    store.upsert_outputs("loan_review", LOGICAL_DATE, [_output("LF-000003", "medium", source="rerun")])

    rerun = store.get_output("loan_review", "LF-000003", LOGICAL_DATE)
    assert rerun is not None
    assert (rerun.source, rerun.output["risk_level"]) == ("rerun", "medium")
    assert (rerun.input_tokens, rerun.output_tokens) == (1200, 80)
    assert store.outputs_count("loan_review", LOGICAL_DATE) == 10


def test_bulk_outputs_of_twenty_thousand_rows_go_in_pages_of_rows(
    store: Store, run: RunRecord, statement_log: list[int]
) -> None:
    read = store.upsert_outputs("loan_review", LOGICAL_DATE, _outputs(BULK_ROWS))

    assert read == BULK_ROWS
    assert store.outputs_count("loan_review", LOGICAL_DATE) == BULK_ROWS
    assert max(statement_log) == 1, "a bulk statement went as executemany (a round trip per row)"
    assert len(statement_log) <= BULK_STATEMENTS, len(statement_log)


_examples = itertools.count()
upsert_batches = st.lists(
    st.lists(st.tuples(st.sampled_from("ABCDEFGH"), st.integers(0, 9)), max_size=12), min_size=1, max_size=6
)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(batches=upsert_batches)
def test_any_sequence_of_upserts_leaves_one_row_per_key_with_the_last_value(
    store: Store, monkeypatch: pytest.MonkeyPatch, batches: list[list[tuple[str, int]]]
) -> None:
    # Tiny chunks, so that repeated keys fall both inside one statement and across statements.
    monkeypatch.setattr(repository, "BULK_CHUNK", 3)
    # The store outlives hypothesis examples, so each example writes under its own workload.
    workload = f"property-{next(_examples)}"
    for batch in batches:
        rows = [_output(key, risk=str(value), round=value) for key, value in batch]
        store.upsert_outputs(workload, LOGICAL_DATE, rows)

    expected = {key: value for batch in batches for key, value in batch}
    assert store.outputs_count(workload, LOGICAL_DATE) == len(expected)
    for key, value in expected.items():
        stored = store.get_output(workload, key, LOGICAL_DATE)
        assert stored is not None
        assert (stored.output["risk_level"], stored.round) == (str(value), value)
