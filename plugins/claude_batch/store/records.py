"""What goes into and comes out of the store: frozen pydantic models, never ORM objects.

Quarantine classes and run statuses are plain strings here, so the strategy's ``StrEnum`` members pass
straight in; the ledger's own vocabularies (attempt kind and status, output source) are checked.
ManifestRow and QuarantineRow have the fields of the strategy's ManifestEntry and QuarantineEntry, so
``ManifestRow.model_validate(entry)`` takes one straight from a manifest or quarantine file.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from claude_batch.strategy.usage import Usage

AttemptKind = Literal["batch", "sync"]
# intent → submitted → ended | failed | canceled
AttemptStatus = Literal["intent", "submitted", "ended", "failed", "canceled"]
OutputSource = Literal["batch", "sync", "rerun", "sample"]
# intent → published | invalid_output | failed; published → undone
RerunStatus = Literal["intent", "published", "invalid_output", "failed", "undone"]

TERMINAL_STATUSES: frozenset[str] = frozenset({"ended", "failed", "canceled"})


class _Record(BaseModel):
    model_config = ConfigDict(frozen=True, from_attributes=True)


class RunRecord(_Record):
    """One run of a workload for one logical date."""

    id: int
    workload: str
    logical_date: date
    dag_run_id: str | None
    status: str
    deadline: datetime | None
    params: dict[str, Any]
    report: dict[str, Any] | None
    created_at: datetime
    finished_at: datetime | None
    error: str | None = None


class ShardRecord(_Record):
    """A request file of a run, cut by the shard stage (round 0) or by a recovery round."""

    shard_index: int = Field(ge=0)
    round: int = Field(default=0, ge=0)
    uri: str
    request_count: int = Field(ge=0)
    byte_size: int = Field(ge=0)


class RequestCounts(_Record):
    """Per-request outcome counts of a batch, as the Message Batches API reports them."""

    processing: int = 0
    succeeded: int = 0
    errored: int = 0
    canceled: int = 0
    expired: int = 0


class AttemptRecord(_Record):
    """A ledger row: one paid call (a batch, or a group of synchronous calls) for a shard and round."""

    id: int
    run_id: int
    shard_index: int
    round: int
    kind: AttemptKind
    request_count: int
    request_digest: str
    status: AttemptStatus
    batch_id: str | None
    adopted: bool
    request_counts: RequestCounts
    created_at: datetime
    submitted_at: datetime | None
    ended_at: datetime | None
    create_seq: int | None = None
    create_mark: str | None = None


class RoundRouteRecord(_Record):
    """The route a recovery round was given when it was cut, and why."""

    run_id: int
    round: int
    route: Literal["batch", "sync"]
    rationale: str
    decided_at: datetime


class ManifestRow(_Record):
    """custom_id ↔ business key of one request, with its shard and round.

    :param position: the input record's line or row; set in round 0, where each entry is one valid
        input record or one of its chunks (later rounds may leave it out, chunks keep it).
    :param chunk_of: for a chunk, the custom_id of what it is a part of; see
        ``strategy.manifest.ManifestEntry`` for the chunk fields.
    """

    custom_id: str = Field(min_length=1, max_length=64)
    business_key: str
    shard: int = Field(ge=0)
    round: int = Field(default=0, ge=0)
    position: int | None = Field(default=None, ge=0)
    chunk_of: str | None = Field(default=None, max_length=64)
    chunk: int | None = Field(default=None, ge=1)
    chunk_count: int | None = Field(default=None, ge=1)
    chunk_depth: int | None = Field(default=None, ge=1)
    text_start: int | None = Field(default=None, ge=0)
    text_end: int | None = Field(default=None, ge=0)


class OutputRow(_Record):
    """A result to publish for one business key."""

    business_key: str
    custom_id: str
    output: dict[str, Any]
    model: str
    source: OutputSource
    round: int = Field(default=0, ge=0)
    input_tokens: int = 0
    output_tokens: int = 0
    cache_creation_input_tokens: int = 0
    cache_read_input_tokens: int = 0
    cache_creation_1h_input_tokens: int = 0

    @staticmethod
    def token_counts(usage: Usage) -> dict[str, int]:
        """The token columns of a row: the ``Usage`` fields, one column each."""
        return usage.model_dump()

    @property
    def usage(self) -> Usage:
        """The row's tokens as the one usage model (for pricing)."""
        return Usage(**{name: getattr(self, name) for name in Usage.model_fields})


