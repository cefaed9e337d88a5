"""Regrade diffs (grader/pipeline/regrade.py: ``ca15-grade diff OLD NEW`` and ``ca15-grade ... --previous OLD``).

No grading runs here. Each test builds output folders as the grader leaves them, through the grader's own
``score``, ``gradescope_results`` and ``write_gradebook`` (as tests/kit/test_class_report.py does), with the
digests :func:`grading_digests` records, from a miniature kit: one component, "Dyn", with public tests
test_a, test_b (1 point each) in tests/components/test_dyn.py and a hidden test_h (1) in
tests/hidden/test_hidden_dyn.py. The ``--previous`` tests fake ``grade_batch`` (as tests/kit/test_lms.py
does). One test runs the real ``grade_one`` on a submission that cannot be graded: cheap, and it shows that
every results.json records the digests.
"""

from __future__ import annotations

import csv
import hashlib
import json
from pathlib import Path
from types import SimpleNamespace

import pytest

import grader.__main__ as cli
import grader.pipeline.grade as grade
from grader.pipeline.grade import GradeConfig, gradescope_results, score, write_gradebook
from grader.pipeline.regrade import FLAKY, NO_DIGESTS_OLD, diff_outputs, grading_digests, tree_digest, write_regrade

CONFIG = GradeConfig(run_notebook=False)
ENVIRONMENT = {"version": "0.1.0", "summary": "bwrap (fake)", "sandbox": {"engine": "bwrap"}}
POINTS = {"test_a": 1, "test_b": 1, "test_h": 1}
EXPECTED = [
    {"nodeid": f"tests/{'hidden/test_hidden_dyn' if name == 'test_h' else 'components/test_dyn'}.py::{name}",
     "component": "Dyn", "category": "shape", "points": points, "hidden": name == "test_h",
     "doc": f"{name} checks Dyn."}
    for name, points in POINTS.items()
]  # fmt: skip
TEST_DYN = "from tests.components._doubles import double\n\ndef test_a(): ...\n\ndef test_b(): ...\n"


@pytest.fixture
def kit(tmp_path: Path) -> Path:
    """The miniature kit: a conftest, a helper the public module imports, one public and one hidden module."""
    root = tmp_path / "kit"
    for rel, text in {"tests/conftest.py": "# conftest\n", "tests/components/_doubles.py": "def double(): ...\n",
                      "tests/components/test_dyn.py": TEST_DYN,
                      "tests/hidden/test_hidden_dyn.py": "def test_h(): ...\n", "VERSION": "9.9.9-test\n"}.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)
    return root


def make_submission(tmp_path: Path, name: str, code: str = "x = 1\n") -> Path:
    folder = tmp_path / "submissions" / name
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "impl.py").write_text(code)
    return folder


def write_result(out: Path, submission: Path, kit: Path, failures: tuple[str, ...] = (), status: str = "graded",
                 version: str = "0.1.0", digests: bool = True) -> None:
    """``out/<name>/results.json`` as ``grader.pipeline.grade._grade_one`` writes it: the tests in ``failures`` fail."""
    records = [{"type": "test", "nodeid": e["nodeid"], "outcome": "failed" if n in failures else "passed",
                "message": "wrong" if n in failures else "", "duration": 0.1}
               for n, e in zip(POINTS, EXPECTED)]  # fmt: skip
    results = gradescope_results(score(EXPECTED, SimpleNamespace(records=records), None, CONFIG), [], CONFIG,
                                 ENVIRONMENT)  # fmt: skip
    extra = {"status": status, "seconds": 1.0}
    if digests:
        targets = [kit / "tests" / "components", kit / "tests" / "hidden"]
        extra["digests"] = grading_digests(tree_digest(submission), kit, targets, EXPECTED, version)
    results["extra_data"].update(extra)
    (out / submission.name).mkdir(parents=True, exist_ok=True)
    (out / submission.name / "results.json").write_text(json.dumps(results, indent=2))


def make_out(path: Path, entries: list[tuple]) -> Path:
    """An output folder: one results.json per ``(submission, kit, **options)``, and its gradebook."""
    path.mkdir(parents=True)
    for submission, kit, *options in entries:
        write_result(path, submission, kit, **(options[0] if options else {}))
    write_gradebook(path)
    return path


