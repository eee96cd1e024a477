"""The plugin's FastAPI app, mounted by the api-server under ``/claude-batch``.

Plugin apps get no authentication from Airflow, so every route declares Airflow's own security
dependencies: the same JWT (the UI's cookie or a bearer token) and the same auth manager decide
who may see a workload's runs (read on its DAG's runs) and who may re-run a record (the permission
to trigger its DAG). Pages are rendered on the server; the charts are Plotly, served from the
``plotly`` package by this app, since the machines have no internet.
"""

from __future__ import annotations

from datetime import date
from pathlib import Path
from typing import Any

import anthropic
import jinja2
import plotly
from airflow.api_fastapi.auth.managers.models.resource_details import AccessView, DagAccessEntity
from airflow.api_fastapi.core_api.security import requires_access_dag, requires_access_view
from fastapi import Depends, FastAPI, HTTPException, Request
from fastapi.responses import FileResponse, HTMLResponse
from pydantic import BaseModel, ConfigDict, Field

from claude_batch.hooks.store import get_store
from claude_batch.rerun import InvalidAnswerError, RecordNotFoundError, RerunError, RerunRequest, RerunResult
from claude_batch.rerun import rerun_record as run_rerun
from claude_batch.store import UnknownRunError
from claude_batch.strategy.spec import bundled_workload_names, load_workload
from claude_batch.ui.history import report_of, run_history

URL_PREFIX = "/claude-batch"
PLOTLY_JS = Path(plotly.__file__).parent / "package_data" / "plotly.min.js"

_templates = jinja2.Environment(
    loader=jinja2.FileSystemLoader(Path(__file__).with_name("templates")),
    autoescape=True,
    undefined=jinja2.StrictUndefined,
)

app = FastAPI(title="Claude batch runs", docs_url=None, redoc_url=None, openapi_url=None)

CanSeePlugins = Depends(requires_access_view(AccessView.PLUGINS))
# dag_id is a path parameter of the routes below; the dependency reads it from there.
CanReadRuns = Depends(requires_access_dag("GET", DagAccessEntity.RUN))
CanTriggerRuns = Depends(requires_access_dag("POST", DagAccessEntity.RUN))


class RerunBody(BaseModel):
    """The re-run endpoint's body: the workload is the path's DAG id."""

    model_config = ConfigDict(extra="forbid")

    business_key: str = Field(min_length=1)
    run_date: date
    input_uri: str = ""
    record: dict[str, Any] | None = None


def _workload(dag_id: str) -> str:
    if dag_id not in bundled_workload_names():
        raise HTTPException(404, f"no workload {dag_id!r}; workloads: {', '.join(bundled_workload_names())}")
    return dag_id


def _page(template: str, request: Request, **values: Any) -> HTMLResponse:
    # Links are relative to where the api-server mounted this app (it may sit under a base URL).
    base = str(request.base_url).rstrip("/") + request.scope.get("root_path", "")
    airflow_root = request.scope.get("root_path", "").removesuffix(URL_PREFIX)
    return HTMLResponse(
        _templates.get_template(template).render(base=base, airflow_root=airflow_root, **values)
    )


@app.get("/static/plotly.min.js", dependencies=[CanSeePlugins])
def plotly_js() -> FileResponse:
    """The charting library, from the installed ``plotly`` package (no CDN)."""
    return FileResponse(PLOTLY_JS, media_type="text/javascript", headers={"cache-control": "max-age=86400"})


@app.get("/", response_class=HTMLResponse, dependencies=[CanSeePlugins])
def index(request: Request) -> HTMLResponse:
    """The workloads, each with its latest run."""
    store = get_store()
    workloads = []
    for name in bundled_workload_names():
        latest = store.recent_runs(name, 1)
        workloads.append({"name": name, "description": load_workload(name).description, "latest": latest})
    return _page("index.html", request, workloads=workloads)


@app.get("/workloads/{dag_id}", response_class=HTMLResponse, dependencies=[CanReadRuns])
def workload_page(dag_id: str, request: Request) -> HTMLResponse:
    """A workload's run history: result mix, cost, deadline, batches and health trends."""
    spec = load_workload(_workload(dag_id))
    points = run_history(get_store(), spec.name)
    thresholds = {cause: t.model_dump() for cause, t in spec.health.thresholds.items()}
    return _page(
        "workload.html",
        request,
        spec=spec,
        points=points,
        history_json=[p.model_dump(mode="json") for p in points],
        thresholds=thresholds,
    )


@app.get("/api/workloads/{dag_id}/history", dependencies=[CanReadRuns])
def workload_history(dag_id: str) -> list[dict[str, Any]]:
    """The history the charts plot, as JSON."""
    return [p.model_dump(mode="json") for p in run_history(get_store(), _workload(dag_id))]


@app.get("/workloads/{dag_id}/runs/{run_id}", response_class=HTMLResponse, dependencies=[CanReadRuns])
def run_page(dag_id: str, run_id: int, request: Request) -> HTMLResponse:
    """One run: its report, the rationale of each lever, the quarantined records and their reasons."""
    store = get_store()
    try:
        run = store.get_run(run_id)
    except UnknownRunError:
        run = None
    # The permission checked is on dag_id: a run of another workload is not found here.
    if run is None or run.workload != _workload(dag_id):
        raise HTTPException(404, f"no run {run_id} of {dag_id}")
    return _page(
        "run.html",
        request,
        dag_id=dag_id,
        run=run,
        report=report_of(run),
        quarantine=store.quarantine_rows(run.id),
    )


@app.post("/api/workloads/{dag_id}/rerun", dependencies=[CanTriggerRuns])
def rerun(dag_id: str, body: RerunBody) -> RerunResult:
    """Re-run one record synchronously and return its validated output (published as ``rerun``)."""
    request = RerunRequest(workload=_workload(dag_id), **body.model_dump())
    try:
        return run_rerun(request)
    except RecordNotFoundError as error:
        raise HTTPException(404, str(error)) from error
    except RerunError as error:
        raise HTTPException(422, str(error)) from error
    except InvalidAnswerError as error:
        raise HTTPException(502, f"the model's answer is not a valid output: {error}") from error
    except anthropic.APIError as error:
        raise HTTPException(502, f"the Messages API refused the request: {error}") from error
