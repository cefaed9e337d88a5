"""GitHub Classroom's workflow (grader/authoring/classroom.py): one step per component, worth its public points."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest
import yaml

from grader.authoring.classroom import COMMAND_GRADER, REPORTER, WORKFLOW_PATH, public_budget, step_id, workflow, write_workflow
from grader.pipeline.grade import GradeConfig, expected_tests

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def expected() -> list[dict]:
    return expected_tests(GradeConfig())


def _public_points(expected: list[dict]) -> Counter:
    points: Counter = Counter()
    for test in expected:
        if not test["hidden"] and test["nodeid"].startswith("tests/components/") and test["points"]:
            points[test["component"]] += test["points"]
    return points


def _steps(text: str) -> tuple[list[dict], dict]:
    """The grader steps and the reporter step of a workflow, parsed as YAML."""
    doc = yaml.safe_load(text)
    assert set(doc) >= {"name", "on", "permissions", "jobs"}, doc.keys()
    (job,) = doc["jobs"].values()
    steps = job["steps"]
    graders = [s for s in steps if s.get("uses") == COMMAND_GRADER]
    reporters = [s for s in steps if s.get("uses") == REPORTER]
    assert len(reporters) == 1 and steps[-1] is reporters[0], "the reporter is the one last step"
    return graders, reporters[0]


def test_every_component_once_with_its_public_points(expected: list[dict]) -> None:
    """Each component with public points has exactly one grader step, max-score = its public points, running
    exactly its public test files against skeleton/."""
    graders, _ = _steps(workflow(public_budget(expected)))
    want = _public_points(expected)
    names = [s["with"]["test-name"] for s in graders]
    assert sorted(names) == sorted(want) and len(names) == len(set(names))
    for step in graders:
        component = step["with"]["test-name"]
        assert step["with"]["max-score"] == want[component], component
        assert set(step["with"]) == {"test-name", "setup-command", "command", "timeout", "max-score"}
        files = sorted({t["nodeid"].split("::")[0] for t in expected
                        if t["component"] == component and not t["hidden"] and t["points"]})  # fmt: skip
        assert step["with"]["command"] == f"python -m pytest -q {' '.join(files)} --impl=skeleton --isolation=process"
        assert step["id"] == step_id(component)
    assert sum(s["with"]["max-score"] for s in graders) == sum(want.values())


def test_reporter_lists_every_step(expected: list[dict]) -> None:
    """The reporter's runners are the grader steps' ids, and each has its <ID>_RESULTS from that step."""
    graders, reporter = _steps(workflow(public_budget(expected)))
    ids = [s["id"] for s in graders]
    assert reporter["with"]["runners"].split(",") == ids
    assert reporter["env"] == {f"{i.upper()}_RESULTS": f"${{{{steps.{i}.outputs.result}}}}" for i in ids}


def test_the_release_carries_the_kit_workflow(expected: list[dict], tmp_path: Path) -> None:
    """write_workflow puts the file where GitHub Classroom looks for it."""
    path = write_workflow(tmp_path, public_budget(expected))
    assert path == tmp_path / ".github" / "workflows" / "classroom.yml" == tmp_path / WORKFLOW_PATH
    assert path.read_text() == workflow(public_budget(expected))


def test_public_budget_leaves_out_hidden_zero_point_and_unshipped_tests(tmp_path: Path) -> None:
    """Hidden tests, tests outside tests/components, 0-point tests and tests the release does not define count
    for nothing."""
    expected = [
        {"nodeid": "tests/components/test_a.py::test_one[1]", "component": "DynaQAgent", "points": 2, "hidden": False},
        {"nodeid": "tests/components/test_a.py::test_two", "component": "DynaQAgent", "points": 1, "hidden": False},
        {"nodeid": "tests/components/test_a.py::test_gpu", "component": "DynaQAgent", "points": 0, "hidden": False},
        {"nodeid": "tests/hidden/test_h.py::test_h", "component": "DynaQAgent", "points": 5, "hidden": True},
    ]  # fmt: skip
    assert public_budget(expected) == {"DynaQAgent": {"points": 3, "files": ["tests/components/test_a.py"]}}
    (tmp_path / "tests" / "components").mkdir(parents=True)
    (tmp_path / "tests" / "components" / "test_a.py").write_text("def test_one(x):\n    pass\n")
    assert public_budget(expected, shipped=tmp_path) == {"DynaQAgent": {"points": 2, "files": ["tests/components/test_a.py"]}}
    with pytest.raises(ValueError, match="missing points"):
        public_budget([{"nodeid": "tests/components/test_a.py::t", "component": "X"}])


@pytest.mark.parametrize(("name", "ident"), [("DynaQAgent", "dyna-q-agent"), ("ModelBasedValueExpansion",
                         "model-based-value-expansion"), ("MonteCarloTreeSearch", "monte-carlo-tree-search")])  # fmt: skip
def test_step_ids_are_kebab_case(name: str, ident: str) -> None:
    assert step_id(name) == ident


def test_workflow_refuses_an_empty_budget() -> None:
    with pytest.raises(ValueError, match="budget: expected at least one component"):
        workflow({})
