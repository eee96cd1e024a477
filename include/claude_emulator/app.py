"""The emulator's HTTP face: the Claude API's endpoints, headers, limits and error bodies, and HTTP faults.

``create_app(config)`` builds the FastAPI application the ``claude-emulator`` console script serves.
Every response carries a ``request-id`` header, every error the API's error body. ``GET
/_emulator/stats`` (no auth) reports what the emulator has done; see :meth:`Emulator.stats`.
"""

from __future__ import annotations

import asyncio
import json
import re
import socket
import struct
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Annotated, Any

from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response, StreamingResponse
from pydantic import BaseModel
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import Message as AsgiMessage
from starlette.types import Receive, Scope, Send

from claude_emulator.emulator import Emulator, EmulatorConfig, new_id
from claude_emulator.errors import GENERIC_MESSAGES, ApiError, invalid_request
from claude_emulator.faults import Endpoint, HttpFault
from claude_emulator.wire import CountTokensResponse, DeletedMessageBatch, MessageBatchList, error_body

MESSAGES_BODY_LIMIT = 32 * 1024 * 1024
BATCH_BODY_LIMIT = 256 * 1024 * 1024
# The API names its versions by date and SDKs send newer ones than this emulator knows; any date passes.
_API_VERSION = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_REQUEST_ID = "claude_emulator.request_id"
_CONNECTION = "claude_emulator.connection"
_RESULT_CHUNKS_PER_READ = 4
_STREAM_WRITE_BUFFER = 16 * 1024 * 1024


class ClientConnection:
    """The TCP connection of one request, for the faults that break it instead of answering.

    ASGI offers no way to reset a connection, and a fault emulator needs one: uvicorn's ``send`` is a
    method of its per-request cycle object, which holds the transport and sees the disconnection.
    """

    def __init__(self, send: Send) -> None:
        self._cycle = send.__self__  # type: ignore[attr-defined]
        self.reset_on_response = False
        self.broken = False

    def reset(self) -> None:
        """Drop the connection with a TCP reset, as a crashed proxy would."""
        self.broken = True
        transport: asyncio.Transport = self._cycle.transport
        sock = transport.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        transport.abort()

    def buffer_generously(self) -> None:
        """Let a long response queue several chunks, so the next is read while the kernel sends."""
        self._cycle.transport.set_write_buffer_limits(high=_STREAM_WRITE_BUFFER)

    def close(self) -> None:
        """Close the connection after what was already sent, leaving the response unfinished."""
        self.broken = True
        self._cycle.transport.close()

    async def wait_until_lost(self) -> None:
        """Let uvicorn see the connection gone, so it does not report an unfinished response as an error."""
        for _ in range(500):
            if self._cycle.disconnected:
                return
            await asyncio.sleep(0.002)


class EmulatorApp(FastAPI):
    """FastAPI with a ``request-id`` on every response and connections that faults can break."""

    emulator: Emulator

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await super().__call__(scope, receive, send)
            return
        request_id = new_id("req_")
        connection = ClientConnection(send)
        scope[_REQUEST_ID] = request_id
        scope[_CONNECTION] = connection

        async def send_unless_broken(message: AsgiMessage) -> None:
            if connection.broken:
                return
            if message["type"] == "http.response.start":
                if connection.reset_on_response:
                    connection.reset()
                    return
                message = {**message, "headers": [*message["headers"], (b"request-id", request_id.encode())]}
            await send(message)

        await super().__call__(scope, receive, send_unless_broken)
        if connection.broken:
            await connection.wait_until_lost()


def _wire(model: BaseModel) -> Response:
    return Response(model.model_dump_json(), media_type="application/json")


def _error_response(request: Request, error: ApiError) -> Response:
    body = error_body(error.kind, error.message, request.scope.get(_REQUEST_ID))
    return Response(
        body.model_dump_json(), status_code=error.status, media_type="application/json", headers=error.headers
    )


def _emulator(request: Request) -> Emulator:
    return request.app.emulator


async def require_api_headers(request: Request) -> None:
    """Auth and version headers, checked as the API checks them (401, then 400)."""
    authorization = request.headers.get("authorization", "")
    bearer = authorization[7:].strip() if authorization.lower().startswith("bearer ") else ""
    if not request.headers.get("x-api-key") and not bearer:
        raise ApiError("authentication_error", "x-api-key header is required")
    version = request.headers.get("anthropic-version")
    if version is None:
        raise invalid_request("anthropic-version: header is required")
    if not _API_VERSION.match(version):
        raise invalid_request(f"anthropic-version: {version!r} is not a valid version")


