"""Regrades that explain themselves: what every results.json records, and the diff of two output folders.

    ca15-grade diff OLD NEW                              NEW/regrade.md and NEW/regrade.csv (staff only)
    ca15-grade SUB... --out NEW --previous OLD [--allow-lower]    grade, then the same diff, with a guard

**What a grading records.** Every results.json (``grader.pipeline.grade._grade_one``) holds ``extra_data.digests``
(:func:`grading_digests`):

- ``submission``: :func:`tree_digest` of the unpacked submission as graded (null when nothing was unpacked);
- ``tests``: ``{path: sha256 of the file}`` for every test file the run used, paths relative to the kit: the
  graded test modules (public, and hidden when included), the ``conftest.py`` files pytest loads for them,
  the helpers they import from ``tests`` (transitively), and the kit's assignment notebook
  (``notebooks/CA15.ipynb``) when the notebook runs, since its cells are the ones credited;
- ``modules``: ``{module path: {"components": [...], "uses": [...]}}``: the components whose graded tests the
  module holds (from the collected tests) and the other ``tests`` files it depends on;
- ``kit``: the kit's version (:func:`grader.version.kit_version`; a ``.dirty`` version is not proof that two
  kits were the same).

Hashing costs a few hundred KB per submission (the tests) plus the submission itself; the digests reveal
nothing of a hidden test's content.

**The diff** (:func:`diff_outputs`, :func:`write_regrade`) compares every ``OLD/<name>/results.json`` with
``NEW/<name>/results.json``: per submission the score and status before and after; per test row (keyed by
name and visibility) pass -> fail, fail -> pass, points changed, or a row only on one side; and why, where
the kit can tell: *test source changed* (a file of the row's module, or one it uses, has another digest),
*submission changed*, *status changed* (graded -> timeout, error, ...), *kit version changed*. A verdict
that changed with none of these is *a flaky test or a kit bug*: regrade.md lists those first, loudly. Where
either side has no digests (graded by an older kit; a refusal or grader error records none) the cause is
unknown and said so. Submissions only in OLD or only in NEW are listed.

**The guard** (``--previous OLD``, ``grader.__main__._grade``): before grading, OLD is checked and whatever
in NEW would look final (``gradebook.csv``, the LMS gradebooks, an earlier ``regrade.md``/``.csv``) is
removed (:func:`clear_final`); the batch writes its gradebook as ``NEW/gradebook.proposed.csv`` all along.
After grading, :func:`finish_regrade` diffs OLD and NEW and writes the regrade files; when no score went down
(or with ``--allow-lower``) the proposed gradebook becomes ``NEW/gradebook.csv``, otherwise it stays
proposed, the lowered submissions go to stderr and the exit status is 4 (:data:`HELD`). So ``gradebook.csv``
exists in a guarded NEW only once a completed batch passed the check. An interrupted guarded batch leaves the
proposed gradebook; the same command again resumes and checks. A held regrade is accepted by running the
same command with ``--allow-lower``: every submission already has its results.json, so nothing is graded
again. Nothing in OLD is ever written: OLD may not be NEW, nor hold it, nor lie inside it.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import json
import os
import re
import sys
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

#: Where :func:`write_regrade` writes, in NEW.
REGRADE_MD, REGRADE_CSV = "regrade.md", "regrade.csv"
GRADEBOOK, PROPOSED = "gradebook.csv", "gradebook.proposed.csv"
#: What in a guarded NEW would look final before the check has passed (removed before grading).
FINAL_FILES = (GRADEBOOK, "gradebook.canvas.csv", "gradebook.lms.csv", REGRADE_MD, REGRADE_CSV)
#: The exit status of ``--previous`` when a score went down (without ``--allow-lower``).
HELD = 4
#: The kit's assignment notebook, relative to the kit: the notebook row's "test file".
NOTEBOOK_FILE = "notebooks/CA15.ipynb"
#: results.json's row for the notebook (``grader.pipeline.grade.gradescope_results``).
NOTEBOOK_ROW = "Notebook runs from start to finish"

FLAKY = "verdict changed with nothing changed: a flaky test, a kit bug"
NO_DIGESTS_OLD = "no digests in OLD (graded by an older kit): cause unknown"
NO_DIGESTS_NEW = "no digests in NEW (graded by an older kit, or refused / a grader error): cause unknown"
SUBMISSION_CHANGED = "submission changed"
STAFF_ONLY = "Staff only: names hidden tests and their results."


# ---------------------------------------------------------------------------------------------- digests
def file_digest(path: Path) -> str:
    """The sha256 of a file's content, in hex."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def tree_digest(folder: Path) -> str:
    """The sha256 of every regular file under ``folder``, in the order of their relative POSIX paths: for each,
    ``path``, a NUL byte, its size in decimal, a NUL byte, then its content. Links are not followed (an
    unpacked submission holds none)."""
    files = []
    for dirpath, dirs, names in os.walk(folder):
        dirs[:] = [d for d in dirs if not os.path.islink(os.path.join(dirpath, d))]
        for name in names:
            path = Path(dirpath) / name
            if path.is_file() and not path.is_symlink():
                files.append((path.relative_to(folder).as_posix(), path))
    h = hashlib.sha256()
    for rel, path in sorted(files):
        data = path.read_bytes()
        h.update(rel.encode("utf-8", "surrogateescape") + b"\0" + str(len(data)).encode() + b"\0")
        h.update(data)
    return h.hexdigest()


