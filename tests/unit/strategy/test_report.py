from __future__ import annotations

from datetime import UTC, date, datetime

import pytest

from claude_batch.strategy.health import HealthLevel, HealthReport
from claude_batch.strategy.report import Lever, RunReport
from claude_batch.strategy.usage import Usage


def _report(**changes: object) -> RunReport:
    fields: dict[str, object] = {
        "workload": "loan_disclosure_review",
        "run_date": date(2026, 6, 7),
        "inputs": 1000,
        "published": 990,
        "quarantined": {"empty_text": 4, "attempts_exhausted": 6},
        "recovered": 12,
        "batches_created": 2,
        "rounds": 1,
        "tokens": Usage(input_tokens=1_200_000, output_tokens=150_000),
        "cost_usd": 2.93,
        "all_sync_cost_usd": 5.85,
        "levers": [Lever(lever="route", value="batch", rationale="bulk: batch: 1000 requests, no deadline")],
        "deadline": datetime(2026, 6, 7, 12, 0, tzinfo=UTC),
        "finished_at": datetime(2026, 6, 7, 7, 30, tzinfo=UTC),
        "health": HealthReport(level=HealthLevel.OK, shares={"succeeded": 1.0}, signals=[]),
    }
    return RunReport.model_validate({**fields, **changes})


def test_a_report_adds_up_when_every_input_is_published_or_quarantined() -> None:
    assert _report().accounted()
    assert not _report(published=989).accounted()


def test_saving_and_deadline_are_derived_and_serialized() -> None:
    dumped = _report().model_dump(mode="json")
    assert dumped["saving_usd"] == pytest.approx(2.92)
    assert dumped["quarantined_total"] == 10
    assert dumped["met_deadline"] is True
    assert _report(finished_at=None).met_deadline is None


def test_summary_lines_read_as_a_log_a_person_can_follow() -> None:
    lines = _report().summary_lines()
    assert lines[:3] == [
        "run report: loan_disclosure_review 2026-06-07",
        "records: 1000 in = 990 published + 10 quarantined",
        "quarantined: attempts_exhausted 6, empty_text 4",
    ]
    assert "cost: $2.93 vs $5.85 all-synchronous, saving $2.92 (50%)" in lines
    assert "deadline: 2026-06-07T12:00+00:00, finished 2026-06-07T07:30+00:00: met" in lines
    assert "lever route = batch: bulk: batch: 1000 requests, no deadline" in lines
    assert lines[-1] == "health: ok"


def test_a_report_that_does_not_add_up_says_so() -> None:
    assert "DOES NOT ADD UP" in _report(published=10).summary_lines()[1]
