"""Cost: what the reference nightly run spends, against the same work all synchronous and against
the cost guard's estimate.

The reference scenario is the nightly loan review (``include/workloads/loan_disclosure_review.yaml``
as shipped: Sonnet 4.6, structured outputs, the system prompt cached with the 1 h TTL, its own
budget) over 60,000 synthetic loan files (the nightly size), run with ``airflow dags test`` against
the emulator with the demo's fault file (a few percent of every failure kind, so recovery rounds
run). The spend is read from the emulator's own accounting (``GET /_emulator/stats``: tokens per
service tier, ``standard`` = the synchronous sample and any synchronous calls, ``batch`` = the shards
and recovery rounds) and priced with the project's price table (``claude_batch.strategy.cost``). The
all-synchronous figures price the same tokens at the standard rate:

- ``ratio``: the run / the same requests sent synchronously with the same cached prefix: the batch
  discount, plus the sample paid at the full price, so never under 0.5 (0.5 + half the sample's
  share of the spend); target <= 0.50 at two decimals.
- ``ratio_cached``: the run / the same requests sent synchronously without prompt caching (every
  cached token billed as a plain input token): what a plain loop of synchronous calls pays; target
  <= 0.25.
- ``ratio_uncached``: the same run's tokens as if no prefix had been cached, batch / synchronous.
- ``estimate_error``: the cost guard's estimate (its lever in the run report) against the run's
  actual cost in the same report; target within 15 %.
- ``paid_twice``: records sent in a shard or a recovery round although the sample's answer to them
  was published (the sample is output, so 0), plus custom_ids sent in more than one first-round
  shard; target 0.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import yaml
from _nightly import (
    REPO,
    RUN_DATE,
    WORKLOAD,
    airflow_home,
    nightly_dags_folder,
    run_nightly,
    summary,
    write_inputs,
)

from claude_batch.strategy.cost import cost_usd
from claude_batch.strategy.spec import load_workload
from claude_batch.strategy.usage import Usage
from claude_batch.workloads import register_bundled_workloads
from claude_emulator.testing import running_emulator

RATIO_TARGET = 0.50
RATIO_CACHED_TARGET = 0.25
ESTIMATE_ERROR_TARGET = 0.15
FAULTS = REPO / "include" / "demo" / "faults.yaml"


def tier_usage(stats: dict, tier: str, cache_ttl: str) -> Usage:
    """A service tier's tokens from the emulator's stats; the spec's TTL names the cache writes' kind."""
    counts = stats["usage"].get(tier) or {}
    created = counts.get("cache_creation_input_tokens", 0)
    return Usage(
        input_tokens=counts.get("input_tokens", 0),
        output_tokens=counts.get("output_tokens", 0),
        cache_creation_input_tokens=created,
        cache_read_input_tokens=counts.get("cache_read_input_tokens", 0),
        cache_creation_1h_input_tokens=created if cache_ttl == "1h" else 0,
    )


def uncached(usage: Usage) -> Usage:
    """The same prompt tokens with nothing cached: every one billed as a plain input token."""
    return Usage(
        input_tokens=usage.input_tokens + usage.cache_creation_input_tokens + usage.cache_read_input_tokens,
        output_tokens=usage.output_tokens,
    )


def _custom_ids(path: Path) -> list[str]:
    """The custom_ids of a request file, read from each line's head (request lines start with it)."""
    ids = []
    with path.open("rb") as lines:
        for line in lines:
            if line.strip():
                head = line[: line.index(b'","params"')] if b'","params"' in line else line
                ids.append(json.loads(head + b'"}')["custom_id"])
    return ids


def paid_twice(run_dir: Path) -> tuple[int, int]:
    """(records sent again although the sample's answer was published, ids in two first-round shards)."""
    published = run_dir / "partitions" / "round-00" / "shard-1000000" / "succeeded.jsonl"
    from_sample = {
        json.loads(line)["custom_id"] for line in published.read_text().splitlines() if line.strip()
    }
    first_round = [
        c for shard in sorted((run_dir / "shards").glob("shard-*.jsonl")) for c in _custom_ids(shard)
    ]
    resent = set(first_round) | {
        c
        for round_file in (run_dir / "recovery").glob("round-*-shard-*.jsonl")
        for c in _custom_ids(round_file)
    }
    return len(from_sample & resent), len(first_round) - len(set(first_round))


