"""pytest plugin of the kit: the per-component table of the graded tests, and the student's dashboard.

Loaded by ``tests/conftest.py`` (``pytest_plugins``), so every run of the kit's tests gets the table at the
end ("CA15 graded components"): one row per component with the public tests passed / total and the public
points got / max, counted exactly as the grader counts them (:func:`counts_in_tally`: graded tests that carry
points; ``grader.pipeline.grade.expected_tests`` collects the same set with ``--graded-only``), and the hidden points.

Options:
    --dashboard        the student's ``make test``: the table, then per failing component its first failure
                       in two lines; no tracebacks (``--tb=no``), no short summary (``-rN``), and ``--fast-todo``
    --fast-todo        a test that hits a ``NotImplementedError`` (a TODO not done yet) is reported as "not
                       started", and a hypothesis test stops at its first such example instead of shrinking it
    --component NAME   run one component's tests only: its name (``DynamicsModel``, ``dynamics_model``) or its
                       test file's stem without ``test_`` (``mcts``)
    --hidden-points F  the hidden points per component (default ``tests/hidden_points.json`` under the rootdir,
                       written by ``grader.authoring.release``); hidden tests that ran in this session are counted instead

Without these options (the kit's ``make test``, the grader's judge) the plugin only prints the table: no
report, outcome or hypothesis setting changes.

Hidden points: the student release has no hidden test, only that file (points per component, no test name).
A hidden test never shows a name or a message here; the grader reports it as Gradescope visibility
``hidden`` (see ``grader.pipeline.grade.gradescope_results``).
"""

from __future__ import annotations

import functools
import json
import re
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import pytest

Skipped = pytest.skip.Exception  # the public name of pytest's skip outcome

#: The name of the hidden-points file, in the tests folder of the release.
HIDDEN_POINTS_FILE = "hidden_points.json"
#: The release's list of every TODO per component (``grader.authoring.release.todo_sites``), under ``tests/``.
TODO_SITES_FILE = "todo_sites.json"
#: Packages of an implementation root (CONVENTIONS §1): a student frame's path is shown from there on.
IMPL_PACKAGES = ("model_based_rl", "hierarchical_rl", "planning", "environments", "utils", "utils.py")
#: Longest message shown for a first failure (the full text is one ``make test K=...`` away).
MESSAGE_WIDTH = 110
#: The most lines ``--dashboard`` should print in all (pytest's own lines included).
MAX_LINES = 80
FAILURE_KEY = "ca15_failure"


# ----------------------------------------------------------------------------------------------- options
def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("ca15 dashboard")
    group.addoption("--dashboard", action="store_true",
                    help="student summary: per-component table and each failing component's first failure, "
                         "no tracebacks (implies --fast-todo)")  # fmt: skip
    group.addoption("--fast-todo", action="store_true",
                    help="NotImplementedError = 'not started': hypothesis stops at the first such example")
    group.addoption("--component", default=None, metavar="NAME",
                    help="only this component's tests (DynamicsModel, dynamics_model, or a file stem like mcts)")
    group.addoption("--hidden-points", default=None, metavar="FILE",
                    help=f"hidden points per component (default: tests/{HIDDEN_POINTS_FILE} under the rootdir)")


def _dashboard(config: pytest.Config) -> bool:
    return bool(config.getoption("--dashboard", default=False))


def _fast_todo(config: pytest.Config) -> bool:
    return _dashboard(config) or bool(config.getoption("--fast-todo", default=False))


@pytest.hookimpl(tryfirst=True)
def pytest_configure(config: pytest.Config) -> None:
    """``--dashboard`` turns pytest's own failure output off: the table says where the student stands."""
    if _dashboard(config):
        config.option.tbstyle = "no"
        config.option.reportchars = "N"
    config.ca15_tally = Tally()
    config.pluginmanager.register(config.ca15_tally, "ca15-tally")


