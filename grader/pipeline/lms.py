"""LMS gradebooks from a class roster: ``ca15-grade ... --out OUT --roster ROSTER.csv``.

Reads ``OUT/gradebook.csv`` (:func:`grader.pipeline.grade.write_gradebook`) and a roster that ties each submission to a
student, and writes two files beside it (atomically, UTF-8):

    OUT/gradebook.canvas.csv  Canvas's gradebook import: Student, ID, SIS User ID, SIS Login ID, Section, one
                              column for the assignment; the second row is Canvas's "Points Possible" row
    OUT/gradebook.lms.csv     id, name, score, max: a generic file that Moodle's and Blackboard's grade
                              imports map column by column

The roster is a CSV with a header row (names matched case-insensitively; spaces and hyphens count as ``_``):

    submission   the submission's folder or zip name as given to ca15-grade (``alice.zip``, ``alice``); it is
                 matched after the same clean-up ca15-grade applies (:func:`grader.pipeline.grade.submission_name`).
                 May be empty for a student who submitted nothing.
    student_id   the student's id in the LMS (the SIS user id); aliases ``id``, ``sis_id``, ``sis_user_id``
    name         the student's name; aliases ``student``, ``student_name``
    section      optional: the course section

Nothing is dropped silently: a submission without a roster row is left out of the LMS files and listed in
:class:`LmsReport` ``unmatched_submissions``; a roster student without a submission keeps a row with an empty
score (not graded is not zero) and is listed in ``missing_submissions``; a student whose submission was not
graded (gradebook status ``error`` or ``refused``) also keeps an empty score and is listed in ``not_graded``.
"""

from __future__ import annotations

import csv
import os
from dataclasses import dataclass, field
from pathlib import Path

from grader.pipeline.unpack import submission_name

CANVAS_FILE = "gradebook.canvas.csv"
GENERIC_FILE = "gradebook.lms.csv"
#: The roster's fields and the header names accepted for each (after :func:`_header_key`).
ROSTER_ALIASES: dict[str, tuple[str, ...]] = {
    "submission": ("submission",),
    "student_id": ("student_id", "id", "sis_id", "sis_user_id"),
    "name": ("name", "student", "student_name"),
    "section": ("section",),
}
REQUIRED = ("submission", "student_id", "name")
#: Gradebook statuses that mean "not graded": the score there (0) is no grade and is not exported.
NOT_GRADED = frozenset({"error", "refused"})
#: First characters that make a spreadsheet read a cell as a formula (CSV/formula injection).
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


@dataclass(frozen=True)
class RosterRow:
    submission: str  # after submission_name(); "" for a student without a submission
    student_id: str
    name: str
    section: str = ""
    line: int = 0  # the roster's line, for messages

    def describe(self) -> str:
        return f"{self.student_id} {self.name} (roster line {self.line})"


@dataclass
class LmsReport:
    canvas: Path
    generic: Path
    points_possible: float
    unmatched_submissions: list[str] = field(default_factory=list)  # gradebook rows no roster row names
    missing_submissions: list[RosterRow] = field(default_factory=list)  # roster rows with no gradebook row
    not_graded: list[tuple[RosterRow, str]] = field(default_factory=list)  # (row, gradebook status)
    notes: list[str] = field(default_factory=list)  # anything else the TA must see (max scores that differ)

    @property
    def paths(self) -> tuple[Path, Path]:
        return self.canvas, self.generic


def neutralise(text: str) -> str:
    """``text`` with a leading ``'`` when a spreadsheet would read it as a formula (=, +, -, @, tab, CR)."""
    return "'" + text if text.startswith(FORMULA_STARTS) else text


def _header_key(name: str) -> str:
    return name.strip().lower().replace(" ", "_").replace("-", "_")


def read_roster(path: Path) -> list[RosterRow]:
    """The roster's rows; a ``ValueError`` naming the file and the problem: the expected and the actual
    header, or the line of a row with an empty ``student_id``, or a submission or student id that an earlier
    row has."""
    try:
        with open(path, newline="", encoding="utf-8-sig") as fh:
            rows = _roster_rows(path, csv.reader(fh))
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise ValueError(f"{path}: cannot read the roster: {exc}") from exc
    if not rows:
        raise ValueError(f"{path}: the roster has a header but no students")
    return rows


def _roster_rows(path: Path, reader) -> list[RosterRow]:
    expected = ", ".join(REQUIRED) + ", optional section"
    header = next(reader, None)
    if header is None:
        raise ValueError(f"{path}: the roster is empty; expected a header with columns {expected}")
    columns = _roster_columns(path, header, expected)
    rows: list[RosterRow] = []
    seen_sub: dict[str, int] = {}
    seen_id: dict[str, int] = {}
    for cells in reader:
        line = reader.line_num
        if not any(c.strip() for c in cells):
            continue
        value = {f: (cells[i].strip() if i < len(cells) else "") for f, i in columns.items()}
        sid, given = value["student_id"], value["submission"]
        if not sid:
            raise ValueError(f"{path}, line {line}: empty student_id")
        if sid in seen_id:
            raise ValueError(f"{path}, line {line}: student_id {sid!r} is already on line {seen_id[sid]}")
        seen_id[sid] = line
        sub = submission_name(Path(given)) if given else ""
        if sub in seen_sub:
            raise ValueError(f"{path}, line {line}: submission {given!r} (graded as {sub!r}) is already on "
                             f"line {seen_sub[sub]}")  # fmt: skip
        if sub:
            seen_sub[sub] = line
        rows.append(RosterRow(sub, sid, value["name"], value.get("section", ""), line))
    return rows


