"""Publish sets the run report's summary as the DAG run's note, through the api-server's REST API; a
failed night's note says where and why."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager

from tests.airflow.ui_support import api_server_app, serving


@contextmanager
def _airflow_api_connection(tmp_path, monkeypatch) -> Iterator[None]:
    """The ``airflow_api`` connection names a served api-server and a user allowed to edit DAG runs."""
    passwords = tmp_path / "passwords.json"
    passwords.write_text(json.dumps({"notes": "notes-password"}))
    monkeypatch.setenv("AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS", "notes:user")
    monkeypatch.setenv("AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE", str(passwords))
    with serving(api_server_app()) as base_url:
        connection = {"conn_type": "http", "host": base_url, "login": "notes", "password": "notes-password"}
        monkeypatch.setenv("AIRFLOW_CONN_AIRFLOW_API", json.dumps(connection))
        yield


def _note_of(dag_run) -> str | None:
    from airflow.models import DagRun
    from airflow.utils.session import create_session

    with create_session() as session:
        return session.query(DagRun).filter(DagRun.run_id == dag_run.run_id).one().note


def test_publish_sets_the_report_summary_as_the_dag_run_note(pipeline_for, tmp_path, monkeypatch) -> None:
    pipeline = pipeline_for()
    loans = pipeline.loan_input(40)

    with _airflow_api_connection(tmp_path, monkeypatch):
        dag_run = pipeline.run("loan_disclosure_review", loans)

    assert dag_run.state == "success"
    note = _note_of(dag_run)
    headline, *lines = note.splitlines()
    assert headline.startswith("40 published, 0 quarantined of 40; cost $")
    assert headline.endswith("all-sync; health ok")
    assert lines[0] == "- run report: loan_disclosure_review 2026-06-07"
    assert "- records: 40 in = 40 published + 0 quarantined" in note
    assert len(note) <= 1000


def test_a_night_that_fails_says_where_and_why_in_its_note(pipeline_for, tmp_path, monkeypatch) -> None:
    # A route failure (here the input does not exist) used to leave the DAG run without a note.
    pipeline = pipeline_for()
    missing = tmp_path / "inputs" / "never-exported.jsonl"

    with _airflow_api_connection(tmp_path, monkeypatch):
        dag_run = pipeline.run("loan_disclosure_review", missing)

    assert dag_run.state == "failed"
    note = _note_of(dag_run)
    assert note.startswith(f"failed: route: The input {missing} does not exist")
    assert len(note) <= 1000
