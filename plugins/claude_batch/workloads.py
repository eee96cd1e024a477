"""The workloads this deployment ships (``include/workloads``, importable as ``claude_workloads``).

The strategy finds specs only through its registry; the Airflow face (the DAG factory, the run
context the operators share, the re-run path and the UI) registers the bundled folder and allows
schemas from the bundled package, so the pure core never imports workload content.
"""

from __future__ import annotations

from pathlib import Path

import claude_workloads
from claude_batch.strategy.spec import WORKLOADS

BUNDLED_WORKLOADS_DIR = Path(claude_workloads.__file__).resolve().parent
"""Where the bundled workload specs (``<name>.yaml``) and their prompt templates live."""


def register_bundled_workloads() -> None:
    """Make the bundled specs loadable by name and their schema package importable (idempotent)."""
    WORKLOADS.register(BUNDLED_WORKLOADS_DIR, claude_workloads.__name__)