def fake_batch(monkeypatch, kit: Path, failures: dict[str, tuple[str, ...]]) -> None:
    """``cli.grade_batch`` writes each submission's results (``failures`` by name) and the gradebook it is
    asked for, as grade_batch does."""

    def batch(subs, out_dir, config, jobs=1, gradebook="gradebook.csv"):
        for sub in subs:
            write_result(out_dir, sub, kit, failures.get(sub.name, ()))
        return write_gradebook(out_dir, gradebook)

    monkeypatch.setattr(cli, "grade_batch", batch)


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_tree_digest_hand_computed(tmp_path: Path) -> None:
    """A submission's digest: sorted relative paths, each with its size and content, NUL separated."""
    (tmp_path / "sub" / "pkg").mkdir(parents=True)
    (tmp_path / "sub" / "b.txt").write_bytes(b"yy")
    (tmp_path / "sub" / "pkg" / "a.py").write_bytes(b"x")
    expected = hashlib.sha256(b"b.txt\x002\x00yy" + b"pkg/a.py\x001\x00x").hexdigest()
    assert tree_digest(tmp_path / "sub") == expected


def test_grade_one_records_the_digests(tmp_path: Path, kit: Path, monkeypatch) -> None:
    """grade_one's results.json records the submission's, every used test file's and the kit's digests."""
    config = GradeConfig(kit=kit, run_notebook=False)
    monkeypatch.setitem(grade._EXPECTED, (kit, True, ()), EXPECTED)  # collected: no pytest run
    sub = make_submission(tmp_path, "alice")  # no implementation root: status error, no test runs
    (tmp_path / "out").mkdir()
    grade.grade_one(sub, tmp_path / "out", config)
    results = json.loads((tmp_path / "out" / "alice" / "results.json").read_text())
    digests = results["extra_data"]["digests"]
    assert results["extra_data"]["status"] == "error"
    assert digests["submission"] == hashlib.sha256(b"impl.py\x006\x00x = 1\n").hexdigest()
    files = ["tests/components/_doubles.py", "tests/components/test_dyn.py", "tests/conftest.py",
             "tests/hidden/test_hidden_dyn.py"]  # fmt: skip
    assert digests["tests"] == {f: sha256(kit / f) for f in files}
    assert digests["modules"]["tests/components/test_dyn.py"] == {
        "components": ["Dyn"], "uses": ["tests/components/_doubles.py", "tests/conftest.py"]}
    assert digests["kit"] == "9.9.9-test"


def test_lowered_score_names_the_changed_test_source(tmp_path: Path, kit: Path) -> None:
    """A score that went down because the test's module changed is lowered, with "test source changed"."""
    alice = make_submission(tmp_path, "alice")
    old = make_out(tmp_path / "old", [(alice, kit)])
    (kit / "tests" / "components" / "test_dyn.py").write_text(TEST_DYN + "# stricter\n")
    new = make_out(tmp_path / "new", [(alice, kit, {"failures": ("test_a",)})])
    diff = diff_outputs(old, new)
    [lowered] = diff.lowered
    [change] = lowered.tests
    assert (lowered.name, lowered.score_before, lowered.score_after) == ("alice", 3, 2)
    assert change.change == "pass -> fail" and change.causes == ["test source changed: tests/components/test_dyn.py"]
    assert not diff.flaky
    md, _ = write_regrade(diff, new)
    assert "test source changed: tests/components/test_dyn.py" in md.read_text()


def test_pass_to_fail_with_nothing_changed_is_flagged_flaky(tmp_path: Path, kit: Path) -> None:
    """A verdict that changed with the same submission, tests, status and kit leads regrade.md as flaky."""
    alice = make_submission(tmp_path, "alice")
    old = make_out(tmp_path / "old", [(alice, kit)])
    new = make_out(tmp_path / "new", [(alice, kit, {"failures": ("test_h",)})])
    diff = diff_outputs(old, new)
    [(sub, test)] = diff.flaky
    assert (sub.name, test.name, test.hidden, test.causes) == ("alice", "Dyn [shape] test_h", True, [])
    text = write_regrade(diff, new)[0].read_text()
    assert text.index("WARNING: 1 verdict(s) changed with nothing changed") < text.index("## Lowered scores")
    assert FLAKY in text
    rows = list(csv.DictReader(open(new / "regrade.csv")))
    assert [(r["test"], r["change"], r["flaky"]) for r in rows] == [
        ("", "score lowered", "yes"), ("Dyn [shape] test_h", "pass -> fail", "yes")]


