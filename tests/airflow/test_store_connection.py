"""The store's URL comes from the connection ``claude_batch_store``, the password from its password field."""

from __future__ import annotations

import json

import pytest
import sqlalchemy as sa

from claude_batch.hooks.store import store_url

# Characters that break a URL built by string formatting: the store must still connect.
AWKWARD_PASSWORD = "p@ss:w/rd#?%"


def _set_connection(monkeypatch: pytest.MonkeyPatch, **fields: object) -> None:
    monkeypatch.setenv("AIRFLOW_CONN_CLAUDE_BATCH_STORE", json.dumps(fields))


def test_a_postgres_connection_with_an_awkward_password_reaches_its_database(
    monkeypatch: pytest.MonkeyPatch, postgres_url: str
) -> None:
    target = sa.make_url(postgres_url)
    _set_connection(
        monkeypatch,
        conn_type="postgres",
        host=target.host,
        port=target.port,
        login=target.username,
        password=AWKWARD_PASSWORD,
        schema=target.database,
    )

    url = sa.make_url(store_url())

    assert (url.password, url.host, url.database) == (AWKWARD_PASSWORD, target.host, target.database)
    # The server trusts local connections, so the password is not checked, but the URL must parse
    # back to the same database: a string-formatted URL would have split at the '@'.
    with sa.create_engine(url).connect() as connection:
        assert connection.execute(sa.text("SELECT current_database()")).scalar_one() == target.database


def test_the_password_field_completes_an_extra_url_without_one(monkeypatch: pytest.MonkeyPatch) -> None:
    _set_connection(
        monkeypatch,
        conn_type="generic",
        password=AWKWARD_PASSWORD,
        extra={"url": "postgresql+psycopg2://claude@db.internal:5433/claude_batch"},
    )

    url = sa.make_url(store_url())

    assert (url.username, url.password, url.host, url.port, url.database) == (
        "claude",
        AWKWARD_PASSWORD,
        "db.internal",
        5433,
        "claude_batch",
    )


def test_an_extra_url_alone_is_used_as_it_is(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    _set_connection(monkeypatch, conn_type="generic", extra={"url": f"sqlite:///{tmp_path / 'store.db'}"})

    assert store_url() == f"sqlite:///{tmp_path / 'store.db'}"
