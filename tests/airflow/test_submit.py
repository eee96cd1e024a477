"""The submit stage on its own: it waits its turn when the organisation's processing queue is full."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, timedelta

import pytest
from airflow.sdk.exceptions import TaskDeferred

from claude_batch.operators.run import RunContext, run_dir_for
from claude_batch.operators.submit import SubmitOperator
from claude_batch.strategy.requests import request_builder
from claude_batch.strategy.routing import Route
from claude_batch.strategy.spec import load_workload
from claude_demo.loans import loan_files


def test_a_shard_waits_while_another_nights_batch_fills_the_queue(pipeline_for, monkeypatch) -> None:
    monkeypatch.setenv("CLAUDE_BATCH_MAX_REQUESTS_IN_FLIGHT", "50")
    pipeline = pipeline_for()
    spec = load_workload("loan_disclosure_review")
    store = pipeline.store()
    other_night = store.open_run(spec.name, date(2026, 6, 6), "other-night")
    in_flight = store.record_intent(other_night.id, 0, 0, "batch", 40, "digest-of-other-night")
    store.attach_batch(in_flight.id, "msgbatch_other_night")

    run = store.open_run(spec.name, date(2026, 6, 7), "tonight")
    requests = pipeline.tmp_path / "shard-00000.jsonl"
    builder = request_builder(spec)
    with requests.open("w") as out:
        for record in loan_files(30):
            line = {
                "custom_id": f"loan-2026-06-07-{record['loan_file_id']}",
                "params": builder.params(record),
            }
            out.write(json.dumps(line) + "\n")
    context = RunContext(
        workload=spec.name,
        spec_source=spec.name,
        store_run_id=run.id,
        run_date=date(2026, 6, 7),
        logical_date=datetime(2026, 6, 7, 5, tzinfo=UTC),
        deadline=datetime.now(UTC) + timedelta(days=1),
        input_uri="unused",
        run_dir=run_dir_for(spec.name, date(2026, 6, 7)),
        input_count=30,
        route=Route.BATCH,
        route_rationale="test",
    ).model_dump(mode="json")
    submit = SubmitOperator(
        task_id="submit",
        run=context,
        shard={"index": 0, "round": 0, "path": f"file://{requests}", "request_count": 30, "byte_size": 0},
        queue_poll_interval=1.0,
    )

    with pytest.raises(TaskDeferred):
        submit.execute({})
    assert pipeline.emulator.stats()["batches_created"] == 0

    store.update_attempt("msgbatch_other_night", "ended")
    submission = submit.execute({})

    assert submission["batch_id"].startswith("msgbatch_")
    assert pipeline.emulator.stats()["batches_created"] == 1
    assert store.requests_in_flight() == 30
