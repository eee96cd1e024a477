"""Stage 8: upsert the outputs, prove every record ended once, and write the run report."""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from typing import Any

from airflow.sdk import BaseOperator, ObjectStoragePath
from airflow.sdk.exceptions import AirflowFailException

from claude_batch.faultpoints import crash_point
from claude_batch.hooks.airflow_api import AirflowApiHook, note_headline, note_text
from claude_batch.hooks.store import get_store
from claude_batch.operators.chunks import publish_chunked_records
from claude_batch.operators.cost_guard import estimate_lever
from claude_batch.operators.run import RunContext
from claude_batch.store import OutputRow
from claude_batch.strategy.cost import run_cost
from claude_batch.strategy.health import HealthLevel, assess_health
from claude_batch.strategy.lines import jsonl_lines
from claude_batch.strategy.partition import PartitionSummary
from claude_batch.strategy.report import Lever, RunReport
from claude_batch.strategy.sharding import SAMPLE_SHARD
from claude_batch.strategy.usage import Usage


def _partition_folders(run: RunContext) -> list[ObjectStoragePath]:
    """Every partition folder of the run, first submission and recovery rounds, in order."""
    return sorted((p.parent for p in run.path("partitions").glob("round-*/shard-*/summary.json")), key=str)


def _round_and_shard(folder: ObjectStoragePath) -> tuple[int, int]:
    return int(folder.parent.name.removeprefix("round-")), int(folder.name.removeprefix("shard-"))


def _succeeded_rows(folder: ObjectStoragePath, round_number: int, source: str) -> Iterator[OutputRow]:
    for line in jsonl_lines([folder / "succeeded.jsonl"]):
        data = json.loads(line)
        yield OutputRow(
            business_key=data["business_key"],
            custom_id=data["custom_id"],
            output=data["output"],
            model=data.get("model") or "",
            source=source,
            round=round_number,
            # Partition wrote the ``Usage`` fields; older files may lack the 1 h part (0).
            **OutputRow.token_counts(Usage.model_validate(data.get("usage") or {})),
        )


def _sample_usage(run: RunContext) -> Usage:
    total = Usage()
    for line in jsonl_lines(run.path("sample", "results").glob("part-*.jsonl")):
        result = json.loads(line)["result"]
        if result["type"] == "succeeded":
            total = total + Usage.from_message(result["message"])
    return total


