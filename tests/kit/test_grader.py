"""The grader end to end on a miniature kit, with crafted submissions that misbehave in every way a TA meets.

The miniature kit has one component ("Doubler": 2 public tests worth 3 points, 1 hidden test worth 1) so that
each grading run takes seconds; the real kit is graded the same way.
"""

from __future__ import annotations

import csv
import os
import json
import re
import shutil
from pathlib import Path
from textwrap import dedent

import nbformat
import pytest

from grader.pipeline.grade import GradeConfig, grade_batch, grade_one
from grader.judge.sandbox import Limits
from tests.kit.procs import processes_under

REPO = Path(__file__).resolve().parents[2]
PACKAGES = ("model_based_rl", "hierarchical_rl", "planning", "environments", "utils")
GOOD = "def double(x):\n    return 2 * x\n"

pytestmark = pytest.mark.timeout(300)


# Seconds per test and per notebook cell in the miniature kit: its tests and cells take milliseconds, and the
# submissions that loop forever burn the whole limit, so it is short.
TIME_LIMIT = 4


@pytest.fixture(scope="module")
def kit(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A miniature kit: the real harness and grader, one component with public and hidden tests."""
    root = tmp_path_factory.mktemp("minikit")
    (root / "tests" / "components").mkdir(parents=True)
    (root / "tests" / "hidden").mkdir()
    shutil.copy2(REPO / "tests" / "conftest.py", root / "tests" / "conftest.py")
    shutil.copytree(REPO / "grader", root / "grader", ignore=shutil.ignore_patterns("__pycache__"))
    pyproject = (REPO / "pyproject.toml").read_text().replace("timeout = 120", f"timeout = {TIME_LIMIT}")
    (root / "pyproject.toml").write_text(pyproject)
    _submission(root / "reference", GOOD)
    (root / "notebooks").mkdir()
    assignment = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(
        "from model_based_rl.algorithms import double\nimport os\nprint(double(21), os.environ.get('CA15_BUDGET'))",
        id="mk-1")])
    nbformat.write(assignment, root / "notebooks" / "CA15.ipynb")
    (root / "tests" / "components" / "test_double.py").write_text(
        dedent(
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
            '''
        )
    )
    (root / "tests" / "hidden" / "test_double_hidden.py").write_text(
        dedent(
            '''
            import pytest
            pytestmark = pytest.mark.component("Doubler")

            @pytest.mark.shape
            def test_double_zero(impl):
                """double(0) is 0."""
                assert impl.module("model_based_rl.algorithms").double(0) == 0, "SECRET-HIDDEN-MESSAGE"
            '''
        )
    )
    return root


def _submission(root: Path, algorithms: str, notebook: list[str] | None = None, extra: dict | None = None) -> Path:
    for name in PACKAGES:
        (root / name).mkdir(parents=True, exist_ok=True)
        (root / name / "__init__.py").write_text("")
    (root / "model_based_rl" / "algorithms.py").write_text(dedent(algorithms))
    if notebook is not None:  # the assignment's cells carry ids mk-1, mk-2, ... (the minikit's CA15.ipynb: mk-1)
        cells = [nbformat.v4.new_code_cell(src, id=f"mk-{i}") for i, src in enumerate(notebook, start=1)]
        nbformat.write(nbformat.v4.new_notebook(cells=cells), root / "CA15.ipynb")
    for rel, text in (extra or {}).items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(dedent(text))
    return root


def _config(kit: Path, **kw) -> GradeConfig:
    limits = Limits(wall_seconds=600, cpu_seconds=600, memory_bytes=2 * 2**30, max_processes=64)
    defaults = dict(
        kit=kit, test_limits=limits, notebook_limits=limits, worker_limits=limits, cell_timeout=TIME_LIMIT, notebook_points=1,
        run_notebook=False,
    )
    return GradeConfig(**{**defaults, **kw})


def _grade(kit: Path, tmp_path: Path, algorithms: str, **kw) -> tuple[dict, str]:
    sub = _submission(tmp_path / "alice", algorithms, kw.pop("notebook", None), kw.pop("extra", None))
    out = tmp_path / "out"
    out.mkdir()
    grade_one(sub, out, _config(kit, **kw))
    results = json.loads((out / "alice" / "results.json").read_text())
    return results, (out / "alice" / "feedback.md").read_text()


def _outcomes(results: dict) -> dict[str, float]:
    return {t["name"].rsplit(" ", 1)[-1]: t["score"] for t in results["tests"]}


def test_correct_submission_gets_full_marks(kit: Path, tmp_path: Path) -> None:
    """A correct submission scores 4/4 with every test passed and status graded."""
    results, feedback = _grade(kit, tmp_path, GOOD)
    assert results["score"] == 4 and results["extra_data"]["status"] == "graded"
    assert "Score: 4 / 4" in feedback


def test_results_record_stage_and_test_times_for_staff(kit: Path, tmp_path: Path) -> None:
    """extra_data holds each stage's seconds (adding up to the whole grading) and each test's, public and hidden."""
    results, _ = _grade(kit, tmp_path, GOOD)
    extra = results["extra_data"]
    assert list(extra["stages"]) == ["unpack", "digests and student code", "notebook", "tests", "scoring", "reporting"]
    assert all(v >= 0 for v in extra["stages"].values())
    assert sum(extra["stages"].values()) == pytest.approx(extra["seconds"], abs=0.2)
    graded = [t["name"].rsplit(" ", 1)[-1] for t in results["tests"] if t["max_score"]]
    assert sorted(n.split("::")[-1] for n in extra["test_seconds"]) == sorted(graded)
    assert extra["stages"]["tests"] >= extra["test_seconds_total"]["public"] + extra["test_seconds_total"]["hidden"]


def test_skeleton_style_submission_scores_zero(kit: Path, tmp_path: Path) -> None:
    """A submission whose TODO still raises NotImplementedError scores 0 with the TODO named in feedback."""
    stub = 'def double(x):\n    raise NotImplementedError("double: return 2 * x")\n'
    results, feedback = _grade(kit, tmp_path, stub)
    assert results["score"] == 0
    assert "not started" in feedback and "double: return 2 \\* x" in feedback


def test_syntax_error_scores_zero_and_says_so(kit: Path, tmp_path: Path) -> None:
    """A syntax error fails every test; the failure message shows the SyntaxError."""
    results, feedback = _grade(kit, tmp_path, "def double(x)\n    return 2 * x\n")
    assert results["score"] == 0 and "SyntaxError" in feedback


def test_sys_exit_at_import_scores_zero(kit: Path, tmp_path: Path) -> None:
    """sys.exit at import cannot end the run with a pass: every test fails, the batch row is graded."""
    results, _ = _grade(kit, tmp_path, "import sys\nsys.exit(0)\n")
    assert results["score"] == 0 and results["extra_data"]["status"] == "graded"


def test_hard_exit_at_import_fails_every_test_with_the_reason(kit: Path, tmp_path: Path) -> None:
    """os._exit(0) at import kills the worker, never the judge: every test fails, the notes say it crashed."""
    results, feedback = _grade(kit, tmp_path, "import os\nos._exit(0)\n")
    assert results["score"] == 0 and len(results["tests"]) == 4  # 3 tests and the staff-only environment row
    assert "crashed or was killed" in results["output"] and "exit status 0" in feedback  # the test's own message


def test_missing_files_is_an_error_with_explanation(kit: Path, tmp_path: Path) -> None:
    """A submission without an implementation root gets status error, score 0 and a note saying what is missing."""
    sub = tmp_path / "bob"
    (sub / "notes").mkdir(parents=True)
    (sub / "notes" / "readme.txt").write_text("forgot my code")
    out = tmp_path / "out"
    out.mkdir()
    row = grade_one(sub, out, _config(kit))
    results = json.loads((out / "bob" / "results.json").read_text())
    assert row["status"] == "error" and results["score"] == 0
    assert "no implementation root found" in results["output"]


def test_infinite_loop_in_a_method_fails_only_that_test(kit: Path, tmp_path: Path) -> None:
    """A method that loops forever for one input hits the per-test timeout; the other tests still pass."""
    looping = "def double(x):\n    while x == -3:\n        pass\n    return 2 * x\n"
    results, feedback = _grade(kit, tmp_path, looping)
    assert results["score"] == 3
    assert "Timeout" in feedback or "time limit" in feedback


def test_memory_bomb_fails_without_stopping_the_run(kit: Path, tmp_path: Path) -> None:
    """Allocating far beyond the memory limit fails that test (MemoryError); the others still pass."""
    bomb = "def double(x):\n    if x == -3:\n        data = bytearray(8 * 2**30)\n    return 2 * x\n"
    results, _ = _grade(kit, tmp_path, bomb)
    assert results["score"] == 3


def test_segfault_is_explained(kit: Path, tmp_path: Path) -> None:
    """A segfault kills the worker: score 0; the notes say it crashed, each public test names the signal."""
    crash = "import ctypes\ndef double(x):\n    return ctypes.string_at(0)\n"
    results, feedback = _grade(kit, tmp_path, crash)
    assert results["score"] == 0
    assert "crashed or was killed" in results["output"] and "SIGSEGV" in feedback  # named in the test's message


def test_fork_loop_is_contained(kit: Path, tmp_path: Path) -> None:
    """A fork loop is capped and cleaned up; forked copies never report, so the score stays honest."""
    forker = dedent(
        """\
        import os, time
        def double(x):
            if x == 2:
                for _ in range(500):
                    try:
                        os.fork()
                    except OSError:
                        break
            return 2 * x
        """
    )
    limits = Limits(wall_seconds=120, cpu_seconds=120, max_processes=8)
    results, _ = _grade(kit, tmp_path, forker, worker_limits=limits)
    assert results["score"] == 4  # the original process passes all; its forked copies never answer
    assert len(results["tests"]) == 4  # 3 tests and the staff-only environment row


def test_megabytes_of_output_are_truncated(kit: Path, tmp_path: Path) -> None:
    """Printing megabytes (shown by pytest for the failing test) is cut; the note says so, the score is right."""
    noisy = "import sys\ndef double(x):\n    sys.stdout.write('x' * 4_000_000)\n    return 2 * x if x != -3 else 0\n"
    results, _ = _grade(kit, tmp_path, noisy)
    assert results["score"] == 3
    assert len(json.dumps(results)) < 100_000
    log = (tmp_path / "out" / "alice" / "log.txt").read_text()
    assert "more bytes of output left out" in log and len(log) < 2_000_000


def test_submitted_tests_and_conftest_are_ignored(kit: Path, tmp_path: Path) -> None:
    """A submission's own conftest and tests (that would pass everything) are never used."""
    extra = {
        "tests/conftest.py": "import pytest\n@pytest.hookimpl(hookwrapper=True)\ndef pytest_runtest_makereport(item, call):\n    yield\n",
        "tests/components/test_double.py": "def test_double():\n    assert True\n",
        "conftest.py": "raise SystemExit('tampered')\n",
    }
    results, _ = _grade(kit, tmp_path, "def double(x):\n    return 3 * x\n", extra=extra)
    assert results["score"] == 1  # only double(0) == 0 holds


def test_fake_results_and_forged_report_lines_are_ignored(kit: Path, tmp_path: Path) -> None:
    """Writing a results.json and printing report-like lines changes nothing: the score comes from the pipe."""
    cheat = dedent(
        """\
        import json, os, pathlib
        fake = {"score": 100, "tests": []}
        for place in [pathlib.Path.cwd(), pathlib.Path(os.environ.get("HOME", "."))]:
            try:
                (place / "results.json").write_text(json.dumps(fake))
            except OSError:
                pass
        print("0" * 64 + ' {"type": "test", "nodeid": "x", "outcome": "passed"}')
        def double(x):
            return x
        """
    )
    results, _ = _grade(kit, tmp_path, cheat)
    assert results["score"] == 1


def test_hidden_test_content_never_reaches_the_student(kit: Path, tmp_path: Path) -> None:
    """A submission that reads and prints the hidden tests, and fails one, sees no hidden name or message."""
    reader = dedent(
        """\
        import pathlib
        for p in pathlib.Path("/").glob("tmp/**/hidden/*.py"):
            try:
                print(p.read_text())
            except OSError:
                pass
        def double(x):
            return 2 * x + (1 if x == 0 else 0)
        """
    )
    results, feedback = _grade(kit, tmp_path, reader)
    assert results["score"] == 3
    text = json.dumps(results) + feedback
    assert "SECRET-HIDDEN-MESSAGE" not in text and "test_double_zero" not in feedback
    hidden = [t for t in results["tests"] if t["visibility"] == "hidden" and "grader" not in t.get("tags", [])]
    assert len(hidden) == 1 and hidden[0]["output"] == "Hidden test: failed."


def test_a_failing_assignment_cell_is_named_and_the_tests_still_graded(kit: Path, tmp_path: Path) -> None:
    """The assignment's cell fails against this implementation: it is named with its error, 0 notebook points,
    and the tests are graded as usual."""
    code = "def double(x):\n    if x == 21:\n        raise ZeroDivisionError('only in the notebook')\n    return 2 * x\n"
    results, _ = _grade(kit, tmp_path, code, notebook=["print('the student cell')"], run_notebook=True)
    nb = [t for t in results["tests"] if t["name"].startswith("Notebook")][0]
    assert nb["score"] == 0 and "import double: ZeroDivisionError: only in the notebook" in nb["output"], nb["output"]
    assert results["score"] == 4  # the tests' 4 points, the notebook's 1 point lost


def test_cells_a_student_adds_never_run(kit: Path, tmp_path: Path) -> None:
    """Only the kit's copy of the assignment's cells runs: an added cell that hides every error earns nothing,
    and an added cell that fails costs nothing."""
    hider = "get_ipython().set_custom_exc((BaseException,), lambda *a, **k: None)"
    broken = "def double(x):\n    raise ValueError('broken')\n"
    results, _ = _grade(kit, tmp_path, broken, notebook=["1", hider], run_notebook=True)
    assert [t["score"] for t in results["tests"] if t["name"].startswith("Notebook")] == [0]
    results, _ = _grade(kit, tmp_path / "b", GOOD, notebook=["1", "1 / 0"], run_notebook=True)
    assert results["score"] == 5, results["output"]


def test_clean_notebook_earns_its_points(kit: Path, tmp_path: Path) -> None:
    """A notebook whose cells all run earns the notebook points, the executed copy is kept, and the grader ran it
    on the notebook's grading budget (CA15_BUDGET=grading)."""
    sub = _submission(tmp_path / "carol", GOOD, ["from model_based_rl.algorithms import double\nprint(double(21))"])
    out = tmp_path / "out"
    out.mkdir()
    grade_one(sub, out, _config(kit, run_notebook=True))
    results = json.loads((out / "carol" / "results.json").read_text())
    assert results["score"] == 5
    executed = nbformat.read(out / "carol" / "notebook.ipynb", as_version=4)
    assert "42 grading" in executed.cells[0].outputs[0]["text"]


@pytest.mark.parametrize("cells", [[], ["print('unrelated')"]], ids=["no cells", "other cells"])
def test_a_notebook_without_the_assignments_cells_earns_nothing(kit: Path, tmp_path: Path, cells: list[str]) -> None:
    """An empty or unrelated notebook (no cell of CA15.ipynb by id) gets 0 notebook points and says why."""
    sub = _submission(tmp_path / "dave", GOOD)
    book = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(src, id="other-1") for src in cells])
    nbformat.write(book, sub / "CA15.ipynb")
    out = tmp_path / "out"
    out.mkdir()
    grade_one(sub, out, _config(kit, run_notebook=True))
    results = json.loads((out / "dave" / "results.json").read_text())
    nb = [t for t in results["tests"] if t["name"].startswith("Notebook")][0]
    assert nb["score"] == 0 and "not the assignment's notebook" in nb["output"] and "mk-1" in nb["output"]


