"""Quarantine: the records that end without an output, each with a reason a person can act on.

Input problems are quarantined while sharding, result problems while planning recovery; both write
the same line format, so the store and the run report see one list.
"""

from __future__ import annotations

from enum import StrEnum

from pydantic import BaseModel, ConfigDict, field_validator

from claude_batch.strategy.storable import storable


class QuarantineClass(StrEnum):
    # found while reading and sharding the input (never sent)
    UNREADABLE = "unreadable"
    INVALID_RECORD = "invalid_record"
    MISSING_KEY = "missing_key"
    EMPTY_TEXT = "empty_text"
    DUPLICATE_KEY = "duplicate_key"
    ID_COLLISION = "id_collision"
    RENDER_FAILED = "render_failed"
    REQUEST_TOO_LARGE = "request_too_large"
    CONTEXT_WINDOW = "context_window"
    # found in results (sent, paid or not, and given up on)
    INVALID_REQUEST = "invalid_request"
    INVALID_OUTPUT = "invalid_output"
    NOT_RETRIED = "not_retried"
    ATTEMPTS_EXHAUSTED = "attempts_exhausted"
    RUN_LEVEL = "run_level"
    # found at publish: a chunked record whose chunks cannot make one output
    CHUNK_UNANSWERED = "chunk_unanswered"
    MERGE_FAILED = "merge_failed"


class QuarantineEntry(BaseModel):
    """One quarantined record.

    :param position: line or row of the input, when known.
    :param custom_id: set once the record had an id (not for unreadable lines).
    :param business_key: as text; compound keys as a JSON array.
    :param attempts: how many times it was sent (0: never).

    ``reason`` and ``business_key`` show a NUL or lone surrogate as an escape: the store holds them.
    """

    model_config = ConfigDict(extra="forbid")

    quarantine_class: QuarantineClass
    reason: str
    position: int | None = None
    custom_id: str | None = None
    business_key: str | None = None
    attempts: int = 0

    @field_validator("reason", "business_key")
    @classmethod
    def _storable(cls, text: str | None) -> str | None:
        return None if text is None else storable(text)
