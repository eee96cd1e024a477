"""Deliberate crash points for the reliability suites: inert unless ``CLAUDE_BATCH_CRASH_AT`` names one.

The crash suite (``tests/reliability/test_crashes.py``) runs a DAG in a child process with
``CLAUDE_BATCH_CRASH_AT=<name>``; when the pipeline reaches ``crash_point(<name>)`` the process sends
itself SIGKILL, exactly as the OOM killer or a lost node would end a task: no ``finally``, no
``on_kill``, no ledger update. The suite then re-runs the date and checks that nothing was lost or
paid twice. Without the variable (every deployment), a crash point is one dictionary lookup.

Crash points, in pipeline order (``submit`` and ``partition`` ones are shared with recovery rounds;
the first one reached fires):

- ``submit.after_intent`` (stages/submit.py): the ledger holds the intent, no batch exists yet.
- ``submit.after_create`` (stages/submit.py): the batch exists at the API, the ledger lacks its id.
- ``wait.started`` (sensors/batch.py): the wait task polled the batch once and dies before it defers
  or returns.
- ``partition.after_classify`` (stages/partition.py): results downloaded and classified into the
  partition files, the shard's ``summary.json`` not written.
- ``publish.after_first_upsert`` (operators/publish.py): the first partition's outputs are upserted,
  the others and the report are not.
"""

from __future__ import annotations

import os
import signal
import sys

CRASH_AT_VARIABLE = "CLAUDE_BATCH_CRASH_AT"


def crash_point(name: str) -> None:
    """SIGKILL this process if ``$CLAUDE_BATCH_CRASH_AT`` is ``name``; otherwise do nothing."""
    if os.environ.get(CRASH_AT_VARIABLE) != name:
        return
    sys.stderr.write(f"claude_batch: crash point {name} reached; SIGKILL (CLAUDE_BATCH_CRASH_AT)\n")
    sys.stderr.flush()
    os.kill(os.getpid(), signal.SIGKILL)
