"""Every DAG file imports cleanly, declares tags, a doc and an owner, and touches nothing at parse time.

The DAG processor re-parses `dags/` every few seconds, so top-level code that opens a socket or a
database connection is a production incident in waiting; the check blocks both while parsing.
"""

from __future__ import annotations

import contextlib
import socket
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy.engine

from tests.conftest import REPO_ROOT

DAGS_FOLDER = REPO_ROOT / "dags"


class ParseTimeIOError(RuntimeError):
    """Raised when a DAG file reaches the network or a database while being parsed."""


@contextlib.contextmanager
def _forbid_io(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    def refuse(what: str):
        def _refuse(*args, **kwargs):
            raise ParseTimeIOError(f"DAG file opened a {what} at parse time")

        return _refuse

    with monkeypatch.context() as patch:
        patch.setattr(socket.socket, "connect", refuse("network connection"))
        patch.setattr(socket, "create_connection", refuse("network connection"))
        patch.setattr(sqlalchemy.engine.Engine, "connect", refuse("database connection"))
        yield


EXPECTED_DAG_IDS = {"loan_disclosure_review", "document_tagging", "rerun_record"}


def integrity_problems(folder: Path, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Parse every DAG file of `folder` as the DAG processor would (safe mode: a file must mention
    both "airflow" and "dag" to be parsed) and return one readable line per problem found."""
    from airflow.dag_processing.dagbag import DagBag

    with _forbid_io(monkeypatch):
        bag = DagBag(dag_folder=folder)
    if folder == DAGS_FOLDER and not set(bag.dags) >= EXPECTED_DAG_IDS:
        return [f"expected DAGs {sorted(EXPECTED_DAG_IDS)}, the processor found {sorted(bag.dags)}"]
    problems = [f"{Path(path).name}: import error: {error}" for path, error in bag.import_errors.items()]
    for dag_id, dag in sorted(bag.dags.items()):
        if not dag.tags:
            problems.append(f"{dag_id}: no tags")
        if not (dag.doc_md or dag.description):
            problems.append(f"{dag_id}: no doc_md or description")
        owners = {task.owner for task in dag.tasks}
        if not owners or owners == {"airflow"}:
            problems.append(f"{dag_id}: no owner (default_args['owner'] is unset)")
    return problems


def test_project_dags_import_cleanly_with_tags_doc_and_owner(monkeypatch: pytest.MonkeyPatch) -> None:
    assert integrity_problems(DAGS_FOLDER, monkeypatch) == []


def _write(folder: Path, name: str, body: str) -> None:
    (folder / name).write_text(textwrap.dedent(body))


def test_check_reports_a_dag_that_connects_at_parse_time(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _write(
        tmp_path,
        "greedy.py",
        """
        import socket
        from airflow.sdk import dag  # airflow dag

        socket.create_connection(("127.0.0.1", 9))

        @dag(tags=["t"], doc_md="d", default_args={"owner": "data"})
        def greedy():
            pass

        greedy()
        """,
    )
    problems = integrity_problems(tmp_path, monkeypatch)
    assert len(problems) == 1
    assert "greedy.py: import error" in problems[0]
    assert "network connection at parse time" in problems[0]


def test_check_reports_missing_tags_doc_and_owner(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _write(
        tmp_path,
        "bare.py",
        """
        from airflow.sdk import dag, task

        @dag(schedule=None)
        def bare():
            @task
            def noop():
                return 1
            noop()

        bare()
        """,
    )
    assert integrity_problems(tmp_path, monkeypatch) == [
        "bare: no tags",
        "bare: no doc_md or description",
        "bare: no owner (default_args['owner'] is unset)",
    ]
