"""Triggerer scale: 500 deferred batch waits on one real ``airflow triggerer``; its CPU, memory and polling lag.

The emulator holds 500 batches that stay ``in_progress`` for the whole window (a processing time of
a day). A DAG of this benchmark's own Airflow home maps ``BatchWaitSensor`` over the 500
submissions; its run is created through Airflow's ORM and every task instance is deferred as
``TaskInstance.defer_task`` defers it (a ``Trigger`` row made by ``Trigger.from_object`` from the
project's ``BatchEndedTrigger``, the task instance ``deferred`` and pointing at it), which is what
500 worker runs of the sensor would leave behind, without starting 500 task processes on a small
machine. Then the real ``airflow triggerer`` runs them: it loads the triggers and polls each batch
with the async client every ``--poll-interval`` seconds (no back-off, so the load stays at its peak:
500 / 5 s = 100 polls a second; the nightly DAG starts at 30 s and backs off to 5 min).

The emulator runs in a child of this script with a thin recorder around its ASGI app that writes,
for every ``GET /v1/messages/batches/{id}``, when the request arrived and when its response was
done. A trigger sleeps ``poll_interval`` after each response, so a poll is due at the previous
response's end plus the interval; the **lag** of a poll is how much later than that it arrived (it
includes the client's parsing and the event loop's delays, and no emulator time). CPU is the
triggerer's process tree's CPU time over the measurement window divided by the window; memory is
the largest resident set of its tree (sampled every 0.2 s, and VmHWM).
"""

from __future__ import annotations

import argparse
import itertools
import json
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import psutil
from _nightly import BIN, TreeSampler, airflow_home

DAG_ID = "bench_triggerer_scale"
LAG_TARGET_S = 1.0
CPU_TARGET_CORES = 1.0

DAG_FILE = '''\
"""500 mapped batch waits (written by bench/triggerer_scale.py); its runs are made by the benchmark."""
import json
from datetime import datetime
from pathlib import Path

from airflow.sdk import DAG

from claude_batch.sensors.batch import BatchWaitSensor

submissions = json.loads(Path({submissions!r}).read_text())
with DAG(dag_id={dag_id!r}, schedule=None, start_date=datetime(2026, 1, 1), catchup=False):
    BatchWaitSensor.partial(task_id="wait", deadline={deadline!r}, poll_interval={poll}).expand(
        submission=submissions
    )
'''


def serve_emulator(state: str, record: str) -> None:
    """The emulator's own app, served by uvicorn as its CLI does, with the poll recorder around it."""
    import uvicorn

    from claude_emulator.app import create_app
    from claude_emulator.cli import _AnnouncingServer
    from claude_emulator.emulator import EmulatorConfig
    from claude_emulator.faults import FaultPlan

    config = EmulatorConfig(
        state_path=Path(state), faults=FaultPlan(), time_scale=1.0, processing_seconds=86_400.0, seed=0
    )
    app = create_app(config)
    out = open(record, "a", buffering=1)  # noqa: SIM115 - open for the life of the process

    async def recorder(scope: dict, receive: Any, send: Any) -> None:
        path = scope.get("path", "")
        parts = path.strip("/").split("/")
        if (
            scope["type"] != "http"
            or scope["method"] != "GET"
            or len(parts) != 4
            or parts[:3]
            != [
                "v1",
                "messages",
                "batches",
            ]
        ):
            await app(scope, receive, send)
            return
        arrived = time.time()
        await app(scope, receive, send)
        out.write(f"{arrived:.6f} {time.time():.6f} {parts[3]}\n")

    server = _AnnouncingServer(
        uvicorn.Config(recorder, host="127.0.0.1", port=0, log_level="warning", access_log=False)
    )
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    server.run()


