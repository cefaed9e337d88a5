"""Feedback reports for students: per-component tables and failure messages (Markdown and HTML).

Hidden tests appear only as counts in the tables: their names and messages are never shown.
"""

from __future__ import annotations

import html
import io
import re

_TODO_HINT = "This still calls a `raise NotImplementedError(...)` TODO: fill in the part it names."
HINTS = {
    "not run": "The test never reported: the test process stopped first (crash, exit, time or memory limit).",
    "NotImplementedError": _TODO_HINT,
    "not started: ": _TODO_HINT,  # the judge's --fast-todo report of a NotImplementedError
    "Timeout": "The test ran past its time limit: look for an infinite loop or far too much work per call.",
    "MemoryError": "The code ran out of memory: look for tensors that grow without bound.",
}


def _hint(test: dict) -> str:
    if test["outcome"] == "not run":
        return HINTS["not run"]
    for key, text in HINTS.items():
        if key in test.get("message", ""):
            return text
    return ""


#: C0 controls except tab and newline, DEL, and the C1 controls: a terminal or a pager acts on them (ESC
#: sequences clear the screen, OSC 52 writes the clipboard, BEL rings), so submission text never keeps them.
_CONTROLS = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def inert(text: object) -> str:
    """Submission text (a message, an output, a file name) made safe to store and show: control characters
    become ``\\xNN`` escapes, and a lone surrogate (which no UTF-8 file can hold) becomes ``\\udNNN``."""
    text = str(text)
    text = text.encode("utf-8", "backslashreplace").decode("utf-8")
    return _CONTROLS.sub(lambda m: f"\\x{ord(m.group()):02x}", text)


def inert_tree(value: object) -> object:
    """:func:`inert` on every string inside lists and dicts (keys included); other values unchanged."""
    if isinstance(value, str):
        return inert(value)
    if isinstance(value, list):
        return [inert_tree(v) for v in value]
    if isinstance(value, dict):
        return {inert(k) if isinstance(k, str) else k: inert_tree(v) for k, v in value.items()}
    return value


_MD_SPECIAL = re.compile(r"([\\`*_{}\[\]()<>#+\-.!|~])")


def md_text(text: str, limit: int = 2000) -> str:
    """Text from a submission (a message, a cell's line, a file name) as inert Markdown: every character
    that Markdown or HTML would interpret is escaped, line breaks become spaces, at most ``limit`` chars."""
    text = " ".join(str(text).split())
    text = text if len(text) <= limit else text[:limit] + "..."
    return _MD_SPECIAL.sub(r"\\\1", text)


def md_block(text: str) -> list[str]:
    """Lines of a fenced code block that ``text`` cannot close: the fence is longer than any backtick run in it."""
    longest = max((len(run) for run in re.findall(r"`+", text)), default=0)
    fence = "`" * max(3, longest + 1)
    return [fence + "text", text, fence]


#: feedback.md and feedback.html stay under this size: failure messages are cut shorter (down to none, their
#: place taken by a pointer to failures.txt) until the report fits.
REPORT_BYTES = 95_000
MESSAGE_LIMITS = (2500, 1200, 600, 300, 150, 0)


def _fitting(render) -> str:
    """``render(limit)`` with the longest message limit of :data:`MESSAGE_LIMITS` that fits the report size."""
    for limit in MESSAGE_LIMITS:
        text = render(limit)
        if len(text.encode()) <= REPORT_BYTES:
            return text
    return text


def _short(message: str, limit: int = 2500) -> str:
    """The end of a traceback (where the assertion message is), at most ``limit`` characters."""
    message = re.sub(r"\n{3,}", "\n\n", message.strip())
    return message if len(message) <= limit else "...\n" + message[-limit:]


def curve_png(test: dict) -> bytes | None:
    """A PNG of a failed test's recorded learning curves against their thresholds (None without curves)."""
    curves = test.get("curves") or []
    if not curves:
        return None
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6, 3.2), dpi=100)
    ax = fig.add_subplot()
    for i, c in enumerate(curves):
        line = ax.plot(range(1, len(c["values"]) + 1), c["values"], label=c["name"])[0]
        if c.get("threshold") is not None:
            ax.axhline(c["threshold"], color=line.get_color(), linestyle="--", linewidth=1,
                       label="threshold" if i == 0 else None)  # fmt: skip
    ax.set_xlabel(curves[0].get("xlabel") or "")
    ax.set_ylabel(curves[0].get("ylabel") or "")
    ax.set_title(test["nodeid"].split("::", 1)[-1][:70], fontsize=9)
    ax.legend(fontsize=7)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    return buffer.getvalue()


