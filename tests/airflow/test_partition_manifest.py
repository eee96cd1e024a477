"""Each shard's partition reads its own shard's manifest: the round's would make a night's partition
time grow with the square of its size. A run sharded before shards had their own manifests still
partitions, from its round's manifest."""

from __future__ import annotations

from datetime import UTC, date, datetime
from pathlib import Path

from claude_batch.stages.partition import expected_requests
from claude_batch.stages.run import RunContext
from claude_batch.strategy.records import read_jsonl
from claude_batch.strategy.routing import Route
from claude_batch.strategy.sharding import write_shards
from tests.unit.strategy.helpers import loan, make_spec, write_jsonl

RUN_DATE = date(2026, 6, 7)


def _run(run_dir: Path) -> RunContext:
    return RunContext(
        workload="loan_disclosure_review",
        spec_source="loan_disclosure_review",
        store_run_id=1,
        run_date=RUN_DATE,
        logical_date=datetime(2026, 6, 7, tzinfo=UTC),
        deadline=datetime(2026, 6, 8, tzinfo=UTC),
        input_uri=str(run_dir / "input.jsonl"),
        run_dir=f"file://{run_dir}",
        input_count=5,
        route=Route.BATCH,
        route_rationale="test",
    )


def _sharded(tmp_path: Path) -> RunContext:
    run = _run(tmp_path / "run")
    source = write_jsonl(tmp_path / "input.jsonl", [loan(str(n)) for n in range(1, 6)])
    spec = make_spec(sharding={"target_requests": 2})
    write_shards(spec, read_jsonl(source), Path(run.layout.shards_dir.path), RUN_DATE)
    return run


def _keys(run: RunContext, shard: int) -> list[str]:
    return [e.business_key for e in expected_requests(run, {"round": 0, "shard_index": shard})]


def test_a_shards_partition_expects_its_own_requests(tmp_path: Path) -> None:
    run = _sharded(tmp_path)
    # The round's manifest is not what it reads: without it, the shard's own still answers.
    run.layout.manifest(0).unlink()
    assert [_keys(run, shard) for shard in (0, 1, 2)] == [["1", "2"], ["3", "4"], ["5"]]


def test_a_run_sharded_before_shard_manifests_reads_its_rounds_manifest(tmp_path: Path) -> None:
    run = _sharded(tmp_path)
    for shard in (0, 1, 2):
        run.layout.shard_manifest(0, shard).unlink()
    assert [_keys(run, shard) for shard in (0, 1, 2)] == [["1", "2"], ["3", "4"], ["5"]]
