"""Support of the graded tests (not a test file: pytest collects only ``test_*.py``): test doubles put in
place by name in the worker.

A bug is charged once (docs/CONVENTIONS.md §3): where a component's code looks up another component's helper
by module name, a test module replaces that name in the worker's module by a test double written in the test
file, for every one of its tests, and restores the original afterwards::

    @pytest.fixture(autouse=True)
    def _dynamics_doubles(impl):
        with names_replaced(impl, "model_based_rl.ensemble", {"gaussian_nll": _gaussian_nll_double}):
            yield

Like the test modules, this module lives under ``tests/`` and so travels to the worker by value
(``tests/conftest.py``: ``_ship_test_modules``); the worker never needs the test files.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from grader.judge.remote import WorkerLost

_STASH = "_ca15_names_replaced_by_test_doubles"


def replace_names(impl, module_name, doubles):
    """Probe: set ``module.<name> = double`` for each entry of ``doubles``, keeping the originals (the first
    ones seen, so that a repeated replacement never loses them) in the module for :func:`restore_names`."""
    mod = impl.module(module_name)
    stash = mod.__dict__.setdefault(_STASH, {})
    for name, double in doubles.items():
        if name not in stash:
            stash[name] = (name in mod.__dict__, mod.__dict__.get(name))
        setattr(mod, name, double)


def restore_names(impl, module_name):
    """Probe: put back the names :func:`replace_names` replaced in ``module_name`` (deleting added ones)."""
    mod = impl.module(module_name)
    for name, (present, original) in mod.__dict__.pop(_STASH, {}).items():
        if present:
            setattr(mod, name, original)
        else:
            mod.__dict__.pop(name, None)


@contextlib.contextmanager
def names_replaced(impl, module_name: str, doubles: dict) -> Iterator[None]:
    """In the worker's ``module_name``, the names of ``doubles`` replaced by their test doubles on entry and
    restored on exit (the worker is reused between tests, and under ``--isolation none`` it is the judge's own
    process). For an autouse fixture: ``with names_replaced(impl, ...): yield``."""
    impl.run(replace_names, module_name, doubles)
    yield
    with contextlib.suppress(WorkerLost):  # a lost worker is replaced, patches and all, before the next test
        impl.run(restore_names, module_name)
