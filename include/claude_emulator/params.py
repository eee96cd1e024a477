"""Validation of Messages API parameters, as the API does it.

The same rules serve ``/v1/messages`` (a failure is an HTTP error at once) and each request of a batch
(a failure becomes an ``errored`` result line once the batch ends: batch params are validated
asynchronously). Messages follow the API's style: ``<field>: <what is wrong>``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from claude_emulator.errors import ApiError, invalid_request
from claude_emulator.schemas import check_output_config
from claude_emulator.tokens import MODELS, ModelSpec, PromptLayout, prompt_layout

# The fields of CreateMessageParams and CountMessageTokensParams in the OpenAPI spec; both refuse others.
MESSAGE_FIELDS = frozenset(
    {
        "model",
        "messages",
        "cache_control",
        "container",
        "inference_geo",
        "max_tokens",
        "metadata",
        "output_config",
        "service_tier",
        "stop_sequences",
        "stream",
        "system",
        "temperature",
        "thinking",
        "tool_choice",
        "tools",
        "top_k",
        "top_p",
    }
)
COUNT_TOKENS_FIELDS = frozenset(
    {"cache_control", "messages", "model", "output_config", "system", "thinking", "tool_choice", "tools"}
)
MAX_CACHE_MARKERS = 4


@dataclass(frozen=True)
class Prompt:
    """What a responder reads: the system prompt and the last user turn, as plain text."""

    model: str
    system: str
    user: str


@dataclass(frozen=True)
class MessageRequest:
    """Parameters that passed validation, with what answering them needs."""

    model: str
    spec: ModelSpec
    max_tokens: int
    layout: PromptLayout
    prompt: Prompt
    output_schema: dict[str, Any] | None = None


def _text_of(content: Any) -> str:
    if isinstance(content, str):
        return content
    return "\n".join(block["text"] for block in content if block.get("type") == "text")


def _check_blocks(field: str, blocks: Any) -> None:
    if not isinstance(blocks, list):
        raise invalid_request(f"{field}: Input should be a valid string or a list of content blocks")
    for index, block in enumerate(blocks):
        if not isinstance(block, dict) or not isinstance(block.get("type"), str):
            raise invalid_request(f"{field}.{index}: Input should be a content block with a 'type'")
        if block["type"] == "text" and not isinstance(block.get("text"), str):
            raise invalid_request(f"{field}.{index}.text: Field required")


def _check_messages(messages: Any) -> None:
    if messages is None:
        raise invalid_request("messages: Field required")
    if not isinstance(messages, list):
        raise invalid_request("messages: Input should be a valid list")
    if not messages:
        raise invalid_request("messages: at least one message is required")
    for index, message in enumerate(messages):
        if not isinstance(message, dict):
            raise invalid_request(f"messages.{index}: Input should be a valid dictionary")
        if message.get("role") not in ("user", "assistant"):
            raise invalid_request(f"messages.{index}.role: Input should be 'user' or 'assistant'")
        if "content" not in message:
            raise invalid_request(f"messages.{index}.content: Field required")
        if not isinstance(message["content"], str):
            _check_blocks(f"messages.{index}.content", message["content"])


def _check_cache_markers(params: dict[str, Any]) -> None:
    """Every ``cache_control`` is ``{"type": "ephemeral"}`` with an optional ttl of 5m or 1h."""
    markers = [("cache_control", params.get("cache_control"))]
    markers += [
        (f"tools.{i}.cache_control", tool.get("cache_control"))
        for i, tool in enumerate(params.get("tools") or [])
    ]
    if isinstance(params.get("system"), list):
        markers += [
            (f"system.{i}.cache_control", block.get("cache_control"))
            for i, block in enumerate(params["system"])
        ]
    for m, message in enumerate(params["messages"]):
        if isinstance(message["content"], list):
            markers += [
                (f"messages.{m}.content.{i}.cache_control", block.get("cache_control"))
                for i, block in enumerate(message["content"])
            ]
    for field, marker in markers:
        if marker is None:
            continue
        if not isinstance(marker, dict) or marker.get("type") != "ephemeral":
            raise invalid_request(f"{field}.type: Input should be 'ephemeral'")
        if marker.get("ttl", "5m") not in ("5m", "1h"):
            raise invalid_request(f"{field}.ttl: Input should be '5m' or '1h'")


def _check_prompt(params: dict[str, Any], allowed: frozenset[str]) -> tuple[str, ModelSpec, PromptLayout]:
    """Checks what Messages and count_tokens share; returns the model, its limits and the prompt's layout."""
    for field in params:
        if field not in allowed:
            raise invalid_request(f"{field}: Extra inputs are not permitted")
    model = params.get("model")
    if model is None:
        raise invalid_request("model: Field required")
    if not isinstance(model, str):
        raise invalid_request("model: Input should be a valid string")
    _check_messages(params.get("messages"))
    system = params.get("system")
    if system is not None and not isinstance(system, str):
        _check_blocks("system", system)
    tools = params.get("tools")
    if tools is not None and not (isinstance(tools, list) and all(isinstance(t, dict) for t in tools)):
        raise invalid_request("tools: Input should be a valid list of tool definitions")
    _check_cache_markers(params)
    layout = prompt_layout(model, params)
    if layout.marked_blocks > MAX_CACHE_MARKERS:
        raise invalid_request(
            f"A maximum of {MAX_CACHE_MARKERS} blocks with cache_control may be provided. "
            f"Found {layout.marked_blocks}."
        )
    spec = MODELS.get(model)
    if spec is None:
        raise ApiError("not_found_error", f"model: {model}")
    if layout.total_tokens > spec.context_window:
        raise invalid_request(
            f"prompt is too long: {layout.total_tokens} tokens > {spec.context_window} maximum"
        )
    return model, spec, layout


