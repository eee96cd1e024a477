"""Gates a person decides (``sample.action`` / ``budget.action: approve``), with the real scheduler,
dag-processor, api-server and triggerer: the gate parks the run, and the answer goes through the
same REST call the Airflow UI's *Required actions* page makes (PATCH ``.../hitlDetails``).

Four nights run side by side. Three of a workload whose sample is under its gate: one is approved
and publishes, one is rejected and one is left unanswered past its decision deadline; neither of
those two creates a batch. One of a workload over its budget (the cost guard's gate): approved, it
publishes.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import yaml

from claude_batch.store import Store
from claude_batch.strategy.spec import BudgetSpec, Expectation, load_workload
from claude_batch.workloads import BUNDLED_WORKLOADS_DIR
from claude_demo.loans import write_loan_files
from claude_emulator.testing import EmulatorHandle, running_emulator
from tests.system.deployment import AirflowDeployment, wait_for

pytestmark = [pytest.mark.system, pytest.mark.timeout(600)]

WORKLOAD = "loan_review_gated"
BUDGET_WORKLOAD = "loan_review_budget_gated"
RECORDS = 60
# More than the largest sample (100): the sample's valid answers are published as they are, so a
# night no larger than its sample would need no batch.
BUDGET_RECORDS = 150
LATENCY_AND_MARGIN = timedelta(minutes=2)
# How long the unanswered night may wait: long enough for its sample to be answered first.
DECISION_WINDOW = timedelta(seconds=75)


def _write_spec(folder: Path, spec) -> str:
    folder.mkdir(parents=True, exist_ok=True)
    if not (folder / "prompts").exists():
        (folder / "prompts").symlink_to(BUNDLED_WORKLOADS_DIR / "prompts")
    (folder / f"{spec.name}.yaml").write_text(yaml.safe_dump(spec.model_dump(mode="json")))
    return spec.name


def _gated_specs(folder: Path) -> list[str]:
    """Two loan reviews whose gates need a person: one whose sample only passes low-risk answers
    (files with missing disclosures put it under the gate), one over a budget of a hundredth of a cent.
    Short batch latency and margin, so that a night can be close to its decision deadline."""
    spec = load_workload("loan_disclosure_review")
    routing = spec.routing.model_copy(
        update={
            "expected_batch_latency": timedelta(minutes=1),
            "batch_safety_margin": LATENCY_AND_MARGIN - timedelta(minutes=1),
            "min_batch_volume": 10,
        }
    )
    strict_sample = spec.sample.model_copy(
        update={
            "action": "approve",
            "size": 30,
            "expectations": [Expectation(field="risk_level", one_of=["low"])],
        }
    )
    budget = BudgetSpec(usd=0.0001, action="approve")
    return [
        _write_spec(
            folder, spec.model_copy(update={"name": WORKLOAD, "sample": strict_sample, "routing": routing})
        ),
        _write_spec(
            folder, spec.model_copy(update={"name": BUDGET_WORKLOAD, "budget": budget, "routing": routing})
        ),
    ]


@pytest.fixture
def emulator(tmp_path: Path) -> Iterator[EmulatorHandle]:
    with running_emulator(state=tmp_path / "emulator.db", processing_seconds=2) as handle:
        yield handle


@pytest.fixture
def gated(tmp_path: Path, deployment_factory, emulator) -> tuple[AirflowDeployment, Store]:
    specs = _gated_specs(tmp_path / "specs")  # loaded by name from CLAUDE_BATCH_SPECS_DIR
    dags = tmp_path / "dags"
    dags.mkdir()
    # The docstring names Airflow: the dag-processor's safe mode skips files that do not.
    (dags / "gated.py").write_text(
        '"""The Airflow DAGs of the gated loan reviews."""\n'
        "from claude_batch.dag_factory import build_workload_dag\n"
        "from claude_batch.strategy.spec import load_workload\n"
        f"for spec in {specs!r}:\n"
        "    dag = build_workload_dag(load_workload(spec), spec_source=spec, poll_interval=2)\n"
        "    globals()[dag.dag_id] = dag\n"
    )
    deployment = deployment_factory(
        emulator.base_url,
        extra_env={
            "AIRFLOW__CORE__DAGS_FOLDER": str(dags),
            "CLAUDE_BATCH_SPECS_DIR": str(tmp_path / "specs"),
            # The scheduler's sweep of unanswered Human-in-the-loop tasks, every 5 s instead of 15 s.
            "AIRFLOW__SCHEDULER__TRIGGER_TIMEOUT_CHECK_INTERVAL": "5",
        },
    )
    deployment.initialize()
    for component in ("api-server", "scheduler", "dag-processor", "triggerer"):
        deployment.start(component, component)
    deployment.wait_until_serving()
    deployment.wait_for_dag(WORKLOAD)
    deployment.wait_for_dag(BUDGET_WORKLOAD)
    return deployment, Store.connect(f"sqlite:///{deployment.home / 'claude_batch_store.db'}")


def _night(
    deployment: AirflowDeployment,
    tmp_path: Path,
    day: int,
    deadline: datetime,
    workload: str = WORKLOAD,
    records: int = RECORDS,
) -> str:
    run_id = f"gated-2026-06-{day:02d}"
    loans = write_loan_files(tmp_path / "inputs" / f"{run_id}.jsonl", records)
    deployment.trigger(
        workload,
        run_id,
        f"2026-06-{day:02d}T05:00:00Z",
        {"input_uri": str(loans), "deadline": deadline.isoformat()},
    )
    return run_id


@dataclass(frozen=True)
class Gate:
    workload: str
    task_id: str

    def hitl_path(self, run_id: str) -> str:
        return f"/dags/{self.workload}/dagRuns/{run_id}/taskInstances/{self.task_id}/-1/hitlDetails"


SAMPLE_GATE = Gate(WORKLOAD, "sample_validate")
BUDGET_GATE = Gate(BUDGET_WORKLOAD, "cost_guard")


def _state(deployment: AirflowDeployment, gate: Gate, run_id: str) -> str | None:
    tis = deployment.task_instances(gate.workload, run_id)
    return next(ti["state"] for ti in tis if ti["task_id"] == gate.task_id)


def _awaiting(deployment: AirflowDeployment, gate: Gate, run_id: str) -> dict:
    """Wait until the gate is parked for a person; its Human-in-the-loop request."""

    def parked() -> bool:
        if deployment.dag_run(gate.workload, run_id)["state"] == "failed":
            raise AssertionError(f"{run_id} failed before its gate asked for an approval")
        return _state(deployment, gate, run_id) == "awaiting_input"

    wait_for(f"{run_id}'s {gate.task_id} to await input", parked, timeout=240, interval=1)
    return deployment.api("GET", gate.hitl_path(run_id))


def _worker_released(deployment: AirflowDeployment, gate: Gate, run_id: str) -> None:
    """Wait until the scheduler has seen the worker that parked the gate exit: the wait holds no
    worker slot. Only the scheduler's log tells. A person's answer comes minutes later; one sent
    before this moment is taken by Airflow 3.3.2 for a task whose state changed externally, and
    the gate is retried (and asks again)."""
    seen = (
        "Received executor event with state success for task instance TaskInstanceKey("
        f"dag_id='{gate.workload}', task_id='{gate.task_id}', run_id='{run_id}'"
    )
    log = deployment.components["scheduler"].log_path
    wait_for(f"the worker of {run_id}'s gate to exit", lambda: seen in log.read_text(errors="replace"), 60)


def _answer(deployment: AirflowDeployment, gate: Gate, run_id: str, option: str) -> dict:
    """What a click on Approve or Reject in the UI sends."""
    _worker_released(deployment, gate, run_id)
    return deployment.api(
        "PATCH", gate.hitl_path(run_id), json={"chosen_options": [option], "params_input": {}}
    )


def _log(deployment: AirflowDeployment, gate: Gate, run_id: str) -> str:
    tis = deployment.task_instances(gate.workload, run_id)
    try_number = next(ti["try_number"] for ti in tis if ti["task_id"] == gate.task_id)
    log = deployment.api(
        "GET", f"/dags/{gate.workload}/dagRuns/{run_id}/taskInstances/{gate.task_id}/logs/{try_number}"
    )
    # Each line is an object: the event, and for a failure the exception with its message.
    return "\n".join(json.dumps(line) for line in log["content"])


def _run_of(store: Store, workload: str, run_id: str):
    return next(run for run in store.recent_runs(workload) if run.dag_run_id == run_id)


def test_gates_wait_for_a_person_approve_goes_on_reject_and_timeout_stop_before_any_batch(
    gated, emulator, tmp_path: Path
) -> None:
    deployment, store = gated
    now = datetime.now(UTC)
    approved = _night(deployment, tmp_path, 7, now + timedelta(days=1))
    rejected = _night(deployment, tmp_path, 8, now + timedelta(days=1))
    unanswered = _night(deployment, tmp_path, 9, now + LATENCY_AND_MARGIN + DECISION_WINDOW)
    over_budget = _night(
        deployment, tmp_path, 10, now + timedelta(days=1), workload=BUDGET_WORKLOAD, records=BUDGET_RECORDS
    )

    request = _awaiting(deployment, SAMPLE_GATE, approved)
    # The person sees the evidence: the pass rate against the gate and the failing answers.
    assert request["options"] == ["Approve", "Reject"]
    assert "under the gate 90%" in request["subject"]
    assert "Failing answers" in request["body"] and "risk_level" in request["body"]
    assert request["response_received"] is False
    _awaiting(deployment, SAMPLE_GATE, rejected)
    _awaiting(deployment, SAMPLE_GATE, unanswered)
    request = _awaiting(deployment, BUDGET_GATE, over_budget)
    # Or the estimate against the budget.
    assert "Over budget for loan_review_budget_gated" in request["subject"]
    assert "against **$0.00**" in request["body"] and "How it was estimated" in request["body"]

    assert _answer(deployment, SAMPLE_GATE, rejected, "Reject")["chosen_options"] == ["Reject"]
    assert deployment.wait_for_run(WORKLOAD, rejected, timeout=120) == "failed"
    assert "Rejected by admin" in _log(deployment, SAMPLE_GATE, rejected)

    assert deployment.wait_for_run(WORKLOAD, unanswered, timeout=240) == "failed"
    assert "Nobody approved or rejected it by" in _log(deployment, SAMPLE_GATE, unanswered)
    states = {ti["task_id"]: ti["state"] for ti in deployment.task_instances(WORKLOAD, unanswered)}
    assert (states["sample_validate"], states["shard"]) == ("failed", "upstream_failed")

    # The approved nights have waited all this time, still parked; nothing was sent in batch anywhere.
    assert _state(deployment, SAMPLE_GATE, approved) == "awaiting_input"
    assert _state(deployment, BUDGET_GATE, over_budget) == "awaiting_input"
    assert emulator.stats()["batches_created"] == 0
    for run_id in (rejected, unanswered):
        assert store.batches_created(_run_of(store, WORKLOAD, run_id).id) == 0

    _answer(deployment, SAMPLE_GATE, approved, "Approve")
    _answer(deployment, BUDGET_GATE, over_budget, "Approve")
    assert deployment.wait_for_run(WORKLOAD, approved, timeout=300) == "success"
    assert deployment.wait_for_run(BUDGET_WORKLOAD, over_budget, timeout=300) == "success"
    assert "Approved by admin" in _log(deployment, SAMPLE_GATE, approved)
    assert "Approved by admin" in _log(deployment, BUDGET_GATE, over_budget)
    runs = [_run_of(store, WORKLOAD, approved), _run_of(store, BUDGET_WORKLOAD, over_budget)]
    assert all(store.batches_created(run.id) >= 1 for run in runs)
    assert sum(store.batches_created(run.id) for run in runs) == emulator.stats()["batches_created"]
    for run, records in zip(runs, (RECORDS, BUDGET_RECORDS), strict=True):
        accounting = store.accounting(run.id)
        assert accounting.inputs == records and accounting.balanced
