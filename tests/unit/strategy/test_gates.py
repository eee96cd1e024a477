"""Gates a person decides and the sample-only report: the decision deadline, the evidence, the report."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

from claude_batch.strategy.gates import (
    EXAMPLES_SHOWN,
    PromptTry,
    SampleReport,
    budget_evidence,
    decision_deadline,
    sample_evidence,
)
from claude_batch.strategy.routing import Route
from claude_batch.strategy.sampling import GateResult, SampleFailure
from claude_batch.strategy.spec import RoutingSpec

NEW_YORK = ZoneInfo("America/New_York")
ROUTING = RoutingSpec(
    expected_batch_latency=timedelta(hours=1),
    batch_safety_margin=timedelta(hours=2),
    sync_requests_per_minute=50,
    sync_concurrency=8,
    expected_sync_latency=timedelta(seconds=20),
)


def _gate(failing: int, n: int = 60) -> GateResult:
    failures = [
        SampleFailure(custom_id=f"loan-{i}", reason=f"risk_level is 'high' ```{i}") for i in range(failing)
    ]
    return GateResult(
        passed=False, pass_rate=(n - failing) / n, n=n, valid=n - failing, pass_gate=0.9, failures=failures
    )


def test_a_batch_night_must_be_approved_before_its_latency_and_margin_eat_the_deadline() -> None:
    deadline = datetime(2026, 6, 8, 8, 0, tzinfo=NEW_YORK)

    assert decision_deadline(deadline, Route.BATCH, 60_000, ROUTING) == datetime(2026, 6, 8, 9, 0, tzinfo=UTC)


def test_a_sync_night_keeps_the_time_its_calls_take_at_the_sustained_rate() -> None:
    deadline = datetime(2026, 6, 8, 12, 0, tzinfo=UTC)

    # 600 requests at 24/min (8 in flight, 20 s each, under the 50/min limit): 25 minutes, plus the margin.
    assert decision_deadline(deadline, Route.SYNC, 600, ROUTING) == datetime(2026, 6, 8, 9, 35, tzinfo=UTC)


def test_the_sample_evidence_shows_the_rate_the_gate_and_the_failing_answers_in_a_code_block() -> None:
    body = sample_evidence(_gate(failing=25), "loan_disclosure_review", date(2026, 6, 7))

    assert "**35/60 valid answers (58.3%)**, the gate is 90%" in body
    assert "Failing answers (25):" in body
    assert f"loan-{EXAMPLES_SHOWN - 1}:" in body and f"loan-{EXAMPLES_SHOWN}:" not in body
    assert "... and 5 more" in body
    # An answer cannot close the code block it is quoted in.
    assert body.count("```") == 2


def test_the_budget_evidence_sets_the_estimate_against_the_budget() -> None:
    body = budget_evidence("loan_disclosure_review", date(2026, 6, 7), 450.0, 300.0, "count_tokens on 30")

    assert "about **$450.00** against **$300.00** (150% of it)" in body
    assert "How it was estimated: count_tokens on 30." in body


def test_the_sample_report_compares_the_pass_rate_with_the_previous_prompt() -> None:
    at = datetime(2026, 6, 7, 10, 0, tzinfo=UTC)
    report = SampleReport(
        workload="loan_disclosure_review",
        run_date=date(2026, 6, 8),
        gate=_gate(failing=6),
        current=PromptTry(
            prompt_fingerprint="b" * 64, model="m", sample_size=60, pass_rate=0.9, passed=False, created_at=at
        ),
        previous=PromptTry(
            prompt_fingerprint="a" * 64,
            model="m",
            sample_size=30,
            pass_rate=0.75,
            passed=False,
            created_at=at,
        ),
        estimated_usd=1.5,
        estimate="$1.5000 for 120 requests by batch",
    )

    first = report.lines()[0]
    assert first.startswith(
        "sample only, loan_disclosure_review 2026-06-08: FAIL 54/60 valid (90.0%), gate 90%"
    )
    assert "+15.0 points against the previous prompt aaaaaaaaaaaa (m): 75.0% of 30, failed" in first
    assert "  loan-5: risk_level is 'high' '''5" in report.lines()
    summary = report.summary()
    assert summary["previous_fingerprint"] == "a" * 64 and summary["failing"] == 6
    assert all(isinstance(value, bool | int | float | str) for value in summary.values())
