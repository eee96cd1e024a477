"""Stage 2: validate the prompt on a representative sample, synchronously, before the bulk spend."""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from typing import Any

from airflow.sdk import BaseOperator, Context, ObjectStoragePath
from airflow.sdk.exceptions import AirflowFailException, AirflowSkipException

from claude_batch.hooks import claude_hook
from claude_batch.hooks.store import get_store
from claude_batch.stages.approval import ApprovalGate
from claude_batch.stages.run import RunContext, file_digest, read_input
from claude_batch.strategy.gates import RunMode, decision_deadline, sample_evidence
from claude_batch.strategy.layout import RunLayout
from claude_batch.strategy.lines import jsonl_lines
from claude_batch.strategy.manifest import ManifestEntry, read_manifest
from claude_batch.strategy.outputs import message_text
from claude_batch.strategy.partition import PartitionSummary, ResultClass, partition_results
from claude_batch.strategy.requests import request_builder
from claude_batch.strategy.sampling import (
    MAX_SAMPLE,
    MIN_SAMPLE,
    GateResult,
    SampleOutcome,
    evaluate_sample,
    sample_size,
    select_sample,
)
from claude_batch.strategy.sharding import SAMPLE_SHARD, ValidRecord, valid_records
from claude_batch.strategy.spec import WorkloadSpec, prompt_fingerprint


def _outcomes(lines: Iterator[bytes], records: dict[str, dict]) -> Iterator[SampleOutcome]:
    """The sample's outcomes; a re-run of the date may have answered other records too (a larger
    sample then): only this sample's records count, each once."""
    seen: set[str] = set()
    for line in lines:
        data = json.loads(line)
        if data["custom_id"] in records and data["custom_id"] not in seen:
            seen.add(data["custom_id"])
            yield _outcome(data, records)


def _outcome(data: dict, records: dict[str, dict]) -> SampleOutcome:
    result = data["result"]
    if result["type"] == "succeeded":
        return SampleOutcome(
            custom_id=data["custom_id"],
            record=records[data["custom_id"]],
            text=message_text(result["message"]),
        )
    error = (result.get("error") or {}).get("error") or {}
    return SampleOutcome(
        custom_id=data["custom_id"],
        record=records[data["custom_id"]],
        error=f"{error.get('type', result['type'])}: {error.get('message', '')}",
    )


def _sample_manifest(sample: list[ValidRecord]) -> Iterator[ManifestEntry]:
    """The sampled records' identities, kept in the run folder: an approval resumes in another try,
    maybe on another worker, with nothing of the try that sampled."""
    for item in sample:
        yield ManifestEntry(
            custom_id=item.custom_id,
            business_key=item.business_key,
            shard=SAMPLE_SHARD,
            position=item.position,
            action="sample",
        )


def _keep_valid_answers(
    layout: RunLayout[Any], spec: WorkloadSpec, gate: GateResult, parts: list[Any]
) -> int:
    """Partition the sample's valid answers (schema and expectations) like a shard's results, so
    publish publishes them and shard leaves their records out: a valid answer is never paid twice.
    Reads the sample from the run folder (``sample/manifest.jsonl``). Returns how many there are.

    Written once per run date: a re-run (which may sample other records), or a gate approved again
    after a retry, keeps the first set, so the shards it cuts are the ones already submitted, and
    re-attach.
    """
    summary_file = layout.partition_summary(0, SAMPLE_SHARD)
    if summary_file.exists():
        with summary_file.open("r") as stream:
            return PartitionSummary.model_validate_json(stream.read()).counts[ResultClass.SUCCEEDED]
    failed = {failure.custom_id for failure in gate.failures}
    kept = (entry for entry in read_manifest(layout.sample_manifest) if entry.custom_id not in failed)
    # The failed answers' lines are left out with their entries: joined against the kept entries
    # alone they were results "never sent", and health raised a false alarm about the join.
    answers = (line for line in jsonl_lines(parts) if json.loads(line).get("custom_id") not in failed)
    out_dir = layout.partition_dir(0, SAMPLE_SHARD)
    summary = partition_results(answers, kept, spec.output_model(), out_dir)
    # The summary last: it is what marks the answers kept (publish lists the partitions that have one).
    with summary_file.open("w") as out:
        out.write(summary.model_dump_json())
    return summary.counts[ResultClass.SUCCEEDED]