def endpoint_faults(endpoint: Endpoint) -> Callable[[Request], Awaitable[HttpFault | None]]:
    """A dependency applying `endpoint`'s HTTP faults; returns the ones the endpoint itself applies."""

    async def apply(request: Request) -> HttpFault | None:
        emulator = _emulator(request)
        failure, delay = emulator.http_fault(endpoint)
        if delay:
            await asyncio.sleep(delay)
        if failure in (HttpFault.RATE_LIMITED, HttpFault.OVERLOADED, HttpFault.API_ERROR):
            emulator.record_http_fault(endpoint, failure)
        retry_after = {"retry-after": f"{emulator.retry_after_seconds(endpoint):g}"}
        if failure is HttpFault.RATE_LIMITED:
            raise ApiError("rate_limit_error", GENERIC_MESSAGES["rate_limit_error"], headers=retry_after)
        if failure is HttpFault.OVERLOADED:
            raise ApiError("overloaded_error", GENERIC_MESSAGES["overloaded_error"], headers=retry_after)
        if failure is HttpFault.API_ERROR:
            raise ApiError("api_error", GENERIC_MESSAGES["api_error"])
        if failure is HttpFault.CONNECTION_RESET:
            # Handled first, then reset: the caller cannot tell whether the call took effect.
            emulator.record_http_fault(endpoint, failure)
            request.scope[_CONNECTION].reset_on_response = True
            return None
        return failure

    return apply


async def _message_in_flight(request: Request) -> AsyncIterator[None]:
    """Counts a Messages call from its arrival (before any injected delay) to its answer."""
    emulator = _emulator(request)
    emulator.message_started()
    try:
        yield
    finally:
        emulator.message_ended()


def _request_too_large() -> ApiError:
    return ApiError(
        "request_too_large",
        "Request exceeds the maximum allowed number of bytes. The maximum request size is 32 MB for "
        "standard API requests and 256 MB for batch API requests.",
    )


async def _receive_body(request: Request, limit: int, write: Callable[[bytes], Any]) -> None:
    """Pass the body to `write` chunk by chunk; past `limit`, read the rest unkept and refuse it.

    The rest is read so the client, still sending, gets the 413 instead of a broken pipe.
    """
    declared = request.headers.get("content-length")
    too_large = declared is not None and declared.isdigit() and int(declared) > limit
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        too_large = too_large or size > limit
        if not too_large:
            write(chunk)
    if too_large:
        raise _request_too_large()


async def _json_body(request: Request) -> bytes:
    body = bytearray()
    await _receive_body(request, MESSAGES_BODY_LIMIT, body.extend)
    return bytes(body)


def _parse_json(body: bytes) -> Any:
    try:
        return json.loads(body)
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise invalid_request("body: the request body is not valid JSON") from None


