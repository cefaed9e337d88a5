"""Test harness of the CA15 kit (CONVENTIONS §3).

Options:
    --impl PATH         implementation root under test (default: ``reference``)
    --device DEV        torch device for the components (default: ``cpu``)
    --isolation MODE    ``process`` (default): the implementation runs in a separate worker process and only
                        plain data comes back (grader.judge.remote); ``none``: the same requests in this process,
                        with plain tracebacks (a student's quick local loop)
    --seed-offset K     shift every seed (``make calibrate``); 0, the default, is what the grader runs
    --all-seeds         ``seed_trials`` tests run every seed, not only until the majority is decided (calibration)

Markers (registered here, validated at collection):
    component(name)   the graded component a test file belongs to (``pytestmark``)
    shape / gradient / convergence / property   exactly one category per graded test
    points(n)         points of a graded test (default 1); 0 for tests of given code
    gpu               needs CUDA; skipped without it

Fixtures:
    impl     the implementation under test, behind the judge/worker boundary
             (:class:`grader.judge.remote.RemoteImplementation`: ``impl.DynamicsModel(...)`` is a handle to an object
             in the worker, ``impl.run(probe, *args)`` runs a probe there; docs/CONVENTIONS.md §5)
    device   the ``torch.device`` from ``--device``
    seed     autouse: seeds ``random``, ``numpy`` and ``torch`` with 0 (K under ``--seed-offset``) before every
             test (the worker too, when the test uses ``impl``); returns the seed
    reseed   ``reseed(n)`` seeds the judge and the worker with ``n`` (``n + 1000*K`` under ``--seed-offset`` K)
    seed_trials  a convergence verdict by majority over seeds, each seed's outcome recorded for calibration
"""

from __future__ import annotations

import json
import operator
import os
import random
import re
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pytest

if TYPE_CHECKING:
    import torch

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:  # the kit's own package, also when it is not pip-installed
    sys.path.append(str(REPO))

from grader.sandboxed.impl import resolve_root
from grader.judge.markers import MARGIN, MARKERS, SEED_TRIAL, category_of, marker_errors, points_of
from grader.judge.remote import LocalSession, ProcessSession, RemoteImplementation, Session, WorkerLost, ship_by_value

GRADED_DIRS = ("components", "hidden")
#: The per-component table at the end of every run and the student's ``--dashboard`` (grader/student/dashboard.py).
pytest_plugins = ("grader.student.dashboard",)

# One thread per test process: `make test` runs one pytest worker per core, and torch's own thread
# pool on top of that only oversubscribes a 2-core machine. torch itself is imported by the tests that use it
# (a judge whose tests never touch torch starts without it), and reads this when it is.
os.environ["OMP_NUM_THREADS"] = "1"
if "torch" in sys.modules:
    sys.modules["torch"].set_num_threads(1)

try:
    from hypothesis import HealthCheck, Phase, settings

    # No "explain" phase: after shrinking, it reruns a failing test hundreds of times (339 calls to the worker for
    # one RunningStats property test against the skeleton) only to annotate the example it already reports.
    FAILING_PHASES = tuple(p for p in Phase if p is not Phase.explain)
    settings.register_profile(
        "ci",
        derandomize=True,
        max_examples=30,
        phases=FAILING_PHASES,
        deadline=None,
        print_blob=True,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
    )
    settings.register_profile(
        "dev",
        max_examples=60,
        phases=FAILING_PHASES,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
    )
    settings.load_profile("ci" if os.environ.get("CI") else "dev")
except ImportError:  # pragma: no cover - hypothesis is a test dependency
    pass


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("ca15")
    group.addoption("--impl", default="reference", help="implementation root under test (default: reference)")
    group.addoption("--device", default="cpu", help="torch device for the components (default: cpu)")
    group.addoption(
        "--isolation",
        default="process",
        choices=("process", "none"),
        help="process (default): the implementation runs in a separate worker process; none: in this process",
    )
    group.addoption(
        "--max-fresh-workers",
        type=int,
        default=MAX_FRESH_WORKERS,
        help=f"workers one judge may start per phase, public and hidden (default: {MAX_FRESH_WORKERS})",
    )
    group.addoption(
        "--worker-sandbox",
        default=None,
        help="how to start workers: 'bwrap' (bubblewrap, default limits) or a JSON file of a "
        "grader.judge.sandbox.WorkerSandbox (the grader passes one)",
    )
    group.addoption(
        "--seed-offset",
        type=int,
        default=0,
        help="shift every seed (calibration, grader/authoring/calibrate.py): the seed fixture seeds with K and reseed(n) "
        "with n + 1000*K (default 0, what the grader runs)",
    )
    group.addoption(
        "--all-seeds",
        action="store_true",
        help="seed_trials tests run every seed instead of stopping once the majority is decided (calibration)",
    )
    group.addoption(
        "--graded-only",
        action="store_true",
        help="run only graded tests that carry points (tests/components and tests/hidden, points > 0)",
    )


