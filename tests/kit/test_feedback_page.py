"""The student's feedback page (issue 25): one document rendered twice, a summary first, failures collapsed."""

from __future__ import annotations

import html
import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from grader.pipeline.feedback import _cut, feedback_document, render_html, render_markdown

TODO = "not started: {name}: return the {what} (skeleton/utils/{file}.py:{line})"


def _test(component: str, i: int, outcome: str, message: str = "", hidden: bool = False, points: int = 1) -> dict:
    return {"nodeid": f"tests/components/test_{component.lower()}.py::test_{component.lower()}_{i}",
            "component": component, "category": "shape", "points": points, "hidden": hidden,
            "score": points if outcome == "passed" else 0, "outcome": outcome, "message": message,
            "doc": f"Checks `{component}` case {i}, a summary sentence long enough to wrap in the source."}  # fmt: skip


def _scored(tests: list[dict], notebook: dict | None, notebook_points: int = 5) -> dict:
    cats = {"shape": {"score": sum(t["score"] for t in tests), "max_score": sum(t["points"] for t in tests)}}
    nb_score = notebook_points if notebook and notebook.get("ran") and not notebook.get("errors") else 0
    return {"tests": tests, "components": {}, "categories": cats, "notebook": notebook, "notebook_score": nb_score,
            "score": cats["shape"]["score"] + nb_score,
            "max_score": cats["shape"]["max_score"] + (notebook_points if notebook is not None else 0)}  # fmt: skip


def _every_status() -> dict:
    """Five components, one per status, a failed hidden test, and a notebook cell that raised."""
    tests = [_test("Full", 1, "passed"), _test("Full", 2, "passed"), _test("Full", 3, "passed", hidden=True),
             _test("Part", 1, "passed"), _test("Part", 2, "failed", "E   assert 3 == 4\nE    + where 3 = f(1)"),
             _test("Part", 3, "failed", hidden=True),
             _test("Todo", 1, "failed", TODO.format(name="f", what="sum", file="a", line=12)),
             _test("Todo", 2, "failed", TODO.format(name="g", what="mean", file="a", line=30)),
             _test("Crash", 1, "passed"), _test("Crash", 2, "not run", "this test never reported a result"),
             _test("Wrong", 1, "failed", "E   ValueError: shape (3,) vs (3, 1)")]  # fmt: skip
    nb = {"ran": True, "cells": 12, "errors": [{"cell": 4, "ename": "ValueError", "evalue": "bad shape"}]}
    return _scored(tests, nb)


def _text(page: str) -> str:
    """The page's text: table cells joined by ' | ', one line per row or block element, tags dropped."""
    page = re.sub(r"\s*\n\s*(?=<t[dh])", "", page)
    page = re.sub(r"</t[dh]>", " | ", page)
    page = re.sub(r"</(tr|p|h\d|li|summary|pre|div)>|<br>", "\n", page)
    return html.unescape(re.sub(r"<[^>]+>", "", page))


def _facts(text: str) -> dict:
    """Score, notebook, component rows, failed tests, unstarted TODOs, hidden failures and notes of a rendering."""
    text = text.replace("\\", "")  # Markdown's escapes
    rows = re.findall(r"^\|? ?(\w+) \| (full|partial|not started|crashed|failing) \| (\d+/\d+) \| (\d+/\d+) \| "
                      r"(\d+/\d+) \|", text, re.M)  # fmt: skip
    return {
        "score": re.findall(r"Score: (\d+) / (\d+)", text),
        "notebook": re.findall(r"Notebook: (\d+) / (\d+)\** \(([^)]*)\)", text),
        "rows": sorted(rows),
        "failed": sorted(re.findall(r"`?(test_\w+)`? \((\w+), 0/(\d+)\)", text)),
        "todo": sorted(re.findall(r"the first at `?([\w/.]+:\d+)`? \(([^)]*)\)", text)),
        "hidden": re.findall(r"(\d+) hidden test\(s\) failed", text),
        "notes": sorted(re.findall(r"^\s*-? ?(NOTE \d)", text, re.M)),
        "cells": re.findall(r"Cell (\d+): (\w+): ([^\n]*)", text),
    }


def test_markdown_and_html_state_the_same_facts() -> None:
    """feedback.md and feedback.html give the same score, notebook, rows, failures, TODOs, hidden count and notes."""
    scored, notes = _every_status(), ["NOTE 1", "NOTE 2"]
    md, page = _facts(render_markdown("alice", scored, notes)), _facts(_text(render_html("alice", scored, notes)))
    assert md == page
    assert md["score"] == [("5", "16")] and md["notebook"] == [("0", "5", "1 cell raised an error")]
    assert md["hidden"] == ["1"] and md["notes"] == ["NOTE 1", "NOTE 2"] and md["cells"]
    assert len(md["rows"]) == 5 and md["todo"] == [("skeleton/utils/a.py:12", "f: return the sum")]


def test_each_component_gets_its_status() -> None:
    """Full, partial, not started (every public failure a TODO), crashed (a test that never reported), failing."""
    doc = feedback_document("alice", _every_status(), [])
    assert {c["name"]: c["status"] for c in doc["components"]} == {
        "Crash": "crashed", "Full": "full", "Part": "partial", "Todo": "not started", "Wrong": "failing"}


