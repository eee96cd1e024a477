"""Airflow's own REST API as a client sees it: the run report's summary as the DAG run's note.

Airflow 3's task SDK cannot write a DAG run's note (tasks have no metadata database access and the
execution API has no such call), so publish asks the public REST API, as any client would: the
``airflow_api`` connection names the api-server (host = base URL) and a user allowed to edit DAG runs.
Without the connection there is no note; a note that cannot be written never fails the run.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

import httpx
from airflow.sdk import BaseHook
from airflow.sdk.exceptions import AirflowNotFoundException

from claude_batch.redaction import redact
from claude_batch.strategy.report import RunReport

# The dag_run_note table holds up to 1,000 characters.
NOTE_MAX_CHARS = 1000


def note_headline(report: RunReport) -> str:
    """The counts a person scanning the grid needs, on one line (the grid shows a note's first line)."""
    health = report.health.level.value if report.health else "n/a"
    return (
        f"{report.published} published, {report.quarantined_total} quarantined of {report.inputs}; "
        f"cost ${report.cost_usd:.2f} vs ${report.all_sync_cost_usd:.2f} all-sync; health {health}"
    )


def fit_note(text: str) -> str:
    """``text`` redacted (a note is shown to everyone who may read the DAG, and an upstream's words
    in it may carry a secret) and cut to what a note holds."""
    text = redact(text)
    return text if len(text) <= NOTE_MAX_CHARS else text[: NOTE_MAX_CHARS - 1] + "…"


def note_text(summary_lines: list[str], headline: str | None = None) -> str:
    """The headline (a run report's: ``note_headline``), then the summary as Markdown lines, cut to
    what a note holds."""
    lines = [f"- {line}" for line in summary_lines]
    return fit_note("\n".join([headline, *lines] if headline else lines))


class AirflowApiHook(BaseHook):
    """The api-server's public REST API, as the user the connection names.

    :param airflow_api_conn_id: an ``http`` connection: host = the api-server's base URL, login and
        password = a user allowed to edit DAG runs.
    """

    conn_name_attr = "airflow_api_conn_id"
    default_conn_name = "airflow_api"
    conn_type = "http"
    hook_name = "Airflow REST API"

    def __init__(self, airflow_api_conn_id: str = default_conn_name, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.airflow_api_conn_id = airflow_api_conn_id

    def set_dag_run_note(self, dag_id: str, run_id: str, text: str) -> bool:
        """PATCH the note of the DAG run ``dag_id``/``run_id``; True when it was set."""
        try:
            conn = self.get_connection(self.airflow_api_conn_id)
        except AirflowNotFoundException:
            self.log.info(
                "No DAG run note: the connection %r (api-server URL, login, password) is not set",
                self.airflow_api_conn_id,
            )
            return False
        path = f"/api/v2/dags/{quote(dag_id, safe='')}/dagRuns/{quote(run_id, safe='')}"
        try:
            with httpx.Client(base_url=(conn.host or "").rstrip("/"), timeout=10) as client:
                login = client.post("/auth/token", json={"username": conn.login, "password": conn.password})
                login.raise_for_status()
                headers = {"Authorization": f"Bearer {login.json()['access_token']}"}
                client.patch(path, json={"note": text}, headers=headers).raise_for_status()
        except (httpx.HTTPError, KeyError, ValueError) as error:
            self.log.warning("The DAG run note was not set through %s: %s", conn.host, redact(error))
            return False
        self.log.info("DAG run note set")
        return True
