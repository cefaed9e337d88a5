"""pytest plugin of the grader: reports every test's outcome over the signed pipe of ``grader.judge.sandbox``.

Loaded with ``-p grader.judge.pytest_report`` in the sandboxed test run. At import (before any submission code
runs) it takes ``CA15_REPORT_FD`` and ``CA15_REPORT_KEY`` out of the environment and marks the pipe
close-on-exec, so that neither a subprocess of the submission nor ``os.environ`` can reach them.

Threat model: the report cannot be forged by what a submission prints, writes into files or returns as
exit code; a submission that deliberately inspects this process's memory could, which the course's
academic-integrity rules (and the plagiarism review of code that imports ``grader``) cover.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from grader.sandboxed.channel import child_channel


_emit = child_channel()
MESSAGE_LIMIT = 6000


def _meta(item: pytest.Item) -> dict:
    props = dict(item.user_properties)
    parts = Path(str(item.fspath)).parts
    return {
        "nodeid": item.nodeid,
        "component": props.get("component"),
        "category": props.get("category"),
        "points": props.get("points", 0),
        "hidden": "hidden" in parts,
        "doc": _summary(getattr(getattr(item, "function", None), "__doc__", None)),
    }


def _summary(doc: str | None) -> str:
    """A docstring's first paragraph on one line (a summary sentence may wrap over several lines)."""
    paragraph = (doc or "").strip().split("\n\n", 1)[0]
    return " ".join(paragraph.split())


@pytest.hookimpl(trylast=True)
def pytest_collection_finish(session: pytest.Session) -> None:
    if _emit is not None:
        _emit({"type": "collected", "tests": [_meta(i) for i in session.items]})


_phases: dict[str, dict] = {}


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    if _emit is None:
        return
    state = _phases.setdefault(report.nodeid, {"outcome": "passed", "duration": 0.0, "message": ""})
    state["duration"] += report.duration
    if report.failed and state["outcome"] != "failed":
        state["outcome"] = "failed"
        text = report.longreprtext or ""
        state["message"] = text if len(text) <= MESSAGE_LIMIT else "...\n" + text[-MESSAGE_LIMIT:]
        state["phase"] = report.when
    elif report.skipped and state["outcome"] == "passed":
        state["outcome"] = "skipped"
        state["message"] = str(report.longrepr[-1]) if isinstance(report.longrepr, tuple) else ""
    if report.when == "teardown":
        state = _phases.pop(report.nodeid)
        curves = [value for key, value in report.user_properties if key == "curve"]
        if curves:
            state["curves"] = curves[:8]
        _emit({"type": "test", "nodeid": report.nodeid, **state})


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if _emit is not None:
        _emit({"type": "finished", "exitstatus": int(exitstatus)})
