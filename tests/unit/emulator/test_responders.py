"""The responder registry: the emulator answers from the modules it is given, never from a workload import."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from claude_batch.strategy.models import structured_output_schema
from claude_emulator.emulator import Emulator, EmulatorConfig
from claude_emulator.params import Prompt
from claude_emulator.responders import DEFAULT_RESPONDER_MODULES, ResponderModuleError, load_responders
from claude_emulator.testing import running_emulator
from claude_workloads.loan_disclosure_review import Disclosure, LoanReview
from tests.unit.emulator.support import MODEL, sdk_client

LOAN = '<loan_file id="7">\nANNUAL PERCENTAGE RATE\nFINANCE CHARGE\n</loan_file>'
LOAN_FORMAT = {"format": {"type": "json_schema", "schema": structured_output_schema(LoanReview)}}


def echo_responder(prompt: Prompt) -> str | None:
    return f"echo: {prompt.user}" if prompt.user.startswith("echo") else None


# This module is a responder module too: the registry reads this mapping.
RESPONDERS = {"echo": echo_responder}


def _answer(emulator: Emulator, content: str, **params: object) -> str:
    body = {"model": MODEL, "max_tokens": 400, "messages": [{"role": "user", "content": content}], **params}
    return emulator.create_message(body).content[0].text


def test_the_emulator_imports_no_workload_content() -> None:
    code = (
        "import sys, claude_emulator.app, claude_emulator.cli, claude_emulator.testing; "
        "print(sorted(m for m in sys.modules if m.startswith(('claude_workloads', 'claude_demo'))))"
    )
    imported = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert imported.stdout.strip() == "[]"


def test_by_default_the_bundled_workloads_answer_as_their_schema_says(tmp_path: Path) -> None:
    emulator = Emulator(EmulatorConfig(state_path=tmp_path / "state.db"))

    assert emulator.responders.names == ("loan_disclosure_review", "document_tagging")
    review = LoanReview.model_validate_json(_answer(emulator, LOAN, output_config=LOAN_FORMAT))
    assert review.loan_file_id == "7" and Disclosure.PREPAYMENT in review.missing_disclosures


def test_without_responders_a_schema_still_gets_a_valid_answer(tmp_path: Path) -> None:
    emulator = Emulator(EmulatorConfig(state_path=tmp_path / "state.db", responder_modules=()))

    review = LoanReview.model_validate_json(_answer(emulator, LOAN, output_config=LOAN_FORMAT))
    assert review.loan_file_id == "emulated" and review.missing_disclosures == []
    assert _answer(emulator, LOAN).startswith("This is the Claude emulator answering")


def test_a_registered_module_answers_first_and_the_default_answers_the_rest(tmp_path: Path) -> None:
    modules = (__name__, *DEFAULT_RESPONDER_MODULES)
    emulator = Emulator(EmulatorConfig(state_path=tmp_path / "state.db", responder_modules=modules))

    assert _answer(emulator, "echo this") == "echo: echo this"
    assert LoanReview.model_validate_json(_answer(emulator, LOAN)).loan_file_id == "7"
    assert _answer(emulator, "Say hello.").startswith("This is the Claude emulator answering")


def test_the_environment_names_the_modules_when_the_config_does_not(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CLAUDE_EMULATOR_RESPONDERS", __name__)
    emulator = Emulator(EmulatorConfig(state_path=tmp_path / "state.db"))

    assert emulator.responders.names == ("echo",)


@pytest.mark.parametrize(
    ("module", "complaint"),
    [("tests.unit.emulator.no_such_module", "cannot be imported"), ("json", "declares no RESPONDERS")],
)
def test_a_module_that_declares_no_responders_is_refused(module: str, complaint: str) -> None:
    with pytest.raises(ResponderModuleError, match=complaint):
        load_responders([module])


def test_the_console_script_takes_responder_modules() -> None:
    with running_emulator(responders=[""]) as emulator:
        message = sdk_client(emulator).messages.create(
            model=MODEL,
            max_tokens=400,
            messages=[{"role": "user", "content": LOAN}],
            output_config=LOAN_FORMAT,
        )
    assert json.loads(message.content[0].text)["loan_file_id"] == "emulated"

    refused = pytest.raises(RuntimeError, match="responder module 'json' declares no RESPONDERS")
    with refused, running_emulator(responders=["json"]):
        pass
