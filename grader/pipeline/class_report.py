"""The class report: how a whole batch did, per component and per test, for the course staff.

    ca15-grade report OUT       (OUT: the output folder of ``ca15-grade SUB... --out OUT``)

reads every ``OUT/<name>/results.json`` (the one source; ``gradebook.csv`` is made from the same files) and
writes ``OUT/class-report.json`` and ``OUT/class-report.html`` (one page, no script, plots inline). A batch
writes it at its end (``grader.pipeline.grade.grade_batch``); this command writes it again for a folder.

- the score distribution (a histogram), the status counts (graded, unsandboxed, timeout, error, refused)
  and the grading time per submission (``extra_data.seconds``; "not recorded" where a results.json has none);
- per component: mean points, the share of submissions at full marks and the share that has not started it;
- per test: the pass rate among the submissions that started its component, its discrimination, and
  suspects: a test fewer than 20 % of them pass, a test that fails for a submission that passes every other
  test of the component ("fails alone");
- per test, the most common failure messages, normalised (:func:`normalise_message`), with who hit each.

Staff only: the report names hidden tests and their results. Everything a submission wrote (messages,
folder names, statuses) is HTML-escaped.

What results.json holds (``grader.pipeline.grade.gradescope_results``): one row per graded test with ``name``
("Component [category] test_name"), ``score``, ``max_score``, ``status`` (passed/failed; a test that never
reported is failed), ``tags`` (``[component, category]``), ``visibility`` (``hidden`` for a hidden test) and
``output`` (a public test: its docstring's first line, then a blank line and the failure message; a hidden
test: "Hidden test: failed.", its message stays in the submission's log.txt). Rows without two tags (the
notebook's, the grader environment's) are not tests. ``extra_data.status`` and ``extra_data.seconds`` give
the status and the wall seconds the submission took (a refusal or a grader error has no seconds).

Definitions (also written into the report):

- *analysed*: a submission whose status is graded or unsandboxed. Timeouts, errors and refusals count in
  the score and status figures only: their unreported tests would read as failures of the tests.
- *not started* (a component, for one analysed submission): it earned 0 points on the component, and every
  public test of it that carries points failed on a TODO: the judge's ``not started:`` marker
  (``--fast-todo``: every error of the test was a ``NotImplementedError``) or ``NotImplementedError`` in the
  message. A
  component whose point-carrying tests are all hidden (results.json keeps no hidden message) is not started
  when it earned 0 points. Otherwise the component is *started* (so is one worth no points: given code).
- *pass rate* of a test: passed / analysed submissions that started its component.
- *discrimination* of a test: :func:`discrimination` over those submissions.
"""

from __future__ import annotations

import argparse
import base64
import html
import io
import json
import math
import os
import re
import statistics
import sys
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

#: The report's first words, in both files.
STAFF_ONLY = "Staff only: contains hidden-test names and results."
#: A test fewer than this share of the started submissions pass is a suspect.
LOW_PASS_RATE = 0.2
#: Failure messages listed per test (the most common first), and the longest message kept.
TOP_MESSAGES = 5
#: How many of the most expensive tests the report lists.
EXPENSIVE_TESTS = 10
MESSAGE_WIDTH = 300
REPORT_JSON, REPORT_HTML = "class-report.json", "class-report.html"
#: Status categories, in the order the report lists them.
STATUSES = ("graded", "unsandboxed", "timeout", "error", "refused", "other")
ANALYSED = ("graded", "unsandboxed")
TESTED = ("graded", "unsandboxed", "timeout")
#: What a failing hidden test's message is in the report: results.json never holds it.
HIDDEN_MESSAGE = "(hidden test: results.json keeps no message; see the submission's log.txt)"
ANALYSED_RULE = ("Analysed: the submissions with status graded or unsandboxed; timeouts, errors and refusals "
                 "count in the scores and statuses only.")  # fmt: skip
NOT_STARTED_RULE = (
    "Not started: the component earned 0 points, and every public test of it that carries points failed on a "
    "TODO (the judge's 'not started:' marker, or NotImplementedError in the message); for a component whose "
    "point-carrying tests are all hidden (results.json keeps no hidden message), 0 points. Otherwise started "
    "(so is a component worth no points: given code)."
)
DISCRIMINATION_RULE = (
    "Discrimination: the point-biserial correlation, over the submissions that started the component, "
    "between passing the test (1/0) and the rest of the component's score (its points minus this test's); "
    "none when fewer than two submissions, when all passed or all failed, or when the rest does not vary."
)
SUSPECT_RULE = (
    f"Suspect: fewer than {LOW_PASS_RATE:.0%} of the submissions that started the component pass the test, "
    "or the test fails for a submission that passes every other test of its component (fails alone)."
)

