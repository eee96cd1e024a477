"""Re-run one record of a workload synchronously, audited: who asked, why, what it cost, what it replaced.

The analyst's fast path is the Re-run button on a run's page in the Claude batch UI plugin (its
``POST /claude-batch/api/workloads/<dag_id>/rerun`` endpoint); this DAG does the same through the
scheduler and leaves the params and the validated output in the task log. Trigger it with the form:
workload, business key, run date and a reason. The record is the one that date's run read, from the
run's own input; the output is published with ``source = rerun``, and the output (or quarantine row)
it replaces stays in the re-run ledger, where the run page shows it and can undo it.
"""

from __future__ import annotations

import logging
from datetime import datetime

from airflow.sdk import Param, dag, get_current_context, task

from claude_batch.strategy.spec import bundled_workload_names

log = logging.getLogger(__name__)


@dag(
    dag_id="rerun_record",
    schedule=None,
    start_date=datetime(2026, 1, 1),
    catchup=False,
    doc_md=__doc__,
    tags=["claude-batch", "rerun"],
    default_args={"owner": "data-platform", "retries": 0},
    params={
        # No default: a workload picked for the user would re-run (and pay for) the wrong one.
        "workload": Param(
            type="string",
            enum=bundled_workload_names(),
            description="The workload (its DAG id).",
        ),
        "business_key": Param(
            "",
            type="string",
            minLength=1,
            description="The record's business key, e.g. 114829 (a compound key as a JSON array).",
        ),
        "run_date": Param(
            "", type="string", format="date", description="The run date YYYY-MM-DD the output belongs to."
        ),
        "reason": Param(
            "",
            type=["null", "string"],
            maxLength=1000,
            description="Why the record is re-run (kept in the re-run ledger, shown on the run page).",
        ),
    },
)
def rerun_record_dag():
    @task
    def rerun(params: dict | None = None) -> dict:
        # Imported when the task runs: the re-run reaches the anthropic SDK, and the dag-processor
        # parses this file every few seconds without needing it.
        from claude_batch.redaction import redact
        from claude_batch.rerun import RerunRequest, rerun_record

        request = RerunRequest.model_validate(
            {
                "workload": params["workload"],
                "business_key": params["business_key"],
                "run_date": params["run_date"],
                "reason": params.get("reason") or "",
            }
        )
        dag_run = get_current_context()["dag_run"]
        # Who triggered it, as the ledger's "who"; a run with no user (the CLI) is named by its run id.
        user = getattr(dag_run, "triggering_user_name", None)
        requested_by = f"{user} (rerun_record)" if user else f"rerun_record {dag_run.run_id}"
        try:
            result = rerun_record(request, requested_by=requested_by)
        except Exception as error:
            # The message may carry an upstream's words: it is redacted before it reaches the log.
            raise RuntimeError(redact(error)) from None
        log.info(
            "Published %s (re-run %d, %s, %d input / %d output tokens, $%.4f): %s",
            result.custom_id,
            result.rerun_id,
            result.model,
            result.input_tokens,
            result.output_tokens,
            result.cost_usd,
            result.output,
        )
        # XCom carries ids only; the output is in the store.
        return {"workload": result.workload, "business_key": result.business_key, "rerun_id": result.rerun_id}

    rerun()


rerun_record_dag()
