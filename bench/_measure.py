"""What the strategy benchmarks share: each step in a fresh interpreter, compared with a bare loop.

Peak memory is the child's own high-water mark of resident memory (``VmHWM``), so each size and
each step is measured in a new process: nothing a previous step allocated (or an allocator kept)
counts against the next one. ``ru_maxrss`` would not do: Linux carries the parent's peak over
``fork`` + ``exec`` into it, so every child would report at least the parent's peak.
Times are the best of ``--repeats`` runs, because the machine is shared and noise only adds time.
"""

from __future__ import annotations

import argparse
import importlib
import json
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
    started = time.perf_counter()
    records = step(Path(source), int(lines), Path(out_dir))
    seconds = time.perf_counter() - started
    print(json.dumps({"records": records, "seconds": seconds, "peak_mb": _peak_mb()}))


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
    return f"{figures['seconds']:.2f} s ({per_second:,.0f}/s, peak {figures['peak_mb']:.0f} MB)"


def main(comparison: Comparison) -> None:
    """Parse the command line; run one child step, or the whole comparison and print its figures."""
    parser = argparse.ArgumentParser(
        description=sys.modules["__main__"].__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--lines", default="100000,400000", help="sizes, comma-separated; the first is the reference"
    )
    parser.add_argument("--repeats", type=int, default=2, help="runs per step at the reference size")
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
    with tempfile.TemporaryDirectory(prefix=f"{comparison.name}-") as tmp:
        work = Path(tmp)
        source = comparison.prepare(work, sizes)
        for index, lines in enumerate(sizes):
            repeats = args.repeats if index == 0 else 1

            def best(step: str, lines: int = lines, repeats: int = repeats) -> dict[str, Any]:
                runs = [_run_child(comparison.script, step, source, lines, work) for _ in range(repeats)]
                return min(runs, key=lambda figures: figures["seconds"])

            bare, measured = best("bare"), best("measured")
            results[lines] = (bare, measured)
            print(
                f"  {lines:>9,} lines: bare loop {_speed(bare)}; {comparison.subject} {_speed(measured)}; "
                f"ratio {measured['seconds'] / bare['seconds']:.2f}"
            )

    first, last = sizes[0], sizes[-1]
    bare, measured = results[first]
    ratio = measured["seconds"] / bare["seconds"]
    growth = results[last][1]["peak_mb"] / measured["peak_mb"]
    figures = {
        "benchmark": comparison.name,
        "records": first,
        "records_per_s": round(measured["records"] / measured["seconds"]),
        "bare_records_per_s": round(bare["records"] / bare["seconds"]),
        "ratio": round(ratio, 3),
        "peak_mb": round(measured["peak_mb"], 1),
        "bare_peak_mb": round(bare["peak_mb"], 1),
        f"peak_mb_{last // 1000}k": round(results[last][1]["peak_mb"], 1),
        f"peak_mb_{last // 1000}k_over_{first // 1000}k": round(growth, 3),
        "ratio_target": RATIO_TARGET,
        "growth_target": GROWTH_TARGET,
        "meets_targets": ratio <= RATIO_TARGET and growth <= GROWTH_TARGET,
    }
    print(
        f"  ratio {ratio:.2f} (target <= {RATIO_TARGET}); peak memory {last:,} / {first:,}: {growth:.3f} "
        f"(target <= {GROWTH_TARGET})"
    )
    print(json.dumps(figures))
