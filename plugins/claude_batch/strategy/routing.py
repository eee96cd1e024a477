"""Routing: send a step's requests synchronously or as a Message Batch, and say why, with the numbers.

The rules, in order:

1. A person waits for the answer (interactive) → sync: a batch may take up to 24 h.
2. Nothing to send → sync (there is no batch of zero requests).
2b. Batches cannot be had (a Bedrock, Vertex AI or Foundry connection, a model Message Batches do not
   serve) → sync, flagged ``deadline_at_risk`` when sync cannot finish by the deadline (the route
   stage then refuses the run rather than start what cannot end in time).
3. The deadline is closer than the expected batch latency plus the safety margin → sync, when sync
   finishes in time. When sync would finish after the deadline, a batch still expected in time goes
   ahead (without its full margin); when neither is, the route projected to finish first wins and
   the decision is flagged ``deadline_at_risk``: sending 50,000 requests at 50 a minute "to be safe"
   would finish later than the batch it avoided.
4. Fewer requests than ``min_batch_volume`` → sync: the saving is too small to be worth the wait.
5. Otherwise → batch, for the 50 % discount.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from enum import StrEnum

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, field_validator

from claude_batch.strategy.spec import RoutingSpec


class Route(StrEnum):
    SYNC = "sync"
    BATCH = "batch"


class StepFacts(BaseModel):
    """What the decision for one step rests on.

    :param step: the stage the decision is for (``bulk``, ``recovery round 2``, ``sample``, ...).
    :param volume: requests the step would send.
    :param interactive: a person is waiting for the answer.
    :param deadline: when the step's outputs must be published, if ever.
    :param sync_requests_per_minute: sustained sync throughput under the rate limit and concurrency.
    :param batch_unavailable: why Message Batches cannot be used here, when they cannot.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    step: str
    volume: int = Field(ge=0)
    interactive: bool = False
    deadline: AwareDatetime | None = None
    now: AwareDatetime
    expected_batch_latency: timedelta
    batch_safety_margin: timedelta
    sync_requests_per_minute: float = Field(gt=0)
    min_batch_volume: int = Field(ge=0)
    batch_unavailable: str | None = None

    @field_validator("deadline", "now")
    @classmethod
    def _in_utc(cls, value: datetime | None) -> datetime | None:
        # Arithmetic between two datetimes of one zone is wall-clock arithmetic, wrong across a DST
        # change; in UTC it is exact.
        return None if value is None else value.astimezone(UTC)

    @property
    def sync_duration(self) -> timedelta:
        return timedelta(minutes=self.volume / self.sync_requests_per_minute)


class RoutingDecision(BaseModel):
    """The route, the reason in words with the numbers, and the facts it was decided on.

    :param projected_finish: when the chosen route is expected to be done.
    :param deadline_at_risk: neither route is projected to finish by the deadline.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    route: Route
    rationale: str
    facts: StepFacts
    projected_finish: AwareDatetime
    deadline_at_risk: bool = False


def sync_requests_per_minute(routing: RoutingSpec) -> float:
    """Sustained sync throughput: the rate limit, or what the concurrency sustains if that is lower."""
    by_concurrency = routing.sync_concurrency * 60 / max(routing.expected_sync_latency.total_seconds(), 1e-3)
    return min(float(routing.sync_requests_per_minute), by_concurrency)


def step_facts(
    routing: RoutingSpec,
    step: str,
    volume: int,
    now: datetime,
    deadline: datetime | None,
    interactive: bool = False,
    batch_unavailable: str | None = None,
) -> StepFacts:
    """The facts of a step, with the levers taken from a workload's ``routing`` section."""
    return StepFacts(
        step=step,
        volume=volume,
        interactive=interactive,
        deadline=deadline,
        now=now,
        expected_batch_latency=routing.expected_batch_latency,
        batch_safety_margin=routing.batch_safety_margin,
        sync_requests_per_minute=sync_requests_per_minute(routing),
        min_batch_volume=routing.min_batch_volume,
        batch_unavailable=batch_unavailable,
    )