def _roster_columns(path: Path, header: list[str], expected: str) -> dict[str, int]:
    """Field -> column index, from the roster's header; ``ValueError`` when a required field is missing or
    two columns name the same field."""
    columns: dict[str, int] = {}
    for index, name in enumerate(header):
        for fld, aliases in ROSTER_ALIASES.items():
            if _header_key(name) in aliases:
                if fld in columns:
                    raise ValueError(f"{path}: columns {header[columns[fld]]!r} and {name!r} both give "
                                     f"{fld}; keep one. Header: {', '.join(header)}")  # fmt: skip
                columns[fld] = index
    missing = [f for f in REQUIRED if f not in columns]
    if missing:
        actual = ", ".join(header) or "(empty)"
        raise ValueError(f"{path}: the roster lacks {', '.join(missing)}: expected columns {expected} "
                         f"(aliases: {_aliases_text()}); the header is: {actual}")  # fmt: skip
    return columns


def _aliases_text() -> str:
    return "; ".join(f"{f}: {', '.join(a)}" for f, a in ROSTER_ALIASES.items() if len(a) > 1)


def _number(text: str, where: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise ValueError(f"{where}: not a number: {text!r}") from None


def _fmt(value: float) -> str:
    return str(int(value)) if value.is_integer() else repr(round(value, 4))


def _read_gradebook(path: Path) -> dict[str, dict]:
    """Submission name -> {status, score, max_score} from ``gradebook.csv``."""
    if not path.is_file():
        raise ValueError(f"{path}: no gradebook to export (grade the submissions first)")
    with open(path, newline="", encoding="utf-8", errors="replace") as fh:
        reader = csv.DictReader(fh)
        needed = ("submission", "status", "score", "max_score")
        missing = [c for c in needed if c not in (reader.fieldnames or [])]
        if missing:
            raise ValueError(f"{path}: not a ca15-grade gradebook, it lacks {', '.join(missing)}")
        book = {}
        for row in reader:
            where = f"{path}, line {reader.line_num}"
            book[row["submission"]] = {"status": row["status"], "score": _number(row["score"], where),
                                       "max_score": _number(row["max_score"], where)}  # fmt: skip
    return book


def _write_csv(path: Path, rows: list[list[str]]) -> None:
    """Write ``rows`` to ``path`` atomically (a ``.NAME.partial`` beside it, which grade_batch sweeps)."""
    if path.is_dir():
        raise ValueError(f"{path} is a folder (a submission of that name?): rename it and export again")
    tmp = path.parent / f".{path.name}.partial"
    try:
        with open(tmp, "w", newline="", encoding="utf-8") as fh:
            csv.writer(fh).writerows(rows)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_lms_gradebooks(out_dir: Path, roster: list[RosterRow], assignment: str = "CA15") -> LmsReport:
    """Write ``gradebook.canvas.csv`` and ``gradebook.lms.csv`` in ``out_dir`` from its ``gradebook.csv``.

    One row per roster student, sorted by name then id. Canvas: "ID" is Canvas's internal user id, which the
    roster does not know, so it stays empty and the roster's ``student_id`` goes under "SIS User ID" (Canvas's
    importer looks a student up by ID, then SIS User ID, then SIS Login ID, then name); "SIS Login ID" stays
    empty. ``assignment`` is the assignment column's title: a new Canvas assignment unless it matches an
    existing one's title, or is written ``Title (canvas assignment id)``. The "Points Possible" row carries
    the largest ``max_score`` of the graded submissions.

    A student without a submission, or whose submission was not graded, gets an empty score, never 0 (see the
    module's docstring); every such row, and every submission without a roster row, is in the report. Text
    cells that a spreadsheet would read as a formula get a leading ``'``.
    """
    book = _read_gradebook(out_dir / "gradebook.csv")
    graded_max = [e["max_score"] for e in book.values() if e["status"] not in NOT_GRADED]
    points = max(graded_max, default=0.0)
    report = LmsReport(out_dir / CANVAS_FILE, out_dir / GENERIC_FILE, points)
    named = {r.submission for r in roster if r.submission}
    report.unmatched_submissions = sorted(s for s in book if s not in named)
    canvas = [["Student", "ID", "SIS User ID", "SIS Login ID", "Section", neutralise(assignment)],
              ["Points Possible", "", "", "", "", _fmt(points)]]  # fmt: skip
    generic = [["id", "name", "score", "max"]]
    for row in sorted(roster, key=lambda r: (r.name.casefold(), r.name, r.student_id)):
        entry = book.get(row.submission) if row.submission else None
        score, max_score = "", _fmt(points)
        if entry is None:
            report.missing_submissions.append(row)
        elif entry["status"] in NOT_GRADED:
            report.not_graded.append((row, entry["status"]))
        else:
            score, max_score = _fmt(entry["score"]), _fmt(entry["max_score"])
            if entry["max_score"] != points:
                report.notes.append(f"{row.submission} ({row.describe()}): max score {max_score}, but "
                                    f"the points possible are {_fmt(points)} (other options?)")  # fmt: skip
        sid, name = neutralise(row.student_id), neutralise(row.name)
        canvas.append([name, "", sid, "", neutralise(row.section), score])
        generic.append([sid, name, score, max_score])
    _write_csv(report.canvas, canvas)
    _write_csv(report.generic, generic)
    return report
