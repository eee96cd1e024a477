"""The users' day on a real deployment (scheduler, dag-processor, triggerer, api-server as
processes), with no conf anywhere: the scheduler's own night, a backfill from the REST API, a night
whose input lands late and one whose input never lands.

One deployment serves every case, in order (module scope), to keep the suite's time modest. Its DAG
is the nightly loan review built by the project's factory from a copy of the bundled spec whose
``input.uri`` points into this test's folder and whose ``input.wait_for`` is a minute.
"""

from __future__ import annotations

import textwrap
import time
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest
import yaml

from claude_batch.strategy.spec import load_workload
from claude_batch.workloads import BUNDLED_WORKLOADS_DIR
from claude_demo.loans import write_loan_files
from claude_emulator.testing import running_emulator
from tests.conftest import fresh_postgres_database
from tests.system.deployment import AirflowDeployment, wait_for

pytestmark = [pytest.mark.system, pytest.mark.postgres, pytest.mark.timeout(900)]

WORKLOAD = "loan_disclosure_review"
SPEC_NAME = "users_day_loans"
RECORDS = 20
WAIT_FOR = timedelta(seconds=60)
RUN_TIMEOUT = 300


class UsersDay:
    def __init__(self, deployment: AirflowDeployment, inputs: Path) -> None:
        self.deployment = deployment
        self.inputs = inputs

    def input_of(self, run_date: date) -> Path:
        return self.inputs / f"{run_date.isoformat()}.jsonl"

    def runs(self, run_type: str) -> list[dict]:
        return self.deployment.api(
            "GET", f"/dags/{WORKLOAD}/dagRuns", params={"run_type": run_type, "limit": 100}
        )["dag_runs"]

    def wait_for_runs(self, run_type: str, count: int, timeout: float = 120) -> list[dict]:
        def created() -> list[dict] | None:
            runs = self.runs(run_type)
            return runs if len(runs) >= count else None

        return wait_for(f"{count} {run_type} run(s)", created, timeout, interval=2)

    def backfill(self, first: date, last: date, max_active_runs: int) -> None:
        """Backfill the nights of ``first`` to ``last`` as the UI's dialog does (it sends no conf), once
        the previous backfill is closed (the API allows one at a time per DAG)."""

        def none_open() -> bool:
            backfills = self.deployment.api("GET", "/backfills", params={"dag_id": WORKLOAD})["backfills"]
            return all(b["completed_at"] for b in backfills)

        wait_for("the previous backfill to be closed", none_open, 120, interval=2)
        self.deployment.api(
            "POST",
            "/backfills",
            json={
                "dag_id": WORKLOAD,
                "from_date": f"{first.isoformat()}T00:00:00Z",
                "to_date": f"{last.isoformat()}T23:59:59Z",
                "dag_run_conf": None,
                "max_active_runs": max_active_runs,
            },
        )

    def route_of(self, run_id: str) -> dict:
        return next(ti for ti in self.deployment.task_instances(WORKLOAD, run_id) if ti["task_id"] == "route")


@pytest.fixture(scope="module")
def day(tmp_path_factory: pytest.TempPathFactory) -> Iterator[UsersDay]:
    root = tmp_path_factory.mktemp("users-day")
    inputs = root / "inputs"
    inputs.mkdir()
    specs = root / "specs"
    specs.mkdir()
    (specs / "prompts").symlink_to(BUNDLED_WORKLOADS_DIR / "prompts")
    spec = load_workload(WORKLOAD)
    spec = spec.model_copy(
        update={
            "input": spec.input.model_copy(update={"uri": f"{inputs}/{{ds}}.jsonl", "wait_for": WAIT_FOR})
        }
    )
    # Specs are loaded by name from the bundled folder or $CLAUDE_BATCH_SPECS_DIR; the DAG id stays.
    (specs / f"{SPEC_NAME}.yaml").write_text(yaml.safe_dump(spec.model_dump(mode="json")))
    dags = root / "dags"
    dags.mkdir()
    (dags / "users_day.py").write_text(
        textwrap.dedent(
            f"""\
            # The airflow dag of the users' day test: the project's factory, a spec of this test.
            from claude_batch.dag_factory import build_workload_dag
            from claude_batch.strategy.spec import load_workload

            {WORKLOAD} = build_workload_dag(load_workload("{SPEC_NAME}"), spec_source="{SPEC_NAME}", poll_interval=2)
            """
        )
    )
    # The metadata DB is PostgreSQL, as in a deployment: on SQLite, Airflow's backfill endpoint can
    # meet the scheduler's write lock (503 "locked"), and the scheduler then died on the half-made runs
    # (StaleDataError), an Airflow limit of SQLite, not the project's. make airflow's SQLite night is
    # tests/system/test_make_commands.py's.
    with (
        fresh_postgres_database() as metadata_url,
        running_emulator(state=root / "emulator.db", processing_seconds=2) as emulator,
    ):
        deployment = AirflowDeployment(
            root / "airflow",
            emulator.base_url,
            metadata_url=metadata_url,
            # The scheduler creates the nights itself here, as in production.
            extra_env={
                "AIRFLOW__CORE__DAGS_FOLDER": str(dags),
                "AIRFLOW__SCHEDULER__USE_JOB_SCHEDULE": "True",
                "CLAUDE_BATCH_SPECS_DIR": str(specs),
            },
        )
        try:
            deployment.initialize()
            for component in ("api-server", "scheduler", "dag-processor", "triggerer"):
                deployment.start(component, component)
            deployment.wait_until_serving()
            deployment.wait_for_dag(WORKLOAD)
            yield UsersDay(deployment, inputs)
        finally:
            print(deployment.log_tails())
            deployment.stop_all()


