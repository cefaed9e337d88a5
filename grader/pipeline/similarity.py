"""Similarity of submissions, per component: evidence for a human, never a penalty (issue 24, item 3).

    ca15-grade similarity OUT [--against PAST] [--submissions SUB...] [--top N]
    ca15-grade SUB... --out OUT --similarity          (the same, at the end of the batch)

writes ``OUT/similarity.html`` (per component the most similar pairs, side by side, the matching code
highlighted) and ``OUT/similarity.csv`` (every pair that shares any code). Staff only.

**What is compared: what the students wrote, and nothing else.**

- *Python.* The handout is the skeleton the kit generates from ``reference/``
  (:func:`grader.authoring.generate.strip_source`): each solution region is one ``raise NotImplementedError(...)``
  line there. A submitted file is compared with its skeleton file statement by statement
  (:func:`extract_file`: the two syntax trees, block by block, aligned with :class:`difflib.SequenceMatcher`);
  every statement the skeleton does not hold is student-written, and belongs to the region of the function
  around it, else to the nearest region (the component is that region's:
  ``grader.authoring.charged_once.component_of``). Handout code is never compared, even reformatted, re-commented or
  moved elsewhere in the file. A file that does not parse is compared line by line instead.
- *Notebook.* The code cells of the submitted notebook that are not, verbatim (stripped), a code cell of the
  released ``notebooks/CA15.ipynb``; they form one more component, ``notebook``.
- At grading time ``grader.pipeline.grade._grade_one`` saves this, staff only, as ``OUT/<name>/student-code.json``
  (:func:`save_student_code`; a failure is written into the file and never costs the grading). A folder
  graded before that existed is read from the submissions themselves (``--submissions SUB...``).
- ``--against PAST`` adds earlier terms' submissions (a ``ca15-grade`` output folder, or a folder of
  submission folders and zips): each current submission is compared with each of them too, never two past
  ones with each other.

**How: copydetect** (https://github.com/blingenf/copydetect; winnowing, Schleimer, Wilkerson & Aiken 2003),
through its Python API: :class:`copydetect.CodeFingerprint` of each submission's code of a component (the
code is tokenised by Pygments, names become ``V``/``F``/``O``, strings ``S``, comments and whitespace go, so
that renamed variables, spacing and rewritten comments change nothing), with copydetect's *boilerplate*
removal fed by the handout of that component (every k-gram of its skeleton files, or of the released
notebook's code cells), and :func:`copydetect.compare_files` for each pair. The handout is thus subtracted
twice: its statements are never extracted, and a k-gram it holds never counts. Each piece of code is
compared in a canonical layout (:func:`normalise`: ``ast.unparse``), so that a reformatting (``black``
adding parentheses and line breaks) does not break copydetect's k-grams either.

For a pair (a, b), *similarity a→b* is the share of a's fingerprinted code (handout subtracted) that also
occurs in b; pairs are ranked by the larger of the two directions, then by matched tokens.
"""

from __future__ import annotations

import argparse
import ast
import copy
import csv
import difflib
import html
import io
import json
import os
import re
import sys
import tempfile
import textwrap
from dataclasses import dataclass, field
from pathlib import Path

from grader.authoring.generate import REPO, _function_spans, all_regions, strip_source

#: The per-submission file, written at grading time (staff only).
STUDENT_CODE = "student-code.json"
FORMAT = 1
#: The pseudo-component of the notebook's own code cells.
NOTEBOOK = "notebook"
NOTEBOOK_NAME = "CA15.ipynb"
HTML_NAME, CSV_NAME = "similarity.html", "similarity.csv"
#: The first words of the report, and of every student-code.json.
NOTICE = (
    "Staff only. Evidence for a human, never a penalty: a score says that two submissions share sequences of "
    "code beyond the handout, after names, strings, comments and layout are normalised away. It does not say "
    "that anyone copied, nor who from whom: short tasks with one natural solution match by themselves, and "
    "students may legitimately share ideas. Read the code side by side, and talk with the students, before "
    "concluding anything. Never grade from this report."
)
#: copydetect's noise threshold k (a match shorter than k filtered characters is never counted) and its
#: guarantee threshold t (a match of t or more is always found; the winnowing window is t - k + 1). The
#: solution regions are short (2 to 15 lines, 40 to 600 filtered characters), so k is lower than copydetect's
#: default (25): 15 is about two short statements (``V=V.V(V,V=0)`` is 12). t = k (window 1, copydetect's
#: default too) keeps every k-gram: the documents are small, and winnowing would only lose matches.
NOISE_T = 15
GUARANTEE_T = 15
#: Pairs per component shown side by side in the HTML (every pair that shares code is in the CSV).
TOP_PAIRS = 10
#: A submitted file larger than this is not read; a component's code beyond this many characters is cut.
MAX_FILE_BYTES = 2**20
MAX_COMPONENT_CHARS = 200_000
#: Past at most this many characters a side of the HTML shows only the context around the matches.
FULL_VIEW_CHARS = 20_000
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


