"""The assignment notebook notebooks/CA15.ipynb: built from notebooks/build_notebook.py, stored clean, keeps the
seed's calls, runs end to end against reference/, and fails cleanly (at its first TODO) against the skeleton."""

from __future__ import annotations

import importlib.util
import os
import re
from pathlib import Path

import nbformat
import pytest

from grader.authoring.generate import all_regions, build
from grader.sandboxed.notebook import execute
from grader.authoring.seed_cells import parse_cells

REPO = Path(__file__).resolve().parents[2]
NOTEBOOK = REPO / "notebooks" / "CA15.ipynb"
BUILDER = REPO / "notebooks" / "build_notebook.py"


def _builder():
    spec = importlib.util.spec_from_file_location("ca15_build_notebook", BUILDER)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _code_cells(nb: nbformat.NotebookNode) -> list[nbformat.NotebookNode]:
    return [c for c in nb.cells if c.cell_type == "code"]


def _images(cell: nbformat.NotebookNode) -> int:
    return sum(1 for o in cell.get("outputs", []) if "image/png" in o.get("data", {}))


def _isolate_env(monkeypatch: pytest.MonkeyPatch, root: Path) -> None:
    """execute() writes CA15_IMPL, CA15_BUDGET (and MPLBACKEND) into os.environ: let monkeypatch restore them
    afterwards."""
    monkeypatch.setenv("CA15_IMPL", str(root))
    monkeypatch.delenv("CA15_BUDGET", raising=False)
    monkeypatch.setenv("MPLBACKEND", os.environ.get("MPLBACKEND", "Agg"))


@pytest.fixture(scope="module")
def notebook() -> nbformat.NotebookNode:
    return nbformat.read(NOTEBOOK, as_version=4)


def test_notebook_matches_its_builder() -> None:
    """CA15.ipynb is exactly what notebooks/build_notebook.py writes (regenerate it after editing the builder)."""
    builder = _builder()
    assert NOTEBOOK.read_text(encoding="utf-8") == builder.render(builder.build()), (
        "notebooks/CA15.ipynb is out of date: run `python notebooks/build_notebook.py`"
    )


def test_notebook_is_valid_and_stored_without_outputs(notebook: nbformat.NotebookNode) -> None:
    """The notebook validates with nbformat and holds no outputs or execution counts."""
    nbformat.validate(notebook)
    for cell in _code_cells(notebook):
        assert cell.outputs == [] and cell.execution_count is None, cell.source[:80]


def test_notebook_keeps_every_seed_call(notebook: nbformat.NotebookNode) -> None:
    """Seed cells 2-13 appear verbatim, in order; cell 1 differs only in its implementation-root lines."""
    seeds = parse_cells((REPO / "notebooks" / "seed_cells.py").read_text(encoding="utf-8"))
    sources = [c.source for c in _code_cells(notebook)]
    positions = []
    for number in range(2, 14):
        want = seeds[number].strip("\n")
        assert want in sources, f"seed cell {number} is not a code cell of the notebook (verbatim)"
        positions.append(sources.index(want))
    assert positions == sorted(positions), "seed cells are out of order"
    assert "num_actions=3" in sources[positions[11 - 2]]  # the documented addition of cell 11

    setup = sources[0]
    assert 'os.environ.get("CA15_IMPL", os.path.join("..", "skeleton"))' in setup
    assert 'matplotlib.use("Agg")' in setup
    path_lines = re.compile(r"^.*(CA15_IMPL|sys\.path\.insert).*$", re.M)
    seed_rest = [line for line in path_lines.sub("", seeds[1]).splitlines() if line.strip()]
    for line in seed_rest:
        assert line in setup.splitlines(), f"seed cell 1 line missing from the setup cell: {line!r}"


def test_first_cell_documents_ca15_impl(notebook: nbformat.NotebookNode) -> None:
    """The first (markdown) cell explains CA15_IMPL, the ../skeleton default and where the TODOs are."""
    first = notebook.cells[0]
    assert first.cell_type == "markdown"
    for needle in ("CA15_IMPL", "skeleton/", "../reference", "TODO(student)", "NotImplementedError", "make test"):
        assert needle in first.source, needle


@pytest.mark.timeout(400)
def test_notebook_runs_against_reference(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every cell runs without an error against reference/ and the experiments draw their figures, on the
    grading budget (every call of the full run, on a tenth of its training; `make release` runs the students'
    full budget first, `make notebook`)."""
    _isolate_env(monkeypatch, REPO / "reference")
    summary = execute(NOTEBOOK, REPO / "reference", tmp_path / "executed.ipynb", cell_timeout=300, budget="grading")
    assert summary["errors"] == [], summary
    executed = nbformat.read(tmp_path / "executed.ipynb", as_version=4)
    cells = _code_cells(executed)
    assert all(c.execution_count is not None for c in cells)
    experiments = [c for c in cells if "show(" in c.source and "def show" not in c.source]
    assert len(experiments) >= 8, len(experiments)
    missing = [c.source.splitlines()[0] for c in experiments if _images(c) == 0]
    assert not missing, f"experiment cells without an image/png output: {missing}"


@pytest.mark.timeout(400)
def test_notebook_fails_cleanly_against_the_skeleton(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Against a freshly generated skeleton the first error is a NotImplementedError naming its TODO
    ("<Qualified.name>: <TODO text>"), and every cell before it ran without an error."""
    skeleton = tmp_path / "skeleton"
    build(REPO / "reference", skeleton)
    _isolate_env(monkeypatch, skeleton)
    summary = execute(NOTEBOOK, skeleton, tmp_path / "executed.ipynb", cell_timeout=300, stop_at_first_error=True)
    assert summary["errors"], "the skeleton ran without a NotImplementedError"
    first = summary["errors"][0]
    assert first["ename"] == "NotImplementedError", first
    messages = {f"{r.qualname}: {r.todo}" for r in all_regions(REPO / "reference")}
    assert first["evalue"] in messages, first

    executed = nbformat.read(tmp_path / "executed.ipynb", as_version=4)
    cells = _code_cells(executed)
    before = cells[: first["cell"] - 1]
    assert len(before) >= 3, "the setup, helper and import cells must run before any student code"
    for cell in before:
        assert cell.execution_count is not None
        assert not any(o.output_type == "error" for o in cell.outputs), cell.source[:80]
    assert "Implementation root: " + str(skeleton) in "".join(
        o.get("text", "") for o in cells[0].outputs
    )
