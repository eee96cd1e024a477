"""What a failed night leaves behind: its store run marked failed with the task and the error, and
the same words as its DAG run's note.

The plugin's page (where the runbook sends on-call staff first) lists runs from the store, so a night
that fails in any task, even before route opened its run, must still be there with the reason; the
note says it on Airflow's own pages (the grid, the run list) without opening a task log.
"""

from __future__ import annotations

import logging

from airflow.sdk import Context

from claude_batch.hooks.airflow_api import AirflowApiHook, fit_note
from claude_batch.hooks.store import get_store
from claude_batch.redaction import redact
from claude_batch.stages.run import logical_date_of
from claude_batch.strategy.spec import run_date_of

log = logging.getLogger(__name__)

# Enough for the first lines of an error; the task log keeps the whole traceback.
ERROR_MAX_CHARS = 2000


def mark_run_failed(context: Context) -> None:
    """A task's ``on_failure_callback`` (after its last try): fail the date's run in the store."""
    dag_run, ti = context["dag_run"], context["ti"]
    error = context.get("exception")
    message = f"{ti.task_id}: {error or 'failed'}"
    if len(message) > ERROR_MAX_CHARS:
        message = message[: ERROR_MAX_CHARS - 1] + "…"
    try:
        # The DAG id is the workload's name (dag_factory), the run date Airflow's ds.
        get_store().fail_run(dag_run.dag_id, run_date_of(logical_date_of(context)), dag_run.run_id, message)
    except Exception:
        # A store that cannot be reached must not hide the task's own failure.
        log.exception("Could not mark the run of %s failed in the store", dag_run.dag_id)
    # Without the airflow_api connection, or with the api-server away, it logs why and goes on.
    AirflowApiHook().set_dag_run_note(dag_run.dag_id, dag_run.run_id, fit_note(f"failed: {redact(message)}"))
