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
    ``make test`` shows them (``grader.student.dashboard``: public tests passed/total and points, hidden points)::

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


def failures_text(scored: dict) -> str:
    """Every failed public test's whole message (as the judge recorded it), for ``failures.txt``."""
    parts = []
    for t in scored["tests"]:
        if t["outcome"] != "passed" and not t["hidden"]:
            parts += [f"===== {t['nodeid']} ({t['component']}, {t['category']}, 0/{t['points']})",
                      (t.get("message") or "(no message)").rstrip(), ""]  # fmt: skip
    return "\n".join(parts) + "\n" if parts else "Every public test passed.\n"


# ----------------------------------------------------------------------------- one document, two renderings
#: A component's status, from its tests: every point earned; some; none because every public failure is a
#: TODO not done yet; a test process that stopped (crash, time or memory limit) under a public test; or none.
STATUSES = ("full", "partial", "not started", "crashed", "failing")
_NOT_STARTED = re.compile(r"^not started: (?P<todo>.*) \((?P<where>[^()]*:\d+)\)$", re.S)


def _component_status(sub: dict, failed: list[dict]) -> str:
    if sub["score"] == sub["max_score"]:
        return "full"
    if any(t["outcome"] == "not run" or "WorkerLost" in (t.get("message") or "") for t in failed):
        return "crashed"
    todo = failed and all(t.get("message", "").startswith("not started: ") or "NotImplementedError" in
                          t.get("message", "") for t in failed)  # fmt: skip
    if todo and sub["score"] == 0:
        return "not started"
    return "partial" if sub["score"] > 0 else "failing"


def _todo_line(failed: list[dict]) -> dict:
    """Where an unstarted component's first TODO is, and its first line (from the judge's --fast-todo report)."""
    for t in failed:
        m = _NOT_STARTED.match((t.get("message") or "").strip())
        if m:
            return {"where": m["where"], "todo": m["todo"].strip().splitlines()[0] if m["todo"].strip() else ""}
    return {"where": "", "todo": ""}


def _cut(message: str, limit: int) -> tuple[str, bool]:
    """The end of a traceback (where the assertion message is), at most ``limit`` characters, starting at a
    line (or else a word) boundary; and whether anything was cut."""
    message = re.sub(r"\n{3,}", "\n\n", message.strip())
    if len(message) <= limit:
        return message, False
    tail = message[-limit:]
    for sep in ("\n", " "):
        i = tail.find(sep)
        if 0 <= i < limit // 2:
            return tail[i + 1 :], True
    return tail, True


def feedback_document(name: str, scored: dict, notes: list[str], limit: int = MESSAGE_LIMITS[0]) -> dict:
    """The facts of one submission's feedback, as data, which :func:`render_markdown` and :func:`render_html`
    both render (so the two can never disagree): score, notebook, notes, one entry per component (status,
    public and hidden subtotals, its failed public tests or, when it is not started, the first TODO), the
    categories and the number of failed hidden tests. Failure messages are cut to ``limit`` characters."""
    split = component_split(scored)
    components = []
    for comp, sub in split.items():
        failed = [t for t in scored["tests"] if t["component"] == comp and not t["hidden"] and t["outcome"] != "passed"]
        status = _component_status(sub, failed)
        failures = []
        for t in failed:
            message, cut = _cut(t.get("message") or "", limit) if limit else ("", bool(t.get("message")))
            failures.append({
                "test": t["nodeid"].split("::", 1)[-1], "category": t["category"], "points": t["points"],
                "doc": t.get("doc") or "", "hint": _hint(t), "message": message, "cut": cut,
                "curve": f"curves/{_curve_name(t)}" if t.get("curves") else "",
            })  # fmt: skip
        components.append({"name": comp, "status": status, "score": sub["score"], "max_score": sub["max_score"],
                           "public": sub["public"], "hidden": sub["hidden"], "failures": failures,
                           **({"first_todo": _todo_line(failed)} if status == "not started" else {})})  # fmt: skip
    nb = scored.get("notebook")
    tests_max = sum(t["points"] for t in scored["tests"])
    return {
        "name": name,
        "score": scored["score"],
        "max_score": scored["max_score"],
        "notes": list(notes),
        "notebook": None if nb is None else {"score": scored["notebook_score"],
                                             "max_score": scored["max_score"] - tests_max, "text": notebook_text(nb),
                                             "summary": notebook_summary(nb)},
        "components": components,
        "categories": [{"name": c, **sub} for c, sub in scored["categories"].items() if sub["max_score"]],
        "hidden_failed": sum(1 for t in scored["tests"] if t["outcome"] != "passed" and t["hidden"]),
        "limit": limit,
    }  # fmt: skip


def render_markdown(name: str, scored: dict, notes: list[str]) -> str:
    """The Markdown feedback report of one submission (under 100 KB; whole messages go to failures.txt)."""
    return _fitting(lambda limit: _render("feedback.md.j2", feedback_document(name, scored, notes, limit)))


def render_html(name: str, scored: dict, notes: list[str]) -> str:
    """The HTML feedback page: the summary first (score, notebook, one row per component with its status in
    colour and in words), then each component's failures collapsed (``<details>``); no scripts; under 100 KB."""
    return _fitting(lambda limit: _render("feedback.html.j2", feedback_document(name, scored, notes, limit)))


_ENV = None


def _code_spans(text: str) -> str:
    """HTML of text whose ``backtick`` spans are code: escaped first, then the spans become ``<code>``."""
    from markupsafe import Markup

    return Markup(re.sub(r"`([^`]+)`", r"<code>\1</code>", html.escape(str(text))))


def _md_code_spans(text: str) -> str:
    """Markdown of text whose ``backtick`` spans stay code spans; everything else escaped (:func:`md_text`)."""
    parts = re.split(r"(`[^`]+`)", " ".join(str(text).split()))
    return "".join(p if p.startswith("`") and p.endswith("`") and len(p) > 1 else _MD_SPECIAL.sub(r"\\\1", p)
                   for p in parts)


def notebook_summary(nb: dict) -> str:
    """The notebook's credit in a few words, for the summary line (the details are :func:`notebook_text`)."""
    if not nb or not nb.get("ran"):
        return (nb or {}).get("why", "The notebook was not executed.").strip().splitlines()[0]
    parts = [f"{len(nb[k])} {noun}{'' if len(nb[k]) == 1 else 's'} {what}"
             for k, noun, what in (("missing", "assignment cell", "missing"), ("not_run", "cell", "did not run"),
                                   ("errors", "cell", "raised an error")) if nb.get(k)]  # fmt: skip
    return ", ".join(parts) or f"all {nb.get('cells', 0)} code cells ran"


def _render(template: str, doc: dict) -> str:
    global _ENV
    if _ENV is None:
        import jinja2

        _ENV = jinja2.Environment(
            loader=jinja2.PackageLoader("grader.pipeline", "templates"), autoescape=jinja2.select_autoescape(["html.j2"]),
            trim_blocks=True, lstrip_blocks=True, keep_trailing_newline=True, undefined=jinja2.StrictUndefined,
        )  # fmt: skip
        _ENV.filters.update(md=md_text, mdcode=_md_code_spans, block=lambda text: "\n".join(md_block(text)),
                            code=_code_spans)
    return _ENV.get_template(template).render(**doc)


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
