"""The student release (grader/authoring/release.py): hidden blocks dropped, nothing of the solution shipped."""

from __future__ import annotations

from pathlib import Path
from textwrap import dedent

import os
import re
import shutil
import subprocess
import sys
import zipfile

import pytest

from grader.authoring.generate import MarkerError
from grader.authoring.release import build_release, leaked_solution_lines, solution_lines, strip_hidden

REPO = Path(__file__).resolve().parents[2]


def test_strip_hidden_drops_blocks_and_markers() -> None:
    """Lines between BEGIN/END HIDDEN, and the markers, are dropped; the rest is kept byte for byte."""
    source = dedent(
        """\
        def test_public():
            pass
        # BEGIN HIDDEN
        def test_hidden():
            pass
        # END HIDDEN
        x = 1
        """
    )
    assert strip_hidden(source) == "def test_public():\n    pass\nx = 1\n"


@pytest.mark.parametrize(
    ("source", "line", "message"),
    [
        ("# END HIDDEN\n", 1, "without a matching"),
        ("# BEGIN HIDDEN\nx = 1\n", 1, "never closed"),
        ("# BEGIN HIDDEN\n# BEGIN HIDDEN\n# END HIDDEN\n", 2, "nested"),
    ],
)
def test_strip_hidden_marker_errors(source: str, line: int, message: str) -> None:
    """Unbalanced or nested hidden markers are MarkerErrors naming file and line."""
    with pytest.raises(MarkerError, match=message) as info:
        strip_hidden(source, "tests/components/test_x.py")
    assert str(info.value).startswith(f"tests/components/test_x.py:{line}:")


def test_solution_lines_skip_short_and_given_lines(tmp_path: Path) -> None:
    """Only solution lines of >= 4 tokens that do not also stand in given code count as secret."""
    (tmp_path / "m.py").write_text(
        dedent(
            """\
            def f(x):
                y = x + 1 + 2
                # TODO(student): compute it.
                # BEGIN SOLUTION
                y = x + 1 + 2
                z = torch.log(x) * 3 + y
                return z
                # END SOLUTION
            """
        )
    )
    assert solution_lines(tmp_path) == {"z = torch.log(x) * 3 + y"}


def test_leak_detection_finds_a_planted_line(tmp_path: Path) -> None:
    """A release file holding a solution line is reported with its path."""
    ref = tmp_path / "ref"
    ref.mkdir()
    (ref / "m.py").write_text(
        "def f(x):\n    # TODO(student): t.\n    # BEGIN SOLUTION\n    return torch.exp(x) * 2 + 1\n    # END SOLUTION\n"
    )
    rel = tmp_path / "rel"
    (rel / "docs").mkdir(parents=True)
    (rel / "docs" / "notes.md").write_text("hint:\n    return torch.exp(x) * 2 + 1\n")
    assert leaked_solution_lines(rel, ref) == ["docs/notes.md: return torch.exp(x) * 2 + 1"]


