"""Every body the emulator sends, as pydantic models of Anthropic's OpenAPI ``components.schemas``.

Field names, nullability and required-ness follow the spec (``MessageBatch``, ``Message``, ``Usage``,
``ErrorResponse``, ...); tests/unit/emulator/test_wire_schemas.py validates real responses against the
spec's schemas. ``model_dump_json()`` of these models is what goes on the wire.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel


class RequestCounts(BaseModel):
    processing: int = 0
    succeeded: int = 0
    errored: int = 0
    canceled: int = 0
    expired: int = 0


class MessageBatch(BaseModel):
    id: str
    type: Literal["message_batch"] = "message_batch"
    processing_status: Literal["in_progress", "canceling", "ended"]
    request_counts: RequestCounts
    created_at: str
    expires_at: str
    ended_at: str | None
    cancel_initiated_at: str | None
    archived_at: str | None
    results_url: str | None


class MessageBatchList(BaseModel):
    data: list[MessageBatch]
    has_more: bool
    first_id: str | None
    last_id: str | None


class DeletedMessageBatch(BaseModel):
    id: str
    type: Literal["message_batch_deleted"] = "message_batch_deleted"


class ErrorDetail(BaseModel):
    type: str
    message: str


class ErrorResponse(BaseModel):
    type: Literal["error"] = "error"
    error: ErrorDetail
    request_id: str | None


class TextBlock(BaseModel):
    type: Literal["text"] = "text"
    text: str
    citations: None = None


class CacheCreation(BaseModel):
    ephemeral_5m_input_tokens: int = 0
    ephemeral_1h_input_tokens: int = 0


class Usage(BaseModel):
    input_tokens: int
    output_tokens: int
    cache_creation_input_tokens: int
    cache_read_input_tokens: int
    cache_creation: CacheCreation
    service_tier: Literal["standard", "batch"]
    server_tool_use: None = None
    inference_geo: None = None


class Message(BaseModel):
    id: str
    type: Literal["message"] = "message"
    role: Literal["assistant"] = "assistant"
    content: list[TextBlock]
    model: str
    stop_reason: Literal["end_turn", "max_tokens"]
    stop_sequence: None = None
    stop_details: None = None
    usage: Usage
    container: None = None


class CountTokensResponse(BaseModel):
    input_tokens: int


class SucceededResult(BaseModel):
    type: Literal["succeeded"] = "succeeded"
    message: Message


class ErroredResult(BaseModel):
    type: Literal["errored"] = "errored"
    error: ErrorResponse


class CanceledResult(BaseModel):
    type: Literal["canceled"] = "canceled"


class ExpiredResult(BaseModel):
    type: Literal["expired"] = "expired"


class BatchResultLine(BaseModel):
    """One line of a batch's results JSONL (``MessageBatchIndividualResponse``)."""

    custom_id: str
    result: SucceededResult | ErroredResult | CanceledResult | ExpiredResult


def error_body(kind: str, message: str, request_id: str | None) -> ErrorResponse:
    return ErrorResponse(error=ErrorDetail(type=kind, message=message), request_id=request_id)
