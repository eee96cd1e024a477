"""SQLAlchemy models of the store: the run ledger, the manifest, outputs, quarantine and sample gates.

Timestamps are written by the repository in UTC (not server defaults), so both backends hold the same
values and the migration has no dialect-specific defaults to keep in step. ``StoredShard``,
``StoredManifestEntry`` and ``StoredQuarantineEntry`` are the tables of the strategy's ``Shard``,
``ManifestEntry`` and ``QuarantineEntry``: named apart so that each name has one definition.
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    DateTime,
    Dialect,
    ForeignKey,
    Index,
    MetaData,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

# Fixed constraint names: alembic needs them to alter constraints later, and SQLite batch migrations
# can only recreate constraints that have a name.
NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

# JSONB on PostgreSQL (binary, comparable, indexable); SQLite stores JSON as text.
JSON_DOCUMENT = JSON().with_variant(JSONB(), "postgresql")


class UtcDateTime(TypeDecorator[datetime]):
    """A timezone-aware UTC datetime on both backends (SQLite drops the offset, so it is put back)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError(f"naive datetime {value.isoformat()} given to the store; pass an aware datetime")
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


class Base(DeclarativeBase):
    """Declarative base with the store's constraint naming convention and column types."""

    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map = {dict[str, Any]: JSON_DOCUMENT, datetime: UtcDateTime()}