# ------------------------------------------------------------------------------------------- the handout
@dataclass(frozen=True)
class Stub:
    """One solution region as the skeleton has it: its stub line (0-based), function and component."""

    line: int
    qualname: str
    component: str


@dataclass
class Handout:
    """What the students were given: the skeleton of every file with solution regions, and the notebook."""

    files: dict[str, str] = field(default_factory=dict)
    stubs: dict[str, list[Stub]] = field(default_factory=dict)
    notebook_cells: list[str] = field(default_factory=list)

    def given(self, component: str) -> list[str]:
        """The handout of ``component``: its skeleton files (or the notebook's code cells)."""
        if component == NOTEBOOK:
            return list(self.notebook_cells)
        return [text for path, text in self.files.items()
                if any(s.component == component for s in self.stubs[path])]  # fmt: skip

    def components(self) -> list[str]:
        return sorted({s.component for stubs in self.stubs.values() for s in stubs}) + [NOTEBOOK]


_HANDOUTS: dict[tuple, Handout] = {}


def handout(kit: Path = REPO) -> Handout:
    """The handout of ``kit``: the skeleton generated from ``kit/reference`` (as ``make skeleton`` writes it)
    and the code cells of ``kit/notebooks/CA15.ipynb``. Kept while those files are unchanged (a batch reads
    it once per submission).

    Raises:
        FileNotFoundError: the kit has no ``reference/`` (a Gradescope autograder has none).
    """
    src = Path(kit) / "reference"
    if not src.is_dir():
        raise FileNotFoundError(f"the kit at {kit} has no reference/ to find the solution regions in")
    book = Path(kit) / "notebooks" / NOTEBOOK_NAME
    key = (str(Path(kit).resolve()), *sorted((str(f), f.stat().st_mtime_ns, f.stat().st_size)
                                             for f in [*src.rglob("*.py"), book] if f.is_file()))  # fmt: skip
    if key not in _HANDOUTS:
        _HANDOUTS.clear()
        _HANDOUTS[key] = _read_handout(src, book)
    return _HANDOUTS[key]


def _read_handout(src: Path, book: Path) -> Handout:
    from grader.authoring.charged_once import component_of  # the region -> component tables (imports pytest)

    out = Handout()
    by_file: dict[str, list] = {}
    for region in all_regions(src):
        by_file.setdefault(region.path, []).append(region)
    for path, regions in by_file.items():
        out.files[path] = strip_source((src / path).read_text(encoding="utf-8"), path)
        shift, stubs = 0, []
        for region in sorted(regions, key=lambda r: r.begin):  # each region of n lines becomes 1 line
            stubs.append(Stub(region.begin - 1 - shift, region.qualname, component_of(region)))
            shift += region.end - region.begin
        out.stubs[path] = stubs
    if book.is_file():
        out.notebook_cells = _code_cells(json.loads(book.read_text(encoding="utf-8")))[1]
    return out


def _code_cells(notebook: dict) -> tuple[list[str], list[str]]:
    """(labels, sources) of a notebook's code cells."""
    cells = notebook.get("cells") if isinstance(notebook, dict) else None
    if not isinstance(cells, list):
        raise ValueError("not a notebook: no list of cells")
    labels, sources = [], []
    for index, cell in enumerate(cells):
        if not isinstance(cell, dict) or cell.get("cell_type") != "code":
            continue
        source = cell.get("source", "")
        source = "".join(s for s in source if isinstance(s, str)) if isinstance(source, list) else str(source)
        cell_id = cell.get("id")
        named = isinstance(cell_id, str) and cell_id
        labels.append(f"cell {index}" + (f" ({_oneline(cell_id, 40)})" if named else ""))
        sources.append(source)
    return labels, sources


def _oneline(text: str, width: int) -> str:
    text = re.sub(r"\s+", " ", str(text)).strip()
    return text if len(text) <= width else text[: width - 1] + "…"


# ------------------------------------------------------------------------------------------ extraction
def _nearest_stub(stubs: list[Stub], i1: int, i2: int) -> Stub:
    """The stub a change of skeleton lines [i1, i2) belongs to: one it replaced, else the nearest one."""
    inside = [s for s in stubs if i1 <= s.line < i2]
    if inside:
        return inside[0]
    return min(stubs, key=lambda s: (i1 - s.line if s.line < i1 else s.line - i2 + 1, s.line))


def _functions_of_lines(source: str, names: set[str]) -> dict[int, str]:
    """{0-based line: the innermost function around it whose qualified name is in ``names``} of ``source``
    (empty when it does not parse)."""
    try:
        lines = source.splitlines()
        spans = _function_spans(ast.parse(source), lines)
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return {}
    owner: dict[int, str] = {}
    for start, end, name in sorted(spans):  # outer first: an inner function overwrites its lines
        if name in names:
            for line in range(start - 1, end):
                owner[line] = name
    return owner