def submission_digest(folder: Path) -> str | None:
    """:func:`tree_digest` of an unpacked submission; None when there is none or it cannot be read (a digest
    is never worth a grade)."""
    try:
        return tree_digest(folder) if folder.is_dir() else None
    except OSError:
        return None


def _rel(path: Path, kit: Path) -> str:
    try:
        return path.relative_to(kit).as_posix()
    except ValueError:
        return path.as_posix()


def graded_modules(targets: Iterable[str | Path]) -> list[Path]:
    """The test modules pytest collects from ``targets`` (``grader.pipeline.grade.test_targets``: folders or files)."""
    modules: set[Path] = set()
    for target in map(Path, targets):
        if target.is_dir():
            modules |= {p for pattern in ("test_*.py", "*_test.py") for p in target.rglob(pattern)
                        if "__pycache__" not in p.parts and p.is_file()}  # fmt: skip
        elif target.is_file():
            modules.add(target)
    return sorted(modules)


def _conftests(kit: Path, module: Path) -> list[Path]:
    """The conftest.py files pytest loads for ``module``: its folder's and those above it, up to the kit."""
    found, folder = [], module.parent
    while True:
        if (folder / "conftest.py").is_file():
            found.append(folder / "conftest.py")
        if folder == kit or kit not in folder.parents:
            return found
        folder = folder.parent


#: ``from X import a, b`` (names in parentheses may span lines) and ``import X, Y as Z``, at any indentation.
_FROM = re.compile(rb"^[ \t]*from[ \t]+(\.*[\w.]*)[ \t]+import[ \t]+(\([^)]*\)|[^\n#;]*)", re.M)
_IMPORT = re.compile(rb"^[ \t]*import[ \t]+([^\n#;]+)", re.M)


def _imported(kit: Path, path: Path) -> list[Path]:
    """The files under ``kit/tests`` that ``path`` imports (``tests.x.y``, absolute or relative), with the
    packages' ``__init__.py`` on the way. Read from the import lines (parsing every module would cost a
    second per grading); a line in a string that looks like an import only adds a file to hash."""
    try:
        source = path.read_bytes()
    except OSError:
        return []
    package = PurePosixPath(_rel(path, kit)).parent.parts
    names: list[str] = []
    for match in _FROM.finditer(source):
        module = match.group(1).decode("ascii", "replace")
        level = len(module) - len(module.lstrip("."))
        if level:
            module = ".".join(package[: len(package) - level + 1] + (module[level:],)).strip(".")
        imported = match.group(2).decode("ascii", "replace").strip("() \t\n\\")
        names += [module] + [f"{module}.{n.split()[0]}" for n in imported.replace("\\", " ").split(",")
                             if n.split()]  # fmt: skip
    for match in _IMPORT.finditer(source):
        names += [n.split()[0] for n in match.group(1).decode("ascii", "replace").replace("\\", " ").split(",")
                  if n.split()]  # fmt: skip
    files = []
    for name in names:
        parts = [p for p in name.split(".") if p]
        if not parts or parts[0] != "tests":
            continue
        for i in range(1, len(parts) + 1):
            stem = kit.joinpath(*parts[:i])
            for candidate in (stem / "__init__.py", stem.parent / f"{stem.name}.py"):
                if candidate.is_file():
                    files.append(candidate)
    return files


