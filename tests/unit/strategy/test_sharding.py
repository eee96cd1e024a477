from __future__ import annotations

import json
from datetime import date
from pathlib import Path
from unittest import mock

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from claude_batch.strategy import sharding
from claude_batch.strategy.custom_ids import custom_id_for
from claude_batch.strategy.layout import RunLayout
from claude_batch.strategy.manifest import ManifestWriter, read_manifest
from claude_batch.strategy.quarantine import QuarantineClass, QuarantineEntry
from claude_batch.strategy.records import read_jsonl
from claude_batch.strategy.requests import request_builder
from claude_batch.strategy.sharding import ShardPlan, ShardWriter, valid_records, write_shards
from claude_batch.strategy.spec import BATCH_BODY_OVERHEAD, WorkloadSpec, parse_workload
from tests.unit.strategy.helpers import loan, make_spec, spec_data, write_jsonl

RUN_DATE = date(2026, 6, 7)


def _shard(spec: WorkloadSpec, tmp_path: Path, records: list) -> ShardPlan:
    source = tmp_path / "input.jsonl"
    with source.open("w", encoding="utf-8") as out:
        for record in records:
            out.write((record if isinstance(record, str) else json.dumps(record)) + "\n")
    return write_shards(spec, read_jsonl(source), tmp_path / "out", RUN_DATE)


def _quarantine(plan: ShardPlan) -> list[QuarantineEntry]:
    return [
        QuarantineEntry.model_validate_json(line)
        for line in Path(plan.quarantine_path).read_text().splitlines()
    ]


def _lines(path: str) -> list[dict]:
    return [json.loads(line) for line in Path(path).read_text().splitlines()]


def test_shard_lines_are_custom_id_and_the_exact_params(loan_spec: WorkloadSpec, tmp_path: Path) -> None:
    plan = _shard(loan_spec, tmp_path, [loan("114829"), loan("114830")])
    lines = _lines(plan.shards[0].path)
    assert [line["custom_id"] for line in lines] == ["loan-2026-06-07-114829", "loan-2026-06-07-114830"]
    assert lines[0]["params"] == request_builder(loan_spec).params(loan("114829"))


def test_shard_byte_size_is_the_bytes_on_disk(loan_spec: WorkloadSpec, tmp_path: Path) -> None:
    plan = _shard(loan_spec, tmp_path, [loan(str(n), text="é" * 50) for n in range(5)])
    assert plan.shards[0].byte_size == Path(plan.shards[0].path).stat().st_size == plan.request_bytes


def test_manifest_maps_each_custom_id_to_its_key_shard_and_line(tmp_path: Path) -> None:
    spec = make_spec(sharding={"target_requests": 2})
    plan = _shard(spec, tmp_path, [loan("1"), loan("2"), loan("3")])
    entries = list(read_manifest(Path(plan.manifest_path)))
    assert [(e.custom_id, e.business_key, e.shard, e.position, e.round) for e in entries] == [
        ("loan-2026-06-07-1", "1", 0, 1, 0),
        ("loan-2026-06-07-2", "2", 0, 2, 0),
        ("loan-2026-06-07-3", "3", 1, 3, 0),
    ]
    assert [e.custom_id for e in read_manifest(Path(plan.manifest_path), shard=1)] == ["loan-2026-06-07-3"]


def test_each_shard_has_a_manifest_of_its_own_requests_and_the_sample_none(tmp_path: Path) -> None:
    """What a shard's partition reads: its own entries, in the order sent, not the round's."""
    spec = make_spec(sharding={"target_requests": 2})
    source = write_jsonl(tmp_path / "input.jsonl", [loan(str(n)) for n in range(1, 7)])
    layout = RunLayout(tmp_path)
    plan = write_shards(spec, read_jsonl(source), layout.shards_dir, RUN_DATE, {"loan-2026-06-07-4"})

    round_entries = list(read_manifest(Path(plan.manifest_path)))
    assert [shard.index for shard in plan.shards] == [0, 1, 2]
    for shard in plan.shards:
        own = list(read_manifest(layout.shard_manifest(0, shard.index)))
        assert own == [e for e in round_entries if e.shard == shard.index]
        assert [e.custom_id for e in own] == [line["custom_id"] for line in _lines(shard.path)]
    sample_files = list(layout.shards_dir.glob(f"*{sharding.SAMPLE_SHARD}*"))
    assert sample_files == []


