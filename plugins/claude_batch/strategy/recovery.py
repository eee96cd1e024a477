"""Recovery planning: what to do with each failed request, and the next round's request files.

Each failure gets one remedy, by its cause (``failures`` declares which cause gets which):

- ``retry`` as is: transient server-side errors (overloaded_error, ...), when the spec's
  ``recovery.retry`` lists them;
- ``requeue`` as is: requests that were never processed (expired, canceled, missing), likewise;
- ``split``: a prompt the API found too long is split into chunks (``sharding.split_request``) that
  go into the next round, when the spec declares ``chunking``, up to ``chunking.max_depth`` times;
  the record is published when its chunks are answered, merged (nothing is cut out of it);
- ``repair``: an answer that is not a valid output gets its request resent once with an instruction
  to answer only with one JSON object matching the schema (the cached system prefix is untouched);
- ``quarantine``: everything no resubmission will fix (an invalid request, a second invalid answer,
  a cause the policy does not retry, attempts exhausted) and run-level problems (the API key or
  the account refused), which are not the record's fault: the plan reports them
  separately so the run can fail loudly instead of resubmitting into the same wall.

Only failures are resubmitted: the original request lines are found by custom_id in the round's
request files, so nothing but the failed requests is read into the next round, and nothing is
re-rendered. Streaming throughout; failures awaiting their request line wait in an on-disk index.
"""

from __future__ import annotations

import json
import re
import sqlite3
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping
from contextlib import ExitStack, closing
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ConfigDict

from claude_batch.strategy._json import json_line
from claude_batch.strategy._scratch import scratch_db
from claude_batch.strategy.failures import (
    REQUEST_TOO_LARGE,
    FailureCause,
    RecoveryAction,
    ResultClass,
    cause_of_failure,
)
from claude_batch.strategy.layout import manifest_name, quarantine_name
from claude_batch.strategy.lines import jsonl_lines
from claude_batch.strategy.manifest import ManifestWriter
from claude_batch.strategy.partition import FailureRecord
from claude_batch.strategy.paths import OutputDir, ReadablePath
from claude_batch.strategy.quarantine import QuarantineClass, QuarantineEntry
from claude_batch.strategy.requests import request_builder
from claude_batch.strategy.sharding import ChunkRequest, Shard, ShardWriter, split_request
from claude_batch.strategy.spec import ChunkingSpec, RecoverySpec, WorkloadSpec

REPAIR_INSTRUCTION = (
    "Answer only with one JSON object that matches this JSON schema, with no text before or after it"
)
_TOKEN_COUNTS = re.compile(r"(\d[\d,]*)\s*tokens\s*>\s*(\d[\d,]*)")
# Share of the allowed size a split chunk aims at, leaving room for the estimate's error; a chunk of
# a refused request is at most half of it (a split makes two chunks at least).
_SPLIT_HEADROOM = 0.9
_SPLIT_KEEP = 0.5


@dataclass(frozen=True, slots=True)
class Remedy:
    """The action for one failure; for ``quarantine``, the class and the reason."""

    action: RecoveryAction
    reason: str
    quarantine_class: QuarantineClass | None = None


def is_too_long(failure: FailureRecord) -> bool:
    """The API refused the request as longer than the context window or the request size."""
    return _cause(failure) is REQUEST_TOO_LARGE


def _cause(failure: FailureRecord) -> FailureCause:
    return cause_of_failure(failure.result_class, failure.error_kind, failure.message)


def remedy_for(
    failure: FailureRecord, policy: RecoverySpec, round_number: int, chunking: ChunkingSpec | None = None
) -> Remedy:
    """The remedy for a failure of round ``round_number`` (0 = first submission) under ``policy``;
    ``chunking`` (the spec's) lets a request refused as too long be split."""
    attempts = round_number + 1
    last = failure.error_kind or failure.result_class.value
    remedy = _resubmission(failure, _cause(failure), policy, chunking)
    if remedy.action is RecoveryAction.QUARANTINE:
        return remedy
    if round_number >= policy.max_rounds:
        return Remedy(
            RecoveryAction.QUARANTINE,
            f"attempts exhausted: sent {attempts} times (recovery.max_rounds {policy.max_rounds}); "
            f"last failure {last}: {failure.message}",
            QuarantineClass.ATTEMPTS_EXHAUSTED,
        )
    return remedy