def _uses(kit: Path, module: Path, memo: dict[Path, list[Path]]) -> set[Path]:
    """Every other ``tests`` file ``module`` depends on: its conftests and what it and they import, transitively
    (``memo``: each file's imports, read once per grading)."""
    seen: set[Path] = set()
    todo = [module, *_conftests(kit, module)]
    while todo:
        path = todo.pop()
        if path in seen:
            continue
        seen.add(path)
        if path not in memo:
            memo[path] = _imported(kit, path)
        todo += [p for p in memo[path] if p not in seen]
    return seen - {module}


def grading_digests(submission: str | None, kit: Path, targets: Iterable[str | Path], expected: list[dict],
                    version: str, notebook: bool = False) -> dict:  # fmt: skip
    """``extra_data.digests`` of one grading (see the module's docstring). ``submission``: the unpacked
    submission's :func:`submission_digest` (taken before its workspace goes); ``targets`` and ``expected``:
    the judge's test targets and the collected graded tests (``nodeid`` relative to the kit, ``component``);
    ``notebook``: whether the notebook ran (then the kit's assignment notebook counts as a test file)."""
    components: dict[str, set[str]] = {}
    for test in expected:
        components.setdefault(str(test["nodeid"]).split("::", 1)[0], set()).add(str(test["component"]))
    files: set[Path] = set()
    modules, memo = {}, {}
    for module in graded_modules(targets):
        uses = _uses(kit, module, memo)
        files |= {module, *uses}
        modules[_rel(module, kit)] = {"components": sorted(components.get(_rel(module, kit), ())),
                                      "uses": sorted(_rel(p, kit) for p in uses)}  # fmt: skip
    if notebook and (kit / NOTEBOOK_FILE).is_file():
        files.add(kit / NOTEBOOK_FILE)
    return {
        "submission": submission,
        "tests": {_rel(p, kit): file_digest(p) for p in sorted(files)},
        "modules": modules,
        "kit": version,
    }


# -------------------------------------------------------------------------------------- reading a folder
class OutputError(ValueError):
    """A folder that is not a ca15-grade output folder (the message names the argument, expected and actual)."""


def check_output(folder: Path, label: str) -> None:
    """Raise :class:`OutputError` unless ``folder`` is a ca15-grade output folder: a folder holding
    ``NAME/results.json`` per submission or a gradebook."""
    expected = f"{label}: expected a ca15-grade output folder (NAME/results.json per submission, gradebook.csv)"
    if not folder.exists():
        raise OutputError(f"{expected}, got {folder}: it does not exist")
    if not folder.is_dir():
        raise OutputError(f"{expected}, got {folder}: not a folder")
    if not any(folder.glob("[!.]*/results.json")) and not any((folder / g).is_file() for g in (GRADEBOOK, PROPOSED)):
        raise OutputError(f"{expected}, got {folder}: a folder with no results.json in any subfolder and no "
                          "gradebook")  # fmt: skip


def _number(value: object) -> float:
    return value if isinstance(value, (int, float)) and not isinstance(value, bool) else 0


@dataclass(frozen=True)
class Row:
    """One test row of a results.json (the notebook's included; the grader environment's is not a test)."""

    name: str
    hidden: bool
    component: str | None
    score: float
    max_score: float
    passed: bool


@dataclass
class Graded:
    """One ``OUT/<name>/results.json``."""

    name: str
    score: float
    status: str
    rows: dict[tuple[str, bool], Row]
    digests: dict | None


def _load(path: Path) -> Graded:
    name = path.parent.name
    try:
        results = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(results, dict):
            raise ValueError("not a JSON object")
    except (OSError, ValueError, UnicodeDecodeError):
        return Graded(name, 0, "error (unreadable results.json)", {}, None)
    extra = results.get("extra_data") if isinstance(results.get("extra_data"), dict) else {}
    rows = {}
    for raw in results.get("tests") or []:
        if not isinstance(raw, dict):
            continue
        tags = raw.get("tags")
        if tags == ["grader"]:  # the grader environment's row: no test
            continue
        tagged = isinstance(tags, list) and len(tags) == 2 and all(isinstance(t, str) for t in tags)
        row = Row(name=str(raw.get("name", "")), hidden=raw.get("visibility") == "hidden",
                  component=tags[0] if tagged else None, score=_number(raw.get("score")),
                  max_score=_number(raw.get("max_score")), passed=raw.get("status") == "passed")  # fmt: skip
        rows[(row.name, row.hidden)] = row
    digests = extra.get("digests")
    return Graded(name, _number(results.get("score")), str(extra.get("status", "graded")), rows,
                  digests if isinstance(digests, dict) else None)  # fmt: skip


