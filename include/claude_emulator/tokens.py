"""Models the emulator knows, plausible token counts, and the cacheable prefixes of a prompt.

Tokens are counted as about four characters each, the rule of thumb for English text. A prompt is
laid out in the order the API caches it (tools, then system, then messages); each block marked with
``cache_control`` (or the last block, for a top-level ``cache_control``) ends a cacheable prefix,
identified by a hash of the model and everything up to that block.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class ModelSpec:
    """What the emulator enforces for a model.

    :param context_window: the most input tokens a prompt may have.
    :param max_output_tokens: the largest ``max_tokens`` the model accepts.
    :param min_cacheable_tokens: a shorter prefix is silently not cached, as on the real API.
    :param structured_outputs: takes ``output_config.format``.
    :param sampling: takes ``temperature``, ``top_p`` and ``top_k`` (Sonnet 5 answers 400).
    :param manual_thinking: takes ``thinking.budget_tokens`` (4.7 and later answer 400).
    :param thinking_off: takes ``thinking: {type: disabled}`` (Opus 5.5 answers 400).
    :param forced_tool_choice: takes ``tool_choice`` ``tool`` or ``any`` (Opus 5.5 answers 400).
    """

    context_window: int
    max_output_tokens: int
    min_cacheable_tokens: int
    structured_outputs: bool = True
    sampling: bool = True
    manual_thinking: bool = True
    thinking_off: bool = True
    forced_tool_choice: bool = True


DEFAULT_CONTEXT_WINDOW = 200_000

_LEGACY = {"structured_outputs": False}
_ADAPTIVE_ONLY = {"manual_thinking": False}

# The model ids of Anthropic's spec and the newer families (claude-batch-api.md, "Newer facts"). Limits
# and refusals are published figures; the table is data, not policy.
MODELS: dict[str, ModelSpec] = {
    "claude-opus-5-5": ModelSpec(
        DEFAULT_CONTEXT_WINDOW,
        128_000,
        4096,
        manual_thinking=False,
        thinking_off=False,
        forced_tool_choice=False,
    ),
    "claude-opus-5": ModelSpec(DEFAULT_CONTEXT_WINDOW, 128_000, 4096, **_ADAPTIVE_ONLY),
    "claude-sonnet-5-5": ModelSpec(DEFAULT_CONTEXT_WINDOW, 64_000, 1024, sampling=False, **_ADAPTIVE_ONLY),
    "claude-sonnet-5": ModelSpec(DEFAULT_CONTEXT_WINDOW, 64_000, 1024, sampling=False, **_ADAPTIVE_ONLY),
    "claude-haiku-5-5": ModelSpec(DEFAULT_CONTEXT_WINDOW, 64_000, 4096, **_ADAPTIVE_ONLY),
    "claude-opus-4-8": ModelSpec(DEFAULT_CONTEXT_WINDOW, 128_000, 4096, **_ADAPTIVE_ONLY),
    "claude-opus-4-7": ModelSpec(DEFAULT_CONTEXT_WINDOW, 128_000, 4096, **_ADAPTIVE_ONLY),
    "claude-mythos-preview": ModelSpec(DEFAULT_CONTEXT_WINDOW, 128_000, 4096, **_ADAPTIVE_ONLY),
    "claude-opus-4-6": ModelSpec(DEFAULT_CONTEXT_WINDOW, 128_000, 4096),
    "claude-sonnet-4-6": ModelSpec(DEFAULT_CONTEXT_WINDOW, 64_000, 1024),
    "claude-haiku-4-5": ModelSpec(DEFAULT_CONTEXT_WINDOW, 64_000, 4096),
    "claude-haiku-4-5-20251001": ModelSpec(DEFAULT_CONTEXT_WINDOW, 64_000, 4096),
    "claude-opus-4-5": ModelSpec(DEFAULT_CONTEXT_WINDOW, 64_000, 4096),
    "claude-opus-4-5-20251101": ModelSpec(DEFAULT_CONTEXT_WINDOW, 64_000, 4096),
    "claude-sonnet-4-5": ModelSpec(DEFAULT_CONTEXT_WINDOW, 64_000, 1024),
    "claude-sonnet-4-5-20250929": ModelSpec(DEFAULT_CONTEXT_WINDOW, 64_000, 1024),
    "claude-opus-4-1": ModelSpec(DEFAULT_CONTEXT_WINDOW, 32_000, 1024, **_LEGACY),
    "claude-opus-4-1-20250805": ModelSpec(DEFAULT_CONTEXT_WINDOW, 32_000, 1024, **_LEGACY),
    "claude-opus-4-0": ModelSpec(DEFAULT_CONTEXT_WINDOW, 32_000, 1024, **_LEGACY),
    "claude-opus-4-20250514": ModelSpec(DEFAULT_CONTEXT_WINDOW, 32_000, 1024, **_LEGACY),
    "claude-sonnet-4-0": ModelSpec(DEFAULT_CONTEXT_WINDOW, 64_000, 1024, **_LEGACY),
    "claude-sonnet-4-20250514": ModelSpec(DEFAULT_CONTEXT_WINDOW, 64_000, 1024, **_LEGACY),
    "claude-3-haiku-20240307": ModelSpec(DEFAULT_CONTEXT_WINDOW, 4_096, 2048, **_LEGACY),
}

# Tokens the chat format adds around each message (role markers and separators).
MESSAGE_FRAMING_TOKENS = 4


def count_text_tokens(text: str) -> int:
    return (len(text) + 3) // 4


@dataclass(frozen=True)
class CacheBreakpoint:
    """The end of a cacheable prefix: its identity, its length in tokens and its time to live."""

    key: str
    tokens: int
    ttl: str


@dataclass(frozen=True)
class PromptLayout:
    """A prompt's size, its cacheable prefixes, and how many blocks it marked with ``cache_control``."""

    total_tokens: int
    breakpoints: list[CacheBreakpoint]
    marked_blocks: int