def seed_deferred_runs(submissions_path: str, poll: str, deadline: str) -> None:
    """One DAG run whose 500 mapped ``wait`` task instances are deferred on their triggers."""
    from datetime import UTC, datetime

    from airflow.models.dagbag import DBDagBag
    from airflow.models.taskinstance import TaskInstance
    from airflow.models.trigger import Trigger
    from airflow.utils.session import create_session
    from airflow.utils.state import DagRunState, TaskInstanceState
    from airflow.utils.types import DagRunTriggeredByType, DagRunType
    from sqlalchemy import select

    from claude_batch.triggers.batch import BatchEndedTrigger

    submissions = json.loads(Path(submissions_path).read_text())
    now = datetime.now(UTC)
    with create_session() as session:
        dag = DBDagBag().get_latest_version_of_dag(DAG_ID, session=session)
        run = dag.create_dagrun(
            run_id="bench_triggerer_scale",
            logical_date=now,
            data_interval=(now, now),
            run_after=now,
            run_type=DagRunType.MANUAL,
            triggered_by=DagRunTriggeredByType.TEST,
            state=DagRunState.RUNNING,
            session=session,
        )
        session.flush()
        instances = {
            ti.map_index: ti
            for ti in session.scalars(
                select(TaskInstance).where(TaskInstance.dag_id == DAG_ID, TaskInstance.run_id == run.run_id)
            )
        }
        if len(instances) != len(submissions):
            raise RuntimeError(f"expected {len(submissions)} mapped task instances, found {len(instances)}")
        for index, submission in enumerate(submissions):
            trigger = Trigger.from_object(
                BatchEndedTrigger(
                    conn_id="anthropic_default",
                    batch_id=submission["batch_id"],
                    deadline=float(deadline),
                    created_at=submission["created_at"],
                    poll_interval=float(poll),
                    max_poll_interval=float(poll),
                    backoff=1.0,
                )
            )
            session.add(trigger)
            session.flush()
            ti = instances[index]
            ti.state = TaskInstanceState.DEFERRED
            ti.trigger_id = trigger.id
            ti.next_method = "execute_complete"
            ti.next_kwargs = {}
            ti.start_date = now
            ti.try_number = 1
    print(json.dumps({"deferred": len(submissions)}))


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--triggers", type=int, default=500, help="deferred batch waits (default 500)")
    parser.add_argument("--poll-interval", type=float, default=5.0, help="seconds between polls (default 5)")
    parser.add_argument(
        "--window", type=float, default=60.0, help="seconds measured once all run (default 60)"
    )
    parser.add_argument("--emulator", nargs=2, help=argparse.SUPPRESS)
    parser.add_argument("--seed-db", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.emulator:
        serve_emulator(*args.emulator)
        return 0
    if args.seed_db:
        seed_deferred_runs(*args.seed_db)
        return 0

    import anthropic

    with tempfile.TemporaryDirectory(prefix="bench-triggerer-") as tmp:
        work = Path(tmp)
        record = work / "polls.log"
        emulator = subprocess.Popen(
            [sys.executable, __file__, "--emulator", str(work / "emulator.db"), str(record)],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        triggerer = None
        try:
            assert emulator.stdout is not None
            url = ""
            for line in emulator.stdout:
                if line.startswith("claude-emulator listening on "):
                    url = line.split(" on ", 1)[1].strip()
                    break
            if not url:
                raise RuntimeError(f"the emulator did not start (exit {emulator.wait()})")
            client = anthropic.Anthropic(base_url=url, api_key="sk-ant-bench-emulator-key")
            params = {
                "model": "claude-sonnet-4-6",
                "max_tokens": 64,
                "messages": [{"role": "user", "content": "hi"}],
            }
            submissions = []
            for index in range(args.triggers):
                batch = client.messages.batches.create(
                    requests=[{"custom_id": f"r{index}", "params": params}]
                )
                submissions.append(
                    {
                        "batch_id": batch.id,
                        "kind": "batch",
                        "shard_index": index,
                        "created_at": batch.created_at.timestamp(),
                    }
                )
            submissions_path = work / "submissions.json"
            submissions_path.write_text(json.dumps(submissions))
            deadline = time.time() + 3600
            dags = work / "dags"
            dags.mkdir()
            (dags / "bench_triggerer_scale.py").write_text(
                DAG_FILE.format(
                    submissions=str(submissions_path),
                    dag_id=DAG_ID,
                    deadline=deadline,
                    poll=args.poll_interval,
                )
            )
            env = airflow_home(work, url, "home", dags_folder=dags)
            subprocess.run(
                [str(BIN / "airflow"), "dags", "reserialize"], env=env, check=True, capture_output=True
            )
            seeded = subprocess.run(
                [
                    sys.executable,
                    __file__,
                    "--seed-db",
                    str(submissions_path),
                    str(args.poll_interval),
                    str(deadline),
                ],
                env=env,
                capture_output=True,
                text=True,
            )
            if seeded.returncode != 0:
                raise RuntimeError(f"seeding the deferred task instances failed:\n{seeded.stderr[-3000:]}")
            print(
                f"triggerer: {args.triggers} deferred batch waits, polls every {args.poll_interval:g} s",
                flush=True,
            )

            log = (work / "triggerer.log").open("w")
            triggerer = subprocess.Popen(
                [str(BIN / "airflow"), "triggerer"], env=env, stdout=log, stderr=subprocess.STDOUT
            )
            sampler = TreeSampler(triggerer.pid)
            started = time.monotonic()
            while time.monotonic() - started < 300:
                polled = {line.split()[2] for line in record.read_text().splitlines() if line}
                if len(polled) >= args.triggers:
                    break
                if triggerer.poll() is not None:
                    raise RuntimeError(
                        f"the triggerer exited:\n{(work / 'triggerer.log').read_text()[-3000:]}"
                    )
                time.sleep(0.5)
            else:
                raise RuntimeError(f"only {len(polled)} of {args.triggers} batches were polled within 300 s")
            ramp_up = time.monotonic() - started
            time.sleep(2 * args.poll_interval)  # past the first polls' burst
            tree = [psutil.Process(triggerer.pid), *psutil.Process(triggerer.pid).children(recursive=True)]
            cpu_before = {p.pid: sum(p.cpu_times()[:2]) for p in tree}
            window_start = time.time()
            time.sleep(args.window)
            window_end = time.time()
            tree = [psutil.Process(triggerer.pid), *psutil.Process(triggerer.pid).children(recursive=True)]
            cpu_seconds = sum(sum(p.cpu_times()[:2]) - cpu_before.get(p.pid, 0.0) for p in tree)
            sampler.stop()
        finally:
            if triggerer is not None and triggerer.poll() is None:
                triggerer.terminate()
                try:
                    triggerer.wait(30)
                except subprocess.TimeoutExpired:
                    triggerer.kill()
                    triggerer.wait()
            emulator.terminate()
            emulator.wait(30)
        polls: dict[str, list[tuple[float, float]]] = defaultdict(list)
        for line in record.read_text().splitlines():
            arrived, done, batch_id = line.split()
            polls[batch_id].append((float(arrived), float(done)))

    lags = []
    for series in polls.values():
        series.sort()
        for (_, previous_done), (arrived, _) in itertools.pairwise(series):
            if window_start <= arrived <= window_end:
                lags.append(max(arrived - (previous_done + args.poll_interval), 0.0))
    cores = cpu_seconds / (window_end - window_start)
    figures = {
        "benchmark": "triggerer_scale",
        "triggers": args.triggers,
        "poll_interval_s": args.poll_interval,
        "window_s": args.window,
        "polls_in_window": len(lags),
        "polls_per_s": round(len(lags) / (window_end - window_start), 1),
        "ramp_up_s": round(ramp_up, 1),
        "cpu_cores": round(cores, 3),
        "peak_mb": round(sampler.tree_peak_mb, 1),
        "largest_process_mb": round(sampler.peak_mb, 1),
        "lag_p50_s": round(statistics.median(lags), 3) if lags else None,
        "lag_p99_s": round(percentile(lags, 0.99), 3) if lags else None,
        "lag_max_s": round(max(lags), 3) if lags else None,
        "lag_target_s": LAG_TARGET_S,
        "cpu_target_cores": CPU_TARGET_CORES,
    }
    figures["meets_targets"] = bool(lags) and figures["lag_p99_s"] < LAG_TARGET_S and cores < CPU_TARGET_CORES
    print(
        f"  {len(lags)} polls in {args.window:g} s; lag p50 {figures['lag_p50_s']} s, p99 {figures['lag_p99_s']} s "
        f"(target < {LAG_TARGET_S}); CPU {cores:.2f} cores (target < {CPU_TARGET_CORES}); "
        f"memory {sampler.tree_peak_mb:.0f} MB (largest process {sampler.peak_mb:.0f} MB)"
    )
    print(json.dumps(figures))
    return 0 if figures["meets_targets"] else 1


if __name__ == "__main__":
    sys.exit(main())
