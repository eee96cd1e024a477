"""An on-call person for ``dag.test()`` runs: answers a gate parked for an approval.

``dag.test()`` leaves a Human-in-the-loop task parked until an answer is recorded from outside. The
answer goes through the api-server's own handler of the UI's call (PATCH ``.../hitlDetails``),
against the same metadata DB, from a thread beside the run.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager


def _answer_parked(task_id: str, option: str) -> list[str]:
    """Answer every parked, unanswered request of ``task_id``; the run ids answered."""
    from airflow.api_fastapi.auth.managers.simple.user import SimpleAuthManagerUser
    from airflow.api_fastapi.core_api.datamodels.hitl import UpdateHITLDetailPayload
    from airflow.api_fastapi.core_api.routes.public.hitl import update_hitl_detail
    from airflow.models.hitl import HITLDetail
    from airflow.models.taskinstance import TaskInstance
    from airflow.utils.session import create_session
    from airflow.utils.state import TaskInstanceState
    from sqlalchemy import select

    answered = []
    with create_session() as session:
        parked = session.scalars(
            select(TaskInstance)
            .join(HITLDetail, HITLDetail.ti_id == TaskInstance.id)
            .where(
                TaskInstance.task_id == task_id,
                TaskInstance.state == TaskInstanceState.AWAITING_INPUT,
                ~HITLDetail.response_received,
            )
        ).all()
        for ti in parked:
            update_hitl_detail(
                dag_id=ti.dag_id,
                dag_run_id=ti.run_id,
                task_id=ti.task_id,
                update_hitl_detail_payload=UpdateHITLDetailPayload(chosen_options=[option], params_input={}),
                user=SimpleAuthManagerUser(username="on-call", role="admin"),
                session=session,
                map_index=ti.map_index,
            )
            answered.append(ti.run_id)
    return answered


def _fail_running_runs() -> None:
    """End the runs dag.test() is waiting on, so that a test whose on-call person failed stops."""
    from airflow.models.dagrun import DagRun
    from airflow.utils.session import create_session
    from airflow.utils.state import DagRunState
    from sqlalchemy import update

    with create_session() as session:
        session.execute(
            update(DagRun).where(DagRun.state == DagRunState.RUNNING).values(state=DagRunState.FAILED)
        )


@contextmanager
def on_call(option: str, task_id: str = "sample_validate") -> Iterator[list[str]]:
    """While inside, answer ``option`` (Approve or Reject) to each approval ``task_id`` asks for;
    yields the run ids answered, one per request."""
    answered: list[str] = []
    done = threading.Event()
    failures: list[BaseException] = []

    def answer() -> None:
        try:
            while not done.wait(0.5):
                answered.extend(_answer_parked(task_id, option))
        except BaseException as error:  # surfaced in the test, not lost in the thread
            failures.append(error)
            _fail_running_runs()

    thread = threading.Thread(target=answer, name="on-call", daemon=True)
    thread.start()
    try:
        yield answered
    finally:
        done.set()
        thread.join(timeout=30)
    if failures:
        raise failures[0]