# ------------------------------------------------------------------------------------------- collection
def _norm(name: str) -> str:
    return re.sub(r"[^a-z0-9]", "", name.lower())


def _component_of(item: pytest.Item) -> str | None:
    marker = item.get_closest_marker("component")
    return marker.args[0] if marker is not None and marker.args else None


def _matches(item: pytest.Item, wanted: str) -> bool:
    """``--component`` matches the component's name or the test file's stem (``test_`` and ``hidden_`` off)."""
    component = _component_of(item)
    stem = Path(str(item.fspath)).stem.removeprefix("test_").removeprefix("hidden_")
    return _norm(wanted) in {_norm(component or ""), _norm(stem)}


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    wanted = config.getoption("--component", default=None)
    if wanted:
        keep = [i for i in items if _matches(i, wanted)]
        if not keep:
            known = sorted({c for c in map(_component_of, items) if c})
            raise pytest.UsageError(f"--component={wanted}: no test of that component; components: {', '.join(known)}")
        kept = set(map(id, keep))
        config.hook.pytest_deselected(items=[i for i in items if id(i) not in kept])
        items[:] = keep
    if _fast_todo(config):
        for item in items:
            _stop_hypothesis_at_first_todo(item)


class _TodoHit(Skipped):
    """Carries a ``NotImplementedError`` through hypothesis, which re-raises skip exceptions at once instead of
    shrinking; :func:`pytest_pyfunc_call` turns it back into the original error (so the test fails)."""

    def __init__(self, original: NotImplementedError) -> None:
        super().__init__(str(original))
        self.original = original


def _stop_hypothesis_at_first_todo(item: pytest.Item) -> None:
    """Wrap a hypothesis test's inner test (the documented ``.hypothesis.inner_test`` hook) so that its first
    ``NotImplementedError`` ends the whole test: no further examples, no shrinking, no replay."""
    handle = getattr(getattr(item, "obj", None), "hypothesis", None)
    inner = getattr(handle, "inner_test", None)
    if inner is None or getattr(inner, "_ca15_fast_todo", False):
        return

    @functools.wraps(inner)
    def run(*args: Any, **kwargs: Any) -> Any:
        try:
            return inner(*args, **kwargs)
        except NotImplementedError as exc:
            raise _TodoHit(exc) from None

    run._ca15_fast_todo = True  # type: ignore[attr-defined]
    handle.inner_test = run


@pytest.hookimpl(wrapper=True)
def pytest_pyfunc_call(pyfuncitem: pytest.Function) -> Iterator[None]:
    try:
        return (yield)
    except _TodoHit as hit:
        raise hit.original.with_traceback(hit.original.__traceback__) from None


# ------------------------------------------------------------------------------------- failure summaries
def _leaves(exc: BaseException) -> list[BaseException]:
    if isinstance(exc, BaseExceptionGroup):
        return [leaf for sub in exc.exceptions for leaf in _leaves(sub)]
    return [exc]


def _first_line(text: str) -> str:
    line = next((s.strip() for s in text.splitlines() if s.strip()), "")
    return line if len(line) <= MESSAGE_WIDTH else line[: MESSAGE_WIDTH - 3] + "..."


def _show_path(path: str, config: pytest.Config) -> str:
    """A path relative to the invocation folder where it can be; a worker's copy of the implementation root
    is shown as ``<--impl>/<package>/...`` (``<package>/...`` when ``--impl`` is absolute: the grader's
    workspace means nothing to the student)."""
    p = Path(path)
    for base in (Path(config.invocation_params.dir), config.rootpath):
        try:
            return str(p.resolve().relative_to(base.resolve()))
        except (ValueError, OSError):
            pass
    parts = p.parts
    for i, part in enumerate(parts):
        if part in IMPL_PACKAGES:
            impl = str(config.getoption("--impl", default="") or "").rstrip("/")
            shown = [impl] if impl and not Path(impl).is_absolute() else []  # the grader's workspace: not shown
            return "/".join(shown + list(parts[i:]))
    return path


