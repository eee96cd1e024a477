"""The defaults under AIRFLOW_HOME (SQLite store, run folder) serve one machine only: with workers on
hosts of their own they fail, naming what to set, instead of giving each host a ledger of its own."""

from __future__ import annotations

import json

import pytest

from claude_batch.hooks.store import store_url
from claude_batch.placement import HostLocalDefaultError
from claude_batch.stages.run import DATA_URI_VARIABLE, data_root

STORE_CONNECTION = "AIRFLOW_CONN_CLAUDE_BATCH_STORE"


@pytest.fixture
def unset_defaults(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    monkeypatch.setenv("AIRFLOW_HOME", str(tmp_path))
    monkeypatch.delenv(DATA_URI_VARIABLE, raising=False)
    monkeypatch.delenv(STORE_CONNECTION, raising=False)


@pytest.mark.parametrize("executor", ["LocalExecutor", "airflow.executors.local_executor.LocalExecutor"])
def test_one_machine_keeps_the_defaults_in_airflow_home(
    monkeypatch: pytest.MonkeyPatch, unset_defaults, tmp_path, executor: str
) -> None:
    monkeypatch.setenv("AIRFLOW__CORE__EXECUTOR", executor)
    assert data_root() == f"file://{tmp_path.resolve()}/claude_batch_data"
    assert store_url() == f"sqlite:///{tmp_path}/claude_batch_store.db"


@pytest.mark.parametrize(
    "executor", ["CeleryExecutor", "LocalExecutor,KubernetesExecutor", "ours:my.mod.Remote"]
)
def test_workers_on_other_hosts_need_a_data_uri_and_a_store_connection(
    monkeypatch: pytest.MonkeyPatch, unset_defaults, executor: str
) -> None:
    monkeypatch.setenv("AIRFLOW__CORE__EXECUTOR", executor)
    with pytest.raises(HostLocalDefaultError, match=f"set {DATA_URI_VARIABLE} on every component"):
        data_root()
    with pytest.raises(HostLocalDefaultError, match="create the connection 'claude_batch_store'"):
        store_url()


def test_set_locations_are_used_whatever_the_executor(
    monkeypatch: pytest.MonkeyPatch, unset_defaults
) -> None:
    monkeypatch.setenv("AIRFLOW__CORE__EXECUTOR", "CeleryExecutor")
    monkeypatch.setenv(DATA_URI_VARIABLE, "s3://aws_default@bucket/claude/")
    monkeypatch.setenv(
        STORE_CONNECTION,
        json.dumps({"conn_type": "generic", "extra": {"url": "postgresql+psycopg2://u@db/s"}}),
    )
    assert data_root() == "s3://aws_default@bucket/claude"
    assert store_url() == "postgresql+psycopg2://u@db/s"
