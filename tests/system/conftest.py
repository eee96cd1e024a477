"""Fixtures of the system tests: a Claude emulator, a loan input file and Airflow deployments.

Every deployment is stopped in a ``finally`` whatever the test did, by the pids it started.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from claude_demo.loans import write_loan_files
from claude_emulator.testing import EmulatorHandle, running_emulator
from tests.system.deployment import AirflowDeployment

# Long enough to watch the waits sit in the triggerer (and to kill it meanwhile), short enough for CI.
BATCH_PROCESSING_SECONDS = 25.0
LOAN_RECORDS = 200


@pytest.fixture
def emulator(tmp_path: Path) -> Iterator[EmulatorHandle]:
    with running_emulator(
        state=tmp_path / "emulator.db", processing_seconds=BATCH_PROCESSING_SECONDS
    ) as handle:
        yield handle


@pytest.fixture
def loans(tmp_path: Path) -> Path:
    return write_loan_files(tmp_path / "inputs" / "loans.jsonl", LOAN_RECORDS)


@pytest.fixture
def deployment_factory(tmp_path: Path) -> Iterator[Callable[..., AirflowDeployment]]:
    """Make deployments under tmp_path; all of them are stopped after the test, logs shown on failure."""
    made: list[AirflowDeployment] = []

    def make(emulator_url: str, **kwargs: Any) -> AirflowDeployment:
        deployment = AirflowDeployment(tmp_path / f"airflow-{len(made)}", emulator_url, **kwargs)
        made.append(deployment)
        return deployment

    try:
        yield make
    finally:
        for deployment in made:
            # Captured: pytest shows the tails only when the test failed.
            print(deployment.log_tails())
            deployment.stop_all()