def _moved(lines: list[str], removed: list[str]) -> set[int]:
    """Indexes of ``lines`` (stripped) that are handout lines moved from their place: blocks equal to lines
    of ``removed`` (the handout lines missing where the handout has them) of at least 2 non-blank lines, or
    one line of 30 characters or more (a short line like ``return x`` may be the student's own)."""
    if not removed:
        return set()
    found: set[int] = set()
    matcher = difflib.SequenceMatcher(None, lines, removed, autojunk=False)
    for block in matcher.get_matching_blocks():
        span = range(block.a, block.a + block.size)
        text = [lines[i] for i in span if lines[i]]
        if len(text) >= 2 or (text and len(text[0]) >= 30):
            found.update(span)
    return found


def extract_lines(path: str, given: str, stubs: list[Stub], submitted: str) -> list[dict]:
    """:func:`extract_file` for a file that does not parse: every run of lines that replaces or is inserted
    into the skeleton file ``given`` (compared line by line, leading and trailing spaces ignored, so that
    re-indented handout lines stay the handout's).

    A line belongs to the region of the function around it in the submitted file (a function the student
    moved keeps its region); a line outside every region's function belongs to the region whose stub the run
    replaced, else the nearest one. Handout lines the student moved (a function put elsewhere in the file) are
    left out (:func:`_moved`). Each run: ``component``, ``region`` (the region's function), ``path``,
    ``lines`` ([first, last], 1-based, in the submitted file), ``text``."""
    a, b = given.splitlines(), submitted.splitlines()
    sa, sb = [x.strip() for x in a], [x.strip() for x in b]
    by_name = {s.qualname: s for s in stubs}
    owner = _functions_of_lines(submitted, set(by_name))
    opcodes = difflib.SequenceMatcher(None, sa, sb, autojunk=False).get_opcodes()
    removed = [sa[i] for tag, i1, i2, _, _ in opcodes if tag in ("delete", "replace") for i in range(i1, i2)]
    runs: list[dict] = []
    for tag, i1, i2, j1, j2 in opcodes:
        if tag not in ("replace", "insert") or not any(sb[j1:j2]):
            continue
        fallback = _nearest_stub(stubs, i1, i2)
        moved = {j1 + i for i in _moved(sb[j1:j2], removed)}
        pieces: list[list] = []  # [stub, first, end) per stretch of lines of one region
        for j in range(j1, j2):
            stub = None if j in moved else by_name[owner[j]] if j in owner else fallback
            if pieces and pieces[-1][0] == stub and pieces[-1][2] == j:
                pieces[-1][2] = j + 1
            elif stub is not None:
                pieces.append([stub, j, j + 1])
        for stub, first, end in pieces:
            if any(x.strip() for x in b[first:end]):
                runs.append({"component": stub.component, "region": stub.qualname, "path": path,
                             "lines": [first + 1, end], "text": "\n".join(b[first:end])})  # fmt: skip
    return runs


_BODIES = ("body", "orelse", "finalbody", "handlers", "cases")
_DEFS = (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)


def _header(node: ast.AST) -> str:
    """A compound statement without its bodies (a def's signature and decorators, a loop's header), dumped."""
    bare = copy.copy(node)
    for name in _BODIES:
        if hasattr(bare, name):
            setattr(bare, name, [])
    return ast.dump(bare)


def _new_statements(given: list, sub: list, prefix: str, owner: str, out: list) -> None:
    """Append ``(owner, statement)`` for every statement of the submitted block ``sub`` that the handout's
    block ``given`` does not hold. Blocks are aligned on their statements' ASTs (so layout, comments and
    parentheses never count); a def or class is matched by name anywhere in its block (moved is not new),
    another compound statement by its header inside the changed stretch; both are compared body by body.
    ``owner``: the qualified name of the function around the block (as :mod:`grader.authoring.generate` names it)."""
    gkeys, skeys = [ast.dump(n) for n in given], [ast.dump(n) for n in sub]
    changes = [op for op in difflib.SequenceMatcher(None, gkeys, skeys, autojunk=False).get_opcodes()
               if op[0] != "equal"]  # fmt: skip
    spare = [i for _, i1, i2, _, _ in changes for i in range(i1, i2)]
    for _, i1, i2, j1, j2 in changes:
        for j in range(j1, j2):
            node = sub[j]
            if isinstance(node, _DEFS):
                if any(gkeys[i] == skeys[j] for i in spare):
                    continue  # a handout def or class, moved
                twins = [i for i in spare if type(given[i]) is type(node) and given[i].name == node.name]
            else:
                twins = [i for i in spare if i1 <= i < i2 and _header(given[i]) == _header(node)
                         and any(getattr(node, b, None) for b in _BODIES)]  # fmt: skip
            if not twins:
                out.append((owner, node))
                continue
            spare.remove(twins[0])
            twin = given[twins[0]]
            inner_prefix, inner_owner = prefix, owner
            if isinstance(node, ast.ClassDef):
                inner_prefix = f"{prefix}{node.name}."
            elif isinstance(node, _DEFS):
                inner_owner = f"{prefix}{node.name}"
                inner_prefix = f"{inner_owner}.<locals>."
            for name in _BODIES:
                _new_statements(getattr(twin, name, None) or [], getattr(node, name, None) or [],
                                inner_prefix, inner_owner, out)  # fmt: skip


