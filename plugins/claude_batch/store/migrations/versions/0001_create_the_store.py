"""Create the store: runs, shards, batch_attempts, manifest, outputs, quarantine, sample_validations.

Revision ID: 0001
Revises:
Create Date: 2026-11-24
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

# Spelled out rather than imported from the models, so this revision never changes when they do.
JSON_DOCUMENT = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")
UTC_DATETIME = sa.DateTime(timezone=True)


def _run_id(table: str) -> sa.Column[int]:
    fk = sa.ForeignKey("runs.id", ondelete="CASCADE", name=f"fk_{table}_run_id_runs")
    return sa.Column("run_id", sa.Integer(), fk, nullable=False)


def upgrade() -> None:
    op.create_table(
        "runs",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("workload", sa.String(length=200), nullable=False),
        sa.Column("logical_date", sa.Date(), nullable=False),
        sa.Column("dag_run_id", sa.String(length=250), nullable=True),
        sa.Column("status", sa.String(length=32), nullable=False),
        sa.Column("deadline", UTC_DATETIME, nullable=True),
        sa.Column("params", JSON_DOCUMENT, nullable=False),
        sa.Column("report", JSON_DOCUMENT, nullable=True),
        sa.Column("created_at", UTC_DATETIME, nullable=False),
        sa.Column("finished_at", UTC_DATETIME, nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_runs")),
        sa.UniqueConstraint("workload", "logical_date", name=op.f("uq_runs_workload_logical_date")),
    )
    op.create_table(
        "shards",
        _run_id("shards"),
        sa.Column("round", sa.Integer(), nullable=False),
        sa.Column("shard_index", sa.Integer(), nullable=False),
        sa.Column("uri", sa.Text(), nullable=False),
        sa.Column("request_count", sa.Integer(), nullable=False),
        sa.Column("byte_size", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("run_id", "round", "shard_index", name=op.f("pk_shards")),
    )
    op.create_table(
        "batch_attempts",
        sa.Column("id", sa.Integer(), nullable=False),
        _run_id("batch_attempts"),
        sa.Column("shard_index", sa.Integer(), nullable=False),
        sa.Column("round", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("request_count", sa.Integer(), nullable=False),
        sa.Column("request_digest", sa.String(length=128), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("batch_id", sa.String(length=128), nullable=True),
        sa.Column("adopted", sa.Boolean(), nullable=False),
        sa.Column("processing_count", sa.Integer(), nullable=False),
        sa.Column("succeeded_count", sa.Integer(), nullable=False),
        sa.Column("errored_count", sa.Integer(), nullable=False),
        sa.Column("canceled_count", sa.Integer(), nullable=False),
        sa.Column("expired_count", sa.Integer(), nullable=False),
        sa.Column("created_at", UTC_DATETIME, nullable=False),
        sa.Column("submitted_at", UTC_DATETIME, nullable=True),
        sa.Column("ended_at", UTC_DATETIME, nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_batch_attempts")),
        sa.UniqueConstraint("batch_id", name=op.f("uq_batch_attempts_batch_id")),
        sa.UniqueConstraint(
            "run_id", "shard_index", "round", name=op.f("uq_batch_attempts_run_id_shard_index_round")
        ),
    )
    op.create_table(
        "manifest",
        _run_id("manifest"),
        sa.Column("custom_id", sa.String(length=64), nullable=False),
        sa.Column("business_key", sa.Text(), nullable=False),
        sa.Column("shard", sa.Integer(), nullable=False),
        sa.Column("round", sa.Integer(), nullable=False),
        sa.Column("position", sa.BigInteger(), nullable=True),
        sa.PrimaryKeyConstraint("run_id", "custom_id", name=op.f("pk_manifest")),
    )
    op.create_index(op.f("ix_manifest_run_id_position"), "manifest", ["run_id", "position"])
    op.create_table(
        "outputs",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("workload", sa.String(length=200), nullable=False),
        sa.Column("logical_date", sa.Date(), nullable=False),
        sa.Column("business_key", sa.Text(), nullable=False),
        sa.Column("custom_id", sa.String(length=64), nullable=False),
        sa.Column("output", JSON_DOCUMENT, nullable=False),
        sa.Column("model", sa.String(length=200), nullable=False),
        sa.Column("input_tokens", sa.Integer(), nullable=False),
        sa.Column("output_tokens", sa.Integer(), nullable=False),
        sa.Column("cache_creation_input_tokens", sa.Integer(), nullable=False),
        sa.Column("cache_read_input_tokens", sa.Integer(), nullable=False),
        sa.Column("source", sa.String(length=16), nullable=False),
        sa.Column("round", sa.Integer(), nullable=False),
        sa.Column("created_at", UTC_DATETIME, nullable=False),
        sa.Column("updated_at", UTC_DATETIME, nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_outputs")),
        sa.UniqueConstraint(
            "workload",
            "logical_date",
            "business_key",
            name=op.f("uq_outputs_workload_logical_date_business_key"),
        ),
    )
    op.create_table(
        "quarantine",
        sa.Column("id", sa.Integer(), nullable=False),
        _run_id("quarantine"),
        sa.Column("record_ref", sa.String(length=100), nullable=False),
        sa.Column("position", sa.BigInteger(), nullable=True),
        sa.Column("custom_id", sa.String(length=64), nullable=True),
        sa.Column("business_key", sa.Text(), nullable=True),
        sa.Column("quarantine_class", sa.String(length=64), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("created_at", UTC_DATETIME, nullable=False),
        sa.Column("updated_at", UTC_DATETIME, nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_quarantine")),
        sa.UniqueConstraint("run_id", "record_ref", name=op.f("uq_quarantine_run_id_record_ref")),
    )
    op.create_index(op.f("ix_quarantine_run_id_position"), "quarantine", ["run_id", "position"])
    op.create_table(
        "sample_validations",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("workload", sa.String(length=200), nullable=False),
        sa.Column("prompt_fingerprint", sa.String(length=128), nullable=False),
        sa.Column("model", sa.String(length=200), nullable=False),
        sa.Column("sample_size", sa.Integer(), nullable=False),
        sa.Column("pass_rate", sa.Double(), nullable=False),
        sa.Column("passed", sa.Boolean(), nullable=False),
        sa.Column("created_at", UTC_DATETIME, nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_sample_validations")),
    )
    op.create_index(
        op.f("ix_sample_validations_workload_prompt_fingerprint_model"),
        "sample_validations",
        ["workload", "prompt_fingerprint", "model"],
    )


def downgrade() -> None:
    for table in (
        "sample_validations",
        "quarantine",
        "outputs",
        "manifest",
        "batch_attempts",
        "shards",
        "runs",
    ):
        op.drop_table(table)