def test_what_the_notebook_writes_is_not_seen_by_the_tests(kit: Path, tmp_path: Path) -> None:
    """Code that, imported in the notebook's kernel, writes pytest.py and edits the submission changes nothing
    in the test run."""
    writer = (
        "import os, pathlib, sys\n"
        "if 'ipykernel' in sys.modules:\n"
        "    for folder in {os.getcwd(), os.environ.get('TMPDIR', '/tmp'), os.path.expanduser('~')}:\n"
        "        pathlib.Path(folder, 'pytest.py').write_text('raise SystemExit(0)')\n"
        "    pathlib.Path(__file__).write_text('def double(x):\\n    return 0\\n')\n"
        "def double(x):\n    return 2 * x\n"
    )
    results, _ = _grade(kit, tmp_path, writer, notebook=["print(1)"], run_notebook=True)
    assert results["score"] == 5, results


def test_batch_grades_all_and_resumes_without_regrading(kit: Path, tmp_path: Path) -> None:
    """A batch grades every submission, writes the gradebook, and a rerun regrades nothing already graded."""
    subs = [
        _submission(tmp_path / "s1", GOOD),
        _submission(tmp_path / "s2", "import os\nos._exit(3)\n"),
    ]
    zipped = shutil.make_archive(str(tmp_path / "s3"), "zip", _submission(tmp_path / "s3src", GOOD))
    subs.append(Path(zipped))
    out = tmp_path / "out"
    lines: list[str] = []
    grade_batch(subs, out, _config(kit), jobs=2, echo=lines.append)
    rows = {r["submission"]: r for r in csv.DictReader((out / "gradebook.csv").open())}
    assert {k: float(v["score"]) for k, v in rows.items()} == {"s1": 4.0, "s2": 0.0, "s3": 4.0}
    stamp = (out / "s1" / "results.json").stat().st_mtime_ns
    (out / "s2" / "results.json").unlink()  # as if the batch had been killed while grading s2
    (out / ".s2.x.partial").mkdir()
    lines.clear()
    grade_batch(subs, out, _config(kit), jobs=1, echo=lines.append)
    assert lines[0] == "resuming: 2 of 3 already graded"
    assert [line for line in lines if line.startswith("[")] == [lines[-1]] and " s2: " in lines[-1]
    assert (out / "s1" / "results.json").stat().st_mtime_ns == stamp
    assert not (out / ".s2.x.partial").exists()
    assert len(list(csv.DictReader((out / "gradebook.csv").open()))) == 3