def _span(node: ast.AST) -> tuple[int, int]:
    """First and last line of a statement, its decorators included (a ``case`` has no line of its own)."""
    located = [n for n in ast.walk(node) if getattr(n, "lineno", None) is not None]
    return min(n.lineno for n in located), max(n.end_lineno or n.lineno for n in located)


def extract_file(path: str, given: str, stubs: list[Stub], submitted: str) -> list[dict]:
    """The student-written code of one submitted file, as runs of its lines: every statement the skeleton
    file ``given`` does not hold (:func:`_new_statements`), so that reformatting, moving or re-commenting
    handout code is never student code. A statement belongs to the region of the function around it, else
    (a helper, a changed line outside the tasks) to the region whose function is nearest in the file.
    Consecutive statements of one region, apart only by blank or comment lines, form one run. A file that
    does not parse is compared line by line (:func:`extract_lines`).

    Each run: ``component``, ``region`` (the region's function), ``path``, ``lines`` ([first, last], 1-based,
    in the submitted file), ``text``."""
    try:
        tree, skeleton = ast.parse(submitted), ast.parse(given)
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return extract_lines(path, given, stubs, submitted)
    found: list = []
    _new_statements(skeleton.body, tree.body, "", "", found)
    lines = submitted.splitlines()
    by_name = {s.qualname: s for s in stubs}
    starts = {name: start for start, _, name in _function_spans(tree, lines) if name in by_name}
    runs: list[dict] = []
    for (first, last), owner in sorted((_span(node), owner) for owner, node in found):  # in file order
        mine = [q for q in by_name if owner == q or owner.startswith(q + ".")]
        if mine:
            stub = by_name[max(mine, key=len)]
        elif starts:
            stub = by_name[min(starts, key=lambda q: (abs(starts[q] - first), starts[q]))]
        else:
            stub = stubs[0]
        previous = runs[-1] if runs else None
        between = lines[previous["lines"][1] : first - 1] if previous else []  # a statement on its line: none
        if previous and previous["region"] == stub.qualname and all(not x.strip() or x.lstrip()[0] == "#"
                                                                      for x in between):  # fmt: skip
            previous["lines"][1] = max(previous["lines"][1], last)
        else:
            runs.append({"component": stub.component, "region": stub.qualname, "path": path,
                         "lines": [first, last]})  # fmt: skip
    for run in runs:
        run["text"] = "\n".join(lines[run["lines"][0] - 1 : run["lines"][1]])
    return runs


def extract_notebook(path: str, notebook: dict, given_cells: list[str]) -> list[dict]:
    """The code cells of ``notebook`` that are not, stripped, a code cell of the released notebook."""
    given = {c.strip() for c in given_cells}
    return [{"component": NOTEBOOK, "region": label, "path": path, "lines": None, "text": source}
            for label, source in zip(*_code_cells(notebook))
            if source.strip() and source.strip() not in given]  # fmt: skip


def student_code(root: Path, notebook: Path | None, kit: Path = REPO, hand: Handout | None = None) -> dict:
    """What the student wrote, per component, for :func:`similarity_report`: the content of
    ``student-code.json``. Never raises: a problem (a missing file, an unreadable notebook, no handout) is
    listed under ``errors``. One extraction at a time (a batch grades in threads; CPython 3.11's
    ``ast.parse`` is not thread-safe, python/cpython#106905: the lock is the one ``grader.authoring.coverage`` parses
    under)."""
    from grader.authoring.coverage import _PARSE_LOCK

    with _PARSE_LOCK:
        return _student_code(root, notebook, kit, hand)


def _student_code(root: Path, notebook: Path | None, kit: Path, hand: Handout | None) -> dict:
    doc: dict = {"format": FORMAT, "staff_only": NOTICE, "components": {}, "errors": []}
    errors: list[str] = doc["errors"]
    try:
        hand = hand or handout(kit)
    except Exception as exc:  # noqa: BLE001 - never worth a grade
        errors.append(f"no handout to compare with: {type(exc).__name__}: {exc}")
        return doc
    runs: list[dict] = []
    for path, given in hand.files.items():
        try:
            target = Path(root) / path
            if target.is_symlink() or not target.is_file():
                errors.append(f"{path}: not in the submission")
                continue
            if target.stat().st_size > MAX_FILE_BYTES:
                errors.append(f"{path}: larger than {MAX_FILE_BYTES >> 20} MiB, not read")
                continue
            submitted = target.read_text(encoding="utf-8", errors="replace")
            runs += extract_file(path, given, hand.stubs[path], submitted)
        except Exception as exc:  # noqa: BLE001
            errors.append(f"{path}: {type(exc).__name__}: {exc}")
    if notebook is None:
        errors.append("no notebook in the submission")
    else:
        try:
            if Path(notebook).stat().st_size > 50 * MAX_FILE_BYTES:
                raise ValueError("the notebook is too large to read")
            book = json.loads(Path(notebook).read_text(encoding="utf-8", errors="replace"))
            runs += extract_notebook(Path(notebook).name, book, hand.notebook_cells)
        except Exception as exc:  # noqa: BLE001
            errors.append(f"notebook: {type(exc).__name__}: {_oneline(exc, 200)}")
    for run in runs:
        doc["components"].setdefault(run.pop("component"), []).append(run)
    doc["components"] = dict(sorted(doc["components"].items()))
    return doc


