"""Helpers shared by the emulator tests: an SDK client on a running emulator, batch requests."""

from __future__ import annotations

from typing import Any

import anthropic

from claude_emulator.testing import EmulatorHandle

MODEL = "claude-sonnet-4-6"


def sdk_client(emulator: EmulatorHandle, **options: Any) -> anthropic.Anthropic:
    """A sync client on `emulator`; no retries unless a test asks, so every fault shows."""
    return anthropic.Anthropic(
        base_url=emulator.base_url, api_key="test-key", **{"max_retries": 0, **options}
    )


def async_sdk_client(emulator: EmulatorHandle, **options: Any) -> anthropic.AsyncAnthropic:
    return anthropic.AsyncAnthropic(
        base_url=emulator.base_url, api_key="test-key", **{"max_retries": 0, **options}
    )


def batch_request(custom_id: str, content: str = "Say hello.", **params: Any) -> dict[str, Any]:
    """One request of a batch, with valid params unless `params` overrides them."""
    return {
        "custom_id": custom_id,
        "params": {
            "model": MODEL,
            "max_tokens": 256,
            "messages": [{"role": "user", "content": content}],
            **params,
        },
    }