def test_manifest_entries_never_go_back_to_an_earlier_shard(tmp_path: Path) -> None:
    with ManifestWriter(tmp_path, 0) as manifest:
        manifest.write({"custom_id": "a", "business_key": "1", "shard": 1})
        with pytest.raises(ValueError, match="went back from shard 1 to shard 0"):
            manifest.write({"custom_id": "b", "business_key": "2", "shard": 0})


def test_a_new_shard_is_cut_at_the_target_request_count(tmp_path: Path) -> None:
    spec = make_spec(sharding={"target_requests": 3})
    plan = _shard(spec, tmp_path, [loan(str(n)) for n in range(10)])
    assert [s.request_count for s in plan.shards] == [3, 3, 3, 1]
    assert [Path(s.path).name for s in plan.shards][:2] == ["shard-00000.jsonl", "shard-00001.jsonl"]


def test_a_new_shard_is_cut_before_the_target_bytes(tmp_path: Path) -> None:
    # A request line is about 7.3 KB of system prompt (the cacheable prefix) plus the record's text.
    spec = make_spec(max_request_bytes=12_000, sharding={"target_bytes": 20_000})
    plan = _shard(spec, tmp_path, [loan(str(n), text="x" * 500) for n in range(10)])
    assert len(plan.shards) > 1
    assert all(s.byte_size <= 20_000 for s in plan.shards)
    assert sum(s.request_count for s in plan.shards) == 10


def test_numeric_business_keys_are_read_as_text(loan_spec: WorkloadSpec, tmp_path: Path) -> None:
    plan = _shard(loan_spec, tmp_path, [{**loan("x"), "loan_file_id": 114829}])
    assert next(read_manifest(Path(plan.manifest_path))).business_key == "114829"


def test_bad_records_are_quarantined_with_a_reason_and_the_rest_are_sharded(
    loan_spec: WorkloadSpec, tmp_path: Path
) -> None:
    records = [
        loan("1"),
        '{"loan_file_id": "2", "text": ',
        {"product": "auto", "borrower_state": "CA", "text": "x"},
        {"loan_file_id": "4", "borrower_state": "CA", "text": "x"},
        loan("5", text="   "),
        loan("1"),
        {**loan("7"), "loan_file_id": ["7"]},
        loan("8"),
    ]
    plan = _shard(loan_spec, tmp_path, records)
    assert plan.accounted()
    assert (plan.records_read, plan.requests) == (8, 2)
    entries = _quarantine(plan)
    reasons = {entry.quarantine_class: entry for entry in reversed(entries)}
    assert reasons[QuarantineClass.UNREADABLE].reason.startswith("line 2: ")
    assert "business key field 'loan_file_id' is missing" in reasons[QuarantineClass.MISSING_KEY].reason
    assert "product: Field required" in reasons[QuarantineClass.INVALID_RECORD].reason
    assert (
        reasons[QuarantineClass.EMPTY_TEXT].reason
        == "line 5 (5): 'text' is empty; there is nothing to send: fill it in in the input or drop the record"
    )
    duplicate = reasons[QuarantineClass.DUPLICATE_KEY]
    assert (duplicate.position, duplicate.business_key) == (6, "1")
    assert "first seen at position 1, which is the one sent" in duplicate.reason
    assert [e.position for e in entries if e.quarantine_class is QuarantineClass.INVALID_RECORD] == [4, 7]


def test_two_keys_meeting_on_one_custom_id_are_a_collision_not_a_merge(
    loan_spec: WorkloadSpec, tmp_path: Path
) -> None:
    hashed = custom_id_for("loan", ["abc!"], RUN_DATE)
    lookalike = hashed.removeprefix("loan-2026-06-07-")
    plan = _shard(loan_spec, tmp_path, [loan("abc!"), loan(lookalike)])
    (collision,) = _quarantine(plan)
    assert collision.quarantine_class is QuarantineClass.ID_COLLISION
    assert "already taken by business key abc!" in collision.reason
    assert plan.requests == 1