def _student_frame(exc: BaseException) -> tuple[str, int] | None:
    """The innermost frame of the implementation's traceback (worker or, under ``--isolation none``, local)."""
    text = getattr(exc, "remote_traceback", "") or ""
    frames = [(f, int(n)) for f, n in re.findall(r'File "([^"]+)", line (\d+)', text) if not f.startswith("<")]
    if frames:
        return frames[-1]
    origin = exc.__cause__ or exc
    tb = traceback.extract_tb(origin.__traceback__) if origin.__traceback__ else []
    return (tb[-1].filename, tb[-1].lineno or 0) if tb else None


def failure_info(item: pytest.Item, excinfo: pytest.ExceptionInfo[BaseException]) -> dict[str, Any]:
    """What the dashboard shows of a failure: ``not_started`` (every error is a ``NotImplementedError``),
    ``where`` (file:line: the TODO it hit, else the test's own line) and a one-line ``message``."""
    leaves = _leaves(excinfo.value)
    first = leaves[0]
    not_started = all(isinstance(e, NotImplementedError) for e in leaves)
    where = None
    if not_started:
        frame = _student_frame(first)
        if frame is not None:
            where = f"{_show_path(frame[0], item.config)}:{frame[1]}"
    if where is None:
        test_file = Path(str(item.fspath)).resolve()
        entries = [e for e in excinfo.traceback if Path(str(e.path)).resolve() == test_file]
        if entries:
            where = f"{_show_path(str(test_file), item.config)}:{entries[-1].lineno + 1}"
        else:
            where = f"{item.location[0]}:{(item.location[1] or 0) + 1}"
    message = _first_line(str(first))
    if not not_started and (not isinstance(first, AssertionError) or not message):
        message = f"{type(first).__name__}: {message}".rstrip(": ")
    return {"not_started": not_started, "where": where, "message": message}


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[pytest.TestReport]:
    """A failed phase's report carries :func:`failure_info` (user properties travel from xdist workers)."""
    report = yield
    if report.failed and call.excinfo is not None and _fast_todo(item.config):
        info = failure_info(item, call.excinfo)
        report.user_properties.append((FAILURE_KEY, info))
        if info["not_started"]:
            report.longrepr = f"not started: {info['message']} ({info['where']})"
    return report


def _failure_of(report: pytest.TestReport) -> dict[str, Any] | None:
    return next((v for k, v in report.user_properties if k == FAILURE_KEY), None)


def pytest_report_teststatus(report: pytest.TestReport, config: pytest.Config) -> tuple[str, str, str] | None:
    """A failure on a TODO counts as "not started" (letter ``n``) in pytest's own progress and final line."""
    if report.failed:
        info = _failure_of(report)
        if info is not None and info.get("not_started"):
            return "not started", "n", "NOT STARTED"
    return None


# ------------------------------------------------------------------------------------------------ tally
def counts_in_tally(points: int) -> bool:
    """The one rule that the table and the grader share: a graded test counts when it carries points
    (the grader collects ``--graded-only``; gpu tests and tests of given code carry 0)."""
    return points > 0


@dataclass
class GradedOutcome:
    """One graded test's result over its phases (failed wins over skipped wins over passed)."""

    nodeid: str
    component: str
    points: int
    hidden: bool
    location: tuple[str, int]
    outcome: str = "passed"
    failure: dict[str, Any] | None = None


@dataclass
class Row:
    """One component's row of the table."""

    passed: int = 0
    tests: int = 0
    got: int = 0
    most: int = 0
    not_started: int = 0
    failing: int = 0
    skipped: int = 0
    hidden_got: int = 0
    hidden_most: int = 0
    hidden_ran: bool = False
    given_passed: int = 0
    given_tests: int = 0
    given_failed: list = field(default_factory=list)  # GradedOutcome of each failed 0-point test
    first: GradedOutcome | None = None


