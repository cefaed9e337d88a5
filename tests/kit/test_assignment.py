"""The assignment as a whole: the skeleton scores zero, fails only at student TODOs, and every task is graded."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from grader.authoring.coverage import RECORD as COVERAGE_RECORD
from grader.authoring.coverage import check_region, digest_inputs, format_table, inputs_digest, stale_message
from grader.authoring.generate import all_regions, build
from grader.judge.sandbox import Limits, ReportChannel, run_limited

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
        [sys.executable, "-m", "pytest", *folders, "-q", "-p", "grader.judge.pytest_report",
         "--graded-only", f"--impl={impl}", "-p", "no:randomly",
         # the skeleton is the kit's own code (no worker needed); a TODO ends a hypothesis test at once
         "--isolation=none", "--fast-todo", "--tb=no"],
        cwd=REPO, env={**os.environ, "CI": "1", "PYTHONPATH": str(REPO)},
        limits=Limits(wall_seconds=900, cpu_seconds=1800, memory_bytes=8 * 2**30), channel=channel,
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
        [sys.executable, "-m", "grader.authoring.seed_cells", f"--impl={skeleton}"],
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


def _coverage_record() -> dict:
    """docs/coverage.json, after checking that it describes the current reference/ and graded tests."""
    problem = stale_message(COVERAGE_RECORD, inputs_digest())
    assert problem is None, problem
    return json.loads(COVERAGE_RECORD.read_text(encoding="utf-8"))


def test_every_solution_region_is_caught_by_a_graded_test() -> None:
    """Stubbing any single solution region makes at least one graded test fail (no dead or untested task).

    The mutation run itself takes minutes, so `make coverage` records its outcome in docs/coverage.json,
    stamped with the digest of its inputs; here the record must be current and complete."""
    recorded = {(r["path"], r["qualname"], r["begin"]): r["caught_by"] for r in _coverage_record()["regions"]}
    regions = all_regions(REPO / "reference")
    missing = [f"{r.path}:{r.begin} {r.qualname}" for r in regions if (r.path, r.qualname, r.begin) not in recorded]
    assert missing == [], f"regions absent from docs/coverage.json (run `make coverage` and commit it): {missing}"
    uncaught = [f"{r.path}:{r.begin} {r.qualname}" for r in regions if not recorded[(r.path, r.qualname, r.begin)]]
    assert uncaught == [], (
        f"no graded test fails when these regions are stubbed (write one, then `make coverage`): {uncaught}"
    )


@pytest.mark.timeout(300)
def test_coverage_machinery_catches_a_stubbed_region() -> None:
    """The mutation machinery itself, on cheap regions (utils: RunningStats): their stubs are caught."""
    regions = [r for r in all_regions(REPO / "reference") if r.qualname in ("chan_merge", "RunningStats.update")]
    assert len(regions) == 2, f"expected the regions chan_merge and RunningStats.update, got {regions}"
    results = [check_region(REPO / "reference", r, timeout=240) for r in regions]
    assert all(c.caught for c in results), format_table(results)
    assert all("running_stats" in c.caught_by for c in results), format_table(results)


def test_coverage_digest_covers_the_outcome_inputs(tmp_path: Path) -> None:
    """The digest covers reference/*.py, the graded tests and the harness, and only those."""
    for rel in ("reference/utils/a.py", "reference/notes.txt", "tests/components/test_a.py",
                "tests/components/__pycache__/x.pyc", "tests/hidden/data.json", "tests/conftest.py",
                "tests/kit/test_k.py", "grader/judge/remote.py", "grader/pipeline/grade.py"):  # fmt: skip
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text(rel)
    assert digest_inputs(tmp_path) == [
        "grader/judge/remote.py", "reference/utils/a.py", "tests/components/test_a.py", "tests/conftest.py",
        "tests/hidden/data.json",
    ]  # fmt: skip
    before = inputs_digest(tmp_path)
    (tmp_path / "tests/kit/test_k.py").write_text("changed")
    assert inputs_digest(tmp_path) == before, "a kit test is not an input of the mutation run"
    (tmp_path / "reference/utils/a.py").write_text("changed")
    assert inputs_digest(tmp_path) != before
    record = tmp_path / "docs" / "coverage.json"
    assert "is missing" in stale_message(record, before, tmp_path)
    record.parent.mkdir()
    record.write_text(json.dumps({"digest": before, "regions": []}))
    assert stale_message(record, before, tmp_path) is None
    assert "run `make coverage` and commit docs/coverage.json" in stale_message(record, "0" * 64, tmp_path)