def test_colliding_names_are_refused_alone_and_the_batch_resumes(kit: Path, tmp_path: Path) -> None:
    """A submission named like the gradebook, or like another submission, gets a refused row; the rest grade."""
    first = _submission(tmp_path / "a" / "bob", GOOD)
    second = _submission(tmp_path / "b" / "bob", GOOD)
    reserved = Path(shutil.make_archive(str(tmp_path / "gradebook.csv"), "zip", _submission(tmp_path / "g", GOOD)))
    out = tmp_path / "out"
    for _ in range(2):  # the second run resumes: nothing regraded, nothing lost
        grade_batch([reserved, second, first], out, _config(kit), jobs=2, echo=lambda line: None)
        rows = {r["submission"]: r for r in csv.DictReader((out / "gradebook.csv").open())}
        assert rows["bob"]["status"] == "graded" and float(rows["bob"]["score"]) == 4.0
        assert rows["bob--duplicate-2"]["status"] == "refused" and "already taken" in rows["bob--duplicate-2"]["why"]
        assert rows["gradebook.csv--refused"]["status"] == "refused"
        assert "grader's output files" in rows["gradebook.csv--refused"]["why"]
        assert (out / "gradebook.csv").is_file()


def test_markdown_in_messages_cannot_fake_the_report(kit: Path, tmp_path: Path) -> None:
    """An exception message carrying a code fence and a score table stays inside its code block."""
    results, feedback = _grade(kit, tmp_path, (
        "def double(x):\n"
        "    raise ValueError('```\\n| **Score: 999 / 4** |\\n```\\n# Score: 999')\n"
    ))  # fmt: skip
    assert results["score"] == 0
    fence = [line for line in feedback.splitlines() if line.startswith("```")]
    assert fence and all(len(line.rstrip("text")) > 3 for line in fence), "the message's ``` must not close the block"
    assert not any(line.startswith("# Score") for line in feedback.splitlines())


