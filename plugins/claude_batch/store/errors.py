"""Errors of the store; each says what was wrong and which run, attempt or batch it concerns."""

from __future__ import annotations

import math


class StoreError(Exception):
    """Base class of the store's errors."""


class UnknownRunError(StoreError, LookupError):
    """No run with this id."""


class UnknownAttemptError(StoreError, LookupError):
    """No ledger attempt with this id or batch id."""


class LedgerConflictError(StoreError):
    """A ledger write that would break "no double spend" or move an ended attempt backwards."""


class RerunConflictError(StoreError):
    """A re-run cannot be completed or undone as asked: its state or the output moved on."""


class RerunRateLimitedError(StoreError):
    """A person started as many re-runs in the last minute as the deployment allows them."""

    def __init__(self, requested_by: str, per_minute: int, retry_after_seconds: float) -> None:
        self.retry_after_seconds = retry_after_seconds
        super().__init__(
            f"{requested_by} has re-run {per_minute} records in the last minute, the limit; "
            f"try again in {math.ceil(retry_after_seconds)} s"
        )
