"""Test harness shared by every suite.

Airflow reads its configuration when first imported, so the environment is set here, at the top
of the root conftest, before any test module can import Airflow. Each pytest process (and each
xdist worker) gets its own throw-away AIRFLOW_HOME and SQLite metadata DB.
"""

from __future__ import annotations

import os
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent

_AIRFLOW_HOME = Path(tempfile.mkdtemp(prefix="claude-batch-airflow-home-"))
os.environ.update(
    {
        "AIRFLOW_HOME": str(_AIRFLOW_HOME),
        "AIRFLOW__CORE__DAGS_FOLDER": str(REPO_ROOT / "dags"),
        "AIRFLOW__CORE__PLUGINS_FOLDER": str(REPO_ROOT / "plugins"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__UNIT_TEST_MODE": "True",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{_AIRFLOW_HOME / 'airflow.db'}",
        "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
    }
)

PG_URL_VARIABLE = "CLAUDE_BATCH_TEST_PG_URL"


def pytest_configure(config: pytest.Config) -> None:
    """Register the bundled workloads before collection, as the Airflow face does in a deployment:
    tests load the bundled specs by name, with or without a DAG around them."""
    from claude_batch.workloads import register_bundled_workloads

    register_bundled_workloads()


def skip_outside_ci(reason: str) -> None:
    """Skip a test whose server is not configured, except under CI (``CI`` set), where that is a failure:
    a suite that silently skips its PostgreSQL or Redis half would pass without proving anything."""
    if os.environ.get("CI", "").lower() in {"1", "true", "yes"}:
        pytest.fail(f"{reason} (and CI is set, so this fails instead of skipping)")
    pytest.skip(reason)


@pytest.fixture(scope="session")
def airflow_db() -> Path:
    """Migrate the per-session Airflow metadata DB once; tests that run DAGs depend on this."""
    from airflow.utils import db

    db.resetdb(skip_init=False)
    return _AIRFLOW_HOME


@contextmanager
def fresh_postgres_database() -> Iterator[str]:
    """A SQLAlchemy URL of a brand-new database on the server named by CLAUDE_BATCH_TEST_PG_URL,
    dropped afterwards. Skips when the variable is unset, fails under CI (.ci/run sets it)."""
    admin_url = os.environ.get(PG_URL_VARIABLE)
    if not admin_url:
        skip_outside_ci(f"{PG_URL_VARIABLE} is not set; PostgreSQL tests run in CI")
    import sqlalchemy as sa

    admin = sa.create_engine(admin_url, isolation_level="AUTOCOMMIT")
    name = f"claude_batch_test_{uuid.uuid4().hex[:12]}"
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    try:
        yield sa.make_url(admin_url).set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """A brand-new PostgreSQL database per test, so tests never see each other's rows."""
    with fresh_postgres_database() as url:
        yield url


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """The store's database URL, once per supported backend."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'store.db'}"
    return request.getfixturevalue("postgres_url")
