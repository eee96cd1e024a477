"""The emulator's "model": the responders a registry names, and a default for everything else.

The emulator knows no workload. A responder module, named by import path, declares ``RESPONDERS``: a
mapping of name to responder, a callable that reads a :class:`~claude_emulator.params.Prompt` and
returns the answer text, or None when the prompt is not its workload. The modules come from
``claude-emulator --responders MODULE`` (repeatable), else ``CLAUDE_EMULATOR_RESPONDERS``
(comma-separated), else :data:`DEFAULT_RESPONDER_MODULES`: the bundled workloads' responders, skipped
when not installed. Responders are tried in order; a prompt none answers gets :func:`default_responder`'s
plain text, which structured outputs replace by the smallest instance of the schema asked for.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from claude_emulator.params import Prompt

Responder = Callable[[Prompt], str | None]

RESPONDER_MODULES_ENV = "CLAUDE_EMULATOR_RESPONDERS"
# Named, not imported: the emulator runs without the workloads, the demo and the tests get their answers.
DEFAULT_RESPONDER_MODULES = ("claude_demo.responders",)


class ResponderModuleError(ValueError):
    """A named responder module cannot be imported or declares no ``RESPONDERS`` mapping."""


def default_responder(prompt: Prompt) -> str:
    words = prompt.user.split()
    opening = " ".join(words[:12])
    return (
        f"This is the Claude emulator answering a {len(words)}-word message that begins: "
        f'"{opening}". A real model would answer it here.'
    )


@dataclass(frozen=True)
class Responders:
    """The responders one emulator tries, in order, before its default."""

    entries: tuple[tuple[str, Responder], ...] = ()

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(name for name, _ in self.entries)

    def respond(self, prompt: Prompt) -> str:
        for _, responder in self.entries:
            answer = responder(prompt)
            if answer is not None:
                return answer
        return default_responder(prompt)


def configured_responder_modules(named: Sequence[str] | None = None) -> tuple[str, ...]:
    """The modules `named`, else the environment's, else the defaults; an empty name stands for none."""
    if named is None:
        configured = os.environ.get(RESPONDER_MODULES_ENV)
        if configured is None:
            return DEFAULT_RESPONDER_MODULES
        named = configured.split(",")
    return tuple(name.strip() for name in named if name.strip())


def load_responders(modules: Sequence[str]) -> Responders:
    """The responders the `modules` declare, in module order; a later name replaces an earlier one."""
    found: dict[str, Responder] = {}
    for module_name in modules:
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as error:
            missing = error.name or ""
            if module_name in DEFAULT_RESPONDER_MODULES and (module_name + ".").startswith(missing + "."):
                continue  # the bundled workloads are not installed: answers from the schema only
            raise ResponderModuleError(
                f"responder module {module_name!r} cannot be imported: {error}"
            ) from error
        declared = getattr(module, "RESPONDERS", None)
        if not isinstance(declared, Mapping) or not all(callable(value) for value in declared.values()):
            raise ResponderModuleError(f"responder module {module_name!r} declares no RESPONDERS mapping")
        for name, responder in declared.items():
            found.pop(name, None)
            found[name] = responder
    return Responders(tuple(found.items()))
