"""``make airflow``: the whole project in ``airflow standalone`` on this machine, against the emulator.

Starts the bundled Claude emulator (with the demo's few percent of every fault), migrates a SQLite
Airflow home under ``.airflow/``, creates the ``claude_batch_submit`` pool, writes a synthetic loan
file to try the DAGs with, then runs ``airflow standalone`` (api-server, scheduler, dag-processor,
triggerer; LocalExecutor) with the project's dags/ and plugins/ and the ``anthropic_default``
connection pointed at the emulator. Prints the UI address and the login; Ctrl-C stops everything.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx

from claude_batch.dag_factory import SUBMIT_POOL
from claude_demo.loans import write_loan_files
from claude_demo.run import REPO, airflow_environment
from claude_emulator.testing import EmulatorHandle

HOME = REPO / ".airflow"
AIRFLOW = str(Path(sys.executable).with_name("airflow"))
READY_TIMEOUT_SECONDS = 180
STOP_GRACE_SECONDS = 40


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
        "--records", type=int, default=300, help="loan files in the sample input (default 300)"
    )
    args = parser.parse_args()
    # Ctrl-C (even when started from a shell that ignores SIGINT) and SIGTERM both stop cleanly.
    signal.signal(signal.SIGINT, _interrupt)
    signal.signal(signal.SIGTERM, _interrupt)

    HOME.mkdir(parents=True, exist_ok=True)
    loans = write_loan_files(HOME / "inputs" / "loans.jsonl", args.records)
    emulator = start_emulator(HOME)
    url = f"http://localhost:{args.port}"
    env = {
        **airflow_environment(HOME, emulator.base_url),
        # standalone starts its components as `airflow ...` from PATH: this environment's.
        "PATH": f"{Path(AIRFLOW).parent}{os.pathsep}{os.environ.get('PATH', '')}",
        "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{HOME / 'airflow.db'}",
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
        log_path = HOME / "standalone.log"
        with log_path.open("ab") as log:
            # Its own process group: Ctrl-C reaches this script only, which then stops the group.
            airflow = subprocess.Popen(
                [AIRFLOW, "standalone"], env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )
        print(f"airflow: starting (logs in {log_path}) ...", flush=True)
        wait_until_healthy(url, airflow)
        passwords = json.loads((HOME / "simple_auth_manager_passwords.json.generated").read_text())
        print(f"\nAirflow UI:   {url}")
        for user, password in passwords.items():
            print(f"Login:        {user} / {password}")
        print(f"Emulator:     {emulator.base_url} (connection anthropic_default; log {emulator.log_path})")
        print(f"Pool:         {SUBMIT_POOL} (1 slot)")
        print(f"Try a run:    trigger loan_disclosure_review with input_uri = {loans}")
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