TestKey = tuple[str, str, bool]  # (component, test name, hidden)


# --------------------------------------------------------------------------------------------- reading
@dataclass(frozen=True)
class GradedTest:
    """One graded test's row of one submission's results.json."""

    name: str
    component: str
    category: str
    hidden: bool
    passed: bool
    score: float
    max_score: float
    output: str

    @property
    def key(self) -> TestKey:
        return (self.component, self.name, self.hidden)


@dataclass
class Submission:
    """One ``OUT/<name>/results.json``: its status, score, grading time and test rows."""

    name: str
    status: str
    score: float
    max_score: float
    seconds: float | None
    tests: list[GradedTest] = field(default_factory=list)
    #: wall seconds per grading stage and per test (results.json ``extra_data.stages``, ``.test_seconds``)
    stages: dict[str, float] = field(default_factory=dict)
    test_seconds: dict[str, float] = field(default_factory=dict)

    @property
    def category(self) -> str:
        return status_category(self.status)


def status_category(status: str) -> str:
    """The report's category of a results.json status: ``graded`` (also "graded, as USER (no namespaces)"),
    ``unsandboxed`` ("unsandboxed", "graded, unsandboxed"), ``timeout``, ``error``, ``refused``, or
    ``other``."""
    status = status.strip()
    if status in ("timeout", "error", "refused"):
        return status
    if "unsandboxed" in status:
        return "unsandboxed"
    if status == "graded" or status.startswith("graded,"):
        return "graded"
    return "other"


def _number(value: object) -> float:
    """A JSON number as it is (0 for anything else: a bool, a string, null)."""
    return value if isinstance(value, (int, float)) and not isinstance(value, bool) else 0


def parse_results(name: str, results: dict) -> Submission:
    """A :class:`Submission` from a results.json's content (rows without ``[component, category]`` tags, the
    notebook's and the grader environment's, are not tests)."""
    extra = results.get("extra_data") or {}
    rows = results.get("tests") or []
    tests = []
    for row in rows:
        tags = row.get("tags")
        if not (isinstance(tags, list) and len(tags) == 2 and all(isinstance(t, str) for t in tags)):
            continue
        prefix, full = f"{tags[0]} [{tags[1]}] ", str(row.get("name", ""))
        tests.append(GradedTest(
            name=full[len(prefix):] if full.startswith(prefix) else full, component=tags[0],
            category=tags[1], hidden=row.get("visibility") == "hidden", passed=row.get("status") == "passed",
            score=_number(row.get("score")), max_score=_number(row.get("max_score")),
            output=str(row.get("output", "")),
        ))  # fmt: skip
    seconds = extra.get("seconds")
    recorded = isinstance(seconds, (int, float)) and not isinstance(seconds, bool)
    return Submission(
        name=name, status=str(extra.get("status", "graded")), score=_number(results.get("score")),
        max_score=sum(_number(r.get("max_score")) for r in rows), tests=tests,
        seconds=_number(seconds) if recorded else None,
        stages=_times(extra.get("stages")), test_seconds=_times(extra.get("test_seconds")),
    )  # fmt: skip


def _times(value: object) -> dict[str, float]:
    """``{name: seconds}`` of a results.json time table, entries that are not a name and a number left out."""
    if not isinstance(value, dict):
        return {}
    return {str(k): float(v) for k, v in value.items()
            if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)}  # fmt: skip


def read_submissions(out_dir: Path) -> list[Submission]:
    """Every ``out_dir/*/results.json``, sorted by folder name; one that cannot be read counts as an error
    with no test, as in ``gradebook.csv``."""
    subs = []
    for path in sorted(out_dir.glob("[!.]*/results.json")):
        try:
            results = json.loads(path.read_text(encoding="utf-8"))
            if not isinstance(results, dict):
                raise ValueError("not a JSON object")
            subs.append(parse_results(path.parent.name, results))
        except (ValueError, KeyError, TypeError, AttributeError, OSError):
            subs.append(Submission(path.parent.name, "error", 0, 0, None))
    return subs