def validate_message_params(params: Any, *, in_batch: bool) -> MessageRequest:
    """The request, or ApiError saying what the API would refuse."""
    if not isinstance(params, dict):
        raise invalid_request("params: Input should be a valid dictionary")
    model, spec, layout = _check_prompt(params, MESSAGE_FIELDS)
    max_tokens = params.get("max_tokens")
    if max_tokens is None:
        raise invalid_request("max_tokens: Field required")
    if not isinstance(max_tokens, int) or isinstance(max_tokens, bool):
        raise invalid_request("max_tokens: Input should be a valid integer")
    if max_tokens < 0:
        raise invalid_request("max_tokens: Input should be greater than or equal to 0")
    if max_tokens > spec.max_output_tokens:
        raise invalid_request(
            f"max_tokens: {max_tokens} > {spec.max_output_tokens}, which is the maximum allowed number "
            f"of output tokens for {model}"
        )
    if params.get("stream"):
        raise invalid_request(
            "stream: streaming is not supported in Message Batches"
            if in_batch
            else "stream: the Claude emulator does not stream; call the Messages API without stream=True"
        )
    output_schema = None
    if params.get("output_config") is not None:
        output_schema = check_output_config(
            params["output_config"], structured_outputs=spec.structured_outputs, model=model
        )
    _check_model_options(params, model, spec, max_tokens)
    users = [message for message in params["messages"] if message["role"] == "user"]
    prompt = Prompt(
        model=model,
        system=_text_of(params.get("system") or ""),
        user=_text_of(users[-1]["content"]) if users else "",
    )
    return MessageRequest(
        model=model,
        spec=spec,
        max_tokens=max_tokens,
        layout=layout,
        prompt=prompt,
        output_schema=output_schema,
    )


def _check_model_options(params: dict[str, Any], model: str, spec: ModelSpec, max_tokens: int) -> None:
    """What newer models refuse that older ones took (claude-batch-api.md, "Newer facts")."""
    if not spec.sampling:
        for name in ("temperature", "top_p", "top_k"):
            if params.get(name) is not None:
                raise invalid_request(f"{name}: {model} does not support setting {name}; remove it")
    thinking = params.get("thinking")
    if thinking is not None:
        kind = thinking.get("type") if isinstance(thinking, dict) else None
        if kind not in ("enabled", "disabled", "adaptive"):
            raise invalid_request("thinking.type: Input should be 'enabled', 'disabled' or 'adaptive'")
        if kind == "enabled":
            if not spec.manual_thinking:
                raise invalid_request(
                    f"thinking.type: 'enabled' with budget_tokens is not supported by {model}; "
                    "use thinking.type 'adaptive' with output_config.effort"
                )
            budget = thinking.get("budget_tokens")
            if not isinstance(budget, int) or budget < 1024 or budget >= max_tokens:
                raise invalid_request("thinking.budget_tokens: must be >= 1024 and less than max_tokens")
        if kind == "disabled" and not spec.thinking_off:
            raise invalid_request(f"thinking.type: thinking cannot be disabled on {model}")
    tool_choice = params.get("tool_choice")
    if (
        isinstance(tool_choice, dict)
        and tool_choice.get("type") in ("tool", "any")
        and not spec.forced_tool_choice
    ):
        raise invalid_request(f"tool_choice: {model} does not support forcing a tool; use tool_choice 'auto'")


def count_prompt_tokens(params: Any) -> int:
    """Input tokens of a count_tokens request, or ApiError."""
    if not isinstance(params, dict):
        raise invalid_request("body: Input should be a valid dictionary")
    _, _, layout = _check_prompt(params, COUNT_TOKENS_FIELDS)
    return layout.total_tokens
