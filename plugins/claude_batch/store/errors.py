"""Errors of the store; each says what was wrong and which run, attempt or batch it concerns."""

from __future__ import annotations


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