# ------------------------------------------------------------------------------------------ statistics
_HEX = re.compile(r"\b0x[0-9a-fA-F]+\b")
_ABS_PATH = re.compile(r"(?<![\w)\]}<>.])(?:[A-Za-z]:)?/[\w.+@-]+(?:/[\w.+@-]+)+(?::\d+)?")
_REL_FILE = re.compile(r"\b[\w.+-]+(?:/[\w.+-]+)*\.(?:py|pyc|pyx|ipynb|json|txt|so|c|h|cpp)(?::\d+)?\b")
_NUMBER = re.compile(r"(?<![\w.])[-+]?(?:\d+\.\d*|\.\d+|\d+)(?:[eE][-+]?\d+)?(?![\w])")
_LOCATION_LINE = re.compile(r"^<path>(?::<n>)?: [\w.]+$")
#: Blank-ish lines: rules of underscores, dashes, equals signs, and exception groups' ``+---- 1 ----`` frames.
_SEPARATOR = re.compile(r"^[\s_\-=+|]*\d*[\s_\-=+|]*$")
#: ``ValueError: ...``, ``grader.judge.remote.WorkerLost: ...``, ``hypothesis.errors.FlakyFailure: ...``
_EXCEPTION_LINE = re.compile(
    r"^(?:\w+\.)*\w*(?:Error|Exception|Lost|Failure|Failed|Exit|Interrupt|Timeout|Warning|Group)(?::|$)"
)
#: An exception group's frame on the left of its lines (``  |   ``, ``+ ``).
_GROUP_FRAME = re.compile(r"^[\s|+]*")


def _fold(line: str) -> str:
    line = _HEX.sub("<hex>", line)
    line = _ABS_PATH.sub("<path>", line)
    line = _REL_FILE.sub("<path>", line)
    line = re.sub(r"\bline \d+", "line <n>", line)
    line = _NUMBER.sub("<n>", line)
    return " ".join(line.split())


def _meaningful_line(lines: list[str]) -> str:
    """The line of a failure message that says what failed (see :func:`normalise_message`)."""
    todo = next((line for line in lines if line.startswith("not started: ")), None)
    if todo is not None:
        return todo
    errors = [_GROUP_FRAME.sub("", line[1:].strip()) for line in lines if line.startswith("E ")]
    errors = [e for e in errors if e and not _SEPARATOR.match(e)]
    if errors:
        i = next((k for k, e in enumerate(errors) if _EXCEPTION_LINE.match(e)), 0)
        line = errors[i]
        if line.endswith(":") and i + 1 < len(errors):  # "AssertionError:" and its text on the next line
            line += " " + errors[i + 1]
        return line
    rest = [_GROUP_FRAME.sub("", line) for line in lines]
    rest = [r for r in rest if r and not _SEPARATOR.match(r) and not _LOCATION_LINE.match(_fold(r))]
    if not rest:
        return lines[-1]
    return next((line for line in reversed(rest) if _EXCEPTION_LINE.match(line)), rest[-1])


def normalise_message(message: str, width: int = MESSAGE_WIDTH) -> str:
    """One failure message as a short key that submissions hitting the same failure share.

    The meaningful line is kept: the judge's one-line ``not started: ...``; else, among pytest's ``E`` lines,
    the first exception line (``ValueError: ...``; with the next line when it has no text of its own, as
    numpy's ``AssertionError:``), else the first ``E`` line (``assert 3 == 2``); else (a traceback without
    ``E`` lines, an exception group) the last exception line, else the last line that is neither a separator
    nor a bare ``path:line: Error`` location. In it, hex addresses become ``<hex>``, file paths (absolute with
    two parts or more, or relative with a file extension; their ``:line`` too) ``<path>``, other numbers
    ``<n>``, and whitespace runs one space; at most ``width`` characters. ``""`` for an empty message.

    >>> normalise_message("E   AssertionError: got 3.5 at 0x7f3a in /tmp/ws-1/utils/x.py:12")
    'AssertionError: got <n> at <hex> in <path>'
    """
    lines = [line.strip() for line in message.splitlines() if line.strip()]
    if not lines:
        return ""
    folded = _fold(_meaningful_line(lines))
    return folded if len(folded) <= width else folded[: width - 3] + "..."


