"""What the pages show, read from the store: one ``RunPoint`` per run, the facts the charts plot."""

from __future__ import annotations

from datetime import date, datetime

from pydantic import BaseModel, ConfigDict

from claude_batch.store import RunRecord, Store
from claude_batch.strategy.report import RunReport


class RunPoint(BaseModel):
    """One run as the history charts plot it.

    :param first_try: published without a recovery round.
    :param slack_hours: hours between finishing and the deadline; negative when the deadline was missed.
    :param shard_requests: requests per first-round shard (the batch sizes).
    """

    model_config = ConfigDict(extra="forbid")

    run_id: int
    run_date: date
    status: str
    dag_run_id: str | None
    first_try: int
    recovered: int
    quarantined: dict[str, int]
    cost_usd: float
    all_sync_cost_usd: float
    slack_hours: float | None
    batches_created: int
    shard_requests: list[int]
    health_shares: dict[str, float]
    health_level: str | None
    error: str | None = None


def report_of(run: RunRecord) -> RunReport | None:
    """The run's report, if publish wrote one (computed fields are dropped: the model recomputes them)."""
    if not run.report:
        return None
    return RunReport.model_validate({k: v for k, v in run.report.items() if k in RunReport.model_fields})


def _slack_hours(deadline: datetime | None, finished_at: datetime | None) -> float | None:
    if deadline is None or finished_at is None:
        return None
    return round((deadline - finished_at).total_seconds() / 3600, 2)


def _unreported(run: RunRecord) -> RunPoint:
    """A run with no report yet (running, or failed before publish): its state and error, no counts."""
    return RunPoint(
        run_id=run.id,
        run_date=run.logical_date,
        status=run.status,
        dag_run_id=run.dag_run_id,
        first_try=0,
        recovered=0,
        quarantined={},
        cost_usd=0.0,
        all_sync_cost_usd=0.0,
        slack_hours=None,
        batches_created=0,
        shard_requests=[],
        health_shares={},
        health_level=None,
        error=run.error,
    )


def run_history(store: Store, workload: str, limit: int = 60) -> list[RunPoint]:
    """The workload's runs, oldest first (the charts read left to right); a night that failed before
    its report is there too, with its state and error (the runbook sends on-call staff here first)."""
    points = []
    for run in reversed(store.recent_runs(workload, limit)):
        report = report_of(run)
        if report is None:
            points.append(_unreported(run))
            continue
        points.append(
            RunPoint(
                run_id=run.id,
                run_date=report.run_date,
                status=run.status,
                dag_run_id=run.dag_run_id,
                first_try=report.published - report.recovered,
                recovered=report.recovered,
                quarantined=report.quarantined,
                cost_usd=report.cost_usd,
                all_sync_cost_usd=report.all_sync_cost_usd,
                slack_hours=_slack_hours(report.deadline, report.finished_at),
                batches_created=report.batches_created,
                shard_requests=[s.request_count for s in store.shards(run.id) if s.round == 0],
                health_shares={
                    cause: share
                    for cause, share in (report.health.shares if report.health else {}).items()
                    if cause != "succeeded"
                },
                health_level=report.health.level.value if report.health else None,
                error=run.error,
            )
        )
    return points