def save_student_code(root: Path, notebook: Path | None, kit: Path, dest: Path) -> list[str]:
    """Write :func:`student_code` to ``dest`` (staff only: the grader's output folder of the submission);
    returns lines for the TA's log. Never raises: extracting is never worth a grade."""
    try:
        doc = student_code(root, notebook, kit)
        dest.write_text(json.dumps(doc, indent=1), encoding="utf-8", errors="backslashreplace")
        errors = doc["errors"]
        problems = f"; {len(errors)} problem(s): {'; '.join(errors[:3])}" if errors else ""
        return [f"student code for `ca15-grade similarity`: {dest.name} ({len(doc['components'])} "
                f"component(s){problems})"]  # fmt: skip
    except Exception as exc:  # noqa: BLE001
        return [f"could not write {dest.name}: {type(exc).__name__}: {exc}"]


def read_student_code(path: Path) -> dict:
    """A ``student-code.json``, checked: ``{"components": {component: [runs with a str "text"]}, "errors"}``.

    Raises:
        ValueError: not such a file.
    """
    try:
        doc = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"{path}: unreadable: {exc}") from exc
    comps = doc.get("components") if isinstance(doc, dict) else None
    if not isinstance(comps, dict) or not all(
        isinstance(runs, list) and all(isinstance(r, dict) and isinstance(r.get("text"), str) for r in runs)
        for runs in comps.values()
    ):
        raise ValueError(f"{path}: expected {{'components': {{name: [{{'text': ...}}, ...]}}}}, got another "
                         "shape")
    errors = doc.get("errors") if isinstance(doc.get("errors"), list) else []
    return {"components": comps, "errors": [str(e) for e in errors]}


def code_of_submission(submission: Path, kit: Path = REPO, hand: Handout | None = None) -> dict:
    """:func:`student_code` of a submission folder or zip, unpacked as the grader does (into a temporary
    folder, removed after)."""
    from grader.pipeline.unpack import SubmissionError, find_notebook, find_root, unpack

    with tempfile.TemporaryDirectory(prefix="ca15-similarity-") as tmp:
        try:
            unpack(submission, Path(tmp) / "submission")
            root = find_root(Path(tmp) / "submission")
        except SubmissionError as exc:
            return {"format": FORMAT, "components": {}, "errors": [f"not read: {exc}"]}
        return student_code(root, find_notebook(Path(tmp) / "submission"), kit, hand)


# ------------------------------------------------------------------------------------------ comparison
def normalise(code: str) -> str:
    """``code`` in a canonical layout: ``ast.unparse`` of its parse (comments, blank lines, redundant
    parentheses, line continuations and semicolons gone; one statement a line), or ``code`` itself when it
    does not parse on its own. copydetect already ignores names, comments and whitespace; this makes it
    blind to a reformatting too (``black`` adds parentheses that would break its k-grams)."""
    try:
        return ast.unparse(ast.parse(textwrap.dedent(code)))
    except Exception:  # noqa: BLE001 - SyntaxError, RecursionError, ...: compare the text as it is
        return code


def component_text(runs: list[dict], canonical: bool = True) -> str:
    """One submission's code of one component: its runs in order (each :func:`normalise` d when
    ``canonical``), each under a comment naming where it is."""
    parts, size = [], 0
    for run in runs:
        lines = run.get("lines")
        span = f":{lines[0]}-{lines[1]}" if isinstance(lines, list) and len(lines) == 2 else ""
        where = f"{run.get('path', '?')}{span}"
        text = (normalise(run["text"]) if canonical else run["text"]).rstrip()
        parts.append(f"# --- {_oneline(where, 80)} ({_oneline(run.get('region', ''), 60)})\n{text}\n")
        size += len(parts[-1])
        if size > MAX_COMPONENT_CHARS:
            parts.append("# --- (cut: too long)\n")
            break
    return "\n".join(parts)


@dataclass
class Pair:
    """Two submissions' code of one component compared: ``sim_ab`` is the share of a's code found in b."""

    component: str
    a: str
    b: str
    sim_ab: float
    sim_ba: float
    tokens: int

    @property
    def score(self) -> float:
        return max(self.sim_ab, self.sim_ba)


def _sort_key(p: Pair) -> tuple:
    return (-p.score, -p.tokens, p.a, p.b)


def fingerprint(text: str, boilerplate, k: int = NOISE_T, t: int = GUARANTEE_T):
    """copydetect's fingerprint of Python ``text``, with the k-grams in ``boilerplate`` removed."""
    from copydetect import CodeFingerprint

    return CodeFingerprint("student.py", k, t - k + 1, boilerplate=boilerplate, filter=True,
                           language="python", fp=io.StringIO(text))  # fmt: skip


