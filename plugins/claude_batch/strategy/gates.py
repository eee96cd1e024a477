"""Gates a person decides, and the sample-only run: the pure parts.

A gate whose spec ``action`` is ``approve`` (the sample gate, the budget) waits for an on-call person
instead of failing. The answer is only worth waiting for while the bulk can still finish by the
deadline, so the wait ends at :func:`decision_deadline`. A ``sample_only`` run stops after the cost
guard and reports the sample against the previous prompt (:class:`SampleReport`), so a data engineer
can refine a prompt on the sample before a night.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from enum import StrEnum
from typing import Any

from pydantic import AwareDatetime, BaseModel, ConfigDict

from claude_batch.strategy.routing import Route, sync_requests_per_minute
from claude_batch.strategy.sampling import GateResult, SampleFailure
from claude_batch.strategy.spec import RoutingSpec

# Failing answers shown to the person deciding, and in a sample-only report's log and note; the
# gate's file in the run folder holds all of them.
EXAMPLES_SHOWN = 20
REASON_CHARS = 300


class RunMode(StrEnum):
    """The DAG Param ``mode``: the whole night, or the sample and the cost guard only."""

    FULL = "full"
    SAMPLE_ONLY = "sample_only"


def decision_deadline(deadline: datetime, route: Route, volume: int, routing: RoutingSpec) -> datetime:
    """The last moment an approval still leaves the bulk its time before ``deadline``: the route's
    expected duration (the batch latency, or the synchronous calls at the sustained rate) plus the
    safety margin kept for recovery rounds. In UTC."""
    if route is Route.BATCH:
        bulk = routing.expected_batch_latency
    else:
        bulk = timedelta(minutes=volume / sync_requests_per_minute(routing))
    return deadline.astimezone(UTC) - bulk - routing.batch_safety_margin


def _reason(text: str) -> str:
    # Reasons quote the model's answers; the evidence shows them in a code block, which they must
    # not close, and long ones are cut.
    text = " ".join(text.replace("```", "'''").split())
    return text if len(text) <= REASON_CHARS else text[: REASON_CHARS - 1] + "…"


def failure_lines(failures: list[SampleFailure], shown: int = EXAMPLES_SHOWN) -> list[str]:
    """The failing answers, one line each (``custom_id: reason``), the first ``shown`` of them."""
    lines = [f"{failure.custom_id}: {_reason(failure.reason)}" for failure in failures[:shown]]
    if len(failures) > shown:
        lines.append(f"... and {len(failures) - shown} more")
    return lines


def sample_evidence(gate: GateResult, workload: str, run_date: date) -> str:
    """What the person deciding on a sample below the gate reads (Markdown)."""
    lines = [
        f"The sample of **{workload}** for {run_date.isoformat()} is under its gate: "
        f"**{gate.valid}/{gate.n} valid answers ({gate.pass_rate:.1%})**, the gate is "
        f"{gate.pass_gate:.0%}.",
        "",
        "**Approve** sends the whole input as it is: answers like the failing ones below will be "
        "quarantined, and paid for. **Reject** fails the run here; no batch is created.",
    ]
    if gate.failures:
        lines += [
            "",
            f"Failing answers ({len(gate.failures)}):",
            "",
            "```",
            *failure_lines(gate.failures),
            "```",
        ]
    return "\n".join(lines)


def budget_evidence(workload: str, run_date: date, estimated_usd: float, budget_usd: float, how: str) -> str:
    """What the person deciding on a run over its budget reads (Markdown)."""
    return "\n".join(
        [
            f"The run of **{workload}** for {run_date.isoformat()} is over its budget: about "
            f"**${estimated_usd:,.2f}** against **${budget_usd:,.2f}** "
            f"({estimated_usd / budget_usd:.0%} of it).",
            "",
            f"How it was estimated: {how}.",
            "",
            "**Approve** spends it. **Reject** fails the run here; no batch is created.",
        ]
    )


class PromptTry(BaseModel):
    """One sample gate result of a prompt fingerprint (a row of the store's sample validations)."""

    model_config = ConfigDict(extra="forbid")

    prompt_fingerprint: str
    model: str
    sample_size: int
    pass_rate: float
    passed: bool
    created_at: AwareDatetime

    def describe(self) -> str:
        verdict = "passed" if self.passed else "failed"
        return (
            f"prompt {self.prompt_fingerprint[:12]} ({self.model}): {self.pass_rate:.1%} of "
            f"{self.sample_size}, {verdict}, {self.created_at:%Y-%m-%d %H:%M} UTC"
        )


class SampleReport(BaseModel):
    """A sample-only run's answer to "is this prompt good enough yet?".

    :param previous: the latest sample of another prompt fingerprint of the workload, if any.
    :param estimate: the cost guard's estimate in words.
    """

    model_config = ConfigDict(extra="forbid")

    workload: str
    run_date: date
    gate: GateResult
    current: PromptTry
    previous: PromptTry | None
    estimated_usd: float
    estimate: str

    def lines(self) -> list[str]:
        """The report for the task log and the DAG run note, first line first."""
        verdict = "PASS" if self.gate.passed else "FAIL"
        change = "no earlier prompt to compare with"
        if self.previous is not None:
            points = (self.gate.pass_rate - self.previous.pass_rate) * 100
            change = f"{points:+.1f} points against the previous {self.previous.describe()}"
        lines = [
            f"sample only, {self.workload} {self.run_date}: {verdict} {self.gate.valid}/{self.gate.n} valid "
            f"({self.gate.pass_rate:.1%}), gate {self.gate.pass_gate:.0%}; {change}",
            f"this prompt: {self.current.describe()}",
            f"cost estimate of the night: {self.estimate}",
        ]
        if self.gate.failures:
            lines.append(f"failing answers ({len(self.gate.failures)}):")
            lines += [f"  {line}" for line in failure_lines(self.gate.failures)]
        return lines

    def summary(self) -> dict[str, Any]:
        """Ids and small numbers, for XCom."""
        return {
            "passed": self.gate.passed,
            "pass_rate": self.gate.pass_rate,
            "sample_size": self.gate.n,
            "failing": len(self.gate.failures),
            "prompt_fingerprint": self.current.prompt_fingerprint,
            "previous_fingerprint": self.previous.prompt_fingerprint if self.previous else None,
            "previous_pass_rate": self.previous.pass_rate if self.previous else None,
            "estimated_usd": self.estimated_usd,
        }
