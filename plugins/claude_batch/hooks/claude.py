"""Claude clients from an Airflow connection, with the batch calls the pipeline needs.

Reuses ``AnthropicHook`` of apache-airflow-providers-anthropic for everything about building
clients (connection type ``anthropic``; host = base URL, so the emulator and the real API are
the same code path) and adds what the provider's hook does not do: stream a shard file as the
batch body, find an orphaned batch, download results as raw lines, and run a request file
through the synchronous Messages API with bounded concurrency.
"""

from __future__ import annotations

import asyncio
import inspect
import json
from collections.abc import Iterator
from typing import IO, Any, Protocol

import anthropic
from airflow.providers.anthropic.hooks.anthropic import FIRST_PARTY_PLATFORMS, AnthropicHook
from anthropic.types.messages import MessageBatch
from tenacity import retry, retry_if_exception_type, stop_after_delay, wait_exponential

from claude_batch.hooks import ResultsIncompleteError
from claude_batch.strategy.batch_api import EARLY_404_GRACE_SECONDS
from claude_batch.strategy.failures import (
    CLIENT_TIMEOUT,
    CONNECTION,
    REQUEST_TOO_LARGE,
    FailureCause,
    ResultClass,
    cause_of_api_error,
    cause_of_failure,
)
from claude_batch.strategy.layout import part_name, result_parts
from claude_batch.strategy.lines import Line, jsonl_lines, read_lines, split_lines
from claude_batch.strategy.partition import MAX_RESULT_LINE_BYTES, sync_result_line
from claude_batch.strategy.spec import MAX_BATCH_BYTES

# The batch create body is `{"requests": [line, line, ...]}`; shard files already hold the lines,
# so the body is streamed from disk in chunks of about this size instead of built in memory.
_BODY_CHUNK_BYTES = 1 << 20


class PathLike(Protocol):
    """What the hook needs of a file location: pathlib.Path and ObjectStoragePath both fit."""

    def open(self, mode: str = ...) -> IO[Any]: ...


def _batch_body(requests_file: PathLike) -> Iterator[bytes]:
    yield b'{"requests":['
    pending = bytearray()
    first = True
    for line in jsonl_lines([requests_file], MAX_BATCH_BYTES):
        if not first:
            pending += b","
        pending += line
        first = False
        if len(pending) >= _BODY_CHUNK_BYTES:
            yield bytes(pending)
            pending.clear()
    pending += b"]}"
    yield bytes(pending)


# The SDK's typed create() no longer lists every parameter the API reads (2.x dropped the sampling
# ones); those go in the body as they are, so a request file means the same sync or in a batch.
_CREATE_PARAMETERS = frozenset(inspect.signature(anthropic.resources.messages.Messages.create).parameters) - {
    "self",
    "extra_headers",
    "extra_query",
    "extra_body",
    "timeout",
}


def _create_arguments(params: dict[str, Any]) -> dict[str, Any]:
    """``messages.create`` keyword arguments for batch-request ``params``."""
    known = {name: value for name, value in params.items() if name in _CREATE_PARAMETERS}
    extra = {name: value for name, value in params.items() if name not in _CREATE_PARAMETERS}
    return {**known, "extra_body": extra} if extra else known


def failure_cause(error: BaseException) -> FailureCause | None:
    """The taxonomy's cause of an SDK error, read from the status and body the API answered with;
    None for an error that is neither the API's answer nor the network's.

    The SDK's exception classes are not listed here on purpose: its status subclasses change from
    release to release, while the API's statuses and error types are what the taxonomy declares.
    """
    if isinstance(error, anthropic.APIStatusError):
        return cause_of_api_error(_error_type(error), error.status_code)
    # A subclass of the connection error: test it first.
    if isinstance(error, anthropic.APITimeoutError):
        return CLIENT_TIMEOUT
    if isinstance(error, anthropic.APIConnectionError):
        return CONNECTION
    return None


