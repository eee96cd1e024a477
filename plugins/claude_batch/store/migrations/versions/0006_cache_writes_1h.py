"""The 1 h part of the cache writes, kept on outputs and re-runs so their tokens are priced right.

A cache write lives 5 minutes (1.25x the input price) or 1 hour (2x); the store kept only the total,
so a chunked record's cost, priced from its stored chunk answers, counted every write as 5 minutes.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-30
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

TABLES = ("outputs", "reruns")


def upgrade() -> None:
    # A server default: SQLite adds the column in place, and rows written before it wrote no 1 h cache
    # field (all their writes count as 5 minutes, as they were priced).
    for table in TABLES:
        op.add_column(
            table,
            sa.Column("cache_creation_1h_input_tokens", sa.Integer(), nullable=False, server_default="0"),
        )


def downgrade() -> None:
    for table in TABLES:
        with op.batch_alter_table(table) as batch:
            batch.drop_column("cache_creation_1h_input_tokens")
