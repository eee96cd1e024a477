"""The plugin's FastAPI app, mounted by the api-server under ``/claude-batch``.

Plugin apps get no authentication from Airflow, so every route declares Airflow's own security
dependencies: the same JWT (the UI's cookie or a bearer token) and the same auth manager decide
who may see a workload's runs (read on its DAG's runs) and who may re-run a record (the permission
to trigger its DAG). Pages are rendered on the server; the charts are Plotly, served from the
``plotly`` package by this app, since the machines have no internet. Links are relative to where the
api-server mounted the app (never built from the request's Host), and a link that leaves the plugin
opens Airflow at the top level, not inside the frame the Airflow UI shows the plugin in.

A re-run is the one route that pays: it runs in a small thread pool of its own (so the api-server's
request threads and event loop stay free), at most ``[claude_batch] rerun_max_concurrency`` at once,
each within ``rerun_timeout_seconds``, and each user at most ``rerun_rate_limit_per_minute`` times a
minute (429 with Retry-After beyond it). The pool and the timeout bound this process; the per-user
limit is counted on the store's re-run ledger, so it holds for the deployment, however many
api-server processes and hosts serve it.
"""

from __future__ import annotations

import asyncio
import functools
import math
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import date
from pathlib import Path
from typing import Any

import jinja2
import plotly
from airflow.api_fastapi.app import get_auth_manager
from airflow.api_fastapi.auth.managers.models.resource_details import AccessView, DagAccessEntity, DagDetails
from airflow.api_fastapi.core_api.security import GetUserDep, requires_access_dag, requires_access_view
from airflow.configuration import conf
from fastapi import Depends, FastAPI, HTTPException, Request
from fastapi.exception_handlers import http_exception_handler
from fastapi.responses import FileResponse, HTMLResponse, RedirectResponse, Response
from pydantic import BaseModel, ConfigDict, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

from claude_batch.hooks.store import get_store
from claude_batch.redaction import redact
from claude_batch.rerun import (
    InvalidAnswerError,
    MergeError,
    RerunError,
    RerunRequest,
    RerunResult,
    UnknownRerunTargetError,
    UpstreamError,
)
from claude_batch.rerun import rerun_record as run_rerun
from claude_batch.store import RerunConflictError, RerunRateLimitedError, RunRecord, UnknownRunError
from claude_batch.strategy.spec import bundled_workload_names, load_workload
from claude_batch.ui.history import report_of, run_history
from claude_batch.workloads import register_bundled_workloads

# The specs this face loads by name are the bundled ones (and $CLAUDE_BATCH_SPECS_DIR's).
register_bundled_workloads()

URL_PREFIX = "/claude-batch"
PLOTLY_JS = Path(plotly.__file__).parent / "package_data" / "plotly.min.js"
CONFIG_SECTION = "claude_batch"

_templates = jinja2.Environment(
    loader=jinja2.FileSystemLoader(Path(__file__).with_name("templates")),
    autoescape=True,
    undefined=jinja2.StrictUndefined,
)
_templates.filters["redact"] = redact

app = FastAPI(title="Claude batch runs", docs_url=None, redoc_url=None, openapi_url=None)

CanSeePlugins = Depends(requires_access_view(AccessView.PLUGINS))
# dag_id is a path parameter of the routes below; the dependency reads it from there.
CanReadRuns = Depends(requires_access_dag("GET", DagAccessEntity.RUN))
CanTriggerRuns = Depends(requires_access_dag("POST", DagAccessEntity.RUN))


class RerunSettings(BaseModel):
    """The re-run endpoint's bounds, from the ``[claude_batch]`` section of the Airflow config."""

    max_concurrency: int = Field(ge=1)
    timeout_seconds: float = Field(gt=0)
    rate_limit_per_minute: int = Field(ge=1)


def rerun_settings() -> RerunSettings:
    """Read each time: a config change needs no restart of the api-server to take effect."""
    return RerunSettings(
        max_concurrency=conf.getint(CONFIG_SECTION, "rerun_max_concurrency", fallback=4),
        timeout_seconds=conf.getfloat(CONFIG_SECTION, "rerun_timeout_seconds", fallback=120.0),
        rate_limit_per_minute=conf.getint(CONFIG_SECTION, "rerun_rate_limit_per_minute", fallback=10),
    )


