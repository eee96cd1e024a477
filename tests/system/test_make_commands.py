"""The README's two commands for a fresh machine besides ``make test``, run as a user runs them.

``make demo`` runs the main job and prints its report; ``make airflow`` serves the whole project in
``airflow standalone`` until Ctrl-C. Neither ran in any test before: ``make demo`` broke once on a
busy machine (the DAG file's import outlasted Airflow's 30 s parse timeout) with every suite green.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.system.deployment import free_port, wait_for

pytestmark = pytest.mark.system

REPO = Path(__file__).resolve().parents[2]
WORKLOAD = "loan_disclosure_review"
DEMO_RECORDS = 120
RUN_TIMEOUT = 900


def user_environment() -> dict[str, str]:
    """This process's environment without what the test harness set for itself (tests/conftest.py
    points AIRFLOW_HOME at a scratch home and turns on Airflow's unit-test mode, which unpauses new
    DAGs; `make system-test` makes a nested make print "Entering directory" lines): a user's shell
    has none of it."""
    harness = ("AIRFLOW", "CLAUDE_BATCH", "MAKE", "MFLAGS")
    return {k: v for k, v in os.environ.items() if not k.startswith(harness)}


def test_make_demo_runs_the_nightly_job_and_accounts_for_every_record() -> None:
    result = subprocess.run(
        ["make", "demo", f"DEMO_ARGS=--records {DEMO_RECORDS}"],
        cwd=REPO,
        env=user_environment(),
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT,
    )
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    assert summary["accounted"] is True
    assert summary["dag_run_exit_code"] == 0
    assert summary["inputs"] == DEMO_RECORDS
    assert summary["published"] + summary["quarantined"] == DEMO_RECORDS
    assert summary["published"] > DEMO_RECORDS // 2
    assert summary["batches_created"] >= 1
    # The batch discount shows in the report: the night cost less than the same calls made one by one.
    assert 0 < summary["cost_usd"] < summary["all_sync_cost_usd"]


class Standalone:
    """``make airflow`` in its own process group, its output kept as it comes."""

    def __init__(self, port: int, home: Path) -> None:
        self.port = port
        self.home = home
        self.url = f"http://localhost:{port}"
        self.process = subprocess.Popen(
            ["make", "airflow", f"AIRFLOW_ARGS=--port {port} --records 40 --home {home}"],
            cwd=REPO,
            env=user_environment(),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.append(line.rstrip("\n"))

    def printed(self, prefix: str) -> str | None:
        if self.process.poll() is not None and not any(line.startswith(prefix) for line in self.lines):
            raise RuntimeError("make airflow exited:\n" + "\n".join(self.lines[-40:]))
        return next(
            (line.removeprefix(prefix).strip() for line in self.lines if line.startswith(prefix)), None
        )

    def interrupt(self) -> None:
        """Ctrl-C in the terminal: SIGINT to the foreground process group (make and the script)."""
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGINT)
        self.process.wait(timeout=120)
        self._reader.join(timeout=10)


@pytest.fixture
def standalone(tmp_path: Path) -> Iterator[Standalone]:
    running = Standalone(free_port(), tmp_path / "airflow")
    try:
        yield running
    finally:
        running.interrupt()
        print("\n".join(running.lines[-60:]))


def test_make_airflow_serves_the_project_runs_the_latest_night_and_stops_on_ctrl_c(
    standalone: Standalone,
) -> None:
    login = wait_for("make airflow to print the login", lambda: standalone.printed("Login:"), timeout=700)
    user, password = (part.strip() for part in login.split("/", 1))
    token = httpx.post(
        f"{standalone.url}/auth/token", json={"username": user, "password": password}, timeout=30
    ).json()["access_token"]
    headers = {"Authorization": f"Bearer {token}"}

    def api(method: str, path: str, **kwargs: object) -> dict:
        response = httpx.request(
            method, f"{standalone.url}/api/v2{path}", headers=headers, timeout=90, **kwargs
        )
        response.raise_for_status()
        return response.json()

    def parsed() -> bool:
        errors = api("GET", "/importErrors")
        assert errors["total_entries"] == 0, errors["import_errors"]
        return any(dag["dag_id"] == WORKLOAD for dag in api("GET", "/dags")["dags"])

    wait_for(f"{WORKLOAD} to be parsed", parsed, timeout=300, interval=2)

    # What the printed hint tells a user to do: unpause, and the latest night runs with nothing typed.
    api("PATCH", f"/dags/{WORKLOAD}", json={"is_paused": False})

    def finished_run() -> dict | None:
        try:
            runs = api("GET", f"/dags/{WORKLOAD}/dagRuns", params={"limit": 10})["dag_runs"]
        except httpx.TimeoutException:
            return None  # standalone's one api-server, on SQLite, is slow to answer on a busy machine
        return next((run for run in runs if run["state"] in {"success", "failed"}), None)

    run = wait_for("the latest night to finish", finished_run, timeout=RUN_TIMEOUT, interval=3)
    assert run["state"] == "success", run
    assert run["run_type"] == "scheduled"

    page = httpx.get(f"{standalone.url}/claude-batch/", headers=headers, timeout=30, follow_redirects=True)
    assert page.status_code == 200
    assert WORKLOAD in page.text

    standalone.interrupt()
    assert any("stopping Airflow and the emulator" in line for line in standalone.lines), standalone.lines[
        -20:
    ]
    # Everything it started is gone: the UI's port is free again and no emulator holds its state file.
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{standalone.url}/api/v2/monitor/health", timeout=5)
    leftovers = subprocess.run(
        ["pgrep", "-f", str(standalone.home / "emulator-state.db")], capture_output=True, text=True
    )
    assert leftovers.stdout == "", leftovers.stdout
