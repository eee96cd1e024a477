"""Partition's files, byte for byte, on a small mixed batch: every class, odd usage, odd text.

The expected files were written by partition before its per-line path was made faster (one
parse of each line by pydantic-core, usage counts read without a model, the store check's ASCII
fast path); any change in what partition writes shows here. ``make_input.py`` beside the fixture
wrote its input.
"""

from __future__ import annotations

import json
from pathlib import Path

from claude_batch.strategy.lines import split_lines
from claude_batch.strategy.manifest import read_manifest
from claude_batch.strategy.partition import partition_results
from claude_workloads.loan_disclosure_review import LoanReview

GOLDEN = Path(__file__).resolve().parents[2] / "fixtures" / "partition_golden"


def test_a_mixed_batch_partitions_into_the_golden_files(tmp_path: Path) -> None:
    # A 4,000-byte cap, so that the input's two long lines are read as over it.
    results = split_lines([(GOLDEN / "results.jsonl").read_bytes()], 4_000)

    summary = partition_results(results, read_manifest(GOLDEN / "manifest.jsonl"), LoanReview, tmp_path)

    for path in summary.files.values():
        written = Path(path)
        assert written.read_bytes() == (GOLDEN / "expected" / written.name).read_bytes(), written.name
    expected_summary = json.loads((GOLDEN / "expected" / "summary.json").read_text())
    assert summary.model_dump(mode="json", exclude={"files"}) == expected_summary
