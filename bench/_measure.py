"""What the strategy benchmarks share: each step in a fresh interpreter, compared with a bare loop.

Peak memory is the child's own high-water mark of resident memory (``VmHWM``), so each size and
each step is measured in a new process: nothing a previous step allocated (or an allocator kept)
counts against the next one. ``ru_maxrss`` would not do: Linux carries the parent's peak over
``fork`` + ``exec`` into it, so every child would report at least the parent's peak.
Times are the best of ``--repeats`` runs, the bare loop's and the step's interleaved (bare, step,
bare, step...), because the machine is shared and noise only adds time. Each run's CPU seconds
(user + system of the child, which runs the step in-process, SQLite included) are measured too: on
a machine other jobs load, wall time also counts the time the child waited for a core, CPU time
does not, so the CPU ratio is the one that holds when the load average (printed with each size) is
over the number of cores.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

RATIO_TARGET = 3.0
GROWTH_TARGET = 1.10

Step = Callable[[Path, int, Path], int]
"""(input written by ``prepare``, number of lines, output folder) -> records handled."""


@dataclass(frozen=True)
class Comparison:
    """A step of the product against the bare loop over the same input.

    :param name: the benchmark's name in its figures.
    :param subject: what is measured, in words (``write_shards``).
    :param prepare: writes the input for the given sizes into a folder; returns what steps read.
    :param imports: modules the measured step imports, loaded before its clock starts (interpreter
        start-up is not throughput); the bare loop's interpreter does not load them.
    """

    name: str
    subject: str
    script: Path
    bare: Step
    measured: Step
    prepare: Callable[[Path, list[int]], Path]
    imports: tuple[str, ...]


def _peak_mb() -> float:
    """This process's peak resident memory since its ``exec``, from /proc (Linux, in KiB there)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmHWM in /proc/self/status; these benchmarks measure memory on Linux")


def _child(step: Step, imports: tuple[str, ...], source: str, lines: str, out_dir: str) -> None:
    for module in imports:
        importlib.import_module(module)
    started, cpu_started = time.perf_counter(), time.process_time()
    records = step(Path(source), int(lines), Path(out_dir))
    seconds, cpu_seconds = time.perf_counter() - started, time.process_time() - cpu_started
    print(
        json.dumps(
            {"records": records, "seconds": seconds, "cpu_seconds": cpu_seconds, "peak_mb": _peak_mb()}
        )
    )


def _run_child(script: Path, step: str, source: Path, lines: int, work: Path) -> dict[str, Any]:
    out_dir = work / f"out-{step}"
    shutil.rmtree(out_dir, ignore_errors=True)
    out_dir.mkdir()
    command = [sys.executable, str(script), "--child", step, str(source), str(lines), str(out_dir)]
    try:
        done = subprocess.run(command, capture_output=True, text=True)
    finally:
        shutil.rmtree(out_dir, ignore_errors=True)
    if done.returncode != 0:
        raise RuntimeError(f"{script.name} {step} {lines} failed:\n{done.stderr}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def _speed(figures: dict[str, Any]) -> str:
    per_second = figures["records"] / figures["seconds"]
    return (
        f"{figures['seconds']:.2f} s, CPU {figures['cpu_seconds']:.2f} s ({per_second:,.0f}/s, "
        f"peak {figures['peak_mb']:.0f} MB)"
    )


def main(comparison: Comparison) -> None:
    """Parse the command line; run one child step, or the whole comparison and print its figures."""
    parser = argparse.ArgumentParser(
        description=sys.modules["__main__"].__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--lines", default="100000,400000", help="sizes, comma-separated; the first is the reference"
    )
    parser.add_argument(
        "--repeats", type=int, default=2, help="runs per step at the reference size (1 at the others)"
    )
    parser.add_argument("--child", nargs=4, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        step, *rest = args.child
        if step == "bare":
            _child(comparison.bare, (), *rest)
        else:
            _child(comparison.measured, comparison.imports, *rest)
        return

    sizes = [int(size) for size in args.lines.split(",")]
    results: dict[int, tuple[dict[str, Any], dict[str, Any]]] = {}
    loaded = False
    with tempfile.TemporaryDirectory(prefix=f"{comparison.name}-") as tmp:
        work = Path(tmp)
        source = comparison.prepare(work, sizes)
        for index, lines in enumerate(sizes):
            repeats = args.repeats if index == 0 else 1

            runs: dict[str, list[dict[str, Any]]] = {"bare": [], "measured": []}
            loads = []
            for _ in range(repeats):
                for step in runs:
                    runs[step].append(_run_child(comparison.script, step, source, lines, work))
                    loads.append(os.getloadavg()[0])
            loaded = loaded or max(loads) > (os.cpu_count() or 1)
            bare, measured = (
                {
                    **min(step_runs, key=lambda figures: figures["seconds"]),
                    "cpu_seconds": min(figures["cpu_seconds"] for figures in step_runs),
                }
                for step_runs in runs.values()
            )
            results[lines] = (bare, measured)
            print(
                f"  {lines:>9,} lines: bare loop {_speed(bare)}; {comparison.subject} {_speed(measured)}; "
                f"ratio {measured['seconds'] / bare['seconds']:.2f}, CPU ratio "
                f"{measured['cpu_seconds'] / bare['cpu_seconds']:.2f}; load {min(loads):.1f}-{max(loads):.1f} "
                f"on {os.cpu_count()} cores",
                flush=True,
            )

    first, last = sizes[0], sizes[-1]
    bare, measured = results[first]
    ratio = measured["seconds"] / bare["seconds"]
    cpu_ratio = measured["cpu_seconds"] / bare["cpu_seconds"]
    last_bare, last_measured = results[last]
    last_ratio = last_measured["seconds"] / last_bare["seconds"]
    last_cpu_ratio = last_measured["cpu_seconds"] / last_bare["cpu_seconds"]
    growth = last_measured["peak_mb"] / measured["peak_mb"]
    figures = {
        "benchmark": comparison.name,
        "records": first,
        "records_per_s": round(measured["records"] / measured["seconds"]),
        "bare_records_per_s": round(bare["records"] / bare["seconds"]),
        "ratio": round(ratio, 3),
        "cpu_ratio": round(cpu_ratio, 3),
        f"ratio_{last // 1000}k": round(last_ratio, 3),
        f"cpu_ratio_{last // 1000}k": round(last_cpu_ratio, 3),
        "peak_mb": round(measured["peak_mb"], 1),
        "bare_peak_mb": round(bare["peak_mb"], 1),
        f"peak_mb_{last // 1000}k": round(results[last][1]["peak_mb"], 1),
        f"peak_mb_{last // 1000}k_over_{first // 1000}k": round(growth, 3),
        "ratio_target": RATIO_TARGET,
        "growth_target": GROWTH_TARGET,
        # Wall time is the figure on a machine with a core to spare; under a load over the cores it
        # counts waits for a core too, so the CPU ratio is the one compared with the target.
        "loaded": loaded,
        "meets_targets": (cpu_ratio if loaded else ratio) <= RATIO_TARGET
        and (last_cpu_ratio if loaded else last_ratio) <= RATIO_TARGET
        and growth <= GROWTH_TARGET,
    }
    print(
        f"  ratio {ratio:.2f}, CPU {cpu_ratio:.2f}; at {last:,}: {last_ratio:.2f}, CPU {last_cpu_ratio:.2f} "
        f"(target <= {RATIO_TARGET}, CPU when wall is distorted by load); peak memory {last:,} / {first:,}: {growth:.3f} "
        f"(target <= {GROWTH_TARGET})"
    )
    print(json.dumps(figures))
