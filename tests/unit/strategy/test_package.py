from __future__ import annotations

import subprocess
import sys

from tests.conftest import REPO_ROOT


def test_the_strategy_core_imports_no_airflow() -> None:
    # A fresh interpreter: this test process may have imported Airflow for other suites.
    modules = sorted(
        f"claude_batch.strategy.{path.stem}"
        for path in (REPO_ROOT / "plugins" / "claude_batch" / "strategy").glob("*.py")
        if path.stem != "__init__"
    )
    code = (
        "import importlib, sys\n"
        f"for name in {modules!r}: importlib.import_module(name)\n"
        "print(sorted(m for m in sys.modules if m == 'airflow' or m.startswith('airflow.')))"
    )
    assert "claude_batch.strategy.sharding" in modules
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"
