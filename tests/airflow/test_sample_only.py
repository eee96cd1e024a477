"""A prompt tried alone: mode sample_only runs route, sample and cost guard, reports, and sends no batch."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime
from pathlib import Path

import sqlalchemy as sa

from claude_batch.strategy.spec import Expectation, prompt_fingerprint

WORKLOAD = "loan_disclosure_review"
SAMPLE_STAGES = {"route", "sample_validate", "cost_guard", "sample_report"}


def _return_value(dag_run, task_id: str) -> dict:
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session

    with create_session() as session:
        row = session.scalars(
            sa.select(XComModel).where(
                XComModel.dag_id == dag_run.dag_id,
                XComModel.run_id == dag_run.run_id,
                XComModel.task_id == task_id,
                XComModel.key == "return_value",
            )
        ).one()
        return XComModel.deserialize_value(row)


def _strict_prompt(spec):
    """Another prompt fingerprint (a larger answer limit) whose sample only accepts low-risk files:
    the files the emulator finds disclosures missing in fail."""
    sample = spec.sample.model_copy(
        update={"expectations": [Expectation(field="risk_level", one_of=["low"])], "size": 30}
    )
    return spec.model_copy(update={"max_tokens": spec.max_tokens + 1, "sample": sample})


def test_sample_only_reports_against_the_previous_prompt_and_sends_no_batch(pipeline_for, capfd) -> None:
    pipeline = pipeline_for()
    loans = pipeline.loan_input(120)

    # The night's prompt first: its sample is the one the changed prompt is compared with.
    first = pipeline.run(WORKLOAD, loans, mode="sample_only")
    second = pipeline.run(
        WORKLOAD,
        loans,
        mode="sample_only",
        logical_date=datetime(2026, 6, 8, 5, 0, tzinfo=UTC),
        spec_changes=_strict_prompt,
    )

    for dag_run in (first, second):
        assert dag_run.state == "success"
        states = {ti.task_id: ti.state for ti in dag_run.get_task_instances()}
        assert {task for task, state in states.items() if state == "success"} == SAMPLE_STAGES
        assert {task for task, state in states.items() if state != "success"} == {
            "shard",
            "shards.submit",
            "shards.wait",
            "shards.partition",
            "recover",
            "publish",
        }
        assert {state for task, state in states.items() if task not in SAMPLE_STAGES} == {"skipped"}
    stats = pipeline.emulator.stats()
    assert stats["batches_created"] == 0
    assert stats["messages_created"] > 0
    store = pipeline.store()
    for run in store.recent_runs(WORKLOAD):
        assert store.batches_created(run.id) == 0
        assert store.shards(run.id) == []

    from claude_batch.strategy.spec import load_workload

    night_prompt = prompt_fingerprint(load_workload(WORKLOAD))
    first_report = _return_value(first, "sample_report")
    assert first_report["passed"] is True and first_report["previous_fingerprint"] is None
    assert first_report["prompt_fingerprint"] == night_prompt

    report = _return_value(second, "sample_report")
    assert report["prompt_fingerprint"] != night_prompt
    assert report["previous_fingerprint"] == night_prompt
    assert report["previous_pass_rate"] == first_report["pass_rate"] == 1.0
    assert report["passed"] is False and 0 < report["pass_rate"] < 1
    assert report["failing"] == round((1 - report["pass_rate"]) * report["sample_size"])
    # The full report, failing answers included, is in the run folder and the task log.
    saved = json.loads(Path(report["report"].removeprefix("file://")).read_text())
    failures = saved["gate"]["failures"]
    assert len(failures) == report["failing"]
    assert all("risk_level" in failure["reason"] for failure in failures)
    log = capfd.readouterr()
    text = log.out + log.err
    assert f"sample only, {WORKLOAD} 2026-06-08: FAIL" in text
    assert f"against the previous prompt {night_prompt[:12]}" in text
    assert failures[0]["custom_id"] in text
    assert date(2026, 6, 8).isoformat() in report["report"]


def test_a_sample_size_forced_under_the_minimum_still_samples_30(pipeline_for) -> None:
    pipeline = pipeline_for()

    dag_run = pipeline.run(WORKLOAD, pipeline.loan_input(120), mode="sample_only", sample_size=5)

    assert dag_run.state == "success"
    assert _return_value(dag_run, "sample_report")["sample_size"] == 30
    assert pipeline.emulator.stats()["messages_created"] == 30
