from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from hypothesis import given
from hypothesis import strategies as st

from claude_batch.strategy.routing import (
    Route,
    StepFacts,
    decide_route,
    step_facts,
    sync_requests_per_minute,
)
from claude_batch.strategy.spec import RoutingSpec

NOW = datetime(2026, 6, 7, 5, 0, tzinfo=UTC)


def _facts(**changes: Any) -> StepFacts:
    facts: dict[str, Any] = {
        "step": "bulk",
        "volume": 5000,
        "now": NOW,
        "deadline": NOW + timedelta(hours=7),
        "expected_batch_latency": timedelta(hours=1),
        "batch_safety_margin": timedelta(hours=2),
        "sync_requests_per_minute": 50,
        "min_batch_volume": 100,
    }
    return StepFacts(**{**facts, **changes})


def test_a_step_with_time_to_spare_goes_to_batch_for_the_discount() -> None:
    decision = decide_route(_facts())
    assert decision.route is Route.BATCH
    assert decision.rationale == (
        "bulk: batch: 5000 requests, the deadline 2026-06-07T12:00+00:00 is 7h00m away, more than "
        "the expected batch latency 1h00m + safety margin 2h00m; batch for the 50 % discount"
    )
    assert decision.projected_finish == NOW + timedelta(hours=1)
    assert not decision.deadline_at_risk


def test_a_step_without_deadline_goes_to_batch() -> None:
    decision = decide_route(_facts(deadline=None))
    assert decision.route is Route.BATCH
    assert "no deadline" in decision.rationale


def test_a_person_waiting_means_sync() -> None:
    decision = decide_route(_facts(step="rerun one record", volume=1, interactive=True))
    assert decision.route is Route.SYNC
    assert "a person is waiting" in decision.rationale


def test_nothing_to_send_is_not_a_batch() -> None:
    assert decide_route(_facts(volume=0)).route is Route.SYNC


def test_a_deadline_closer_than_latency_and_margin_goes_to_sync_when_sync_makes_it() -> None:
    decision = decide_route(_facts(volume=120, deadline=NOW + timedelta(hours=2)))
    assert decision.route is Route.SYNC
    assert (
        "2h00m away, less than the expected batch latency 1h00m + safety margin 2h00m" in decision.rationale
    )
    assert "120 requests at 50/min take 0h02m, done by 2026-06-07T05:02+00:00, in time" in decision.rationale
    assert not decision.deadline_at_risk


def test_when_sync_misses_the_deadline_a_batch_still_in_time_goes_ahead() -> None:
    decision = decide_route(_facts(volume=50_000, deadline=NOW + timedelta(hours=2)))
    assert decision.route is Route.BATCH
    assert not decision.deadline_at_risk
    assert "in time without the full margin" in decision.rationale


def test_when_even_sync_misses_the_deadline_the_sooner_route_wins_and_says_so() -> None:
    decision = decide_route(_facts(volume=50_000, deadline=NOW + timedelta(minutes=30)))
    assert decision.route is Route.BATCH
    assert decision.deadline_at_risk
    assert "DEADLINE AT RISK" in decision.rationale
    assert "even sync misses it (50000 requests at 50/min take 16h40m" in decision.rationale


def test_a_deadline_already_passed_says_so_and_the_sooner_route_wins() -> None:
    # A backfill of last week, or a night triggered by hand after its 8 a.m.
    decision = decide_route(_facts(volume=400, deadline=NOW - timedelta(hours=13, minutes=43)))
    assert (decision.route, decision.deadline_at_risk) == (Route.SYNC, True)
    assert "the deadline 2026-06-06T15:17+00:00 passed 13h43m ago" in decision.rationale
    assert "-13h" not in decision.rationale


def test_when_sync_misses_the_deadline_but_beats_the_batch_it_stays_sync() -> None:
    decision = decide_route(_facts(volume=400, deadline=NOW + timedelta(minutes=5)))
    assert decision.route is Route.SYNC
    assert decision.deadline_at_risk
    assert "still sooner than a batch" in decision.rationale


def test_a_tiny_volume_stays_sync() -> None:
    decision = decide_route(_facts(volume=40))
    assert decision.route is Route.SYNC
    assert "40 requests is under min_batch_volume 100" in decision.rationale


def test_sync_throughput_is_the_rate_limit_or_what_concurrency_sustains() -> None:
    assert sync_requests_per_minute(RoutingSpec(sync_requests_per_minute=50)) == 24.0  # 8 x 60 s / 20 s
    assert sync_requests_per_minute(RoutingSpec(sync_requests_per_minute=10)) == 10.0


def test_facts_from_a_workloads_levers_compare_deadlines_across_time_zones() -> None:
    deadline = datetime(2026, 6, 7, 8, 0, tzinfo=ZoneInfo("America/New_York"))
    facts = step_facts(RoutingSpec(), "bulk", 5000, NOW, deadline)
    assert facts.deadline == datetime(2026, 6, 7, 12, 0, tzinfo=UTC)
    assert decide_route(facts).route is Route.BATCH


@given(
    volume=st.integers(0, 200_000),
    interactive=st.booleans(),
    hours_left=st.one_of(st.none(), st.floats(-5, 48)),
    latency_hours=st.floats(0, 24),
    margin_hours=st.floats(0, 12),
    per_minute=st.floats(0.5, 5000),
    min_batch=st.integers(0, 1000),
)
def test_the_route_always_follows_the_rules(
    volume: int,
    interactive: bool,
    hours_left: float | None,
    latency_hours: float,
    margin_hours: float,
    per_minute: float,
    min_batch: int,
) -> None:
    facts = _facts(
        volume=volume,
        interactive=interactive,
        deadline=None if hours_left is None else NOW + timedelta(hours=hours_left),
        expected_batch_latency=timedelta(hours=latency_hours),
        batch_safety_margin=timedelta(hours=margin_hours),
        sync_requests_per_minute=per_minute,
        min_batch_volume=min_batch,
    )
    decision = decide_route(facts)
    assert decision.rationale.startswith(f"bulk: {decision.route.value}: ")
    if interactive or volume == 0:
        assert decision.route is Route.SYNC
    if decision.route is Route.BATCH and not decision.deadline_at_risk:
        assert facts.deadline is None or decision.projected_finish <= facts.deadline
        enough_margin = facts.deadline is None or (
            facts.deadline - NOW >= facts.expected_batch_latency + facts.batch_safety_margin
        )
        assert volume >= min_batch or not enough_margin
    if decision.deadline_at_risk:
        assert facts.deadline is not None and decision.projected_finish > facts.deadline


BEDROCK = "connection claude_bedrock is a bedrock connection and Message Batches are served only by the first-party API"


def test_a_connection_without_batches_goes_sync_and_says_why() -> None:
    decision = decide_route(_facts(volume=200, batch_unavailable=BEDROCK))
    assert decision.route is Route.SYNC
    assert decision.rationale.startswith(f"bulk: sync: {BEDROCK}; 200 requests at 50/min take 0h04m")
    assert not decision.deadline_at_risk


def test_a_connection_without_batches_flags_a_deadline_sync_cannot_meet() -> None:
    decision = decide_route(_facts(volume=50_000, batch_unavailable=BEDROCK))
    assert decision.route is Route.SYNC
    assert decision.deadline_at_risk
    assert "DEADLINE AT RISK" in decision.rationale and BEDROCK in decision.rationale
