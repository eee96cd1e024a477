"""Health: a run's mix of result causes, against its thresholds and the workload's trailing runs.

A cause is a result class (invalid_output, expired, ...) or, for errored results, the error kind
(invalid_request_error, overloaded_error, ...). A cause's share above its ``fail`` threshold fails
the run; above ``warn``, or rising well above its trailing average, it warns. Each signal says what
the trend usually means in plain words (the cause's ``meaning`` in ``failures``), because
"expired 4.1 %" alone does not tell anyone what to do.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from enum import StrEnum

from pydantic import BaseModel, ConfigDict

from claude_batch.strategy.failures import cause_named
from claude_batch.strategy.spec import HealthSpec

RISING_FACTOR = 2.0
"""A share at least this many times its trailing average is rising..."""
RISING_MIN_DELTA = 0.01
"""...provided it also grew by at least one percentage point (0.1 % -> 0.3 % is noise)."""


class HealthLevel(StrEnum):
    OK = "ok"
    WARN = "warn"
    FAIL = "fail"


_SEVERITY = {HealthLevel.OK: 0, HealthLevel.WARN: 1, HealthLevel.FAIL: 2}


class HealthSignal(BaseModel):
    """One cause that is above a threshold or rising.

    :param trailing_share: the cause's mean share over the trailing runs, if there were any.
    """

    model_config = ConfigDict(extra="forbid")

    cause: str
    level: HealthLevel
    share: float
    trailing_share: float | None
    message: str


class HealthReport(BaseModel):
    """The run's shares by cause and the signals they raise; ``level`` is the worst signal's."""

    model_config = ConfigDict(extra="forbid")

    level: HealthLevel
    shares: dict[str, float]
    signals: list[HealthSignal]

    def summary_lines(self) -> list[str]:
        return [f"health: {self.level.value}"] + [f"  {s.level.value}: {s.message}" for s in self.signals]


def shares(counts: Mapping[str, int]) -> dict[str, float]:
    """Each cause's share of all results (0 for an empty run)."""
    total = sum(counts.values())
    return {cause: (n / total if total else 0.0) for cause, n in counts.items()}


def assess_health(
    counts: Mapping[str, int], trailing: Sequence[Mapping[str, int]], health: HealthSpec
) -> HealthReport:
    """Compare this run's cause counts with ``health``'s thresholds and the trailing runs' mix.

    :param counts: cause -> results of this run (``PartitionSummary.cause_counts()``, summed over shards).
    :param trailing: the same for the workload's previous runs, most recent first; only the first
        ``health.trailing_runs`` are used.
    """
    current = shares(counts)
    history = [shares(run) for run in trailing[: health.trailing_runs]]
    signals: list[HealthSignal] = []
    for cause in sorted(set(current) | set(health.thresholds)):
        if cause == "succeeded":
            continue
        share = current.get(cause, 0.0)
        trailing_share = sum(run.get(cause, 0.0) for run in history) / len(history) if history else None
        level, why = _judge(cause, share, trailing_share, health)
        if level is HealthLevel.OK:
            continue
        against = (
            f" (trailing {len(history)} runs: {trailing_share:.1%})" if trailing_share is not None else ""
        )
        meaning = _meaning(cause)
        signals.append(
            HealthSignal(
                cause=cause,
                level=level,
                share=share,
                trailing_share=trailing_share,
                message=f"{cause} is {share:.1%} of results{against}, {why}: {meaning}",
            )
        )
    level = max((s.level for s in signals), key=_SEVERITY.__getitem__, default=HealthLevel.OK)
    return HealthReport(level=level, shares=current, signals=signals)


def _meaning(cause: str) -> str:
    declared = cause_named(cause)
    if declared is None or declared.meaning is None:
        return "an unfamiliar cause: look at the partition files"
    return declared.meaning


def _judge(
    cause: str, share: float, trailing_share: float | None, health: HealthSpec
) -> tuple[HealthLevel, str]:
    threshold = health.thresholds.get(cause)
    if threshold is not None and threshold.fail is not None and share > threshold.fail:
        return HealthLevel.FAIL, f"above the fail threshold {threshold.fail:.1%}"
    if threshold is not None and threshold.warn is not None and share > threshold.warn:
        return HealthLevel.WARN, f"above the warn threshold {threshold.warn:.1%}"
    if (
        trailing_share is not None
        and share >= RISING_FACTOR * trailing_share
        and share - trailing_share >= RISING_MIN_DELTA
    ):
        return HealthLevel.WARN, "rising"
    return HealthLevel.OK, ""
