"""The kit's own tests (never shipped, never run by a judge): ordering for `make test`.

`make test` runs every test on two xdist workers that take tests in collection order. Collected last, the
two longest tests (the reference notebook, about 60 s of one core, and the hostile batch, about 70) began
when the rest of the suite was nearly done, and one worker ran on alone for a minute. Started first, they
overlap with everything else: on a quiet two-core machine the suite went from 260-295 s to 240 s. Today the
hostile suite is two work units of about 4.5 and 2 minutes (one per sandbox engine), handed out first.

Also the fixture the CLI tests share (``signals``).
"""

from __future__ import annotations

import signal

import pytest

#: Node-id prefixes run before everything else, in this order: the longest tests, then those that mostly wait
#: (a batch killed and resumed: sleeping submissions), which are cheap to overlap and costly to end on.
RUN_FIRST: tuple[str, ...] = (
    "tests/kit/test_hostile.py",  # two work units (one per engine; tests/conftest.py: xdist_unit), one per worker
    "tests/kit/test_notebook.py::test_notebook_runs_against_reference",
    "tests/kit/test_assignment.py::test_skeleton_scores_zero_on_every_graded_test",
    "tests/kit/test_grader.py::test_batch_killed_with_sigkill_resumes_without_regrading",
)


def _rank(item: pytest.Item) -> int:
    for rank, prefix in enumerate(RUN_FIRST):
        if item.nodeid.startswith(prefix):
            return rank
    return len(RUN_FIRST)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Move the tests of :data:`RUN_FIRST` to the front (stable: the rest keep their order, and every xdist
    worker collects the same order)."""
    items.sort(key=_rank)


@pytest.fixture
def signals():
    """``ca15-grade``'s ``_grade`` installs SIGTERM/SIGINT handlers: a test that calls it puts pytest's back."""
    saved = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGINT)}
    yield
    for s, handler in saved.items():
        signal.signal(s, handler)