def failure_message(output: str, doc: str | None) -> str:
    """The failure message inside a public test's results.json ``output`` (its docstring's first line, a
    blank line, the message): ``doc`` removed when it is known (the output of a submission that passed),
    else the first paragraph."""
    if doc is not None and output.startswith(doc):
        return output[len(doc):].strip()
    _, sep, rest = output.partition("\n\n")
    return rest.strip() if sep else output.strip()


def is_todo_failure(message: str) -> bool:
    """Whether a failure message says the test hit a TODO: the judge's ``not started:`` marker or a
    ``NotImplementedError``."""
    return message.lstrip().startswith("not started:") or "NotImplementedError" in message


def not_started(tests: list[GradedTest], messages: dict[TestKey, str]) -> bool:
    """Whether one submission has not started the component whose rows are ``tests``; ``messages`` maps a
    failed public test's key to its failure message. The rule: :data:`NOT_STARTED_RULE`."""
    if sum(t.score for t in tests) > 0 or not any(t.max_score > 0 for t in tests):
        return False  # points earned, or given code worth no points: nothing to start
    public = [t for t in tests if t.max_score > 0 and not t.hidden]
    return all(not t.passed and is_todo_failure(messages.get(t.key, "")) for t in public)


def discrimination(passed: list[bool], rest: list[float]) -> float | None:
    """The point-biserial correlation between passing a test (``passed``) and the rest of its component's
    score (``rest``: the component's points minus the test's), one entry per submission: the Pearson
    correlation of the 0/1 outcome with the rest. ``None`` when undefined (fewer than 2 submissions, or
    either side constant).

    >>> round(discrimination([True, True, False, False], [3, 2, 1, 2]), 4)
    0.7071
    """
    if len(passed) != len(rest):
        raise ValueError(f"passed and rest: expected the same length, got {len(passed)} and {len(rest)}")
    n = len(passed)
    if n < 2:
        return None
    x = [1.0 if p else 0.0 for p in passed]
    mx, my = sum(x) / n, sum(rest) / n
    sxx = sum((v - mx) ** 2 for v in x)
    syy = sum((v - my) ** 2 for v in rest)
    if sxx == 0 or syy == 0:
        return None
    sxy = sum((a - mx) * (b - my) for a, b in zip(x, rest))
    return sxy / math.sqrt(sxx * syy)


def pass_rate(passed: list[bool]) -> float | None:
    """The share of ``True`` in ``passed``; ``None`` for no submission."""
    return sum(passed) / len(passed) if passed else None


def summary(values: list[float]) -> dict:
    """``n``, ``min``, ``median``, ``mean``, ``max`` of ``values`` (all but ``n`` None when empty)."""
    if not values:
        return {"n": 0, "min": None, "median": None, "mean": None, "max": None}
    return {"n": len(values), "min": min(values), "median": statistics.median(values),
            "mean": statistics.fmean(values), "max": max(values)}  # fmt: skip


# ------------------------------------------------------------------------------------------- analysis
ByComponent = dict[str, dict[str, list[GradedTest]]]  # component -> submission -> its rows


def _component_rows(analysed: list[Submission]) -> tuple[ByComponent, list[TestKey]]:
    """``{component: {submission: its rows}}`` and every test's key in the order results.json lists them."""
    rows: ByComponent = {}
    order: dict[TestKey, None] = {}
    for s in analysed:
        for t in s.tests:
            rows.setdefault(t.component, {}).setdefault(s.name, []).append(t)
            order.setdefault(t.key)
    return rows, list(order)


def _messages(analysed: list[Submission]) -> dict[str, dict[TestKey, str]]:
    """Per submission, each failed public test's failure message (its docstring line removed)."""
    docs: dict[TestKey, str] = {}
    for s in analysed:
        for t in s.tests:
            if t.passed and not t.hidden:
                docs.setdefault(t.key, t.output)
    return {s.name: {t.key: failure_message(t.output, docs.get(t.key)) for t in s.tests
                     if not t.passed and not t.hidden} for s in analysed}  # fmt: skip


def component_stats(rows: dict[str, list[GradedTest]], started: set[str]) -> dict:
    """One component's line: analysed submissions, max score, mean points, share at full marks (None for a
    component worth 0 points), share not started and who."""
    points = {name: sum(t.score for t in ts) for name, ts in rows.items()}
    most = max(sum(t.max_score for t in ts) for ts in rows.values())
    n = len(rows)
    return {
        "submissions": n, "max_score": most, "mean_points": sum(points.values()) / n,
        "full_marks": sum(p >= most for p in points.values()) / n if most > 0 else None,
        "not_started": (n - len(started)) / n, "started": len(started),
        "not_started_names": sorted(set(rows) - started),
    }  # fmt: skip


