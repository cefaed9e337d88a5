"""The assignment as a whole: the skeleton scores zero, fails only at student TODOs, and every task is graded."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from grader.coverage import coverage, format_table
from grader.generate import all_regions, build
from grader.sandbox import Limits, ReportChannel, run_limited

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def skeleton(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("assignment") / "skeleton"
    build(REPO / "reference", root)
    return root


def _graded_run(impl: Path) -> list[dict]:
    """Outcome records of every graded test carrying points, run against ``impl``."""
    channel = ReportChannel()
    folders = [d for d in ("tests/components", "tests/hidden") if (REPO / d).is_dir()]
    result = run_limited(
        [sys.executable, "-m", "pytest", *folders, "-q", "-p", "grader.pytest_report",
         "--graded-only", f"--impl={impl}", "-p", "no:randomly"],
        cwd=REPO, env={**os.environ, "CI": "1", "PYTHONPATH": str(REPO)},
        limits=Limits(wall_seconds=900, cpu_seconds=1800, memory_bytes=8 * 2**30), channel=channel,
        unprivileged=False,
    )  # fmt: skip
    tests = [r for r in result.records if r.get("type") == "test"]
    assert tests, result.output[-3000:]
    return tests


@pytest.mark.timeout(900)
def test_skeleton_scores_zero_on_every_graded_test(skeleton: Path) -> None:
    """No graded test with points passes against the skeleton (each needs student code)."""
    passing = [t["nodeid"] for t in _graded_run(skeleton) if t["outcome"] == "passed"]
    assert passing == [], f"{len(passing)} graded tests pass without student code: {passing[:20]}"


@pytest.mark.timeout(300)
def test_skeleton_fails_only_at_student_todos(skeleton: Path) -> None:
    """The seed notebook's cells against the skeleton: imports work, every error is a named TODO."""
    proc = subprocess.run(
        [sys.executable, "-m", "grader.seed_cells", f"--impl={skeleton}"],
        cwd=REPO, capture_output=True, text=True, timeout=280,
    )  # fmt: skip
    out = proc.stdout
    assert "----- cell 2 (ok" in out, out[-3000:]
    errors = [line for line in out.splitlines() if line.startswith(("NotImplementedError", "TypeError", "AttributeError", "ValueError", "NameError", "RuntimeError", "IndexError", "KeyError"))]
    assert errors, "the skeleton should stop at a TODO somewhere"
    wrong = [e for e in errors if not e.startswith("NotImplementedError: ")]
    assert wrong == [], f"errors other than a student TODO: {wrong}"


def test_every_component_has_solution_regions() -> None:
    """Each module of the notebook's API holds at least one student task."""
    modules = {r.path.split("/")[0] for r in all_regions(REPO / "reference")}
    assert {"model_based_rl", "hierarchical_rl", "planning", "utils"} <= modules


@pytest.mark.timeout(1200)
def test_every_solution_region_is_caught_by_a_graded_test() -> None:
    """Stubbing any single solution region makes at least one graded test fail (no dead or untested task)."""
    results = coverage(REPO / "reference", jobs=2)
    assert len(results) == len(all_regions(REPO / "reference"))
    assert all(c.caught for c in results), format_table(results)
