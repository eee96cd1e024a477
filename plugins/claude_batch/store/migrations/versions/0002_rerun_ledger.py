"""The re-run ledger: one row per on-demand re-run, written before its paid call, with what it replaced.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-30
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

# Spelled out rather than imported from the models, so this revision never changes when they do.
JSON_DOCUMENT = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")
UTC_DATETIME = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "reruns",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column(
            "run_id",
            sa.Integer(),
            sa.ForeignKey("runs.id", ondelete="CASCADE", name="fk_reruns_run_id_runs"),
            nullable=False,
        ),
        sa.Column("business_key", sa.Text(), nullable=False),
        sa.Column("custom_id", sa.String(length=64), nullable=False),
        sa.Column("requested_by", sa.String(length=250), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("model", sa.String(length=200), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("input_tokens", sa.Integer(), nullable=False),
        sa.Column("output_tokens", sa.Integer(), nullable=False),
        sa.Column("cache_creation_input_tokens", sa.Integer(), nullable=False),
        sa.Column("cache_read_input_tokens", sa.Integer(), nullable=False),
        sa.Column("cost_usd", sa.Double(), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("output", JSON_DOCUMENT, nullable=True),
        sa.Column("replaced_output", JSON_DOCUMENT, nullable=True),
        sa.Column("released_quarantine", JSON_DOCUMENT, nullable=True),
        sa.Column("created_at", UTC_DATETIME, nullable=False),
        sa.Column("ended_at", UTC_DATETIME, nullable=True),
        sa.Column("undone_by", sa.String(length=250), nullable=True),
        sa.Column("undone_at", UTC_DATETIME, nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_reruns")),
    )
    op.create_index(op.f("ix_reruns_run_id_business_key"), "reruns", ["run_id", "business_key"])
    op.create_index(op.f("ix_reruns_requested_by_created_at"), "reruns", ["requested_by", "created_at"])


def downgrade() -> None:
    op.drop_table("reruns")
