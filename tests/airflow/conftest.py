"""Fixtures to run the workload DAGs with ``dag.test()`` against the real emulator process.

Everything a run touches is per test: the emulator (its own state file and faults), the store
(a SQLite file, or PostgreSQL through ``store_url``), and the run folders under ``tmp_path``.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml

from claude_demo.loans import write_loan_files
from claude_emulator.testing import EmulatorHandle, running_emulator

API_KEY = "sk-ant-test-pipeline-key-0123456789"


@dataclass
class Pipeline:
    """A place to run a workload DAG: its connections are set in the environment."""

    tmp_path: Path
    store_url: str
    emulator: EmulatorHandle

    def loan_input(self, count: int, name: str = "loans.jsonl", **kwargs: Any) -> Path:
        return write_loan_files(self.tmp_path / "inputs" / name, count, **kwargs)

    def _write_spec(self, spec: Any) -> str:
        """A changed spec in the configured specs folder, beside the bundled prompt templates; returns
        the name the tasks load it by (a spec is loaded by name, never by path)."""
        from claude_batch.workloads import BUNDLED_WORKLOADS_DIR

        folder = self.tmp_path / "specs"
        folder.mkdir(exist_ok=True)
        if not (folder / "prompts").exists():
            (folder / "prompts").symlink_to(BUNDLED_WORKLOADS_DIR / "prompts")
        name = f"{spec.name}_changed"
        (folder / f"{name}.yaml").write_text(yaml.safe_dump(spec.model_dump(mode="json")))
        return name

    def store(self):
        from claude_batch.hooks.store import get_store

        return get_store()

    def run(
        self,
        workload: str,
        input_path: Path,
        *,
        logical_date: datetime = datetime(2026, 6, 7, 5, 0, tzinfo=UTC),
        deadline: datetime | None = None,
        sample_size: int = 0,
        spec_changes: Callable[[Any], Any] | None = None,
        deferrable: bool = True,
        mode: str = "full",
    ):
        """Run the workload's DAG once with dag.test(); returns the DagRun."""
        from claude_batch.dag_factory import build_workload_dag
        from claude_batch.strategy.spec import load_workload

        spec = load_workload(workload)
        source = None
        if spec_changes is not None:
            spec = spec_changes(spec)
            source = self._write_spec(spec)
        dag = build_workload_dag(spec, spec_source=source, poll_interval=0.2, deferrable=deferrable)
        deadline = deadline or datetime.now(UTC) + timedelta(days=1)
        return dag.test(
            logical_date=logical_date,
            run_conf={
                "input_uri": str(input_path),
                "deadline": deadline.isoformat(),
                "sample_size": sample_size,
                "mode": mode,
            },
        )


@pytest.fixture
def emulator_factory(tmp_path: Path) -> Iterator[Callable[..., EmulatorHandle]]:
    started: list[Any] = []

    def start(**kwargs: Any) -> EmulatorHandle:
        context = running_emulator(state=tmp_path / f"emulator-{len(started)}.db", **kwargs)
        handle = context.__enter__()
        started.append(context)
        return handle

    yield start
    for context in reversed(started):
        context.__exit__(None, None, None)


@pytest.fixture
def pipeline_for(
    airflow_db: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, emulator_factory
) -> Callable[..., Pipeline]:
    """Point the connections at a fresh emulator (with the given faults) and a fresh store."""

    def make(store_url: str | None = None, **emulator_options: Any) -> Pipeline:
        emulator = emulator_factory(**emulator_options)
        url = store_url or f"sqlite:///{tmp_path / 'store.db'}"
        monkeypatch.setenv(
            "AIRFLOW_CONN_ANTHROPIC_DEFAULT",
            json.dumps({"conn_type": "anthropic", "password": API_KEY, "host": emulator.base_url}),
        )
        monkeypatch.setenv(
            "AIRFLOW_CONN_CLAUDE_BATCH_STORE", json.dumps({"conn_type": "generic", "extra": {"url": url}})
        )
        monkeypatch.setenv("CLAUDE_BATCH_DATA_URI", f"file://{tmp_path / 'data'}")
        monkeypatch.setenv("CLAUDE_BATCH_SPECS_DIR", str(tmp_path / "specs"))
        return Pipeline(tmp_path=tmp_path, store_url=url, emulator=emulator)

    return make
