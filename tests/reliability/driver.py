"""Run one workload DAG with ``dag.test()`` in this process: the child process of the crash and secrets
suites, so that a SIGKILL (``claude_batch.faultpoints``) ends a real process and its logs are files.

    python -m tests.reliability.driver --input loans.jsonl --logical-date 2026-06-07T05:00:00+00:00

The environment (AIRFLOW_HOME, the metadata DB, the connections, CLAUDE_BATCH_DATA_URI and maybe
CLAUDE_BATCH_CRASH_AT) comes from the parent; ``environment()`` builds it. Prints the run's final
state as the last line (``dag_run_state=success``).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
STATE_PREFIX = "dag_run_state="


def environment(home: Path, *, emulator_url: str, api_key: str, store_url: str, data_uri: str) -> dict:
    """The child's environment: its own Airflow home and metadata DB, connections to the emulator."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "CLAUDE_BATCH_CRASH"))}
    return {
        **env,
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__DAGS_FOLDER": str(REPO / "dags"),
        "AIRFLOW__CORE__PLUGINS_FOLDER": str(REPO / "plugins"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home / 'airflow.db'}",
        "AIRFLOW__LOGGING__LOGGING_LEVEL": "INFO",
        "AIRFLOW_CONN_ANTHROPIC_DEFAULT": json.dumps(
            {"conn_type": "anthropic", "password": api_key, "host": emulator_url}
        ),
        "AIRFLOW_CONN_CLAUDE_BATCH_STORE": json.dumps({"conn_type": "generic", "extra": {"url": store_url}}),
        "CLAUDE_BATCH_DATA_URI": data_uri,
        "PYTHONPATH": str(REPO),
    }


def migrated_home(template: Path, home: Path) -> Path:
    """A new Airflow home whose metadata DB is a copy of ``template`` (migrating once is slow)."""
    home.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(template, home / "airflow.db")
    return home


def migrate(home: Path) -> Path:
    """Migrate a fresh metadata DB in ``home`` (the template the other homes copy)."""
    env = environment(
        home, emulator_url="http://127.0.0.1:9", api_key="none", store_url="sqlite://", data_uri=""
    )
    subprocess.run(
        [sys.executable, "-c", "from airflow.utils import db; db.resetdb(skip_init=False)"],
        env=env,
        check=True,
        capture_output=True,
    )
    return home / "airflow.db"


def run(
    env: dict, input_path: Path, *, logical_date: datetime, timeout: float = 300, **options
) -> tuple[int, str]:
    """Run the driver as a child; returns its exit status (-9 when a crash point killed it) and output."""
    command = [sys.executable, "-m", "tests.reliability.driver", "--input", str(input_path)]
    command += ["--logical-date", logical_date.isoformat()]
    for name, value in options.items():
        command += [f"--{name.replace('_', '-')}", str(value)]
    done = subprocess.run(
        command,
        env=env,
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        timeout=timeout,
        text=True,
    )
    return done.returncode, done.stdout


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--workload", default="loan_disclosure_review")
    parser.add_argument("--input", required=True)
    parser.add_argument("--logical-date", type=datetime.fromisoformat, required=True)
    parser.add_argument("--sample-size", type=int, default=0)
    args = parser.parse_args()

    from claude_batch.dag_factory import build_workload_dag
    from claude_batch.strategy.spec import load_workload

    spec = load_workload(args.workload)
    dag = build_workload_dag(spec, poll_interval=0.2)
    dag_run = dag.test(
        logical_date=args.logical_date,
        run_conf={
            "input_uri": args.input,
            "deadline": (datetime.now(UTC) + timedelta(days=1)).isoformat(),
            "sample_size": args.sample_size,
        },
    )
    print(f"{STATE_PREFIX}{dag_run.state}", flush=True)
    return 0 if dag_run.state == "success" else 1


if __name__ == "__main__":
    sys.exit(main())