def _curve_name(test: dict) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", test["nodeid"].split("::", 1)[-1])[:80] + ".png"


def component_split(scored: dict) -> dict[str, dict]:
    """Per component of :func:`score`'s tests: the public and the hidden subtotals apart, as the release's
    ``make test`` shows them (``grader.dashboard``: public tests passed/total and points, hidden points)::

        {"DynamicsModel": {"score": 5, "max_score": 17,
                           "public": {"passed": 4, "tests": 12, "score": 5, "max_score": 16},
                           "hidden": {"passed": 0, "tests": 1, "score": 0, "max_score": 1}}, ...}
    """
    split: dict[str, dict] = {}
    for t in scored["tests"]:
        comp = split.setdefault(t["component"], {
            "score": 0, "max_score": 0, **{k: {"passed": 0, "tests": 0, "score": 0, "max_score": 0}
                                           for k in ("public", "hidden")}})  # fmt: skip
        part = comp["hidden" if t["hidden"] else "public"]
        for row in (comp, part):
            row["score"] += t["score"]
            row["max_score"] += t["points"]
        part["tests"] += 1
        part["passed"] += t["outcome"] == "passed"
    return dict(sorted(split.items()))


def write_curves(scored: dict, folder) -> None:
    """Save the curve plots of failed visible tests as ``folder/curves/<test>.png`` (linked from Markdown)."""
    from pathlib import Path

    for t in scored["tests"]:
        if t["outcome"] != "passed" and not t["hidden"]:
            png = curve_png(t)
            if png:
                (Path(folder) / "curves").mkdir(exist_ok=True)
                (Path(folder) / "curves" / _curve_name(t)).write_bytes(png)


def render_markdown(name: str, scored: dict, notes: list[str]) -> str:
    """The Markdown feedback report of one submission (under 100 KB; whole messages go to failures.txt)."""
    return _fitting(lambda limit: _markdown(name, scored, notes, limit))


def _markdown(name: str, scored: dict, notes: list[str], limit: int) -> str:
    out = [f"# CA15 feedback: {name}", "", f"**Score: {scored['score']} / {scored['max_score']}**", ""]
    if notes:
        out += ["## Notes", ""] + [f"- {md_text(n)}" for n in notes] + [""]
    out += ["## Components", "", "| component | public tests passed | public points | hidden points |", "|---|---|---|---|"]
    for comp, sub in component_split(scored).items():
        pub, hid = sub["public"], sub["hidden"]
        out.append(f"| {comp} | {pub['passed']}/{pub['tests']} | {pub['score']}/{pub['max_score']} | "
                   f"{hid['score']}/{hid['max_score']} |")  # fmt: skip
    out += ["", "## Categories", "", "| category | points |", "|---|---|"]
    for cat, sub in scored["categories"].items():
        if sub["max_score"]:
            out.append(f"| {cat} | {sub['score']}/{sub['max_score']} |")
    nb = scored.get("notebook")
    if nb is not None:
        out += ["", "## Notebook", "", f"{scored['notebook_score']} points.", "", *md_block(notebook_text(nb))]
    failed = [t for t in scored["tests"] if t["outcome"] != "passed" and not t["hidden"]]
    hidden_failed = sum(1 for t in scored["tests"] if t["outcome"] != "passed" and t["hidden"])
    if failed or hidden_failed:
        out += ["", "## What failed", ""]
    if any(len(t.get("message") or "") > limit for t in failed):
        cut = f"cut to its last {limit} characters" if limit else "left out (there are many)"
        out += [f"Each message below is {cut}; `failures.txt` beside this file has them whole.", ""]
    for t in failed:
        out += [f"### {t['component']} · {t['category']} · `{t['nodeid'].split('::', 1)[-1]}` (0/{t['points']})", ""]
        if t.get("doc"):
            out += [f"*Checks:* {t['doc']}", ""]
        hint = _hint(t)
        if hint:
            out += [f"*Hint:* {hint}", ""]
        if t.get("curves"):
            out += [f"![learning curve](curves/{_curve_name(t)})", ""]
        if t.get("message") and limit:
            out += [*md_block(_short(t["message"], limit)), ""]
    if hidden_failed:
        out += [f"{hidden_failed} hidden test(s) failed; they check the same components as the public ones.", ""]
    return "\n".join(out) + "\n"


