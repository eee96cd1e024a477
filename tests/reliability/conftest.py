"""Reliability suites: faults, crashes, bad input and secrets, against the real emulator process.

The fast variants run in ``make test``; ``CLAUDE_BATCH_LONG=1`` makes the same tests run more seeds
and more records (see ``long_variant``).
"""

from __future__ import annotations

import os

from tests.airflow.conftest import emulator_factory, pipeline_for  # noqa: F401

LONG_VARIABLE = "CLAUDE_BATCH_LONG"


def long_variant() -> bool:
    """True when ``CLAUDE_BATCH_LONG=1``: the suites widen (more seeds, records, rates), never skip."""
    return os.environ.get(LONG_VARIABLE, "") not in ("", "0")