def pytest_configure(config: pytest.Config) -> None:
    for line in MARKERS.values():
        config.addinivalue_line("markers", line)
    config.ca15_impl_root = _impl_root(config)
    spec = config.getoption("--worker-sandbox")
    if spec:
        import tempfile

        from grader.judge.sandbox import WorkerSandbox

        if spec == "bwrap":  # the grader's sandbox with default limits (make test uses it where bwrap runs)
            config.ca15_scratch = tempfile.mkdtemp(prefix="ca15-workers-")
            sandbox = WorkerSandbox(engine="bwrap", python=sys.executable, scratch=config.ca15_scratch)
        else:
            sandbox = WorkerSandbox.from_json(Path(spec).read_text())
        config.ca15_launcher = sandbox.launch


def pytest_unconfigure(config: pytest.Config) -> None:
    scratch = getattr(config, "ca15_scratch", None)
    if scratch:
        import shutil

        shutil.rmtree(scratch, ignore_errors=True)


def _impl_root(config: pytest.Config) -> Path:
    try:
        return resolve_root(config.getoption("--impl"), Path(config.invocation_params.dir))
    except ValueError as exc:
        raise pytest.UsageError(str(exc)) from exc


def _is_hidden(item: pytest.Item) -> bool:
    return "hidden" in Path(str(item.fspath)).parts


def _is_graded(item: pytest.Item) -> bool:
    """A test under tests/components/ or tests/hidden/ of the folder holding this conftest."""
    try:
        parts = Path(str(item.fspath)).resolve().relative_to(REPO).parts
    except ValueError:
        return False
    return len(parts) > 1 and parts[0] == "tests" and parts[1] in GRADED_DIRS


@pytest.hookimpl(trylast=True)  # the order is the last word: hidden tests after every public test
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    problems = []
    items.sort(key=_is_hidden)  # hidden tests last (stable): no public test runs after a hidden probe
    if config.getoption("--graded-only"):
        keep = [i for i in items if _is_graded(i) and points_of(i) > 0]
        kept = set(map(id, keep))
        config.hook.pytest_deselected(items=[i for i in items if id(i) not in kept])
        items[:] = keep
    for item in items:
        if _is_graded(item):
            errors = marker_errors(item)
            problems += [f"{item.nodeid}: {e}" for e in errors]
            if not errors:  # travels with the test's reports, also from xdist workers
                item.user_properties += [
                    ("component", item.get_closest_marker("component").args[0]),
                    ("category", category_of(item)),
                    ("points", points_of(item)),
                ]
        if item.get_closest_marker("gpu") is not None and not _cuda_available():
            item.add_marker(pytest.mark.skip(reason="gpu test: CUDA is not available"))
    if problems:
        raise pytest.UsageError("graded tests break the marker rules (CONVENTIONS §3):\n  " + "\n  ".join(problems))


#: Kit test files whose tests share a module-scoped fixture (a graded batch, a built release): each is one xdist
#: work unit (one per ``engine`` parameter for the hostile suite), so that the fixture is built on one worker.
_KIT = Path(__file__).resolve().parent / "kit"
MODULE_FIXTURE_FILES = frozenset(p.name for p in _KIT.glob("test_*.py") if 'scope="module"' in p.read_text())


def xdist_unit(nodeid: str) -> str:
    """The xdist work unit of a test: its file (and engine) for a file in :data:`MODULE_FIXTURE_FILES`, else the
    test alone."""
    path, _, rest = nodeid.partition("::")
    name = Path(path).name
    if name not in MODULE_FIXTURE_FILES or Path(path).parent.name != "kit":
        return nodeid
    engine = re.match(r"[^\[]*\[(bwrap|user)\b", rest)
    return f"{name}:engine={engine[1]}" if engine else name