def test_prompt_over_the_context_window_is_quarantined_without_chunking(tmp_path: Path) -> None:
    spec = make_spec(context_window_tokens=3000, max_tokens=1024, chunking=None)
    plan = _shard(spec, tmp_path, [loan("1", text="x" * 400), loan("2", text="x" * 8000)])
    (entry,) = _quarantine(plan)
    assert entry.quarantine_class is QuarantineClass.CONTEXT_WINDOW
    assert entry.business_key == "2"
    assert "exceeds the context window of 3000" in entry.reason


def test_a_newer_tokenizer_counts_the_same_text_as_more_tokens(tmp_path: Path) -> None:
    # About 2,500 tokens by bytes: within 4,000 for Sonnet 4.6, over it with Opus 4.7's 1.3x tokenizer.
    text = "x" * 3000
    for folder in ("a", "b"):
        (tmp_path / folder).mkdir()
    older = _shard(
        make_spec(context_window_tokens=4000, max_tokens=1024, chunking=None),
        tmp_path / "a",
        [loan("1", text=text)],
    )
    newer = _shard(
        make_spec(model="claude-opus-4-7", context_window_tokens=4000, max_tokens=1024, chunking=None),
        tmp_path / "b",
        [loan("1", text=text)],
    )
    assert (older.requests, newer.requests) == (1, 0)
    assert _quarantine(newer)[0].quarantine_class is QuarantineClass.CONTEXT_WINDOW


def test_request_over_the_size_limit_is_quarantined_without_chunking(tmp_path: Path) -> None:
    spec = make_spec(max_request_bytes=12_000, chunking=None)
    plan = _shard(spec, tmp_path, [loan("1", text="x" * 100), loan("2", text="x" * 6000)])
    (entry,) = _quarantine(plan)
    assert entry.quarantine_class is QuarantineClass.REQUEST_TOO_LARGE
    assert "over max_request_bytes 12000" in entry.reason


@pytest.mark.parametrize(
    "limits", [{"context_window_tokens": 3000, "max_tokens": 1024}, {"max_request_bytes": 12_000}]
)
def test_a_record_too_large_for_one_request_becomes_chunk_requests_instead(tmp_path: Path, limits) -> None:
    spec = make_spec(**limits)
    text = "\n\n".join(f"SECTION {n}\n" + "word " * 150 for n in range(12))
    plan = _shard(spec, tmp_path, [loan("1", text="x" * 100), loan("2", text=text)])

    assert _quarantine(plan) == [] and plan.accounted()
    entries = [e for e in read_manifest(Path(plan.manifest_path)) if e.business_key == "2"]
    assert (plan.records_chunked, plan.chunk_requests, plan.requests) == (1, len(entries), len(entries) + 1)
    assert [e.chunk for e in entries] == list(range(1, len(entries) + 1)) and len(entries) >= 2
    assert {(e.chunk_of, e.chunk_count, e.chunk_depth, e.position) for e in entries} == {
        ("loan-2026-06-07-2", len(entries), 1, 2)
    }
    assert "".join(text[e.text_start : e.text_end] for e in entries) == text
    lines = [json.loads(x) for shard in plan.shards for x in Path(shard.path).read_text().splitlines()]
    for line in lines:
        assert len(json.dumps(line).encode()) <= spec.max_request_bytes
        prompt = line["params"]["system"][0]["text"] + line["params"]["messages"][0]["content"]
        assert len(prompt.encode()) / 4 + spec.max_tokens <= spec.context_window_tokens


def test_a_record_the_template_cannot_render_is_quarantined(tmp_path: Path) -> None:
    (tmp_path / "system.j2").write_text("Review.")
    (tmp_path / "user.j2").write_text(
        "{% if record.product == 'auto' %}{{ record.text.missing }}{% endif %}ok"
    )
    data = spec_data()
    data["prompt"] = {"system": "system.j2", "user": "user.j2"}
    spec = parse_workload(data, base_dir=tmp_path)
    plan = _shard(spec, tmp_path, [loan("1", product="auto"), loan("2", product="mortgage")])
    (entry,) = _quarantine(plan)
    assert entry.quarantine_class is QuarantineClass.RENDER_FAILED
    assert plan.requests == 1


