"""Build the nightly DAG of a workload spec: route → sample → cost guard → shard → per shard (submit →
wait → partition) → recover → publish.

Kept out of ``dags/`` so that the DAG files stay thin and the same builder serves every spec.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from airflow.sdk import DAG, Asset, CronTriggerTimetable, Param, task_group

from claude_batch.callbacks import mark_run_failed
from claude_batch.operators.cost_guard import CostGuardOperator
from claude_batch.operators.partition import PartitionOperator
from claude_batch.operators.publish import PublishOperator
from claude_batch.operators.recover import RecoverOperator
from claude_batch.operators.route import RouteOperator
from claude_batch.operators.sample import SampleValidateOperator
from claude_batch.operators.sample_report import SampleReportOperator
from claude_batch.operators.shard import ShardOperator
from claude_batch.operators.submit import SubmitOperator
from claude_batch.sensors.batch import BatchWaitSensor
from claude_batch.strategy.gates import RunMode
from claude_batch.strategy.spec import WorkloadSpec
from claude_batch.workloads import register_bundled_workloads

# The specs this face loads by name are the bundled ones (and $CLAUDE_BATCH_SPECS_DIR's).
register_bundled_workloads()

SUBMIT_POOL = "claude_batch_submit"
ANTHROPIC_CONN_ID = "anthropic_default"

# The deadline reaches the wait sensors through the route task's XCom (it may be a Param override).
_RUN_DEADLINE = "{{ ti.xcom_pull(task_ids='route')['deadline'] }}"


def workload_asset(spec: WorkloadSpec) -> Asset:
    """The Asset a workload's publish task updates; downstream DAGs can schedule on it."""
    return Asset(name=f"claude_batch_{spec.name}", uri=f"claude-batch://outputs/{spec.name}")


def workload_timetable(spec: WorkloadSpec) -> CronTriggerTimetable | None:
    """The spec's cron read in the deadline's zone (01:00 New York stays 01:00 across DST), so the
    scheduled logical date, Airflow's ``ds`` and the run date are one date."""
    if spec.schedule is None:
        return None
    return CronTriggerTimetable(spec.schedule, timezone=spec.deadline.timezone)


def _doc(spec: WorkloadSpec) -> str:
    return f"""\
# {spec.name}

{spec.description}

Model `{spec.model}`, business key `{", ".join(spec.business_key)}`, deadline
{spec.deadline.local_time:%H:%M} {spec.deadline.timezone}. Each stage logs its decision with the
numbers behind it; the run report (task `publish`) states the rationale of every lever.

Clearing a task never pays twice: submit re-attaches to the batch it already created, partition
re-reads the saved results, publish upserts. Except `shards.wait`: clearing it (or marking it failed)
while it is deferred **cancels its batch** (recovery re-queues the canceled requests); clear it only
to give up on a batch, as the runbook says. Every Param may stay empty (the spec's input for the run
date, its deadline, a sample sized by the prompt's history); set them to run another input file,
move the deadline or force a sample size; `mode` = `sample_only` tries the prompt on the sample
alone (task `sample_report` has the pass rate against the previous prompt; nothing is sent in batch).
"""