def _canonical(block: Any) -> str:
    """A block as the cache sees it: its content, not where the cache marker sits."""
    if isinstance(block, dict):
        block = {key: value for key, value in block.items() if key != "cache_control"}
    return json.dumps(block, sort_keys=True, separators=(",", ":"))


def _block_tokens(block: Any) -> int:
    if isinstance(block, str):
        return count_text_tokens(block)
    if block.get("type") == "text" and isinstance(block.get("text"), str):
        return count_text_tokens(block["text"])
    return count_text_tokens(_canonical(block))


@dataclass(frozen=True)
class _Unit:
    """One block of a prompt: what it is (with its place: tool, system or a role), its size, its marker."""

    identity: str
    tokens: int
    cache_control: dict[str, Any] | None


def _unit(place: str, block: Any, extra_tokens: int = 0) -> _Unit:
    marker = block.get("cache_control") if isinstance(block, dict) else None
    return _Unit(f"{place}:{_canonical(block)}", _block_tokens(block) + extra_tokens, marker)


def _prompt_units(params: dict[str, Any]) -> list[_Unit]:
    """The blocks of a prompt in the order the API caches them: tools, system, then messages."""
    units = [_unit("tool", tool) for tool in params.get("tools") or []]
    system = params.get("system")
    if isinstance(system, str) and system:
        units.append(_unit("system", system))
    elif isinstance(system, list):
        units += [_unit("system", block) for block in system]
    for message in params["messages"]:
        content = message["content"]
        blocks = [content] if isinstance(content, str) else content
        # The framing tokens of a message are counted with its first block (or alone when it has none).
        units += [
            _unit(message["role"], block, MESSAGE_FRAMING_TOKENS if index == 0 else 0)
            for index, block in enumerate(blocks)
        ]
        if not blocks:
            units.append(_unit(message["role"], "", MESSAGE_FRAMING_TOKENS))
    return units


def prompt_layout(model: str, params: dict[str, Any]) -> PromptLayout:
    """The prompt's token count and cacheable prefixes; `params` must already be valid."""
    units = _prompt_units(params)
    automatic = params.get("cache_control")
    running = hashlib.blake2b(model.encode(), digest_size=16)
    total = 0
    breakpoints: list[CacheBreakpoint] = []
    for position, unit in enumerate(units):
        running.update(unit.identity.encode() + b"\x1e")
        total += unit.tokens
        marker = unit.cache_control
        if not marker and automatic and position == len(units) - 1:
            marker = automatic
        if marker:
            breakpoints.append(CacheBreakpoint(running.hexdigest(), total, marker.get("ttl") or "5m"))
    return PromptLayout(
        total_tokens=max(total, 1),
        breakpoints=breakpoints,
        marked_blocks=sum(1 for unit in units if unit.cache_control),
    )