def _resubmission(
    failure: FailureRecord, cause: FailureCause, policy: RecoverySpec, chunking: ChunkingSpec | None
) -> Remedy:
    """The remedy by cause alone, before the attempt count is considered: the cause's action when
    the policy allows it, else quarantine with the cause's reason."""
    named = failure.error_kind or failure.result_class.value
    allowed = {
        RecoveryAction.RETRY: cause.name in policy.retry,
        RecoveryAction.REQUEUE: cause.name in policy.retry,
        RecoveryAction.REPAIR: policy.repair_invalid_output,
        RecoveryAction.SPLIT: chunking is not None,
        RecoveryAction.QUARANTINE: False,
    }[cause.action]
    if allowed:
        return Remedy(cause.action, cause.resent_reason(named, failure.message))
    return Remedy(
        RecoveryAction.QUARANTINE, cause.quarantined_reason(named, failure.message), cause.quarantine
    )


def repair_request(params: dict[str, Any], output_schema: dict[str, Any]) -> dict[str, Any] | None:
    """``params`` with the strict JSON instruction appended to the last user message; None if it
    already carries it (a request is repaired once)."""
    messages = params["messages"]
    content = messages[-1]["content"]
    if REPAIR_INSTRUCTION in json.dumps(content):
        return None
    instruction = f"{REPAIR_INSTRUCTION}:\n{json.dumps(output_schema)}"
    repaired = (
        f"{content}\n\n{instruction}"
        if isinstance(content, str)
        else [*content, {"type": "text", "text": instruction}]
    )
    return {**params, "messages": [*messages[:-1], {**messages[-1], "content": repaired}]}


class RecoveryPlan(BaseModel):
    """The next round: its request files and manifest, and what was quarantined instead.

    :param failures: failures considered (``unknown`` lines excluded: they match no request).
    :param requests: requests in the next round's files.
    :param chunks_added: requests beyond one per failure: a failure split into N chunks adds N - 1.
    :param run_level_problems: error kinds that point at the run, not the records, with counts.
    """

    model_config = ConfigDict(extra="forbid")

    next_round: int
    shards: list[Shard]
    manifest_path: str
    quarantine_path: str
    failures: int
    requests: int
    actions: dict[RecoveryAction, int]
    quarantined: dict[QuarantineClass, int]
    run_level_problems: dict[str, int]
    ignored_unknown: int
    chunks_added: int = 0

    def accounted(self) -> bool:
        """Every failure is either in the next round (split ones as several chunks) or quarantined, once."""
        return self.failures == self.requests - self.chunks_added + sum(self.quarantined.values())

    def summary_lines(self) -> list[str]:
        actions = ", ".join(f"{a.value} {n}" for a, n in sorted(self.actions.items())) or "none"
        lines = [
            f"recovery round {self.next_round}: {self.failures} failures -> {self.requests} resent "
            f"in {len(self.shards)} file(s), {sum(self.quarantined.values())} quarantined ({actions})"
        ]
        if self.run_level_problems:
            kinds = ", ".join(f"{kind} x{n}" for kind, n in sorted(self.run_level_problems.items()))
            lines.append(
                f"RUN-LEVEL PROBLEM ({kinds}): fix the connection or account; not the records' fault"
            )
        if self.ignored_unknown:
            lines.append(
                f"{self.ignored_unknown} result line(s) matched no request of the batch and were ignored"
            )
        return lines


class _Pending:
    """Failures waiting for their request line, by custom_id, on disk."""

    def __init__(self) -> None:
        self._db = scratch_db(
            "CREATE TABLE pending (custom_id TEXT PRIMARY KEY, failure TEXT NOT NULL, action TEXT NOT NULL,"
            " found INTEGER NOT NULL DEFAULT 0) WITHOUT ROWID"
        )
        self.waiting = 0  # failures added and not yet taken

    def add(self, failure: FailureRecord, action: RecoveryAction) -> None:
        try:
            self._db.execute(
                "INSERT INTO pending (custom_id, failure, action) VALUES (?, ?, ?)",
                (failure.custom_id, failure.model_dump_json(), action.value),
            )
        except sqlite3.IntegrityError as error:
            raise ValueError(f"{failure.custom_id} is listed twice among the failures") from error
        self.waiting += 1

    def take(self, custom_id: str) -> tuple[FailureRecord, RecoveryAction] | None:
        row = self._db.execute(
            "UPDATE pending SET found = 1 WHERE custom_id = ? AND found = 0 RETURNING failure, action",
            (custom_id,),
        ).fetchone()
        if row is None:
            return None
        self.waiting -= 1
        return FailureRecord.model_validate_json(row[0]), RecoveryAction(row[1])

    def not_found(self) -> list[str]:
        return [row[0] for row in self._db.execute("SELECT custom_id FROM pending WHERE found = 0 LIMIT 5")]

    def close(self) -> None:
        self._db.close()


