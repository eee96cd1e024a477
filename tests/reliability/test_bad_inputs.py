"""The bad-input corpus (tests/data/bad_inputs/): each bad record is quarantined at its line with a
reason that names it and says what to do; every good record around it is published once.

Each kind is sharded alone (fast, no DAG), and end to end in a few grouped nightly runs on SQLite
and on PostgreSQL: the JSONL kinds in one input, the CSV kinds in another, and the inputs that are
wrong as a whole (missing, a directory, compressed, UTF-16, nothing valid) one run each.
"""

from __future__ import annotations

import gzip
import re
from collections.abc import Callable
from datetime import date
from pathlib import Path

import pytest
import yaml
from airflow.sdk import ObjectStoragePath

from claude_batch.stages.run import InputUnreadableError, count_input
from claude_batch.strategy.custom_ids import CUSTOM_ID
from claude_batch.strategy.manifest import read_manifest
from claude_batch.strategy.quarantine import QuarantineEntry
from claude_batch.strategy.records import read_records
from claude_batch.strategy.sharding import write_shards
from claude_batch.strategy.spec import InputSpec, WorkloadSpec, load_workload
from claude_workloads.loan_disclosure_review import LoanReview
from tests.data.bad_inputs.generate import write_generated

CORPUS = Path(__file__).resolve().parents[1] / "data" / "bad_inputs"
EXPECTED: dict[str, dict] = yaml.safe_load((CORPUS / "expected.yaml").read_text(encoding="utf-8"))
WORKLOAD = "loan_disclosure_review"
RUN_DATE = date(2026, 6, 7)
GOOD_LOANS = 60
# Far below the 64 MB default, so that the 50 MB lines of the corpus are over it.
MAX_RECORD_BYTES = 16_000_000
# Every reason ends with what a person can do about the record.
ACTIONS = re.compile(r"fix or remove|add it|correct|fill it in|remove or merge|shorten|raise")
# Inputs that are wrong as a whole: (file content or None for no file, what the message must say).
WHOLE_INPUTS: dict[str, tuple[Callable[[Path], None], str]] = {
    "missing": (lambda path: None, "does not exist"),
    "directory": (lambda path: path.mkdir(), "is a directory"),
    "gzip": (lambda path: path.write_bytes(gzip.compress(b'{"loan_file_id": "1"}\n')), "gzip-compressed"),
    "utf-16": (lambda path: path.write_bytes('{"loan_file_id": "1"}\n'.encode("utf-16")), "UTF-16"),
    "pdf": (lambda path: path.write_bytes(b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n1 0 obj\n"), "a PDF document"),
    # A CSV export given to the JSONL workload: every line would be an unreadable record.
    "csv-export": (
        lambda path: path.write_text('loan_file_id,product,text\n1,auto,"two\nlines"\n'),
        "is CSV (its name and its first line), but loan_disclosure_review reads jsonl",
    ),
}
# The file name each kind is given (a CSV export keeps its .csv).
WHOLE_INPUT_SUFFIX = {"csv-export": ".csv"}
# Every record of this input is bad: the run quarantines each and says the input is at fault.
NOTHING_VALID = (
    b'{"loan_file_id": \n[1, 2]\n{"product": "auto", "text": "no key"}\nNaN\n{"loan_file_id": "x"}\n'
)


def input_format(name: str) -> str:
    return "csv" if name.endswith(".csv") else "jsonl"


def spec_reading(spec: WorkloadSpec, fmt: str, uri: str = "input") -> WorkloadSpec:
    """The workload reading ``fmt`` with the suite's record cap."""
    source = InputSpec(format=fmt, uri=uri, max_record_bytes=MAX_RECORD_BYTES)
    return spec.model_copy(update={"input": source})


def corpus_files(folder: Path) -> dict[str, Path]:
    """The committed files and the generated ones, by name (generated once per folder)."""
    write_generated(folder)
    paths = [*CORPUS.glob("*.jsonl"), *CORPUS.glob("*.csv"), *folder.glob("*.jsonl"), *folder.glob("*.csv")]
    return {p.name: p for p in paths}


@pytest.fixture(scope="module")
def generated(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return corpus_files(tmp_path_factory.mktemp("generated"))


def test_the_corpus_has_at_least_45_kinds_and_every_file_is_described(generated: dict[str, Path]) -> None:
    assert sorted(EXPECTED) == sorted(generated)
    csv_kinds = [name for name in EXPECTED if input_format(name) == "csv"]
    assert len(EXPECTED) + len(WHOLE_INPUTS) + 1 >= 45
    assert len(csv_kinds) >= 12
    assert sum(len(e["quarantined"]) for e in EXPECTED.values()) >= 40


def check_quarantine_row(row, expected: dict, line: int, offset: int = 0) -> None:
    assert row.quarantine_class == expected["class"], row.reason
    assert row.position == line
    assert row.reason.startswith(f"line {line}"), row.reason
    if "key" in expected:
        assert row.business_key == expected["key"]
        assert expected["key"] in row.reason
    if "first_seen" in expected:
        assert f"first seen at position {offset + expected['first_seen']}" in row.reason
    for words in expected["mentions"]:
        assert words in row.reason
    assert ACTIONS.search(row.reason), f"the reason says nothing to do: {row.reason!r}"
    assert "\x00" not in row.reason and "\x00" not in (row.business_key or "")


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_each_bad_record_is_quarantined_at_its_line_and_every_good_one_is_sharded(
    name: str, generated: dict[str, Path], tmp_path: Path
) -> None:
    source = generated[name]
    expected = EXPECTED[name]
    spec = spec_reading(load_workload(WORKLOAD), input_format(name))
    out = ObjectStoragePath(f"file://{tmp_path / 'shards'}")

    plan = write_shards(spec, read_records(spec.input, ObjectStoragePath(f"file://{source}")), out, RUN_DATE)

    assert plan.accounted()
    assert plan.records_read == count_input(spec, str(source))
    rows = [
        QuarantineEntry.model_validate_json(line)
        for line in (out / "quarantine.jsonl").read_bytes().split(b"\n")
        if line
    ]
    assert len(rows) == len(expected["quarantined"])
    for row, bad in zip(sorted(rows, key=lambda r: r.position), expected["quarantined"], strict=True):
        check_quarantine_row(row, bad, bad["line"])
    manifest = list(read_manifest(out / "manifest.jsonl"))
    # A record sent as chunks has an entry per chunk, all of its key, one after the other.
    assert list(dict.fromkeys(m.business_key for m in manifest)) == expected["published"]
    assert all(CUSTOM_ID.fullmatch(m.custom_id) for m in manifest)
    assert len({m.custom_id for m in manifest}) == len(manifest)


def combined_input(files: list[Path], destination: Path, *, headers: bool) -> tuple[dict[str, int], int]:
    """One input of several corpus files, one after the other; with ``headers`` (CSV), every file
    but the first loses its header line. Returns each file's line offset and the line count."""
    offsets: dict[str, int] = {}
    lines_so_far = 0
    destination.parent.mkdir(parents=True, exist_ok=True)
    with destination.open("wb") as out:
        for index, path in enumerate(files):
            content = path.read_bytes()
            offsets[path.name] = lines_so_far
            if headers and index > 0:
                content = content.split(b"\n", 1)[1]
                offsets[path.name] -= 1
            lines_so_far += content.count(b"\n")
            out.write(content)
    return offsets, lines_so_far


def loan_rows_csv(path: Path, count: int) -> Path:
    """``count`` ordinary loan files as CSV rows (keys 100000...), header first."""
    import csv
    import json

    from claude_demo.loans import write_loan_files

    jsonl = write_loan_files(path.with_suffix(".jsonl"), count)
    with path.open("w", newline="", encoding="utf-8") as out:
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(["loan_file_id", "product", "borrower_state", "text"])
        for line in jsonl.read_text(encoding="utf-8").splitlines():
            record = json.loads(line)
            writer.writerow([record[f] for f in ("loan_file_id", "product", "borrower_state", "text")])
    return path


@pytest.mark.parametrize("fmt", ["jsonl", "csv"])
def test_the_whole_corpus_end_to_end_quarantines_each_bad_record_and_publishes_every_good_one_once(
    fmt: str, store_url: str, pipeline_for, generated: dict[str, Path], tmp_path: Path
) -> None:
    pipeline = pipeline_for(store_url=store_url, processing_seconds=0.5)
    names = sorted(name for name in EXPECTED if input_format(name) == fmt)
    # What only the start of a file can hold goes first (a BOM on line 1; a BOM-only first line
    # above the CSV header); what only its end can hold stays last (99: truncated, unterminated).
    first = "21-byte-order-mark.jsonl" if fmt == "jsonl" else "c04-bom-only-first-line.csv"
    names.remove(first)
    # Enough ordinary loan files that the bulk goes through a batch, as on a real night.
    if fmt == "jsonl":
        good = pipeline.loan_input(GOOD_LOANS, name="good.jsonl")
    else:
        good = loan_rows_csv(tmp_path / "inputs" / "good.csv", GOOD_LOANS)
    files = [generated[first], good, *(generated[name] for name in names)]
    combined = tmp_path / "inputs" / f"bad_inputs.{fmt}"
    offsets, _ = combined_input(files, combined, headers=fmt == "csv")

    # A sample of 30: its valid answers are published as they are, the rest of the good files go in a batch.
    dag_run = pipeline.run(
        WORKLOAD, combined, sample_size=30, spec_changes=lambda spec: spec_reading(spec, fmt, str(combined))
    )

    assert dag_run.state == "success"
    store = pipeline.store()
    run = next(r for r in store.recent_runs(WORKLOAD) if r.logical_date == RUN_DATE)
    assert run.status == "succeeded"
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
        assert LoanReview.model_validate(output.output).loan_file_id == key
    accounting = store.accounting(run.id)
    assert accounting.balanced
    assert (accounting.inputs, accounting.published) == (len(published) + len(bad), len(published))
    assert run.report["inputs"] == run.report["published"] + run.report["quarantined_total"]
    stats = pipeline.emulator.stats()
    assert stats["batches_created"] == store.batches_created(run.id) >= 1
    assert stats["custom_id_max_submissions"] == 1  # no good record paid more than once


@pytest.mark.parametrize("kind", sorted(WHOLE_INPUTS))
def test_an_input_that_is_no_text_file_fails_the_run_naming_the_input_and_the_cause(
    kind: str, store_url: str, pipeline_for, tmp_path: Path
) -> None:
    make, cause = WHOLE_INPUTS[kind]
    path = tmp_path / "inputs" / f"loans-{kind}{WHOLE_INPUT_SUFFIX.get(kind, '.jsonl')}"
    path.parent.mkdir(parents=True, exist_ok=True)
    make(path)
    spec = load_workload(WORKLOAD)
    with pytest.raises(InputUnreadableError, match=re.escape(str(path))) as raised:
        count_input(spec, str(path))
    assert cause in str(raised.value)
    pipeline = pipeline_for(store_url=store_url)

    dag_run = pipeline.run(WORKLOAD, path)

    assert dag_run.state == "failed"
    states = {ti.task_id: ti.state for ti in dag_run.get_task_instances()}
    assert states["route"] == "failed"
    assert pipeline.emulator.stats()["messages_created"] == 0
    assert all(r.status != "running" for r in pipeline.store().recent_runs(WORKLOAD))


def test_an_input_with_no_valid_record_quarantines_each_and_blames_the_input_not_the_prompt(
    store_url: str, pipeline_for, tmp_path: Path
) -> None:
    path = tmp_path / "inputs" / "nothing-valid.jsonl"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(NOTHING_VALID)
    pipeline = pipeline_for(store_url=store_url)

    dag_run = pipeline.run(WORKLOAD, path)

    assert dag_run.state == "failed"
    states = {ti.task_id: ti.state for ti in dag_run.get_task_instances()}
    assert (states["sample_validate"], states["shard"], states["publish"]) == ("success", "success", "failed")
    store = pipeline.store()
    run = next(r for r in store.recent_runs(WORKLOAD) if r.logical_date == RUN_DATE)
    assert run.status == "failed"
    assert sorted(row.position for row in store.quarantine_rows(run.id)) == [1, 2, 3, 4, 5]
    assert (run.report["inputs"], run.report["published"], run.report["quarantined_total"]) == (5, 0, 5)
    stats = pipeline.emulator.stats()
    assert (stats["messages_created"], stats["batches_created"]) == (0, 0)


def test_a_format_mismatch_is_refused_only_when_name_and_first_line_agree(tmp_path: Path) -> None:
    spec = load_workload(WORKLOAD)
    jsonl = tmp_path / "loans.jsonl"
    jsonl.write_text('{"loan_file_id": "1", "product": "auto", "text": "t"}\n')
    with pytest.raises(InputUnreadableError, match=r"is JSONL .*reads csv .*Convert it to CSV"):
        count_input(spec_reading(spec, "csv"), str(jsonl))
    # A JSONL export whose first line is damaged is still read, that line quarantined.
    damaged = tmp_path / "damaged.jsonl"
    damaged.write_text('loan_file_id,product\n{"loan_file_id": "1", "product": "auto", "text": "t"}\n')
    assert count_input(spec_reading(spec, "jsonl"), str(damaged)) == 2
    # A .csv holding JSON lines is read as the spec says (the name alone decides nothing).
    named_csv = tmp_path / "loans.csv"
    named_csv.write_text(jsonl.read_text())
    assert count_input(spec_reading(spec, "jsonl"), str(named_csv)) == 1
