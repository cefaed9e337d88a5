"""The student's dashboard (grader/student/dashboard.py, ``make test`` in the release) and the one tally it shares with
the grader: the same public tests, the same points, the hidden points apart."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from textwrap import dedent

import pytest

from grader.student.dashboard import HIDDEN_POINTS_FILE, TODO_SITES_FILE
from grader.pipeline.feedback import component_split
from grader.pipeline.grade import GradeConfig, expected_tests, score
from grader.authoring.release import hidden_points

REPO = Path(__file__).resolve().parents[2]
MAX_LINES = 80

#: A tiny kit: the harness's contract (component/category/points as user properties) and the plugin.
FAKE_CONFTEST = '''
import pytest

pytest_plugins = ("grader.student.dashboard",)


def pytest_configure(config):
    for name in ("component", "shape", "property", "points"):
        config.addinivalue_line("markers", name)


def pytest_collection_modifyitems(config, items):
    for item in items:
        pts = item.get_closest_marker("points")
        item.user_properties += [("component", item.get_closest_marker("component").args[0]),
                                 ("category", "shape"), ("points", 1 if pts is None else pts.args[0])]
'''

FAKE_TESTS = '''
import os
import pytest
from hypothesis import given, settings, strategies as st

pytestmark = pytest.mark.component("Alpha")


def todo():
    raise NotImplementedError("Alpha.step: x_next = A x + B u (eq. 3)")


@pytest.mark.points(2)
def test_passes():
    pass


def test_todo():
    todo()


@settings(max_examples=50, derandomize=True, database=None)
@given(st.integers())
def test_property_todo(x):
    with open(os.environ["CALLS_FILE"], "a") as fh:
        fh.write("call\\n")
    todo()


def test_wrong_value():
    assert 1 + 1 == 3, "expected 3 from the hand computation"


@pytest.mark.points(0)
def test_given_code():
    pass
'''

FAKE_BETA = '''
import pytest

pytestmark = pytest.mark.component("Beta")


@pytest.mark.parametrize("seed", [0, 1])
def test_beta(seed):
    raise NotImplementedError("Beta.train: the TD target")
'''

FAKE_DELTA = '''
import pytest

pytestmark = pytest.mark.component("Delta")


@pytest.mark.points(0)
def test_delta_given_helper():
    raise NotImplementedError("Alpha.step is still a TODO")
'''


def _pytest(cwd: Path, *args: str, env: dict[str, str] | None = None, timeout: float = 600) -> str:
    run_env = {**os.environ, "PYTHONPATH": str(REPO), "CI": "1", **(env or {})}
    proc = subprocess.run([sys.executable, "-m", "pytest", "-p", "no:randomly", "-p", "no:cacheprovider", *args],
                          cwd=cwd, env=run_env, capture_output=True, text=True, timeout=timeout)  # fmt: skip
    return proc.stdout + proc.stderr


@pytest.fixture(scope="module")
def fake_kit(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("fakekit")
    (root / "tests").mkdir()
    (root / "pytest.ini").write_text("[pytest]\n")  # the rootdir: tests/hidden_points.json is found under it
    (root / "tests" / "conftest.py").write_text(FAKE_CONFTEST)
    (root / "tests" / "test_alpha.py").write_text(dedent(FAKE_TESTS))
    (root / "tests" / "test_beta.py").write_text(dedent(FAKE_BETA))
    (root / "tests" / "test_delta.py").write_text(dedent(FAKE_DELTA))
    (root / "tests" / HIDDEN_POINTS_FILE).write_text(json.dumps({"hidden_points": {"Alpha": 3, "Gamma": 4}}))
    (root / "tests" / TODO_SITES_FILE).write_text(json.dumps({"todo_sites": {"Alpha": [
        {"where": "skeleton/alpha.py:3", "todo": "Alpha.step: x_next = A x + B u (eq. 3)"},
        {"where": "skeleton/alpha.py:9", "todo": "Alpha.reset: the state's zero"}]}, "doubles": {"Alpha": ["Beta"]}}))
    return root


@pytest.mark.timeout(600)
def test_dashboard_rows_first_failures_and_not_started(fake_kit: Path) -> None:
    """One row per component (tests, points, hidden points, status), a first failure per failing component in
    two lines, "not started" without a traceback, and a hypothesis test stops at its first TODO example."""
    calls = fake_kit / "calls.txt"
    out = _pytest(fake_kit, "-q", "--dashboard", "tests", env={"CALLS_FILE": str(calls)})
    lines = out.splitlines()
    assert len(lines) <= MAX_LINES, out
    assert re.search(r"^Alpha\s+1/4\s+2/5\s+3\s+1 failing, 2 not started$", out, re.M), out
    assert re.search(r"^Beta\s+0/2\s+0/2\s+-\s+not started$", out, re.M), out
    assert "Gamma" not in out, "a component none of whose tests ran has no row"
    assert re.search(r"^total\s+1/6\s+2/7\s+3$", out, re.M), out
    assert "tests worth 0 points (given code, error messages): 1/2 passed" in out
    assert re.search(r"^  failing: test_delta_given_helper \(reaches a TODO at tests/test_delta\.py:\d+\)$", out, re.M), out
    assert "2 of 2 components to go." in out
    assert "    (graded with test doubles for Beta: a bug there is not charged here)" not in out  # Alpha's first: a TODO
    first = lines.index(next(line for line in lines if line.startswith("Alpha: ")))
    assert re.match(r"Alpha: not started at test_todo \(tests/test_alpha\.py:\d+\)$", lines[first]), out
    assert lines[first + 1].strip() == "Alpha.step: x_next = A x + B u (eq. 3)"
    assert re.search(r"^Beta: not started at test_beta\[0\] ", out, re.M), out
    assert "Traceback" not in out and "Falsifying" not in out and "def todo" not in out, out
    assert calls.read_text().count("call") == 1, "the hypothesis test went on after its first NotImplementedError"
    assert re.search(r"1 failed, 2 passed, 5 not started", out), out


@pytest.mark.timeout(600)
def test_component_option_gives_the_full_output_of_one_component(fake_kit: Path) -> None:
    """``--component`` (``make test K=...``) keeps one component's tests and pytest's normal failure output."""
    out = _pytest(fake_kit, "-q", "--fast-todo", "--component=alpha", "tests", env={"CALLS_FILE": "/dev/null"})
    assert "expected 3 from the hand computation" in out and "assert (1 + 1) == 3" in out, out
    assert "test_beta" not in out and "Gamma" not in out, out
    assert re.search(r"^test_todo \(tests/test_alpha\.py:\d+\): Alpha\.step: x_next", out, re.M), out
    assert re.search(r"every TODO of Alpha.*\nskeleton/alpha\.py:3: Alpha\.step: .*\nskeleton/alpha\.py:9: Alpha\.reset", out), out
    assert "Alpha: graded with test doubles for Beta: a bug there is not charged here." in out
    bad = _pytest(fake_kit, "-q", "--component=nope", "tests")
    assert "--component=nope: no test of that component; components: Alpha, Beta, Delta" in bad


@pytest.mark.timeout(600)
def test_a_conftest_in_a_subfolder_leaves_the_dashboard_working(tmp_path: Path) -> None:
    """A second conftest.py (a student's own, in a subfolder) beside the dashboard plugin: the table still prints
    (pytest then hashes every plugin, the dashboard's tally among them)."""
    (tmp_path / "pytest.ini").write_text("[pytest]\n")
    (tmp_path / "tests" / "mine").mkdir(parents=True)
    (tmp_path / "tests" / "conftest.py").write_text(FAKE_CONFTEST)
    (tmp_path / "tests" / "test_beta.py").write_text(dedent(FAKE_BETA))
    (tmp_path / "tests" / "mine" / "conftest.py").write_text("def pytest_collection_modifyitems(items):\n    pass\n")
    (tmp_path / "tests" / "mine" / "test_mine.py").write_text(
        "import pytest\npytestmark = pytest.mark.component('Mine')\ndef test_mine():\n    pass\n"
    )
    out = _pytest(tmp_path, "-q", "--dashboard", "tests")
    assert "INTERNALERROR" not in out, out
    assert re.search(r"^Beta\s+0/2\s+0/2\s+not started$", out, re.M), out
    assert re.search(r"^Mine\s+1/1\s+1/1\s+ok$", out, re.M), out


def test_grader_splits_public_and_hidden_per_component() -> None:
    """results.json's ``public_hidden``: per component the public and hidden subtotals apart, hidden rows of
    Gradescope visibility ``hidden`` with no message."""
    from grader.pipeline.grade import gradescope_results

    tests = [{"component": "A", "category": "shape", "points": 2, "hidden": False, "outcome": "passed", "score": 2,
              "nodeid": "tests/components/test_a.py::t", "doc": "", "message": ""},
             {"component": "A", "category": "shape", "points": 1, "hidden": True, "outcome": "failed", "score": 0,
              "nodeid": "tests/hidden/test_a.py::h", "doc": "", "message": "SECRET"}]  # fmt: skip
    scored = {"tests": tests, "components": {}, "categories": {}, "notebook": None, "notebook_score": 0, "score": 2}
    results = gradescope_results(scored, [], GradeConfig(run_notebook=False))
    assert results["extra_data"]["public_hidden"]["A"] == {
        "score": 2, "max_score": 3, "public": {"passed": 1, "tests": 1, "score": 2, "max_score": 2},
        "hidden": {"passed": 0, "tests": 1, "score": 0, "max_score": 1}}  # fmt: skip
    hidden = [t for t in results["tests"] if t["visibility"] == "hidden"]
    assert len(hidden) == 1 and "SECRET" not in json.dumps(results)


def test_hidden_points_come_from_the_grader_budget() -> None:
    """The release's hidden points are the grader's hidden tests' points per component (no name)."""
    expected = [{"component": "A", "points": 2, "hidden": True, "nodeid": "tests/hidden/test_x.py::t"},
                {"component": "A", "points": 0, "hidden": True, "nodeid": "tests/hidden/test_x.py::u"},
                {"component": "B", "points": 1, "hidden": False, "nodeid": "tests/components/test_b.py::v"},
                {"component": "A", "points": 1, "hidden": True, "nodeid": "tests/hidden/test_x.py::w"}]  # fmt: skip
    assert hidden_points(expected) == {"A": 3}


ROW = re.compile(r"^(?P<name>[A-Za-z]+)\s+(?P<passed>\d+)/(?P<tests>\d+)\s+(?P<got>\d+)/(?P<most>\d+)"
                 r"\s+(?P<hidden>\S+)")


@pytest.mark.timeout(900)
def test_skeleton_dashboard_agrees_with_the_grader(tmp_path: Path) -> None:
    """On the skeleton, restricted to two component files: at most 80 lines, no traceback, every TODO "not
    started", and per component the same public tests, points and hidden points as grader.pipeline.grade counts."""
    files = ["tests/components/test_mcts.py", "tests/components/test_running_stats.py"]
    expected = expected_tests(GradeConfig())
    points = tmp_path / HIDDEN_POINTS_FILE
    points.write_text(json.dumps({"hidden_points": hidden_points(expected)}))
    out = _pytest(REPO, "-q", "--dashboard", *files, "--impl=skeleton", f"--hidden-points={points}")
    assert len(out.splitlines()) <= MAX_LINES, out
    assert "Traceback" not in out and "Falsifying" not in out, out
    rows = {m["name"]: m for m in map(ROW.match, out.splitlines()) if m}
    wanted = {t["component"] for t in expected if t["nodeid"].split("::")[0] in files}
    assert wanted == {"MonteCarloTreeSearch", "RunningStats"}
    split = component_split(score(expected, None, None, GradeConfig(run_notebook=False)))  # the grader's view
    for name in wanted:
        public, hidden = split[name]["public"], split[name]["hidden"]
        row = rows[name]
        assert (int(row["tests"]), int(row["most"])) == (public["tests"], public["max_score"]), out
        assert row["hidden"] == str(hidden["max_score"] or "-"), out
        assert int(row["passed"]) == 0 and int(row["got"]) == 0, "the skeleton earns no point"
        assert re.search(rf"^{name}: not started at ", out, re.M), out