def read_output(folder: Path, label: str) -> dict[str, Graded]:
    """Every submission of an output folder, by name (checked first: :func:`check_output`)."""
    check_output(folder, label)
    return {p.parent.name: _load(p) for p in sorted(folder.glob("[!.]*/results.json"))}


# ------------------------------------------------------------------------------------------------ the diff
@dataclass
class TestChange:
    """One test row whose verdict or points changed (or that is on one side only)."""

    name: str
    hidden: bool
    change: str  # "pass -> fail", "fail -> pass", "points changed", "test only in OLD", "test only in NEW"
    before: Row | None
    after: Row | None
    causes: list[str]
    flaky: bool = False


@dataclass
class SubmissionChange:
    """One submission in both folders whose score, status or test verdicts changed."""

    name: str
    score_before: float
    score_after: float
    status_before: str
    status_after: str
    causes: list[str]
    tests: list[TestChange] = field(default_factory=list)
    flaky: bool = False  # something changed that nothing the kit records explains

    @property
    def direction(self) -> str:
        if self.score_after < self.score_before:
            return "lowered"
        return "raised" if self.score_after > self.score_before else "same score"


@dataclass
class RegradeDiff:
    old: Path
    new: Path
    changed: list[SubmissionChange]
    unchanged: list[str]
    only_old: list[Graded]
    only_new: list[Graded]
    kits: tuple[list[str], list[str]] = field(default_factory=lambda: ([], []))

    @property
    def lowered(self) -> list[SubmissionChange]:
        return [c for c in self.changed if c.direction == "lowered"]

    @property
    def raised(self) -> list[SubmissionChange]:
        return [c for c in self.changed if c.direction == "raised"]

    @property
    def flaky(self) -> list[tuple[SubmissionChange, TestChange | None]]:
        """Every verdict (or, where no test changed, submission) that changed with nothing changed."""
        found: list[tuple[SubmissionChange, TestChange | None]] = []
        for sub in self.changed:
            tests = [t for t in sub.tests if t.flaky]
            found += [(sub, t) for t in tests] or ([(sub, None)] if sub.flaky else [])
        return found


def _row_files(row: Row, digests: dict) -> set[str]:
    """The test files a row depends on, by one side's digests: its module(s) (by component and visibility) and
    what they use; the kit's notebook for the notebook row."""
    if row.component is None:
        return {NOTEBOOK_FILE} if row.name == NOTEBOOK_ROW else set()
    files: set[str] = set()
    modules = digests.get("modules") if isinstance(digests.get("modules"), dict) else {}
    for module, info in modules.items():
        info = info if isinstance(info, dict) else {}
        hidden = "hidden" in PurePosixPath(module).parts
        if row.component in (info.get("components") or []) and hidden == row.hidden:
            files |= {module, *(info.get("uses") or [])}
    return files


def _causes(old: Graded, new: Graded) -> list[str]:
    """What changed for the whole submission (before any test is looked at)."""
    causes = []
    if old.status != new.status:
        causes.append(f"status changed: {old.status} -> {new.status}")
    if old.digests is None:
        return causes + [NO_DIGESTS_OLD]
    if new.digests is None:
        return causes + [NO_DIGESTS_NEW]
    if old.digests.get("submission") != new.digests.get("submission"):
        causes.append(SUBMISSION_CHANGED)
    if old.digests.get("kit") != new.digests.get("kit"):
        causes.append(f"kit version changed: {old.digests.get('kit')} -> {new.digests.get('kit')}")
    return causes


def _test_change(key: tuple[str, bool], old: Graded, new: Graded, common: list[str]) -> TestChange | None:
    before, after = old.rows.get(key), new.rows.get(key)
    if before is not None and after is not None:
        if before.passed != after.passed:
            change = "pass -> fail" if before.passed else "fail -> pass"
        elif (before.score, before.max_score) != (after.score, after.max_score):
            change = "points changed"
        else:
            return None
    else:
        change = "test only in OLD" if after is None else "test only in NEW"
    causes = list(common)
    known = old.digests is not None and new.digests is not None
    if known:
        files: set[str] = set()
        for side, row in ((old, before), (new, after)):
            if row is not None:
                files |= _row_files(row, side.digests)
        old_tests, new_tests = old.digests.get("tests") or {}, new.digests.get("tests") or {}
        changed = sorted(f for f in files if old_tests.get(f) != new_tests.get(f))
        if changed:
            causes.insert(0, f"test source changed: {', '.join(changed)}")
        if (before is None or after is None) and not causes:
            causes.append("the set of graded tests changed (other grading options: --no-hidden, a subset)")
    return TestChange(key[0], key[1], change, before, after, causes, flaky=known and not causes)


