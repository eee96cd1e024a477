"""The store's location from the Airflow connection ``claude_batch_store``.

The connection holds a SQLAlchemy URL: either in ``extra["url"]`` (any dialect, e.g.
``{"url": "postgresql+psycopg2://claude@db/claude"}``) or as a ``postgres`` connection whose
fields make the URL. The password belongs in the connection's password field, which Airflow's
secrets masker hides in logs; it is put into the URL here (a password in ``extra`` would not be
masked). Without the connection the store is a SQLite file in ``AIRFLOW_HOME``, the embedded default
of ``make demo`` and ``airflow standalone``: on one machine only (``placement``).
"""

from __future__ import annotations

import os
from functools import cache
from pathlib import Path

import sqlalchemy as sa
from airflow.sdk import BaseHook
from airflow.sdk.exceptions import AirflowNotFoundException

from claude_batch.placement import require_one_machine
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
        require_one_machine(
            f"The store (no connection {conn_id!r})",
            f"create the connection {conn_id!r} with the URL of a database every host reaches "
            '(extra {"url": "postgresql+psycopg2://user@host/db"}, the password in the password field)',
        )
        return default_store_url()
    if url := conn.extra_dejson.get("url"):
        parsed = sa.make_url(url)
        if conn.password:
            parsed = parsed.set(password=conn.password)
        return parsed.render_as_string(hide_password=False)
    if conn.conn_type in {"postgres", "postgresql"}:
        # URL.create quotes what a password may hold (@, /, :) instead of breaking the URL.
        return sa.URL.create(
            "postgresql+psycopg2",
            username=conn.login or None,
            password=conn.password or None,
            host=conn.host or None,
            port=conn.port or 5432,
            database=conn.schema or None,
        ).render_as_string(hide_password=False)
    raise ValueError(
        f"Connection {conn_id!r} has no extra 'url' and type {conn.conn_type!r}; set extra "
        '{"url": "<SQLAlchemy URL>"} (e.g. postgresql+psycopg2://user@host/db, the password in the password field).'
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