def per_test_stats(key: TestKey, rows: dict[str, list[GradedTest]], started: set[str],
               messages: dict[str, dict[TestKey, str]]) -> dict:
    """One test's line, over the submissions in ``started``: pass rate, discrimination, who fails it alone,
    the flags that make it a suspect, and its most common normalised failure messages."""
    comp, name, hidden = key
    outcomes: list[bool] = []
    rest: list[float] = []
    alone: list[str] = []
    failed: list[tuple[str, str]] = []
    for sub in sorted(started):
        mine = [t for t in rows[sub] if t.key == key]
        if not mine:
            continue
        others = [o for o in rows[sub] if o.key != key]
        outcomes.append(mine[0].passed)
        rest.append(sum(o.score for o in others))
        if not mine[0].passed:
            text = HIDDEN_MESSAGE if hidden else normalise_message(messages[sub].get(key, ""))
            failed.append((sub, text or "(no message)"))
            if others and all(o.passed for o in others):
                alone.append(sub)
    meta = next(t for ts in rows.values() for t in ts if t.key == key)
    counts = Counter(text for _, text in failed)
    ranked = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[:TOP_MESSAGES]
    common = [{"message": text, "count": c, "submissions": [s for s, m in failed if m == text]}
              for text, c in ranked]  # fmt: skip
    rate = pass_rate(outcomes)
    flags = []
    if rate is not None and rate < LOW_PASS_RATE:
        flags.append(f"pass rate {rate:.0%} (below {LOW_PASS_RATE:.0%}) among {len(outcomes)} started "
                     "submissions")  # fmt: skip
    if alone:
        flags.append(f"fails alone for {len(alone)}: {', '.join(alone)} (they pass every other test of "
                     f"{comp})")  # fmt: skip
    return {
        "component": comp, "test": name, "category": meta.category, "hidden": hidden,
        "points": meta.max_score, "started": len(outcomes), "passed": sum(outcomes), "pass_rate": rate,
        "discrimination": discrimination(outcomes, rest), "fails_alone": alone, "flags": flags,
        "failures": len(failed), "messages": common,
    }  # fmt: skip


def grading_cost(subs: list[Submission], top: int = EXPENSIVE_TESTS) -> dict:
    """Where grading time goes (issue 26): per stage the summary of its seconds over the submissions that
    recorded it, and the ``top`` tests of the largest mean seconds (over the submissions that ran them)."""
    stages: dict[str, list[float]] = {}
    tests: dict[str, list[float]] = {}
    for sub in subs:
        for stage, seconds in sub.stages.items():
            stages.setdefault(stage, []).append(seconds)
        for nodeid, seconds in sub.test_seconds.items():
            tests.setdefault(nodeid, []).append(seconds)
    ranked = sorted(tests.items(), key=lambda kv: (-sum(kv[1]) / len(kv[1]), kv[0]))[:top]
    return {
        "source": "results.json extra_data.stages and extra_data.test_seconds (wall seconds)",
        "stages": {stage: summary(values) for stage, values in stages.items()},
        "expensive_tests": [{"test": nodeid, "mean_seconds": round(sum(v) / len(v), 2), "max_seconds": max(v),
                             "submissions": len(v)} for nodeid, v in ranked],  # fmt: skip
    }


