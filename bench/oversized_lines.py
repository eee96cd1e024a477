"""Oversized lines: what the tasks do with a 200 MB single-line input and a 100 MB result line, in
memory, against the same steps over 100,000 ordinary records.

Run from the repo root: ``.venv/bin/python bench/oversized_lines.py [--records 100000]``.

Each run is a fresh interpreter that imports the operators (Airflow included) as a task process does,
then runs the steps the tasks run on the input and the results: route's ``count_input``, the sample's
pass over the valid records, ``write_shards`` over ``read_input``, and ``partition_results`` over
``read_result_lines``. The oversized run reads an input that is one line of 200 MB (over the default
``input.max_record_bytes`` of 64 MB: quarantined with its size, never held) and a results file whose
middle line is 100 MB (over the 32 MB a result line is read up to: classified by its custom_id,
never held). The reference run reads 100,000 loan files (about 4 KB each) and 100,000 result lines.
Peak memory is each process's own ``VmHWM``. Target: the oversized run's peak under 250 MB; the ratio
to the reference run's peak is printed. The last line of output is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

from _measure import _peak_mb
from partition_throughput import prepare as prepare_results

from claude_demo.loans import write_loan_files

PEAK_TARGET_MB = 250
INPUT_LINE_BYTES = 200_000_000
RESULT_LINE_BYTES = 100_000_000


def write_oversized(work: Path) -> tuple[Path, Path, Path]:
    """A single-line input of 200 MB, and three results (the middle one 100 MB) with their manifest."""
    record = b'{"loan_file_id": "900001", "product": "auto", "borrower_state": "CA", "text": "'
    source = work / "one-line.jsonl"
    with source.open("wb") as out:
        out.write(record)
        block = b"x" * (1 << 20)
        for _ in range((INPUT_LINE_BYTES - len(record)) // len(block)):
            out.write(block)
        out.write(b'"}\n')
    answer = json.dumps(
        {"loan_file_id": "{key}", "missing_disclosures": [], "risk_level": "low", "rationale": "All present."}
    )
    results, manifest = work / "results.jsonl", work / "manifest.jsonl"
    with results.open("wb") as out, manifest.open("w") as entries:
        for index in range(3):
            custom_id = f"loan-2026-06-07-{900001 + index}"
            entries.write(
                json.dumps({"custom_id": custom_id, "business_key": str(900001 + index), "shard": 0}) + "\n"
            )
            text = answer.replace("{key}", str(900001 + index))
            message = {
                "id": f"msg_{index}",
                "type": "message",
                "role": "assistant",
                "model": "claude-sonnet-4-6",
            }
            line = json.dumps(
                {
                    "custom_id": custom_id,
                    "result": {
                        "type": "succeeded",
                        "message": {
                            **message,
                            "content": [{"type": "text", "text": text}],
                            "usage": {"input_tokens": 1, "output_tokens": 1},
                        },
                    },
                }
            ).encode()
            if index == 1:  # an answer padded to 100 MB inside its text
                pad = b" " * (RESULT_LINE_BYTES - len(line))
                line = line.replace(b'"text": "', b'"text": "' + pad, 1)
            out.write(line + b"\n")
    return source, results, manifest


def steps(source: Path, results: Path, manifest: Path, out_dir: Path) -> dict:
    """The tasks' steps over one input and one results file; returns what they counted."""
    from claude_batch.stages.run import count_input, read_input
    from claude_batch.strategy.manifest import read_manifest
    from claude_batch.strategy.partition import partition_results, read_result_lines
    from claude_batch.strategy.sharding import valid_records, write_shards
    from claude_batch.strategy.spec import load_workload
    from claude_batch.workloads import register_bundled_workloads

    register_bundled_workloads()
    spec = load_workload("loan_disclosure_review")
    run_date = date(2026, 6, 7)
    counted = count_input(spec, str(source))
    valid = sum(1 for _ in valid_records(spec, read_input(spec, str(source)), run_date))
    plan = write_shards(spec, read_input(spec, str(source)), out_dir / "shards", run_date)
    summary = partition_results(
        read_result_lines([results]), read_manifest(manifest), spec.output_model(), out_dir / "partition"
    )
    if not (plan.accounted() and plan.records_read == counted and summary.accounted()):
        raise RuntimeError(f"records lost: {plan.model_dump_json()} {summary.model_dump_json()}")
    return {
        "records": counted,
        "valid": valid,
        "quarantined": plan.quarantined_total,
        "result_lines": summary.result_lines,
        "results": {c.value: n for c, n in summary.counts.items() if n},
    }


def child(source: str, results: str, manifest: str, out_dir: str) -> None:
    import claude_batch.stages.run  # noqa: F401  (the task process's imports, before the clock)

    started = time.perf_counter()
    figures = steps(Path(source), Path(results), Path(manifest), Path(out_dir))
    print(json.dumps({**figures, "seconds": time.perf_counter() - started, "peak_mb": _peak_mb()}))


def run_child(*paths: Path) -> dict:
    command = [sys.executable, __file__, "--child", *map(str, paths)]
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(done.stderr)
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--records", type=int, default=100_000, help="records of the reference run")
    parser.add_argument("--child", nargs=4, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(*args.child)
        return
    with tempfile.TemporaryDirectory(prefix="oversized-lines-") as tmp:
        work = Path(tmp)
        (work / "out-big").mkdir()
        (work / "out-ref").mkdir()
        source, results, manifest = write_oversized(work)
        oversized = run_child(source, results, manifest, work / "out-big")
        print(f"  200 MB line in, 100 MB result line: {oversized}")
        for path in (source, results):
            path.unlink()
        reference_input = write_loan_files(work / "loans.jsonl", args.records)
        prepare_results(work, [args.records])
        reference = run_child(
            reference_input,
            work / f"results-{args.records}.jsonl",
            work / f"manifest-{args.records}.jsonl",
            work / "out-ref",
        )
        print(f"  {args.records:,} records: {reference}")
    ratio = oversized["peak_mb"] / reference["peak_mb"]
    figures = {
        "benchmark": "oversized_lines",
        "peak_mb": round(oversized["peak_mb"], 1),
        "reference_records": args.records,
        "reference_peak_mb": round(reference["peak_mb"], 1),
        "peak_ratio_to_reference": round(ratio, 3),
        "peak_target_mb": PEAK_TARGET_MB,
        "meets_targets": oversized["peak_mb"] < PEAK_TARGET_MB,
    }
    print(
        f"  peak {oversized['peak_mb']:.0f} MB (target < {PEAK_TARGET_MB} MB); {args.records:,}-record run "
        f"{reference['peak_mb']:.0f} MB; ratio {ratio:.2f}"
    )
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
