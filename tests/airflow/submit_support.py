"""Shard files, run contexts and submit operators for the tests of one stage at a time."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import anthropic
from airflow.sdk import ObjectStoragePath

from claude_batch.operators.submit import SubmitOperator
from claude_batch.stages.run import RunContext, file_digest, run_dir_for
from claude_batch.strategy.requests import request_builder
from claude_batch.strategy.routing import Route
from claude_batch.strategy.spec import load_workload
from tests.airflow.conftest import API_KEY

WORKLOAD = "loan_disclosure_review"
RUN_DATE = date(2026, 6, 7)


def shard_file(folder: Path, index: int, loans: list[dict]) -> Path:
    spec = load_workload(WORKLOAD)
    builder = request_builder(spec)
    path = folder / f"shard-{index:05d}.jsonl"
    with path.open("w") as out:
        for record in loans:
            line = {
                "custom_id": f"loan-2026-06-07-{record['loan_file_id']}",
                "params": builder.params(record),
            }
            out.write(json.dumps(line) + "\n")
    return path


def run_context(store_run_id: int, input_count: int) -> dict:
    return RunContext(
        workload=WORKLOAD,
        spec_source=WORKLOAD,
        store_run_id=store_run_id,
        run_date=RUN_DATE,
        logical_date=datetime(2026, 6, 7, 5, tzinfo=UTC),
        deadline=datetime.now(UTC) + timedelta(days=1),
        input_uri="unused",
        run_dir=run_dir_for(WORKLOAD, RUN_DATE),
        input_count=input_count,
        route=Route.BATCH,
        route_rationale="test",
    ).model_dump(mode="json")


def submit_operator(context: dict, index: int, path: Path, count: int) -> SubmitOperator:
    return SubmitOperator(
        task_id=f"submit_{index}",
        run=context,
        shard={"index": index, "round": 0, "path": f"file://{path}", "request_count": count, "byte_size": 0},
        queue_poll_interval=1.0,
    )


def results_custom_ids(pipeline, batch_id: str) -> set[str]:
    client = anthropic.Anthropic(base_url=pipeline.emulator.base_url, api_key=API_KEY)
    return {result.custom_id for result in client.messages.batches.results(batch_id)}


def digest(path: Path) -> str:
    return file_digest(ObjectStoragePath(f"file://{path}"))


def custom_ids(path: Path) -> set[str]:
    return {json.loads(line)["custom_id"] for line in path.read_text().splitlines()}
