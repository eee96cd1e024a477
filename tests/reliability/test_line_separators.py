"""Result lines whose keys and answers hold every character that some line splitter takes for a line
end: JSONL ends a line at ``\\n`` only, so each request is paid once and published once."""

from __future__ import annotations

import json
from datetime import date

from claude_demo.loans import loan_files
from claude_workloads.loan_disclosure_review import LoanReview

WORKLOAD = "loan_disclosure_review"
RUN_DATE = date(2026, 6, 7)
# What str.splitlines() (and HTTP libraries' iter_lines) split on besides \n and \r.
SEPARATORS = ["\u2028", "\u2029", "\u0085", "\x0b", "\x0c", "\x1c", "\x1d", "\x1e"]
RECORDS = 120  # over the spec's min_batch_volume: the bulk goes through a batch and its results file
SAMPLE = 30  # answered by the sample, published as they are: the other 90 go in the batch


def test_answers_holding_every_unicode_line_separator_are_paid_once_and_published_once(
    store_url: str, pipeline_for
) -> None:
    pipeline = pipeline_for(store_url=store_url, processing_seconds=0.5)
    path = pipeline.tmp_path / "inputs" / "separators.jsonl"
    path.parent.mkdir(parents=True, exist_ok=True)
    keys = []
    with path.open("w", encoding="utf-8") as out:
        for index, record in enumerate(loan_files(RECORDS, 7)):
            separator = SEPARATORS[index % len(SEPARATORS)]
            # The key is echoed in the answer (LoanReview.loan_file_id), so the result line holds it.
            record["loan_file_id"] = f"{record['loan_file_id']}{separator}{index}"
            record["text"] = record["text"].replace("\n\n", f"\n{separator}\n", 1)
            keys.append(record["loan_file_id"])
            # ensure_ascii=False: U+2028, U+2029 and U+0085 go into the input raw, as exports write them.
            out.write(json.dumps(record, ensure_ascii=False) + "\n")

    dag_run = pipeline.run(WORKLOAD, path, sample_size=SAMPLE)

    assert dag_run.state == "success"
    store = pipeline.store()
    run = next(r for r in store.recent_runs(WORKLOAD) if r.logical_date == RUN_DATE)
    assert store.quarantine_rows(run.id) == []
    assert store.outputs_count(WORKLOAD, RUN_DATE) == RECORDS
    for key in keys:
        output = store.get_output(WORKLOAD, key, RUN_DATE)
        assert output is not None, repr(key)
        assert LoanReview.model_validate(output.output).loan_file_id == key
        assert output.round == 0  # answered by the first batch: nothing was resent
    results = b"".join(p.read_bytes() for p in (pipeline.tmp_path / "data").rglob("results/round-00/*.jsonl"))
    assert all(separator.encode() in results for separator in ("\u2028", "\u2029", "\u0085"))
    stats = pipeline.emulator.stats()
    assert stats["batches_created"] == store.batches_created(run.id) == 1
    assert stats["custom_id_max_submissions"] == 1
    # Each record paid once: the sample's through the Messages API, the rest in the batch.
    assert (stats["messages_created"], stats["batch_requests_submitted"]) == (SAMPLE, RECORDS - SAMPLE)
