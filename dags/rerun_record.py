"""Re-run one record of a workload synchronously, with an audit trail: who asked, what was sent, what came back.

The analyst's fast path is the ``POST /claude-batch/api/rerun`` endpoint of the Claude batch UI
plugin; this DAG does the same through the scheduler, so the request, the params used and the
validated output stay in the task log. Trigger it with the form: workload, business key, run date
and (optionally) the input file. The output is published with ``source = rerun`` and replaces the
record's earlier output (or quarantine row) for that date.
"""

from __future__ import annotations

import logging
from datetime import datetime

from airflow.sdk import Param, dag, task

from claude_batch.rerun import RerunRequest, rerun_record
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
        "workload": Param(
            bundled_workload_names()[0],
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
        "input_uri": Param(
            "",
            type="string",
            description="Input file to find the record in. Empty: that date's run input, else the spec's.",
        ),
    },
)
def rerun_record_dag():
    @task
    def rerun(params: dict | None = None) -> dict:
        request = RerunRequest.model_validate(
            {k: params[k] for k in ("workload", "business_key", "run_date", "input_uri")}
        )
        result = rerun_record(request)
        log.info(
            "Published %s (%s, %d input / %d output tokens): %s",
            result.custom_id,
            result.model,
            result.input_tokens,
            result.output_tokens,
            result.output,
        )
        # XCom carries ids only; the output is in the store.
        return {
            "workload": result.workload,
            "business_key": result.business_key,
            "custom_id": result.custom_id,
        }

    rerun()


rerun_record_dag()
