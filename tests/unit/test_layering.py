"""The import graph keeps the layers the README describes: a pure strategy that knows no workload,
operators that share code through stages (never each other), and the emulator independent of the
workloads it may answer for.

The modules are parsed, not imported: an import inside a function counts as much as one at the top.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import REPO_ROOT

PACKAGES = {
    "claude_batch": REPO_ROOT / "plugins" / "claude_batch",
    "claude_emulator": REPO_ROOT / "include" / "claude_emulator",
}


def _module_name(package: str, root: Path, path: Path) -> str:
    parts = [package, *path.relative_to(root).with_suffix("").parts]
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(module: str, path: Path) -> Iterator[tuple[str, int]]:
    """(imported module, line) for every import in the file, relative imports resolved."""
    is_package = path.name == "__init__.py"
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            yield from ((alias.name, node.lineno) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = module.split(".")[: len(module.split(".")) - node.level + (1 if is_package else 0)]
                target = ".".join([*base, node.module] if node.module else base)
            else:
                target = node.module or ""
            yield target, node.lineno
            # `from claude_batch.operators import submit` imports the module claude_batch.operators.submit.
            yield from ((f"{target}.{alias.name}", node.lineno) for alias in node.names)


def import_graph() -> dict[str, list[tuple[str, int]]]:
    """Every module of the product and the emulator, with what it imports."""
    graph = {}
    for package, root in PACKAGES.items():
        for path in sorted(root.rglob("*.py")):
            module = _module_name(package, root, path)
            graph[module] = list(_imports(module, path))
    return graph


def _under(module: str, prefix: str) -> bool:
    return module == prefix or module.startswith(prefix + ".")


def _arrows(graph: dict[str, list[tuple[str, int]]], source: str, targets: tuple[str, ...]) -> list[str]:
    return [
        f"{module}:{line} imports {imported}"
        for module, imports in graph.items()
        if _under(module, source)
        for imported, line in imports
        if any(_under(imported, target) for target in targets)
    ]


@pytest.fixture(scope="module")
def graph() -> dict[str, list[tuple[str, int]]]:
    return import_graph()


def test_the_graph_sees_the_imports_it_judges(graph) -> None:
    # A parser that found nothing would pass every rule below.
    assert any(
        imported == "claude_batch.stages.submit" for imported, _ in graph["claude_batch.operators.recover"]
    )
    assert any(imported == "airflow.sdk" for imported, _ in graph["claude_batch.stages.run"])
    assert len([m for m in graph if _under(m, "claude_batch.operators")]) >= 10


def test_the_strategy_imports_no_workload_content_airflow_or_face(graph) -> None:
    forbidden = (
        "claude_workloads",
        "claude_demo",
        "claude_emulator",
        "airflow",
        "claude_batch.hooks",
        "claude_batch.operators",
        "claude_batch.sensors",
        "claude_batch.triggers",
        "claude_batch.stages",
        "claude_batch.ui",
        "claude_batch.workloads",
    )
    assert _arrows(graph, "claude_batch.strategy", forbidden) == []


def test_operators_and_stages_import_nothing_of_the_ui(graph) -> None:
    assert _arrows(graph, "claude_batch.operators", ("claude_batch.ui",)) == []
    assert _arrows(graph, "claude_batch.stages", ("claude_batch.ui",)) == []
    assert _arrows(graph, "claude_batch.hooks", ("claude_batch.ui",)) == []


def test_no_operator_module_imports_another(graph) -> None:
    operators = [m for m in graph if _under(m, "claude_batch.operators") and m != "claude_batch.operators"]
    arrows = [
        f"{module}:{line} imports {imported}"
        for module in operators
        for imported, line in graph[module]
        if _under(imported, "claude_batch.operators") and not _under(imported, module)
    ]
    assert arrows == []


def test_stages_import_no_operator_sensor_or_trigger(graph) -> None:
    # Stages are what operators share; an arrow back would make one operator depend on another again.
    forbidden = ("claude_batch.operators", "claude_batch.sensors", "claude_batch.triggers")
    assert _arrows(graph, "claude_batch.stages", forbidden) == []


def test_the_emulator_imports_no_workload_content(graph) -> None:
    assert _arrows(graph, "claude_emulator", ("claude_workloads",)) == []


def test_parsing_the_dag_files_imports_no_claude_sdk() -> None:
    """The dag-processor parses the DAG files every few seconds, and each task run parses its file
    again: the anthropic SDK (about as slow to import as Airflow's own) is imported only by a task
    that calls the API. Imported here for real, in a fresh interpreter that refuses the SDK, so a
    module-level import anywhere on the way fails this test with its import chain."""
    probe = """
import sys


class RefuseTheSdk:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] == "anthropic":
            raise ImportError(f"{name} imported while parsing the DAG files")


sys.meta_path.insert(0, RefuseTheSdk())
sys.path.insert(0, "dags")
import claude_batch_workloads, rerun_record  # noqa: E401, F401

loaded = sorted(name for name in sys.modules if name.startswith("claude_batch.hooks.claude"))
assert not loaded, loaded
"""
    result = subprocess.run(
        [sys.executable, "-c", probe], cwd=REPO_ROOT, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr[-4000:]
