"""What the end-to-end benchmarks share: an embedded Airflow home, the nightly DAG run, process trees.

Each run gets its own Airflow home, store and data folder under a temporary directory, configured
as ``make demo`` configures its own (``claude_demo.run.airflow_environment``), so nothing here
touches ``.demo/`` or another engineer's run. Memory is watched per process of the measured tree:
every ~0.2 s the sampler reads each live process's resident memory and its high-water mark
(``VmHWM`` in /proc, which catches a peak between two samples), so the figure for a process is
the largest it ever held, and the figure for the tree is the largest sum seen at one instant.

CPU seconds (user + system) of the tree are the kernel's accounting of the measured command and of
every descendant it waited for (``wait4``): on a machine other jobs
load, wall time also counts waits for a core, CPU time does not. The 1-minute load average is
sampled with the memory, so each figure says how loaded the machine was while it was taken.
"""

from __future__ import annotations

import json
import os
import resource
import statistics
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from datetime import time as clock
from pathlib import Path
from typing import Any

import psutil

REPO = Path(__file__).resolve().parents[1]
WORKLOAD = "loan_disclosure_review"
RUN_DATE = date(2026, 6, 7)
BIN = Path(sys.executable).parent


def _hwm_mb(pid: int) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


@dataclass
class TreeSampler:
    """Peak memory of a process and all its descendants, sampled on a thread until :meth:`stop`."""

    root: int
    interval: float = 0.2
    peaks: dict[int, float] = field(default_factory=dict)
    names: dict[int, str] = field(default_factory=dict)
    tree_peak_mb: float = 0.0
    cpu_seconds: dict[int, float] = field(default_factory=dict)
    loads: list[float] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _sample(self) -> None:
        self.loads.append(os.getloadavg()[0])
        try:
            root = psutil.Process(self.root)
            processes = [root, *root.children(recursive=True)]
        except psutil.NoSuchProcess:
            return
        total = 0.0
        for process in processes:
            try:
                rss = process.memory_info().rss / (1024 * 1024)
                cpu = process.cpu_times()
                if process.pid not in self.names:
                    self.names[process.pid] = " ".join(process.cmdline()[:4])[:160]
            except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
                continue
            total += rss
            peak = max(rss, _hwm_mb(process.pid))
            self.peaks[process.pid] = max(self.peaks.get(process.pid, 0.0), peak)
            self.cpu_seconds[process.pid] = cpu.user + cpu.system
        self.tree_peak_mb = max(self.tree_peak_mb, total)

    def _run(self) -> None:
        while not self._done.is_set():
            self._sample()
            self._done.wait(self.interval)

    def stop(self) -> None:
        self._done.set()
        self._thread.join()

    @property
    def peak_mb(self) -> float:
        """The largest single process of the tree."""
        return max(self.peaks.values(), default=0.0)

    def load(self) -> float:
        """The median 1-minute load average while the tree ran."""
        return statistics.median(self.loads) if self.loads else os.getloadavg()[0]

    def largest(self) -> str:
        if not self.peaks:
            return ""
        pid = max(self.peaks, key=self.peaks.__getitem__)
        return self.names.get(pid, str(pid))


@dataclass
class Measured:
    seconds: float
    returncode: int
    peak_mb: float
    tree_peak_mb: float
    largest: str
    output: str
    cpu_seconds: float = 0.0
    load: float = 0.0


def run_measured(command: list[str], env: dict[str, str] | None, log_path: Path, timeout: float) -> Measured:
    """Run ``command`` to its end (killed after ``timeout`` s), timing it and sampling its tree."""
    started = time.perf_counter()
    with log_path.open("w") as log:
        process = subprocess.Popen(command, env=env, cwd=REPO, stdout=log, stderr=subprocess.STDOUT)
        sampler = TreeSampler(process.pid)
        try:
            status, usage = _wait_with_usage(process, started + timeout)
        finally:
            seconds = time.perf_counter() - started
            sampler.stop()
    return Measured(
        seconds=seconds,
        returncode=os.waitstatus_to_exitcode(status),
        peak_mb=sampler.peak_mb,
        tree_peak_mb=sampler.tree_peak_mb,
        largest=sampler.largest(),
        output=log_path.read_text(errors="replace"),
        cpu_seconds=usage.ru_utime + usage.ru_stime,
        load=sampler.load(),
    )


def _wait_with_usage(process: subprocess.Popen, deadline: float) -> tuple[int, resource.struct_rusage]:
    """Reap ``process`` (its tree killed at ``deadline``, on ``perf_counter``'s clock): its wait status
    and the kernel's CPU accounting of it and of every descendant it reaped (``wait4``: exact for
    this child even when another measured tree runs at the same time)."""
    while True:
        pid, status, usage = os.wait4(process.pid, os.WNOHANG)
        if pid:
            break
        if time.perf_counter() > deadline:
            for child in psutil.Process(process.pid).children(recursive=True):
                child.kill()
            process.kill()
            _, status, usage = os.wait4(process.pid, 0)
            break
        time.sleep(0.2)
    process.returncode = os.waitstatus_to_exitcode(status)  # reaped here: Popen must not wait again
    return status, usage


