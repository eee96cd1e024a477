"""After the cost guard: in ``sample_only`` mode, report the sample against the previous prompt and
end the run before anything is sharded or paid in batch."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from airflow.sdk import BaseOperator, Context, ObjectStoragePath
from airflow.sdk.bases.skipmixin import SkipMixin

from claude_batch.hooks.airflow_api import AirflowApiHook, fit_note
from claude_batch.hooks.store import get_store
from claude_batch.stages.cost_guard import CostEstimate
from claude_batch.stages.run import RunContext, aware
from claude_batch.store.records import SampleValidationRecord
from claude_batch.strategy.gates import PromptTry, RunMode, SampleReport
from claude_batch.strategy.sampling import GateResult
from claude_batch.strategy.spec import prompt_fingerprint


def _prompt_try(validation: SampleValidationRecord) -> PromptTry:
    return PromptTry(
        prompt_fingerprint=validation.prompt_fingerprint,
        model=validation.model,
        sample_size=validation.sample_size,
        pass_rate=validation.pass_rate,
        passed=validation.passed,
        created_at=aware(validation.created_at),
    )


def _note(report: SampleReport) -> str:
    """The report as the DAG run's note: the verdict line first (the grid shows it), cut to what a
    note holds; the failing answers quote the model, so it is redacted like the run report's note."""
    return fit_note("\n".join(report.lines()))


class SampleReportOperator(BaseOperator, SkipMixin):
    """End a ``sample_only`` run with its report; a ``full`` run goes on untouched.

    The report (pass rate and failing answers of this prompt, the previous prompt fingerprint's
    pass rate, the cost estimate) goes to the task log, the run folder (``sample/report.json``), the
    DAG run note and this task's XCom (numbers and ids only). Every later task is then skipped: in
    sample-only mode nothing is sharded and no batch is created.

    :param run: the route stage's run context.
    :param sample: the sample stage's return value.
    :param estimate: the cost guard's return value.
    :param mode: ``full`` or ``sample_only`` (the DAG Param).
    """

    template_fields: Sequence[str] = ("run", "sample", "estimate", "mode")

    def __init__(
        self, *, run: Any, sample: Any, estimate: Any, mode: str = RunMode.FULL, **kwargs: Any
    ) -> None:
        super().__init__(**kwargs)
        self.run = run
        self.sample = sample
        self.estimate = estimate
        self.mode = mode

    def execute(self, context: Context) -> dict | None:
        if RunMode(self.mode) is RunMode.FULL:
            self.log.info("Mode full: the night goes on (mode sample_only would stop here with a report)")
            return None
        run = RunContext.of(self.run)
        if not self.sample["sample_size"]:
            self.log.warning(
                "sample only: no record of the input %s can be sent; nothing was sampled", run.input_uri
            )
            return self._end_here(context, {"passed": False, "pass_rate": None, "sample_size": 0})
        spec = run.spec()
        store = get_store()
        fingerprint = prompt_fingerprint(spec)
        gate = GateResult.model_validate_json(ObjectStoragePath(self.sample["gate"]).read_text())
        current = store.last_validation(spec.name, fingerprint)
        assert current is not None  # the sample stage recorded it before this task could run
        previous = store.last_validation(spec.name, fingerprint, same_prompt=False)
        estimate = CostEstimate.model_validate(self.estimate)
        report = SampleReport(
            workload=spec.name,
            run_date=run.run_date,
            gate=gate,
            current=_prompt_try(current),
            previous=_prompt_try(previous) if previous else None,
            estimated_usd=estimate.estimated_usd,
            estimate=estimate.describe(),
        )
        for line in report.lines():
            self.log.info("%s", line)
        report_file = run.layout.sample_report
        report_file.write_text(report.model_dump_json(indent=2))
        dag_run = context["dag_run"]
        AirflowApiHook().set_dag_run_note(dag_run.dag_id, dag_run.run_id, _note(report))
        return self._end_here(context, {**report.summary(), "report": str(report_file)})

    def _end_here(self, context: Context, summary: dict) -> dict:
        """Push the summary and skip every later task: nothing is sharded or sent in batch."""
        # Skipping ends this task at once, before a return value would be pushed.
        context["ti"].xcom_push(key="return_value", value=summary)
        self.log.info("Mode sample_only: every later task is skipped; nothing is sharded or sent in batch")
        self.skip(ti=context["ti"], tasks=context["task"].get_flat_relatives(upstream=False))
        return summary