@pytest.fixture(scope="module")
def release(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_release(tmp_path_factory.mktemp("dist") / "student")


def test_release_layout(release: Path) -> None:
    """The release holds the skeleton, notebooks, public tests, harness and student files; nothing else."""
    top = {p.name for p in release.iterdir()}
    assert top == {
        "skeleton", "notebooks", "tests", "grader", "constraints.txt", "Makefile", "README.md", "pyproject.toml",
        ".github",
    }  # fmt: skip
    assert [p.relative_to(release).as_posix() for p in (release / ".github").rglob("*") if p.is_file()] == [
        ".github/workflows/classroom.yml"
    ]
    assert not (release / "reference").exists()
    assert not (release / "tests" / "hidden").exists() and not (release / "tests" / "kit").exists()
    from grader.authoring.release import HARNESS_MODULES

    shipped = {p.relative_to(release / "grader").as_posix() for p in (release / "grader").rglob("*") if p.is_file()}
    assert shipped == set(HARNESS_MODULES)
    assert not any(name.startswith(("pipeline/", "authoring/")) for name in HARNESS_MODULES)
    assert "student/submit.py" in HARNESS_MODULES


def test_every_grader_module_the_release_imports_is_shipped(release: Path) -> None:
    """Each ``grader.X`` that a shipped test or harness module imports (at any depth of the code) is in the
    release: in the kit's own venv a missing one is found in the kit, so only this check sees it."""
    import ast

    def is_shipped(name: str) -> bool:  # grader.judge.remote: grader/judge/remote.py or grader/judge/__init__.py
        path = release / Path(*name.split("."))
        return path.with_suffix(".py").is_file() or (path / "__init__.py").is_file()

    missing = set()
    for path in [*(release / "tests").rglob("*.py"), *(release / "grader").rglob("*.py")]:
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = ([node.module or ""] if isinstance(node, ast.ImportFrom) else
                     [a.name for a in node.names] if isinstance(node, ast.Import) else [])  # fmt: skip
            for name in names:
                if name.startswith("grader.") and not is_shipped(name):
                    missing.add(f"{path.relative_to(release)}: {name}")
        plugins = re.findall(r'"(grader(?:\.\w+)+)"', path.read_text(encoding="utf-8"))  # pytest_plugins = ("grader.x",)
        missing |= {f"{path.relative_to(release)}: {p}" for p in plugins if not is_shipped(p)}
    assert not missing, sorted(missing)


def test_every_test_file_with_test_doubles_declares_them() -> None:
    """A graded test file that defines a test double names the components it stands in for (DOUBLES_FOR), and
    they are components: the dashboard tells the student that a bug there is not charged here."""
    from grader.authoring.release import doubles_for

    declared = doubles_for(REPO / "tests" / "components")
    components = set(re.findall(r'pytest\.mark\.component\("(\w+)"\)',
                                "".join(p.read_text() for p in (REPO / "tests" / "components").glob("test_*.py"))))
    for path in sorted((REPO / "tests" / "components").glob("test_*.py")):
        text = path.read_text(encoding="utf-8")
        mark = re.search(r'^pytestmark = pytest\.mark\.component\("(\w+)"\)', text, re.M)
        if mark and re.search(r"^class _\w*Double\b|^def _\w*_double\b", text, re.M):
            assert mark[1] in declared, f"{path.name} defines test doubles but no DOUBLES_FOR"
    assert all(set(others) <= components for others in declared.values()), declared


@pytest.mark.skipif(shutil.which("make") is None, reason="needs make")
@pytest.mark.parametrize(("env", "status"), [({}, 0), ({"CI": "true"}, 2), ({"STRICT": "1"}, 2)])
def test_student_make_test_ends_with_the_dashboard_line(tmp_path: Path, env: dict, status: int) -> None:
    """The student's `make test` with failing tests: the dashboard's line last and status 0, but make's error
    (status 2) under CI or STRICT=1 (a stand-in python prints the line and exits 1, as pytest does then)."""
    shutil.copy2(REPO / "grader" / "student" / "Makefile", tmp_path / "Makefile")
    python = tmp_path / ".venv" / "bin" / "python"
    python.parent.mkdir(parents=True)
    python.write_text("#!/bin/sh\necho '3 of 15 components to go.'\nexit 1\n")
    python.chmod(0o755)
    base = {k: v for k, v in os.environ.items() if k not in ("CI", "STRICT", "MAKEFLAGS", "MAKELEVEL")}
    proc = subprocess.run(["make", "test"], cwd=tmp_path, env={**base, **env}, capture_output=True, text=True)
    assert proc.returncode == status, proc.stdout + proc.stderr
    if status == 0:
        assert proc.stdout.strip().splitlines()[-1] == "3 of 15 components to go." and not proc.stderr


def test_release_contains_no_solution_line_or_hidden_block(release: Path) -> None:
    """No solution line of reference/ and no hidden-test marker appears anywhere in the release."""
    assert leaked_solution_lines(release, REPO / "reference") == []
    for path in release.rglob("*.py"):
        assert "# BEGIN HIDDEN" not in path.read_text(encoding="utf-8"), path


def test_release_public_tests_match_the_kit(release: Path) -> None:
    """Every public test file of the kit is shipped (without hidden blocks)."""
    kit = {p.relative_to(REPO / "tests" / "components") for p in (REPO / "tests" / "components").rglob("*.py")}
    shipped = {p.relative_to(release / "tests" / "components") for p in (release / "tests" / "components").rglob("*.py")}
    assert kit == shipped


# ------------------------------------------------------------------------------------- make submit (grader.student.submit)
@pytest.fixture
def student(release: Path, tmp_path: Path) -> Path:
    """A student's copy of the release, with the reference solution in skeleton/ and some clutter."""
    work = tmp_path / "student"
    shutil.copytree(release, work)
    shutil.rmtree(work / "skeleton")
    shutil.copytree(REPO / "reference", work / "skeleton", ignore=shutil.ignore_patterns("__pycache__"))
    for clutter in ("skeleton/planning/__pycache__/x.cpython-311.pyc", "skeleton/.pytest_cache/v/x",
                    "skeleton/.hypothesis/examples/x", "skeleton/.ipynb_checkpoints/CA15-checkpoint.ipynb",
                    ".venv/pyvenv.cfg", "notebooks/.ipynb_checkpoints/CA15-checkpoint.ipynb"):  # fmt: skip
        (work / clutter).parent.mkdir(parents=True, exist_ok=True)
        (work / clutter).write_text("clutter")
    return work


def _make(folder: Path, *args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MAKE")}
    return subprocess.run(["make", "--no-print-directory", *args, f"PYTHON={sys.executable}"], cwd=folder, env=env,
                          capture_output=True, text=True, timeout=120)  # fmt: skip


def test_make_submit_writes_the_implementation_root_and_the_notebook_only(student: Path) -> None:
    """`make submit` (no venv needed) zips the contents of skeleton/ and notebooks/CA15.ipynb as CA15.ipynb at
    the top level; no cache, checkpoint or environment; the grader finds the root and the notebook in it."""
    from grader.pipeline.grade import find_notebook, find_root, unpack

    proc = _make(student, "submit")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    names = zipfile.ZipFile(student / "submission.zip").namelist()
    expected = sorted(
        p.relative_to(REPO / "reference").as_posix() for p in (REPO / "reference").rglob("*")
        if p.is_file() and "__pycache__" not in p.parts and p.suffix != ".pyc"
    ) + ["CA15.ipynb"]  # fmt: skip
    assert sorted(names) == sorted(expected)
    assert zipfile.ZipFile(student / "submission.zip").read("CA15.ipynb") == (student / "notebooks" / "CA15.ipynb").read_bytes()
    unpacked = student / "unpacked"
    assert unpack(student / "submission.zip", unpacked) == []
    assert find_root(unpacked) == unpacked
    assert find_notebook(unpacked) == unpacked / "CA15.ipynb"
    copied = student / "copied"  # a folder with the same layout is graded the same way
    assert unpack(unpacked, copied) == []
    assert (find_root(copied), find_notebook(copied)) == (copied, copied / "CA15.ipynb")


@pytest.mark.parametrize(
    ("remove", "named"),
    [("notebooks/CA15.ipynb", "notebooks/CA15.ipynb is missing"), ("skeleton/planning", "skeleton/planning/"),
     ("skeleton/utils", "skeleton/utils/ (or utils.py)"), ("skeleton", "skeleton, which is not a folder")],
)  # fmt: skip
def test_make_submit_refuses_a_missing_file_and_names_it(student: Path, remove: str, named: str) -> None:
    """A missing notebook or package: non-zero exit, no zip, and a message naming the file and what to do."""
    target = student / remove
    shutil.rmtree(target) if target.is_dir() else target.unlink()
    proc = _make(student, "submit")
    assert proc.returncode != 0
    assert named in proc.stderr and ("save your notebook" in proc.stderr or "IMPL=" in proc.stderr), proc.stderr
    assert not (student / "submission.zip").exists()


def test_make_submit_takes_impl_and_notebook_from_elsewhere(student: Path, tmp_path: Path) -> None:
    """IMPL and NOTEBOOK may point anywhere (absolute paths); the notebook still lands as CA15.ipynb."""
    root = tmp_path / "my root"
    shutil.move(student / "skeleton", root)
    book = tmp_path / "mine.ipynb"
    shutil.move(student / "notebooks" / "CA15.ipynb", book)
    proc = _make(student, "submit", f"IMPL={root}", f"NOTEBOOK={book}")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "CA15.ipynb" in zipfile.ZipFile(student / "submission.zip").namelist()


def test_submit_skips_what_the_grader_skips() -> None:
    """The submission packer and the grader agree on what is never part of a submission."""
    from grader.pipeline.unpack import MAX_ENTRIES, MAX_UNPACKED_BYTES, NOTEBOOK_NAME, SKIPPED_DIRS
    from grader.student import submit

    assert submit.SKIPPED_DIRS == SKIPPED_DIRS and submit.NOTEBOOK_NAME == NOTEBOOK_NAME
    assert (submit.MAX_BYTES, submit.MAX_FILES) == (MAX_UNPACKED_BYTES, MAX_ENTRIES)


@pytest.mark.parametrize("makefile", ["student", "kit"])
def test_make_notebook_accepts_absolute_and_relative_impl(release: Path, tmp_path: Path, makefile: str) -> None:
    """`make notebook IMPL=...` hands the notebook an absolute implementation root, whichever form IMPL has."""
    folder = release if makefile == "student" else REPO
    for impl, want in ((str(tmp_path), str(tmp_path)), ("skeleton", str(folder / "skeleton"))):
        proc = _make(folder, "-n", "notebook", f"IMPL={impl}")
        assert proc.returncode == 0, proc.stderr
        assert (f"CA15_IMPL=\"{want}\"" if makefile == "student" else f"--impl \"{want}\"") in proc.stdout, proc.stdout


def test_release_workflow_is_the_kit_budget(release: Path) -> None:
    """The shipped classroom.yml is generated from the grader's budget of the shipped public tests."""
    from grader.authoring.classroom import WORKFLOW_PATH, kit_budget, workflow

    assert (release / WORKFLOW_PATH).read_text() == workflow(kit_budget(REPO, shipped=release))


def test_find_notebook_prefers_the_top_level_ca15(tmp_path: Path) -> None:
    """The shallowest CA15.ipynb wins over deeper ones (whatever their names sort as) and over other notebooks;
    a differently cased name is taken when there is no exact one; checkpoints never count."""
    from grader.pipeline.grade import find_notebook

    for name in ("A/CA15.ipynb", "CA15.ipynb", "notes.ipynb", ".ipynb_checkpoints/CA15-checkpoint.ipynb"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text("{}")
    assert find_notebook(tmp_path) == tmp_path / "CA15.ipynb"
    (tmp_path / "CA15.ipynb").unlink()
    assert find_notebook(tmp_path) == tmp_path / "A" / "CA15.ipynb"
    (tmp_path / "A" / "CA15.ipynb").rename(tmp_path / "A" / "ca15.ipynb")
    assert find_notebook(tmp_path) == tmp_path / "A" / "ca15.ipynb"
    (tmp_path / "A" / "ca15.ipynb").unlink()
    assert find_notebook(tmp_path) == tmp_path / "notes.ipynb"