def boilerplate_hashes(given: list[str], k: int = NOISE_T):
    """Every k-gram hash of the handout's texts ``given``, each as it is and :func:`normalise` d (window 1:
    all of them), as copydetect's CopyDetector makes its boilerplate."""
    import numpy as np
    from copydetect import CodeFingerprint

    hashes: set = set()
    for text in {form for g in given for form in (g, normalise(g))}:  # as given; as students' code is seen
        if text.strip():
            hashes |= CodeFingerprint("given.py", k, 1, filter=True, language="python",
                                      fp=io.StringIO(text)).hashes  # fmt: skip
    return np.unique(np.array(sorted(hashes), dtype=np.int64))


def compare_component(component: str, texts: dict[str, str], given: list[str],
                      past: frozenset[str] = frozenset(), k: int = NOISE_T,
                      t: int = GUARANTEE_T) -> tuple[list[Pair], dict]:
    """Every pair of ``texts`` (label -> code of ``component``) that shares code beyond the handout ``given``
    (two labels in ``past`` are never compared), best first; and the fingerprints by label."""
    from copydetect import compare_files

    texts = {label: text for label, text in texts.items() if text.strip()}
    if len(texts) < 2:
        return [], {}
    boiler = boilerplate_hashes(given, k)
    prints = {label: fingerprint(text, boiler, k, t) for label, text in texts.items()}
    labels = sorted(prints)
    pairs = []
    for i, a in enumerate(labels):
        for b in labels[i + 1:]:
            if a in past and b in past:
                continue
            first, second = (b, a) if a in past else (a, b)  # the current submission first
            fa, fb = prints[first], prints[second]
            if not fa.hashes & fb.hashes:
                continue
            tokens, (sim_ab, sim_ba), _ = compare_files(fa, fb)
            if tokens > 0:
                pairs.append(Pair(component, first, second, float(sim_ab), float(sim_ba), int(tokens)))
    pairs.sort(key=_sort_key)
    return pairs, prints


def _highlighted(fa, fb) -> tuple[str, str]:
    """Both sides' code, HTML-escaped, with the matching code in ``<mark>``."""
    from copydetect import compare_files
    from copydetect.utils import highlight_overlap

    _, _, (slices_a, slices_b) = compare_files(fa, fb)
    out = []
    for print_, slices in ((fa, slices_a), (fb, slices_b)):
        code = print_.raw_code
        if getattr(slices, "ndim", 1) != 2 or slices.shape[1] == 0:
            out.append(html.escape(code))
            continue
        truncate = -1 if len(code) <= FULL_VIEW_CHARS else 6
        marked, _ = highlight_overlap(code, slices, "<mark>", "</mark>", truncate=truncate, escape_html=True)
        out.append(marked)
    return out[0], out[1]


# ------------------------------------------------------------------------------------------ the report
@dataclass
class Entry:
    """One submission's student code, as read for the report."""

    label: str
    components: dict[str, list[dict]]
    errors: list[str]
    past: bool = False