def test_changed_submission_is_named_as_the_cause(tmp_path: Path, kit: Path) -> None:
    """A resubmitted submission (another digest) whose verdict changed is explained by "submission changed"."""
    old = make_out(tmp_path / "old", [(make_submission(tmp_path, "alice"), kit, {"failures": ("test_b",)})])
    fixed = make_submission(tmp_path, "alice", code="x = 2\n")
    new = make_out(tmp_path / "new", [(fixed, kit)])
    [raised] = diff_outputs(old, new).raised
    assert raised.causes == ["submission changed"] and raised.tests[0].change == "fail -> pass"


def test_submissions_only_in_one_folder_are_listed(tmp_path: Path, kit: Path) -> None:
    """Submissions graded only in OLD or only in NEW are listed as such, in regrade.md and regrade.csv."""
    alice, bob, carol = (make_submission(tmp_path, n) for n in ("alice", "bob", "carol"))
    old = make_out(tmp_path / "old", [(alice, kit), (bob, kit)])
    new = make_out(tmp_path / "new", [(alice, kit), (carol, kit)])
    diff = diff_outputs(old, new)
    assert ([g.name for g in diff.only_old], [g.name for g in diff.only_new], diff.unchanged) == (
        ["bob"], ["carol"], ["alice"])
    md, table = write_regrade(diff, new)
    assert "## Only in OLD" in md.read_text() and "- bob: 3 (graded)" in md.read_text()
    assert [(r["submission"], r["change"]) for r in csv.DictReader(open(table))] == [
        ("bob", "only in OLD"), ("carol", "only in NEW")]


def test_old_without_digests_says_cause_unknown(tmp_path: Path, kit: Path) -> None:
    """A submission graded by an older kit (no digests) has an unknown cause, and is not called flaky."""
    alice = make_submission(tmp_path, "alice")
    old = make_out(tmp_path / "old", [(alice, kit, {"digests": False})])
    new = make_out(tmp_path / "new", [(alice, kit, {"failures": ("test_a",)})])
    diff = diff_outputs(old, new)
    assert diff.lowered[0].causes == [NO_DIGESTS_OLD] and not diff.flaky


def test_previous_with_a_lowered_score_holds_the_gradebook(tmp_path, kit, monkeypatch, capsys, signals) -> None:
    """--previous with a lowered score: gradebook.proposed.csv, no gradebook.csv, exit 4, lowered on stderr."""
    alice, bob = make_submission(tmp_path, "alice"), make_submission(tmp_path, "bob")
    old = make_out(tmp_path / "old", [(alice, kit), (bob, kit)])
    new = tmp_path / "new"
    fake_batch(monkeypatch, kit, {"alice": ("test_b",)})
    assert cli.main([str(alice), str(bob), "--out", str(new), "--previous", str(old)]) == 4
    assert sorted(p.name for p in new.glob("*.*")) == ["gradebook.proposed.csv", "regrade.csv", "regrade.md"]
    err = capsys.readouterr().err
    assert "1 score(s) went down" in err and f"alice: 3 -> 2 ({FLAKY})" in err and "bob" not in err


def test_previous_removes_an_earlier_final_gradebook(tmp_path, kit, monkeypatch, signals) -> None:
    """A guarded batch into a folder with an earlier gradebook.csv leaves none when it holds the gradebook."""
    alice = make_submission(tmp_path, "alice")
    old = make_out(tmp_path / "old", [(alice, kit)])
    new = make_out(tmp_path / "new", [(alice, kit)])  # graded before, with its gradebook.csv
    (new / "alice" / "results.json").unlink()  # regraded now
    fake_batch(monkeypatch, kit, {"alice": ("test_a",)})
    assert cli.main([str(alice), "--out", str(new), "--previous", str(old)]) == 4
    assert not (new / "gradebook.csv").exists() and (new / "gradebook.proposed.csv").is_file()


