"""Download a batch's results and classify them into a partition folder: the partition stage's
work, shared by recovery rounds."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import httpx2
from airflow.sdk import ObjectStoragePath
from airflow.sdk.exceptions import AirflowFailException
from tenacity import Retrying, retry_if_exception, stop_after_attempt, wait_exponential

from claude_batch.faultpoints import crash_point
from claude_batch.hooks import ResultsIncompleteError, failure_cause
from claude_batch.stages.run import RunContext
from claude_batch.store import Store
from claude_batch.strategy.manifest import ManifestEntry, read_manifest
from claude_batch.strategy.partition import (
    PartitionSummary,
    ResultClass,
    partition_results,
    read_result_lines,
)

if TYPE_CHECKING:
    from claude_batch.hooks.claude import ClaudeBatchHook


def _download_may_be_retried(error: BaseException) -> bool:
    """A results download cut off mid-way (it surfaces as the HTTP client's transport error, not the
    SDK's), or failed for a transient cause."""
    if isinstance(error, (ResultsIncompleteError, httpx2.TransportError)):
        return True
    cause = failure_cause(error)
    return cause is not None and cause.transient


def fetch_results(store: Store, hook: ClaudeBatchHook, run: RunContext, submission: dict, log: Any) -> list:
    """The result files of a submission, downloaded once (a re-run reads the saved copy).

    A download cut off mid-way is retried: the results stay on the API for 29 days.
    """
    if submission["kind"] == "sync":
        return [ObjectStoragePath(p) for p in submission["results"]]
    batch = hook.get_batch(submission["batch_id"])
    counts = batch.request_counts.model_dump()
    store.update_attempt(submission["batch_id"], "ended", counts, batch.ended_at)
    destination = run.layout.batch_results(submission["round"], submission["shard_index"])
    destination.parent.mkdir(parents=True, exist_ok=True)
    expected = sum(counts.values())
    if (
        destination.exists()
        and sum(1 for line in read_result_lines([destination]) if not line.blank) == expected
    ):
        log.info("Results of batch %s already downloaded (%d lines)", batch.id, expected)
        return [destination]
    for try_ in Retrying(
        retry=retry_if_exception(_download_may_be_retried),
        stop=stop_after_attempt(5),
        wait=wait_exponential(multiplier=1, max=30),
        reraise=True,
    ):
        with try_:
            lines = hook.download_results(batch.id, destination, expected)
    log.info("Downloaded %d result lines of batch %s: %s", lines, batch.id, counts)
    return [destination]


def expected_requests(run: RunContext, submission: dict) -> Iterator[ManifestEntry]:
    """The manifest entries the submission was sent with, from its shard's own manifest."""
    round_number, shard = submission["round"], submission["shard_index"]
    own = run.layout.shard_manifest(round_number, shard)
    if own.exists():
        return read_manifest(own)
    # A run sharded before shards had manifests of their own: the round's, filtered.
    return read_manifest(run.layout.manifest(round_number), shard=shard)


def partition_submission(
    store: Store, hook: ClaudeBatchHook, run: RunContext, submission: dict, log: Any
) -> PartitionSummary:
    """Download (once) and partition one submission's results into its round's partition folder."""
    spec = run.spec()
    files = fetch_results(store, hook, run, submission, log)
    out_dir = run.layout.partition_dir(submission["round"], submission["shard_index"])
    summary = partition_results(
        read_result_lines(files), expected_requests(run, submission), spec.output_model(), out_dir
    )
    crash_point("partition.after_classify")
    if (
        submission.get("adopted")
        and summary.result_lines
        and (summary.counts[ResultClass.UNKNOWN] == summary.result_lines)
    ):
        raise AirflowFailException(
            f"Adopted batch {submission['batch_id']} holds none of shard {submission['shard_index']}'s "
            "custom_ids: it was not created by this run. Cancel it if it is nobody's, delete the "
            "ledger row of this attempt, and clear the submit task."
        )
    with run.layout.partition_summary(submission["round"], submission["shard_index"]).open("w") as out:
        out.write(summary.model_dump_json())
    counts = {c.value: n for c, n in summary.counts.items() if n}
    log.info(
        "Shard %d round %d: %d expected, %d result lines: %s; errored by kind %s",
        submission["shard_index"],
        submission["round"],
        summary.expected,
        summary.result_lines,
        counts,
        summary.errored_by_kind,
    )
    if not summary.accounted():
        raise AirflowFailException(
            f"Partition of shard {submission['shard_index']} round {submission['round']} does not add up: "
            f"{summary.expected} expected, classes {counts}"
        )
    return summary
