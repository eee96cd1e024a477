"""Registers the Claude batch UI with Airflow: the FastAPI app and its entry in the Browse menu."""

from __future__ import annotations

from airflow.plugins_manager import AirflowPlugin

from claude_batch.ui.app import URL_PREFIX, app


class ClaudeBatchUIPlugin(AirflowPlugin):
    """Run history per workload, run reports, and the synchronous re-run of one record."""

    name = "claude_batch_ui"
    fastapi_apps = [{"app": app, "url_prefix": URL_PREFIX, "name": "Claude batch runs"}]
    external_views = [
        {
            "name": "Claude batch runs",
            "href": f"{URL_PREFIX}/",
            "destination": "nav",
            "category": "browse",
            "url_route": "claude-batch",
        }
    ]
