"""The run report: what came in, what went out, what it cost, and why each lever was set as it was.

It is stored with the run and shown in the UI, and ``summary_lines()`` goes to the task log, so a
person on call reads the same numbers everywhere. ``accounted()`` is the product's promise in one
line: every input record was published or quarantined.
"""

from __future__ import annotations

from datetime import date

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, computed_field

from claude_batch.strategy.health import HealthReport
from claude_batch.strategy.usage import Usage


class Lever(BaseModel):
    """One decision the run made (route, sample size, shard size, ...) and its reason with the numbers."""

    model_config = ConfigDict(extra="forbid")

    lever: str
    value: str
    rationale: str


class ChunkingReport(BaseModel):
    """Records too large for one request, sent as chunks.

    :param records_chunked: records sent as chunks (at shard time or split in recovery).
    :param chunks_sent: chunk requests made (a retried chunk counts once).
    :param records_merged: chunked records published, their chunk answers merged.
    :param cost_usd: what the chunk answers cost.
    :param cost_share: that cost as a share of the run's.
    """

    model_config = ConfigDict(extra="forbid")

    records_chunked: int = Field(ge=0)
    chunks_sent: int = Field(ge=0)
    records_merged: int = Field(ge=0)
    cost_usd: float = 0.0
    cost_share: float = 0.0

    def summary_line(self) -> str:
        return (
            f"chunked: {self.records_chunked} record(s) too large for one request, sent as "
            f"{self.chunks_sent} chunks, {self.records_merged} merged and published; chunks cost "
            f"${self.cost_usd:.2f} ({self.cost_share:.0%} of the run)"
        )


class RunReport(BaseModel):
    """One run of one workload.

    :param inputs: input records read (blank lines are not records).
    :param published: records published with a valid output.
    :param quarantined: records quarantined, by quarantine class.
    :param recovered: published records that needed at least one recovery round.
    :param from_sample: published records whose answer came from the validation sample (not re-sent).
    :param rounds: recovery rounds run after the first submission.
    :param tokens: every billed token of the run (sample, batches, sync calls).
    :param cost_usd: what the run cost.
    :param all_sync_cost_usd: what the same tokens would have cost all synchronous.
    :param chunking: the records sent as chunks, when there were any.
    """

    model_config = ConfigDict(extra="forbid")

    workload: str
    run_date: date
    inputs: int = Field(ge=0)
    published: int = Field(ge=0)
    quarantined: dict[str, int] = Field(default_factory=dict)
    recovered: int = Field(default=0, ge=0)
    from_sample: int = Field(default=0, ge=0)
    batches_created: int = Field(default=0, ge=0)
    rounds: int = Field(default=0, ge=0)
    tokens: Usage = Field(default_factory=Usage)
    cost_usd: float = 0.0
    all_sync_cost_usd: float = 0.0
    health: HealthReport | None = None
    chunking: ChunkingReport | None = None
    levers: list[Lever] = Field(default_factory=list)
    deadline: AwareDatetime | None = None
    finished_at: AwareDatetime | None = None

    @computed_field
    @property
    def quarantined_total(self) -> int:
        return sum(self.quarantined.values())

    @computed_field
    @property
    def saving_usd(self) -> float:
        return self.all_sync_cost_usd - self.cost_usd

    @computed_field
    @property
    def met_deadline(self) -> bool | None:
        if self.deadline is None or self.finished_at is None:
            return None
        return self.finished_at <= self.deadline

    def accounted(self) -> bool:
        """Every input ended once: published or quarantined."""
        return self.inputs == self.published + self.quarantined_total

    def summary_lines(self) -> list[str]:
        """The report as text for the task log, one fact per line."""
        share = f" ({self.saving_usd / self.all_sync_cost_usd:.0%})" if self.all_sync_cost_usd else ""
        lines = [
            f"run report: {self.workload} {self.run_date.isoformat()}",
            f"records: {self.inputs} in = {self.published} published + {self.quarantined_total} quarantined"
            + ("" if self.accounted() else "  !! DOES NOT ADD UP"),
        ]
        if self.quarantined:
            lines.append(
                "quarantined: " + ", ".join(f"{cls} {n}" for cls, n in sorted(self.quarantined.items()))
            )
        lines += [
            f"recovered: {self.recovered} over {self.rounds} recovery round(s); "
            f"from the sample: {self.from_sample}; "
            f"batches created: {self.batches_created}",
            f"tokens: input {self.tokens.input_tokens}, output {self.tokens.output_tokens}, cache write "
            f"{self.tokens.cache_creation_input_tokens}, cache read {self.tokens.cache_read_input_tokens}",
            f"cost: ${self.cost_usd:.2f} vs ${self.all_sync_cost_usd:.2f} all-synchronous, "
            f"saving ${self.saving_usd:.2f}{share}",
        ]
        if self.chunking is not None:
            lines.append(self.chunking.summary_line())
        if self.deadline is not None:
            finished = self.finished_at.isoformat(timespec="minutes") if self.finished_at else "not finished"
            verdict = {True: "met", False: "MISSED", None: "open"}[self.met_deadline]
            lines.append(
                f"deadline: {self.deadline.isoformat(timespec='minutes')}, finished {finished}: {verdict}"
            )
        lines += [f"lever {lever.lever} = {lever.value}: {lever.rationale}" for lever in self.levers]
        if self.health is not None:
            lines += self.health.summary_lines()
        return lines