@dataclass(eq=False)  # a plugin: pluggy keeps plugins in sets, so it must hash (by identity)
class Tally:
    """Every graded test's outcome of this session, in the controller (xdist sends the reports there)."""

    outcomes: dict[str, GradedOutcome] = field(default_factory=dict)

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        """Registered as a plugin per config (:func:`pytest_configure`): every phase's report comes here."""
        self.add(report)

    def add(self, report: pytest.TestReport) -> None:
        props = dict((k, v) for k, v in report.user_properties if k != FAILURE_KEY)
        if "component" not in props:
            return
        out = self.outcomes.get(report.nodeid)
        if out is None:
            path, line = report.location[0], report.location[1] or 0
            out = self.outcomes[report.nodeid] = GradedOutcome(report.nodeid, props["component"], int(props["points"]),
                                                             "hidden" in Path(path).parts, (path, line))  # fmt: skip
        if report.failed:
            if out.outcome != "failed":
                out.failure = _failure_of(report) or {"not_started": False, "where": f"{out.location[0]}:"
                                                      f"{out.location[1] + 1}", "message": _report_line(report)}
            out.outcome = "failed"
        elif report.skipped and out.outcome != "failed":
            out.outcome = "skipped"

    def rows(self, hidden_points: dict[str, int] | None = None) -> dict[str, Row]:
        """One row per component, sorted by name; ``hidden_points`` fills in hidden tests that did not run."""
        rows: dict[str, Row] = {}
        for out in sorted(self.outcomes.values(), key=lambda o: o.location):
            row = rows.setdefault(out.component, Row())
            passed = out.outcome == "passed"
            if out.hidden:
                if counts_in_tally(out.points):
                    row.hidden_ran = True
                    row.hidden_most += out.points
                    row.hidden_got += out.points if passed else 0
                continue
            if not counts_in_tally(out.points):
                if out.outcome != "skipped":  # e.g. gpu tests without CUDA
                    row.given_tests += 1
                    row.given_passed += passed
                    if out.outcome == "failed":
                        row.given_failed.append(out)
                if out.outcome == "failed" and row.first is None:
                    row.first = out
                continue
            row.tests += 1
            row.most += out.points
            if passed:
                row.passed += 1
                row.got += out.points
            elif out.outcome == "skipped":
                row.skipped += 1
            elif out.failure and out.failure.get("not_started"):
                row.not_started += 1
            else:
                row.failing += 1
            if out.outcome == "failed" and (row.first is None or not counts_in_tally(row.first.points)):
                row.first = out
        for name, points in (hidden_points or {}).items():
            row = rows.setdefault(name, Row())
            if not row.hidden_ran:
                row.hidden_most = int(points)
        return dict(sorted(rows.items()))


def _report_line(report: pytest.TestReport) -> str:
    crash = getattr(getattr(report, "longrepr", None), "reprcrash", None)
    return _first_line(getattr(crash, "message", "") or str(report.longrepr or "failed"))


# ------------------------------------------------------------------------------------------------- table
def _release_facts(config: pytest.Config, key: str) -> dict:
    """One table of the release's ``tests/todo_sites.json`` ({} without it): ``"todo_sites"``: ``{component:
    [{"where", "todo"}, ...]}``; ``"doubles"``: ``{component: [components its tests replace by test doubles]}``."""
    path = config.rootpath / "tests" / TODO_SITES_FILE
    try:
        return dict(json.loads(path.read_text(encoding="utf-8"))[key])
    except (OSError, ValueError, KeyError, TypeError):
        return {}


def doubles_line(component: str, doubles: dict) -> str:
    """What the dashboard says of a component graded with test doubles for others ('' when it is not)."""
    others = doubles.get(component)
    if not others:
        return ""
    return f"graded with test doubles for {', '.join(others)}: a bug there is not charged here"


