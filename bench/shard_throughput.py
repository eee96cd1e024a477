"""Shard throughput: ``write_shards`` over 100,000 synthetic loan files (about 4 KB each), and 400,000.

Run from the repo root: ``.venv/bin/python bench/shard_throughput.py [--lines 100000,400000]``.

The bare loop reads each input line, ``json.loads`` it, ``json.dumps`` the record and writes it: the
least any sharder does. ``write_shards`` runs with the bundled loan disclosure review spec: validate
each record, derive its custom_id (on-disk duplicate index), render the prompt, measure the request
line, and write shard, manifest and quarantine lines. Each step runs in a fresh interpreter on the
same file in the same run (see ``_measure``). ``ratio`` is sharding time over bare-loop time at the
first size; ``peak_mb_400k_over_100k`` compares the sharder's peak memory at the largest and the
first size. Targets: ratio <= 3, growth <= 1.10. The last line of output is one JSON object.
"""

from __future__ import annotations

import json
from datetime import date
from itertools import islice
from pathlib import Path

from _measure import Comparison, main

from claude_demo.loans import write_loan_files


def prepare(work: Path, sizes: list[int]) -> Path:
    """One input file of the largest size; smaller sizes read its beginning."""
    source = write_loan_files(work / "loans.jsonl", max(sizes))
    print(f"shard_throughput: loan files of {source.stat().st_size / max(sizes) / 1000:.1f} KB on average")
    return source


def bare_loop(source: Path, lines: int, out_dir: Path) -> int:
    with source.open("rb") as records, (out_dir / "bare.jsonl").open("wb") as out:
        for line in islice(records, lines):
            out.write((json.dumps(json.loads(line)) + "\n").encode())
    return lines


def shard(source: Path, lines: int, out_dir: Path) -> int:
    from claude_batch.strategy.records import read_jsonl
    from claude_batch.strategy.sharding import write_shards
    from claude_batch.strategy.spec import load_workload
    from claude_batch.workloads import register_bundled_workloads

    register_bundled_workloads()
    spec = load_workload("loan_disclosure_review")
    plan = write_shards(spec, islice(read_jsonl(source), lines), out_dir, date(2026, 6, 7))
    if not (plan.accounted() and plan.requests == lines):
        raise RuntimeError(f"sharding lost records: {plan.model_dump_json()}")
    return plan.requests


if __name__ == "__main__":
    main(
        Comparison(
            name="shard_throughput",
            subject="write_shards",
            script=Path(__file__).resolve(),
            bare=bare_loop,
            measured=shard,
            prepare=prepare,
            imports=(
                "claude_batch.strategy.records",
                "claude_batch.strategy.sharding",
                "claude_batch.strategy.spec",
            ),
        )
    )