def analyse(subs: list[Submission]) -> dict:
    """The class report's content (what ``class-report.json`` holds) from the submissions."""
    analysed = [s for s in subs if s.category in ANALYSED]
    tested = [s for s in subs if s.category in TESTED]
    messages = _messages(analysed)
    rows, keys = _component_rows(analysed)
    started = {comp: {name for name, ts in by_sub.items() if not not_started(ts, messages[name])}
               for comp, by_sub in rows.items()}  # fmt: skip
    components = {comp: component_stats(rows[comp], started[comp]) for comp in sorted(rows)}
    tests = [per_test_stats(key, rows[key[0]], started[key[0]], messages)
             for key in sorted(keys, key=lambda k: k[0])]  # stable: results.json's order within a component
    suspects = [{"component": t["component"], "test": t["test"], "hidden": t["hidden"], "reason": flag}
                for t in tests for flag in t["flags"]]  # fmt: skip
    statuses = Counter(s.category for s in subs)
    times = [s.seconds for s in subs if s.seconds is not None]
    return {
        "staff_only": STAFF_ONLY,
        "submissions": len(subs),
        "analysed": len(analysed),
        "statuses": {k: statuses.get(k, 0) for k in STATUSES},
        "raw_statuses": dict(sorted(Counter(s.status for s in subs).items())),
        "scores": {
            "of": "submissions with status graded, unsandboxed or timeout",
            **summary([s.score for s in tested]),
            "max_score": max((s.max_score for s in tested), default=None),
            "per_submission": {s.name: {"score": s.score, "max_score": s.max_score, "status": s.status}
                               for s in subs},
        },  # fmt: skip
        "grading_seconds": {
            **summary(times),
            "source": "results.json extra_data.seconds (wall seconds of the whole submission)",
            "not_recorded": sorted(s.name for s in subs if s.seconds is None),
        },  # fmt: skip
        "grading_cost": grading_cost(subs),
        "definitions": {"analysed": ANALYSED_RULE, "not_started": NOT_STARTED_RULE,
                        "discrimination": DISCRIMINATION_RULE, "suspect": SUSPECT_RULE},  # fmt: skip
        "components": components,
        "tests": tests,
        "suspects": suspects,
    }