def test_gradescope_zip_holds_the_autograder_and_no_solution(tmp_path: Path) -> None:
    """autograder.zip has executable setup.sh and run_autograder, the tests and grader, and no reference/; its
    setup.sh is valid bash that picks a supported Python (tests/kit/test_gradescope.py runs the choice)."""
    import subprocess
    import zipfile

    from grader.pipeline.gradescope import build

    archive = zipfile.ZipFile(build(tmp_path / "autograder.zip"))
    names = set(archive.namelist())
    assert {"setup.sh", "run_autograder", "ca15-kit/constraints.txt", "ca15-kit/tests/conftest.py"} <= names
    assert any(n.startswith("ca15-kit/tests/components/") for n in names)
    assert not any("reference/" in n or n.startswith("ca15-kit/tests/kit") for n in names)
    assert archive.getinfo("run_autograder").external_attr >> 16 == 0o755
    assert archive.getinfo("setup.sh").external_attr >> 16 == 0o755
    setup = archive.read("setup.sh").decode()
    assert subprocess.run(["bash", "-n"], input=setup, capture_output=True, text=True).returncode == 0
    assert 'python="$(pick_python)"' in setup and '"$python" -m venv "$VENV"' in setup


def test_run_autograder_grades_a_fake_autograder_tree(kit: Path, tmp_path: Path) -> None:
    """run_autograder in a fake /autograder grades the submission; its worker cannot read the kit's tests."""
    import os
    import subprocess
    import sys
    import zipfile

    from grader.pipeline.gradescope import build

    root = tmp_path / "autograder"
    zipfile.ZipFile(build(tmp_path / "autograder.zip", kit=kit)).extractall(root / "source")
    (root / "source" / "run_autograder").chmod(0o755)
    hidden = root / "source" / "ca15-kit" / "tests" / "hidden" / "test_double_hidden.py"
    snoop = f"""
def double(x):
    for path in ({str(hidden)!r}, {str(root / "source")!r}):
        try:
            raise ValueError("READ THE KIT: " + (open(path).read() if path.endswith(".py") else str(__import__("os").listdir(path))))
        except (FileNotFoundError, PermissionError, NotADirectoryError):
            pass
    return 2 * x
"""
    _submission(root / "submission", snoop)
    env = {**os.environ, "AUTOGRADER_ROOT": str(root), "CA15_PYTHON": sys.executable}
    proc = subprocess.run([str(root / "source" / "run_autograder")], env=env, capture_output=True, text=True, timeout=280)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    results = json.loads((root / "results" / "results.json").read_text())
    # full marks: the worker could read neither the kit's hidden tests nor the kit's folder
    assert results["score"] == 4 and len(results["tests"]) == 5, results  # 3 tests, the notebook (none: 0), the staff row
    assert "READ THE KIT" not in json.dumps(results)