def failures_text(scored: dict) -> str:
    """Every failed public test's whole message (as the judge recorded it), for ``failures.txt``."""
    parts = []
    for t in scored["tests"]:
        if t["outcome"] != "passed" and not t["hidden"]:
            parts += [f"===== {t['nodeid']} ({t['component']}, {t['category']}, 0/{t['points']})",
                      (t.get("message") or "(no message)").rstrip(), ""]  # fmt: skip
    return "\n".join(parts) + "\n" if parts else "Every public test passed.\n"


def render_html(name: str, scored: dict, notes: list[str]) -> str:
    """The HTML feedback report (tables, preformatted messages, learning curves from ``curves/``; no scripts;
    under 100 KB)."""
    return _fitting(lambda limit: _html(name, scored, notes, limit))


def _html(name: str, scored: dict, notes: list[str], limit: int) -> str:
    esc = html.escape
    rows = "".join(
        f"<tr><td>{esc(c)}</td><td>{s['public']['passed']}/{s['public']['tests']}</td>"
        f"<td>{s['public']['score']}/{s['public']['max_score']}</td><td>{s['hidden']['score']}/{s['hidden']['max_score']}</td></tr>"
        for c, s in component_split(scored).items()
    )
    cats = "".join(
        f"<tr><td>{esc(c)}</td><td>{s['score']}/{s['max_score']}</td></tr>"
        for c, s in scored["categories"].items()
        if s["max_score"]
    )
    failures = []
    for t in scored["tests"]:
        if t["outcome"] == "passed" or t["hidden"]:
            continue
        hint = _hint(t)
        figure = f"<img alt='learning curve' src='curves/{esc(_curve_name(t))}'>" if t.get("curves") else ""
        failures.append(
            f"<h3>{esc(t['component'])} · {esc(t['category'])} · <code>{esc(t['nodeid'].split('::', 1)[-1])}</code>"
            f" (0/{t['points']})</h3>"
            + (f"<p><em>Checks:</em> {esc(t['doc'])}</p>" if t.get("doc") else "")
            + (f"<p><em>Hint:</em> {esc(hint)}</p>" if hint else "")
            + figure
            + (f"<pre>{esc(_short(t['message'], limit))}</pre>" if t.get("message") and limit else "")
        )
    note_html = "".join(f"<li>{esc(n)}</li>" for n in notes)
    return (
        "<!doctype html><html><head><meta charset='utf-8'><title>CA15 feedback</title>"
        "<style>body{font-family:sans-serif;max-width:60em;margin:auto}table{border-collapse:collapse}"
        "td,th{border:1px solid #ccc;padding:2px 8px}pre{background:#f6f6f6;padding:8px;overflow-x:auto}</style>"
        f"</head><body><h1>CA15 feedback: {esc(name)}</h1><p><b>Score: {scored['score']} / {scored['max_score']}</b></p>"
        + (f"<h2>Notes</h2><ul>{note_html}</ul>" if notes else "")
        + f"<h2>Components</h2><table><tr><th>component</th><th>public tests passed</th><th>public points</th><th>hidden points</th></tr>{rows}</table>"
        + f"<h2>Categories</h2><table><tr><th>category</th><th>points</th></tr>{cats}</table>"
        + ("<h2>What failed</h2>" + "".join(failures) if failures else "")
        + "</body></html>\n"
    )


def notebook_text(nb: dict) -> str:
    """The notebook's credit in words: why it did not run, or which cells are missing, did not run or raised."""
    if not nb or not nb.get("ran"):
        return (nb or {}).get("why", "The notebook was not executed.")
    parts = []
    if nb.get("missing"):
        parts.append(f"{len(nb['missing'])} of the assignment's code cells are missing (cell ids: "
                     f"{', '.join(nb['missing'][:10])}); keep the cells of CA15.ipynb, add your own around them.")  # fmt: skip
    if nb.get("not_run"):
        parts.append("These cells did not run: " + "; ".join(nb["not_run"][:10]))
    if nb.get("errors"):
        parts.append("These cells raised errors:\n" + "\n".join(f"Cell {e['cell']}: {e['ename']}: {e['evalue']}"
                                                             for e in nb["errors"]))  # fmt: skip
    return "\n".join(parts) or f"All {nb.get('cells', 0)} code cells ran without an error."