class Run(Base):
    """One run of a workload for one logical date; a re-run of the date reuses the row."""

    __tablename__ = "runs"
    __table_args__ = (UniqueConstraint("workload", "logical_date"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    workload: Mapped[str] = mapped_column(String(200))
    logical_date: Mapped[date]
    dag_run_id: Mapped[str | None] = mapped_column(String(250))
    status: Mapped[str] = mapped_column(String(32))
    deadline: Mapped[datetime | None]
    params: Mapped[dict[str, Any]]
    report: Mapped[dict[str, Any] | None]
    created_at: Mapped[datetime]
    finished_at: Mapped[datetime | None]
    # Why the night failed (the failing task and its error), for the plugin's page.
    error: Mapped[str | None] = mapped_column(Text)


class StoredShard(Base):
    """A request file of a run: cut by the shard stage (round 0) or by recovery (rounds 1, 2, ...)."""

    __tablename__ = "shards"

    run_id: Mapped[int] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"), primary_key=True)
    round: Mapped[int] = mapped_column(primary_key=True)
    shard_index: Mapped[int] = mapped_column(primary_key=True)
    uri: Mapped[str] = mapped_column(Text)
    request_count: Mapped[int]
    byte_size: Mapped[int] = mapped_column(BigInteger)


class BatchAttempt(Base):
    """The ledger: an intent written before each paid call (batch or synchronous), then its outcome."""

    __tablename__ = "batch_attempts"
    __table_args__ = (UniqueConstraint("run_id", "shard_index", "round"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"))
    shard_index: Mapped[int]
    round: Mapped[int]
    kind: Mapped[str] = mapped_column(String(16))
    request_count: Mapped[int]
    request_digest: Mapped[str] = mapped_column(String(128))
    status: Mapped[str] = mapped_column(String(16))
    batch_id: Mapped[str | None] = mapped_column(String(128), unique=True)
    adopted: Mapped[bool]
    processing_count: Mapped[int]
    succeeded_count: Mapped[int]
    errored_count: Mapped[int]
    canceled_count: Mapped[int]
    expired_count: Mapped[int]
    created_at: Mapped[datetime]
    submitted_at: Mapped[datetime | None]
    ended_at: Mapped[datetime | None]
    # Set under the store's batch-create lock right before the create call: the creates' order, and
    # the newest batch the API listed then (None: it listed none). See Store.batch_create_lock.
    create_seq: Mapped[int | None] = mapped_column(index=True, unique=True)
    create_mark: Mapped[str | None] = mapped_column(String(128))


class RoundRoute(Base):
    """The route of a recovery round as decided when the round was cut; a resumed task reads it back."""

    __tablename__ = "round_routes"

    run_id: Mapped[int] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"), primary_key=True)
    round: Mapped[int] = mapped_column(primary_key=True)
    route: Mapped[str] = mapped_column(String(16))
    rationale: Mapped[str] = mapped_column(Text)
    decided_at: Mapped[datetime]


class StoredManifestEntry(Base):
    """custom_id ↔ business key, shard and round of one request of a run; round 0 has the input position."""

    __tablename__ = "manifest"
    # Quarantine rows and the exactly-once accounting find a record by its input position.
    __table_args__ = (Index(None, "run_id", "position"),)

    run_id: Mapped[int] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"), primary_key=True)
    custom_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    business_key: Mapped[str] = mapped_column(Text)
    shard: Mapped[int]
    round: Mapped[int]
    position: Mapped[int | None] = mapped_column(BigInteger)
    # A chunk of a record too large for one request (see strategy.manifest.ManifestEntry); null otherwise.
    chunk_of: Mapped[str | None] = mapped_column(String(64))
    chunk: Mapped[int | None]
    chunk_count: Mapped[int | None]
    chunk_depth: Mapped[int | None]
    text_start: Mapped[int | None] = mapped_column(BigInteger)
    text_end: Mapped[int | None] = mapped_column(BigInteger)


class Output(Base):
    """The published result of one record, unique per workload, logical date and business key."""

    __tablename__ = "outputs"
    # logical_date before business_key so the same index also serves "all outputs of a date".
    __table_args__ = (UniqueConstraint("workload", "logical_date", "business_key"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    workload: Mapped[str] = mapped_column(String(200))
    logical_date: Mapped[date]
    business_key: Mapped[str] = mapped_column(Text)
    custom_id: Mapped[str] = mapped_column(String(64))
    output: Mapped[dict[str, Any]]
    model: Mapped[str] = mapped_column(String(200))
    input_tokens: Mapped[int]
    output_tokens: Mapped[int]
    cache_creation_input_tokens: Mapped[int]
    cache_read_input_tokens: Mapped[int]
    # Added by migration 0006: the 1 h part of the cache writes, priced apart from the 5 min ones.
    cache_creation_1h_input_tokens: Mapped[int] = mapped_column(server_default="0")
    source: Mapped[str] = mapped_column(String(16))
    round: Mapped[int]
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]


class StoredQuarantineEntry(Base):
    """A record that could not become an output, with its quarantine class and a reason to act on."""

    __tablename__ = "quarantine"
    __table_args__ = (UniqueConstraint("run_id", "record_ref"), Index(None, "run_id", "position"))

    id: Mapped[int] = mapped_column(primary_key=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"))
    record_ref: Mapped[str] = mapped_column(String(100))
    position: Mapped[int | None] = mapped_column(BigInteger)
    custom_id: Mapped[str | None] = mapped_column(String(64))
    business_key: Mapped[str | None] = mapped_column(Text)
    quarantine_class: Mapped[str] = mapped_column(String(64))
    reason: Mapped[str] = mapped_column(Text)
    attempts: Mapped[int]
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]


class Rerun(Base):
    """The ledger row of one on-demand re-run: written before the paid call, completed after it.

    It keeps what the re-run replaced (the earlier output, or the quarantine rows it released), so a
    person can see it and undo the re-run.
    """

    __tablename__ = "reruns"
    __table_args__ = (Index(None, "run_id", "business_key"), Index(None, "requested_by", "created_at"))

    id: Mapped[int] = mapped_column(primary_key=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"))
    business_key: Mapped[str] = mapped_column(Text)
    custom_id: Mapped[str] = mapped_column(String(64))
    requested_by: Mapped[str] = mapped_column(String(250))
    reason: Mapped[str] = mapped_column(Text)
    model: Mapped[str] = mapped_column(String(200))
    status: Mapped[str] = mapped_column(String(16))
    input_tokens: Mapped[int]
    output_tokens: Mapped[int]
    cache_creation_input_tokens: Mapped[int]
    cache_read_input_tokens: Mapped[int]
    # Added by migration 0006: the 1 h part of the cache writes, priced apart from the 5 min ones.
    cache_creation_1h_input_tokens: Mapped[int] = mapped_column(server_default="0")
    cost_usd: Mapped[float]
    error: Mapped[str | None] = mapped_column(Text)
    output: Mapped[dict[str, Any] | None]
    replaced_output: Mapped[dict[str, Any] | None]
    released_quarantine: Mapped[dict[str, Any] | None]
    created_at: Mapped[datetime]
    ended_at: Mapped[datetime | None]
    undone_by: Mapped[str | None] = mapped_column(String(250))
    undone_at: Mapped[datetime | None]


class SampleValidation(Base):
    """One sample gate result for a prompt fingerprint and model."""

    __tablename__ = "sample_validations"
    __table_args__ = (Index(None, "workload", "prompt_fingerprint", "model"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    workload: Mapped[str] = mapped_column(String(200))
    prompt_fingerprint: Mapped[str] = mapped_column(String(128))
    model: Mapped[str] = mapped_column(String(200))
    sample_size: Mapped[int]
    pass_rate: Mapped[float]
    passed: Mapped[bool]
    created_at: Mapped[datetime]
