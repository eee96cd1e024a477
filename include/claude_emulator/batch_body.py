"""A streaming parser of the batch-create body: ``{"requests": [{"custom_id": ..., "params": {...}}, ...]}``.

A batch body may be 256 MB; parsed whole it would be several times that in Python objects. This reads
the body from a file a window at a time and yields one request at a time, with the request's own JSON
text so it can be stored as it came. Only the shape of the body and the custom_ids are checked here:
``params`` are validated when the batch is processed, as the API does.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from claude_emulator.errors import invalid_request

CUSTOM_ID_PATTERN = re.compile(r"^[a-zA-Z0-9_-]{1,64}$")
MAX_BATCH_REQUESTS = 100_000
_WHITESPACE = re.compile(r"[ \t\n\r]*")
_DECODER = json.JSONDecoder()
_WINDOW_CHARS = 1 << 20


@dataclass(frozen=True)
class BatchRequest:
    custom_id: str
    json_text: str


class _JsonWindow:
    """Just enough of a JSON text in memory to decode the next value."""

    def __init__(self, source: TextIO) -> None:
        self._source = source
        self._text = ""
        self._position = 0
        self._at_end = False

    def _read_more(self) -> bool:
        # Read at least as much as is held, so a value larger than the window costs O(n), not O(n²).
        chunk = self._source.read(max(_WINDOW_CHARS, len(self._text) - self._position))
        if not chunk:
            self._at_end = True
            return False
        self._text = self._text[self._position :] + chunk
        self._position = 0
        return True

    def peek(self) -> str | None:
        """The next character that is not whitespace, or None at the end of the text."""
        while True:
            self._position = _WHITESPACE.match(self._text, self._position).end()
            if self._position < len(self._text):
                return self._text[self._position]
            if not self._read_more():
                return None

    def expect(self, char: str, what: str) -> None:
        if self.peek() != char:
            raise invalid_request(f"{what}: the request body is not valid JSON (expected {char!r})")
        self._position += 1

    def value(self, what: str) -> tuple[Any, str]:
        """The next JSON value and its text."""
        if self.peek() is None:
            raise invalid_request(f"{what}: the request body is not valid JSON (it ends too early)")
        while True:
            try:
                value, end = _DECODER.raw_decode(self._text, self._position)
            except json.JSONDecodeError as error:
                if not self._read_more():
                    problem = error.msg
                    raise invalid_request(f"{what}: the request body is not valid JSON ({problem})") from None
                continue
            # A number at the end of the window may go on in the next chunk.
            if end < len(self._text) or self._at_end or not self._read_more():
                text = self._text[self._position : end]
                self._position = end
                return value, text


def _batch_request(index: int, value: Any, text: str) -> BatchRequest:
    where = f"requests.{index}"
    if not isinstance(value, dict):
        raise invalid_request(f"{where}: Input should be a valid dictionary")
    for field in value:
        if field not in ("custom_id", "params"):
            raise invalid_request(f"{where}.{field}: Extra inputs are not permitted")
    custom_id = value.get("custom_id")
    if custom_id is None:
        raise invalid_request(f"{where}.custom_id: Field required")
    if not isinstance(custom_id, str) or not CUSTOM_ID_PATTERN.match(custom_id):
        raise invalid_request(f"{where}.custom_id: String should match pattern '{CUSTOM_ID_PATTERN.pattern}'")
    if "params" not in value:
        raise invalid_request(f"{where}.params: Field required")
    if not isinstance(value["params"], dict):
        raise invalid_request(f"{where}.params: Input should be a valid dictionary")
    return BatchRequest(custom_id=custom_id, json_text=text)


def _requests_array(window: _JsonWindow) -> Iterator[BatchRequest]:
    window.expect("[", "requests")
    if window.peek() == "]":
        window.expect("]", "requests")
        return
    index = 0
    while True:
        if index == MAX_BATCH_REQUESTS:
            raise invalid_request(
                f"requests: a batch holds at most {MAX_BATCH_REQUESTS:,} requests; split the rest into "
                "another batch"
            )
        value, text = window.value(f"requests.{index}")
        yield _batch_request(index, value, text)
        index += 1
        if window.peek() == ",":
            window.expect(",", "requests")
            continue
        window.expect("]", "requests")
        return


def _parse(window: _JsonWindow) -> Iterator[BatchRequest]:
    window.expect("{", "body")
    seen_requests = False
    if window.peek() != "}":
        while True:
            field, _ = window.value("body")
            window.expect(":", "body")
            if field != "requests":
                raise invalid_request(f"{field}: Extra inputs are not permitted")
            seen_requests = True
            yield from _requests_array(window)
            if window.peek() != ",":
                break
            window.expect(",", "body")
    window.expect("}", "body")
    if window.peek() is not None:
        raise invalid_request("body: the request body is not valid JSON (extra data after the object)")
    if not seen_requests:
        raise invalid_request("requests: Field required")


def read_batch_requests(path: Path) -> Iterator[BatchRequest]:
    """Each request of the batch body in `path`, checked for shape; raises ApiError on a bad body.

    Also refuses an empty batch, duplicate custom_ids and more than 100,000 requests, so the caller
    can store requests as they come and roll back on the first error.
    """
    seen: set[str] = set()
    try:
        with path.open(encoding="utf-8") as source:
            for request in _parse(_JsonWindow(source)):
                if request.custom_id in seen:
                    raise invalid_request(
                        f"requests: custom_id {request.custom_id!r} is used more than once; custom_ids "
                        "must be unique within a batch"
                    )
                seen.add(request.custom_id)
                yield request
    except UnicodeDecodeError:
        raise invalid_request("body: the request body is not valid UTF-8") from None
    if not seen:
        raise invalid_request("requests: List should have at least 1 item after validation, not 0")
