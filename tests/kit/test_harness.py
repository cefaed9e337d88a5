"""The test harness itself: implementation loading and the marker rules (CONVENTIONS §3)."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path
from types import SimpleNamespace

import pytest

from grader.sandboxed.impl import load_implementation
from grader.judge.markers import marker_errors, points_of

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def _restore_impl_under_test(request: pytest.FixtureRequest):
    """These tests load throw-away roots; put the suite's own --impl back afterwards."""
    yield
    load_implementation(request.config.ca15_impl_root)


def _write_root(root: Path, value: str) -> Path:
    (root / "utils").mkdir(parents=True)
    (root / "utils" / "__init__.py").write_text(f"VALUE = {value!r}\n")
    (root / "planning").mkdir()
    (root / "planning" / "__init__.py").write_text("")
    (root / "planning" / "algorithms.py").write_text(f"from utils import VALUE\nWHO = {value!r}\n")
    return root


def test_loading_a_second_root_does_not_see_the_first(tmp_path: Path) -> None:
    """After loading root B, `import utils` and its dependents resolve to B, not to A."""
    a = load_implementation(_write_root(tmp_path / "a", "A"))
    assert a.module("planning.algorithms").VALUE == "A"
    b = load_implementation(_write_root(tmp_path / "b", "B"))
    assert b.module("planning.algorithms").WHO == "B"
    assert b.module("utils").VALUE == "B"
    assert str(tmp_path / "a") not in sys.path


def _judge_workers(config: pytest.Config, impl_root: Path) -> object:
    """A ``Workers`` of tests/conftest.py (the judge's worker keeper) over ``impl_root``, unsandboxed."""
    conftest = next(p for p in config.pluginmanager.get_plugins()
                    if getattr(p, "__file__", None) == str(REPO / "tests" / "conftest.py"))  # fmt: skip
    options = {"--isolation": "process", "--max-fresh-workers": 25}
    return conftest.Workers(SimpleNamespace(ca15_impl_root=impl_root, getoption=options.__getitem__))


def test_the_last_public_worker_goes_on_into_the_hidden_tests_and_never_back(
    request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    """Hidden tests keep the last public test's worker; a public test after a hidden one gets a fresh worker."""
    workers = _judge_workers(request.config, _write_root(tmp_path / "root", "A"))
    public, hidden = (SimpleNamespace(fspath=tmp_path / "tests" / d / "test_x.py") for d in ("components", "hidden"))
    try:
        first = workers.for_test(public)
        assert workers.for_test(public) is first
        assert workers.for_test(hidden) is first and workers.for_test(hidden) is first
        fresh = workers.for_test(public)
        assert fresh is not first and fresh.alive and not first.alive
        assert workers.for_test(public) is fresh
    finally:
        workers.close()


def test_loading_a_missing_root_names_it(tmp_path: Path) -> None:
    """A missing implementation root is a ValueError naming the folder."""
    with pytest.raises(ValueError, match="nope"):
        load_implementation(tmp_path / "nope")


def test_public_names_resolve_through_attributes(tmp_path: Path) -> None:
    """`impl.<PublicName>` imports the module that CONVENTIONS §1 assigns to it."""
    root = _write_root(tmp_path / "c", "C")
    (root / "planning" / "algorithms.py").write_text("class MCTSNode:\n    pass\n")
    impl = load_implementation(root)
    assert impl.MCTSNode.__module__ == "planning.algorithms"
    with pytest.raises(AttributeError):
        impl.NotAPublicName  # noqa: B018


def _marked(**markers):
    """A stand-in for a pytest item carrying the given markers (name -> args tuple)."""
    table = {k: SimpleNamespace(args=v) for k, v in markers.items()}
    return SimpleNamespace(get_closest_marker=table.get)


@pytest.mark.parametrize(
    ("markers", "problem"),
    [
        ({"component": ("X",)}, "exactly one category"),
        ({"component": ("X",), "shape": (), "gradient": ()}, "exactly one category"),
        ({"shape": ()}, "component"),
        ({"component": ("X",), "shape": (), "points": (-1,)}, "non-negative int"),
        ({"component": ("X",), "shape": (), "points": (1.5,)}, "non-negative int"),
        ({"component": ("X",), "shape": (), "gpu": ()}, "points(0)"),
    ],
)
def test_marker_rules_reject(markers: dict, problem: str) -> None:
    """A graded test without exactly one category, a component or valid points is rejected."""
    errors = marker_errors(_marked(**markers))
    assert any(problem in e for e in errors), errors


def test_marker_rules_accept_and_default_points() -> None:
    """One category plus a component is valid; points default to 1."""
    item = _marked(component=("X",), convergence=())
    assert marker_errors(item) == []
    assert points_of(item) == 1
    assert points_of(_marked(component=("X",), shape=(), points=(3,))) == 3


def test_unmarked_graded_test_is_a_collection_error(tmp_path: Path) -> None:
    """pytest refuses to run a suite whose graded test has no category marker (exit 4, names the test)."""
    tests = tmp_path / "tests"
    (tests / "components").mkdir(parents=True)
    (tests / "conftest.py").write_text((REPO / "tests" / "conftest.py").read_text())
    (tmp_path / "reference").mkdir()
    (tests / "components" / "test_bad.py").write_text(
        textwrap.dedent(
            """
            import pytest
            pytestmark = pytest.mark.component("Bad")

            def test_without_category():
                pass
            """
        )
    )
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--import-mode=importlib", str(tests)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"},
        timeout=120,
    )
    assert proc.returncode == 4, proc.stdout + proc.stderr
    assert "test_without_category" in proc.stdout + proc.stderr
    assert "exactly one category" in proc.stdout + proc.stderr


def test_resolve_root_prefers_the_given_base_and_names_missing_roots(tmp_path: Path) -> None:
    """A relative --impl resolves against the first base holding it; a missing one is a ValueError naming --impl."""
    from grader.sandboxed.impl import resolve_root

    (tmp_path / "mine").mkdir()
    assert resolve_root("mine", tmp_path) == (tmp_path / "mine").resolve()
    assert resolve_root("reference", tmp_path) == (REPO / "reference").resolve()
    with pytest.raises(ValueError, match="--impl"):
        resolve_root("nowhere", tmp_path)


def test_every_run_first_entry_names_an_existing_test() -> None:
    """Each prefix of tests/kit/conftest.py RUN_FIRST names a test file (and function) that exists."""
    from tests.kit.conftest import RUN_FIRST

    for prefix in RUN_FIRST:
        path, _, name = prefix.partition("::")
        assert (REPO / path).is_file(), f"RUN_FIRST names a missing file: {prefix}"
        if name:
            assert f"\ndef {name}(" in (REPO / path).read_text(), f"RUN_FIRST names a missing test: {prefix}"
