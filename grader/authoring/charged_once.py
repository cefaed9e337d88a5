"""A bug is charged once: stubbing one component's tasks costs points in that component's tests only.

    python -m grader.authoring.charged_once                       # every component, one mutant each
    python -m grader.authoring.charged_once --component DynaQAgent --jobs 2

For each component, a *mutant* implementation root is built from ``reference/`` in which every solution
region of that component is replaced by its ``NotImplementedError`` stub (as the skeleton has it); the graded
tests that carry points (``tests/components`` and ``tests/hidden``) run against it, and every failing test is
charged to the component named by its file's ``pytestmark``. A correct assignment charges the stubbed
component and no other: a test that also fails is a cross-component dependency, to be replaced by a test
double written in the test module (CONVENTIONS §3, §5).

The tests run with ``--isolation=none`` (the mutants are the kit's own code: the same requests and codec,
without a worker) and report per test through ``grader.judge.pytest_report``, as the grader's own runs do.

Cost control: a stub changes only what runs through it, so a test that never calls a function holding one of
the component's regions cannot fail on its mutant. One *trace* run of the graded tests against ``--src``
(this module loaded as a pytest plugin, ``-p grader.authoring.charged_once``, records every function of the
implementation root each test calls) selects, per component, the tests to run against its mutant; the
trace run is also the baseline: a test that fails there and again without the tracer is reported, not charged;
one that fails only under the tracer (a time limit) runs against every mutant. ``--no-prune`` runs every
graded test against every mutant instead.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import threading
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from grader.authoring.coverage import _PARSE_LOCK, GRADED
from grader.authoring.generate import REPO, Region, all_regions, strip_source
from grader.judge.sandbox import Limits, ReportChannel, run_limited

#: The component (a test file's ``pytestmark`` name) of each file's solution regions.
COMPONENT_OF_FILE: dict[str, str] = {
    "hierarchical_rl/feudal.py": "FeudalNetwork",
    "hierarchical_rl/goal_conditioned.py": "GoalConditionedAgent",
    "hierarchical_rl/hac.py": "HierarchicalActorCritic",
    "hierarchical_rl/options.py": "Option",
    "model_based_rl/dyna_q.py": "DynaQAgent",
    "model_based_rl/dynamics.py": "DynamicsModel",
    "model_based_rl/ensemble.py": "ModelEnsemble",
    "model_based_rl/mpc.py": "ModelPredictiveController",
    "planning/latent_planner.py": "LatentSpacePlanner",
    "planning/mcts.py": "MonteCarloTreeSearch",
    "planning/mve.py": "ModelBasedValueExpansion",
    "planning/world_model.py": "WorldModel",
    "utils/running_stats.py": "RunningStats",
    "utils/sum_tree.py": "PrioritizedReplayBuffer",
}
#: Files that hold the tasks of more than one component: ``path:qualname`` -> component.
COMPONENT_OF_REGION: dict[str, str] = {
    "utils/replay.py:circular_write_indices": "ReplayBuffer",
    "utils/replay.py:ReplayBuffer.sample": "ReplayBuffer",
    "utils/replay.py:per_probabilities": "PrioritizedReplayBuffer",
    "utils/replay.py:stratified_prefix_sums": "PrioritizedReplayBuffer",
    "utils/replay.py:importance_weights": "PrioritizedReplayBuffer",
}


def component_of(region: Region) -> str:
    """The component whose task ``region`` is.

    Raises:
        KeyError: for a region of a file that neither table above names (add it there).
    """
    key = f"{region.path}:{region.qualname}"
    if key in COMPONENT_OF_REGION:
        return COMPONENT_OF_REGION[key]
    if region.path in COMPONENT_OF_FILE:
        return COMPONENT_OF_FILE[region.path]
    raise KeyError(
        f"no component for the solution region {key}: add its file to COMPONENT_OF_FILE or the region to "
        "COMPONENT_OF_REGION in grader/authoring/charged_once.py"
    )


def regions_by_component(src: Path) -> dict[str, list[Region]]:
    """Every solution region of ``src``, grouped by component (components sorted by name)."""
    groups: dict[str, list[Region]] = {}
    for region in all_regions(src):
        groups.setdefault(component_of(region), []).append(region)
    return dict(sorted(groups.items()))


def build_mutant(src: Path, regions: Iterable[Region], root: Path) -> None:
    """Copy ``src`` to ``root`` with every region in ``regions`` stubbed (and nothing else)."""
    shutil.copytree(src, root, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    by_file: dict[str, list[Region]] = {}
    for region in regions:
        by_file.setdefault(region.path, []).append(region)
    for path, file_regions in by_file.items():
        target = root / path
        source = target.read_text(encoding="utf-8")
        # bottom-up: stubbing a region shifts only the lines below it, so the earlier ones keep their numbers
        for region in sorted(file_regions, key=lambda r: r.begin, reverse=True):
            with _PARSE_LOCK:  # CPython 3.11's ast.parse is not thread-safe (python/cpython#106905)
                source = strip_source(source, path, only=region)
        target.write_text(source, encoding="utf-8")


def graded_outcomes(
    root: Path, targets: list[str] | None = None, wall_seconds: float = 3600, trace_to: Path | None = None
) -> list[dict]:
    """Per-test records (nodeid, component, points, outcome, hidden) of the graded tests with points, run
    in-process (``--isolation=none``) against the implementation root ``root``.

    Args:
        root: the implementation root.
        targets: test files, folders or node ids (default: ``tests/components`` and ``tests/hidden``).
        wall_seconds: time limit of the whole run.
        trace_to: also record, into this JSON file, the functions of ``root`` each test calls (:func:`trace`).

    Raises:
        RuntimeError: when pytest reports no test (it could not collect or run).
    """
    folders = targets or [str(d.relative_to(REPO)) for d in GRADED if d.is_dir()]
    channel = ReportChannel()
    env = {**os.environ, "CI": "1", "PYTHONPATH": str(REPO)}
    plugins = ["-p", "grader.judge.pytest_report"]
    if trace_to is not None:
        env[TRACE_ENV] = str(trace_to)
        plugins += ["-p", "grader.authoring.charged_once"]
    result = run_limited(
        [sys.executable, "-m", "pytest", *folders, "-q", *plugins, "--graded-only",
         f"--impl={root}", "--isolation=none", "-p", "no:randomly", "-p", "no:cacheprovider"],
        cwd=REPO, env=env,
        limits=Limits(wall_seconds=wall_seconds, cpu_seconds=int(2 * wall_seconds), memory_bytes=8 * 2**30),
        channel=channel,
    )  # fmt: skip
    meta = {t["nodeid"]: t for r in result.records if r.get("type") == "collected" for t in r["tests"]}
    tests = [{**meta.get(r["nodeid"], {}), **r} for r in result.records if r.get("type") == "test"]
    if not tests:
        raise RuntimeError(f"pytest ran no graded test against {root}:\n{result.output[-3000:]}")
    never_ran = sorted(set(meta) - {t["nodeid"] for t in tests})
    tests += [{**meta[n], "outcome": "failed", "message": "did not run (time limit?)"} for n in never_ran]
    return tests


# ------------------------------------------------------------------------------------------ the trace plugin
#: Environment variable naming the JSON file the trace plugin writes (set by :func:`graded_outcomes`).
TRACE_ENV = "CA15_CHARGED_ONCE_TRACE"
_CALLED: dict[str, dict[str, set[str]]] = {}
_PHASE = {"name": ""}


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_setup(item: pytest.Item):  # noqa: ARG001 - hook signature
    """Mark the setup phase: what fixtures call there may serve the later tests of the module too."""
    _PHASE["name"] = "setup"
    try:
        yield
    finally:
        _PHASE["name"] = ""


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item: pytest.Item, nextitem: pytest.Item | None):  # noqa: ARG001 - hook signature
    """Record ``path:qualname`` of every function of the implementation root that the test calls (setup,
    call and teardown; also in threads it starts), and separately those called while fixtures are set up."""
    root = str(item.config.ca15_impl_root) + os.sep
    called: set[str] = set()
    in_setup: set[str] = set()

    def tracer(frame, event, arg):  # noqa: ARG001 - the sys.settrace signature
        if event == "call" and frame.f_code.co_filename.startswith(root):
            key = f"{frame.f_code.co_filename[len(root):]}:{frame.f_code.co_qualname}"
            called.add(key)
            if _PHASE["name"] == "setup":
                in_setup.add(key)
        # no local tracer: line events are not needed

    previous = sys.gettrace()
    sys.settrace(tracer)
    threading.settrace(tracer)
    try:
        yield
    finally:
        sys.settrace(previous)
        threading.settrace(None)  # type: ignore[arg-type]
        _CALLED[item.nodeid] = {"called": called, "setup": in_setup}


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:  # noqa: ARG001 - hook signature
    out = os.environ.get(TRACE_ENV)
    if out:
        record = {n: {k: sorted(v) for k, v in c.items()} for n, c in _CALLED.items()}
        Path(out).write_text(json.dumps(record), encoding="utf-8")


def trace(src: Path) -> tuple[list[dict], dict[str, dict[str, set[str]]]]:
    """One run of the graded tests against ``src``: the per-test records (the baseline) and, per node id, the
    ``path:qualname`` of every function of ``src`` the test called (``"called"``) and of those its fixtures'
    set-up called (``"setup"``)."""
    with tempfile.TemporaryDirectory(prefix="ca15-trace-") as tmp:
        out = Path(tmp) / "trace.json"
        tests = graded_outcomes(src, trace_to=out)
        if not out.exists():
            raise RuntimeError(f"the trace run against {src} did not finish (no trace); use --no-prune")
        record = json.loads(out.read_text(encoding="utf-8"))
        called = {n: {k: set(v) for k, v in c.items()} for n, c in record.items()}
    return tests, called


# ------------------------------------------------------------------------------------------ charging
@dataclass
class Charge:
    """What stubbing one component's tasks cost: the failing graded tests, per component they belong to."""

    component: str
    regions: int
    tests_run: int = 0
    failed: dict[str, list[str]] = field(default_factory=dict)
    lost: dict[str, float] = field(default_factory=dict)
    #: tests that fail on the mutant but also on the unmutated root (not charged).
    failing_anyway: list[str] = field(default_factory=list)

    @property
    def others(self) -> dict[str, list[str]]:
        """The failing tests of every *other* component (empty when the bug is charged once)."""
        return {c: tests for c, tests in self.failed.items() if c != self.component}


