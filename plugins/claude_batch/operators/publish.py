"""Stage 8: upsert the outputs, prove every record ended once, and write the run report."""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from airflow.sdk import BaseOperator, Context, ObjectStoragePath
from airflow.sdk.exceptions import AirflowFailException

from claude_batch.faultpoints import crash_point
from claude_batch.hooks.airflow_api import AirflowApiHook, note_headline, note_text
from claude_batch.hooks.store import get_store
from claude_batch.stages.chunks import publish_chunked_records
from claude_batch.stages.cost_guard import estimate_lever
from claude_batch.stages.run import RunContext
from claude_batch.store import Accounting, ManifestRow, OutputRow, Store
from claude_batch.strategy.cost import run_cost
from claude_batch.strategy.health import HealthLevel, HealthReport, assess_health
from claude_batch.strategy.layout import class_file_name
from claude_batch.strategy.lines import jsonl_lines
from claude_batch.strategy.partition import PartitionSummary, ResultClass
from claude_batch.strategy.report import ChunkingReport, Lever, RunReport
from claude_batch.strategy.sharding import SAMPLE_SHARD
from claude_batch.strategy.spec import WorkloadSpec
from claude_batch.strategy.usage import Usage


@dataclass
class Published:
    """What upserting the partitions' valid answers did, and the tokens they were paid with.

    :param first_mix: round 0's result lines by cause (what health compares run to run).
    :param chunk_answers: chunk answers held back: a chunked record is published once, merged.
    """

    sync_usage: Usage
    batch_usage: Usage = field(default_factory=Usage)
    first_mix: dict[str, int] = field(default_factory=dict)
    recovered: int = 0
    from_sample: int = 0
    rounds: int = 0
    chunk_answers: dict[str, OutputRow] = field(default_factory=dict)


def _succeeded_rows(folder: ObjectStoragePath, round_number: int, source: str) -> Iterator[OutputRow]:
    for line in jsonl_lines([folder / class_file_name(ResultClass.SUCCEEDED.value)]):
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
    for line in jsonl_lines(run.layout.sample_result_parts()):
        result = json.loads(line)["result"]
        if result["type"] == "succeeded":
            total = total + Usage.from_message(result["message"])
    return total


def publish_partitions(store: Store, run: RunContext, spec: WorkloadSpec, chunk_ids: set[str]) -> Published:
    """Upsert the valid answers of every partition folder, first submission and recovery rounds in
    order, holding back the chunk answers; sum the tokens by how they were paid."""
    kinds = {(a.round, a.shard_index): a.kind for a in store.attempts_of_run(run.store_run_id)}
    published = Published(sync_usage=_sample_usage(run))

    def whole_records(rows: Iterator[OutputRow]) -> Iterator[OutputRow]:
        for row in rows:
            if row.custom_id in chunk_ids:
                published.chunk_answers[row.custom_id] = row
            else:
                yield row

    for folder in run.layout.partition_folders():
        source = kinds.get((folder.round, folder.shard), "batch")
        with run.layout.partition_summary(folder.round, folder.shard).open("r") as stream:
            summary = PartitionSummary.model_validate_json(stream.read())
        if folder.shard == SAMPLE_SHARD:
            # The sample's valid answers; every sample call is already in sync_usage.
            source = "sample"
        elif source == "batch":
            published.batch_usage = published.batch_usage + summary.usage
        else:
            published.sync_usage = published.sync_usage + summary.usage
        if folder.round == 0:
            for cause, n in summary.cause_counts().items():
                published.first_mix[cause] = published.first_mix.get(cause, 0) + n
        rows = whole_records(_succeeded_rows(folder.path, folder.round, source))
        upserted = store.upsert_outputs(spec.name, run.run_date, rows)
        crash_point("publish.after_first_upsert")
        if source == "sample":
            published.from_sample += upserted
        elif folder.round > 0:
            published.recovered += upserted
        published.rounds = max(published.rounds, folder.round)
    return published


def merge_chunks(
    store: Store,
    run: RunContext,
    spec: WorkloadSpec,
    entries: list[ManifestRow],
    published: Published,
    log: Any,
) -> ChunkingReport | None:
    """Publish the chunked records merged (``chunks``); None when the run has no chunks."""
    if not entries:
        return None
    merged = publish_chunked_records(store, run, spec, entries, published.chunk_answers, log)
    published.recovered += merged.recovered
    chunk_cost = run_cost(
        merged.usage_by_source["batch"], merged.usage_by_source["sync"], spec.model, spec.price_table()
    )
    return merged.summary(chunk_cost.actual_usd)


def run_health(store: Store, run: RunContext, spec: WorkloadSpec, first_mix: dict[str, int]) -> HealthReport:
    """This run's first-round mix against the trailing runs' (``health``): the nights before its date,
    so a backfill or a re-published night is compared with its own past, not with later nights."""
    trailing = [
        r.report["health"]["shares"]
        for r in store.recent_runs(spec.name, spec.health.trailing_runs, before=run.run_date)
        if r.report and r.report.get("health")
    ]
    return assess_health(first_mix, trailing, spec.health)


