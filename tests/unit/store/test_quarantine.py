"""Quarantine and the exactly-once accounting: every manifest record ends once, and only once."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import timedelta

from claude_batch.store import ManifestRow, OutputRow, QuarantineRow, RunRecord, Store
from tests.unit.store.conftest import LOGICAL_DATE


def _manifest(store: Store, run: RunRecord, count: int) -> None:
    store.add_manifest(
        run.id,
        (
            ManifestRow(custom_id=f"loan-{i}", business_key=f"LF-{i}", shard_index=0, position=i)
            for i in range(count)
        ),
    )


def _publish(store: Store, run: RunRecord, positions: Iterable[int], round: int = 0) -> None:
    rows = (
        OutputRow(
            business_key=f"LF-{i}",
            custom_id=f"loan-{i}",
            output={"ok": True},
            model="m",
            source="batch",
            round=round,
        )
        for i in positions
    )
    store.upsert_outputs(run.workload, run.logical_date, rows)


def _failed(i: int, failure_class: str = "errored", attempts: int = 1) -> QuarantineRow:
    return QuarantineRow(
        record_ref=f"loan-{i}",
        business_key=f"LF-{i}",
        failure_class=failure_class,
        reason="overloaded_error on every round",
        attempts=attempts,
    )


def test_quarantining_a_record_again_replaces_its_row(store: Store, run: RunRecord) -> None:
    store.quarantine(run.id, [_failed(1, "errored", attempts=1)])

    store.quarantine(run.id, [_failed(1, "expired", attempts=2), _failed(2, "invalid_output")])

    rows = store.quarantine_rows(run.id)
    assert [(row.record_ref, row.failure_class, row.attempts) for row in rows] == [
        ("loan-1", "expired", 2),
        ("loan-2", "invalid_output", 1),
    ]
    assert store.quarantine_counts(run.id) == {"expired": 1, "invalid_output": 1}


def test_publishing_a_quarantined_record_releases_it(store: Store, run: RunRecord) -> None:
    _manifest(store, run, 10)
    _publish(store, run, range(7))
    store.quarantine(run.id, [_failed(i) for i in (7, 8, 9)])

    _publish(store, run, [8], round=1)

    assert store.quarantine_counts(run.id) == {"errored": 2}
    accounting = store.accounting(run.id)
    assert (accounting.manifest, accounting.published, accounting.quarantined) == (10, 8, 2)
    assert accounting.balanced


def test_publishing_releases_quarantine_of_its_own_run_only(store: Store, run: RunRecord) -> None:
    next_day = store.open_run(run.workload, LOGICAL_DATE + timedelta(days=1), "next")
    store.quarantine(run.id, [_failed(1)])
    store.quarantine(next_day.id, [_failed(1)])

    _publish(store, next_day, [1])

    assert store.quarantine_counts(run.id) == {"errored": 1}
    assert store.quarantine_counts(next_day.id) == {}


def test_accounting_counts_rejected_inputs_and_unaccounted_records(store: Store, run: RunRecord) -> None:
    _manifest(store, run, 6)
    _publish(store, run, [0, 1, 2])
    store.quarantine(run.id, [_failed(3)])
    store.quarantine(
        run.id,
        [
            QuarantineRow(
                record_ref="line-17", business_key=None, failure_class="missing_key", reason="no id"
            ),
            QuarantineRow(
                record_ref="line-18", business_key="", failure_class="empty_text", reason="no text"
            ),
        ],
    )

    accounting = store.accounting(run.id)

    assert accounting.model_dump() == {
        "manifest": 6,
        "published": 3,
        "quarantined": 1,
        "rejected": 2,
        "unaccounted": 2,
        "double_counted": 0,
    }
    assert accounting.inputs == 8
    assert not accounting.balanced


def test_accounting_notices_a_record_both_published_and_quarantined(store: Store, run: RunRecord) -> None:
    _manifest(store, run, 2)
    _publish(store, run, [0, 1])
    # Quarantine written after the publish (a later run's verdict) is kept, and the report must see it.
    store.quarantine(run.id, [_failed(1)])

    accounting = store.accounting(run.id)

    assert (accounting.double_counted, accounting.balanced) == (1, False)