def _request_lines(paths: Iterable[ReadablePath]) -> Iterator[dict[str, Any]]:
    for line in jsonl_lines(paths):
        yield json.loads(line)


def _fixed_params(
    params: dict[str, Any], failure: FailureRecord, action: RecoveryAction, output_schema: dict[str, Any]
) -> dict[str, Any] | tuple[QuarantineClass, str]:
    """The params to resend for ``action``, or (class, reason) to quarantine when the fix was tried before."""
    if action is RecoveryAction.REPAIR:
        repaired = repair_request(params, output_schema)
        if repaired is None:
            return (
                QuarantineClass.INVALID_OUTPUT,
                f"still not a valid output after one repair: {failure.message}",
            )
        return repaired
    return params


@dataclass(frozen=True, slots=True)
class SplitSource:
    """What splitting a refused request needs: its record, read again from the input, and which part
    of the chunked field the request held.

    :param depth: 0 for a whole record, 1 for a chunk of one, ...
    :param span: the request's text in the record's chunked field (start, end); None: all of it.
    """

    record: BaseModel
    position: int | None
    depth: int = 0
    span: tuple[int, int] | None = None


def _split(
    spec: WorkloadSpec, failure: FailureRecord, source: SplitSource | None
) -> list[ChunkRequest] | tuple[QuarantineClass, str]:
    """The chunks a request refused as too long is split into, or why it is quarantined instead."""
    chunking = spec.chunking
    assert chunking is not None and chunking.field is not None
    if source is None:
        return (
            QuarantineClass.CONTEXT_WINDOW,
            f"too long ({failure.message}), and its record was not found in the input again to split it; "
            "the input changed during the run: trigger the date again",
        )
    if source.depth + 1 > chunking.max_depth:
        return (
            QuarantineClass.CONTEXT_WINDOW,
            f"still too long as a chunk {source.depth} deep (chunking.max_depth {chunking.max_depth}): "
            f"{failure.message}; lower chunking.max_tokens or shorten the prompt",
        )
    text = getattr(source.record, chunking.field)
    span = source.span or (0, len(text))
    keep = _SPLIT_KEEP
    if counts := _TOKEN_COUNTS.search(failure.message):
        actual, allowed = (int(n.replace(",", "")) for n in counts.groups())
        keep = min(keep, allowed / actual * _SPLIT_HEADROOM)
    max_bytes = int(len(text[span[0] : span[1]].encode()) * keep)
    builder = request_builder(spec)
    chunks = split_request(spec, builder, source.record, failure.custom_id, span, source.depth + 1, max_bytes)
    if isinstance(chunks, str):
        return QuarantineClass.CONTEXT_WINDOW, f"too long ({failure.message}), and {chunks}"
    return chunks


