"""The users' day without conf: scheduled nights, backfills and empty trigger forms take the spec's
input for the run date, and the run date is Airflow's ``ds``."""

from __future__ import annotations

from datetime import UTC, date, datetime
from pathlib import Path

import pytest

from claude_batch.dag_factory import build_workload_dag
from claude_batch.strategy.spec import load_workload
from claude_demo.loans import write_loan_files

WORKLOAD = "loan_disclosure_review"


def _serialized(dag):
    """The DAG as the scheduler and the api-server see it (serialized by the dag-processor)."""
    from airflow.serialization.serialized_objects import DagSerialization

    return DagSerialization.from_dict(DagSerialization.to_dict(dag))


def _scheduled_logical_dates(dag, after: datetime, count: int) -> list[datetime]:
    """The logical dates the scheduler would create next."""
    from airflow.timetables.base import DataInterval, TimeRestriction

    timetable = _serialized(dag).timetable
    dates, last = [], DataInterval(after, after)
    for _ in range(count):
        info = timetable.next_dagrun_info(
            last_automated_data_interval=last,
            restriction=TimeRestriction(earliest=None, latest=None, catchup=True),
        )
        dates.append(info.logical_date)
        last = info.data_interval
    return dates


def test_the_schedule_is_read_in_the_deadline_zone_so_ds_is_the_local_night() -> None:
    spec = load_workload(WORKLOAD)
    dag = build_workload_dag(spec)
    # Across the end of daylight saving time in New York (02:00 on 1 November 2026, whose 01:00
    # happens twice): 01:00 local on the nights before and after.
    before, _, after = _scheduled_logical_dates(dag, datetime(2026, 10, 30, 12, tzinfo=UTC), 3)
    assert (before.astimezone(UTC), after.astimezone(UTC)) == (
        datetime(2026, 10, 31, 5, tzinfo=UTC),
        datetime(2026, 11, 2, 6, tzinfo=UTC),
    )
    # Airflow's ds is the logical date's UTC date; the run date is that same date.
    assert (spec.run_date(before), spec.run_date(after)) == (date(2026, 10, 31), date(2026, 11, 2))
    assert (before.strftime("%Y-%m-%d"), after.strftime("%Y-%m-%d")) == ("2026-10-31", "2026-11-02")


@pytest.mark.parametrize(
    "conf",
    [
        {},
        {"input_uri": None, "deadline": None, "sample_size": None},
        {"input_uri": "", "deadline": "", "sample_size": 0},
    ],
    ids=["nothing", "nulls", "empty-strings"],
)
def test_empty_params_are_valid_values(conf: dict) -> None:
    # What the api-server does with a trigger's (or a backfill's) conf before it creates the run.
    params = _serialized(build_workload_dag(load_workload(WORKLOAD))).params.deep_merge(conf)
    resolved = params.validate()
    assert {k: resolved[k] or None for k in ("input_uri", "deadline", "sample_size")} == dict.fromkeys(
        ("input_uri", "deadline", "sample_size")
    )


def test_a_sample_size_over_the_limit_is_refused_by_the_form() -> None:
    from airflow.sdk.exceptions import ParamValidationError

    params = _serialized(build_workload_dag(load_workload(WORKLOAD))).params
    with pytest.raises(ParamValidationError, match="sample_size"):
        params.deep_merge({"sample_size": 500}).validate()


def test_a_run_with_no_conf_reads_the_specs_input_for_its_date(
    pipeline_for, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The bug a new user met: every scheduled night failed because ``{ds}`` stayed in the path."""
    pipeline = pipeline_for(processing_seconds=0.5)
    # The bundled spec's input.uri is relative (.demo/inputs/<workload>/{ds}.jsonl): to the worker's folder.
    monkeypatch.chdir(tmp_path)
    write_loan_files(tmp_path / ".demo" / "inputs" / WORKLOAD / "2026-06-07.jsonl", 40)
    write_loan_files(tmp_path / ".demo" / "inputs" / WORKLOAD / "2026-06-08.jsonl", 7)
    dag = build_workload_dag(load_workload(WORKLOAD), poll_interval=0.2)

    dag_run = dag.test(logical_date=datetime(2026, 6, 8, 5, tzinfo=UTC))

    assert dag_run.state == "success"
    run = next(r for r in pipeline.store().recent_runs(WORKLOAD) if r.logical_date == date(2026, 6, 8))
    assert run.params["input_uri"].endswith(f"{WORKLOAD}/2026-06-08.jsonl")
    assert (run.report["inputs"], run.report["published"]) == (7, 7)
    assert pipeline.store().outputs_count(WORKLOAD, date(2026, 6, 7)) == 0
