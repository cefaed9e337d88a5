"""The test-marker rules of CONVENTIONS §3, shared by the test harness and the grader."""

from __future__ import annotations

from typing import Protocol

CATEGORIES: tuple[str, ...] = ("shape", "gradient", "convergence", "property")
#: ``user_properties`` key of one seed's outcome in a ``seed_trials`` test (tests/conftest.py writes it as JSON
#: ``{"seed", "learned", "need", "of"}``; grader/authoring/calibrate.py reads it from JUnit).
SEED_TRIAL = "seed_trial"
#: ``user_properties`` key of one checked statistic of a convergence test (the ``margin`` fixture writes it as JSON
#: ``{"what", "value", "op", "threshold"}``; grader/authoring/calibrate.py fits the values of many runs).
MARGIN = "margin"

MARKERS: dict[str, str] = {
    "component": "component(name): graded component this test belongs to",
    "shape": "shape: category - output shapes, dtypes, API contract",
    "gradient": "gradient: category - gradients flow where they should",
    "convergence": "convergence: category - learning or planning reaches a target",
    "property": "property: category - invariants checked over many inputs (hypothesis)",
    "points": "points(n): points of a graded test (default 1; 0 for tests of given code)",
    "gpu": "gpu: needs CUDA; skipped without it",
}


class _Marked(Protocol):
    def get_closest_marker(self, name: str): ...


def marker_errors(item: _Marked) -> list[str]:
    """Why a graded test breaks the marker rules (an empty list when it follows them)."""
    errors = []
    cats = [c for c in CATEGORIES if item.get_closest_marker(c) is not None]
    if len(cats) != 1:
        errors.append(f"needs exactly one category marker of {list(CATEGORIES)}, has {cats or 'none'}")
    comp = item.get_closest_marker("component")
    if comp is None or len(comp.args) != 1 or not isinstance(comp.args[0], str) or not comp.args[0]:
        errors.append('needs pytestmark = pytest.mark.component("<Name>") in its file')
    pts = item.get_closest_marker("points")
    if pts is not None:
        ok = len(pts.args) == 1 and type(pts.args[0]) is int and pts.args[0] >= 0
        if not ok:
            errors.append(f"points marker takes one non-negative int, got {pts.args!r}")
    if item.get_closest_marker("gpu") is not None and points_of(item) != 0:
        errors.append("a gpu test must carry points(0): grading runs on CPU, and a skipped test must not cost points")
    return errors


def category_of(item: _Marked) -> str | None:
    """The category marker of a test, or None."""
    for c in CATEGORIES:
        if item.get_closest_marker(c) is not None:
            return c
    return None


def points_of(item: _Marked) -> int:
    """Points of a test: its ``points`` marker, default 1."""
    pts = item.get_closest_marker("points")
    return 1 if pts is None else int(pts.args[0])
