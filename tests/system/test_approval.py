"""A sample gate a person decides (``sample.action: approve``), with the real scheduler, dag-processor,
api-server and triggerer: the gate parks the run, and the answer goes through the same REST call
the Airflow UI's *Required actions* page makes (PATCH ``.../hitlDetails``).

Three nights of one workload run side by side: one is approved and publishes, one is rejected and
one is left unanswered past its decision deadline; neither of those two creates a batch.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import yaml

from claude_batch.store import Store
from claude_batch.strategy.spec import WORKLOADS_DIR, Expectation, load_workload
from claude_demo.loans import write_loan_files
from claude_emulator.testing import EmulatorHandle, running_emulator
from tests.system.deployment import AirflowDeployment, wait_for

pytestmark = [pytest.mark.system, pytest.mark.timeout(600)]

WORKLOAD = "loan_review_gated"
GATE = "sample_validate"
RECORDS = 60
LATENCY_AND_MARGIN = timedelta(minutes=2)
# How long the unanswered night may wait: long enough for its sample to be answered first.
DECISION_WINDOW = timedelta(seconds=75)


def _gated_spec(folder: Path) -> Path:
    """The loan review with a sample gate that needs a person: only low-risk answers pass its
    expectation, so files with missing disclosures put the sample under the gate."""
    spec = load_workload("loan_disclosure_review")
    sample = spec.sample.model_copy(
        update={
            "action": "approve",
            "size": 30,
            "expectations": [Expectation(field="risk_level", one_of=["low"])],
        }
    )
    routing = spec.routing.model_copy(
        update={
            "expected_batch_latency": timedelta(minutes=1),
            "batch_safety_margin": LATENCY_AND_MARGIN - timedelta(minutes=1),
            "min_batch_volume": 10,
        }
    )
    spec = spec.model_copy(update={"name": WORKLOAD, "sample": sample, "routing": routing})
    folder.mkdir(parents=True)
    (folder / "prompts").symlink_to(WORKLOADS_DIR / "prompts")
    path = folder / f"{WORKLOAD}.yaml"
    path.write_text(yaml.safe_dump(spec.model_dump(mode="json")))
    return path


@pytest.fixture
def emulator(tmp_path: Path) -> Iterator[EmulatorHandle]:
    with running_emulator(state=tmp_path / "emulator.db", processing_seconds=2) as handle:
        yield handle


@pytest.fixture
def gated(tmp_path: Path, deployment_factory, emulator) -> tuple[AirflowDeployment, Store]:
    spec = _gated_spec(tmp_path / "specs")
    dags = tmp_path / "dags"
    dags.mkdir()
    # The docstring names Airflow: the dag-processor's safe mode skips files that do not.
    (dags / "gated.py").write_text(
        '"""The Airflow DAG of the gated loan review."""\n'
        "from claude_batch.dag_factory import build_workload_dag\n"
        "from claude_batch.strategy.spec import load_workload\n"
        f"SPEC = {str(spec)!r}\n"
        "dag = build_workload_dag(load_workload(SPEC), spec_source=SPEC, poll_interval=2)\n"
    )
    deployment = deployment_factory(
        emulator.base_url,
        extra_env={
            "AIRFLOW__CORE__DAGS_FOLDER": str(dags),
            # The scheduler's sweep of unanswered Human-in-the-loop tasks, every 5 s instead of 15 s.
            "AIRFLOW__SCHEDULER__TRIGGER_TIMEOUT_CHECK_INTERVAL": "5",
        },
    )
    deployment.initialize()
    for component in ("api-server", "scheduler", "dag-processor", "triggerer"):
        deployment.start(component, component)
    deployment.wait_until_serving()
    deployment.wait_for_dag(WORKLOAD)
    return deployment, Store.connect(f"sqlite:///{deployment.home / 'claude_batch_store.db'}")


def _night(deployment: AirflowDeployment, tmp_path: Path, day: int, deadline: datetime) -> str:
    run_id = f"gated-2026-06-{day:02d}"
    loans = write_loan_files(tmp_path / "inputs" / f"{run_id}.jsonl", RECORDS)
    deployment.trigger(
        WORKLOAD,
        run_id,
        f"2026-06-{day:02d}T05:00:00Z",
        {"input_uri": str(loans), "deadline": deadline.isoformat()},
    )
    return run_id


def _hitl_path(run_id: str) -> str:
    return f"/dags/{WORKLOAD}/dagRuns/{run_id}/taskInstances/{GATE}/-1/hitlDetails"


def _gate_state(deployment: AirflowDeployment, run_id: str) -> str | None:
    return next(ti["state"] for ti in deployment.task_instances(WORKLOAD, run_id) if ti["task_id"] == GATE)


def _awaiting(deployment: AirflowDeployment, run_id: str) -> dict:
    """Wait until the gate is parked for a person; its Human-in-the-loop request."""

    def parked() -> bool:
        if deployment.dag_run(WORKLOAD, run_id)["state"] == "failed":
            raise AssertionError(f"{run_id} failed before its gate asked for an approval")
        return _gate_state(deployment, run_id) == "awaiting_input"

    wait_for(f"{run_id}'s sample gate to await input", parked, timeout=240, interval=1)
    return deployment.api("GET", _hitl_path(run_id))


def _answer(deployment: AirflowDeployment, run_id: str, option: str) -> dict:
    """What a click on Approve or Reject in the UI sends."""
    return deployment.api("PATCH", _hitl_path(run_id), json={"chosen_options": [option], "params_input": {}})


def _gate_log(deployment: AirflowDeployment, run_id: str) -> str:
    ti = next(ti for ti in deployment.task_instances(WORKLOAD, run_id) if ti["task_id"] == GATE)
    log = deployment.api(
        "GET", f"/dags/{WORKLOAD}/dagRuns/{run_id}/taskInstances/{GATE}/logs/{ti['try_number']}"
    )
    # Each line is an object: the event, and for a failure the exception with its message.
    return "\n".join(json.dumps(line) for line in log["content"])


def _run_of(store: Store, run_id: str):
    return next(run for run in store.recent_runs(WORKLOAD) if run.dag_run_id == run_id)


def test_a_sample_gate_waits_for_a_person_approve_goes_on_reject_and_timeout_stop_before_any_batch(
    gated, emulator, tmp_path: Path
) -> None:
    deployment, store = gated
    now = datetime.now(UTC)
    approved = _night(deployment, tmp_path, 7, now + timedelta(days=1))
    rejected = _night(deployment, tmp_path, 8, now + timedelta(days=1))
    unanswered = _night(deployment, tmp_path, 9, now + LATENCY_AND_MARGIN + DECISION_WINDOW)

    request = _awaiting(deployment, approved)
    # The person sees the evidence: the pass rate against the gate and the failing answers.
    assert request["options"] == ["Approve", "Reject"]
    assert "under the gate 90%" in request["subject"]
    assert "Failing answers" in request["body"] and "risk_level" in request["body"]
    assert request["response_received"] is False
    _awaiting(deployment, rejected)
    _awaiting(deployment, unanswered)

    assert _answer(deployment, rejected, "Reject")["chosen_options"] == ["Reject"]
    assert deployment.wait_for_run(WORKLOAD, rejected, timeout=120) == "failed"
    assert "Rejected by admin" in _gate_log(deployment, rejected)

    assert deployment.wait_for_run(WORKLOAD, unanswered, timeout=240) == "failed"
    assert "Nobody approved or rejected it by" in _gate_log(deployment, unanswered)
    states = {ti["task_id"]: ti["state"] for ti in deployment.task_instances(WORKLOAD, unanswered)}
    assert (states[GATE], states["shard"]) == ("failed", "upstream_failed")

    # The approved night has waited all this time, still parked; nothing was sent in batch anywhere.
    assert _gate_state(deployment, approved) == "awaiting_input"
    assert emulator.stats()["batches_created"] == 0
    for run_id in (rejected, unanswered):
        assert store.batches_created(_run_of(store, run_id).id) == 0

    _answer(deployment, approved, "Approve")
    assert deployment.wait_for_run(WORKLOAD, approved, timeout=300) == "success"
    assert "Approved by admin" in _gate_log(deployment, approved)
    run = _run_of(store, approved)
    assert store.batches_created(run.id) == emulator.stats()["batches_created"] >= 1
    accounting = store.accounting(run.id)
    assert accounting.inputs == RECORDS and accounting.balanced
