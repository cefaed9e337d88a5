"""After the batch (issue 24), on real gradings: the class report of a graded batch, and a regrade after one
test file changed.

A miniature kit (two components, five public tests and one hidden, one of them deliberately broken) grades
eleven crafted submissions: correct ones, a skeleton that was not started, one started halfway, wrong values,
an import that crashes, a syntax error, a submission without code. Each grading takes a second or two, so the
whole file runs in well under a minute on two cores. The batch (OLD) is graded once and shared.

- The class report's per-test pass rates equal those recomputed here from the results.json files (the rule
  of grader/pipeline/class_report.py: among the analysed submissions that started the component), its scores those of
  the gradebook, and the broken test is a suspect.
- Making one test of one file stricter and grading again with ``--previous OLD`` (through
  ``grader.__main__.main``) lists exactly the submissions whose verdict on that test changed, names that file
  as the reason, holds the gradebook (exit 4, ``gradebook.proposed.csv`` only), and ``--allow-lower`` makes
  it final without grading anything again.
"""

from __future__ import annotations

import csv
import json
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path
from textwrap import dedent

import pytest

from grader import __main__ as cli
from grader.pipeline.class_report import REPORT_JSON, analyse, read_submissions
from grader.pipeline.grade import GradeConfig, grade_batch
from grader.pipeline.regrade import GRADEBOOK, HELD, PROPOSED, REGRADE_CSV, REGRADE_MD
from grader.judge.sandbox import Limits, SandboxUnavailable, check_bwrap

REPO = Path(__file__).resolve().parents[2]
PACKAGES = ("model_based_rl", "hierarchical_rl", "planning", "environments", "utils")
TIME_LIMIT = 4  # seconds per test in the miniature kit (its tests take milliseconds)
KIT_VERSION = "0.0.0+minikit"  # the same in OLD's kit and NEW's: only the test file differs

pytestmark = pytest.mark.timeout(600)

#: The test file made stricter for the regrade, relative to the kit (as results.json's digests name it).
CHANGED_FILE = "tests/components/test_halve.py"
HALVE_TESTS = '''
import pytest
pytestmark = pytest.mark.component("Halver")

@pytest.mark.shape
@pytest.mark.points(2)
def test_halve(impl):
    """halve(4) is 2."""
    halve = impl.module("model_based_rl.algorithms").halve
    assert halve(4) == 2{stricter}

@pytest.mark.property
def test_halve_odd(impl):
    """halve(3) is 1.5."""
    assert impl.module("model_based_rl.algorithms").halve(3) == 1.5
'''
#: What NEW's kit adds to test_halve: negative numbers too.
STRICTER = "\n    assert halve(-4) == -2"

STUB = 'def {name}(x):\n    raise NotImplementedError("{name}: TODO")\n'
SUBMISSIONS = {  # name -> model_based_rl/algorithms.py (None: a submission without any code)
    "good": "def double(x):\n    return 2 * x\n\ndef halve(x):\n    return x / 2\n",
    "good_renamed": ("def double(value):\n    return value + value\n\n"
                     "def halve(value):\n    return value * 0.5\n"),
    "not_started": STUB.format(name="double") + "\n" + STUB.format(name="halve"),
    "half_started": "def double(x):\n    return 2 * x\n\n" + STUB.format(name="halve"),
    "wrong_values": "def double(x):\n    return 3 * x\n\ndef halve(x):\n    return x / 3\n",
    "abs_halve": "def double(x):\n    return 2 * x\n\ndef halve(x):\n    return abs(x) / 2\n",
    "floor_halve": "def double(x):\n    return 2 * x\n\ndef halve(x):\n    return x // 2\n",
    "abs_both": "def double(x):\n    return 2 * abs(x)\n\ndef halve(x):\n    return abs(x) / 2\n",
    "import_crash": 'raise RuntimeError("crashes on import")\n\ndef double(x):\n    return 2 * x\n',
    "syntax_error": "def double(x)\n    return 2 * x\n",
    "no_code": None,
}
#: (component, submission) not started by construction: every public test fails on a TODO.
NOT_STARTED = {("Doubler", "not_started"), ("Halver", "not_started"), ("Halver", "half_started")}
#: Whose verdict on test_halve the stricter file changes (-4 -> 2 instead of -2; floor_halve's -4 // 2 holds).
CHANGED_BY_STRICTER = {"abs_halve", "abs_both"}
BROKEN = ("Doubler", "test_double_three", False)
#: A failure on a TODO (grader/pipeline/class_report.py is_todo_failure): the judge's marker, or the exception.
TODO_MARKS = ("not started:", "NotImplementedError")