def test_valid_records_are_those_sharding_would_send(loan_spec: WorkloadSpec, tmp_path: Path) -> None:
    source = write_jsonl(tmp_path / "input.jsonl", [loan("1"), loan("2", text=""), loan("3")])
    valid = list(valid_records(loan_spec, read_jsonl(source), RUN_DATE))
    assert [(v.position, v.custom_id, v.business_key) for v in valid] == [
        (1, "loan-2026-06-07-1", "1"),
        (3, "loan-2026-06-07-3", "3"),
    ]


def test_empty_input_gives_no_shards(loan_spec: WorkloadSpec, tmp_path: Path) -> None:
    plan = write_shards(loan_spec, read_jsonl(write_jsonl(tmp_path / "empty.jsonl", [])), tmp_path, RUN_DATE)
    assert (plan.shards, plan.records_read, plan.accounted()) == ([], 0, True)


def test_a_line_too_big_for_any_batch_is_refused(tmp_path: Path) -> None:
    with (
        mock.patch.object(sharding, "MAX_BATCH_BYTES", 100),
        ShardWriter(tmp_path, 0, 10, 50) as writer,
        pytest.raises(ValueError, match="cannot fit in any batch"),
    ):
        writer.add(b"x" * (100 - BATCH_BODY_OVERHEAD + 1))


@settings(max_examples=60, deadline=None)
@given(
    target_requests=st.integers(min_value=1, max_value=12),
    target_bytes=st.integers(min_value=1, max_value=3000),
    sizes=st.lists(st.integers(min_value=1, max_value=1000 - BATCH_BODY_OVERHEAD), max_size=60),
)
def test_shards_never_cross_a_limit_for_any_record_sizes(
    tmp_path_factory: pytest.TempPathFactory, target_requests: int, target_bytes: int, sizes: list[int]
) -> None:
    # The API limits scaled down (7 requests, 1,000 bytes) so that small inputs reach them.
    out = tmp_path_factory.mktemp("shards")
    lines = [f"{n:06d}".encode().ljust(size, b"x")[:size] for n, size in enumerate(sizes)]
    with (
        mock.patch.object(sharding, "MAX_BATCH_REQUESTS", 7),
        mock.patch.object(sharding, "MAX_BATCH_BYTES", 1000),
        ShardWriter(out, 0, target_requests, target_bytes) as writer,
    ):
        for line in lines:
            writer.add(line)
    written = [Path(s.path).read_bytes() for s in writer.shards]
    assert b"".join(written) == b"".join(lines)
    for shard, content in zip(writer.shards, written, strict=True):
        assert shard.byte_size == len(content) and shard.request_count >= 1
        assert shard.request_count <= min(target_requests, 7)
        assert shard.byte_size + BATCH_BODY_OVERHEAD <= 1000
        # only a single line larger than the target may stand alone over it
        assert shard.byte_size <= target_bytes or shard.request_count == 1


def test_records_the_sample_answered_are_in_the_manifest_but_in_no_shard(
    loan_spec: WorkloadSpec, tmp_path: Path
) -> None:
    source = write_jsonl(tmp_path / "input.jsonl", [loan("1"), loan("2"), loan("3")])
    plan = write_shards(loan_spec, read_jsonl(source), tmp_path / "out", RUN_DATE, {"loan-2026-06-07-2"})

    assert (plan.requests, plan.answered_by_sample, plan.accounted()) == (2, 1, True)
    assert [line["custom_id"] for line in _lines(plan.shards[0].path)] == [
        "loan-2026-06-07-1",
        "loan-2026-06-07-3",
    ]
    entries = {e.custom_id: e.shard for e in read_manifest(Path(plan.manifest_path))}
    assert entries == {
        "loan-2026-06-07-1": 0,
        "loan-2026-06-07-2": sharding.SAMPLE_SHARD,
        "loan-2026-06-07-3": 0,
    }