def _span(delta: timedelta) -> str:
    minutes = round(delta.total_seconds() / 60)
    sign = "-" if minutes < 0 else ""
    hours, minutes = divmod(abs(minutes), 60)
    return f"{sign}{hours}h{minutes:02d}m"


def _at(moment: datetime) -> str:
    return moment.isoformat(timespec="minutes")


def decide_route(facts: StepFacts) -> RoutingDecision:
    """Apply the rules of the module docstring to ``facts``."""
    sync_finish = facts.now + facts.sync_duration
    batch_finish = facts.now + facts.expected_batch_latency
    batch_window = (
        f"the expected batch latency {_span(facts.expected_batch_latency)} "
        f"+ safety margin {_span(facts.batch_safety_margin)}"
    )
    sync_numbers = (
        f"{facts.volume} requests at {facts.sync_requests_per_minute:g}/min take "
        f"{_span(facts.sync_duration)}, done by {_at(sync_finish)}"
    )

    def decision(route: Route, rationale: str, at_risk: bool = False) -> RoutingDecision:
        finish = sync_finish if route is Route.SYNC else batch_finish
        return RoutingDecision(
            route=route,
            rationale=f"{facts.step}: {route.value}: {rationale}",
            facts=facts,
            projected_finish=finish,
            deadline_at_risk=at_risk,
        )

    if facts.interactive:
        return decision(Route.SYNC, f"a person is waiting and a batch can take up to 24 h; {sync_numbers}")
    if facts.volume == 0:
        return decision(Route.SYNC, "nothing to send")
    if facts.batch_unavailable is not None:
        if facts.deadline is not None and sync_finish > facts.deadline:
            return decision(
                Route.SYNC,
                f"DEADLINE AT RISK: {facts.batch_unavailable}, and sync misses the deadline "
                f"{_at(facts.deadline)} ({sync_numbers})",
                at_risk=True,
            )
        return decision(Route.SYNC, f"{facts.batch_unavailable}; {sync_numbers}")
    if facts.deadline is not None:
        time_left = facts.deadline - facts.now
        needed = facts.expected_batch_latency + facts.batch_safety_margin
        if time_left < needed:
            too_close = (
                f"the deadline {_at(facts.deadline)} passed {_span(-time_left)} ago"
                if time_left < timedelta(0)
                else f"the deadline {_at(facts.deadline)} is {_span(time_left)} away, less than {batch_window}"
            )
            if sync_finish <= facts.deadline:
                return decision(Route.SYNC, f"{too_close}; {sync_numbers}, in time")
            if batch_finish <= facts.deadline:
                return decision(
                    Route.BATCH,
                    f"{too_close}, but sync misses it ({sync_numbers}); a batch is expected by "
                    f"{_at(batch_finish)}, in time without the full margin",
                )
            at_risk = f"DEADLINE AT RISK: {too_close}, and even sync misses it ({sync_numbers})"
            if batch_finish < sync_finish:
                return decision(
                    Route.BATCH,
                    f"{at_risk}; a batch is expected by {_at(batch_finish)}, sooner",
                    at_risk=True,
                )
            return decision(
                Route.SYNC, f"{at_risk}; still sooner than a batch ({_at(batch_finish)})", at_risk=True
            )
    if facts.volume < facts.min_batch_volume:
        return decision(
            Route.SYNC,
            f"{facts.volume} requests is under min_batch_volume {facts.min_batch_volume}, too few for the "
            f"batch discount to be worth the wait; {sync_numbers}",
        )
    deadline_note = "no deadline"
    if facts.deadline is not None:
        time_left = facts.deadline - facts.now
        deadline_note = (
            f"the deadline {_at(facts.deadline)} is {_span(time_left)} away, more than {batch_window}"
        )
    return decision(Route.BATCH, f"{facts.volume} requests, {deadline_note}; batch for the 50 % discount")