def _engine() -> str:
    """bwrap where it starts here (as the grader runs), else rlimits only; OLD and NEW use the same."""
    try:
        check_bwrap(sys.executable)
        return "bwrap"
    except SandboxUnavailable:
        return "none"


def _write_kit(root: Path, stricter: bool = False) -> Path:
    """A miniature kit: the real harness and grader; Doubler (2 public tests, 1 broken public test, 1 hidden)
    and Halver (2 public tests; ``stricter``: test_halve also checks a negative number)."""
    (root / "tests" / "components").mkdir(parents=True)
    (root / "tests" / "hidden").mkdir()
    shutil.copy2(REPO / "tests" / "conftest.py", root / "tests" / "conftest.py")
    shutil.copytree(REPO / "grader", root / "grader", ignore=shutil.ignore_patterns("__pycache__"))
    pyproject = (REPO / "pyproject.toml").read_text().replace("timeout = 120", f"timeout = {TIME_LIMIT}")
    (root / "pyproject.toml").write_text(pyproject)
    (root / "VERSION").write_text(KIT_VERSION + "\n")
    _submission(root / "reference", SUBMISSIONS["good"])
    (root / "tests" / "components" / "test_double.py").write_text(dedent(
        '''
        import pytest
        pytestmark = pytest.mark.component("Doubler")

        @pytest.mark.shape
        @pytest.mark.points(2)
        def test_double(impl):
            """double(2) is 4."""
            assert impl.module("model_based_rl.algorithms").double(2) == 4

        @pytest.mark.property
        def test_double_negative(impl):
            """double(-3) is -6."""
            assert impl.module("model_based_rl.algorithms").double(-3) == -6

        @pytest.mark.property
        def test_double_three(impl):
            """double(3) is 6."""
            assert impl.module("model_based_rl.algorithms").double(3) == 7  # the kit's bug: no one passes
        '''
    ))  # fmt: skip
    (root / "tests" / "hidden" / "test_double_hidden.py").write_text(dedent(
        '''
        import pytest
        pytestmark = pytest.mark.component("Doubler")

        @pytest.mark.shape
        def test_double_zero(impl):
            """double(0) is 0."""
            assert impl.module("model_based_rl.algorithms").double(0) == 0
        '''
    ))  # fmt: skip
    (root / CHANGED_FILE).write_text(HALVE_TESTS.format(stricter=STRICTER if stricter else ""))
    return root


def _submission(root: Path, algorithms: str | None) -> Path:
    if algorithms is None:
        (root / "notes").mkdir(parents=True)
        (root / "notes" / "readme.txt").write_text("forgot my code")
        return root
    for name in PACKAGES:
        (root / name).mkdir(parents=True, exist_ok=True)
        (root / name / "__init__.py").write_text("")
    (root / "model_based_rl" / "algorithms.py").write_text(algorithms)
    return root


def _config(kit: Path, engine: str) -> GradeConfig:
    limits = Limits(wall_seconds=600, cpu_seconds=600, memory_bytes=2 * 2**30, max_processes=64)
    return GradeConfig(kit=kit, test_limits=limits, notebook_limits=limits, worker_limits=limits,
                       cell_timeout=TIME_LIMIT, notebook_points=1, run_notebook=False,
                       sandbox=engine)  # fmt: skip


@dataclass
class Batch:
    kit: Path
    subs: list[Path]
    out: Path
    engine: str