def test_failed_convergence_test_gets_its_learning_curve_plotted(tmp_path: Path) -> None:
    """A failed test's recorded curves become a PNG file beside the feedback, linked from Markdown and HTML."""
    from grader.pipeline.feedback import render_html, render_markdown, write_curves

    failed = {
        "nodeid": "tests/components/test_x.py::test_learns", "component": "X", "category": "convergence",
        "points": 2, "hidden": False, "doc": "It learns.", "outcome": "failed", "message": "assert 0.4 > 0.9",
        "score": 0, "curves": [{"name": "success", "values": [0.1, 0.3, 0.4], "threshold": 0.9,
                                "xlabel": "episode", "ylabel": "success rate"}],
    }  # fmt: skip
    scored = {"tests": [failed], "components": {"X": {"score": 0, "max_score": 2, "passed": 0, "tests": 1}},
              "categories": {"convergence": {"score": 0, "max_score": 2}}, "notebook": None,
              "notebook_score": 0, "score": 0, "max_score": 2}  # fmt: skip
    assert '<img alt="learning curve" src="curves/test_learns.png">' in render_html("s", scored, [])
    assert "![learning curve](curves/test_learns.png)" in render_markdown("s", scored, [])
    write_curves(scored, tmp_path)
    assert (tmp_path / "curves" / "test_learns.png").read_bytes()[:4] == b"\x89PNG"


@pytest.mark.skipif(
    os.geteuid() != 0 or shutil.which("unshare") is None, reason="a private network namespace needs root"
)
def test_tests_run_without_network(kit: Path, tmp_path: Path) -> None:
    """Inside the sandbox the only network interface is loopback (a private network namespace)."""
    probe = dedent(
        """\
        import socket
        def double(x):
            names = [name for _, name in socket.if_nameindex()]
            return 2 * x if names == ["lo"] else -999
        """
    )
    results, _ = _grade(kit, tmp_path, probe)
    assert results["score"] == 4


def test_warm_and_cold_judges_give_the_same_results(kit: Path, tmp_path: Path) -> None:
    """A submission that passes one test and fails two gets the same rows, messages and notes whether its judge
    was forked from the warm fork server or started as a fresh process (``--cold-judges``)."""
    partial = "def double(x):\n    return 2 * x if x > 0 else x + 1\n"
    rows = {}
    for warm in (True, False):
        results, _ = _grade(kit, tmp_path / str(warm), partial, warm_judges=warm)
        rows[warm] = ([(t["name"], t["score"], t["status"], re.sub(r"ca15-ws-\w+", "WS", t["output"]))
                       for t in results["tests"]], results["output"])  # fmt: skip
    assert rows[True] == rows[False]
    assert [status for _, _, status, _ in rows[True][0]][:3] == ["passed", "failed", "failed"]


def test_a_fork_server_lost_under_a_judge_makes_an_error_row_not_a_score(kit: Path, tmp_path: Path, monkeypatch) -> None:
    """The judges' fork server killed while a judge runs: that submission's row is an internal grader error
    (score 0, the reason named), never a score from the verdicts that were lost."""
    import signal
    import threading
    import time

    from grader.judge import forkserver

    monkeypatch.setattr(forkserver, "_SERVERS", {})  # a server of this test's own
    spaces = tmp_path / "spaces"
    spaces.mkdir()
    sub = _submission(tmp_path / "alice", "import time\ndef double(x):\n    time.sleep(60)\n    return 2 * x\n")

    def kill_once_a_worker_runs() -> None:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if any("grader.sandboxed.worker" in line for line in processes_under(spaces)):
                break
            time.sleep(0.1)
        for server in list(forkserver._SERVERS.values()):
            os.kill(server.proc.pid, signal.SIGKILL)

    killer = threading.Thread(target=kill_once_a_worker_runs, daemon=True)
    killer.start()
    out = tmp_path / "out"
    grade_batch([sub], out, _config(kit, workspace_root=spaces), echo=lambda _: None)
    killer.join()
    results = json.loads((out / "alice" / "results.json").read_text())
    assert results["score"] == 0 and results["extra_data"]["status"] == "error", results
    assert "ForkServerLost" in results["output"] and "verdicts are unknown" in results["output"]
    assert processes_under(spaces) == []


