"""Runs: one per workload and logical date, reopened by a re-run, closed with a report."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta, timezone

import pytest
from sqlalchemy.exc import StatementError

from claude_batch.store import RunRecord, Store, UnknownRunError
from tests.unit.store.conftest import LOGICAL_DATE


def test_rerun_of_a_date_reopens_the_same_run_with_the_new_dag_run(store: Store) -> None:
    first = store.open_run("loan_review", LOGICAL_DATE, "scheduled__1", params={"limit": 10})
    store.finish_run(first.id, "failed", {"reason": "deadline"})

    again = store.open_run("loan_review", LOGICAL_DATE, "manual__2", params={"limit": 20})

    assert again.id == first.id
    assert again.dag_run_id == "manual__2"
    assert again.status == "running"
    assert again.finished_at is None
    assert again.params == {"limit": 20}
    assert again.created_at == first.created_at
    assert store.recent_runs("loan_review") == [again]


def test_other_dates_and_workloads_get_their_own_runs(store: Store) -> None:
    runs = [
        store.open_run("loan_review", LOGICAL_DATE, "a"),
        store.open_run("loan_review", LOGICAL_DATE + timedelta(days=1), "b"),
        store.open_run("document_tagging", LOGICAL_DATE, "c"),
    ]

    assert len({run.id for run in runs}) == 3


def test_recent_runs_are_newest_date_first_and_limited(store: Store) -> None:
    for day in range(5):
        store.open_run("loan_review", date(2026, 6, 1) + timedelta(days=day), f"run-{day}")
    store.open_run("document_tagging", date(2026, 6, 9), "other")

    recent = store.recent_runs("loan_review", limit=3)

    assert [run.logical_date for run in recent] == [date(2026, 6, 5), date(2026, 6, 4), date(2026, 6, 3)]


def test_finish_run_keeps_status_report_and_end_time(store: Store, run: RunRecord) -> None:
    report = {"counts": {"succeeded": 98, "quarantined": 2}, "cost_usd": 1.25, "levers": ["batch"]}

    finished = store.finish_run(run.id, "succeeded", report)

    assert finished.status == "succeeded"
    assert finished.report == report
    assert finished.finished_at is not None
    assert store.get_run(run.id) == finished


def test_deadline_round_trips_as_an_aware_utc_datetime(store: Store) -> None:
    paris_summer = timezone(timedelta(hours=2))
    deadline = datetime(2026, 6, 8, 8, 0, tzinfo=paris_summer)

    opened = store.open_run("loan_review", LOGICAL_DATE, "a", deadline=deadline)

    assert opened.deadline == deadline
    assert opened.deadline is not None and opened.deadline.tzinfo == UTC
    assert opened.created_at.tzinfo == UTC


def test_naive_datetimes_are_refused(store: Store) -> None:
    with pytest.raises(StatementError, match="naive datetime"):
        store.open_run("loan_review", LOGICAL_DATE, "a", deadline=datetime(2026, 6, 8, 8, 0))


def test_unknown_run_is_reported_by_id(store: Store) -> None:
    with pytest.raises(UnknownRunError, match="no run 404"):
        store.get_run(404)
    with pytest.raises(UnknownRunError):
        store.finish_run(404, "failed", {})


def test_a_night_that_failed_before_its_run_was_opened_gets_a_failed_row(store: Store) -> None:
    failed = store.fail_run("loan_review", LOGICAL_DATE, "scheduled__1", "route: input never arrived")

    assert store.recent_runs("loan_review") == [failed]
    assert (failed.status, failed.error, failed.dag_run_id) == (
        "failed",
        "route: input never arrived",
        "scheduled__1",
    )
    assert failed.finished_at is not None


def test_failing_an_open_run_keeps_it_and_a_rerun_clears_the_error(store: Store) -> None:
    opened = store.open_run("loan_review", LOGICAL_DATE, "scheduled__1", params={"input_uri": "x"})

    failed = store.fail_run("loan_review", LOGICAL_DATE, "scheduled__1", "sample_validate: gate failed")
    again = store.open_run("loan_review", LOGICAL_DATE, "manual__2")

    assert failed.id == opened.id
    assert (failed.status, failed.error, failed.params) == (
        "failed",
        "sample_validate: gate failed",
        {"input_uri": "x"},
    )
    assert (again.status, again.error) == ("running", None)


def test_a_dag_run_that_does_not_hold_the_dates_run_cannot_fail_it(store: Store) -> None:
    night = store.open_run("loan_review", LOGICAL_DATE, "scheduled__1", params={"input_uri": "x"})
    done = store.finish_run(night.id, "succeeded", {"published": 3})

    # route refused manual__2 (another input) before opening the run: its failure is its own.
    unchanged = store.fail_run("loan_review", LOGICAL_DATE, "manual__2", "route: another input")

    assert unchanged == done
    assert store.run_of_date("loan_review", LOGICAL_DATE) == done
    # The DAG run that holds it still fails it (a cleared task that fails again).
    failed = store.fail_run("loan_review", LOGICAL_DATE, "scheduled__1", "publish: boom")
    assert (failed.status, failed.error) == ("failed", "publish: boom")


def test_recent_runs_before_a_date_leave_out_that_date_and_later_ones(store: Store) -> None:
    for day in (1, 2, 3, 4):
        store.open_run("loan_review", date(2026, 6, day), f"scheduled__{day}")

    earlier = store.recent_runs("loan_review", 2, before=date(2026, 6, 3))

    # A backfilled or re-published 3 June is compared with 2 and 1 June, not with 4 June.
    assert [r.logical_date for r in earlier] == [date(2026, 6, 2), date(2026, 6, 1)]
    assert [r.logical_date for r in store.recent_runs("loan_review", 2)] == [
        date(2026, 6, 4),
        date(2026, 6, 3),
    ]