@pytest.fixture(scope="module")
def old(tmp_path_factory: pytest.TempPathFactory) -> Batch:
    """The miniature kit and its batch of eleven submissions, graded once (OLD)."""
    engine = _engine()
    kit = _write_kit(tmp_path_factory.mktemp("minikit"))
    folder = tmp_path_factory.mktemp("submissions")
    subs = [_submission(folder / name, code) for name, code in SUBMISSIONS.items()]
    out = tmp_path_factory.mktemp("old")
    grade_batch(subs, out, _config(kit, engine), jobs=2, echo=lambda _: None)
    return Batch(kit, subs, out, engine)


def _results(out: Path) -> dict[str, dict]:
    return {p.parent.name: json.loads(p.read_text()) for p in sorted(out.glob("*/results.json"))}


def _test_rows(results: dict) -> list[dict]:
    """The graded tests' rows (tagged [component, category]; the grader environment's row is not a test)."""
    return [t for t in results["tests"] if len(t.get("tags") or []) == 2]


def _recomputed(out: Path) -> tuple[dict[tuple[str, str, bool], tuple[int, int]], set[tuple[str, str]]]:
    """Per test (component, name, hidden): (passed, started) over the analysed submissions (status graded or
    unsandboxed) that started the component; and who did not start which component (0 points on it, every
    public test with points failed on a TODO). From the results.json files alone."""
    counts: dict[tuple[str, str, bool], list[int]] = {}
    not_started: set[tuple[str, str]] = set()
    for name, results in _results(out).items():
        status = results["extra_data"]["status"]
        if not (status == "graded" or status.startswith("graded,") or "unsandboxed" in status):
            continue
        rows = _test_rows(results)
        for comp in sorted({t["tags"][0] for t in rows}):
            mine = [t for t in rows if t["tags"][0] == comp]
            public = [t for t in mine if t["max_score"] > 0 and t["visibility"] != "hidden"]
            todo = [t["status"] != "passed" and any(m in t["output"] for m in TODO_MARKS) for t in public]
            if sum(t["score"] for t in mine) == 0 and all(todo):
                not_started.add((comp, name))
                continue
            for t in mine:
                key = (comp, t["name"].split("] ", 1)[1], t["visibility"] == "hidden")
                tally = counts.setdefault(key, [0, 0])
                tally[0] += t["status"] == "passed"
                tally[1] += 1
    return {k: (p, n) for k, (p, n) in counts.items()}, not_started


def test_class_report_of_a_real_batch_matches_the_results_and_flags_the_broken_test(old: Batch) -> None:
    """The batch writes class-report.json: its scores are the gradebook's, its per-test pass rates those
    recomputed from every results.json (exactly), its not-started submissions those made so; the broken test
    (no submission passes it) is a suspect for its pass rate, and no other test is."""
    report = json.loads((old.out / REPORT_JSON).read_text())
    results = _results(old.out)
    assert sorted(results) == sorted(SUBMISSIONS) and report["submissions"] == len(SUBMISSIONS)
    assert results["no_code"]["extra_data"]["status"] == "error"
    assert report["analysed"] == len(SUBMISSIONS) - 1 and report["statuses"]["error"] == 1
    assert results["good"]["score"] == 7  # of 8: the broken test costs it 1
    assert results["not_started"]["score"] == 0

    gradebook = {r["submission"]: r for r in csv.DictReader((old.out / GRADEBOOK).open())}
    assert sorted(gradebook) == sorted(SUBMISSIONS)
    for name, row in gradebook.items():
        mine = report["scores"]["per_submission"][name]
        assert float(row["score"]) == mine["score"] == results[name]["score"]
        assert row["status"] == mine["status"]
        for comp in ("Doubler", "Halver"):
            if row.get(comp):
                points = sum(t["score"] for t in _test_rows(results[name]) if t["tags"][0] == comp)
                assert float(row[comp]) == points, (name, comp)

    counts, not_started = _recomputed(old.out)
    assert not_started == NOT_STARTED
    for comp in ("Doubler", "Halver"):
        expected = sorted(n for c, n in NOT_STARTED if c == comp)
        assert report["components"][comp]["not_started_names"] == expected
    tests = {(t["component"], t["test"], t["hidden"]): t for t in report["tests"]}
    assert set(tests) == set(counts) and len(tests) == 6  # 5 public tests and the hidden one
    for key, (passed, started) in counts.items():
        t = tests[key]
        assert (t["passed"], t["started"]) == (passed, started), key
        assert t["pass_rate"] == passed / started, key

    assert tests[BROKEN]["passed"] == 0 and tests[BROKEN]["started"] == len(SUBMISSIONS) - 2
    flags = [s["reason"] for s in report["suspects"] if (s["component"], s["test"], s["hidden"]) == BROKEN]
    assert any(f.startswith("pass rate 0%") for f in flags), report["suspects"]
    low = {(s["component"], s["test"], s["hidden"]) for s in report["suspects"]
           if s["reason"].startswith("pass rate")}  # fmt: skip
    assert low == {BROKEN}
    assert "test_double_three" in (old.out / "class-report.html").read_text()

    assert cli.main(["report", str(old.out)]) == 0  # the command writes the same report again
    assert json.loads((old.out / REPORT_JSON).read_text())["tests"] == report["tests"]
    assert analyse(read_submissions(old.out))["suspects"] == report["suspects"]