def charge(src: Path, component: str, regions: list[Region], targets: list[str] | None = None,
           baseline_failures: frozenset[str] = frozenset()) -> Charge:  # fmt: skip
    """Stub every region of ``component`` in a copy of ``src`` and record which graded tests (of ``targets``,
    default all) fail; ``baseline_failures`` (node ids failing on ``src`` itself) are not charged."""
    result = Charge(component, len(regions))
    if targets == []:
        return result
    with tempfile.TemporaryDirectory(prefix="ca15-charged-") as tmp:
        root = Path(tmp) / "impl"
        build_mutant(src, regions, root)
        tests = graded_outcomes(root, targets)
    result.tests_run = len(tests)
    for t in tests:
        if t["outcome"] != "failed":
            continue
        if t["nodeid"] in baseline_failures:
            result.failing_anyway.append(t["nodeid"])
            continue
        comp = t.get("component") or "?"
        result.failed.setdefault(comp, []).append(t["nodeid"])
        result.lost[comp] = result.lost.get(comp, 0) + t.get("points", 0)
    return result


def _region_key(region: Region) -> str:
    return f"{region.path}:{region.qualname}"


def charged_once(src: Path, components: list[str] | None = None, jobs: int = 1,
                 targets: list[str] | None = None, prune: bool = True) -> list[Charge]:  # fmt: skip
    """One :class:`Charge` per component of ``src`` (or per named component), ``jobs`` mutants at a time.

    Args:
        src: the implementation root to mutate (``reference/``).
        components: the components to stub (default: every component with solution regions).
        jobs: mutants graded at the same time.
        targets: test files or folders to run (default: all graded tests); given, nothing is pruned.
        prune: with ``targets=None``, run against each mutant only the tests that call one of its stubbed
            functions on ``src`` (one trace run first); else every graded test.

    Raises:
        ValueError: for a name that is not a component with solution regions.
    """
    groups = regions_by_component(src)
    names = list(groups) if not components else components
    unknown = [n for n in names if n not in groups]
    if unknown:
        raise ValueError(f"no solution regions for {unknown}; components with tasks: {sorted(groups)}")
    per_component: dict[str, list[str] | None] = {n: targets for n in names}
    baseline: frozenset[str] = frozenset()
    if targets is None and prune:
        tests, called = trace(src)
        traced_failures = [t["nodeid"] for t in tests if t["outcome"] == "failed"]
        if traced_failures:  # the tracer slows tests down (time limits): only a failure without it is a baseline
            again = graded_outcomes(src, traced_failures)
            baseline = frozenset(t["nodeid"] for t in again if t["outcome"] == "failed")
        order = [t["nodeid"] for t in tests]
        for n in names:
            keys = {_region_key(r) for r in groups[n]}
            # a fixture set up through a stub can break every later test of its module (wider scopes)
            files = {node.split("::")[0] for node in order if called.get(node, {}).get("setup", set()) & keys}
            per_component[n] = [
                node for node in order
                if called.get(node, {}).get("called", set()) & keys or node.split("::")[0] in files
                or node in traced_failures  # its trace may be cut short: run it against every mutant
            ]  # fmt: skip
    with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
        return list(pool.map(lambda n: charge(src, n, groups[n], per_component[n], baseline), names))


