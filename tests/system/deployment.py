"""A real Airflow deployment as plain processes on this machine, for the system tests.

Each component (``airflow api-server``, ``scheduler``, ``dag-processor``, ``triggerer``, ``celery
worker``) is its own process group with its own log file under the deployment's folder, so a test
can SIGKILL one the way a crash would and :meth:`AirflowDeployment.stop_all` can always clean up by
pid. Everything listens on loopback ports picked free at start, so suites may run side by side.

The DAGs are driven only through the public REST API (``/api/v2``) with a JWT from ``/auth/token``,
logged in as the simple auth manager's ``admin`` with the password it generated: the same path a
production client takes, rather than a switch that makes every request an admin.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import httpx
from cryptography.fernet import Fernet

from claude_batch.dag_factory import SUBMIT_POOL
from claude_demo.run import airflow_environment

AIRFLOW = str(Path(sys.executable).with_name("airflow"))
ADMIN = "admin"
T = TypeVar("T")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for(what: str, check: Callable[[], T | None], timeout: float, interval: float = 0.5) -> T:
    """Call ``check`` until it returns something truthy; fail with ``what`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if result := check():
            return result
        time.sleep(interval)
    raise TimeoutError(f"timed out after {timeout:g} s waiting for {what}")


@dataclass
class Component:
    name: str
    command: list[str]
    log_path: Path
    process: subprocess.Popen | None = None
    killed: bool = False

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    @property
    def crashed(self) -> bool:
        """Exited without the test killing it."""
        return not self.killed and self.process is not None and self.process.poll() is not None


@dataclass
class AirflowDeployment:
    """One Airflow installation: a home folder, a metadata DB, an executor and its components.

    :param home: AIRFLOW_HOME, also where the component logs go.
    :param emulator_url: base URL of the Claude emulator the ``anthropic_default`` connection uses.
    :param metadata_url: SQLAlchemy URL of the metadata DB (SQLite file by default).
    :param executor: ``LocalExecutor`` or ``CeleryExecutor``.
    :param extra_env: more environment (Celery broker, timeouts...), applied last.
    :param address: where the api-server listens (a cluster network's address for hosts of their own).
    """

    home: Path
    emulator_url: str
    metadata_url: str = ""
    executor: str = "LocalExecutor"
    extra_env: dict[str, str] = field(default_factory=dict)
    address: str = "127.0.0.1"
    components: dict[str, Component] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.home.mkdir(parents=True, exist_ok=True)
        self.metadata_url = self.metadata_url or f"sqlite:///{self.home / 'airflow.db'}"
        self.api_port = free_port()
        self.api_url = f"http://{self.address}:{self.api_port}"
        env = airflow_environment(self.home, self.emulator_url)
        # The pytest process runs Airflow in unit-test mode; the components must run as in production.
        env.pop("AIRFLOW__CORE__UNIT_TEST_MODE", None)
        env.update(
            {
                "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": self.metadata_url,
                "AIRFLOW__CORE__EXECUTOR": self.executor,
                "AIRFLOW__CORE__PARALLELISM": "8",
                "AIRFLOW__CORE__FERNET_KEY": Fernet.generate_key().decode(),
                "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": f"{ADMIN}:admin",
                # Every component signs or checks the task tokens of the execution API with this.
                "AIRFLOW__API_AUTH__JWT_SECRET": os.urandom(16).hex(),
                "AIRFLOW__API__HOST": self.address,
                "AIRFLOW__API__PORT": str(self.api_port),
                "AIRFLOW__API__BASE_URL": self.api_url,
                "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{self.api_url}/execution/",
                "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(free_port()),
                "AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT": str(free_port()),
                # Runs are triggered by the test only: the nightly schedule would start its own.
                "AIRFLOW__SCHEDULER__USE_JOB_SCHEDULE": "False",
                # A killed triggerer's triggers move to a live one after this many seconds.
                "AIRFLOW__TRIGGERER__TRIGGERER_HEALTH_CHECK_THRESHOLD": "15",
                "CLAUDE_BATCH_POLL_INTERVAL": "2",
                **self.extra_env,
            }
        )
        self.env = env
        self._token = ""

    # Processes

    def airflow(self, *args: str) -> None:
        """Run an ``airflow`` CLI command to completion (migrate, pools...)."""
        result = subprocess.run(
            [AIRFLOW, *args], env=self.env, capture_output=True, text=True, timeout=300, check=False
        )
        if result.returncode != 0:
            raise RuntimeError(
                f"airflow {' '.join(args)} failed:\n{result.stdout[-3000:]}{result.stderr[-3000:]}"
            )

    def initialize(self) -> None:
        """What an init job does before the components start: migrate, create the submit pool."""
        self.airflow("db", "migrate")
        # One slot: batch creates are serialized, so orphan adoption can never take another shard's batch.
        self.airflow("pools", "set", SUBMIT_POOL, "1", "Serializes Message Batch creates")

    def start(
        self, name: str, *args: str, env: dict[str, str] | None = None, on: list[str] | None = None
    ) -> Component:
        """Start ``airflow <args>`` as component ``name`` in its own process group.

        :param env: environment of this component only, over the deployment's (a port of its own...).
        :param on: the command prefix that runs it elsewhere (``Host.command``: another host).
        """
        component = self.components.get(name) or Component(
            name, [*(on or []), AIRFLOW, *args], self.home / "logs" / f"{name}.log"
        )
        component.log_path.parent.mkdir(parents=True, exist_ok=True)
        component.killed = False
        with component.log_path.open("ab") as log:
            component.process = subprocess.Popen(
                component.command,
                env={**self.env, **(env or {})},
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.components[name] = component
        return component

    def kill(self, name: str) -> None:
        """SIGKILL a component and every process it started (task runners too), as a crash would."""
        component = self.components[name]
        component.killed = True
        if component.running:
            os.killpg(component.pid, signal.SIGKILL)
            component.process.wait(timeout=30)

    def stop_all(self) -> None:
        """SIGTERM each component's process group, then SIGKILL what is left after a grace period."""
        for component in self.components.values():
            if component.running:
                os.killpg(component.pid, signal.SIGTERM)
        deadline = time.monotonic() + 20
        for component in self.components.values():
            if component.process is None:
                continue
            with contextlib.suppress(subprocess.TimeoutExpired):
                component.process.wait(timeout=max(0.1, deadline - time.monotonic()))
            # The leader may be gone while children (task runners, gunicorn workers) still live.
            with contextlib.suppress(ProcessLookupError):
                os.killpg(component.pid, signal.SIGKILL)
            component.process.wait(timeout=30)

    def log_tails(self, lines: int = 40) -> str:
        parts = []
        for component in self.components.values():
            text = component.log_path.read_text(errors="replace").splitlines()[-lines:]
            parts.append(f"----- {component.name} ({component.log_path}) -----\n" + "\n".join(text))
        return "\n".join(parts)

    # REST API

    def login(self) -> str:
        passwords = self.home / "simple_auth_manager_passwords.json.generated"
        password = json.loads(passwords.read_text())[ADMIN]
        response = httpx.post(
            f"{self.api_url}/auth/token", json={"username": ADMIN, "password": password}, timeout=30
        )
        response.raise_for_status()
        return response.json()["access_token"]

    def api(self, method: str, path: str, **kwargs: Any) -> Any:
        """Call ``/api/v2<path>`` as the admin user; returns the decoded JSON body."""
        # Every poll goes through here: a component that died on its own fails the test at once.
        if crashed := [c.name for c in self.components.values() if c.crashed]:
            raise RuntimeError(f"Airflow components exited: {crashed}\n{self.log_tails()}")
        self._token = self._token or self.login()
        response = httpx.request(
            method,
            f"{self.api_url}/api/v2{path}",
            headers={"Authorization": f"Bearer {self._token}"},
            timeout=30,
            **kwargs,
        )
        response.raise_for_status()
        return response.json()

    def page(self, path: str) -> str:
        """GET a page of the api-server (a plugin's page, say) as the admin user; returns its HTML."""
        self._token = self._token or self.login()
        response = httpx.get(
            f"{self.api_url}{path}", headers={"Authorization": f"Bearer {self._token}"}, timeout=30
        )
        response.raise_for_status()
        return response.text

    def wait_until_serving(self, timeout: float = 120) -> None:
        def healthy() -> bool:
            if not self.components["api-server"].running:
                raise RuntimeError("the api-server exited:\n" + self.log_tails())
            try:
                return httpx.get(f"{self.api_url}/api/v2/monitor/health", timeout=5).status_code == 200
            except httpx.HTTPError:
                return False

        wait_for("the api-server", healthy, timeout)

    def wait_for_dag(self, dag_id: str, timeout: float = 180) -> dict:
        """Wait until the dag-processor has parsed ``dag_id``; fail on any import error."""

        def parsed() -> dict | None:
            errors = self.api("GET", "/importErrors")
            if errors["total_entries"]:
                raise AssertionError(f"DAG import errors: {errors['import_errors']}")
            dags = self.api("GET", "/dags", params={"dag_id_pattern": dag_id})["dags"]
            return next((dag for dag in dags if dag["dag_id"] == dag_id), None)

        return wait_for(f"DAG {dag_id} to be parsed", parsed, timeout, interval=2)

    def trigger(self, dag_id: str, run_id: str, logical_date: str, conf: dict) -> dict:
        self.api("PATCH", f"/dags/{dag_id}", json={"is_paused": False})
        return self.api(
            "POST",
            f"/dags/{dag_id}/dagRuns",
            json={"dag_run_id": run_id, "logical_date": logical_date, "conf": conf},
        )

    def dag_run(self, dag_id: str, run_id: str) -> dict:
        return self.api("GET", f"/dags/{dag_id}/dagRuns/{run_id}")

    def task_instances(self, dag_id: str, run_id: str) -> list[dict]:
        return self.api("GET", f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances", params={"limit": 1000})[
            "task_instances"
        ]

    def wait_for_run(self, dag_id: str, run_id: str, timeout: float) -> str:
        """Wait until the DAG run is finished; returns its final state."""

        def finished() -> str | None:
            state = self.dag_run(dag_id, run_id)["state"]
            return state if state in {"success", "failed"} else None

        return wait_for(f"DAG run {run_id} to finish", finished, timeout, interval=2)
