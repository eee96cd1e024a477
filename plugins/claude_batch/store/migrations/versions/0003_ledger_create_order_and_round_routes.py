"""The ledger's create order (batch creates serialized by a lock) and the routes of recovery rounds.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-30
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

UTC_DATETIME = sa.DateTime(timezone=True)


def upgrade() -> None:
    # Nullable columns: SQLite adds them in place, no table rebuild.
    op.add_column("batch_attempts", sa.Column("create_seq", sa.Integer(), nullable=True))
    op.add_column("batch_attempts", sa.Column("create_mark", sa.String(length=128), nullable=True))
    op.create_index(op.f("ix_batch_attempts_create_seq"), "batch_attempts", ["create_seq"], unique=True)
    op.create_table(
        "round_routes",
        sa.Column(
            "run_id",
            sa.Integer(),
            sa.ForeignKey("runs.id", ondelete="CASCADE", name="fk_round_routes_run_id_runs"),
            nullable=False,
        ),
        sa.Column("round", sa.Integer(), nullable=False),
        sa.Column("route", sa.String(length=16), nullable=False),
        sa.Column("rationale", sa.Text(), nullable=False),
        sa.Column("decided_at", UTC_DATETIME, nullable=False),
        sa.PrimaryKeyConstraint("run_id", "round", name=op.f("pk_round_routes")),
    )


def downgrade() -> None:
    op.drop_table("round_routes")
    op.drop_index(op.f("ix_batch_attempts_create_seq"), table_name="batch_attempts")
    with op.batch_alter_table("batch_attempts") as batch:
        batch.drop_column("create_mark")
        batch.drop_column("create_seq")
