"""LMS gradebooks from a roster (grader/pipeline/lms.py, ``ca15-grade --roster``): fast, no grading. Each test builds
an output folder with a hand-written ``gradebook.csv`` in the layout :func:`grader.pipeline.grade.write_gradebook`
writes."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

import grader.__main__ as cli
from grader.pipeline.lms import neutralise, read_roster, write_lms_gradebooks

# write_gradebook's layout: submission, status, score, max_score, components (sorted), sandbox, why.
GRADEBOOK = """\
submission,status,score,max_score,DynamicsModel,ModelEnsemble,sandbox,why
alice,graded,42.5,50,20,22.5,bwrap 0.8.0,
bob,timeout,30,50,20,10,bwrap 0.8.0,
mallory,graded,7,50,7,0,bwrap 0.8.0,
zed,error,0,0,,,,submission.zip: not a zip file
"""
ROSTER = """\
submission,student_id,name,section
alice.zip,1001,"Smith, Alice",S1
bob,1002,"Jones, Bob",S2
zed,1004,"Young, Zed",S1
,1003,"Brown, Carol",S2
"""


def _out(tmp_path: Path, gradebook: str = GRADEBOOK) -> Path:
    out = tmp_path / "out"
    out.mkdir()
    (out / "gradebook.csv").write_text(gradebook)
    return out


def _roster(tmp_path: Path, text: str = ROSTER) -> Path:
    path = tmp_path / "roster.csv"
    path.write_text(text, encoding="utf-8")
    return path


def _rows(path: Path) -> list[list[str]]:
    with open(path, newline="", encoding="utf-8") as fh:
        return list(csv.reader(fh))


@pytest.fixture
def exported(tmp_path: Path):
    out = _out(tmp_path)
    return out, write_lms_gradebooks(out, read_roster(_roster(tmp_path)))


def test_canvas_header_and_points_possible_row(exported) -> None:
    """The Canvas file opens with its five student columns and the assignment, then Points Possible."""
    out, report = exported
    rows = _rows(out / "gradebook.canvas.csv")
    assert report.canvas == out / "gradebook.canvas.csv"
    assert rows[0] == ["Student", "ID", "SIS User ID", "SIS Login ID", "Section", "CA15"]
    assert rows[1] == ["Points Possible", "", "", "", "", "50"]  # the largest max_score of the graded rows
    assert report.points_possible == 50


def test_sis_id_and_section_land_in_their_columns(exported) -> None:
    """Each student's row: name, empty Canvas ID, roster id under SIS User ID, empty login, section, score;
    sorted by name."""
    out, _ = exported
    assert _rows(out / "gradebook.canvas.csv")[2:] == [
        ["Brown, Carol", "", "1003", "", "S2", ""],
        ["Jones, Bob", "", "1002", "", "S2", "30"],  # a timeout is graded: its tests count as failed
        ["Smith, Alice", "", "1001", "", "S1", "42.5"],
        ["Young, Zed", "", "1004", "", "S1", ""],
    ]


def test_generic_file_has_id_name_score_max(exported) -> None:
    """gradebook.lms.csv: id, name, score, max per student, sorted by name."""
    out, report = exported
    assert report.generic == out / "gradebook.lms.csv"
    assert _rows(out / "gradebook.lms.csv") == [
        ["id", "name", "score", "max"],
        ["1003", "Brown, Carol", "", "50"],
        ["1002", "Jones, Bob", "30", "50"],
        ["1001", "Smith, Alice", "42.5", "50"],
        ["1004", "Young, Zed", "", "50"],
    ]


def test_submission_without_roster_row_is_reported_and_left_out(exported) -> None:
    """mallory has a gradebook row but no roster row: reported, and in neither LMS file."""
    out, report = exported
    assert report.unmatched_submissions == ["mallory"]
    for name in ("gradebook.canvas.csv", "gradebook.lms.csv"):
        assert "mallory" not in (out / name).read_text() and "7" not in {r[-2] for r in _rows(out / name)}


def test_roster_student_without_submission_is_reported_with_empty_score(exported) -> None:
    """Carol has no submission: reported as missing, and her score is empty, not 0."""
    _, report = exported
    missing = [(r.student_id, r.name, r.line) for r in report.missing_submissions]
    assert missing == [("1003", "Brown, Carol", 5)]


def test_ungraded_submission_is_reported_with_empty_score(exported) -> None:
    """zed's submission has status error (score 0, not graded): reported, and its score is empty."""
    _, report = exported
    assert [(r.student_id, status) for r, status in report.not_graded] == [("1004", "error")]


