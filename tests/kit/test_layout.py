"""The grader's layout shows its trust boundary (docs/CONVENTIONS.md §6): each module lives in the folder of who
runs it, the sandboxed side imports nothing else of the kit, and no import circle is left."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

GRADER = Path(__file__).resolve().parents[2] / "grader"
ROLES = ("sandboxed", "judge", "pipeline", "authoring", "student")
#: The package's own entry points, beside the role folders.
TOP_LEVEL = {"__init__.py", "__main__.py", "version.py"}


def _module(path: Path) -> str:
    parts = path.relative_to(GRADER.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path) -> set[str]:
    """Every ``grader...`` module ``path`` imports, at any depth of its code (lazy imports included)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "grader":
            found.add(node.module)
            found |= {f"{node.module}.{alias.name}" for alias in node.names}
        elif isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names if alias.name.split(".")[0] == "grader"}
    return found


@pytest.fixture(scope="module")
def graph() -> dict[str, set[str]]:
    """grader module -> the grader modules it imports."""
    modules = {_module(path): path for path in GRADER.rglob("*.py")}
    return {name: {m for m in _imports(path) if m in modules and m not in (name, "grader")}
            for name, path in modules.items()}  # fmt: skip


def test_every_module_lives_in_a_role_folder() -> None:
    """Besides the package's entry points, each module of grader/ is in sandboxed/, judge/, pipeline/,
    authoring/ or student/: the flat folder does not grow back."""
    loose = sorted(p.name for p in GRADER.glob("*.py") if p.name not in TOP_LEVEL)
    assert not loose, f"modules outside the role folders {ROLES}: {loose} (docs/CONVENTIONS.md §6 says where each goes)"
    assert {p.name for p in GRADER.iterdir() if p.is_dir() and p.name != "__pycache__"} == set(ROLES)


def test_the_sandboxed_side_imports_nothing_else_of_the_kit(graph: dict[str, set[str]]) -> None:
    """A module of grader/sandboxed/ (what a sandbox holds beside the submission) imports only grader/sandboxed/."""
    wrong = {name: sorted(m for m in deps if not m.startswith("grader.sandboxed"))
             for name, deps in graph.items() if name.startswith("grader.sandboxed")}  # fmt: skip
    wrong = {name: deps for name, deps in wrong.items() if deps}
    assert not wrong, f"the sandboxed side imports the trusted side: {wrong}"


def test_the_judge_imports_neither_the_pipeline_nor_authoring(graph: dict[str, set[str]]) -> None:
    """The judge imports neither the grading pipeline nor the authoring tools (it runs inside every grading)."""
    wrong = {name: sorted(m for m in deps if m.startswith(("grader.pipeline", "grader.authoring")))
             for name, deps in graph.items() if name.startswith("grader.judge")}  # fmt: skip
    assert not {name: deps for name, deps in wrong.items() if deps}


def test_no_import_circle(graph: dict[str, set[str]]) -> None:
    """The import graph of grader/ (lazy imports included) has no circle."""
    circles, state = [], {}

    def visit(name: str, path: list[str]) -> None:
        state[name] = "open"
        for dep in sorted(graph[name]):
            if state.get(dep) == "open":
                circles.append(" -> ".join([*path[path.index(dep):], dep]))
            elif dep not in state:
                visit(dep, [*path, dep])
        state[name] = "done"

    for name in sorted(graph):
        if name not in state:
            visit(name, [name])
    assert not circles, circles


def test_a_circle_is_found(tmp_path: Path) -> None:
    """The circle check sees a circle through a lazy import (a check that cannot fail proves nothing)."""
    (tmp_path / "a.py").write_text("from grader.b import x\n")
    (tmp_path / "b.py").write_text("def f():\n    import grader.a\n")
    assert _imports(tmp_path / "a.py") == {"grader.b", "grader.b.x"}
    assert _imports(tmp_path / "b.py") == {"grader.a"}
