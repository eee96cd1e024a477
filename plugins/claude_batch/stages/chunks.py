"""Publishing chunked records: merge the chunk answers of each record into its one output.

Used by the publish stage. A record is published when the answered chunks cover it (each chunk, or
the chunks it was split into in recovery); a record they do not cover is already quarantined by
recovery, naming the chunk that failed, and is quarantined here only if, somehow, it is not.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from claude_batch.stages.run import RunContext
from claude_batch.store import ManifestRow, OutputRow, QuarantineRow, Store
from claude_batch.strategy.chunking import chunked_records, covering_answers, merge_answers
from claude_batch.strategy.quarantine import QuarantineClass
from claude_batch.strategy.report import ChunkingReport
from claude_batch.strategy.spec import WorkloadSpec
from claude_batch.strategy.usage import Usage


@dataclass
class MergeOutcome:
    """What publishing the chunked records of a run did."""

    records_chunked: int = 0
    chunks_sent: int = 0
    records_merged: int = 0
    recovered: int = 0
    usage_by_source: dict[str, Usage] = field(default_factory=lambda: {"batch": Usage(), "sync": Usage()})

    def summary(self, cost_usd: float) -> ChunkingReport:
        return ChunkingReport(
            records_chunked=self.records_chunked,
            chunks_sent=self.chunks_sent,
            records_merged=self.records_merged,
            cost_usd=round(cost_usd, 6),
        )


def publish_chunked_records(
    store: Store,
    run: RunContext,
    spec: WorkloadSpec,
    entries: Sequence[ManifestRow],
    answers: Mapping[str, OutputRow],
    log: logging.Logger | Any,
) -> MergeOutcome:
    """Upsert one merged output per chunked record whose chunks are all answered; quarantine the rest
    that recovery did not already quarantine."""
    outcome = MergeOutcome(chunks_sent=len(entries))
    for row in answers.values():
        source = "sync" if row.source == "sync" else "batch"
        outcome.usage_by_source[source] = outcome.usage_by_source[source] + row.usage
    if spec.chunking is None:
        raise ValueError(f"the run holds chunks, but the spec {spec.name} has no chunking section")
    rule = spec.chunking.merge_rule()
    output_model = spec.output_model()
    already = {row.position for row in store.quarantine_rows(run.store_run_id)}
    merged: list[OutputRow] = []
    unmerged: list[QuarantineRow] = []
    for record in chunked_records(entries):
        outcome.records_chunked += 1
        covering, failed = covering_answers(record.root, record.nodes, answers)
        if failed is not None:
            if record.position not in already:
                unmerged.append(
                    QuarantineRow(
                        quarantine_class=QuarantineClass.CHUNK_UNANSWERED,
                        reason=f"{record.root} ({record.business_key}): chunk {failed} has no valid answer, "
                        "so the record cannot be answered whole; clear recover to try it again",
                        position=record.position,
                        custom_id=failed,
                        business_key=record.business_key,
                    )
                )
            continue
        parts = [answers[custom_id] for custom_id in covering]
        try:
            output = merge_answers(rule, output_model, [part.output for part in parts])
        except Exception as error:  # the merge rule is the workload's code: any failure is the record's
            unmerged.append(
                QuarantineRow(
                    quarantine_class=QuarantineClass.MERGE_FAILED,
                    reason=f"{record.root} ({record.business_key}): merging its {len(parts)} chunk answers "
                    f"with {spec.chunking.merge} failed: {error}; fix the merge rule and clear publish",
                    position=record.position,
                    custom_id=record.root,
                    business_key=record.business_key,
                )
            )
            continue
        last = max(parts, key=lambda part: part.round)
        usage = Usage.total(part.usage for part in parts)
        merged.append(
            OutputRow(
                business_key=record.business_key,
                custom_id=record.root,
                output=output.model_dump(mode="json"),
                model=parts[0].model,
                source=last.source,
                round=last.round,
                **OutputRow.token_counts(usage),
            )
        )
        outcome.recovered += last.round > 0
    outcome.records_merged = store.upsert_outputs(spec.name, run.run_date, merged)
    if unmerged:
        store.quarantine(run.store_run_id, unmerged)
    log.info(
        "Chunked records: %d, sent as %d chunks; %d merged and published, %d not (quarantined)",
        outcome.records_chunked,
        outcome.chunks_sent,
        outcome.records_merged,
        outcome.records_chunked - outcome.records_merged,
    )
    return outcome