def _error_body(error: anthropic.APIStatusError) -> dict[str, Any]:
    """The ``error`` object of the API's error body (``{"type": ..., "message": ...}``), or {}."""
    body = error.body if isinstance(error.body, dict) else {}
    inner = body.get("error") if isinstance(body.get("error"), dict) else body
    return inner if isinstance(inner, dict) else {}


def _error_type(error: anthropic.APIStatusError) -> str | None:
    """``error.type`` of the API's error body, if it sent one."""
    error_type = _error_body(error).get("type")
    return error_type if isinstance(error_type, str) and error_type != "error" else None


def refused_as_too_long(error: BaseException) -> bool:
    """The API refused the call because the prompt is too long for the model: read as recovery reads
    a failed result (a 413, or an invalid request whose message says the prompt is too long)."""
    if not isinstance(error, anthropic.APIStatusError):
        return False
    message = _error_body(error).get("message")
    cause = cause_of_failure(ResultClass.ERRORED, _error_type(error), str(message or error))
    return error.status_code == 413 or cause is REQUEST_TOO_LARGE


def error_kind(error: anthropic.APIStatusError | anthropic.APIConnectionError) -> str:
    """The error kind a synchronous call's result line records: the API's own error type when it sent
    one (a type the taxonomy does not know yet included), else the taxonomy's cause."""
    if isinstance(error, anthropic.APIStatusError) and (error_type := _error_type(error)):
        return error_type
    cause = failure_cause(error)
    assert cause is not None
    return cause.written_as or cause.name