def _verdicts(out: Path) -> dict[tuple[str, str], bool]:
    return {(name, t["name"]): t["status"] == "passed"
            for name, r in _results(out).items() for t in _test_rows(r)}  # fmt: skip


def test_regrade_after_one_test_file_changed_lists_exactly_the_changed_verdicts(
    old: Batch, tmp_path: Path, capsys, signals
) -> None:
    """Grade the batch again with test_halve stricter (``--previous OLD``): regrade.csv lists exactly the
    submissions whose verdict on it changed, with the file as the reason; scores went down, so the command
    exits 4 with gradebook.proposed.csv and no gradebook.csv; ``--allow-lower`` then makes it final (exit 0)
    without grading anything again."""
    kit = _write_kit(tmp_path / "minikit-stricter", stricter=True)
    new = tmp_path / "new"
    argv = [*map(str, old.subs), "--out", str(new), "--previous", str(old.out), "--kit", str(kit),
            "--no-notebook", "--jobs", "2", *(["--no-sandbox"] if old.engine == "none" else [])]  # fmt: skip

    assert cli.main(argv) == HELD
    err = capsys.readouterr().err
    assert (new / PROPOSED).is_file() and not (new / GRADEBOOK).exists()
    assert (new / REGRADE_MD).is_file() and "--allow-lower" in err

    before, after = _verdicts(old.out), _verdicts(new)
    assert before.keys() == after.keys()
    changed = {key for key in before if before[key] != after[key]}
    assert changed == {(name, "Halver [shape] test_halve") for name in CHANGED_BY_STRICTER}

    rows = list(csv.DictReader((new / REGRADE_CSV).open()))
    per_test = [r for r in rows if r["test"]]
    assert {(r["submission"], r["test"]) for r in per_test} == changed
    assert all(r["change"] == "pass -> fail" and r["flaky"] == "" for r in per_test)
    assert all(r["why"] == f"test source changed: {CHANGED_FILE}" for r in per_test), per_test
    per_submission = [r for r in rows if not r["test"]]
    lowered = {n: "score lowered" for n in CHANGED_BY_STRICTER}
    assert {r["submission"]: r["change"] for r in per_submission} == lowered
    assert all(CHANGED_FILE in r["why"] for r in per_submission)
    for name in CHANGED_BY_STRICTER:
        assert f"{name}: " in err  # each lowered submission is named on stderr

    stamps = {p: p.stat().st_mtime_ns for p in new.glob("*/results.json")}
    assert cli.main([*argv, "--allow-lower"]) == 0
    assert (new / GRADEBOOK).is_file() and not (new / PROPOSED).exists()
    assert {p: p.stat().st_mtime_ns for p in new.glob("*/results.json")} == stamps  # nothing graded again
    assert list(csv.DictReader((new / REGRADE_CSV).open())) == rows
    final = {r["submission"]: float(r["score"]) for r in csv.DictReader((new / GRADEBOOK).open())}
    assert final == {name: r["score"] for name, r in _results(new).items()}
    assert final["abs_halve"] == _results(old.out)["abs_halve"]["score"] - 2
