"""The users' day without conf: scheduled nights, backfills and empty trigger forms take the spec's
input for the run date, and the run date is Airflow's ``ds``."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, timedelta
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


def test_an_empty_night_succeeds_with_an_empty_report_and_no_paid_call(pipeline_for) -> None:
    pipeline = pipeline_for()
    empty = pipeline.tmp_path / "inputs" / "empty.jsonl"
    empty.parent.mkdir(parents=True)
    empty.write_text("\n\n")  # blank lines are no records

    dag_run = pipeline.run(WORKLOAD, empty)

    assert dag_run.state == "success"
    run = next(r for r in pipeline.store().recent_runs(WORKLOAD) if r.logical_date == date(2026, 6, 7))
    assert run.status == "succeeded"
    assert (run.report["inputs"], run.report["published"], run.report["quarantined_total"]) == (0, 0, 0)
    report_file = pipeline.tmp_path / "data" / WORKLOAD / "2026-06-07" / "report.json"
    assert json.loads(report_file.read_text())["inputs"] == 0
    stats = pipeline.emulator.stats()
    assert (stats["messages_created"], stats["count_tokens_calls"], stats["batches_created"]) == (0, 0, 0)


def test_a_failed_night_is_marked_failed_in_the_store_with_its_error(pipeline_for) -> None:
    pipeline = pipeline_for(faults={"requests": {"cut_off": 0.6}}, seed=1)
    loans = pipeline.loan_input(60)

    dag_run = pipeline.run(WORKLOAD, loans)

    assert dag_run.state == "failed"
    run = next(r for r in pipeline.store().recent_runs(WORKLOAD) if r.logical_date == date(2026, 6, 7))
    assert run.status == "failed"
    assert run.error.startswith("sample_validate: Sample gate of loan_disclosure_review for 2026-06-07: ")
    # The plugin's history lists it, state and error, though it never reached publish.
    from claude_batch.ui.history import run_history

    (point,) = run_history(pipeline.store(), WORKLOAD)
    assert (point.status, point.error) == ("failed", run.error)


def test_another_input_for_a_date_with_a_night_is_refused_and_the_night_is_left_as_it_was(
    pipeline_for,
) -> None:
    # A trigger of a published date that names another file (the failing records, an empty or a
    # missing one): before, it took the date's run over (failed, pointing at a file its re-runs could
    # not read) and paid for a sample before the shards' "input changed" guard stopped it.
    from airflow.sdk.exceptions import AirflowFailException

    from claude_batch.operators.route import RouteOperator
    from claude_batch.stages.run import file_digest, input_location

    pipeline = pipeline_for()
    loans = pipeline.loan_input(40)
    assert pipeline.run(WORKLOAD, loans, sample_size=30).state == "success"
    night = pipeline.store().run_of_date(WORKLOAD, date(2026, 6, 7))
    paid = pipeline.emulator.stats()
    failures = pipeline.loan_input(3, name="failing.jsonl")

    dag_run = pipeline.run(
        WORKLOAD, failures, logical_date=datetime(2026, 6, 7, 9, 0, tzinfo=UTC), sample_size=30
    )

    assert dag_run.state == "failed"
    states = {ti.task_id: ti.state for ti in dag_run.get_task_instances()}
    assert states["route"] == "failed" and states["sample_validate"] != "success"
    after = pipeline.store().run_of_date(WORKLOAD, date(2026, 6, 7))
    assert (after.status, after.dag_run_id, after.params, after.error) == (
        "succeeded",
        night.dag_run_id,
        night.params,
        None,
    )
    stats = pipeline.emulator.stats()
    assert (stats["messages_created"], stats["batches_created"]) == (
        paid["messages_created"],
        paid["batches_created"],
    )
    with pytest.raises(
        AirflowFailException, match=r"read .*loans\.jsonl; this DAG run names .*failing\.jsonl"
    ) as refused:
        RouteOperator._keep_the_dates_input(
            pipeline.store(), load_workload(WORKLOAD), date(2026, 6, 7), str(failures), None
        )
    assert "Re-run button" in str(refused.value) and "another logical date" in str(refused.value)
    # The same input again re-attaches to the night, as a re-run of the date always has.
    assert (
        pipeline.run(
            WORKLOAD, loans, logical_date=datetime(2026, 6, 7, 10, 0, tzinfo=UTC), sample_size=30
        ).state
        == "success"
    )
    assert pipeline.emulator.stats()["batches_created"] == paid["batches_created"]
    # The same file with other contents (the export ran again): refused before the sample is paid.
    messages = pipeline.emulator.stats()["messages_created"]
    pipeline.loan_input(41)
    changed = pipeline.run(
        WORKLOAD, loans, logical_date=datetime(2026, 6, 7, 11, 0, tzinfo=UTC), sample_size=30
    )
    assert changed.state == "failed"
    assert {ti.task_id: ti.state for ti in changed.get_task_instances()}["route"] == "failed"
    assert pipeline.emulator.stats()["messages_created"] == messages
    assert pipeline.store().run_of_date(WORKLOAD, date(2026, 6, 7)).status == "succeeded"
    with pytest.raises(AirflowFailException, match=r"has changed since \(SHA-256 \w{12} then, \w{12} now\)"):
        RouteOperator._keep_the_dates_input(
            pipeline.store(),
            load_workload(WORKLOAD),
            date(2026, 6, 7),
            str(loans),
            file_digest(input_location(str(loans))),
        )


def _waiting_night(pipeline, wait_for: timedelta):
    """The loan DAG with the spec's input in tmp_path and a short ``input.wait_for``; the night's file."""
    spec = load_workload(WORKLOAD)
    pattern = pipeline.tmp_path / "landing" / "{ds}.jsonl"
    changed = spec.model_copy(
        update={"input": spec.input.model_copy(update={"uri": str(pattern), "wait_for": wait_for})}
    )
    source = pipeline._write_spec(changed)
    dag = build_workload_dag(load_workload(source), spec_source=str(source), poll_interval=0.2)
    return dag, pipeline.tmp_path / "landing" / "2026-06-07.jsonl"


def test_a_night_whose_input_never_lands_fails_naming_the_file_and_the_date(pipeline_for) -> None:
    pipeline = pipeline_for()
    dag, night_file = _waiting_night(pipeline, timedelta(seconds=2))

    dag_run = dag.test(logical_date=datetime(2026, 6, 7, 5, tzinfo=UTC), run_conf={})

    assert dag_run.state == "failed"
    (run,) = pipeline.store().recent_runs(WORKLOAD)
    assert run.status == "failed"
    assert run.error.startswith("route: The input of loan_disclosure_review for 2026-06-07 never landed: ")
    assert str(night_file) in run.error
    assert pipeline.emulator.stats()["messages_created"] == 0


def test_make_airflow_writes_inputs_for_the_last_seven_nights_and_today() -> None:
    from claude_demo.standalone import recent_run_dates

    spec = load_workload(WORKLOAD)
    # 03:00 UTC on 30 November: the latest night (01:00 New York = 06:00 UTC) was the 29th's.
    dates = recent_run_dates(spec, datetime(2026, 11, 30, 3, tzinfo=UTC))
    assert dates == [date(2026, 11, 30 - n) for n in range(8)]
    # 12:00 UTC: the 30th's night has run, so it is the latest and today at once.
    assert recent_run_dates(spec, datetime(2026, 11, 30, 12, tzinfo=UTC)) == [
        date(2026, 11, 30 - n) for n in range(7)
    ]


def test_the_dag_doc_and_the_runbook_agree_that_clearing_a_wait_cancels_its_batch() -> None:
    from tests.conftest import REPO_ROOT

    doc = " ".join(build_workload_dag(load_workload(WORKLOAD)).doc_md.split())
    assert (
        "Except `shards.wait`: clearing it (or marking it failed) while it is deferred **cancels its batch**"
        in doc
    )
    runbook_row = next(
        line
        for line in (REPO_ROOT / "README.md").read_text().splitlines()
        if line.startswith("| `shards.wait` | while")
    )
    assert "**cancels the batch**" in runbook_row
