"""The store's location from the Airflow connection ``claude_batch_store``.

The connection holds a SQLAlchemy URL: either in ``extra["url"]`` (any dialect, e.g.
``{"url": "postgresql+psycopg2://user:pw@db/claude"}``) or as a ``postgres`` connection whose
fields make the URL. Without the connection the store is a SQLite file in ``AIRFLOW_HOME``, the
embedded default of ``make demo`` and ``airflow standalone``.
"""

from __future__ import annotations

import os
from functools import cache
from pathlib import Path

from airflow.sdk import BaseHook
from airflow.sdk.exceptions import AirflowNotFoundException

from claude_batch.store import Store

STORE_CONN_ID = "claude_batch_store"


def default_store_url() -> str:
    home = Path(os.environ.get("AIRFLOW_HOME", Path.home() / "airflow"))
    return f"sqlite:///{home / 'claude_batch_store.db'}"


def store_url(conn_id: str = STORE_CONN_ID) -> str:
    """The SQLAlchemy URL of the store, from the connection or the SQLite default."""
    try:
        conn = BaseHook.get_connection(conn_id)
    except AirflowNotFoundException:
        return default_store_url()
    if url := conn.extra_dejson.get("url"):
        return url
    if conn.conn_type in {"postgres", "postgresql"}:
        auth = f"{conn.login}:{conn.password}@" if conn.password else (f"{conn.login}@" if conn.login else "")
        return f"postgresql+psycopg2://{auth}{conn.host}:{conn.port or 5432}/{conn.schema}"
    raise ValueError(
        f"Connection {conn_id!r} has no extra 'url' and type {conn.conn_type!r}; set extra "
        '{"url": "<SQLAlchemy URL>"} (e.g. postgresql+psycopg2://user:pw@host/db).'
    )


@cache
def _store_for(url: str) -> Store:
    # One engine per process and URL: workers run many tasks, and each engine holds a pool.
    store = Store.connect(url)
    store.migrate()
    return store


def get_store(conn_id: str = STORE_CONN_ID) -> Store:
    """The migrated store named by the connection (cached per process)."""
    return _store_for(store_url(conn_id))