# ---------------------------------------------------------------------------------------------- plots
def histogram_png(values: list[float], xlabel: str, title: str, integer_bins: bool = False) -> bytes:
    """A histogram of ``values`` as PNG bytes (matplotlib's object API: no pyplot, no global state);
    ``integer_bins``: one bar per integer when the range is at most 60 wide."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6.4, 2.8), dpi=100)
    ax = fig.add_subplot()
    if integer_bins and values and max(values) - min(values) <= 60:
        lo, hi = math.floor(min(values)), math.ceil(max(values))
        bins: int | list[float] = [b - 0.5 for b in range(lo, hi + 2)]
    else:
        bins = min(20, max(1, len(set(values))))
    ax.hist(values, bins=bins, color="#4c72b0", edgecolor="white")
    ax.set_xlabel(xlabel)
    ax.set_ylabel("submissions")
    ax.set_title(title, fontsize=10)
    ax.yaxis.get_major_locator().set_params(integer=True)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    return buffer.getvalue()


def _img(png: bytes, alt: str) -> str:
    data = base64.b64encode(png).decode("ascii")
    return f"<p><img alt='{html.escape(alt)}' src='data:image/png;base64,{data}'></p>"


# ----------------------------------------------------------------------------------------------- html
STYLE = (
    "body{font-family:sans-serif;max-width:72em;margin:auto;padding:0 1em}"
    "table{border-collapse:collapse;margin:.5em 0}td,th{border:1px solid #ccc;padding:2px 8px;"
    "vertical-align:top}th{background:#f0f0f0;text-align:left}td.n{text-align:right}"
    ".staff{background:#fde2e2;border:2px solid #c0392b;padding:8px 12px;font-weight:bold}"
    ".flag{color:#c0392b}.rule{color:#555;font-size:90%}code{font-size:90%}"
    ".msg{font-family:monospace;font-size:85%;white-space:pre-wrap;word-break:break-word}"
)


def _num(value: float | None, digits: int = 2) -> str:
    if value is None:
        return "–"
    return f"{value:.{digits}f}".rstrip("0").rstrip(".") if isinstance(value, float) else str(value)


def _corr(value: float | None) -> str:
    return "–" if value is None else f"{value:.2f}"


def _pct(value: float | None) -> str:
    return "–" if value is None else f"{value:.0%}"


def _table(head: list[str], rows: list[str]) -> str:
    return "<table><tr>" + "".join(f"<th>{h}</th>" for h in head) + "</tr>" + "".join(rows) + "</table>"


def _overview_html(report: dict, subs: list[Submission]) -> list[str]:
    """Scores (summary and histogram), statuses, grading time."""
    esc = html.escape
    scores, times = report["scores"], report["grading_seconds"]
    parts = ["<h2>Scores</h2>"]
    if scores["n"]:
        most = _num(scores["max_score"])
        parts.append(f"<p>{scores['n']} submission(s) graded, unsandboxed or timed out: mean "
                     f"{_num(scores['mean'])}, median {_num(scores['median'])}, min {_num(scores['min'])}, "
                     f"max {_num(scores['max'])} of {most}.</p>")  # fmt: skip
        values = [s.score for s in subs if s.category in TESTED]
        png = histogram_png(values, f"score (of {most})", "Score distribution", integer_bins=True)
        parts.append(_img(png, "score histogram"))
    else:
        parts.append("<p>No submission was tested.</p>")
    rows = [f"<tr><td>{esc(k)}</td><td class='n'>{v}</td></tr>" for k, v in report["statuses"].items()]
    raw = ", ".join(f"{esc(k)}: {v}" for k, v in report["raw_statuses"].items())
    parts += ["<h2>Statuses</h2>", _table(["status", "submissions"], rows),
              f"<p>As results.json writes them: {raw or 'none'}.</p>", "<h2>Grading time</h2>"]  # fmt: skip
    if times["n"]:
        parts.append(f"<p>Wall seconds per submission (results.json <code>extra_data.seconds</code>), "
                     f"{times['n']} recorded: median {_num(times['median'], 1)}, mean "
                     f"{_num(times['mean'], 1)}, min {_num(times['min'], 1)}, "
                     f"max {_num(times['max'], 1)}.</p>")  # fmt: skip
        values = [s.seconds for s in subs if s.seconds is not None]
        png = histogram_png(values, "seconds", "Grading time per submission")
        parts.append(_img(png, "grading-time histogram"))
    if times["not_recorded"]:
        parts.append(f"<p>Not recorded for {len(times['not_recorded'])}: "
                     f"{esc(', '.join(times['not_recorded']))}.</p>")  # fmt: skip
    cost = report["grading_cost"]
    if cost["stages"]:
        rows = [f"<tr><td>{esc(stage)}</td><td class='n'>{_num(t['median'], 1)}</td><td class='n'>"
                f"{_num(t['mean'], 1)}</td><td class='n'>{_num(t['max'], 1)}</td></tr>"
                for stage, t in cost["stages"].items()]  # fmt: skip
        parts += ["<p>Seconds per grading stage:</p>", _table(["stage", "median", "mean", "max"], rows)]
    if cost["expensive_tests"]:
        rows = [f"<tr><td>{esc(t['test'])}</td><td class='n'>{_num(t['mean_seconds'], 1)}</td><td class='n'>"
                f"{_num(t['max_seconds'], 1)}</td><td class='n'>{t['submissions']}</td></tr>"
                for t in cost["expensive_tests"]]  # fmt: skip
        parts += [f"<p>The {len(rows)} most expensive tests (mean seconds over the submissions that ran them):</p>",
                  _table(["test", "mean", "max", "submissions"], rows)]  # fmt: skip
    return parts


def _components_html(report: dict) -> list[str]:
    esc = html.escape
    rows = [f"<tr><td>{esc(c)}</td><td class='n'>{v['submissions']}</td><td class='n'>"
            f"{_num(v['mean_points'])} / {_num(v['max_score'])}</td>"
            f"<td class='n'>{_pct(v['full_marks'])}</td><td class='n'>{_pct(v['not_started'])}</td>"
            f"<td class='n'>{v['started']}</td></tr>"
            for c, v in report["components"].items()]  # fmt: skip
    head = ["component", "analysed", "mean points", "full marks", "not started", "started"]
    return ["<h2>Components</h2>", _table(head, rows), f"<p class='rule'>{esc(NOT_STARTED_RULE)}</p>"]


def _tests_html(report: dict) -> list[str]:
    """Suspects, the per-test table, and the most common failure messages per test."""
    esc = html.escape

    def hidden(t: dict) -> str:
        return " (hidden)" if t["hidden"] else ""

    parts = ["<h2>Suspect tests</h2>"]
    rows = [f"<tr><td>{esc(s['component'])}</td><td><code>{esc(s['test'])}</code>{hidden(s)}</td>"
            f"<td class='flag'>{esc(s['reason'])}</td></tr>" for s in report["suspects"]]  # fmt: skip
    parts.append(_table(["component", "test", "why"], rows) if rows else "<p>None.</p>")
    parts.append(f"<p class='rule'>{esc(SUSPECT_RULE)}</p>")
    rows = [f"<tr><td>{esc(t['component'])}</td><td><code>{esc(t['test'])}</code></td>"
            f"<td>{esc(t['category'])}</td><td>{'hidden' if t['hidden'] else 'public'}</td>"
            f"<td class='n'>{_num(t['points'])}</td><td class='n'>{t['passed']}/{t['started']}</td>"
            f"<td class='n'>{_pct(t['pass_rate'])}</td><td class='n'>{_corr(t['discrimination'])}</td>"
            f"<td class='flag'>{'yes' if t['flags'] else ''}</td></tr>" for t in report["tests"]]  # fmt: skip
    head = ["component", "test", "category", "visibility", "points", "passed / started", "pass rate",
            "discrimination", "suspect"]  # fmt: skip
    parts += ["<h2>Tests</h2>", _table(head, rows), f"<p class='rule'>{esc(DISCRIMINATION_RULE)}</p>",
              "<h2>Most common failure messages</h2><p>Among the submissions that started the component; "
              "numbers, hex addresses, file paths and line numbers folded to placeholders.</p>"]  # fmt: skip
    failing = [t for t in report["tests"] if t["messages"]]
    for t in failing:
        rows = [f"<tr><td class='msg'>{esc(m['message'])}</td><td class='n'>{m['count']}</td>"
                f"<td>{esc(', '.join(m['submissions']))}</td></tr>" for m in t["messages"]]  # fmt: skip
        parts.append(f"<h3>{esc(t['component'])} · <code>{esc(t['test'])}</code>{hidden(t)}: "
                     f"{t['failures']} failure(s)</h3>")  # fmt: skip
        parts.append(_table(["message", "count", "submissions"], rows))
    if not failing:
        parts.append("<p>No failure among started submissions.</p>")
    return parts


def render_html(report: dict, subs: list[Submission], out_dir: Path) -> str:
    """``class-report.html`` from :func:`analyse`'s ``report``: no script; every string a submission made
    escaped."""
    esc = html.escape
    head = [
        f"<!doctype html><html><head><meta charset='utf-8'><title>CA15 class report</title>"
        f"<style>{STYLE}</style></head><body>",
        f"<p class='staff'>{esc(STAFF_ONLY)} Do not share with students.</p>",
        f"<h1>CA15 class report</h1><p>From <code>{esc(str(out_dir))}</code>: {report['submissions']} "
        f"submission(s), {report['analysed']} analysed.</p><p class='rule'>{esc(ANALYSED_RULE)}</p>",
    ]
    body = _overview_html(report, subs) + _components_html(report) + _tests_html(report)
    return "".join(head + body) + "</body></html>\n"


# ---------------------------------------------------------------------------------------------- files
def _write_atomic(path: Path, text: str) -> None:
    tmp = path.parent / f".{path.name}.partial"
    tmp.write_text(text, encoding="utf-8", errors="backslashreplace")
    os.replace(tmp, path)


def write_class_report(out_dir: Path) -> tuple[Path, Path]:
    """Write ``out_dir/class-report.json`` and ``out_dir/class-report.html`` from every ``*/results.json``
    in ``out_dir`` (each file atomically); returns their paths."""
    out_dir = Path(out_dir)
    subs = read_submissions(out_dir)
    report = analyse(subs)
    json_path, html_path = out_dir / REPORT_JSON, out_dir / REPORT_HTML
    _write_atomic(json_path, json.dumps(report, indent=2) + "\n")
    _write_atomic(html_path, render_html(report, subs, out_dir))
    return json_path, html_path


def check_out_dir(out_dir: Path) -> str | None:
    """Why ``out_dir`` is not an output folder of ``ca15-grade`` (None when it is one)."""
    expected = "expected the output folder of `ca15-grade SUB... --out OUT`"
    if not out_dir.exists():
        return f"OUT: {expected}, got {out_dir}: it does not exist"
    if not out_dir.is_dir():
        return f"OUT: {expected}, got {out_dir}: not a folder"
    if not any(out_dir.glob("[!.]*/results.json")):
        return f"OUT: {expected} (NAME/results.json per graded submission), got {out_dir}: it holds none"
    return None


def main(argv: list[str] | None = None) -> int:
    """``ca15-grade report OUT``: write the class report of an output folder and print the two paths."""
    parser = argparse.ArgumentParser(prog="ca15-grade report",
                                     description="Write OUT/class-report.json and .html (staff only).")
    parser.add_argument("out", type=Path, metavar="OUT",
                        help="the output folder of `ca15-grade SUB... --out OUT`")
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    problem = check_out_dir(args.out)
    if problem:
        print(f"ca15-grade report: {problem}", file=sys.stderr)
        return 2
    for path in write_class_report(args.out):
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