def process_cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a live process and of the children it waited for (0 when gone)."""
    try:
        times = psutil.Process(pid).cpu_times()
    except psutil.NoSuchProcess:
        return 0.0
    return times.user + times.system + times.children_user + times.children_system


def write_inputs(work: Path, records: int) -> Path:
    from claude_demo.loans import write_loan_files

    return write_loan_files(work / "inputs" / f"{WORKLOAD}-{RUN_DATE.isoformat()}.jsonl", records)


# The nightly DAG as dags/claude_batch_workloads.py builds it, with a budget of the benchmark's
# choosing: the end-to-end benchmark runs any size (its budget is out of the way); the cost benchmark
# passes the spec's own, the ceiling its reference night must pass. Every stage still reads the
# bundled spec by name.
NIGHTLY_DAG = """\
# The nightly airflow DAG of the benchmarks (bench/_nightly.py); safe-mode parsing needs both words.
import os

from claude_batch.dag_factory import build_workload_dag
from claude_batch.strategy.spec import load_workload

spec = load_workload({workload!r})
spec = spec.model_copy(update={{"budget": spec.budget.model_copy(update={{"usd": {budget!r}}})}})
{workload} = build_workload_dag(spec, poll_interval=float(os.environ["CLAUDE_BATCH_POLL_INTERVAL"]))
"""
BENCH_BUDGET_USD = 2000.0


def nightly_dags_folder(work: Path, budget: float = BENCH_BUDGET_USD) -> Path:
    """A dags folder holding only the nightly DAG, with ``budget`` (default: the benchmark's; see NIGHTLY_DAG)."""
    folder = work / "nightly_dags"
    folder.mkdir(exist_ok=True)
    (folder / "nightly.py").write_text(NIGHTLY_DAG.format(workload=WORKLOAD, budget=budget))
    return folder


def airflow_home(work: Path, emulator_url: str, name: str, dags_folder: Path | None = None) -> dict[str, str]:
    """A migrated Airflow home of its own (SQLite metadata DB, store and data folder); its environment.

    :param dags_folder: default: the nightly DAG with the benchmark's budget.
    """
    from claude_demo.run import airflow_environment

    home = work / name
    home.mkdir(parents=True, exist_ok=True)
    dags_folder = dags_folder or nightly_dags_folder(work)
    env = airflow_environment(home, emulator_url)
    env["AIRFLOW__LOGGING__LOGGING_LEVEL"] = "WARNING"
    # Polls of a batch that ends at once: the first look finds it ended; no 30 s pause per shard.
    env["CLAUDE_BATCH_POLL_INTERVAL"] = "1"
    env["AIRFLOW__CORE__DAGS_FOLDER"] = str(dags_folder)
    subprocess.run([str(BIN / "airflow"), "db", "migrate"], env=env, check=True, capture_output=True)
    return env


def metadata_db(env: dict[str, str]) -> Path:
    return Path(env["AIRFLOW_HOME"]) / "airflow.db"


def db_size_mb(path: Path) -> float:
    """The SQLite file with its journal or WAL, if any."""
    files = [path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-journal")]
    return sum(f.stat().st_size for f in files if f.exists()) / (1024 * 1024)


def logical_date() -> datetime:
    return datetime.combine(RUN_DATE, clock(5), tzinfo=UTC)


def run_nightly(
    env: dict[str, str], input_path: Path, log_path: Path, timeout: float
) -> tuple[Measured, dict]:
    """``airflow dags test`` of the nightly DAG on ``input_path``; its measurement and run report."""
    from claude_demo.run import next_deadline

    conf = {"input_uri": str(input_path), "deadline": next_deadline(datetime.now(UTC)).isoformat()}
    command = [
        str(BIN / "airflow"),
        "dags",
        "test",
        WORKLOAD,
        logical_date().isoformat(),
        "-c",
        json.dumps(conf),
    ]
    measured = run_measured(command, env, log_path, timeout)
    report_path = (
        Path(env["AIRFLOW_HOME"]) / "claude_batch_data" / WORKLOAD / RUN_DATE.isoformat() / "report.json"
    )
    if not report_path.exists():
        tail = "\n".join(measured.output.splitlines()[-40:])
        raise RuntimeError(
            f"the nightly run wrote no report (exit {measured.returncode}); log {log_path}:\n{tail}"
        )
    return measured, json.loads(report_path.read_text())


def summary(report: dict[str, Any]) -> dict[str, Any]:
    """The counts of a run report that show nothing was lost."""
    quarantined = sum((report.get("quarantined") or {}).values())
    return {
        "inputs": report.get("inputs"),
        "published": report.get("published"),
        "quarantined": quarantined,
        "batches_created": report.get("batches_created"),
        "accounted": report.get("inputs") == (report.get("published") or 0) + quarantined,
    }