def test_batch_killed_with_sigkill_resumes_without_regrading(kit: Path, tmp_path: Path) -> None:
    """A batch killed by SIGKILL mid-way leaves only complete results; the rerun grades the rest, nothing twice."""
    import signal
    import subprocess
    import sys
    import time

    # 0.1 s a call: with its judge and workers a submission still takes over a second, while the signal lands
    # within 0.2 s of what it waits for
    slow = "import time\ndef double(x):\n    time.sleep(0.1)\n    return 2 * x\n"
    subs = [str(_submission(tmp_path / f"s{i}", slow)) for i in range(4)]
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "grader", *subs, "--out", str(out), "--no-notebook", "--kit", str(kit)]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    def graded() -> dict[str, int]:  # final folders only: a staging folder (.NAME.partial) holds results.json too
        return {p.parent.name: p.stat().st_mtime_ns for p in out.glob("[!.]*/results.json")}

    deadline = time.monotonic() + 240
    while not graded() and time.monotonic() < deadline:
        time.sleep(0.2)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    first = graded()
    assert 1 <= len(first) < 4, first
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=280)
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"resuming: {len(first)} of 4 already graded" in done.stdout
    assert {name: mtime for name, mtime in graded().items() if name in first} == first
    rows = list(csv.DictReader((out / "gradebook.csv").open()))
    assert sorted(r["submission"] for r in rows) == ["s0", "s1", "s2", "s3"]
    assert all(float(r["score"]) == 4 for r in rows)
    assert not list(out.glob(".*.partial"))


def test_gradebook_leaves_out_a_submission_still_in_its_staging_folder(tmp_path: Path) -> None:
    """A results.json in a staging folder (.NAME.xxxx.partial, not moved into place yet) makes no gradebook row."""
    import csv

    from grader.pipeline.grade import write_gradebook

    results = {"score": 4, "tests": [], "extra_data": {"status": "graded", "components": {}}}
    for folder in ("alice", ".bob.k2j4.partial"):
        (tmp_path / folder).mkdir()
        (tmp_path / folder / "results.json").write_text(json.dumps(results))
    rows = list(csv.DictReader(write_gradebook(tmp_path).open()))
    assert [r["submission"] for r in rows] == ["alice"]


def test_unpack_leaves_out_environments_caches_and_links(tmp_path: Path) -> None:
    """A submitted virtualenv, .git, caches and symlinks are not copied; zips lose the same entries."""
    import zipfile

    from grader.pipeline.grade import unpack

    sub = _submission(tmp_path / "sub", GOOD)
    (sub / ".venv" / "lib").mkdir(parents=True)
    (sub / ".venv" / "lib" / "huge.bin").write_bytes(b"\0" * 1024)
    (sub / ".git").mkdir()
    (sub / ".git" / "HEAD").write_text("ref: refs/heads/main\n")
    (sub / "link.py").symlink_to("/etc/hostname")
    unpack(sub, tmp_path / "copy")
    assert (tmp_path / "copy" / "model_based_rl" / "algorithms.py").is_file()
    assert not (tmp_path / "copy" / ".venv").exists() and not (tmp_path / "copy" / ".git").exists()
    assert not (tmp_path / "copy" / "link.py").exists()
    archive = tmp_path / "sub.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("sub/model_based_rl/algorithms.py", GOOD)
        zf.writestr("sub/.venv/lib/huge.bin", b"\0" * 1024)
    unpack(archive, tmp_path / "fromzip")
    assert (tmp_path / "fromzip" / "sub" / "model_based_rl" / "algorithms.py").is_file()
    assert not (tmp_path / "fromzip" / "sub" / ".venv").exists()


def test_zip_entries_escaping_the_submission_are_refused(tmp_path: Path) -> None:
    """An archive entry like ../evil.py is a SubmissionError, and nothing lands outside the target."""
    import zipfile

    from grader.pipeline.grade import SubmissionError, unpack

    archive = tmp_path / "evil.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("../evil.py", "x = 1\n")
    with pytest.raises(SubmissionError, match="outside"):
        unpack(archive, tmp_path / "dest" / "inner")
    assert not (tmp_path / "dest" / "evil.py").exists()


def test_hard_links_and_fifos_are_left_out_of_a_folder(tmp_path: Path) -> None:
    """A hard link (which could name any file the grader can read) and a FIFO are not copied, and are listed."""
    from grader.pipeline.grade import unpack

    secret = tmp_path / "grader-secret.txt"
    secret.write_text("TA ONLY")
    sub = _submission(tmp_path / "sub", GOOD)
    os.link(secret, sub / "stolen.txt")
    os.mkfifo(sub / "pipe")
    left_out = unpack(sub, tmp_path / "copy")
    assert not (tmp_path / "copy" / "stolen.txt").exists() and not (tmp_path / "copy" / "pipe").exists()
    assert sorted(left_out) == ["'pipe' (not a regular file)", "'stolen.txt' (a hard link)"]


def test_a_zip_bomb_with_lying_headers_is_refused(tmp_path: Path) -> None:
    """An entry whose real size exceeds the limit is refused while unpacking, whatever its header says."""
    import zipfile

    from grader.pipeline import unpack as unpacking
    from grader.pipeline.unpack import SubmissionError, unpack

    archive = tmp_path / "bomb.zip"
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("sub/model_based_rl/algorithms.py", GOOD)
        zf.writestr("sub/zeros.bin", b"\0" * (3 * 2**20))
    data = bytearray(archive.read_bytes())  # make both headers claim 1 byte for zeros.bin
    for sig, offset in ((b"PK\x03\x04", 22), (b"PK\x01\x02", 24)):
        at = data.find(sig, data.find(b"zeros.bin") - 60 if sig == b"PK\x03\x04" else 0)
        while at >= 0 and b"zeros.bin" not in data[at : at + 80]:
            at = data.find(sig, at + 4)
        data[at + offset : at + offset + 4] = (1).to_bytes(4, "little")
    archive.write_bytes(bytes(data))
    original = unpacking.MAX_UNPACKED_BYTES
    unpacking.MAX_UNPACKED_BYTES = 2**20
    try:
        with pytest.raises(SubmissionError):
            unpack(archive, tmp_path / "dest")
    finally:
        unpacking.MAX_UNPACKED_BYTES = original


