"""``make airflow``: the whole project in ``airflow standalone`` on this machine, against the emulator.

Starts the bundled Claude emulator (with the demo's few percent of every fault), migrates a SQLite
Airflow home under ``.airflow/``, creates the ``claude_batch_submit`` pool, writes synthetic inputs
where each bundled spec's ``input.uri`` expects them for its last 7 run dates (and today's), then runs
``airflow standalone`` (api-server, scheduler, dag-processor, triggerer; LocalExecutor) from the
repository's folder with the project's dags/ and plugins/, the ``anthropic_default`` connection
pointed at the emulator and the ``airflow_api`` connection the run notes are written through.
Prints the UI address and the login; Ctrl-C stops everything.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, date, datetime
from pathlib import Path

import httpx
from croniter import croniter

from claude_batch.dag_factory import SUBMIT_POOL
from claude_batch.strategy.spec import WorkloadSpec, bundled_workload_names, load_workload, run_date_of
from claude_demo.documents import documents
from claude_demo.loans import loan_files
from claude_demo.run import REPO, airflow_environment
from claude_emulator.testing import EmulatorHandle

HOME = REPO / ".airflow"
AIRFLOW = str(Path(sys.executable).with_name("airflow"))
# The api-server answers after its imports: under a minute on an idle machine, but seen at over 3 min
# on this 2-core machine under a load of 11. Waiting longer costs nothing when it is up sooner.
READY_TIMEOUT_SECONDS = 600
STOP_GRACE_SECONDS = 40


ADMIN = "admin"
RUN_DATES = 7
# Synthetic records of each bundled workload, by name.
DEMO_RECORDS = {"loan_disclosure_review": loan_files, "document_tagging": documents}


def recent_run_dates(spec: WorkloadSpec, now: datetime, count: int = RUN_DATES) -> list[date]:
    """The run dates (Airflow's ds) of the spec's last ``count`` scheduled nights, and today's (a run
    triggered now takes today's date), newest first."""
    nights = croniter(spec.schedule, now.astimezone(spec.deadline.zone))
    dates = [run_date_of(nights.get_prev(datetime)) for _ in range(count)]
    today = now.astimezone(UTC).date()
    return sorted({today, *dates}, reverse=True)


def write_demo_inputs(records: int, now: datetime) -> Iterator[Path]:
    """A synthetic file for each recent run date of each scheduled bundled workload, where its
    ``input.uri`` expects it (relative to the repository, the folder Airflow runs in here)."""
    for name in bundled_workload_names():
        spec = load_workload(name)
        if (
            spec.schedule is None
            or spec.input.uri is None
            or "://" in spec.input.uri
            or name not in DEMO_RECORDS
        ):
            continue
        for run_date in recent_run_dates(spec, now):
            path = REPO / spec.input.uri_for(run_date)
            path.parent.mkdir(parents=True, exist_ok=True)
            with path.open("w", encoding="utf-8") as out:
                for record in DEMO_RECORDS[name](records, seed=run_date.toordinal()):
                    out.write(json.dumps(record) + "\n")
            yield path


def admin_password(home: Path) -> str:
    """The UI login's password, written before the first start where the simple auth manager keeps
    it (it generates only the passwords missing there), so the note connection can use it too."""
    file = home / "simple_auth_manager_passwords.json.generated"
    passwords = json.loads(file.read_text()) if file.exists() else {}
    if ADMIN not in passwords:
        passwords[ADMIN] = secrets.token_urlsafe(12)
        file.write_text(json.dumps(passwords) + "\n")
    return passwords[ADMIN]


def start_emulator(home: Path) -> EmulatorHandle:
    """The emulator, logging to a file in ``home`` and keeping its batches across restarts."""
    arguments = ["--faults", str(REPO / "include" / "demo" / "faults.yaml")]
    # Batches take 30 s: long enough to watch the waits sit deferred in the triggerer.
    arguments += ["--processing-seconds", "30", "--seed", "2026"]
    emulator = EmulatorHandle(home, home / "emulator-state.db", arguments)
    emulator.start()
    return emulator


def wait_until_healthy(url: str, airflow: subprocess.Popen) -> None:
    deadline = time.monotonic() + READY_TIMEOUT_SECONDS
    while time.monotonic() < deadline:
        if airflow.poll() is not None:
            raise RuntimeError(f"airflow standalone exited with {airflow.returncode}")
        try:
            if httpx.get(f"{url}/api/v2/monitor/health", timeout=5).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(1)
    raise RuntimeError(f"Airflow did not answer on {url} within {READY_TIMEOUT_SECONDS} s")


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


def stop(airflow: subprocess.Popen) -> None:
    """Stop standalone and every component it started (its own process group): SIGTERM, then
    SIGKILL whatever is still there after a grace period."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(airflow.pid, signal.SIGTERM)
    deadline = time.monotonic() + STOP_GRACE_SECONDS
    while _group_alive(airflow.pid) and time.monotonic() < deadline:
        airflow.poll()  # reaps the leader, so the group empties once its components are gone
        time.sleep(0.5)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(airflow.pid, signal.SIGKILL)
    airflow.wait()


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--port", type=int, default=8080, help="port of the UI and REST API (default 8080)")
    parser.add_argument(
        "--records", type=int, default=300, help="records in each night's input (default 300)"
    )
    parser.add_argument(
        "--home", type=Path, default=HOME, help=f"the Airflow home, kept across starts (default {HOME})"
    )
    args = parser.parse_args()
    home = args.home.resolve()
    # Ctrl-C (even when started from a shell that ignores SIGINT) and SIGTERM both stop cleanly.
    signal.signal(signal.SIGINT, _interrupt)
    signal.signal(signal.SIGTERM, _interrupt)

    home.mkdir(parents=True, exist_ok=True)
    inputs = list(write_demo_inputs(args.records, datetime.now(UTC)))
    emulator = start_emulator(home)
    url = f"http://localhost:{args.port}"
    password = admin_password(home)
    env = {
        **airflow_environment(home, emulator.base_url),
        # publish writes each run's summary as its DAG run note through the REST API, as this user.
        "AIRFLOW_CONN_AIRFLOW_API": json.dumps(
            {"conn_type": "http", "host": url, "login": ADMIN, "password": password}
        ),
        # standalone starts its components as `airflow ...` from PATH: this environment's.
        "PATH": f"{Path(AIRFLOW).parent}{os.pathsep}{os.environ.get('PATH', '')}",
        "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home / 'airflow.db'}",
        "AIRFLOW__API__PORT": str(args.port),
        "AIRFLOW__API__BASE_URL": url,
        "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{url}/execution/",
        # The emulator's batches end in 30 s; the default 30 s first poll would double the wait.
        "CLAUDE_BATCH_POLL_INTERVAL": "5",
    }
    airflow: subprocess.Popen | None = None
    try:
        subprocess.run([AIRFLOW, "db", "migrate"], env=env, check=True, stdout=subprocess.DEVNULL)
        # One slot serializes batch creates, so orphan adoption can never adopt another shard's batch.
        subprocess.run(
            [AIRFLOW, "pools", "set", SUBMIT_POOL, "1", "Serializes Message Batch creates"],
            env=env,
            check=True,
            stdout=subprocess.DEVNULL,
        )
        log_path = home / "standalone.log"
        with log_path.open("ab") as log:
            # Its own process group: Ctrl-C reaches this script only, which then stops the group.
            # From the repository: the bundled specs' relative input.uri is read from the worker's folder.
            airflow = subprocess.Popen(
                [AIRFLOW, "standalone"],
                cwd=REPO,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        print(f"airflow: starting (logs in {log_path}) ...", flush=True)
        wait_until_healthy(url, airflow)
        print(f"\nAirflow UI:   {url}")
        print(f"Login:        {ADMIN} / {password}")
        print(f"Emulator:     {emulator.base_url} (connection anthropic_default; log {emulator.log_path})")
        print(f"Pool:         {SUBMIT_POOL} (1 slot)")
        print(
            f"Inputs:       {len(inputs)} files under {REPO / '.demo' / 'inputs'} (the last {RUN_DATES} run dates)"
        )
        print("Try a run:    unpause loan_disclosure_review (its latest night runs), trigger it with the")
        print("              form as it is, or backfill the last 3 dates; nothing to type")
        print("Ctrl-C stops Airflow and the emulator.", flush=True)
        airflow.wait()
        print(f"airflow standalone exited with {airflow.returncode}; see {log_path}")
        return airflow.returncode or 1
    except KeyboardInterrupt:
        print("\nstopping Airflow and the emulator ...", flush=True)
        return 0
    finally:
        if airflow is not None:
            stop(airflow)
        emulator.stop()


if __name__ == "__main__":
    sys.exit(main())
