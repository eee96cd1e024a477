"""The bad-input corpus (tests/data/bad_inputs/): each bad record is quarantined at its line with a
reason that names it and says what to do; every good record around it is published once."""

from __future__ import annotations

import re
from datetime import date
from pathlib import Path

import pytest
import yaml
from airflow.sdk import ObjectStoragePath

from claude_batch.strategy.custom_ids import CUSTOM_ID
from claude_batch.strategy.manifest import read_manifest
from claude_batch.strategy.quarantine import QuarantineEntry
from claude_batch.strategy.records import read_jsonl
from claude_batch.strategy.sharding import write_shards
from claude_batch.strategy.spec import load_workload
from claude_workloads.loan_disclosure_review import LoanReview
from tests.data.bad_inputs.generate import write_generated

CORPUS = Path(__file__).resolve().parents[1] / "data" / "bad_inputs"
EXPECTED: dict[str, dict] = yaml.safe_load((CORPUS / "expected.yaml").read_text(encoding="utf-8"))
WORKLOAD = "loan_disclosure_review"
RUN_DATE = date(2026, 6, 7)
GOOD_LOANS = 60
# Every reason ends with what a person can do about the record.
ACTIONS = re.compile(r"fix or remove|add it|correct|fill it in|remove or merge|shorten|raise")


def corpus_files(folder: Path) -> list[Path]:
    """The committed files and the generated ones, in name order (the truncated file comes last)."""
    write_generated(folder)
    files = {p.name: p for p in CORPUS.glob("*.jsonl")} | {p.name: p for p in folder.glob("*.jsonl")}
    return [files[name] for name in sorted(files)]


def test_the_corpus_has_at_least_twenty_kinds_and_every_file_is_described(tmp_path: Path) -> None:
    names = [p.name for p in corpus_files(tmp_path)]
    assert sorted(EXPECTED) == names
    assert len(names) >= 20
    assert sum(len(e["quarantined"]) for e in EXPECTED.values()) >= 25


def check_quarantine_row(row, expected: dict, line: int, offset: int = 0) -> None:
    assert row.quarantine_class == expected["class"]
    assert row.position == line
    assert f"line {line}" in row.reason
    if "key" in expected:
        assert row.business_key == expected["key"]
        assert expected["key"] in row.reason
    if "first_seen" in expected:
        assert f"first seen at position {offset + expected['first_seen']}" in row.reason
    for words in expected["mentions"]:
        assert words in row.reason
    assert ACTIONS.search(row.reason), f"the reason says nothing to do: {row.reason!r}"


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_each_bad_record_is_quarantined_at_its_line_and_every_good_one_is_sharded(
    name: str, tmp_path: Path
) -> None:
    source = next(p for p in corpus_files(tmp_path / "generated") if p.name == name)
    expected = EXPECTED[name]
    spec = load_workload(WORKLOAD)
    out = ObjectStoragePath(f"file://{tmp_path / 'shards'}")

    plan = write_shards(spec, read_jsonl(ObjectStoragePath(f"file://{source}")), out, RUN_DATE)

    assert plan.accounted()
    rows = [
        QuarantineEntry.model_validate_json(line)
        for line in (out / "quarantine.jsonl").read_text().splitlines()
    ]
    assert len(rows) == len(expected["quarantined"])
    for row, bad in zip(sorted(rows, key=lambda r: r.position), expected["quarantined"], strict=True):
        check_quarantine_row(row, bad, bad["line"])
    manifest = list(read_manifest(out / "manifest.jsonl"))
    assert [m.business_key for m in manifest] == expected["published"]
    assert all(CUSTOM_ID.fullmatch(m.custom_id) for m in manifest)
    assert len({m.custom_id for m in manifest}) == len(manifest)


def test_the_whole_corpus_in_one_run_quarantines_each_bad_record_and_publishes_every_good_one(
    pipeline_for, tmp_path: Path
) -> None:
    pipeline = pipeline_for(processing_seconds=0.5)
    # One input file: the corpus files one after another (the byte-order mark is only one at the
    # start of a file, so that file goes first; the truncated one stays last).
    files = corpus_files(tmp_path / "generated")
    files.sort(key=lambda p: (not p.name.startswith("21-"), p.name))
    # Enough ordinary loan files that the bulk goes through a batch, as on a real night.
    files.insert(1, pipeline.loan_input(GOOD_LOANS, name="good.jsonl"))
    combined = tmp_path / "inputs" / "bad_inputs.jsonl"
    combined.parent.mkdir(parents=True, exist_ok=True)
    offsets: dict[str, int] = {}
    lines_so_far = 0
    with combined.open("wb") as out:
        for path in files:
            content = path.read_bytes()
            offsets[path.name] = lines_so_far
            lines_so_far += content.count(b"\n")
            out.write(content)

    dag_run = pipeline.run(WORKLOAD, combined)

    assert dag_run.state == "success"
    store = pipeline.store()
    run = next(r for r in store.recent_runs(WORKLOAD) if r.logical_date == RUN_DATE)
    expected = {name: EXPECTED[name] for name in offsets if name in EXPECTED}
    published = [str(100000 + i) for i in range(GOOD_LOANS)]
    published += [key for entry in expected.values() for key in entry["published"]]
    bad = {
        offsets[name] + b["line"]: (b, offsets[name])
        for name, entry in expected.items()
        for b in entry["quarantined"]
    }
    rows = {row.position: row for row in store.quarantine_rows(run.id)}
    assert sorted(rows) == sorted(bad)
    for line, (expectation, offset) in bad.items():
        check_quarantine_row(rows[line], expectation, line, offset)
    assert store.outputs_count(WORKLOAD, RUN_DATE) == len(published)
    for key in published:
        output = store.get_output(WORKLOAD, key, RUN_DATE)
        assert output is not None, key
        LoanReview.model_validate(output.output)
    accounting = store.accounting(run.id)
    assert accounting.balanced
    assert (accounting.inputs, accounting.published) == (len(published) + len(bad), len(published))
    assert run.report["inputs"] == run.report["published"] + run.report["quarantined_total"]
    assert pipeline.emulator.stats()["batches_created"] == store.batches_created(run.id) >= 1