def estimate_of(report: dict) -> float:
    guard = next(lever for lever in report.get("levers", []) if lever["lever"] == "cost guard")
    return float(guard["value"].split(", ")[0].split("$")[1].replace(",", ""))


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--records", type=int, default=60_000, help="loan files in the run (default 60,000)")
    parser.add_argument("--timeout", type=float, default=3600, help="seconds before the run is stopped")
    args = parser.parse_args()

    register_bundled_workloads()
    spec = load_workload("loan_disclosure_review")
    model, ttl = spec.model, spec.prompt.cache_ttl
    with tempfile.TemporaryDirectory(prefix="bench-cost-") as tmp:
        work = Path(tmp)
        input_path = write_inputs(work, args.records)
        faults = yaml.safe_load(FAULTS.read_text())
        with running_emulator(faults=faults, processing_seconds=0, seed=2026) as emulator:
            budget = spec.budget.usd if spec.budget else None
            dags = nightly_dags_folder(work, budget) if budget else None
            env = airflow_home(work, emulator.base_url, "airflow_home", dags_folder=dags)
            print(
                f"cost: {args.records:,} loan files through the nightly DAG (faults: {FAULTS.name})",
                flush=True,
            )
            started = time.perf_counter()
            measured, report = run_nightly(env, input_path, work / "dags-test.log", args.timeout)
            stats = emulator.stats()
            run_dir = work / "airflow_home" / "claude_batch_data" / WORKLOAD / RUN_DATE.isoformat()
            again_after_sample, in_two_shards = paid_twice(run_dir)
    batch, sync = tier_usage(stats, "batch", ttl), tier_usage(stats, "standard", ttl)
    spend = cost_usd(batch, model, batch=True) + cost_usd(sync, model, batch=False)
    all_sync_cached = cost_usd(batch + sync, model, batch=False)
    all_sync_plain = cost_usd(uncached(batch + sync), model, batch=False)
    spend_uncached = cost_usd(uncached(batch), model, batch=True) + cost_usd(
        uncached(sync), model, batch=False
    )
    ratio, ratio_cached = spend / all_sync_cached, spend / all_sync_plain
    ratio_uncached = spend_uncached / all_sync_plain
    counts = summary(report)
    actual = report.get("cost_usd") or 0.0
    estimated = estimate_of(report) if report.get("levers") else 0.0
    estimate_error = (estimated - actual) / actual if actual else float("inf")
    twice = again_after_sample + in_two_shards
    figures = {
        "benchmark": "cost",
        "records": args.records,
        "model": model,
        "ratio": round(ratio, 4),
        "ratio_cached": round(ratio_cached, 4),
        "ratio_uncached": round(ratio_uncached, 4),
        "spend_usd": round(spend, 4),
        "all_sync_usd": round(all_sync_cached, 4),
        "all_sync_uncached_usd": round(all_sync_plain, 4),
        "spend_uncached_usd": round(spend_uncached, 4),
        "report_cost_usd": report.get("cost_usd"),
        "estimated_usd": round(estimated, 4),
        "estimate_error": round(estimate_error, 4),
        "budget_usd": budget,
        "from_sample": report.get("from_sample"),
        "paid_twice": twice,
        "report_all_sync_cost_usd": report.get("all_sync_cost_usd"),
        "sync_requests": stats.get("messages_created"),
        "batch_requests": stats.get("batch_requests_submitted"),
        "batches_created": stats.get("batches_created"),
        "recovery_rounds": report.get("rounds"),
        "recovered": report.get("recovered"),
        "usage_batch": batch.model_dump(),
        "usage_standard": sync.model_dump(),
        **counts,
        "dag_test_exit_code": measured.returncode,
        "seconds": round(time.perf_counter() - started, 1),
        "ratio_target": RATIO_TARGET,
        "ratio_cached_target": RATIO_CACHED_TARGET,
        "estimate_error_target": ESTIMATE_ERROR_TARGET,
        "meets_targets": round(ratio, 2) <= RATIO_TARGET
        and ratio_cached <= RATIO_CACHED_TARGET
        and abs(estimate_error) <= ESTIMATE_ERROR_TARGET
        and twice == 0
        and counts["accounted"],
    }
    print(
        f"  sample + sync: {stats.get('messages_created')} calls; batches: {stats.get('batches_created')} "
        f"({stats.get('batch_requests_submitted'):,} requests, {report.get('rounds')} recovery rounds)"
    )
    print(
        f"  cache: {batch.cache_creation_input_tokens:,} tokens written, {batch.cache_read_input_tokens:,} read (batch)"
    )
    print(
        f"  spend ${spend:,.2f}; all synchronous ${all_sync_cached:,.2f} with the cached prefix, "
        f"${all_sync_plain:,.2f} without"
    )
    print(
        f"  cost guard estimate ${estimated:,.2f} against the actual ${actual:,.2f}: {estimate_error:+.1%} "
        f"(target within {ESTIMATE_ERROR_TARGET:.0%}); budget ${budget}; {report.get('from_sample')} "
        f"answers from the sample; paid twice: {twice}"
    )
    print(
        f"  ratio {ratio:.4f} (target <= {RATIO_TARGET} at two decimals); ratio_cached {ratio_cached:.3f} "
        f"(target <= {RATIO_CACHED_TARGET}); ratio_uncached {ratio_uncached:.3f}"
    )
    print(json.dumps(figures))
    return 0 if counts["accounted"] else 1


if __name__ == "__main__":
    sys.exit(main())