class PublishOperator(BaseOperator):
    """Upsert every valid output into the store keyed by (workload, business key, run date), so a
    re-run never duplicates; check that inputs = published + quarantined; write the run report (JSON in
    the store and in the run folder, a readable summary in this log) with the cost against
    all-synchronous, the health signals and the rationale of every lever.

    :param run: the route stage's run context.
    """

    template_fields: Sequence[str] = ("run",)

    def __init__(self, *, run: Any, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.run = run

    def execute(self, context: Any) -> dict:
        run = RunContext.of(self.run)
        spec = run.spec()
        store = get_store()
        kinds = {(a.round, a.shard_index): a.kind for a in store.attempts_of_run(run.store_run_id)}

        batch_usage, sync_usage = Usage(), _sample_usage(run)
        first_mix: dict[str, int] = {}
        recovered = from_sample = 0
        # Chunk answers are held back: a chunked record is published once, merged, when all are in.
        chunk_entries = list(store.iter_chunks(run.store_run_id))
        chunk_ids = {entry.custom_id for entry in chunk_entries}
        chunk_answers: dict[str, OutputRow] = {}

        def whole_records(rows: Iterator[OutputRow]) -> Iterator[OutputRow]:
            for row in rows:
                if row.custom_id in chunk_ids:
                    chunk_answers[row.custom_id] = row
                else:
                    yield row

        folders = _partition_folders(run)
        for folder in folders:
            round_number, shard_index = _round_and_shard(folder)
            source = kinds.get((round_number, shard_index), "batch")
            with (folder / "summary.json").open("r") as stream:
                summary = PartitionSummary.model_validate_json(stream.read())
            if shard_index == SAMPLE_SHARD:
                # The sample's valid answers; every sample call is already in sync_usage.
                source = "sample"
            elif source == "batch":
                batch_usage = batch_usage + summary.usage
            else:
                sync_usage = sync_usage + summary.usage
            if round_number == 0:
                for cause, n in summary.cause_counts().items():
                    first_mix[cause] = first_mix.get(cause, 0) + n
            published = store.upsert_outputs(
                spec.name, run.run_date, whole_records(_succeeded_rows(folder, round_number, source))
            )
            crash_point("publish.after_first_upsert")
            if source == "sample":
                from_sample += published
            elif round_number > 0:
                recovered += published

        chunking = None
        if chunk_entries:
            merged = publish_chunked_records(store, run, spec, chunk_entries, chunk_answers, self.log)
            recovered += merged.recovered
            chunk_cost = run_cost(
                merged.usage_by_source["batch"],
                merged.usage_by_source["sync"],
                spec.model,
                spec.price_table(),
            )
            chunking = merged.summary(chunk_cost.actual_usd)
        accounting = store.accounting(run.store_run_id)
        quarantined = store.quarantine_counts(run.store_run_id)
        cost = run_cost(batch_usage, sync_usage, spec.model, spec.price_table())
        trailing = [
            r.report["health"]["shares"]
            for r in store.recent_runs(spec.name, spec.health.trailing_runs + 1)
            if r.id != run.store_run_id and r.report and r.report.get("health")
        ]
        health = assess_health(first_mix, trailing, spec.health)
        ti = context["ti"]
        levers = [Lever(lever="route", value=run.route.value, rationale=run.route_rationale)]
        for task_id in ("sample_validate", "shard"):
            if lever := ti.xcom_pull(task_ids=task_id, key="lever"):
                levers.append(Lever.model_validate(lever))
        if lever := ti.xcom_pull(task_ids="shard", key="chunk_lever"):
            levers.append(Lever.model_validate(lever))
        if estimate := ti.xcom_pull(task_ids="cost_guard"):
            levers.append(estimate_lever(estimate, cost.actual_usd))
        for route in (ti.xcom_pull(task_ids="recover") or {}).get("routes", []):
            levers.append(
                Lever(
                    lever=f"recovery round {route['round']} route",
                    value=route["route"],
                    rationale=route["rationale"],
                )
            )
        rounds = max((_round_and_shard(f)[0] for f in folders), default=0)
        report = RunReport(
            workload=spec.name,
            run_date=run.run_date,
            inputs=accounting.inputs,
            published=accounting.published,
            quarantined=quarantined,
            recovered=recovered,
            from_sample=from_sample,
            batches_created=store.batches_created(run.store_run_id),
            rounds=rounds,
            tokens=batch_usage + sync_usage,
            cost_usd=round(cost.actual_usd, 6),
            all_sync_cost_usd=round(cost.all_sync_usd, 6),
            health=health,
            chunking=chunking.model_copy(update={"cost_share": chunking.cost_usd / cost.actual_usd})
            if chunking is not None and cost.actual_usd
            else chunking,
            levers=levers,
            deadline=run.deadline,
            finished_at=datetime.now(UTC),
        )
        report_json = report.model_dump(mode="json")
        with run.path("report.json").open("w") as out:
            out.write(json.dumps(report_json, indent=2))
        balanced = accounting.balanced and report.accounted() and accounting.inputs == run.input_count
        # Every record quarantined before any was sent: the input, not the run, is what is wrong.
        nothing_sent = accounting.inputs > 0 and accounting.manifest == 0
        ok = balanced and not nothing_sent and health.level is not HealthLevel.FAIL
        status = "succeeded" if ok else "failed"
        store.finish_run(run.store_run_id, status, report_json)
        for line in report.summary_lines():
            self.log.info("%s", line)
        dag_run = context["dag_run"]
        AirflowApiHook().set_dag_run_note(
            dag_run.dag_id, dag_run.run_id, note_text(report.summary_lines(), note_headline(report))
        )
        if not balanced:
            raise AirflowFailException(
                f"Records unaccounted for: {run.input_count} input records counted, {accounting.inputs} read, "
                f"{accounting.published} published, {report.quarantined_total} quarantined, "
                f"{accounting.unaccounted} neither, {accounting.double_counted} both. See {run.path('report.json')}"
            )
        if nothing_sent:
            raise AirflowFailException(
                f"No record of the input {run.input_uri} could be sent: all {accounting.inputs} were "
                f"quarantined ({quarantined}). Each quarantine row names its line and the fix; correct the "
                "input and trigger the date again"
            )
        if health.level is HealthLevel.FAIL:
            failing = "; ".join(s.message for s in health.signals if s.level is HealthLevel.FAIL)
            raise AirflowFailException(f"Health threshold breached (outputs are published): {failing}")
        return {
            "report": str(run.path("report.json")),
            **{
                k: report_json[k]
                for k in (
                    "inputs",
                    "published",
                    "quarantined_total",
                    "recovered",
                    "from_sample",
                    "batches_created",
                    "cost_usd",
                    "all_sync_cost_usd",
                )
            },
        }