def diff_outputs(old: Path, new: Path, labels: tuple[str, str] = ("OLD", "NEW")) -> RegradeDiff:
    """Compare two output folders (read only) submission by submission and test by test."""
    before, after = read_output(old, labels[0]), read_output(new, labels[1])
    changed, unchanged = [], []
    for name in sorted(before.keys() & after.keys()):
        o, n = before[name], after[name]
        common = _causes(o, n)
        tests = [c for key in sorted(o.rows.keys() | n.rows.keys(), key=lambda k: (k[1], k[0]))
                 if (c := _test_change(key, o, n, common)) is not None]  # fmt: skip
        if not tests and o.score == n.score and o.status == n.status:
            unchanged.append(name)
            continue
        causes = list(dict.fromkeys(c for t in tests for c in t.causes))
        causes += [c for c in common if c not in causes]
        known = o.digests is not None and n.digests is not None
        flaky = known and (any(t.flaky for t in tests) or not causes)
        changed.append(SubmissionChange(name, o.score, n.score, o.status, n.status, causes, tests, flaky))
    kits = tuple(sorted({str(g.digests.get("kit")) for g in side.values() if g.digests})
                 for side in (before, after))  # fmt: skip
    return RegradeDiff(old, new, changed, unchanged, [before[n] for n in sorted(before.keys() - after.keys())],
                       [after[n] for n in sorted(after.keys() - before.keys())], kits)  # fmt: skip


# ----------------------------------------------------------------------------------------------- writing
def _points(value: float) -> str:
    return f"{value:g}"


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _verdict(row: Row | None) -> str:
    if row is None:
        return "absent"
    return f"{'pass' if row.passed else 'fail'} {_points(row.score)}/{_points(row.max_score)}"


def _test_label(t: TestChange) -> str:
    return f"{t.name}{' (hidden)' if t.hidden else ''}"


def _why(causes: list[str]) -> str:
    return "; ".join(causes) or FLAKY


def _status(s: SubmissionChange) -> str:
    return s.status_before if s.status_before == s.status_after else f"{s.status_before} -> {s.status_after}"


def render_markdown(diff: RegradeDiff) -> str:
    """regrade.md: the summary; first, loudly, the verdicts that changed with nothing changed; the lowered,
    raised and other changed submissions; those only in one folder; then each changed submission's tests."""
    lines = [f"# Regrade: {diff.old} -> {diff.new}", "", STAFF_ONLY, "", summary(diff), ""]
    flaky = diff.flaky
    if flaky:
        lines += [f"## WARNING: {len(flaky)} verdict(s) changed with nothing changed: a flaky test, a kit bug",
                  "", "Not the submission, not the test's source, not the status, not the kit version: nothing "
                  "the kit records changed, yet the verdict did. Rerun these tests and find out before the "
                  "grades go out.", "", "| submission | test | before | after |", "|---|---|---|---|"]  # fmt: skip
        for sub, t in flaky:
            if t is None:
                lines.append(f"| {sub.name} | (whole submission) | {_points(sub.score_before)} "
                             f"({_cell(sub.status_before)}) | {_points(sub.score_after)} "
                             f"({_cell(sub.status_after)}) |")  # fmt: skip
            else:
                lines.append(f"| {sub.name} | {_cell(_test_label(t))} | {_verdict(t.before)} | "
                             f"{_verdict(t.after)} |")  # fmt: skip
        lines.append("")
    same = [c for c in diff.changed if c.direction == "same score"]
    for title, subs in (("Lowered scores", diff.lowered), ("Raised scores", diff.raised),
                        ("Same score, status or verdicts changed", same)):  # fmt: skip
        lines += [f"## {title} ({len(subs)})", ""]
        if subs:
            lines += ["| submission | score | status | why |", "|---|---|---|---|"]
            lines += [f"| {s.name} | {_points(s.score_before)} -> {_points(s.score_after)} | {_cell(_status(s))} | "
                      f"{_cell(_why(s.causes))} |" for s in subs]  # fmt: skip
            lines.append("")
    for side, folder, subs in (("OLD", diff.old, diff.only_old), ("NEW", diff.new, diff.only_new)):
        lines += [f"## Only in {side} ({folder}): {len(subs)}", ""]
        lines += [f"- {g.name}: {_points(g.score)} ({_cell(g.status)})" for g in subs]
        lines += [""] if subs else []
    if diff.changed:
        lines += ["## Per submission", ""]
    for s in diff.changed:
        lines += [f"### {s.name}: {_points(s.score_before)} -> {_points(s.score_after)} ({s.direction})", "",
                  f"Status: {_cell(_status(s))}. Why: {_cell(_why(s.causes))}.", ""]  # fmt: skip
        if s.tests:
            lines += ["| test | change | before | after | why |", "|---|---|---|---|---|"]
            lines += [f"| {_cell(_test_label(t))} | {t.change} | {_verdict(t.before)} | {_verdict(t.after)} | "
                      f"{_cell(_why(t.causes))} |" for t in s.tests]  # fmt: skip
            lines.append("")
    lines += [f"Unchanged: {len(diff.unchanged)} submission(s).", ""]
    return "\n".join(lines)


