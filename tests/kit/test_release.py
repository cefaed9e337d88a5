"""The student release (grader/release.py): hidden blocks dropped, nothing of the solution shipped."""

from __future__ import annotations

from pathlib import Path
from textwrap import dedent

import pytest

from grader.generate import MarkerError
from grader.release import build_release, leaked_solution_lines, solution_lines, strip_hidden

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
        "skeleton", "notebooks", "tests", "grader", "constraints.txt", "Makefile", "README.md", "pyproject.toml"
    }  # fmt: skip
    assert not (release / "reference").exists()
    assert not (release / "tests" / "hidden").exists() and not (release / "tests" / "kit").exists()
    from grader.release import HARNESS_MODULES

    assert {p.name for p in (release / "grader").iterdir()} == set(HARNESS_MODULES)
    assert not {"grade.py", "generate.py", "coverage.py", "gradescope.py"} & set(HARNESS_MODULES)


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