def build_workload_dag(
    spec: WorkloadSpec,
    *,
    spec_source: str | None = None,
    conn_id: str = ANTHROPIC_CONN_ID,
    poll_interval: float = 30.0,
    deferrable: bool = True,
) -> DAG:
    """The DAG of one workload spec; its dag_id is the spec's name.

    :param spec_source: the name the tasks load the spec by at run time (default: the spec's name), from
        the bundled folder or ``$CLAUDE_BATCH_SPECS_DIR``; never a path.
    :param conn_id: the ``anthropic`` connection (host = base URL: the real API or the emulator).
    :param poll_interval: first pause between batch polls in the triggerer, in seconds (it backs off).
    :param deferrable: wait for batches in the triggerer (default); False pokes in reschedule mode, for
        deployments without a triggerer.
    """
    with DAG(
        dag_id=spec.name,
        description=spec.description or f"Bulk Claude workload {spec.name}",
        doc_md=_doc(spec),
        schedule=workload_timetable(spec),
        start_date=datetime(2026, 1, 1),
        catchup=False,
        max_active_runs=4,
        tags=["claude-batch", *spec.tags],
        default_args={
            "owner": spec.owner,
            "retries": 2,
            "retry_delay": timedelta(seconds=30),
            # Every failed night shows on the plugin's page with its state and error.
            "on_failure_callback": mark_run_failed,
        },
        # Every Param may stay empty (null: the trigger form, a backfill's null conf, a scheduled
        # run): the run then takes the spec's value for its date.
        params={
            "input_uri": Param(
                None,
                type=["null", "string"],
                description="Input file (JSONL/CSV, path or URL); {ds} becomes the run date. Empty: the "
                f"spec's input, {spec.input.uri or 'its SQL query'}.",
            ),
            "deadline": Param(
                None,
                type=["null", "string"],
                description="ISO 8601 time the outputs must be published by. Empty: the spec's "
                f"{spec.deadline.local_time:%H:%M} {spec.deadline.timezone} after the logical date.",
            ),
            "sample_size": Param(
                None,
                type=["null", "integer"],
                minimum=0,
                maximum=100,
                description="Records in the synchronous sample, held within 30-100. Empty or 0: decided by the "
                "prompt's history.",
            ),
            "mode": Param(
                RunMode.FULL.value,
                type="string",
                enum=[mode.value for mode in RunMode],
                description="full: the night. sample_only: route, sample and cost guard only, then a "
                "report of the sample against the previous prompt; nothing is sent in batch.",
            ),
        },
    ) as dag:
        route = RouteOperator(
            task_id="route",
            workload=spec_source or spec.name,
            input_uri="{{ params.input_uri or '' }}",
            deadline="{{ params.deadline or '' }}",
            conn_id=conn_id,
            input_poll_interval=poll_interval,
        )
        sample = SampleValidateOperator(
            task_id="sample_validate",
            run=route.output,
            sample_size="{{ params.sample_size or 0 }}",
            conn_id=conn_id,
            mode="{{ params.mode }}",
        )
        cost_guard = CostGuardOperator(
            task_id="cost_guard",
            run=route.output,
            sample=sample.output,
            budget=spec.budget.model_dump() if spec.budget else None,
            conn_id=conn_id,
            mode="{{ params.mode }}",
        )
        sample_report = SampleReportOperator(
            task_id="sample_report",
            run=route.output,
            sample=sample.output,
            estimate=cost_guard.output,
            mode="{{ params.mode }}",
        )
        shard = ShardOperator(task_id="shard", run=route.output)
        sample_report >> shard

        @task_group(group_id="shards")
        def per_shard(shard_file: dict) -> None:
            submitted = SubmitOperator(
                task_id="submit",
                run=route.output,
                shard=shard_file,
                conn_id=conn_id,
                pool=SUBMIT_POOL,
                queue_poll_interval=2 * poll_interval,
            )
            waited = BatchWaitSensor(
                task_id="wait",
                submission=submitted.output,
                deadline=_RUN_DEADLINE,
                conn_id=conn_id,
                poll_interval=poll_interval,
                deferrable=deferrable,
            )
            PartitionOperator(
                task_id="partition", run=route.output, submission=waited.output, conn_id=conn_id
            )

        shards = per_shard.expand(shard_file=shard.output)
        # none_failed: an input with no record to send has no shards (the mapped group is skipped),
        # and its run must still be accounted for and closed by publish.
        recover = RecoverOperator(
            task_id="recover",
            run=route.output,
            conn_id=conn_id,
            poll_interval=poll_interval,
            queue_poll_interval=2 * poll_interval,
            trigger_rule="none_failed",
        )
        publish = PublishOperator(
            task_id="publish", run=route.output, outlets=[workload_asset(spec)], trigger_rule="none_failed"
        )
        shards >> recover >> publish
    return dag