def load_hidden_points(config: pytest.Config) -> dict[str, int]:
    """``{component: points}`` of the hidden tests, from ``--hidden-points`` or the release's file.

    Raises:
        pytest.UsageError: the file given with ``--hidden-points`` is missing or not the expected JSON.
    """
    given = config.getoption("--hidden-points", default=None)
    path = Path(given) if given else config.rootpath / "tests" / HIDDEN_POINTS_FILE
    if not path.is_file():
        if given:
            raise pytest.UsageError(f"--hidden-points={given}: no such file")
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        points = data["hidden_points"]
        return {str(k): int(v) for k, v in points.items()}
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise pytest.UsageError(f"{path}: not a hidden-points file ({{\"hidden_points\": {{component: n}}}}): "
                                f"{exc}") from exc  # fmt: skip


def _status(row: Row) -> str:
    if row.tests == 0:
        return "hidden only" if row.hidden_most else ""
    if row.passed == row.tests:
        return "ok"
    if row.not_started == row.tests:
        return "not started"
    parts = [f"{n} {what}" for n, what in ((row.failing, "failing"), (row.not_started, "not started"),
                                           (row.skipped, "skipped")) if n]  # fmt: skip
    return ", ".join(parts)


def format_table(rows: dict[str, Row]) -> list[str]:
    """The per-component table: ``component  passed/tests  got/max  hidden  status`` and a total line."""
    graded = {n: r for n, r in rows.items() if r.tests or r.hidden_most}
    width = max([len(n) for n in graded] + [len("component")])
    hidden = any(r.hidden_most for r in graded.values())
    ran = any(r.hidden_ran for r in graded.values())

    def hid(row: Row) -> str:
        if not hidden:
            return ""
        if row.hidden_ran:
            return f"{f'{row.hidden_got}/{row.hidden_most}':>8}"
        return f"{row.hidden_most or '-':>8}"

    head = f"{'component':<{width}}  {'tests':>9}  {'points':>9}"
    lines = [head + (f"{'hidden':>8}" if hidden else "") + "  status"]
    for name, row in graded.items():
        lines.append(f"{name:<{width}}  {f'{row.passed}/{row.tests}':>9}  {f'{row.got}/{row.most}':>9}{hid(row)}  "
                     f"{_status(row)}".rstrip())  # fmt: skip
    total = Row(passed=sum(r.passed for r in graded.values()), tests=sum(r.tests for r in graded.values()),
                got=sum(r.got for r in graded.values()), most=sum(r.most for r in graded.values()),
                hidden_got=sum(r.hidden_got for r in graded.values()),
                hidden_most=sum(r.hidden_most for r in graded.values()), hidden_ran=ran)  # fmt: skip
    lines.append(f"{'total':<{width}}  {f'{total.passed}/{total.tests}':>9}  {f'{total.got}/{total.most}':>9}"
                 f"{hid(total)}")
    given = [r for r in rows.values() if r.given_tests]
    if given:
        passed, tests = sum(r.given_passed for r in given), sum(r.given_tests for r in given)
        lines.append(f"tests worth 0 points (given code, error messages): {passed}/{tests} passed")
        failed = sorted((o for r in given for o in r.given_failed), key=lambda o: o.location)
        if failed:
            named = [f"{o.nodeid.split('::', 1)[-1]}" + (f" (reaches a TODO at {o.failure['where']})" if o.failure
                     and o.failure.get("not_started") else "") for o in failed[:3]]  # fmt: skip
            lines.append("  failing: " + "; ".join(named) + (f"; and {len(failed) - 3} more" if len(failed) > 3 else ""))
    if hidden:
        lines.append("hidden: points of the grader's hidden tests (" + ("got/max, they ran here" if ran else
                     "not in your kit; the grader runs them") + ")")  # fmt: skip
    return lines


