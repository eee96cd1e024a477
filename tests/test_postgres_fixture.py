"""The PostgreSQL fixture gives each test its own fresh database that really round-trips data."""

from __future__ import annotations

import sqlalchemy as sa


def test_store_url_round_trips_a_row_on_each_backend(store_url: str) -> None:
    engine = sa.create_engine(store_url)
    meta = sa.MetaData()
    probe = sa.Table("probe", meta, sa.Column("id", sa.Integer, primary_key=True), sa.Column("note", sa.Text))
    meta.create_all(engine)
    with engine.begin() as conn:
        conn.execute(probe.insert(), [{"id": 1, "note": "héllo"}, {"id": 2, "note": "wörld"}])
    with engine.connect() as conn:
        rows = conn.execute(sa.select(probe.c.note).order_by(probe.c.id)).scalars().all()
    engine.dispose()
    assert rows == ["héllo", "wörld"]


def test_postgres_databases_are_fresh_per_test(postgres_url: str) -> None:
    engine = sa.create_engine(postgres_url)
    with engine.connect() as conn:
        tables = sa.inspect(conn).get_table_names()
        backend = conn.dialect.name
    engine.dispose()
    assert backend == "postgresql"
    assert tables == []