CSV_COLUMNS = ["submission", "test", "visibility", "change", "score_before", "score_after", "verdict_before",
               "verdict_after", "status_before", "status_after", "why", "flaky"]  # fmt: skip


def csv_rows(diff: RegradeDiff) -> list[dict]:
    """One row per changed submission (``test`` empty) followed by one per changed test; then the submissions
    only in one folder."""
    from grader.pipeline.lms import neutralise

    rows = []
    for s in diff.changed:
        rows.append({"submission": s.name, "test": "", "change": f"score {s.direction}",
                     "score_before": _points(s.score_before), "score_after": _points(s.score_after),
                     "status_before": s.status_before, "status_after": s.status_after,
                     "why": _why(s.causes), "flaky": "yes" if s.flaky else ""})  # fmt: skip
        for t in s.tests:
            rows.append({"submission": s.name, "test": t.name, "visibility": "hidden" if t.hidden else "visible",
                         "change": t.change, "score_before": "" if t.before is None else _points(t.before.score),
                         "score_after": "" if t.after is None else _points(t.after.score),
                         "verdict_before": _verdict(t.before), "verdict_after": _verdict(t.after),
                         "status_before": s.status_before, "status_after": s.status_after,
                         "why": _why(t.causes), "flaky": "yes" if t.flaky else ""})  # fmt: skip
    for label, subs, key in (("only in OLD", diff.only_old, "before"), ("only in NEW", diff.only_new, "after")):
        rows += [{"submission": g.name, "change": label, f"score_{key}": _points(g.score),
                  f"status_{key}": g.status} for g in subs]  # fmt: skip
    return [{k: neutralise(str(v)) for k, v in row.items()} for row in rows]


def _write_atomic(path: Path, write) -> None:
    tmp = path.with_name(f".{path.name}.partial")
    with open(tmp, "w", newline="", encoding="utf-8") as fh:
        write(fh)
    os.replace(tmp, path)


def write_regrade(diff: RegradeDiff, new: Path) -> tuple[Path, Path]:
    """``new/regrade.md`` and ``new/regrade.csv`` (each written atomically); nothing else is written."""
    md, table = new / REGRADE_MD, new / REGRADE_CSV
    _write_atomic(md, lambda fh: fh.write(render_markdown(diff)))

    def write_csv(fh) -> None:
        writer = csv.DictWriter(fh, fieldnames=CSV_COLUMNS, restval="")
        writer.writeheader()
        writer.writerows(csv_rows(diff))

    _write_atomic(table, write_csv)
    return md, table


def summary(diff: RegradeDiff) -> str:
    """One paragraph: submissions compared, changed (lowered, raised), on one side only; flaky verdicts."""
    both = len(diff.changed) + len(diff.unchanged)
    text = (f"{both} submission(s) in both folders: {len(diff.changed)} changed ({len(diff.lowered)} lowered, "
            f"{len(diff.raised)} raised), {len(diff.unchanged)} unchanged; {len(diff.only_old)} only in OLD, "
            f"{len(diff.only_new)} only in NEW.")  # fmt: skip
    if diff.kits != ([], []) and diff.kits[0] != diff.kits[1]:
        old, new = (", ".join(kits) or "not recorded" for kits in diff.kits)
        text += f" Kit: {old} -> {new}."
    if diff.flaky:
        text += (f" WARNING: {len(diff.flaky)} verdict(s) changed with nothing changed (a flaky test, a kit bug): "
                 f"see {REGRADE_MD}.")  # fmt: skip
    return text


