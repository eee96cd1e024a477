"""Quarantine and the exactly-once accounting: every manifest record ends once, and only once."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import timedelta

import pytest
from pydantic import ValidationError

from claude_batch.store import ManifestRow, OutputRow, QuarantineRow, RunRecord, Store
from tests.unit.store.conftest import LOGICAL_DATE


def _manifest(store: Store, run: RunRecord, count: int) -> None:
    store.add_manifest(
        run.id,
        (
            ManifestRow(custom_id=f"loan-{i}", business_key=f"LF-{i}", shard=0, position=i)
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


def _given_up(i: int, quarantine_class: str = "attempts_exhausted", attempts: int = 1) -> QuarantineRow:
    """A record sent and given up on by recovery, which knows its custom_id but not its position."""
    return QuarantineRow(
        quarantine_class=quarantine_class,
        reason=f"loan-{i} (LF-{i}): overloaded_error on every round",
        custom_id=f"loan-{i}",
        business_key=f"LF-{i}",
        attempts=attempts,
    )


def test_a_record_quarantined_again_keeps_one_row_found_by_its_input_position(
    store: Store, run: RunRecord
) -> None:
    _manifest(store, run, 3)
    store.quarantine(run.id, [_given_up(1, "invalid_output", attempts=1)])

    store.quarantine(run.id, [_given_up(1, "attempts_exhausted", attempts=2), _given_up(2)])

    rows = store.quarantine_rows(run.id)
    assert [(row.record_ref, row.position, row.quarantine_class, row.attempts) for row in rows] == [
        ("position:1", 1, "attempts_exhausted", 2),
        ("position:2", 2, "attempts_exhausted", 1),
    ]
    assert store.quarantine_counts(run.id) == {"attempts_exhausted": 2}


def test_publishing_a_quarantined_record_releases_it(store: Store, run: RunRecord) -> None:
    _manifest(store, run, 10)
    _publish(store, run, range(7))
    store.quarantine(run.id, [_given_up(i) for i in (7, 8, 9)])

    _publish(store, run, [8], round=1)

    assert store.quarantine_counts(run.id) == {"attempts_exhausted": 2}
    accounting = store.accounting(run.id)
    assert (accounting.manifest, accounting.published, accounting.quarantined) == (10, 8, 2)
    assert accounting.balanced


def test_a_duplicate_rejected_at_input_stays_quarantined_when_its_key_is_published(
    store: Store, run: RunRecord
) -> None:
    _manifest(store, run, 3)
    # The duplicate of LF-1 at input position 40 has the same custom_id as the record that was sent.
    duplicate = QuarantineRow(
        quarantine_class="duplicate_key",
        reason="the same business key was first seen at position 1",
        position=40,
        custom_id="loan-1",
        business_key="LF-1",
    )
    store.quarantine(run.id, [duplicate])

    _publish(store, run, range(3))

    assert store.quarantine_counts(run.id) == {"duplicate_key": 1}
    accounting = store.accounting(run.id)
    assert (accounting.manifest, accounting.published, accounting.rejected, accounting.inputs) == (3, 3, 1, 4)
    assert accounting.balanced


def test_publishing_releases_quarantine_of_its_own_run_only(store: Store, run: RunRecord) -> None:
    next_day = store.open_run(run.workload, LOGICAL_DATE + timedelta(days=1), "next")
    _manifest(store, run, 2)
    _manifest(store, next_day, 2)
    store.quarantine(run.id, [_given_up(1)])
    store.quarantine(next_day.id, [_given_up(1)])

    _publish(store, next_day, [1])

    assert store.quarantine_counts(run.id) == {"attempts_exhausted": 1}
    assert store.quarantine_counts(next_day.id) == {}


def test_accounting_counts_rejected_inputs_and_unaccounted_records(store: Store, run: RunRecord) -> None:
    _manifest(store, run, 6)
    _publish(store, run, [0, 1, 2])
    store.quarantine(run.id, [_given_up(3)])
    store.quarantine(
        run.id,
        [
            QuarantineRow(quarantine_class="unreadable", reason="line 17 is not JSON", position=17),
            QuarantineRow(quarantine_class="missing_key", reason="no loan_file_id", position=18),
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
    # Quarantine written after the publish (a later verdict on the same date) is kept; the report must see it.
    store.quarantine(run.id, [_given_up(1)])

    accounting = store.accounting(run.id)

    assert (accounting.double_counted, accounting.balanced) == (1, False)


def test_a_record_unknown_to_the_manifest_is_quarantined_by_custom_id(store: Store, run: RunRecord) -> None:
    store.quarantine(run.id, [_given_up(99)])

    [row] = store.quarantine_rows(run.id)

    assert (row.record_ref, row.position) == ("custom_id:loan-99", None)
    assert store.accounting(run.id).rejected == 1


def test_a_quarantined_record_needs_a_position_or_a_custom_id() -> None:
    with pytest.raises(ValidationError, match="position or its custom_id"):
        QuarantineRow(quarantine_class="unreadable", reason="?")
