"""The shard stage's files read back (manifest and quarantine rows) and the records the sample
already answered: read by the cost guard, shard and recovery."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

from claude_batch.stages.run import RunContext
from claude_batch.store import ManifestRow, QuarantineRow
from claude_batch.strategy.lines import jsonl_lines
from claude_batch.strategy.manifest import read_manifest
from claude_batch.strategy.partition import ResultClass
from claude_batch.strategy.sharding import SAMPLE_SHARD


def read_quarantine_file(location: Any) -> Iterator[QuarantineRow]:
    """Quarantine entries written by sharding or recovery, as store rows (the same fields)."""
    for line in jsonl_lines([location]):
        yield QuarantineRow.model_validate_json(line)


def manifest_rows(location: Any) -> Iterator[ManifestRow]:
    """Manifest entries written by sharding or recovery, as store rows."""
    return (ManifestRow.model_validate(entry, from_attributes=True) for entry in read_manifest(location))


def sample_answers(run: RunContext) -> set[str]:
    """custom_ids the validation sample answered validly (published from the sample, sent in no shard)."""
    answers = run.layout.partition_file(0, SAMPLE_SHARD, ResultClass.SUCCEEDED.value)
    if not answers.exists():
        return set()
    return {json.loads(line)["custom_id"] for line in jsonl_lines([answers])}