class ClaudeBatchHook(AnthropicHook):
    """``AnthropicHook`` plus streaming, double-spend-safe Message Batches calls.

    :param conn_id: the Airflow connection of type ``anthropic`` (password = API key, host = base URL).
    """

    hook_name = "Claude batch"

    @property
    def first_party(self) -> bool:
        """Whether the connection reaches the first-party API, which alone serves Message Batches and
        count_tokens (the provider's Bedrock, Vertex AI and Foundry platforms do not)."""
        return self.platform in FIRST_PARTY_PLATFORMS

    def create_batch_from_file(self, requests_file: PathLike) -> MessageBatch:
        """Create one batch whose requests are the JSONL lines of ``requests_file``, streamed.

        The SDK's automatic retries are off for this one call: a create whose response was lost
        may have created a batch, and a blind retry would pay for it twice. The caller retries
        only after looking for that batch (see ``newest_batch`` and ``Store.batch_create_lock``).
        """
        client = self.get_conn().with_options(max_retries=0)
        return client.post(
            "/v1/messages/batches",
            content=_batch_body(requests_file),
            cast_to=MessageBatch,
            options={"headers": {"content-type": "application/json"}},
        )

    @retry(
        retry=retry_if_exception_type(anthropic.NotFoundError),
        stop=stop_after_delay(EARLY_404_GRACE_SECONDS),
        wait=wait_exponential(multiplier=0.5, max=4),
        reraise=True,
    )
    def get_batch(self, batch_id: str) -> MessageBatch:
        """Retrieve a batch (idempotent; the SDK retries transient errors).

        A 404 just after create is the API's eventual consistency (SDK issue #1432), so it is retried
        for a few seconds before it is believed.
        """
        return self.get_conn().messages.batches.retrieve(batch_id)

    def cancel_batch(self, batch_id: str) -> MessageBatch:
        """Ask the API to cancel a batch; requests already done keep their results."""
        return self.get_conn().messages.batches.cancel(batch_id)

    def newest_batch(self) -> MessageBatch | None:
        """The most recently created batch of the workspace, or None when it has none."""
        page = self.get_conn().messages.batches.list(limit=1)
        return page.data[0] if page.data else None

    def download_results(self, batch_id: str, destination: PathLike, expected_lines: int) -> int:
        """Write the batch's results JSONL to ``destination`` byte for byte; return the line count.

        Raw bytes, not SDK models: memory stays flat and partition reads the wire format itself. Lines
        are counted as every reader here splits them (``\n`` only: the HTTP library's ``iter_lines``
        would also split on U+2028 and the like inside an answer). A stream cut off mid-way is detected
        by counting whole lines against the batch's request count.
        """
        decoder = self.get_conn().messages.batches.results(batch_id)
        try:
            with destination.open("wb") as out:

                def written(chunks: Iterator[bytes]) -> Iterator[bytes]:
                    for chunk in chunks:
                        out.write(chunk)
                        yield chunk

                lines = sum(
                    1
                    for line in split_lines(
                        written(decoder.http_response.iter_bytes()), MAX_RESULT_LINE_BYTES
                    )
                    if not line.blank and (line.terminated or _complete(line))
                )
        finally:
            decoder.close()
        if lines < expected_lines:
            raise ResultsIncompleteError(
                f"Results of batch {batch_id} stopped after {lines} of {expected_lines} lines; "
                "the download is retried (the results stay on the API for 29 days)."
            )
        return lines

    def run_messages(self, requests_file: PathLike, results_dir: Any, *, concurrency: int) -> list[Any]:
        """Send each request line through the Messages API, writing batch-format result lines.

        The same result format as a batch means partition, recovery and publish do not care which
        route produced a result. Rate limits are handled by the SDK (it honours ``retry-after``);
        what still fails becomes an ``errored`` line that recovery classifies like a batch error.

        Results go to ``part-NNN.jsonl`` files in ``results_dir``. A retried task reads the parts an
        earlier try wrote and sends only the requests that have no result yet, so a crash mid-way
        never pays twice for the requests already answered. Returns every part, oldest first.
        """
        results_dir.mkdir(parents=True, exist_ok=True)
        parts = result_parts(results_dir)
        answered = _answered_ids(parts)
        new_part = results_dir / part_name(len(parts))
        sent = asyncio.run(self._run_messages(requests_file, new_part, answered, concurrency))
        if sent:
            parts.append(new_part)
        else:
            new_part.unlink(missing_ok=True)
        return parts

    async def _run_messages(
        self, requests_file: PathLike, results_file: PathLike, answered: set[str], concurrency: int
    ) -> int:
        queue: asyncio.Queue[tuple[str, dict] | None] = asyncio.Queue(maxsize=concurrency * 2)
        written = 0
        async with await self.get_async_conn() as client:
            with results_file.open("wb") as out:

                async def send_all() -> None:
                    nonlocal written
                    while (item := await queue.get()) is not None:
                        custom_id, params = item
                        try:
                            message = await client.messages.create(**_create_arguments(params))
                            line = sync_result_line(custom_id, message.model_dump(mode="json"))
                        except (anthropic.APIStatusError, anthropic.APIConnectionError) as error:
                            line = sync_result_line(
                                custom_id, error_kind=error_kind(error), error_message=str(error)[:500]
                            )
                        # One write per line, flushed: a crash leaves whole lines for the next try to skip.
                        out.write(line.encode() + b"\n")
                        out.flush()
                        written += 1

                async def read_requests() -> None:
                    for raw in jsonl_lines([requests_file], MAX_BATCH_BYTES):
                        request = json.loads(raw)
                        if request["custom_id"] not in answered:
                            await queue.put((request["custom_id"], request["params"]))
                    for _ in range(concurrency):
                        await queue.put(None)

                # A TaskGroup cancels the reader if a sender dies, so nothing waits on a full queue.
                async with asyncio.TaskGroup() as group:
                    group.create_task(read_requests())
                    for _ in range(concurrency):
                        group.create_task(send_all())
        return written


def _complete(line: Line) -> bool:
    """A last line without its newline still counts when it is whole JSON (a cut-off one is not)."""
    try:
        return line.data is not None and isinstance(json.loads(line.data), dict)
    except ValueError:
        return False


def _answered_ids(parts: list[Any]) -> set[str]:
    """custom_ids that already have a whole result line in one of ``parts``."""
    answered: set[str] = set()
    for part in parts:
        for line in read_lines(part, MAX_RESULT_LINE_BYTES):
            if line.terminated and line.data is not None:
                try:
                    answered.add(json.loads(line.data)["custom_id"])
                except (ValueError, KeyError, TypeError):
                    continue
    return answered