def plan_recovery(
    spec: WorkloadSpec,
    failures: Iterable[FailureRecord],
    request_files: Iterable[ReadablePath],
    round_number: int,
    out_dir: OutputDir,
    split_sources: Mapping[str, SplitSource] | None = None,
) -> RecoveryPlan:
    """Decide every failure of round ``round_number`` and write round ``round_number + 1``'s files.

    :param failures: e.g. ``partition.read_failures(partition_dir)`` (several shards may be chained).
    :param request_files: the request files the failures were sent in (that round's shard files).
    :param split_sources: for the failures refused as too long (``is_too_long``), their records, by
        custom_id, when the spec declares ``chunking``; a failure without one is quarantined.
    :param out_dir: receives ``round-NN-shard-00000.jsonl`` ..., ``round-NN-manifest.jsonl`` and
        ``round-NN-quarantine.jsonl`` (NN = the next round).
    """
    next_round = round_number + 1
    out_dir.mkdir(parents=True, exist_ok=True)
    manifest_path = out_dir / manifest_name(next_round)
    quarantine_path = out_dir / quarantine_name(next_round)
    actions: Counter[RecoveryAction] = Counter()
    quarantined: Counter[QuarantineClass] = Counter()
    run_level: Counter[str] = Counter()
    considered = ignored_unknown = requests = chunks_added = 0
    output_schema = spec.output_model().model_json_schema()

    with ExitStack() as stack:
        pending = stack.enter_context(closing(_Pending()))
        shards = stack.enter_context(
            ShardWriter(out_dir, next_round, spec.sharding.target_requests, spec.sharding.target_bytes)
        )
        manifest = stack.enter_context(ManifestWriter(out_dir, next_round))
        quarantine = stack.enter_context(quarantine_path.open("wb"))

        def to_quarantine(failure: FailureRecord, quarantine_class: QuarantineClass, reason: str) -> None:
            actions[RecoveryAction.QUARANTINE] += 1
            quarantined[quarantine_class] += 1
            entry = QuarantineEntry(
                quarantine_class=quarantine_class,
                reason=f"{failure.custom_id} ({failure.business_key}): {reason}",
                custom_id=failure.custom_id,
                business_key=failure.business_key,
                attempts=round_number + 1,
            )
            quarantine.write(entry.model_dump_json().encode() + b"\n")

        for failure in failures:
            if failure.result_class is ResultClass.UNKNOWN:
                ignored_unknown += 1
                continue
            considered += 1
            remedy = remedy_for(failure, spec.recovery, round_number, spec.chunking)
            if remedy.quarantine_class is None:
                pending.add(failure, remedy.action)
                continue
            if remedy.quarantine_class is QuarantineClass.RUN_LEVEL and failure.error_kind:
                run_level[failure.error_kind] += 1
            to_quarantine(failure, remedy.quarantine_class, remedy.reason)

        for request in _request_lines(request_files):
            if not pending.waiting:
                # Every failure has its line (or there were none): the rest of the files holds none
                # of them. Without this, a clean run read and parsed every request it sent.
                break
            taken = pending.take(request["custom_id"])
            if taken is None:
                continue
            failure, action = taken
            if action is RecoveryAction.SPLIT:
                chunks = _split(spec, failure, (split_sources or {}).get(failure.custom_id))
                if isinstance(chunks, tuple):
                    to_quarantine(failure, *chunks)
                    continue
                source = (split_sources or {})[failure.custom_id]
                for chunk in chunks:
                    entry = {
                        "custom_id": chunk.custom_id,
                        "business_key": failure.business_key,
                        "shard": shards.add(chunk.line),
                        "round": next_round,
                        "position": source.position,
                        "action": action.value,
                    }
                    manifest.write(entry | chunk.manifest_fields())
                requests += len(chunks)
                chunks_added += len(chunks) - 1
                actions[action] += 1
                continue
            params = _fixed_params(request["params"], failure, action, output_schema)
            if isinstance(params, tuple):
                to_quarantine(failure, *params)
                continue
            line = json_line({"custom_id": request["custom_id"], "params": params})
            if len(line) > spec.max_request_bytes:
                to_quarantine(
                    failure,
                    QuarantineClass.REQUEST_TOO_LARGE,
                    f"the request to resend ({action.value}) is {len(line)} bytes, "
                    f"over max_request_bytes {spec.max_request_bytes}",
                )
                continue
            entry = {
                "custom_id": request["custom_id"],
                "business_key": failure.business_key,
                "shard": shards.add(line),
                "round": next_round,
                "position": None,
                "action": action.value,
            }
            manifest.write(entry)
            requests += 1
            actions[action] += 1
        lost = pending.not_found()

    if lost:
        raise ValueError(
            f"the request lines of {', '.join(lost)} (and maybe more) are not in the request files "
            "given; pass the files the failed requests were sent in"
        )
    return RecoveryPlan(
        next_round=next_round,
        shards=shards.shards,
        manifest_path=str(manifest_path),
        quarantine_path=str(quarantine_path),
        failures=considered,
        requests=requests,
        actions=dict(actions),
        quarantined=dict(quarantined),
        run_level_problems=dict(run_level),
        ignored_unknown=ignored_unknown,
        chunks_added=chunks_added,
    )