def format_table(results: list[Charge]) -> str:
    """Per stubbed component: tests run, own points lost, and every other component that lost points."""
    out = []
    width = max([len("stubbed")] + [len(c.component) for c in results])
    out.append(f"{'stubbed':<{width}}  regions  tests run  own lost  other components charged")
    out.append(f"{'-' * width}  -------  ---------  --------  {'-' * 26}")
    for c in results:
        others = ", ".join(
            f"{comp} -{c.lost[comp]:g} ({len(tests)} tests)" for comp, tests in sorted(c.others.items())
        )
        out.append(
            f"{c.component:<{width}}  {c.regions:>7}  {c.tests_run:>9}  {c.lost.get(c.component, 0):>8g}  "
            f"{others or 'none'}"
        )
    for c in results:
        for comp, tests in sorted(c.others.items()):
            out.append(f"\n{c.component} stubbed: {comp} fails")
            out += [f"    {t}" for t in tests]
        if c.failing_anyway:
            out.append(f"\n{c.component} stubbed: failing on the unmutated root too (not charged)")
            out += [f"    {t}" for t in c.failing_anyway]
    clean = sum(not c.others for c in results)
    out.append(f"\n{clean}/{len(results)} components charged once")
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m grader.authoring.charged_once", description=(__doc__ or "").splitlines()[0]
    )
    parser.add_argument("--component", action="append", help="stub only this component (repeatable)")
    parser.add_argument("--jobs", type=int, default=1, help="mutants graded at the same time (default 1)")
    parser.add_argument("--src", type=Path, default=REPO / "reference", help="implementation root to mutate")
    parser.add_argument("--tests", action="append", help="run only these test files/folders (no pruning)")
    parser.add_argument("--no-prune", action="store_true", help="run every graded test against every mutant")
    args = parser.parse_args(argv)
    results = charged_once(args.src.resolve(), args.component, args.jobs, args.tests, prune=not args.no_prune)
    print(format_table(results))
    return 0 if all(not c.others for c in results) else 1


if __name__ == "__main__":
    raise SystemExit(main())