def describe_lowered(diff: RegradeDiff) -> list[str]:
    """One line per lowered submission: its name, the scores, and why."""
    return [f"{s.name}: {_points(s.score_before)} -> {_points(s.score_after)} ({_why(s.causes)})" for s in diff.lowered]


# --------------------------------------------------------------------------------------------- the guard
def previous_problem(old: Path, out: Path) -> str | None:
    """Why ``--previous OLD`` cannot go with ``--out OUT`` (None when it can): the same folder, one inside the
    other (a regrade never writes into OLD), or OLD not an output folder."""
    o, n = old.resolve(), out.resolve()
    if o == n:
        return (f"--previous {old} and --out {out} are the same folder ({o}): grade into a new folder; the old "
                "one is only read")  # fmt: skip
    if o in n.parents:
        return f"--out {out} is inside --previous {old}: grade into a folder outside it (OLD is never written)"
    if n in o.parents:
        return f"--previous {old} is inside --out {out}: keep OLD outside the folder being graded into"
    try:
        check_output(o, "--previous")
    except OutputError as exc:
        return str(exc)
    return None


def clear_final(out: Path) -> list[Path]:
    """Before a guarded batch: remove what in ``out`` would look final before the check (:data:`FINAL_FILES`);
    returns what was removed."""
    removed = []
    for name in FINAL_FILES:
        path = out / name
        if path.is_file() or path.is_symlink():
            path.unlink()
            removed.append(path)
    return removed


def finish_regrade(old: Path, out: Path, allow_lower: bool) -> tuple[Path, int]:
    """After a guarded batch (its gradebook ``out/gradebook.proposed.csv``): diff, write the regrade files, and
    either make the gradebook final (returns its path and 0) or hold it: nothing lowered is final without
    ``--allow-lower`` (returns the proposed gradebook and :data:`HELD`; 1 when the diff could not be made)."""
    proposed = out / PROPOSED
    try:
        diff = diff_outputs(old, out, labels=("--previous", "--out"))
    except OutputError as exc:
        print(f"ca15-grade: no regrade diff, the gradebook stays {proposed}: {exc}", file=sys.stderr)
        return proposed, 1
    md, table = write_regrade(diff, out)
    print(f"\nregrade against {old}: {summary(diff)}\nregrade: {md}, {table}")
    lowered = describe_lowered(diff)
    if lowered and not allow_lower:
        print(f"ca15-grade: {len(lowered)} score(s) went down against {old}; the gradebook is only proposed "
              f"({proposed}), with no gradebook.csv and no LMS gradebooks. Read {md}; to accept the lower scores run "
              "the same command with --allow-lower (nothing is graded again). Lowered:\n  "
              + "\n  ".join(lowered), file=sys.stderr)  # fmt: skip
        return proposed, HELD
    if lowered:
        print("ca15-grade: --allow-lower: these scores went down and are final:\n  " + "\n  ".join(lowered),
              file=sys.stderr)  # fmt: skip
    final = out / GRADEBOOK
    os.replace(proposed, final)
    return final, 0


# ------------------------------------------------------------------------------------------------- the CLI
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="ca15-grade diff",
        description="Compare two ca15-grade output folders: NEW/regrade.md and NEW/regrade.csv say, per "
                    "submission and per test, what changed and why (staff only: names hidden tests).")  # fmt: skip
    parser.add_argument("old", type=Path, metavar="OLD", help="the earlier output folder (only read)")
    parser.add_argument("new", type=Path, metavar="NEW", help="the later output folder (the report goes here)")
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    if args.old.resolve() == args.new.resolve():
        parser.error(f"OLD {args.old} and NEW {args.new} are the same folder: nothing to compare")
    try:
        diff = diff_outputs(args.old, args.new)
    except OutputError as exc:
        parser.error(str(exc))
    md, table = write_regrade(diff, args.new)
    print(summary(diff))
    for line in describe_lowered(diff):
        print(f"lowered: {line}")
    print(f"regrade: {md}, {table}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
