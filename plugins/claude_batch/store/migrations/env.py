"""Alembic environment: runs on the connection given by ``claude_batch.store.migrations``.

The caller owns the transaction (and the lock taken in it), so alembic's begin_transaction is a no-op.
"""

from __future__ import annotations

from typing import Any, Literal

from alembic import context
from alembic.autogenerate.api import AutogenContext
from sqlalchemy import JSON

from claude_batch.store.migrations import VERSION_TABLE
from claude_batch.store.models import Base, UtcDateTime


def render_item(type_: str, obj: Any, autogen_context: AutogenContext) -> str | Literal[False]:
    """Render the store's own column types as plain SQLAlchemy, so a revision never imports the models."""
    if type_ != "type":
        return False
    if isinstance(obj, UtcDateTime):
        return "sa.DateTime(timezone=True)"
    # Every JSON column of the store is models.JSON_DOCUMENT (JSONB on PostgreSQL).
    if isinstance(obj, JSON):
        autogen_context.imports.add("from sqlalchemy.dialects import postgresql")
        return 'sa.JSON().with_variant(postgresql.JSONB(), "postgresql")'
    return False


connection = context.config.attributes["connection"]
context.configure(
    connection=connection,
    target_metadata=Base.metadata,
    version_table=VERSION_TABLE,
    render_item=render_item,
    # SQLite alters tables by copying them; later revisions need batch mode there.
    render_as_batch=connection.dialect.name == "sqlite",
)
with context.begin_transaction():
    context.run_migrations()