def test_a_zip_with_too_many_entries_is_refused(tmp_path: Path) -> None:
    """An archive of one entry more than MAX_ENTRIES is refused before anything is written."""
    import zipfile

    from grader.pipeline.unpack import MAX_ENTRIES, SubmissionError, unpack

    archive = tmp_path / "many.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for i in range(MAX_ENTRIES + 1):
            zf.writestr(f"sub/f{i}.txt", "")
    with pytest.raises(SubmissionError, match=f"holds {MAX_ENTRIES + 1} entries, more than the {MAX_ENTRIES} allowed"):
        unpack(archive, tmp_path / "dest")
    assert not (tmp_path / "dest").exists()


def test_a_cpu_hog_thread_that_outlives_its_test_is_contained(kit: Path, tmp_path: Path) -> None:
    """A busy thread left running by student code costs nothing but its own worker; every test still passes."""
    hog = dedent(
        """\
        import threading
        def _spin():
            while True:
                pass
        def double(x):
            threading.Thread(target=_spin, daemon=True).start()
            return 2 * x
        """
    )
    results, _ = _grade(kit, tmp_path, hog)
    assert results["score"] == 4, results
    assert processes_under(tmp_path) == []


def test_feedback_of_a_failing_submission_stays_under_100_kb() -> None:
    """300 failed tests with 6000-character messages: feedback.md and .html stay under 100 KB, failures.txt
    keeps every message whole, and the tables show public and hidden points apart."""
    from grader.pipeline.feedback import failures_text, render_html, render_markdown

    tests = [{"nodeid": f"tests/components/test_x.py::test_{i}", "component": "X", "category": "shape",
              "points": 1, "score": 0, "outcome": "failed", "hidden": i % 10 == 0, "doc": "Checks.",
              "message": f"M{i}:" + "x" * 6000} for i in range(300)]  # fmt: skip
    scored = {"score": 0, "max_score": 300, "tests": tests, "components": {}, "categories": {}}
    markdown, page, full = render_markdown("s", scored, []), render_html("s", scored, []), failures_text(scored)
    assert len(markdown.encode()) < 100_000 and len(page.encode()) < 100_000
    assert "failures.txt" in markdown
    assert all(f"M{i}:" + "x" * 6000 in full for i in range(300) if i % 10)
    assert "M10:" not in full and "M10:" not in markdown  # hidden messages never reach the student
    assert "| X | failing | 0/270 | 0/270 | 0/30 |" in markdown


def test_results_record_the_kit_version_and_the_limits_in_force_for_staff_only(kit: Path, tmp_path: Path) -> None:
    """results.json carries the kit's version, the engine and its limits: in extra_data and a hidden 0-point row."""
    import csv

    from grader.pipeline.grade import ENVIRONMENT_ROW, write_gradebook
    from grader.version import kit_version

    results, feedback = _grade(kit, tmp_path, GOOD)
    staff = results["tests"][-1]
    assert staff["name"] == ENVIRONMENT_ROW and staff["visibility"] == "hidden" and staff["max_score"] == 0
    grader = results["extra_data"]["grader"]
    assert grader["version"] == kit_version(kit) and grader["sandbox"]["engine"] == "bwrap"
    assert set(grader["sandbox"]) >= {"memory_mib_per_process", "pids_cgroup", "network_namespace", "seccomp"}
    assert grader["summary"] in staff["output"] and "network namespace yes" in grader["summary"]
    assert ENVIRONMENT_ROW not in results["output"] and "seccomp" not in feedback  # not in what the student reads
    row = next(csv.DictReader(write_gradebook(tmp_path / "out").open()))
    assert row["sandbox"] == grader["summary"]


def test_bwrap_advice_for_a_masked_proc_names_what_unmasks_it() -> None:
    """'Can't mount proc' (a masked /proc): the advice is systempaths=unconfined / unmask=ALL, not seccomp."""
    from grader.judge.sandbox import bwrap_advice

    masked = bwrap_advice("bwrap: Can't mount proc on /newroot/proc: Operation not permitted")
    assert "systempaths=unconfined" in masked and "unmask=ALL" in masked and "#284" in masked
    assert "seccomp=unconfined does not help" in masked
    refused = bwrap_advice("bwrap: No permissions to creating new namespace")
    assert "user namespaces" in refused and "Can't mount" not in refused