def _api_routes() -> APIRouter:
    router = APIRouter(dependencies=[Depends(require_api_headers)])

    @router.post("/v1/messages")
    async def create_message(
        request: Request,
        _in_flight: Annotated[None, Depends(_message_in_flight)],
        _: Annotated[None, Depends(endpoint_faults("messages"))],
    ) -> Response:
        body = await _json_body(request)
        emulator = _emulator(request)
        message = await run_in_threadpool(lambda: emulator.create_message(_parse_json(body)))
        return _wire(message)

    @router.post("/v1/messages/count_tokens")
    async def count_tokens(
        request: Request, _: Annotated[None, Depends(endpoint_faults("count_tokens"))]
    ) -> Response:
        body = await _json_body(request)
        emulator = _emulator(request)
        tokens = await run_in_threadpool(lambda: emulator.count_tokens(_parse_json(body)))
        return _wire(CountTokensResponse(input_tokens=tokens))

    @router.post("/v1/messages/batches")
    async def create_batch(
        request: Request, _: Annotated[None, Depends(endpoint_faults("create_batch"))]
    ) -> Response:
        emulator = _emulator(request)
        # The body goes to a file beside the state, never whole into memory: it may be 256 MB.
        spool = emulator.new_upload_path()
        try:
            with spool.open("wb") as out:
                await _receive_body(request, BATCH_BODY_LIMIT, out.write)
            record = await run_in_threadpool(emulator.create_batch, spool)
        finally:
            spool.unlink(missing_ok=True)
        return _wire(emulator.view(record, str(request.base_url)))

    @router.get("/v1/messages/batches")
    def list_batches(
        request: Request,
        _: Annotated[None, Depends(endpoint_faults("list_batches"))],
        before_id: str | None = None,
        after_id: str | None = None,
        limit: int = 20,
    ) -> Response:
        if not 1 <= limit <= 1000:
            raise invalid_request("limit: Input should be between 1 and 1000")
        if before_id and after_id:
            raise invalid_request("before_id and after_id cannot both be given; page in one direction")
        emulator = _emulator(request)
        records, has_more = emulator.list_batches(before_id=before_id, after_id=after_id, limit=limit)
        batches = [emulator.view(record, str(request.base_url)) for record in records]
        return _wire(
            MessageBatchList(
                data=batches,
                has_more=has_more,
                first_id=batches[0].id if batches else None,
                last_id=batches[-1].id if batches else None,
            )
        )

    @router.get("/v1/messages/batches/{batch_id}")
    def retrieve_batch(
        batch_id: str,
        request: Request,
        fault: Annotated[HttpFault | None, Depends(endpoint_faults("retrieve_batch"))],
    ) -> Response:
        emulator = _emulator(request)
        if fault is HttpFault.NOT_FOUND_AFTER_CREATE and emulator.just_created(batch_id):
            emulator.record_http_fault("retrieve_batch", fault)
            raise ApiError("not_found_error", f"Message Batch {batch_id} not found")
        return _wire(emulator.view(emulator.observe(batch_id), str(request.base_url)))

    @router.post("/v1/messages/batches/{batch_id}/cancel")
    def cancel_batch(
        batch_id: str, request: Request, _: Annotated[None, Depends(endpoint_faults("cancel_batch"))]
    ) -> Response:
        emulator = _emulator(request)
        return _wire(emulator.view(emulator.cancel(batch_id), str(request.base_url)))

    @router.delete("/v1/messages/batches/{batch_id}")
    def delete_batch(
        batch_id: str, request: Request, _: Annotated[None, Depends(endpoint_faults("delete_batch"))]
    ) -> Response:
        _emulator(request).delete(batch_id)
        return _wire(DeletedMessageBatch(id=batch_id))

    @router.get("/v1/messages/batches/{batch_id}/results")
    async def batch_results(
        batch_id: str,
        request: Request,
        fault: Annotated[HttpFault | None, Depends(endpoint_faults("results"))],
    ) -> Response:
        emulator = _emulator(request)
        record = await run_in_threadpool(emulator.results_batch, batch_id)
        cut_after: int | None = None
        if fault is HttpFault.TRUNCATED:
            emulator.record_http_fault("results", fault)
            cut_after = record.request_count // 2
        connection: ClientConnection = request.scope[_CONNECTION]
        connection.buffer_generously()

        async def jsonl() -> AsyncIterator[bytes]:
            # A few stored chunks per read: memory holds those, whatever the batch size.
            last_chunk, sent = -1, 0
            while rows := await run_in_threadpool(
                emulator.state.result_chunks, record.seq, last_chunk, _RESULT_CHUNKS_PER_READ
            ):
                last_chunk = rows[-1][0]
                line_count = sum(count for _, count, _ in rows)
                data = b"".join(blob for _, _, blob in rows)
                if cut_after is not None and sent + line_count > cut_after:
                    lines = data.split(b"\n")
                    whole = cut_after - sent
                    cut_line = lines[whole]
                    yield b"".join(line + b"\n" for line in lines[:whole]) + cut_line[: len(cut_line) // 2]
                    connection.close()
                    return
                sent += line_count
                yield data

        return StreamingResponse(jsonl(), media_type="application/x-jsonl")

    return router


def create_app(config: EmulatorConfig) -> EmulatorApp:
    """The emulator's ASGI application, with its state opened at ``config.state_path``."""

    @asynccontextmanager
    async def lifespan(app: EmulatorApp) -> AsyncIterator[None]:
        yield
        app.emulator.close()

    app = EmulatorApp(title="Claude API emulator", lifespan=lifespan, docs_url=None, redoc_url=None)
    app.emulator = Emulator(config)
    app.include_router(_api_routes())

    @app.get("/_emulator/stats")
    def stats(request: Request) -> JSONResponse:
        return JSONResponse(_emulator(request).stats())

    async def on_api_error(request: Request, error: Exception) -> Response:
        assert isinstance(error, ApiError)
        return _error_response(request, error)

    async def on_http_error(request: Request, error: Exception) -> Response:
        assert isinstance(error, StarletteHTTPException)
        kind = "not_found_error" if error.status_code == 404 else "invalid_request_error"
        response = _error_response(request, ApiError(kind, str(error.detail)))
        response.status_code = error.status_code
        return response

    async def on_validation_error(request: Request, error: Exception) -> Response:
        assert isinstance(error, RequestValidationError)
        problems = "; ".join(
            f"{'.'.join(str(part) for part in problem['loc'][1:])}: {problem['msg']}"
            for problem in error.errors()
        )
        return _error_response(request, invalid_request(problems))

    async def on_unexpected_error(request: Request, error: Exception) -> Response:
        return _error_response(request, ApiError("api_error", GENERIC_MESSAGES["api_error"]))

    handlers: dict[type[Exception], Callable[[Request, Exception], Awaitable[Response]]] = {
        ApiError: on_api_error,
        StarletteHTTPException: on_http_error,
        RequestValidationError: on_validation_error,
        Exception: on_unexpected_error,
    }
    for exception_type, handler in handlers.items():
        app.add_exception_handler(exception_type, handler)
    return app
