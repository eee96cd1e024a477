"""Emulator tests talk to the real console script through the real SDK, as the pipeline does."""

from __future__ import annotations

from collections.abc import Iterator

import anthropic
import pytest

from claude_emulator.testing import EmulatorHandle, running_emulator
from tests.unit.emulator.support import sdk_client


@pytest.fixture(scope="module")
def emulator() -> Iterator[EmulatorHandle]:
    """One fault-free emulator per test module; tests that count things start their own."""
    with running_emulator() as handle:
        yield handle


@pytest.fixture
def client(emulator: EmulatorHandle) -> anthropic.Anthropic:
    return sdk_client(emulator)