def run_levers(run: RunContext, ti: Any, actual_usd: float) -> list[Lever]:
    """Every lever the run pulled, with its rationale, from the stages' XComs."""
    levers = [Lever(lever="route", value=run.route.value, rationale=run.route_rationale)]
    for task_id in ("sample_validate", "shard"):
        if lever := ti.xcom_pull(task_ids=task_id, key="lever"):
            levers.append(Lever.model_validate(lever))
    if lever := ti.xcom_pull(task_ids="shard", key="chunk_lever"):
        levers.append(Lever.model_validate(lever))
    if estimate := ti.xcom_pull(task_ids="cost_guard"):
        levers.append(estimate_lever(estimate, actual_usd))
    for route in (ti.xcom_pull(task_ids="recover") or {}).get("routes", []):
        levers.append(
            Lever(
                lever=f"recovery round {route['round']} route",
                value=route["route"],
                rationale=route["rationale"],
            )
        )
    return levers


def compose_report(
    store: Store,
    run: RunContext,
    spec: WorkloadSpec,
    published: Published,
    chunking: ChunkingReport | None,
    accounting: Accounting,
    health: HealthReport,
    ti: Any,
) -> RunReport:
    """The run report: where the records ended, the cost against all-synchronous, health, levers."""
    cost = run_cost(published.batch_usage, published.sync_usage, spec.model, spec.price_table())
    if chunking is not None and cost.actual_usd:
        chunking = chunking.model_copy(update={"cost_share": chunking.cost_usd / cost.actual_usd})
    return RunReport(
        workload=spec.name,
        run_date=run.run_date,
        inputs=accounting.inputs,
        published=accounting.published,
        quarantined=store.quarantine_counts(run.store_run_id),
        recovered=published.recovered,
        from_sample=published.from_sample,
        batches_created=store.batches_created(run.store_run_id),
        rounds=published.rounds,
        tokens=published.batch_usage + published.sync_usage,
        cost_usd=round(cost.actual_usd, 6),
        all_sync_cost_usd=round(cost.all_sync_usd, 6),
        health=health,
        chunking=chunking,
        levers=run_levers(run, ti, cost.actual_usd),
        deadline=run.deadline,
        finished_at=datetime.now(UTC),
    )


RESULT_FIELDS = (
    "inputs",
    "published",
    "quarantined_total",
    "recovered",
    "from_sample",
    "batches_created",
    "cost_usd",
    "all_sync_cost_usd",
)


def check_run(run: RunContext, report: RunReport, health: HealthReport, accounting: Accounting) -> None:
    """Fail the task when a record is unaccounted for, nothing could be sent, or health failed."""
    if not _balanced(run, report, accounting):
        raise AirflowFailException(
            f"Records unaccounted for: {run.input_count} input records counted, {accounting.inputs} read, "
            f"{accounting.published} published, {report.quarantined_total} quarantined, "
            f"{accounting.unaccounted} neither, {accounting.double_counted} both. See {run.layout.report}"
        )
    if _nothing_sent(accounting):
        raise AirflowFailException(
            f"No record of the input {run.input_uri} could be sent: all {accounting.inputs} were "
            f"quarantined ({report.quarantined}). Each quarantine row names its line and the fix; correct the "
            "input and trigger the date again"
        )
    if health.level is HealthLevel.FAIL:
        failing = "; ".join(s.message for s in health.signals if s.level is HealthLevel.FAIL)
        raise AirflowFailException(f"Health threshold breached (outputs are published): {failing}")


def _balanced(run: RunContext, report: RunReport, accounting: Accounting) -> bool:
    return accounting.balanced and report.accounted() and accounting.inputs == run.input_count


def _nothing_sent(accounting: Accounting) -> bool:
    # Every record quarantined before any was sent: the input, not the run, is what is wrong.
    return accounting.inputs > 0 and accounting.manifest == 0


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

    def execute(self, context: Context) -> dict:
        run = RunContext.of(self.run)
        spec = run.spec()
        store = get_store()
        chunk_entries = list(store.iter_chunks(run.store_run_id))
        published = publish_partitions(store, run, spec, {entry.custom_id for entry in chunk_entries})
        chunking = merge_chunks(store, run, spec, chunk_entries, published, self.log)
        accounting = store.accounting(run.store_run_id)
        health = run_health(store, run, spec, published.first_mix)
        report = compose_report(store, run, spec, published, chunking, accounting, health, context["ti"])
        ok = _balanced(run, report, accounting) and not _nothing_sent(accounting)
        status = "succeeded" if ok and health.level is not HealthLevel.FAIL else "failed"
        report_json = self.write_report(context, run, store, report, status)
        check_run(run, report, health, accounting)
        return {"report": str(run.layout.report), **{k: report_json[k] for k in RESULT_FIELDS}}

    def write_report(
        self, context: Context, run: RunContext, store: Store, report: RunReport, status: str
    ) -> dict[str, Any]:
        """The report in the run folder, on the store's run row (with the run's status), in this log
        and in the DAG run's note; returns it as JSON."""
        report_json = report.model_dump(mode="json")
        with run.layout.report.open("w") as out:
            out.write(json.dumps(report_json, indent=2))
        store.finish_run(run.store_run_id, status, report_json)
        for line in report.summary_lines():
            self.log.info("%s", line)
        dag_run = context["dag_run"]
        AirflowApiHook().set_dag_run_note(
            dag_run.dag_id, dag_run.run_id, note_text(report.summary_lines(), note_headline(report))
        )
        return report_json
