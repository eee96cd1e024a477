"""``make demo``: the nightly loan review end to end on one machine, and its run report.

Starts the bundled Claude emulator (with a few percent of every failure kind injected), migrates an
embedded SQLite Airflow home under ``.demo/``, writes synthetic loan files for a date, runs the
``loan_disclosure_review`` DAG with ``airflow dags test`` and prints the run report. Exits non-zero
when any record is unaccounted for. The last line of output is the report as one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

from claude_demo.loans import write_loan_files

REPO = Path(__file__).resolve().parents[2]
DEMO_DIR = REPO / ".demo"
WORKLOAD = "loan_disclosure_review"
DEMO_API_KEY = "sk-ant-demo-emulator-key"


def airflow_environment(home: Path, emulator_url: str) -> dict[str, str]:
    """The environment of an embedded Airflow whose connections point at the emulator and the store."""
    return {
        **os.environ,
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__DAGS_FOLDER": str(REPO / "dags"),
        "AIRFLOW__CORE__PLUGINS_FOLDER": str(REPO / "plugins"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__LOGGING__LOGGING_LEVEL": "INFO",
        # Parsing the DAG file imports Airflow's SDK, some seconds of CPU (the anthropic SDK waits for
        # a task); on a machine busy with other work a parse once stretched past the default 30 s
        # (under a load of 12). A parse cut off mid-import leaves a half-imported module behind, and
        # every later import fails with a misleading AttributeError instead of a timeout. The
        # benchmarks use this environment too.
        "AIRFLOW__CORE__DAGBAG_IMPORT_TIMEOUT": "180",
        "AIRFLOW__DAG_PROCESSOR__DAG_FILE_PROCESSOR_TIMEOUT": "240",
        "AIRFLOW_CONN_ANTHROPIC_DEFAULT": json.dumps(
            {"conn_type": "anthropic", "password": DEMO_API_KEY, "host": emulator_url}
        ),
        "AIRFLOW_CONN_CLAUDE_BATCH_STORE": json.dumps(
            {"conn_type": "generic", "extra": {"url": f"sqlite:///{home / 'claude_batch_store.db'}"}}
        ),
        "CLAUDE_BATCH_DATA_URI": f"file://{home / 'claude_batch_data'}",
    }


def next_deadline(now: datetime) -> datetime:
    """Tomorrow 08:00 New York time: far enough for the batch route, as on a real night."""
    zone = ZoneInfo("America/New_York")
    return datetime.combine(now.astimezone(zone).date() + timedelta(days=1), time(8), tzinfo=zone)


def start_emulator(workdir: Path) -> tuple[subprocess.Popen, str]:
    command = [
        str(Path(sys.executable).with_name("claude-emulator")),
        "--port", "0",
        "--faults", str(REPO / "include" / "demo" / "faults.yaml"),
        "--state", str(workdir / "emulator-state.db"),
        "--processing-seconds", "3",
        "--seed", "2026",
    ]  # fmt: skip
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    assert process.stdout is not None
    for line in process.stdout:
        if line.startswith("claude-emulator listening on "):
            return process, line.split(" on ", 1)[1].strip()
    raise RuntimeError(f"the emulator did not start (exit {process.wait()})")


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--records", type=int, default=1000, help="loan files to generate (default 1000)")
    parser.add_argument("--date", type=date.fromisoformat, default=date(2026, 6, 7), help="run date")
    args = parser.parse_args()

    # Each demo is a fresh night. Kept from an earlier demo, the store would hold that night's ledger
    # (with another --records the run stops rightly: "the input changed since") and its old report
    # would be the one printed; the emulator would hold batches no ledger knows. `make airflow`'s
    # inputs, also under .demo/, are left alone.
    home = DEMO_DIR / "airflow_home"
    shutil.rmtree(home, ignore_errors=True)
    (DEMO_DIR / "emulator-state.db").unlink(missing_ok=True)
    home.mkdir(parents=True)
    input_path = DEMO_DIR / "inputs" / WORKLOAD / f"{args.date.isoformat()}.jsonl"
    write_loan_files(input_path, args.records)
    print(f"demo: {args.records} synthetic loan files in {input_path}", flush=True)

    emulator, url = start_emulator(DEMO_DIR)
    print(f"demo: Claude emulator on {url} (faults: include/demo/faults.yaml)", flush=True)
    try:
        env = airflow_environment(home, url)
        airflow = str(Path(sys.executable).with_name("airflow"))
        subprocess.run([airflow, "db", "migrate"], env=env, check=True, stdout=subprocess.DEVNULL)
        logical_date = datetime.combine(args.date, time(5), tzinfo=UTC)
        conf = {"input_uri": str(input_path), "deadline": next_deadline(datetime.now(UTC)).isoformat()}
        print(f"demo: airflow dags test {WORKLOAD} {logical_date.isoformat()}", flush=True)
        test = subprocess.run(
            [airflow, "dags", "test", WORKLOAD, logical_date.isoformat(), "-c", json.dumps(conf)],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        (DEMO_DIR / "dags-test.log").write_text(test.stdout)
        print(f"demo: task logs in {DEMO_DIR / 'dags-test.log'}", flush=True)
    finally:
        emulator.terminate()
        emulator.wait(timeout=30)

    report_path = home / "claude_batch_data" / WORKLOAD / args.date.isoformat() / "report.json"
    if not report_path.exists():
        print(f"demo: FAILED: the run wrote no report (airflow dags test exited {test.returncode})")
        print("\n".join(test.stdout.splitlines()[-40:]))
        return 1
    return print_report(json.loads(report_path.read_text()), home, test.returncode)


def print_report(report: dict, home: Path, exit_code: int) -> int:
    from claude_batch.store import Store
    from claude_batch.strategy.report import RunReport

    run_report = RunReport.model_validate({k: v for k, v in report.items() if k in RunReport.model_fields})
    print()
    for line in run_report.summary_lines():
        print(line)
    store = Store.connect(f"sqlite:///{home / 'claude_batch_store.db'}")
    run = next(r for r in store.recent_runs(WORKLOAD) if r.logical_date == run_report.run_date)
    rows = store.quarantine_rows(run.id)
    if rows:
        print("quarantined records:")
        for row in rows[:20]:
            print(f"  [{row.quarantine_class}] {row.reason}")
    print(
        f"outputs: table outputs of {home / 'claude_batch_store.db'} (workload {WORKLOAD}, date {run.logical_date})"
    )
    accounted = run_report.accounted()
    summary = {
        "inputs": run_report.inputs,
        "published": run_report.published,
        "quarantined": run_report.quarantined_total,
        "quarantined_by_class": run_report.quarantined,
        "recovered": run_report.recovered,
        "batches_created": run_report.batches_created,
        "tokens": run_report.tokens.model_dump(),
        "cost_usd": run_report.cost_usd,
        "all_sync_cost_usd": run_report.all_sync_cost_usd,
        "accounted": accounted,
        "dag_run_exit_code": exit_code,
    }
    print(json.dumps(summary))
    return 0 if accounted and exit_code == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