def test_roster_aliases_and_zip_names(tmp_path: Path) -> None:
    """Headers match case-insensitively, with aliases (SIS User ID, Student); a zip name becomes its stem."""
    path = _roster(tmp_path, "Submission,SIS User ID,Student\nalice smith.zip,1001,Alice\n")
    (row,) = read_roster(path)
    got = (row.submission, row.student_id, row.name, row.section, row.line)
    assert got == ("alice_smith", "1001", "Alice", "", 2)


def test_roster_missing_column_names_file_expected_and_actual_header(tmp_path: Path) -> None:
    """A roster without a student id column: the error names the file, the expected and the actual header."""
    path = _roster(tmp_path, "submission,name,section\nalice,Alice,S1\n")
    with pytest.raises(ValueError) as err:
        read_roster(path)
    message = str(err.value)
    assert str(path) in message and "lacks student_id" in message
    assert "submission, student_id, name" in message and "the header is: submission, name, section" in message


def test_duplicate_student_id_rejected_with_line_number(tmp_path: Path) -> None:
    """The second row with student id 1001 is refused, naming its line (3) and the first one's (2)."""
    path = _roster(tmp_path, "submission,student_id,name\nalice,1001,Alice\nbob,1001,Bob\n")
    with pytest.raises(ValueError, match=r"roster\.csv, line 3: student_id '1001' is already on line 2"):
        read_roster(path)


def test_formula_injection_neutralised(tmp_path: Path) -> None:
    """Cells starting with =, +, -, @, tab or CR get a leading quote in both files; ordinary text does not."""
    roster = ('submission,student_id,name,section\nalice,1001,"=HYPERLINK(""http://x"")",@S1\n'
              'bob,+1002,"-Bob",\tS2\n')  # fmt: skip
    out = _out(tmp_path)
    write_lms_gradebooks(out, read_roster(_roster(tmp_path, roster)))
    canvas = _rows(out / "gradebook.canvas.csv")[2:]
    assert canvas == [["'-Bob", "", "'+1002", "", "S2", "30"],  # the roster's cells are stripped: tab gone
                      ["'=HYPERLINK(\"http://x\")", "", "1001", "", "'@S1", "42.5"]]  # fmt: skip
    assert _rows(out / "gradebook.lms.csv")[1][:2] == ["'+1002", "'-Bob"]
    assert [neutralise(c) for c in ("\t=1", "\r=1", "a=b")] == ["'\t=1", "'\r=1", "a=b"]


def test_cli_bad_roster_exits_before_grading(tmp_path: Path, monkeypatch, capsys, signals) -> None:
    """main([SUB, --out, OUT, --roster, BAD]) is a usage error (exit 2) naming --roster; nothing is graded."""
    sub = tmp_path / "alice"
    sub.mkdir()
    bad = _roster(tmp_path, "who,what\nalice,1\n")
    monkeypatch.setattr(cli, "grade_batch", lambda *a, **k: pytest.fail("graded despite a bad roster"))
    with pytest.raises(SystemExit) as exit_:
        cli.main([str(sub), "--out", str(tmp_path / "out"), "--roster", str(bad)])
    assert exit_.value.code == 2
    assert "--roster" in capsys.readouterr().err and not (tmp_path / "out").exists()


def test_cli_writes_lms_files_and_lists_unmatched_on_stderr(tmp_path, monkeypatch, capsys, signals) -> None:
    """After grading, --roster writes both files and puts every unmatched submission and missing student on
    stderr, one line each."""
    sub = tmp_path / "alice"
    sub.mkdir()
    out = tmp_path / "out"
    monkeypatch.setattr(cli, "grade_batch", lambda subs, out_dir, *a, **k: _out(tmp_path) / "gradebook.csv")
    assert cli.main([str(sub), "--out", str(out), "--roster", str(_roster(tmp_path))]) == 0
    captured = capsys.readouterr()
    assert "gradebook.canvas.csv" in captured.out and (out / "gradebook.lms.csv").is_file()
    err = captured.err.splitlines()
    assert len(err) == 3
    assert "submission mallory has no roster row" in err[0]
    assert err[1].startswith("roster: 1003 Brown, Carol (roster line 5): no submission named")
    assert err[2].startswith("roster: 1004 Young, Zed (roster line 4): submission zed has status error")
