"""The re-run ledger: a row before the paid call, the replaced output or quarantine kept, and undo."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import create_engine, text

from claude_batch.store import (
    ManifestRow,
    OutputRow,
    QuarantineRow,
    RerunConflictError,
    RerunRateLimitedError,
    RunRecord,
    Store,
)
from claude_batch.strategy.usage import Usage
from tests.unit.store.conftest import LOGICAL_DATE


def _output(key: str, risk: str, source: str) -> OutputRow:
    return OutputRow(
        business_key=key,
        custom_id=f"loan-{key}",
        output={"loan_file_id": key, "risk_level": risk},
        model="claude-sonnet-4-6",
        source=source,  # type: ignore[arg-type]
        input_tokens=900,
        output_tokens=40,
    )


def _intent(store: Store, run: RunRecord, key: str, who: str = "analyst") -> int:
    return store.record_rerun_intent(
        run.id, key, f"loan-{key}", who, "the APR looked wrong", "claude-sonnet-4-6"
    ).id


def test_the_ledger_row_is_written_before_the_call_and_completed_after(store: Store, run: RunRecord) -> None:
    rerun_id = _intent(store, run, "A1")

    [intent] = store.reruns(run.id)
    assert (intent.status, intent.requested_by, intent.reason) == (
        "intent",
        "analyst",
        "the APR looked wrong",
    )
    assert intent.ended_at is None

    done = store.publish_rerun(rerun_id, _output("A1", "low", "rerun"), cost_usd=0.0123)

    assert done.status == "published" and done.cost_usd == pytest.approx(0.0123)
    assert (done.input_tokens, done.output_tokens) == (900, 40) and done.ended_at is not None
    assert store.get_output("loan_review", "A1", LOGICAL_DATE).source == "rerun"
    with pytest.raises(RerunConflictError, match="already published"):
        store.publish_rerun(rerun_id, _output("A1", "high", "rerun"), cost_usd=0.0)


def test_a_replaced_output_is_kept_and_undo_puts_it_back(store: Store, run: RunRecord) -> None:
    store.upsert_outputs("loan_review", LOGICAL_DATE, [_output("A1", "high", "batch")])
    rerun_id = _intent(store, run, "A1")

    done = store.publish_rerun(rerun_id, _output("A1", "low", "rerun"), cost_usd=0.01)

    assert done.replaced_output["output"]["risk_level"] == "high"
    assert done.replaced_output["source"] == "batch"
    assert store.get_output("loan_review", "A1", LOGICAL_DATE).output["risk_level"] == "low"

    undone = store.undo_rerun(rerun_id, "supervisor")

    assert (undone.status, undone.undone_by) == ("undone", "supervisor")
    restored = store.get_output("loan_review", "A1", LOGICAL_DATE)
    assert (restored.output["risk_level"], restored.source) == ("high", "batch")
    with pytest.raises(RerunConflictError, match="only a published one is undone"):
        store.undo_rerun(rerun_id, "supervisor")


def test_a_released_quarantine_row_comes_back_on_undo(store: Store, run: RunRecord) -> None:
    store.add_manifest(run.id, [ManifestRow(custom_id="loan-A1", business_key="A1", shard=0, position=3)])
    store.quarantine(
        run.id, [QuarantineRow(quarantine_class="invalid_output", reason="not JSON", position=3, custom_id="loan-A1", business_key="A1")]
    )  # fmt: skip
    rerun_id = _intent(store, run, "A1")

    done = store.publish_rerun(rerun_id, _output("A1", "low", "rerun"), cost_usd=0.01)

    assert done.replaced_output is None
    assert [row["quarantine_class"] for row in done.released_quarantine["rows"]] == ["invalid_output"]
    assert store.quarantine_rows(run.id) == [] and store.accounting(run.id).published == 1

    store.undo_rerun(rerun_id, "supervisor")

    assert store.get_output("loan_review", "A1", LOGICAL_DATE) is None
    [back] = store.quarantine_rows(run.id)
    assert (back.quarantine_class, back.reason, back.position) == ("invalid_output", "not JSON", 3)
    assert store.accounting(run.id).quarantined == 1


def test_undo_is_refused_once_a_later_rerun_replaced_the_output(store: Store, run: RunRecord) -> None:
    first = _intent(store, run, "A1")
    store.publish_rerun(first, _output("A1", "medium", "rerun"), cost_usd=0.01)
    second = _intent(store, run, "A1", who="other")
    store.publish_rerun(second, _output("A1", "low", "rerun"), cost_usd=0.01)

    with pytest.raises(RerunConflictError, match="undo the later re-run first"):
        store.undo_rerun(first, "analyst")
    store.undo_rerun(second, "other")
    assert store.get_output("loan_review", "A1", LOGICAL_DATE).output["risk_level"] == "medium"


def test_a_failed_rerun_keeps_its_cost_and_error_and_publishes_nothing(store: Store, run: RunRecord) -> None:
    rerun_id = _intent(store, run, "A1")

    failed = store.fail_rerun(
        rerun_id, "invalid_output", "not JSON", Usage(input_tokens=800, output_tokens=5), cost_usd=0.003
    )

    assert (failed.status, failed.error, failed.input_tokens) == ("invalid_output", "not JSON", 800)
    assert store.get_output("loan_review", "A1", LOGICAL_DATE) is None


def test_the_1h_cache_writes_are_kept_on_the_output_and_the_ledger_row(store: Store, run: RunRecord) -> None:
    rerun_id = _intent(store, run, "A1")
    usage = Usage(
        input_tokens=900,
        output_tokens=40,
        cache_creation_input_tokens=500,
        cache_creation_1h_input_tokens=300,
    )
    row = _output("A1", "low", "rerun").model_copy(update=OutputRow.token_counts(usage))

    done = store.publish_rerun(rerun_id, row, cost_usd=0.01)

    assert done.cache_creation_1h_input_tokens == 300
    assert (
        OutputRow.model_validate(
            store.get_output("loan_review", "A1", LOGICAL_DATE).model_dump(
                include=set(OutputRow.model_fields)
            )
        ).usage
        == usage
    )


def test_the_per_person_limit_holds_across_processes_of_the_deployment(
    store_url: str, run: RunRecord
) -> None:
    # Two stores on one database stand for two api-server processes (or hosts); twelve of ana's
    # re-runs arrive at once, half through each. An in-process counter would let 2 x 5 through.
    with Store.connect(store_url) as one, Store.connect(store_url) as other:

        def try_intent(number: int) -> bool:
            store = (one, other)[number % 2]
            try:
                store.record_rerun_intent(
                    run.id,
                    f"A{number}",
                    f"loan-A{number}",
                    "ana",
                    "checking",
                    "claude-sonnet-4-6",
                    per_minute=5,
                )
            except RerunRateLimitedError as error:
                assert 0 < error.retry_after_seconds <= 60 and "ana has re-run 5 records" in str(error)
                return False
            return True

        with ThreadPoolExecutor(max_workers=12) as pool:
            accepted = list(pool.map(try_intent, range(12)))

        assert accepted.count(True) == 5
        assert [r.requested_by for r in one.reruns(run.id)] == ["ana"] * 5
        with pytest.raises(RerunRateLimitedError):
            other.check_rerun_rate("ana", 5)
        # The limit is each person's: bo is not held back by ana's re-runs.
        other.check_rerun_rate("bo", 5)
        one.record_rerun_intent(run.id, "B1", "loan-B1", "bo", "checking", "claude-sonnet-4-6", per_minute=5)


def test_a_rerun_older_than_a_minute_no_longer_counts(store_url: str, store: Store, run: RunRecord) -> None:
    for key in ("A1", "A2"):
        store.record_rerun_intent(
            run.id, key, f"loan-{key}", "ana", "checking", "claude-sonnet-4-6", per_minute=2
        )
    with pytest.raises(RerunRateLimitedError) as limited:
        store.check_rerun_rate("ana", 2)
    assert 55 < limited.value.retry_after_seconds <= 60

    # The first one ages out of the window: one more may start, and then the limit is reached again.
    oldest = min(r.id for r in store.reruns(run.id))
    with create_engine(store_url).begin() as connection:
        connection.execute(
            text("UPDATE reruns SET created_at = :at WHERE id = :id"),
            {"at": datetime.now(UTC) - timedelta(seconds=61), "id": oldest},
        )
    store.record_rerun_intent(run.id, "A3", "loan-A3", "ana", "checking", "claude-sonnet-4-6", per_minute=2)
    with pytest.raises(RerunRateLimitedError):
        store.record_rerun_intent(
            run.id, "A4", "loan-A4", "ana", "checking", "claude-sonnet-4-6", per_minute=2
        )
    assert len(store.reruns(run.id)) == 3


def test_publishing_the_night_again_keeps_a_rerun_and_its_undo(store: Store, run: RunRecord) -> None:
    # On-call clears publish after an analyst re-ran a record: the paid re-run stays published.
    store.upsert_outputs(
        "loan_review", LOGICAL_DATE, [_output("A1", "high", "batch"), _output("A2", "high", "batch")]
    )
    rerun_id = _intent(store, run, "A1")
    store.publish_rerun(rerun_id, _output("A1", "low", "rerun"), cost_usd=0.01)

    store.upsert_outputs(
        "loan_review", LOGICAL_DATE, [_output("A1", "high", "batch"), _output("A2", "medium", "batch")]
    )

    kept = store.get_output("loan_review", "A1", LOGICAL_DATE)
    assert (kept.source, kept.output["risk_level"]) == ("rerun", "low")
    assert store.get_output("loan_review", "A2", LOGICAL_DATE).output["risk_level"] == "medium"
    # Undo still finds the re-run's output in place and puts the night's answer back.
    assert store.undo_rerun(rerun_id, "supervisor").status == "undone"
    restored = store.get_output("loan_review", "A1", LOGICAL_DATE)
    assert (restored.source, restored.output["risk_level"]) == ("batch", "high")