def components_to_go(rows: dict[str, Row]) -> str:
    """The dashboard's last line: how many components still lose public points."""
    graded = [r for r in rows.values() if r.tests]
    left = sum(1 for r in graded if r.got < r.most)
    if not left:
        return f"All {len(graded)} components pass their public tests."
    return f"{left} of {len(graded)} components to go."


def format_failures(rows: dict[str, Row], budget: int = MAX_LINES, doubles: dict | None = None) -> list[str]:
    """Per failing component, its first failure in two lines (test, file:line; then the message or TODO text);
    in one line each (the message cut shorter) when two would take more than ``budget`` lines. A component
    graded with test doubles (``doubles``) that fails, not on a TODO, says so in a third line when it fits."""
    failing = [(name, row.first) for name, row in rows.items() if row.first is not None]
    two_lines = 2 * len(failing) <= budget
    spare = budget - 2 * len(failing)  # lines left for the test-double notes
    lines = []
    for name, out in failing:
        info = out.failure or {}
        test = out.nodeid.split("::", 1)[-1]
        state = "not started" if info.get("not_started") else "failed"
        head = f"{name}: {state} at {test} ({info.get('where', out.location[0])})"
        if two_lines:
            lines += [head, f"    {info.get('message', '')}"]
            note = doubles_line(name, doubles or {})
            if note and not info.get("not_started") and spare > 0:
                lines.append(f"    ({note})")
                spare -= 1
        else:
            lines.append(_first_line(f"{head}: {info.get('message', '')}"))
    return lines


def pytest_terminal_summary(terminalreporter: Any, exitstatus: int, config: pytest.Config) -> None:
    """The table (always, when a graded test ran); with ``--dashboard`` also each component's first failure."""
    tally: Tally = config.ca15_tally
    if not any(o.outcome != "skipped" or counts_in_tally(o.points) for o in tally.outcomes.values()):
        return
    ran = {o.component for o in tally.outcomes.values()}  # a run of some files: only their components' rows
    hidden = {k: v for k, v in load_hidden_points(config).items() if k in ran}
    rows = tally.rows(hidden)
    tr = terminalreporter
    tr.section("CA15 graded components")
    table = format_table(rows)
    for line in table:
        tr.write_line(line)
    if _dashboard(config):
        # what else fits in MAX_LINES: pytest's progress (72 tests a line), its own 4 lines, our 3
        progress = -(-len(tally.outcomes) // 72)
        failures = format_failures(rows, budget=MAX_LINES - len(table) - progress - 7,
                                   doubles=_release_facts(config, "doubles"))  # fmt: skip
        if failures:
            tr.section("first failure per component", sep="-")
            for line in failures:
                tr.write_line(line)
            tr.write_line("make test K=<component> shows one component's full output")
        tr.write_line(components_to_go(rows))
    elif _fast_todo(config):  # pytest lists the other failures; the TODOs it counts apart are listed here
        todo = [o for o in sorted(tally.outcomes.values(), key=lambda o: o.location)
                if o.outcome == "failed" and o.failure and o.failure.get("not_started")]
        if todo:
            tr.section("not started (a TODO raises NotImplementedError)", sep="-")
            for out in todo:
                tr.write_line(f"{out.nodeid.split('::', 1)[-1]} ({out.failure['where']}): {out.failure['message']}")
        wanted = config.getoption("--component", default=None)
        note = doubles_line(next(iter(ran)), _release_facts(config, "doubles")) if wanted and len(ran) == 1 else ""
        if note:
            tr.write_line(f"{next(iter(ran))}: {note}.")
        sites = _release_facts(config, "todo_sites").get(next(iter(ran))) if wanted and len(ran) == 1 else None
        if sites:
            tr.section(f"every TODO of {next(iter(ran))} (a test stops at its first one)", sep="-")
            for site in sites:
                tr.write_line(f"{site['where']}: {_first_line(site['todo'])}")