def _latest_night() -> datetime:
    """The logical date of the latest scheduled night (01:00 New York), the one unpausing runs."""
    from airflow.timetables.trigger import CronTriggerTimetable

    spec = load_workload(WORKLOAD)
    timetable = CronTriggerTimetable(spec.schedule, timezone=spec.deadline.timezone)
    return timetable._align_to_prev(datetime.now(UTC))


def test_unpausing_runs_the_latest_night_with_no_conf(day: UsersDay) -> None:
    latest = _latest_night()
    write_loan_files(day.input_of(latest.astimezone(UTC).date()), RECORDS)

    day.deployment.api("PATCH", f"/dags/{WORKLOAD}", json={"is_paused": False})

    (run,) = day.wait_for_runs("scheduled", 1)
    assert datetime.fromisoformat(run["logical_date"]) == latest
    assert run["conf"] in ({}, None)
    assert day.deployment.wait_for_run(WORKLOAD, run["dag_run_id"], RUN_TIMEOUT) == "success"


def test_a_backfill_of_three_dates_with_no_conf_publishes_each(day: UsersDay) -> None:
    latest = _latest_night().astimezone(UTC).date()
    dates = [latest - timedelta(days=n) for n in (3, 2, 1)]
    for run_date in dates:
        write_loan_files(day.input_of(run_date), RECORDS)

    day.backfill(dates[0], dates[-1], max_active_runs=3)

    runs = day.wait_for_runs("backfill", 3)
    assert sorted(datetime.fromisoformat(r["logical_date"]).date() for r in runs) == dates
    for run in runs:
        assert day.deployment.wait_for_run(WORKLOAD, run["dag_run_id"], RUN_TIMEOUT) == "success", run


def test_a_late_input_is_waited_for_and_a_missing_one_fails_on_the_plugin_page(day: UsersDay) -> None:
    latest = _latest_night().astimezone(UTC).date()
    never, late = latest - timedelta(days=6), latest - timedelta(days=5)
    day.backfill(never, late, max_active_runs=2)
    runs = {
        datetime.fromisoformat(r["logical_date"]).date(): r["dag_run_id"]
        for r in day.wait_for_runs("backfill", 5)
        if datetime.fromisoformat(r["logical_date"]).date() in (never, late)
    }
    assert set(runs) == {never, late}

    def both_routes_deferred() -> bool:
        return all(day.route_of(run_id)["state"] == "deferred" for run_id in runs.values())

    wait_for("both nights' route to wait deferred for their input", both_routes_deferred, 120, interval=1)
    time.sleep(20)  # the input is 20 s late: the scenario itself, not a wait for an event
    write_loan_files(day.input_of(late), RECORDS)

    assert day.deployment.wait_for_run(WORKLOAD, runs[late], RUN_TIMEOUT) == "success"
    assert day.deployment.wait_for_run(WORKLOAD, runs[never], RUN_TIMEOUT) == "failed"
    assert day.route_of(runs[never])["state"] == "failed"

    page = day.deployment.page(f"/claude-batch/workloads/{WORKLOAD}")
    expected = (
        f"failed: route: The input of {WORKLOAD} for {never.isoformat()} never landed: "
        f"file://{day.input_of(never)} did not exist"
    )
    assert expected in page


def test_the_trigger_form_submitted_as_it_is_starts_a_run(day: UsersDay, tmp_path: Path) -> None:
    """In headless Chromium, the way a person does it: log in, open the DAG, press Trigger and submit
    the form without typing anything (input_uri, deadline and sample_size left empty)."""
    from tests.airflow.browser import chromium_page

    today = datetime.now(UTC).date()  # a manual run's logical date is now
    write_loan_files(day.input_of(today), RECORDS)
    before = {r["dag_run_id"] for r in day.runs("manual")}
    api = day.deployment.api_url
    token = day.deployment.login()
    trigger_buttons = '[...document.querySelectorAll("button")].filter(b => b.innerText.trim() === "Trigger")'

    with chromium_page(f"{api}/api/v2/monitor/health", tmp_path / "chromium") as page:
        # What the login page leaves behind: the UI's token cookie.
        page.evaluate(f"document.cookie = '_token={token}; path=/'")
        page.evaluate(f"location.href = '{api}/dags/{WORKLOAD}'")
        page.wait_for(f"{trigger_buttons}.length > 0", 60)
        page.evaluate(f"{trigger_buttons}[0].click()")
        fields = "['input_uri', 'deadline', 'sample_size'].map(n => document.querySelector('[name=element_' + n + ']'))"
        try:
            page.wait_for(f"{fields}.every(f => f !== null)", 30)
        except TimeoutError as error:
            shown = page.evaluate("[...document.querySelectorAll('[name^=element_]')].map(e => e.name)")
            raise AssertionError(f"the form shows {shown}") from error
        assert page.evaluate(f"{fields}.map(f => f.value)") == ["", "", ""]
        page.evaluate(
            '[...document.querySelectorAll("[role=dialog] button")]'
            '.filter(b => b.innerText.trim() === "Trigger").pop().click()'
        )
        (run,) = [
            r for r in day.wait_for_runs("manual", len(before) + 1, 60) if r["dag_run_id"] not in before
        ]

    assert run["conf"] == {"input_uri": None, "deadline": None, "sample_size": None, "mode": "full"}
    assert day.deployment.wait_for_run(WORKLOAD, run["dag_run_id"], RUN_TIMEOUT) == "success"