def _label(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("._") or "submission"


def collect(out_dir: Path, submissions: list[Path] = (), against: Path | None = None, kit: Path = REPO,
            hand: Handout | None = None) -> tuple[list[Entry], list[str]]:
    """The submissions to compare: ``out_dir/<name>/student-code.json`` of every graded folder (a submission
    in ``submissions`` is read from itself instead), then the past ones of ``against``. Also what was left
    out and why."""
    from grader.pipeline.unpack import submission_name

    entries: dict[str, Entry] = {}
    left_out: list[str] = []
    direct = {submission_name(s): s for s in submissions}
    for folder in sorted(p for p in Path(out_dir).iterdir() if p.is_dir() and not p.name.startswith(".")):
        if folder.name in direct or not (folder / "results.json").is_file():
            continue
        if not (folder / STUDENT_CODE).is_file():
            left_out.append(f"{folder.name}: no {STUDENT_CODE} (graded before it was saved, or not graded: "
                            "pass its submission with --submissions)")  # fmt: skip
            continue
        try:
            doc = read_student_code(folder / STUDENT_CODE)
        except ValueError as exc:
            left_out.append(f"{folder.name}: {exc}")
            continue
        entries[folder.name] = Entry(folder.name, doc["components"], doc["errors"])
    for name, sub in sorted(direct.items()):
        doc = code_of_submission(sub, kit, hand)
        entries[name] = Entry(name, doc["components"], doc["errors"])
    if against is not None:
        for child in sorted(Path(against).iterdir()):
            if child.name.startswith(".") or not (child.is_dir() or child.suffix.lower() == ".zip"):
                continue
            label = f"past/{_label(child.name[:-4] if child.suffix.lower() == '.zip' else child.name)}"
            if child.is_dir() and (child / STUDENT_CODE).is_file():
                try:
                    doc = read_student_code(child / STUDENT_CODE)
                except ValueError as exc:
                    left_out.append(f"{label}: {exc}")
                    continue
            elif child.is_dir() and (child / "results.json").is_file():
                left_out.append(f"{label}: a graded folder without {STUDENT_CODE}")
                continue
            else:
                doc = code_of_submission(child, kit, hand)
            entries[label] = Entry(label, doc["components"], doc["errors"], past=True)
    return list(entries.values()), left_out


def _neutralise(text: str) -> str:
    return "'" + text if text.startswith(FORMULA_STARTS) else text


STYLE = (
    "body{font-family:sans-serif;margin:1.5em;max-width:110em}table{border-collapse:collapse;margin:.5em 0}"
    "td,th{border:1px solid #ccc;padding:.2em .5em;text-align:left}td.n{text-align:right}"
    ".notice{background:#fff3cd;border:1px solid #e0c060;padding:.6em;font-weight:bold}"
    ".pair{display:grid;grid-template-columns:1fr 1fr;gap:1em}"
    "pre{background:#f7f7f7;border:1px solid #ddd;padding:.5em;white-space:pre-wrap;overflow-x:auto;"
    "font-size:85%}"
    "mark{background:#ffb3b3}"
)


def similarity_report(out_dir: Path, against: Path | None = None, submissions: list[Path] = (),
                      kit: Path = REPO, top: int = TOP_PAIRS) -> tuple[Path, Path]:
    """Write ``out_dir/similarity.html`` and ``out_dir/similarity.csv`` (each atomically); returns their
    paths.

    ``against``: a folder of earlier terms' submissions (or a ``ca15-grade`` output folder of them);
    ``submissions``: submission folders or zips to read directly (folders graded before
    ``student-code.json`` was saved).
    """
    import copydetect

    out_dir = Path(out_dir)
    hand = handout(kit)
    entries, left_out = collect(out_dir, list(submissions), against, kit, hand)
    past = frozenset(e.label for e in entries if e.past)
    rows: list[list] = []
    sections: list[str] = []
    summary: list[str] = []
    esc = html.escape
    known = hand.components()
    components = known + sorted({c for e in entries for c in e.components} - set(known))
    for component in components:
        runs = {e.label: e.components.get(component, []) for e in entries if e.components.get(component)}
        texts = {label: component_text(r) for label, r in runs.items()}
        texts = {label: text for label, text in texts.items() if text.strip()}
        given = hand.given(component) if component in known else []
        pairs, prints = compare_component(component, texts, given, past)
        for rank, p in enumerate(pairs, 1):
            rows.append([component, rank, _neutralise(p.a), _neutralise(p.b), f"{p.sim_ab:.3f}",
                         f"{p.sim_ba:.3f}", p.tokens])  # fmt: skip
        best = f"{pairs[0].score:.0%}" if pairs else "–"
        anchor = esc(component)
        summary.append(f"<tr><td><a href='#c-{anchor}'>{esc(component)}</a></td>"
                       f"<td class='n'>{len(texts)}</td><td class='n'>{len(pairs)}</td>"
                       f"<td class='n'>{best}</td></tr>")  # fmt: skip
        part = [f"<h2 id='c-{anchor}'>{esc(component)}</h2>",
                f"<p>{len(texts)} submission(s) wrote code for it; {len(pairs)} pair(s) share code beyond "
                "the handout.</p>"]  # fmt: skip
        if pairs:
            part.append("<table><tr><th>#</th><th>a</th><th>b</th><th>a→b</th><th>b→a</th>"
                        "<th>matched tokens</th></tr>")  # fmt: skip
            for rank, p in enumerate(pairs[:top], 1):
                part.append(f"<tr><td><a href='#p-{anchor}-{rank}'>{rank}</a></td><td>{esc(p.a)}</td>"
                            f"<td>{esc(p.b)}</td><td class='n'>{p.sim_ab:.0%}</td>"
                            f"<td class='n'>{p.sim_ba:.0%}</td><td class='n'>{p.tokens}</td>"
                            "</tr>")  # fmt: skip
            part.append("</table>")
            for rank, p in enumerate(pairs[:top], 1):
                sides = zip((p.a, p.b), (p.sim_ab, p.sim_ba), _highlighted(prints[p.a], prints[p.b]))
                part.append(f"<h3 id='p-{anchor}-{rank}'>{esc(component)} #{rank}: {esc(p.a)} ↔ {esc(p.b)}"
                            "</h3><div class='pair'>")  # fmt: skip
                for label, share, marked in sides:
                    original = esc(component_text(runs[label], canonical=False))
                    part.append(f"<div><h4>{esc(label)}: {share:.0%} of it matches</h4><pre>{marked}</pre>"
                                f"<details><summary>as submitted</summary><pre>{original}</pre></details>"
                                "</div>")  # fmt: skip
                part.append("</div>")
        sections += part
    problems = [f"<li>{esc(e.label)}: {esc('; '.join(e.errors[:5]))}</li>" for e in entries if e.errors]
    page = [
        "<!doctype html><html><head><meta charset='utf-8'><title>CA15 similarity report</title>"
        f"<style>{STYLE}</style></head><body>",
        f"<p class='notice'>{esc(NOTICE)}</p>",
        "<h1>CA15 similarity per component</h1>",
        f"<p>From <code>{esc(str(out_dir))}</code>: {sum(not e.past for e in entries)} submission(s)"
        + (f", compared also with {len(past)} past submission(s) of <code>{esc(str(against))}</code>"
           if against else "") + ".</p>",  # fmt: skip
        "<p>Compared: only what the students wrote. Python: the lines of each file that differ from the "
        "skeleton the kit generates (the handout's lines are never compared); notebook: the code cells that "
        "are not a cell of the released notebook. The handout's code is also removed from the fingerprints "
        "(copydetect's boilerplate), so moving or reformatting given code never counts. Each piece of code "
        "is compared in a canonical layout (Python's <code>ast.unparse</code>: comments and formatting "
        "dropped), which is what the highlighted views show; the code as submitted is under each view.</p>",
        f"<p>Method: copydetect {esc(copydetect.__version__)} (winnowing over Pygments tokens; names become "
        f"V/F/O, strings S, comments and whitespace dropped), noise threshold k = {NOISE_T}, guarantee "
        f"threshold {GUARANTEE_T}. <b>a→b</b>: the share of a's fingerprinted code (handout removed) that "
        f"also occurs in b. Ranked by the larger direction, then by matched tokens. Top {top} pairs per "
        f"component shown; every pair that shares code is in <code>{CSV_NAME}</code>.</p>",
        "<table><tr><th>component</th><th>submissions with code</th><th>pairs sharing code</th>"
        "<th>top score</th></tr>" + "".join(summary) + "</table>",
        *sections,
    ]
    if left_out or problems:
        items = "".join(f"<li>{esc(x)}</li>" for x in left_out) + "".join(problems)
        page.append(f"<h2>Not compared, or in part only</h2><ul>{items}</ul>")
    page.append("</body></html>\n")
    html_path, csv_path = out_dir / HTML_NAME, out_dir / CSV_NAME
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(["component", "rank", "submission_a", "submission_b", "similarity_a_to_b",
                     "similarity_b_to_a", "matched_tokens"])  # fmt: skip
    writer.writerows(rows)
    _write_atomic(csv_path, buffer.getvalue())
    _write_atomic(html_path, "".join(page))
    return html_path, csv_path


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.parent / f".{path.name}.partial"
    tmp.write_text(text, encoding="utf-8", errors="backslashreplace")
    os.replace(tmp, path)


def main(argv: list[str] | None = None) -> int:
    """``ca15-grade similarity OUT [--against PAST] [--submissions SUB...] [--top N]``."""
    parser = argparse.ArgumentParser(
        prog="ca15-grade similarity",
        description="Write OUT/similarity.html and OUT/similarity.csv: per component, the pairs of "
                    "submissions whose student-written code is most alike. Staff only; evidence for a human, "
                    "never a penalty.")
    parser.add_argument("out", type=Path, metavar="OUT",
                        help="the output folder of `ca15-grade SUB... --out OUT`")
    parser.add_argument("--against", type=Path, default=None, metavar="PAST",
                        help="earlier terms' submissions (folders or zips, or a ca15-grade output folder) to "
                             "compare each submission with too")
    parser.add_argument("--submissions", type=Path, nargs="+", default=[], metavar="SUB",
                        help="submission folders or zips to read directly (for folders graded before "
                             f"{STUDENT_CODE} was saved)")
    parser.add_argument("--top", type=int, default=TOP_PAIRS,
                        help=f"pairs per component shown (default {TOP_PAIRS})")
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    expected = "expected the output folder of `ca15-grade SUB... --out OUT`"
    if not args.out.exists():
        parser.error(f"OUT: {expected}, got {args.out}: it does not exist")
    if not args.out.is_dir():
        parser.error(f"OUT: {expected}, got {args.out}: not a folder")
    if args.against is not None and not args.against.is_dir():
        what = "it does not exist" if not args.against.exists() else "not a folder"
        parser.error(f"--against: expected a folder of earlier terms' submissions (folders or .zip files, "
                     f"or a ca15-grade output folder), got {args.against}: {what}")  # fmt: skip
    for sub in args.submissions:
        if not (sub.is_dir() or (sub.is_file() and sub.suffix.lower() == ".zip")):
            what = "it does not exist" if not sub.exists() else "neither a folder nor a .zip file"
            parser.error(f"--submissions: expected submission folders or .zip files, got {sub}: {what}")
    if args.top < 1:
        parser.error(f"--top: expected at least 1 pair per component, got {args.top}")
    if not args.submissions and not any(args.out.glob(f"*/{STUDENT_CODE}")):
        parser.error(f"OUT: {expected} holding NAME/{STUDENT_CODE} (saved at grading time), got {args.out}: "
                     "it holds none; pass the submissions with --submissions SUB...")  # fmt: skip
    for path in similarity_report(args.out, args.against, args.submissions, top=args.top):
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
