"""Run the real emulator as a subprocess from a test: ``with running_emulator() as emulator: ...``.

The emulator is started through its console script, exactly as a user starts it, on a free port, and
is always stopped when the block ends. Point the SDK at ``emulator.base_url`` with any API key::

    with running_emulator(faults={"requests": {"expired": 0.1}}) as emulator:
        client = anthropic.Anthropic(base_url=emulator.base_url, api_key="test-key")
        ...
        emulator.kill()       # as a crash would
        emulator.restart()    # same port, same state file
        assert emulator.stats()["batches_created"] == 1
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx

READY_PREFIX = "claude-emulator listening on "
_START_TIMEOUT_SECONDS = 20.0
_STOP_TIMEOUT_SECONDS = 10.0


def console_script() -> Path:
    """The ``claude-emulator`` script of this environment (installed by ``make setup``)."""
    script = Path(sys.executable).with_name("claude-emulator")
    if not script.exists():
        raise RuntimeError(f"{script} is missing; run `make setup` to install the project's console scripts")
    return script


class EmulatorHandle:
    """A running ``claude-emulator`` subprocess.

    :param workdir: where the fault file and the log go.
    :param state: the SQLite state file, kept by :meth:`restart`.
    :param arguments: the options besides ``--host``, ``--port`` and ``--state``.
    :param host: the address to listen on.
    """

    def __init__(self, workdir: Path, state: Path, arguments: list[str], host: str = "127.0.0.1") -> None:
        self.workdir = workdir
        self.host = host
        self.state = state
        self.log_path = workdir / "emulator.log"
        self._arguments = arguments
        self._process: subprocess.Popen[bytes] | None = None
        self._port = 0
        self.base_url = ""

    @property
    def pid(self) -> int:
        if self._process is None:
            raise RuntimeError("the emulator is not running")
        return self._process.pid

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def start(self) -> None:
        """Start the emulator (on the port it had before, if any) and wait until it accepts requests."""
        command = [str(console_script()), "--host", self.host, "--port", str(self._port)]
        command += ["--state", str(self.state), *self._arguments]
        log_start = self.log_path.stat().st_size if self.log_path.exists() else 0
        with self.log_path.open("ab") as log:
            self._process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + _START_TIMEOUT_SECONDS
        while time.monotonic() < deadline:
            output = self.log_path.read_bytes()[log_start:].decode(errors="replace")
            for line in output.splitlines():
                if line.startswith(READY_PREFIX):
                    self.base_url = line[len(READY_PREFIX) :].strip()
                    self._port = int(self.base_url.rsplit(":", 1)[1])
                    return
            if self._process.poll() is not None:
                raise RuntimeError(f"claude-emulator exited with {self._process.returncode}:\n{output}")
            time.sleep(0.02)
        self.kill()
        raise RuntimeError(f"claude-emulator did not start within {_START_TIMEOUT_SECONDS:g} s")

    def stats(self) -> dict[str, Any]:
        """``GET /_emulator/stats``: what the emulator has done (see the README for the keys)."""
        response = httpx.get(f"{self.base_url}/_emulator/stats", timeout=30.0)
        response.raise_for_status()
        return response.json()

    def stop(self) -> int | None:
        """Stop the emulator as an operator would (SIGTERM), killing it if it does not exit in time.

        Returns its exit status (0 for a clean stop), or None if it was not running.
        """
        if not self.running:
            return None
        assert self._process is not None
        self._process.send_signal(signal.SIGTERM)
        try:
            return self._process.wait(_STOP_TIMEOUT_SECONDS)
        except subprocess.TimeoutExpired:
            self.kill()
            return self._process.returncode

    def kill(self) -> None:
        """Kill the emulator with SIGKILL, as a crash would: nothing gets to clean up."""
        if self.running:
            assert self._process is not None
            os.kill(self._process.pid, signal.SIGKILL)
            self._process.wait()

    def restart(self) -> None:
        """Stop the emulator if it runs, then start it again on the same port with the same state."""
        self.stop()
        self.start()


@contextmanager
def running_emulator(
    *,
    faults: dict | None = None,
    state: Path | None = None,
    time_scale: float = 1.0,
    processing_seconds: float = 0.0,
    seed: int = 0,
    host: str = "127.0.0.1",
    context_window: int | None = None,
    responders: Sequence[str] | None = None,
) -> Iterator[EmulatorHandle]:
    """A ``claude-emulator`` subprocess on a free port for the duration of the block.

    :param faults: a fault plan as the fault file would hold it (see ``claude_emulator.faults``).
    :param state: the state file; by default a fresh one in a temporary directory.
    :param time_scale: emulator seconds per real second.
    :param processing_seconds: emulator seconds a batch takes to process.
    :param seed: the seed of the fault decisions.
    :param host: the address to listen on (a test host's network reaches it there).
    :param context_window: input tokens every model takes at most (``--context-window``).
    :param responders: the responder modules (``--responders``; ``[""]`` names none); by default the
        emulator's own default, the bundled workloads' responders.
    """
    with tempfile.TemporaryDirectory(prefix="claude-emulator-test-") as scratch:
        workdir = Path(scratch)
        arguments = ["--time-scale", repr(time_scale), "--processing-seconds", repr(processing_seconds)]
        arguments += ["--seed", str(seed)]
        if context_window is not None:
            arguments += ["--context-window", str(context_window)]
        for module in responders or ():
            arguments += ["--responders", module]
        if faults is not None:
            fault_file = workdir / "faults.json"
            fault_file.write_text(json.dumps(faults), encoding="utf-8")
            arguments += ["--faults", str(fault_file)]
        handle = EmulatorHandle(workdir, state or workdir / "state.db", arguments, host)
        try:
            handle.start()
            yield handle
        finally:
            handle.stop()