@functools.cache
def _rerun_pool(max_workers: int) -> ThreadPoolExecutor:
    # Its own threads: a re-run waits on the network for seconds, the api-server's shared pool must not.
    return ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="claude-batch-rerun")


class RerunBody(BaseModel):
    """The re-run endpoint's body: the workload is the path's DAG id; nothing else is accepted."""

    model_config = ConfigDict(extra="forbid")

    business_key: str = Field(min_length=1, max_length=2000)
    run_date: date
    reason: str = Field(default="", max_length=1000)


class UndoBody(BaseModel):
    """Which re-run to undo."""

    model_config = ConfigDict(extra="forbid")

    rerun_id: int


def _workload(dag_id: str) -> str:
    if dag_id not in bundled_workload_names():
        raise HTTPException(404, f"no workload {dag_id!r}; workloads: {', '.join(bundled_workload_names())}")
    return dag_id


def _may_read(user: Any, dag_id: str) -> bool:
    return get_auth_manager().is_authorized_dag(
        method="GET", access_entity=DagAccessEntity.RUN, details=DagDetails(id=dag_id), user=user
    )


def _roots(request: Request) -> tuple[str, str]:
    """(the plugin's root, Airflow's root) as absolute paths: where the api-server mounted them."""
    base = request.scope.get("root_path", "").rstrip("/")
    return base, base.removesuffix(URL_PREFIX)


def _page(template: str, request: Request, **values: Any) -> HTMLResponse:
    base, airflow_root = _roots(request)
    return HTMLResponse(
        _templates.get_template(template).render(base=base, airflow_root=airflow_root, **values)
    )


@app.exception_handler(StarletteHTTPException)
async def _to_login_or_message(request: Request, error: StarletteHTTPException) -> Response:
    """A page asked without a (valid) login goes to Airflow's login page; the API answers the status."""
    base, airflow_root = _roots(request)
    is_page = request.method == "GET" and not request.url.path.startswith((f"{base}/api/", f"{base}/static/"))
    unauthenticated = error.status_code == 401 or (
        error.status_code == 403 and error.detail == "Invalid JWT token"
    )
    if is_page and unauthenticated:
        here = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        login = get_auth_manager().get_url_login(next_url=here)
        return RedirectResponse(f"{airflow_root}{login}", status_code=303)
    return await http_exception_handler(request, error)


@app.get("/static/plotly.min.js", dependencies=[CanSeePlugins])
def plotly_js() -> FileResponse:
    """The charting library, from the installed ``plotly`` package (no CDN)."""
    return FileResponse(PLOTLY_JS, media_type="text/javascript", headers={"cache-control": "max-age=86400"})


@app.get("/", response_class=HTMLResponse, dependencies=[CanSeePlugins])
def index(request: Request, user: GetUserDep) -> HTMLResponse:
    """The workloads the user may read, each with its latest run."""
    store = get_store()
    workloads = [
        {"name": name, "description": load_workload(name).description, "latest": store.recent_runs(name, 1)}
        for name in bundled_workload_names()
        if _may_read(user, name)
    ]
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


def _run_of(dag_id: str, run_id: str) -> RunRecord:
    workload = _workload(dag_id)
    run = None
    if run_id.isdigit():
        try:
            run = get_store().get_run(int(run_id))
        except UnknownRunError:
            run = None
    # The permission checked is on dag_id: a run of another workload is not found here.
    if run is None or run.workload != workload:
        raise HTTPException(404, f"no run {run_id!r} of {dag_id}; its run history lists the runs")
    return run


def _counts(run: RunRecord) -> dict[str, Any]:
    """Where the run's records are now, from the store: re-runs move records from quarantine to published."""
    store = get_store()
    accounting = store.accounting(run.id)
    by_class = store.quarantine_counts(run.id)
    # Every re-run was paid, an undone or failed one too; the report's cost is the night's alone.
    reruns = store.reruns(run.id)
    return {
        "inputs": accounting.inputs,
        "published": accounting.published,
        "quarantined": sum(by_class.values()),
        "quarantined_by_class": by_class,
        "reruns": len(reruns),
        "rerun_cost_usd": round(sum(r.cost_usd for r in reruns), 6),
    }