def test_sigterm_stops_every_judge_and_worker_removes_the_workspaces_and_the_batch_resumes(kit: Path, tmp_path: Path) -> None:
    """SIGTERM to ca15-grade mid-batch: it exits 143 within seconds, leaving no process, workspace or partial
    result; the same command again grades the rest to full marks."""
    import signal
    import subprocess
    import sys
    import time

    # 0.1 s a call: with its judge and workers a submission still takes over a second, while the signal lands
    # within 0.2 s of what it waits for
    slow = "import time\ndef double(x):\n    time.sleep(0.1)\n    return 2 * x\n"
    subs = [str(_submission(tmp_path / f"s{i}", slow)) for i in range(4)]
    out, spaces = tmp_path / "out", tmp_path / "spaces"
    spaces.mkdir()
    cmd = [sys.executable, "-m", "grader", *subs, "--out", str(out), "--no-notebook", "--kit", str(kit), "--jobs", "2"]
    env = {**os.environ, "PYTHONPATH": str(REPO), "TMPDIR": str(spaces)}
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    def ours() -> list[str]:
        return [line for line in processes_under(spaces) if str(proc.pid) != line.split()[0]]

    deadline = time.monotonic() + 120
    while not any("grader.sandboxed.worker" in line for line in ours()) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert any("grader.sandboxed.worker" in line for line in ours()), "no worker started: the test proves nothing"
    proc.send_signal(signal.SIGTERM)
    try:
        _, err = proc.communicate(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        raise AssertionError("ca15-grade was still running 30 s after SIGTERM") from None
    assert proc.returncode == 143 and "interrupted" in err, (proc.returncode, err[-2000:])
    time.sleep(1)
    assert ours() == [], "processes of the interrupted batch are still running"
    assert list(spaces.glob("ca15-ws-*")) == [], "the interrupted gradings' workspaces are left on disk"
    assert not list(out.glob(".*.partial"))
    graded = {p.parent.name for p in out.glob("*/results.json")}
    assert all(json.loads((out / n / "results.json").read_text())["score"] == 4 for n in graded)
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=280)
    assert done.returncode == 0, done.stdout + done.stderr
    rows = list(csv.DictReader((out / "gradebook.csv").open()))
    assert sorted(r["submission"] for r in rows) == ["s0", "s1", "s2", "s3"] and all(float(r["score"]) == 4 for r in rows)


HOG = """
import os, time

def double(x):
    children = []
    for _ in range(3):  # 3 processes of 900 MiB each: 2.7 GiB, over the 2 GiB of the worker's sandbox
        pid = os.fork()
        if pid == 0:
            try:
                block = bytearray(900 * 2**20)
                for i in range(0, len(block), 4096):
                    block[i] = 1
                time.sleep(1)
            finally:
                os._exit(0)
        children.append(pid)
    for folder in ("/tmp", "/dev/shm", "/submission", os.getcwd()):  # 40 files of 64 MiB into each
        for k in range(40):
            try:
                with open(os.path.join(folder, f"fill{k}"), "wb") as fh:
                    for _ in range(64):
                        fh.write(b"\\1" * 2**20)
            except OSError:
                break
    for pid in children:
        os.waitpid(pid, 0)
    os._exit(1)  # and a fresh worker for every test
"""


def test_a_memory_disk_and_restart_hog_beside_a_correct_submission_changes_nothing_for_it(kit: Path, tmp_path: Path) -> None:
    """--jobs 2: a hog (2.7 GiB in 3 processes, 2.5 GiB of files, a dead worker per test) and a correct
    submission: the correct one scores 4/4, the hog 0 with the restart cap named, nothing of either is left."""
    from grader.pipeline.grade import grade_batch

    spaces = tmp_path / "spaces"
    spaces.mkdir()
    subs = [_submission(tmp_path / "good", GOOD), _submission(tmp_path / "hog", HOG)]
    out = tmp_path / "out"
    free_before, groups_before = _mem_available(), _our_cgroups()
    grade_batch(subs, out, _config(kit, workspace_root=spaces, max_fresh_workers=1), jobs=2, echo=lambda _: None)
    good = json.loads((out / "good" / "results.json").read_text())
    hog = json.loads((out / "hog" / "results.json").read_text())
    assert good["score"] == 4, good["output"]
    assert hog["score"] == 0 and "had to be replaced too often" in hog["output"], hog["output"]
    assert processes_under(spaces) == [] and processes_under(tmp_path / "hog") == []
    assert list(spaces.iterdir()) == [], "workspaces left on disk"
    assert _leftover_cgroups(groups_before) == set(), "empty cgroups of the batch are left"
    assert _memory_comes_back(free_before - 3 * 2**29), "host memory did not come back after the batch"


def _memory_comes_back(level: int, wait: float = 30.0) -> bool:
    """Whether MemAvailable rises above ``level`` within ``wait`` seconds. The level allows 1.5 GiB below the
    start: what the hog holds, were it leaked, is more (2 GiB in its cgroup, 2.5 GiB of tmpfs files), while
    the other tests that xdist runs beside this one move MemAvailable by up to about 1.5 GiB (1.45 measured)."""
    import time

    deadline = time.monotonic() + wait
    while _mem_available() <= level:
        if time.monotonic() > deadline:
            return False
        time.sleep(1)
    return True


def _our_cgroups() -> set[Path]:
    """Every ca15-* cgroup (at any depth) under this process's own groups."""
    from grader.judge.sandbox import CGROUP_ROOT, RunCgroup, _own_cgroup

    return {g for c in RunCgroup.controllers() for g in (CGROUP_ROOT / c / _own_cgroup(c)).rglob("ca15-*")}


def _leftover_cgroups(before: set[Path]) -> set[Path]:
    """The ca15-* cgroups made since ``before`` that stay empty: a leak. Those in use belong to gradings that
    other tests run at the same time (the pids groups share this machine's root group), so they do not count."""
    import time

    def empty(group: Path) -> bool:
        try:
            return not any((g / "cgroup.procs").read_text().strip() for g in [group, *group.rglob("ca15-*")])
        except OSError:
            return False

    first = {g for g in _our_cgroups() - before if empty(g)}
    time.sleep(3)
    return {g for g in first if g.exists() and empty(g)}


def _mem_available() -> int:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemAvailable:"):
            return int(line.split()[1]) * 1024
    return 0
