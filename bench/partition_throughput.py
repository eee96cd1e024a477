"""Partition throughput: ``partition_results`` over 100,000 batch result lines, and 400,000.

Run from the repo root: ``.venv/bin/python bench/partition_throughput.py [--lines 100000,400000]``.

The results are what a loan disclosure review batch returns, in shuffled order (results come back in
any order): 96 % valid answers, and 1 % each of invalid answers, overloaded errors, expired requests
and requests with no result line at all. The bare loop reads each result line, ``json.loads`` it,
``json.dumps`` it and writes it. ``partition_results`` loads the manifest into its on-disk index,
joins every line to it, validates each answer against ``LoanReview``, writes the partition files and
finds the missing ids. Each step runs in a fresh interpreter on the same files in the same run (see
``_measure``). Targets: ratio <= 3, peak memory growth 400k/100k <= 1.10. The last line of output is
one JSON object.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

from _measure import Comparison, main

from claude_workloads.loan_disclosure_review import Disclosure, risk_for

_DISCLOSURES = list(Disclosure)


def _custom_id(index: int) -> str:
    return f"loan-2026-06-07-{100000 + index}"


def _result_line(index: int, rng: random.Random) -> str | None:
    """The result line of request ``index``, or None when the batch lost it."""
    kind = index % 100
    custom_id = _custom_id(index)
    if kind == 1:
        error = {
            "type": "error",
            "error": {"type": "overloaded_error", "message": "Overloaded"},
            "request_id": None,
        }
        return json.dumps({"custom_id": custom_id, "result": {"type": "errored", "error": error}})
    if kind == 2:
        return json.dumps({"custom_id": custom_id, "result": {"type": "expired"}})
    if kind == 3:
        return None
    missing = rng.sample(_DISCLOSURES, rng.choice((0, 0, 0, 1, 2, 3)))
    answer = {
        "loan_file_id": str(100000 + index),
        "missing_disclosures": [d.value for d in missing],
        "risk_level": risk_for(len(missing)).value,
        "rationale": f"The file lacks {len(missing)} of the required disclosures under their headings.",
    }
    text = "I could not find a loan file in the message." if kind == 0 else json.dumps(answer)
    message = {
        "id": f"msg_{index:012d}",
        "type": "message",
        "role": "assistant",
        "model": "claude-sonnet-4-5",
        "content": [{"type": "text", "text": text}],
        "stop_reason": "end_turn",
        "stop_sequence": None,
        "usage": {
            "input_tokens": 1100 + rng.randint(0, 200),
            "output_tokens": 60 + rng.randint(0, 40),
            "cache_creation_input_tokens": 0,
            "cache_read_input_tokens": 270,
            "cache_creation": {"ephemeral_5m_input_tokens": 0, "ephemeral_1h_input_tokens": 0},
            "service_tier": "batch",
        },
    }
    return json.dumps({"custom_id": custom_id, "result": {"type": "succeeded", "message": message}})


def prepare(work: Path, sizes: list[int]) -> Path:
    """For each size, a manifest and its results file (shuffled) in the work folder."""
    for lines in sizes:
        rng = random.Random(lines)
        order = list(range(lines))
        rng.shuffle(order)
        with (work / f"manifest-{lines}.jsonl").open("w") as manifest:
            for index in range(lines):
                entry = {"custom_id": _custom_id(index), "business_key": str(100000 + index), "shard": 0}
                manifest.write(json.dumps(entry) + "\n")
        with (work / f"results-{lines}.jsonl").open("w") as results:
            for index in order:
                line = _result_line(index, rng)
                if line is not None:
                    results.write(line + "\n")
    size = (work / f"results-{sizes[0]}.jsonl").stat().st_size
    print(f"partition_throughput: result lines of {size / sizes[0]:.0f} bytes on average")
    return work


def bare_loop(work: Path, lines: int, out_dir: Path) -> int:
    handled = 0
    with (work / f"results-{lines}.jsonl").open("rb") as results, (out_dir / "bare.jsonl").open("wb") as out:
        for line in results:
            out.write((json.dumps(json.loads(line)) + "\n").encode())
            handled += 1
    return handled


def partition(work: Path, lines: int, out_dir: Path) -> int:
    from claude_batch.strategy.manifest import read_manifest
    from claude_batch.strategy.partition import partition_results, read_result_lines
    from claude_workloads.loan_disclosure_review import LoanReview

    summary = partition_results(
        read_result_lines([work / f"results-{lines}.jsonl"]),
        read_manifest(work / f"manifest-{lines}.jsonl"),
        LoanReview,
        out_dir,
    )
    if not (summary.accounted() and summary.expected == lines):
        raise RuntimeError(f"partition lost results: {summary.model_dump_json()}")
    return summary.result_lines


if __name__ == "__main__":
    main(
        Comparison(
            name="partition_throughput",
            subject="partition_results",
            script=Path(__file__).resolve(),
            bare=bare_loop,
            measured=partition,
            prepare=prepare,
            imports=("claude_batch.strategy.manifest", "claude_batch.strategy.partition"),
        )
    )