@pytest.hookimpl(optionalhook=True)  # graded runs in a workspace load no xdist
def pytest_xdist_make_scheduler(config: pytest.Config, log):
    """``--dist loadscope`` (``make test``) with the kit's own work units (:func:`xdist_unit`): plain loadscope
    would make each component file one unit, and ``loadgroup`` cannot group under pytest 9 (xdist 3.8 renames
    ``item._nodeid``, which pytest 9 no longer reads)."""
    if config.getoption("dist") != "loadscope":
        return None
    from xdist.scheduler import LoadScopeScheduling

    class KitScheduling(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            return xdist_unit(nodeid)

    return KitScheduling(config, log)


def pytest_report_header(config: pytest.Config) -> list[str]:
    return [f"ca15: impl={config.getoption('--impl')} device={config.getoption('--device')}"]


def _ship_test_modules() -> None:
    """Test modules and their helpers travel to the worker by value (the worker never sees the test files)."""
    tests = str(REPO / "tests")
    for name, module in list(sys.modules.items()):
        if str(getattr(module, "__file__", None) or "").startswith(tests):
            ship_by_value(name)


#: Fresh workers one judge may start per phase (public, hidden): a worker that dies, hangs or sends non-data in
#: every test would otherwise cost a fresh worker (an interpreter and torch) per test, 262 times.
MAX_FRESH_WORKERS = 25


class Workers:
    """The worker of this judge process: one at a time, replaced when it dies, hangs or turns unreliable,
    with a cap on fresh workers per phase (public, hidden). The worker of the last public test goes on into
    the hidden tests, which run after every public test (collection order); a worker that has run a hidden
    test never serves a public one, so nothing a hidden probe carries can reach a public test's output.
    Under ``--isolation none`` the "worker" is this process."""

    def __init__(self, config: pytest.Config) -> None:
        self.config = config
        self.session: Session | None = None
        self.served_hidden = False  # the current worker has run a hidden test's requests
        self.failed_starts: dict[bool, int] = {}
        self.starts: dict[bool, int] = {}
        self.last_failure = ""

    def for_test(self, item: pytest.Item) -> Session:
        hidden = _is_hidden(item)
        root = self.config.ca15_impl_root
        if self.config.getoption("--isolation") == "none":
            if self.session is None:
                self.session = LocalSession(root)
            return self.session
        if self.session is not None and (not self.session.alive or self.served_hidden and not hidden):
            self.session.close()  # dead, or it ran hidden probes and a public test comes (xdist; never in a judge)
            self.session = None
        if self.session is None:
            if self.failed_starts.get(hidden, 0) >= 2:  # it died twice while importing: it will again
                raise WorkerLost(f"the implementation's worker could not start (twice): {self.last_failure}")
            cap = self.config.getoption("--max-fresh-workers")
            if self.starts.get(hidden, 0) >= cap:
                raise WorkerLost(f"the worker running the implementation was replaced {cap} times in "
                                 "this run (it died, hung or sent non-data each time), so no more are started: "
                                 "this test and the rest of the run count as failed; fix what kills it first")  # fmt: skip
            self.starts[hidden] = self.starts.get(hidden, 0) + 1
            try:
                self.session = ProcessSession(root, launcher=getattr(self.config, "ca15_launcher", None))
            except WorkerLost as exc:
                self.failed_starts[hidden] = self.failed_starts.get(hidden, 0) + 1
                self.last_failure = str(exc)
                raise
            self.failed_starts[hidden] = 0
            self.served_hidden = False
        self.served_hidden = self.served_hidden or hidden
        return self.session

    def close(self) -> None:
        if self.session is not None:
            self.session.close()


def _timeout_of(item: pytest.Item) -> float:
    marker = item.get_closest_marker("timeout")
    if marker is not None and marker.args:
        return float(marker.args[0])
    return float(item.config.getini("timeout") or 120)


@pytest.fixture(scope="session")
def _workers(request: pytest.FixtureRequest):
    workers = Workers(request.config)
    yield workers
    workers.close()


@pytest.fixture
def impl(request: pytest.FixtureRequest, _workers: Workers, seed: int):
    """The implementation under test (``--impl``) behind the judge/worker boundary (docs/CONVENTIONS.md §5)."""
    _ship_test_modules()
    session = _workers.for_test(request.node)
    timeout = _timeout_of(request.node)
    session_deadline = time.monotonic() + timeout - min(5.0, 0.1 * timeout)
    session.deadline = session_deadline if isinstance(session, ProcessSession) else None
    session.reset(seed)
    yield RemoteImplementation(session, request.config.ca15_impl_root)
    output = session.take_output()
    if output:
        print(f"--- output of the implementation under test ---\n{output}")
    session.deadline = None


def _cuda_available() -> bool:
    import torch

    return torch.cuda.is_available()


@pytest.fixture(scope="session")
def device(request: pytest.FixtureRequest) -> torch.device:
    """The torch device the components run on (``--device``)."""
    import torch

    dev = torch.device(request.config.getoption("--device"))
    if dev.type == "cuda" and not torch.cuda.is_available():
        pytest.skip("--device cuda given but CUDA is not available")
    return dev


def seed_all(seed: int) -> None:
    """Seed python, numpy and torch global generators (torch once a test module has imported it)."""
    random.seed(seed)
    np.random.seed(seed)
    if "torch" in sys.modules:
        sys.modules["torch"].manual_seed(seed)


@pytest.fixture
def curve(request: pytest.FixtureRequest):
    """Record a learning curve for the feedback report: ``curve(name, values, threshold=None, xlabel, ylabel)``.

    A failed convergence test's curves are drawn against their threshold in the student's feedback, so the
    student sees how far learning got, not only that an assertion failed. Values are stored as floats.
    """

    def record(name: str, values, threshold: float | None = None, xlabel: str = "", ylabel: str = "") -> None:
        ys = [float(v) for v in np.asarray(values, dtype=float).ravel()]
        request.node.user_properties.append(
            ("curve", {"name": name, "values": ys, "threshold": threshold, "xlabel": xlabel, "ylabel": ylabel})
        )

    return record


@pytest.fixture
def reseed(request: pytest.FixtureRequest):
    """The seeding function, for tests that loop over several fixed seeds: ``reseed(3)`` seeds this process
    and, when the test uses ``impl``, the worker, and returns the seed it used (3, or 3 + 1000·K under
    ``--seed-offset`` K: pass it on to a component that takes its own ``seed=``)."""
    remote = request.getfixturevalue("impl") if "impl" in request.fixturenames else None

    offset = 1000 * request.config.getoption("--seed-offset")

    def reseed_all(seed: int) -> int:
        seed_all(seed + offset)
        if remote is not None:
            remote.seed(seed + offset)
        return seed + offset

    return reseed_all


@pytest.fixture
def seed_trials(request: pytest.FixtureRequest, reseed):
    """A learning verdict by majority over seeds: ``seed_trials(trial, what, seeds=(0, 1, 2), need=2)``.

    ``trial(seed) -> (learned: bool, detail: str)`` runs one learning experiment; each seed is reseeded with
    ``reseed(seed)`` first. The test passes when at least ``need`` seeds learn; seeds stop running once the
    verdict is decided (``--all-seeds`` runs every one, for calibration). Each seed's outcome is recorded in
    the test's ``user_properties`` as ``("seed_trial", json)`` so that ``make calibrate`` estimates the per-seed
    failure rate p and from it the test's false-fail rate P(fewer than ``need`` of ``len(seeds)`` learn).
    The assertion names every seed run with its ``detail``. Returns ``[(seed, learned, detail), ...]``.
    """
    run_all = request.config.getoption("--all-seeds")

    def run(trial, what: str, seeds=(0, 1, 2), need: int = 2) -> list[tuple[int, bool, str]]:
        seeds = tuple(seeds)
        if not 1 <= need <= len(seeds):
            raise ValueError(f"need must be between 1 and len(seeds) = {len(seeds)}, got {need}")
        results: list[tuple[int, bool, str]] = []
        passed = 0
        for seed in seeds:
            reseed(seed)
            learned, detail = trial(seed)
            learned = bool(learned)
            results.append((seed, learned, detail))
            passed += learned
            record = {"seed": seed, "learned": learned, "need": need, "of": len(seeds)}
            request.node.user_properties.append((SEED_TRIAL, json.dumps(record)))
            if not run_all and (passed >= need or len(results) - passed > len(seeds) - need):
                break
        assert passed >= need, f"{what}: on {passed} of the {len(results)} seeds run, {need} needed: " + "; ".join(
            f"seed {seed}: {detail}{'' if ok else ' (no)'}" for seed, ok, detail in results
        )
        return results

    return run


_COMPARE = {"<": operator.lt, "<=": operator.le, ">": operator.gt, ">=": operator.ge}


@pytest.fixture
def margin(request: pytest.FixtureRequest):
    """A convergence check that keeps its distance from the threshold on record:
    ``margin(what, value, op, threshold, detail="")`` asserts ``value op threshold`` (op one of < <= > >=),
    the message naming ``what``, both numbers and ``detail``, and returns ``value`` as a float.

    Each check is recorded in the test's ``user_properties`` as ``("margin", json)`` (also when it fails), so
    that ``make calibrate`` fits the values of many runs and estimates how often a correct implementation
    would land on the wrong side of the threshold (grader/authoring/calibrate.py).
    """

    def check(what: str, value, op: str, threshold: float, detail: str = "") -> float:
        if op not in _COMPARE:
            raise ValueError(f"op must be one of {sorted(_COMPARE)}, got {op!r}")
        value, threshold = float(value), float(threshold)
        record = {"what": what, "value": value, "op": op, "threshold": threshold}
        request.node.user_properties.append((MARGIN, json.dumps(record)))
        assert _COMPARE[op](value, threshold), f"{what}: {value:.4g}, needed {op} {threshold:.4g}" + (
            f" ({detail})" if detail else ""
        )
        return value

    return check


@pytest.fixture(autouse=True)
def seed(request: pytest.FixtureRequest) -> int:
    """Seed every generator with 0 (``--seed-offset`` K: with K) before each test; returns the seed."""
    value = request.config.getoption("--seed-offset")
    seed_all(value)
    return value
