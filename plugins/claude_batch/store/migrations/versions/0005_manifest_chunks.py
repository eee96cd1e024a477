"""The manifest's chunks: a record too large for one request is sent as chunks, each mapped to its record.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-30
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

COLUMNS = ("chunk_of", "chunk", "chunk_count", "chunk_depth", "text_start", "text_end")


def upgrade() -> None:
    # Nullable columns: SQLite adds them in place, no table rebuild; existing rows are whole records.
    op.add_column("manifest", sa.Column("chunk_of", sa.String(length=64), nullable=True))
    op.add_column("manifest", sa.Column("chunk", sa.Integer(), nullable=True))
    op.add_column("manifest", sa.Column("chunk_count", sa.Integer(), nullable=True))
    op.add_column("manifest", sa.Column("chunk_depth", sa.Integer(), nullable=True))
    op.add_column("manifest", sa.Column("text_start", sa.BigInteger(), nullable=True))
    op.add_column("manifest", sa.Column("text_end", sa.BigInteger(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("manifest") as batch:
        for column in reversed(COLUMNS):
            batch.drop_column(column)