class OutputRecord(OutputRow):
    """A published output as stored."""

    workload: str
    logical_date: date
    created_at: datetime
    updated_at: datetime


class QuarantineRow(_Record):
    """A record that will not become an output, with a reason a person can act on.

    The store identifies the record by its input position; a row without one (a recovery round
    knows only the custom_id) gets it from the manifest. That keeps a duplicate of a business key,
    rejected at input with the same custom_id as the record that was sent, a record of its own.

    :param position: line or row of the input, when known.
    :param custom_id: set once the record had an id.
    :param attempts: how many times it was sent (0: never).
    """

    quarantine_class: str
    reason: str
    position: int | None = Field(default=None, ge=0)
    custom_id: str | None = Field(default=None, max_length=64)
    business_key: str | None = None
    attempts: int = Field(default=0, ge=0)

    @model_validator(mode="after")
    def _identified(self) -> QuarantineRow:
        if self.position is None and self.custom_id is None:
            raise ValueError("a quarantined record needs its input position or its custom_id")
        return self


class QuarantineRecord(QuarantineRow):
    """A quarantine row as stored.

    :param record_ref: ``position:<n>``, or ``custom_id:<id>`` when no position is known.
    """

    run_id: int
    record_ref: str
    created_at: datetime
    updated_at: datetime


class RerunRecord(_Record):
    """A re-run's ledger row: who asked, why, the paid call's model, tokens and cost, what it replaced.

    :param replaced_output: the output the re-run replaced (its fields as stored), None when there was none.
    :param released_quarantine: ``{"rows": [...]}``, the quarantine rows the published output released.
    """

    id: int
    run_id: int
    business_key: str
    custom_id: str
    requested_by: str
    reason: str
    model: str
    status: RerunStatus
    input_tokens: int
    output_tokens: int
    cache_creation_input_tokens: int
    cache_read_input_tokens: int
    cache_creation_1h_input_tokens: int = 0
    cost_usd: float
    error: str | None
    output: dict[str, Any] | None
    replaced_output: dict[str, Any] | None
    released_quarantine: dict[str, Any] | None
    created_at: datetime
    ended_at: datetime | None
    undone_by: str | None
    undone_at: datetime | None


class SampleValidationRecord(_Record):
    """One sample gate result for a prompt fingerprint and model."""

    id: int
    workload: str
    prompt_fingerprint: str
    model: str
    sample_size: int
    pass_rate: float
    passed: bool
    created_at: datetime


class Accounting(_Record):
    """Where the records of a run ended, for the exactly-once check of the run report.

    Records are the round-0 manifest entries (one per valid input record; a chunked record counts
    once, by its first chunk), matched to outputs by business key and to quarantine rows by input
    position.

    :param manifest: valid input records, sent as round-0 requests.
    :param published: of those, the ones with a published output.
    :param quarantined: of those, the ones in quarantine.
    :param rejected: quarantine rows of input records that never reached the manifest.
    :param unaccounted: manifest records neither published nor quarantined.
    :param double_counted: manifest records both published and quarantined.
    """

    manifest: int
    published: int
    quarantined: int
    rejected: int
    unaccounted: int
    double_counted: int

    @property
    def inputs(self) -> int:
        """Input records seen: the valid ones in the manifest and the ones rejected before it."""
        return self.manifest + self.rejected

    @property
    def balanced(self) -> bool:
        """True when every manifest record ended exactly once."""
        return self.unaccounted == 0 and self.double_counted == 0
