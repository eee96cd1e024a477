"""Stage 3: cut the input into right-sized shard files, quarantine bad records, record the manifest."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from airflow.sdk import BaseOperator, Context
from airflow.sdk.exceptions import AirflowFailException

from claude_batch.hooks.store import get_store
from claude_batch.stages.run import RunContext, read_input
from claude_batch.stages.shard import manifest_rows, read_quarantine_file, sample_answers
from claude_batch.store import ShardRecord
from claude_batch.strategy.sharding import ShardPlan, write_shards
from claude_batch.strategy.spec import WorkloadSpec


def chunk_lever(spec: WorkloadSpec, plan: ShardPlan) -> dict[str, str]:
    """The chunk-size lever: how large chunks are cut, and why, with this run's numbers."""
    chunking = spec.chunking
    assert chunking is not None
    largest = f"at most {chunking.max_tokens:,} tokens" if chunking.max_tokens else "at most what fits"
    return {
        "lever": "chunk size",
        "value": f"target {chunking.target_tokens:,} tokens, {largest} (context window "
        f"{spec.context_window_tokens:,} tokens less max_tokens and the prompt, max_request_bytes "
        f"{int(spec.max_request_bytes):,})",
        "rationale": f"{plan.records_chunked} record(s) too large for one request sent as "
        f"{plan.chunk_requests} chunks, cut between sections first so a section that fits is never cut, "
        f"and merged by {chunking.merge}. Fewer, larger chunks repeat the prompt less (cheaper); "
        "a rising count of chunked records means inputs are outgrowing the context window",
    }


class ShardOperator(BaseOperator):
    """Stream the input once: each valid record becomes one request line in a shard file (cut at the
    spec's target count and bytes, never over 100,000 requests or 256 MB), each bad one a quarantine
    row with a reason naming the record and the fix. Returns one small dict per shard, for mapping.

    Sharding is deterministic for an input, so a cleared shard task rewrites the same files.

    :param run: the route stage's run context.
    """

    template_fields: Sequence[str] = ("run",)

    def __init__(self, *, run: Any, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.run = run

    def execute(self, context: Context) -> list[dict]:
        run = RunContext.of(self.run)
        spec = run.spec()
        store = get_store()
        plan = write_shards(
            spec, read_input(spec, run.input_uri), run.layout.shards_dir, run.run_date, sample_answers(run)
        )
        if plan.records_read != run.input_count:
            raise AirflowFailException(
                f"The input {run.input_uri} holds {plan.records_read} records now, but route counted "
                f"{run.input_count}: it changed during the run. No batch was created; clear route to count it again"
            )
        if not plan.accounted():
            raise RuntimeError(
                f"Sharding read {plan.records_read} records but wrote {plan.requests} requests, "
                f"{plan.answered_by_sample} sample answers and {plan.quarantined_total} quarantine rows; "
                "refusing to go on with records unaccounted for"
            )
        store.record_shards(
            run.store_run_id,
            [
                ShardRecord(
                    shard_index=s.index, uri=s.path, request_count=s.request_count, byte_size=s.byte_size
                )
                for s in plan.shards
            ],
        )
        store.add_manifest(run.store_run_id, manifest_rows(run.layout.manifest(0)))
        store.quarantine(run.store_run_id, read_quarantine_file(run.layout.quarantine(0)))

        self.log.info(
            "Read %d records: %d answered by the sample, %d sent as chunks, %d requests in %d shard(s) of "
            "at most %d requests / %s bytes, %d quarantined %s",
            plan.records_read,
            plan.answered_by_sample,
            plan.records_chunked,
            plan.requests,
            len(plan.shards),
            spec.sharding.target_requests,
            f"{int(spec.sharding.target_bytes):,}",
            plan.quarantined_total,
            dict(plan.quarantined) or "",
        )
        for shard in plan.shards:
            self.log.info(
                "  shard %05d: %d requests, %s bytes",
                shard.index,
                shard.request_count,
                f"{shard.byte_size:,}",
            )
        lever = {
            "lever": "shard size",
            "value": f"{len(plan.shards)} shard(s), target {spec.sharding.target_requests} requests / "
            f"{int(spec.sharding.target_bytes):,} bytes",
            "rationale": f"{plan.requests} requests, {plan.request_bytes:,} bytes in all; smaller shards end "
            "and are recovered sooner and keep a failed batch cheap to redo, and the API caps a batch at "
            "100,000 requests / 256 MB",
        }
        context["ti"].xcom_push(key="lever", value=lever)
        if spec.chunking is not None:
            context["ti"].xcom_push(key="chunk_lever", value=chunk_lever(spec, plan))
        context["ti"].xcom_push(key="plan", value=plan.model_dump(mode="json", exclude={"shards"}))
        return [
            {
                "index": s.index,
                "round": 0,
                "path": s.path,
                "request_count": s.request_count,
                "byte_size": s.byte_size,
            }
            for s in plan.shards
        ]
