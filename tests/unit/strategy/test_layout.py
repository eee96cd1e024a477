"""The run layout names every file of a run as runs already on disk have them, locally and in object
storage, and finds what a run wrote."""

from __future__ import annotations

from pathlib import Path

import pytest
from upath import UPath

from claude_batch.strategy.layout import RunLayout, part_name, result_parts
from claude_batch.strategy.sharding import SAMPLE_SHARD


def _relative(layout: RunLayout, path: object) -> str:
    return str(path).removeprefix(str(layout.root)).lstrip("/")


@pytest.fixture(params=["local", "memory"])
def layout(request: pytest.FixtureRequest, tmp_path: Path) -> RunLayout:
    if request.param == "local":
        return RunLayout(tmp_path / "run")
    return RunLayout(UPath(f"memory:///{tmp_path.name}/run"))


def test_every_file_keeps_the_name_runs_in_flight_have(layout: RunLayout) -> None:
    names = {
        "sample/requests.jsonl": layout.sample_requests,
        "sample/manifest.jsonl": layout.sample_manifest,
        "sample/results": layout.sample_results,
        "sample/gate.json": layout.sample_gate,
        "sample/report.json": layout.sample_report,
        "shards/shard-00003.jsonl": layout.request_file(0, 3),
        "shards/shard-00003.results": layout.sync_results(0, 3),
        "shards/manifest.jsonl": layout.manifest(0),
        "shards/quarantine.jsonl": layout.quarantine(0),
        "recovery/round-02-shard-00003.jsonl": layout.request_file(2, 3),
        "recovery/round-02-shard-00003.results": layout.sync_results(2, 3),
        "recovery/round-02-manifest.jsonl": layout.manifest(2),
        "recovery/round-02-quarantine.jsonl": layout.quarantine(2),
        "results/round-01/shard-00012.jsonl": layout.batch_results(1, 12),
        "partitions/round-00/shard-00012": layout.partition_dir(0, 12),
        "partitions/round-00/shard-00012/summary.json": layout.partition_summary(0, 12),
        "partitions/round-01/shard-00012/errored.jsonl": layout.partition_file(1, 12, "errored"),
        "partitions/round-00/shard-1000000": layout.partition_dir(0, SAMPLE_SHARD),
        "report.json": layout.report,
    }
    assert {name: _relative(layout, path) for name, path in names.items()} == {name: name for name in names}


def _touch(path: object) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)  # type: ignore[attr-defined]
    path.write_text("{}")  # type: ignore[attr-defined]


def test_a_rounds_request_files_are_found_in_shard_order(layout: RunLayout) -> None:
    for shard in (10, 2, 0):
        _touch(layout.request_file(1, shard))
    _touch(layout.request_file(2, 0))
    _touch(layout.manifest(1))
    _touch(layout.sync_results(1, 2) / part_name(0))

    found = layout.request_files(1)

    assert [(index, _relative(layout, path)) for index, path in found] == [
        (0, "recovery/round-01-shard-00000.jsonl"),
        (2, "recovery/round-01-shard-00002.jsonl"),
        (10, "recovery/round-01-shard-00010.jsonl"),
    ]


def test_partition_folders_are_found_by_round_then_shard_with_their_numbers(layout: RunLayout) -> None:
    for round_number, shard in ((1, 0), (0, SAMPLE_SHARD), (0, 1), (0, 0)):
        _touch(layout.partition_summary(round_number, shard))
    layout.partition_dir(1, 7).mkdir(parents=True, exist_ok=True)  # no summary yet: not finished

    found = [(folder.round, folder.shard, folder.path) for folder in layout.partition_folders()]

    assert [(r, s) for r, s, _ in found] == [(0, 0), (0, 1), (0, SAMPLE_SHARD), (1, 0)]
    assert [_relative(layout, path) for _, _, path in found][-1] == "partitions/round-01/shard-00000"


def test_sync_answer_parts_are_named_and_read_in_order(layout: RunLayout) -> None:
    for number in (1, 0, 10):
        _touch(layout.sample_results / part_name(number))

    assert [path.name for path in result_parts(layout.sample_results)] == [
        "part-000.jsonl",
        "part-001.jsonl",
        "part-010.jsonl",
    ]
    assert layout.sample_result_parts() == result_parts(layout.sample_results)