@app.get("/workloads/{dag_id}/runs/{run_id}", response_class=HTMLResponse, dependencies=[CanReadRuns])
def run_page(dag_id: str, run_id: str, request: Request) -> HTMLResponse:
    """One run: its counts now, its report, the quarantined records (each with a Re-run button), the re-runs."""
    run = _run_of(dag_id, run_id)
    store = get_store()
    return _page(
        "run.html",
        request,
        dag_id=dag_id,
        run=run,
        report=report_of(run),
        counts=_counts(run),
        quarantine=store.quarantine_rows(run.id),
        reruns=store.reruns(run.id),
    )


@app.get("/workloads/{dag_id}/dates/{run_date}", dependencies=[CanReadRuns])
def run_of_date(dag_id: str, run_date: str, request: Request) -> RedirectResponse:
    """The run page of a date (the date Airflow shows as the run's ``ds``)."""
    workload = _workload(dag_id)
    try:
        day = date.fromisoformat(run_date)
    except ValueError:
        raise HTTPException(404, f"{run_date!r} is not a date; write it YYYY-MM-DD") from None
    run = get_store().run_of_date(workload, day)
    if run is None:
        raise HTTPException(404, f"{workload} has no run for {day}; its run history lists the runs")
    base, _ = _roots(request)
    return RedirectResponse(f"{base}/workloads/{workload}/runs/{run.id}", status_code=303)


@app.get("/api/workloads/{dag_id}/runs/{run_id}/counts", dependencies=[CanReadRuns])
def run_counts(dag_id: str, run_id: str) -> dict[str, Any]:
    """The run's counts now (the run page refreshes them after a re-run)."""
    return _counts(_run_of(dag_id, run_id))


@app.post("/api/workloads/{dag_id}/rerun", dependencies=[CanTriggerRuns])
async def rerun(dag_id: str, body: RerunBody, user: GetUserDep) -> RerunResult:
    """Re-run one record synchronously and return its validated output (published as ``rerun``)."""
    workload = _workload(dag_id)
    settings = rerun_settings()
    username = user.get_name()
    request = RerunRequest(workload=workload, **body.model_dump())
    deadline = time.monotonic() + settings.timeout_seconds

    def call() -> RerunResult:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError("waited for a free re-run slot until the timeout")
        return run_rerun(
            request,
            requested_by=username,
            timeout_seconds=remaining,
            per_user_per_minute=settings.rate_limit_per_minute,
        )

    # A re-run still waiting for a slot when the timeout fires is cancelled there: it never pays.
    pending = asyncio.get_running_loop().run_in_executor(_rerun_pool(settings.max_concurrency), call)
    try:
        return await asyncio.wait_for(pending, timeout=settings.timeout_seconds)
    except TimeoutError as error:
        raise HTTPException(
            504,
            f"the re-run did not finish within {settings.timeout_seconds:g} s (re-runs are busy or the API is "
            "slow); if it was sent, the run page shows it when it ends",
        ) from error
    except RerunRateLimitedError as error:
        wait = str(math.ceil(error.retry_after_seconds))
        raise HTTPException(429, str(error), headers={"Retry-After": wait}) from error
    except UnknownRerunTargetError as error:
        raise HTTPException(404, redact(error)) from error
    except RerunError as error:
        raise HTTPException(422, redact(error)) from error
    except InvalidAnswerError as error:
        raise HTTPException(502, f"the model's answer is not a valid output: {redact(error)}") from error
    except UpstreamError as error:
        raise HTTPException(502, redact(error)) from error
    except MergeError as error:
        # The workload's merge rule failed on valid chunk answers: the server's code, not the record.
        raise HTTPException(500, redact(error)) from error


@app.post("/api/workloads/{dag_id}/runs/{run_id}/undo", dependencies=[CanTriggerRuns])
def undo_rerun(dag_id: str, run_id: str, body: UndoBody, user: GetUserDep) -> dict[str, Any]:
    """Put back what a re-run of this run replaced (the earlier output, or its quarantine row)."""
    run = _run_of(dag_id, run_id)
    store = get_store()
    known = store.get_rerun(body.rerun_id)
    if known is None or known.run_id != run.id:
        raise HTTPException(404, f"no re-run {body.rerun_id} of run {run.id} of {dag_id}")
    try:
        undone = store.undo_rerun(body.rerun_id, user.get_name())
    except RerunConflictError as error:
        raise HTTPException(409, str(error)) from error
    return {"rerun_id": undone.id, "status": undone.status, "counts": _counts(run)}
