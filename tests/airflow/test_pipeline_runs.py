"""The nightly DAG end to end under dag.test() against the emulator: outcomes, not calls."""

from __future__ import annotations

from datetime import date

from claude_batch.strategy.report import RunReport


def _report(
    pipeline, workload: str = "loan_disclosure_review", run_date: date = date(2026, 6, 7)
) -> RunReport:
    store = pipeline.store()
    run = next(r for r in store.recent_runs(workload) if r.logical_date == run_date)
    return RunReport.model_validate({k: v for k, v in run.report.items() if k in RunReport.model_fields})


def test_clean_run_publishes_every_record_once_through_one_batch(pipeline_for) -> None:
    pipeline = pipeline_for(processing_seconds=1.0)
    loans = pipeline.loan_input(150)

    dag_run = pipeline.run("loan_disclosure_review", loans)

    assert dag_run.state == "success"
    report = _report(pipeline)
    assert (report.inputs, report.published, report.quarantined_total) == (150, 150, 0)
    assert report.batches_created == 1
    assert pipeline.emulator.stats()["batches_created"] == 1
    assert report.cost_usd < report.all_sync_cost_usd
    assert pipeline.store().outputs_count("loan_disclosure_review", date(2026, 6, 7)) == 150