def test_a_component_not_started_is_one_line() -> None:
    """An unstarted component shows its first TODO once, not one entry per test."""
    md = render_markdown("alice", _every_status(), [])
    page = render_html("alice", _every_status(), [])
    for text in (md, page):
        assert "test_todo_1" not in text and "test_todo_2" not in text
        assert text.count("skeleton/utils/a.py:12") == 1


def test_the_status_is_a_word_and_a_colour() -> None:
    """Each status badge carries the word (readable without colour) and a class that colours it."""
    page = render_html("alice", _every_status(), [])
    for status in ("full", "partial", "not started", "crashed", "failing"):
        assert f'<span class="status {status.replace(" ", "-")}">{status}</span>' in page


def test_failures_are_collapsed_and_code_is_code() -> None:
    """A component's failures sit in a closed <details>; backtick spans of docs and hints become <code>."""
    page = render_html("alice", _every_status(), [])
    assert "<details class=\"component\"><summary>Part:" in page and "<details open" not in page
    assert "<code>Part</code>" in page and "`Part`" not in page


def test_a_long_message_is_cut_at_a_line_boundary() -> None:
    """A message over the limit keeps its end from a line start, and the cut is flagged (failures.txt has it)."""
    message = "\n".join(f"line {i} " + "word " * 8 for i in range(100))
    kept, cut = _cut(message, 500)
    assert cut and len(kept) <= 500 and kept.startswith("line ") and kept.endswith("word")
    assert _cut("short\nmessage", 500) == ("short\nmessage", False)


def test_submission_text_stays_inert_on_the_page() -> None:
    """A message, a note and a name holding HTML reach the page escaped."""
    tests = [_test("Part", 1, "failed", "<script>alert(1)</script>")]
    page = render_html("<img src=x onerror=alert(1)>", _scored(tests, None), ["<b>note</b>"])
    assert "<script>" not in page and "<img src=x" not in page and "<b>note</b>" not in page


# --------------------------------------------------------------------------------------- in a real browser
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
WIDTH, SCREEN = 1280, 1000
MEASURE = """<script>
const all = [...document.querySelectorAll('body *')];
const widest = Math.max(...all.map(e => e.getBoundingClientRect().right));
document.body.setAttribute('data-measure', JSON.stringify({
  summaryBottom: document.getElementById('summary').getBoundingClientRect().bottom,
  height: document.documentElement.scrollHeight, scrollWidth: document.documentElement.scrollWidth,
  width: document.documentElement.clientWidth, widest: widest}));
</script></body>"""


def _four_done() -> dict:
    """A submission of 15 components of about 18 tests: four finished, one half done, ten not started."""
    tests = []
    for c in range(15):
        name = f"Component{c:02d}"
        for i in range(18):
            if c < 4:
                tests.append(_test(name, i, "passed", points=1 + i % 3))
            elif c == 4:
                message = "E   AssertionError: " + "values differ at index 3 " * 40 if i % 2 else ""
                tests.append(_test(name, i, "failed" if i % 2 else "passed", message, points=1 + i % 3))
            else:
                todo = TODO.format(name=f"f{c}", what="thing", file=f"m{c}", line=10 + c)
                tests.append(_test(name, i, "failed", todo, points=1 + i % 3))
        tests.append(_test(name, 99, "failed" if c >= 4 else "passed", hidden=True))
    return _scored(tests, {"ran": True, "cells": 30, "errors": [{"cell": 9, "ename": "NotImplementedError",
                                                                 "evalue": "f5: return the thing"}]})  # fmt: skip


@pytest.mark.skipif(CHROMIUM is None, reason="needs Debian's chromium (`apt-get install chromium`; .ci/run installs it "
                    "where apt works) to render the page in a real browser")  # fmt: skip
def test_page_of_a_four_components_submission_fits_in_a_browser(tmp_path: Path) -> None:
    """In headless Chromium at 1280 px: the summary ends in the first 1000 px, nothing is wider than the page,
    and the page (every component collapsed) is under 4 screens long."""
    page = tmp_path / "feedback.html"
    page.write_text(render_html("alice", _four_done(), ["Graded."]))
    shot = tmp_path / "feedback.png"
    base = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
            f"--window-size={WIDTH},{SCREEN}"]  # fmt: skip
    subprocess.run([*base, f"--screenshot={shot}", page.as_uri()], capture_output=True, timeout=120, check=True)
    assert shot.read_bytes()[:4] == b"\x89PNG"
    measured = tmp_path / "measured.html"
    measured.write_text(page.read_text().replace("</body>", MEASURE))
    dom = subprocess.run([*base, "--dump-dom", measured.as_uri()], capture_output=True, text=True, timeout=120,
                         check=True).stdout  # fmt: skip
    m = json.loads(html.unescape(re.search(r'data-measure="([^"]*)"', dom).group(1)))
    assert m["summaryBottom"] <= SCREEN, m
    assert m["scrollWidth"] <= m["width"] and m["widest"] <= m["width"], m
    assert m["height"] < 4 * SCREEN, m
