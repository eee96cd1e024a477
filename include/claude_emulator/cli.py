"""``claude-emulator``: serve the Claude API emulator until SIGTERM or SIGINT.

Prints ``claude-emulator listening on http://HOST:PORT`` once it accepts connections (with the real
port when started with ``--port 0``). Point the SDK at that URL: ``anthropic.Anthropic(base_url=URL,
api_key="any-key")``.
"""

from __future__ import annotations

import argparse
import dataclasses
import shutil
import signal
import socket
import tempfile
from pathlib import Path
from types import FrameType

import uvicorn

from claude_emulator.app import create_app
from claude_emulator.emulator import EmulatorConfig
from claude_emulator.faults import FaultPlan, load_fault_plan
from claude_emulator.responders import ResponderModuleError
from claude_emulator.tokens import MODELS


class _AnnouncingServer(uvicorn.Server):
    """A uvicorn server that says where it listens once it does: callers wait for that line."""

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets=sockets)
        if self.should_exit:
            return
        host, port = self.servers[0].sockets[0].getsockname()[:2]
        print(f"claude-emulator listening on http://{host}:{port}", flush=True)


def _positive(text: str) -> float:
    value = float(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be greater than 0, not {text}")
    return value


def _not_negative(text: str) -> float:
    value = float(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, not {text}")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="claude-emulator", description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", default="127.0.0.1", help="interface to listen on (default 127.0.0.1)")
    parser.add_argument(
        "--port", type=int, default=8765, help="port to listen on; 0 picks a free one (default 8765)"
    )
    parser.add_argument("--faults", type=Path, help="fault file, YAML or JSON (see claude_emulator.faults)")
    parser.add_argument(
        "--state",
        type=Path,
        help="SQLite state file, kept across restarts (default: a temporary file removed on exit)",
    )
    parser.add_argument(
        "--time-scale",
        type=_positive,
        default=1.0,
        help="emulator seconds per real second; 86400 makes a day pass in a second (default 1)",
    )
    parser.add_argument(
        "--processing-seconds",
        type=_not_negative,
        default=0.0,
        help="emulator seconds a batch takes to process (default 0: ended when first observed)",
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of every fault decision (default 0)")
    parser.add_argument(
        "--context-window",
        type=int,
        help="input tokens every model takes at most (default: each model's own, 200,000 and up); "
        "a small window lets a test exercise oversized documents with small files",
    )
    parser.add_argument(
        "--responders",
        action="append",
        metavar="MODULE",
        help="module whose RESPONDERS answer prompts, repeatable (default: $CLAUDE_EMULATOR_RESPONDERS, "
        "else claude_demo.responders, the bundled workloads'); prompts none answers get schema-valid "
        "or plain answers; --responders '' names none",
    )
    return parser


def _exit_cleanly(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(0)


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    if args.context_window is not None:
        if args.context_window < 1:
            raise SystemExit("--context-window must be at least 1")
        # This process serves one emulator: its model table is the emulator's configuration.
        for model, spec in MODELS.items():
            MODELS[model] = dataclasses.replace(spec, context_window=args.context_window)
    faults = load_fault_plan(args.faults) if args.faults else FaultPlan()
    scratch = None if args.state else Path(tempfile.mkdtemp(prefix="claude-emulator-"))
    state_path = args.state or scratch / "state.db"
    try:
        config = EmulatorConfig(
            state_path=state_path.resolve(),
            faults=faults,
            time_scale=args.time_scale,
            processing_seconds=args.processing_seconds,
            seed=args.seed,
            responder_modules=tuple(args.responders) if args.responders else None,
        )
        try:
            app = create_app(config)
        except ResponderModuleError as error:
            raise SystemExit(str(error)) from None
        server = _AnnouncingServer(
            uvicorn.Config(
                app,
                host=args.host,
                port=args.port,
                log_level="warning",
                access_log=False,
                timeout_graceful_shutdown=5,
            )
        )
        # uvicorn stops gracefully on SIGTERM or SIGINT, then raises the signal again with the handlers
        # it found; these make that a clean exit, so the scratch state below is still removed.
        for stop_signal in (signal.SIGTERM, signal.SIGINT):
            signal.signal(stop_signal, _exit_cleanly)
        server.run()
    finally:
        if scratch is not None:
            shutil.rmtree(scratch, ignore_errors=True)