def _published_as_they_are(answered: int) -> str:
    return f"{answered} valid answers published as they are"


class SampleValidateOperator(ApprovalGate, BaseOperator):
    """Send a stratified sample (30-100 records) through the Messages API and stop the run before
    any batch exists when too few answers are valid against the output schema.

    A prompt+model fingerprint that passed before samples half the spec's size; a new one samples
    twice as many. The sample's calls are in the ledger: a retried task re-reads the results it
    already paid for instead of sending them again. Under the gate, the spec's ``sample.action``
    decides: ``fail`` (default), ``warn``, or ``approve`` (wait for an on-call person). In
    ``sample_only`` mode the gate is reported, never enforced.

    :param run: the route stage's run context.
    :param sample_size: force a size, held within 30-100 (and the input); 0 or empty lets the prompt's
        history decide.
    :param conn_id: Airflow connection of type ``anthropic``.
    :param mode: ``full`` or ``sample_only`` (the DAG Param).
    """

    template_fields: Sequence[str] = ("run", "sample_size", "mode")

    def __init__(
        self,
        *,
        run: Any,
        sample_size: int | str = 0,
        conn_id: str = "anthropic_default",
        mode: str = RunMode.FULL,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.run = run
        self.sample_size = sample_size
        self.conn_id = conn_id
        self.mode = mode

    def execute(self, context: Context) -> dict:
        run = RunContext.of(self.run)
        if run.input_count == 0:
            # An empty night: nothing to sample, estimate or shard (those are skipped with this), and
            # publish closes the run with an empty report; a success, not a gate that cannot pass.
            raise AirflowSkipException(f"No input records in {run.input_uri}: nothing to sample")
        spec = run.spec()
        store = get_store()
        fingerprint = prompt_fingerprint(spec)
        passed_before = store.last_passed_validation(spec.name, fingerprint, spec.model)
        forced = int(self.sample_size or 0)
        size = sample_size(spec, passed_before is not None, run.input_count, forced)
        why = (
            f"the run's params ask for {forced}, held within {MIN_SAMPLE}..{MAX_SAMPLE} and the input"
            if forced
            else (
                f"half of the spec's {spec.sample.size}: this prompt+model passed on "
                f"{passed_before.created_at:%Y-%m-%d} at {passed_before.pass_rate:.0%}"
                if passed_before
                else f"twice the spec's {spec.sample.size}: this prompt+model has never passed a sample"
            )
        )
        self.log.info("Sample size %d (%s), gate %.0f%%", size, why, spec.sample.pass_gate * 100)

        records = valid_records(spec, read_input(spec, run.input_uri), run.run_date)
        sample = select_sample(records, size, spec.stratify_by, spec.sample.seed)
        if not sample:
            # Nothing valid to send: the prompt is not what is wrong. Shard quarantines every record
            # with its reason and publish reports it, naming the input.
            self.log.warning(
                "No record of the input %s can be sent (%d records read): nothing to validate the prompt "
                "on; shard quarantines each record with its reason",
                run.input_uri,
                run.input_count,
            )
            return {"sample_size": 0, "pass_rate": None, "results": []}
        builder = request_builder(spec)
        requests_file = run.layout.sample_requests
        run.layout.sample_dir.mkdir(parents=True, exist_ok=True)
        with requests_file.open("wb") as out:
            for item in sample:
                line = {"custom_id": item.custom_id, "params": builder.params(item.record)}
                out.write(json.dumps(line).encode() + b"\n")
        with run.layout.sample_manifest.open("wb") as out:
            for entry in _sample_manifest(sample):
                out.write(entry.model_dump_json(exclude_none=True).encode() + b"\n")

        attempt = store.record_intent(
            run.store_run_id, SAMPLE_SHARD, 0, "sync", len(sample), file_digest(requests_file)
        )
        hook = claude_hook(self.conn_id)
        parts = hook.run_messages(
            requests_file, run.layout.sample_results, concurrency=spec.routing.sync_concurrency
        )
        store.update_attempt_by_id(attempt.id, "ended")

        records = {item.custom_id: item.record.model_dump(mode="json") for item in sample}
        gate = evaluate_sample(
            _outcomes(jsonl_lines(parts), records),
            spec.output_model(),
            spec.sample.pass_gate,
            spec.sample.expectations,
        )
        store.record_sample_validation(
            spec.name, fingerprint, spec.model, gate.n, gate.pass_rate, gate.passed
        )
        # A sample-only run publishes nothing: a later night of the date must not take its answers.
        # Under `warn` the night goes on with this prompt, so its valid answers are as good as the
        # batch's would be; sending those records again would pay for them twice. Under `approve`
        # they are kept once approved (`approved`), never before: a rejected night publishes nothing.
        keep = RunMode(self.mode) is RunMode.FULL and (gate.passed or spec.sample.action == "warn")
        answered = _keep_valid_answers(run.layout, spec, gate, parts) if keep else 0
        for line in gate.summary_lines():
            self.log.info("%s", line)
        gate_file = run.layout.sample_gate
        gate_file.write_text(gate.model_dump_json())
        waits = not gate.passed and RunMode(self.mode) is RunMode.FULL and spec.sample.action == "approve"
        rationale = f"{why}; passed {gate.pass_rate:.0%}"
        lever = {
            "lever": "sample size",
            "value": str(gate.n),
            # An approval adds how many answers it kept.
            "rationale": rationale if waits else f"{rationale}; {_published_as_they_are(answered)}",
        }
        context["ti"].xcom_push(key="lever", value=lever)
        outcome = {
            "sample_size": gate.n,
            "pass_rate": gate.pass_rate,
            "answered": answered,
            "results": [str(p) for p in parts],
            "gate": str(gate_file),
        }
        if gate.passed:
            return outcome
        below = (
            f"Sample gate of {spec.name} for {run.run_date}: {gate.valid}/{gate.n} valid "
            f"({gate.pass_rate:.0%}) is under the gate {spec.sample.pass_gate:.0%}"
        )
        if RunMode(self.mode) is RunMode.SAMPLE_ONLY:
            self.log.warning("%s; reported, not enforced, in sample_only mode", below)
            return outcome
        if spec.sample.action == "warn":
            self.log.warning("%s; going on as sample.action is warn", below)
            return outcome
        if spec.sample.action == "approve":
            self.wait_for_approval(
                context,
                subject=below,
                body=sample_evidence(gate, spec.name, run.run_date),
                decide_by=decision_deadline(run.deadline, run.route, run.input_count, spec.routing),
                outcome=outcome,
            )
        examples = "; ".join(f"{f.custom_id}: {f.reason}" for f in gate.failures[:5])
        raise AirflowFailException(
            f"{below}. No batch was created. Failing examples: {examples}. Fix the prompt or the output "
            "schema, then clear this task."
        )

    def approved(self, context: Context, outcome: dict[str, Any]) -> dict[str, Any]:
        """The on-call person let the night go on with this prompt: keep the sample's valid answers,
        as under ``warn``, so that shard leaves their records out and publish publishes them.

        A new try, maybe on another worker: the sample comes from the run folder and the answers
        from the parts in ``outcome`` (``self.run`` is rendered again from the route's XCom).
        Kept once per run date, so an approval given again after a retry keeps nothing more.
        """
        run = RunContext.of(self.run)
        gate = GateResult.model_validate_json(run.layout.sample_gate.read_text())
        parts = [ObjectStoragePath(part) for part in outcome["results"]]
        answered = _keep_valid_answers(run.layout, run.spec(), gate, parts)
        self.log.info("Approved: %s", _published_as_they_are(answered))
        ti = context["ti"]
        if lever := ti.xcom_pull(task_ids=self.task_id, key="lever"):
            lever["rationale"] = f"{lever['rationale']}; approved: {_published_as_they_are(answered)}"
            ti.xcom_push(key="lever", value=lever)
        return {**outcome, "answered": answered}
