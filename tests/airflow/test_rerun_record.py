"""The synchronous re-run of one record, against the emulator and a store a real run filled."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime

import pytest

from claude_batch.rerun import RecordNotFoundError, RerunError, RerunRequest, rerun_record
from claude_workloads.loan_disclosure_review import LoanReview

RUN_DATE = date(2026, 6, 7)


def _first_loan(path) -> dict:
    return json.loads(path.read_text().splitlines()[0])


def test_rerun_by_business_key_publishes_a_validated_output_as_rerun(pipeline_for) -> None:
    pipeline = pipeline_for()
    loans = pipeline.loan_input(40)
    loan = _first_loan(loans)
    assert pipeline.run("loan_disclosure_review", loans).state == "success"
    messages_before = pipeline.emulator.stats()["messages_created"]

    # No input_uri: the record is looked up in the input of that date's run, as the store recorded it.
    result = rerun_record(
        RerunRequest(workload="loan_disclosure_review", business_key=loan["loan_file_id"], run_date=RUN_DATE)
    )

    assert result.custom_id == f"loan-2026-06-07-{loan['loan_file_id']}"
    assert LoanReview.model_validate(result.output).loan_file_id == loan["loan_file_id"]
    stored = pipeline.store().get_output("loan_disclosure_review", loan["loan_file_id"], RUN_DATE)
    assert stored is not None and stored.source == "rerun" and stored.output == result.output
    assert pipeline.emulator.stats()["messages_created"] == messages_before + 1
    assert pipeline.store().outputs_count("loan_disclosure_review", RUN_DATE) == 40


def test_rerun_of_a_given_record_needs_no_input_file(pipeline_for) -> None:
    pipeline = pipeline_for()
    loan = _first_loan(pipeline.loan_input(3))

    result = rerun_record(
        RerunRequest(
            workload="loan_disclosure_review",
            business_key=loan["loan_file_id"],
            run_date=RUN_DATE,
            record=loan,
        )
    )

    assert result.business_key == loan["loan_file_id"]
    assert pipeline.store().get_output("loan_disclosure_review", loan["loan_file_id"], RUN_DATE) is not None


def test_rerun_of_an_unknown_key_sends_nothing(pipeline_for) -> None:
    pipeline = pipeline_for()
    loans = pipeline.loan_input(5)

    with pytest.raises(RecordNotFoundError, match="no valid record with business key 'nope'"):
        rerun_record(
            RerunRequest(
                workload="loan_disclosure_review",
                business_key="nope",
                run_date=RUN_DATE,
                input_uri=str(loans),
            )
        )
    with pytest.raises(RerunError, match=r"unknown workload '/etc/passwd\.yaml'"):
        rerun_record(RerunRequest(workload="/etc/passwd.yaml", business_key="1", run_date=RUN_DATE))
    assert pipeline.emulator.stats()["messages_created"] == 0


def test_rerun_record_dag_publishes_the_record_from_its_params_form(pipeline_for) -> None:
    from airflow.dag_processing.dagbag import DagBag

    from tests.conftest import REPO_ROOT

    pipeline = pipeline_for()
    loans = pipeline.loan_input(5)
    loan = _first_loan(loans)
    dag = DagBag(dag_folder=REPO_ROOT / "dags" / "rerun_record.py").dags["rerun_record"]

    dag_run = dag.test(
        logical_date=datetime(2026, 6, 8, tzinfo=UTC),
        run_conf={
            "workload": "loan_disclosure_review",
            "business_key": loan["loan_file_id"],
            "run_date": RUN_DATE.isoformat(),
            "input_uri": str(loans),
        },
    )

    assert dag_run.state == "success"
    stored = pipeline.store().get_output("loan_disclosure_review", loan["loan_file_id"], RUN_DATE)
    assert stored is not None and stored.source == "rerun"