def test_allow_lower_makes_the_held_gradebook_final(tmp_path, kit, monkeypatch, capsys, signals) -> None:
    """The same command again with --allow-lower: gradebook.csv (the proposed one is gone), exit 0."""
    alice = make_submission(tmp_path, "alice")
    old = make_out(tmp_path / "old", [(alice, kit)])
    new = tmp_path / "new"
    fake_batch(monkeypatch, kit, {"alice": ("test_a",)})
    argv = [str(alice), "--out", str(new), "--previous", str(old)]
    assert cli.main(argv) == 4
    assert cli.main(argv + ["--allow-lower"]) == 0
    assert (new / "gradebook.csv").is_file() and not (new / "gradebook.proposed.csv").exists()
    assert "--allow-lower: these scores went down and are final" in capsys.readouterr().err


def test_old_is_never_written(tmp_path, kit, monkeypatch, signals) -> None:
    """A guarded batch and a diff leave every file of OLD as it was (same names, same content)."""
    alice = make_submission(tmp_path, "alice")
    old = make_out(tmp_path / "old", [(alice, kit)])

    def snapshot() -> dict[str, str]:
        return {p.relative_to(old).as_posix(): sha256(p) for p in sorted(old.rglob("*")) if p.is_file()}

    before = snapshot()
    fake_batch(monkeypatch, kit, {"alice": ("test_a",)})
    assert cli.main([str(alice), "--out", str(tmp_path / "new"), "--previous", str(old)]) == 4
    assert cli.main(["diff", str(old), str(tmp_path / "new")]) == 0
    assert snapshot() == before


def test_previous_equal_to_out_is_refused(tmp_path, kit, monkeypatch, capsys, signals) -> None:
    """--previous naming the --out folder is a usage error (exit 2) naming both paths; nothing is graded."""
    alice = make_submission(tmp_path, "alice")
    out = make_out(tmp_path / "out", [(alice, kit)])
    monkeypatch.setattr(cli, "grade_batch", lambda *a, **k: pytest.fail("graded into OLD"))
    with pytest.raises(SystemExit) as exit_:
        cli.main([str(alice), "--out", str(out), "--previous", str(kit / ".." / "out")])
    err = capsys.readouterr().err
    assert exit_.value.code == 2 and f"--previous {kit}/../out and --out {out} are the same folder" in err


def test_diff_of_a_missing_folder_says_what_was_expected(tmp_path, kit, capsys) -> None:
    """`ca15-grade diff` on a missing OLD exits 2 naming the argument, what it expected and what it got."""
    new = make_out(tmp_path / "new", [(make_submission(tmp_path, "alice"), kit)])
    with pytest.raises(SystemExit) as exit_:
        cli.main(["diff", str(tmp_path / "nowhere"), str(new)])
    err = capsys.readouterr().err
    assert exit_.value.code == 2
    assert f"OLD: expected a ca15-grade output folder (NAME/results.json per submission, gradebook.csv), got " \
           f"{tmp_path / 'nowhere'}: it does not exist" in err
    assert not (new / "regrade.md").exists()


def test_previous_not_an_output_folder_is_refused_before_grading(tmp_path, kit, monkeypatch, capsys,
                                                                 signals) -> None:  # fmt: skip
    """--previous naming a folder with no results and no gradebook is a usage error naming --previous."""
    (tmp_path / "empty").mkdir()
    monkeypatch.setattr(cli, "grade_batch", lambda *a, **k: pytest.fail("graded despite a bad --previous"))
    with pytest.raises(SystemExit) as exit_:
        cli.main([str(make_submission(tmp_path, "alice")), "--out", str(tmp_path / "new"), "--previous",
                  str(tmp_path / "empty")])  # fmt: skip
    assert exit_.value.code == 2 and "--previous: expected a ca15-grade output folder" in capsys.readouterr().err
    assert not (tmp_path / "new").exists()
