"""The store: the run ledger, manifest, outputs, quarantine and sample gates (SQLAlchemy, no Airflow).

``Store.connect(url)`` opens it, ``migrate(url)`` (or ``Store.migrate()``) brings its schema to head.
A SQLite file by default, PostgreSQL in production.
"""

from __future__ import annotations

from claude_batch.store.errors import (
    LedgerConflictError,
    RerunConflictError,
    RerunRateLimitedError,
    StoreError,
    UnknownAttemptError,
    UnknownRunError,
)
from claude_batch.store.migrations import migrate
from claude_batch.store.records import (
    Accounting,
    AttemptKind,
    AttemptRecord,
    AttemptStatus,
    ManifestRow,
    OutputRecord,
    OutputRow,
    OutputSource,
    QuarantineRecord,
    QuarantineRow,
    RequestCounts,
    RerunRecord,
    RerunStatus,
    RoundRouteRecord,
    RunRecord,
    SampleValidationRecord,
    ShardRecord,
)
from claude_batch.store.repository import Store

__all__ = [
    "Accounting",
    "AttemptKind",
    "AttemptRecord",
    "AttemptStatus",
    "LedgerConflictError",
    "ManifestRow",
    "OutputRecord",
    "OutputRow",
    "OutputSource",
    "QuarantineRecord",
    "QuarantineRow",
    "RequestCounts",
    "RerunConflictError",
    "RerunRateLimitedError",
    "RerunRecord",
    "RerunStatus",
    "RoundRouteRecord",
    "RunRecord",
    "SampleValidationRecord",
    "ShardRecord",
    "Store",
    "StoreError",
    "UnknownAttemptError",
    "UnknownRunError",
    "migrate",
]
