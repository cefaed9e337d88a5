"""The class report (grader/pipeline/class_report.py, ``ca15-grade report OUT``, written at the end of every batch).

No grading runs here: each test builds an output folder as the grader leaves it, through the grader's own
``score``, ``gradescope_results`` and ``write_gradebook`` (so the files have exactly the format a batch
writes), from a miniature kit of one component, "Dyn": public tests test_a (1 point), test_b (1) and test_c
(2), and a hidden test_h (1).
"""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import pytest

import grader.pipeline.grade as grade
from grader.__main__ import main
from grader.pipeline.class_report import (REPORT_HTML, REPORT_JSON, STAFF_ONLY, GradedTest, discrimination,
                                 normalise_message, not_started, write_class_report)
from grader.pipeline.grade import GradeConfig, gradescope_results, score, write_gradebook

CONFIG = GradeConfig(run_notebook=False)
ENVIRONMENT = {"version": "0.1.0", "summary": "bwrap (fake)", "sandbox": {"engine": "bwrap"}}
POINTS = {"test_a": 1, "test_b": 1, "test_c": 2, "test_h": 1}
EXPECTED = [
    {"nodeid": f"tests/{'hidden/test_hidden_dyn' if name == 'test_h' else 'components/test_dyn'}.py::{name}",
     "component": "Dyn", "category": "shape", "points": points, "hidden": name == "test_h",
     "doc": f"{name} checks Dyn."}
    for name, points in POINTS.items()
]  # fmt: skip
TODO = "not started: Dyn.forward: the model's forward pass (model_based_rl/algorithms.py:42)"
WRONG = """impl = <implementation /tmp/ca15-ws-1x2y/submission (process isolation)>

>       assert out.shape == (4, 3)
E       AssertionError: shape (4, 2) at 0x7f3a9c, expected (4, 3)
E       assert (4, 2) == (4, 3)

/tmp/ca15-ws-1x2y/kit/tests/components/test_dyn.py:31: AssertionError"""
EVERYTHING_TODO = {name: TODO for name in POINTS}


def write_submission(out: Path, name: str, failures: dict[str, str], status: str = "graded",
                     seconds: float | None = 12.5) -> None:
    """``out/name/results.json`` as ``grader.pipeline.grade`` writes it: the tests named in ``failures`` fail with that
    message, the others pass."""
    records = [{"type": "test", "nodeid": e["nodeid"], "outcome": "failed" if n in failures else "passed",
                "message": failures.get(n, ""), "duration": 0.1}
               for n, e in zip(POINTS, EXPECTED)]  # fmt: skip
    scored = score(EXPECTED, SimpleNamespace(records=records), None, CONFIG)
    results = gradescope_results(scored, [], CONFIG, ENVIRONMENT)
    results["extra_data"].update({"status": status, **({"seconds": seconds} if seconds is not None else {})})
    (out / name).mkdir(parents=True)
    (out / name / "results.json").write_text(json.dumps(results, indent=2))


def make_out(tmp_path: Path, submissions: dict[str, dict[str, str]]) -> Path:
    """An output folder with one graded submission per entry (name: failures) and its gradebook."""
    out = tmp_path / "out"
    out.mkdir()
    for name, failures in submissions.items():
        write_submission(out, name, failures)
    write_gradebook(out)
    return out


def report_of(out: Path) -> dict:
    write_class_report(out)
    return json.loads((out / REPORT_JSON).read_text())


def entry_of(report: dict, name: str) -> dict:
    return next(t for t in report["tests"] if t["test"] == name)


def test_normalise_message_folds_numbers_paths_and_addresses() -> None:
    """Numbers, hex addresses, paths with their line numbers and whitespace runs fold to one form."""
    one = normalise_message("E   ValueError: got 3.5 (x=1e-06) at 0x7f3a in /tmp/ws-1/utils/x.py:12,  line 7")
    two = normalise_message("E   ValueError: got -12 (x=2.0) at 0xdead in /tmp/ws-9/utils/x.py:99, line 70")
    assert one == two == "ValueError: got <n> (x=<n>) at <hex> in <path>, line <n>"


def test_normalise_message_keeps_the_exception_line_of_a_traceback() -> None:
    """Of pytest's long report, the first exception line stays: not the code, not the location line."""
    assert normalise_message(WRONG) == "AssertionError: shape (<n>, <n>) at <hex>, expected (<n>, <n>)"


def test_normalise_message_keeps_the_judges_todo_line() -> None:
    """A TODO failure keeps the judge's one line, its file and line folded."""
    assert normalise_message(TODO) == "not started: Dyn.forward: the model's forward pass (<path>)"


def test_pass_rate_counts_only_started_submissions(tmp_path: Path) -> None:
    """A submission that has not started the component does not count in its tests' pass rates."""
    out = make_out(tmp_path, {"todo": EVERYTHING_TODO, "good": {"test_h": "x"}, "bad": {"test_a": WRONG}})
    a = entry_of(report_of(out), "test_a")
    assert (a["passed"], a["started"], a["pass_rate"]) == (1, 2, 0.5)


def test_component_shares_of_full_marks_and_not_started(tmp_path: Path) -> None:
    """Per component: mean points, share at full marks, share not started (0 points, only TODO failures)."""
    out = make_out(tmp_path, {"todo": EVERYTHING_TODO, "full": {}, "half": {"test_c": WRONG, "test_h": "x"},
                              "zero": {n: WRONG for n in POINTS}})  # fmt: skip
    dyn = report_of(out)["components"]["Dyn"]
    assert dyn["mean_points"] == (0 + 5 + 2 + 0) / 4
    assert (dyn["full_marks"], dyn["not_started"], dyn["not_started_names"]) == (0.25, 0.25, ["todo"])


def test_a_component_worth_no_points_is_always_started() -> None:
    """Given code (tests worth 0 points) has nothing to start, even when all its tests fail on a TODO."""

    def todo(name: str, points: int) -> GradedTest:
        return GradedTest(name, "Env", "shape", hidden=False, passed=False, score=0, max_score=points,
                          output=TODO)

    given, worth = todo("test_env", 0), todo("test_a", 1)
    assert not not_started([given], {given.key: TODO})
    assert not_started([worth], {worth.key: TODO})


def test_test_failing_alone_is_a_suspect(tmp_path: Path) -> None:
    """A test that fails for a submission passing every other test of its component is listed as a suspect."""
    out = make_out(tmp_path, {"alice": {"test_b": WRONG}, "bob": {},
                              "carol": {"test_a": WRONG, "test_b": WRONG}})  # fmt: skip
    report = report_of(out)
    assert entry_of(report, "test_b")["fails_alone"] == ["alice"]
    reasons = [s["reason"] for s in report["suspects"] if s["test"] == "test_b"]
    assert len(reasons) == 1 and reasons[0].startswith("fails alone for 1: alice")
    assert not [s for s in report["suspects"] if s["test"] == "test_a"]  # carol fails it, but not alone


def test_test_below_a_fifth_is_a_suspect(tmp_path: Path) -> None:
    """A test that fewer than 20 % of the started submissions pass (1 of 6) is a suspect; 2 of 6 is not."""
    subs = {f"s{i}": {"test_c": WRONG, "test_h": "x", **({"test_b": WRONG} if i > 1 else {})}
            for i in range(6)}  # fmt: skip
    subs["s0"] = {"test_h": "x"}
    report = report_of(make_out(tmp_path, subs))
    assert entry_of(report, "test_c")["pass_rate"] == pytest.approx(1 / 6)
    assert [s["reason"] for s in report["suspects"] if s["test"] == "test_c"] == [
        "pass rate 17% (below 20%) among 6 started submissions"]
    assert entry_of(report, "test_b")["flags"] == []


def test_discrimination_hand_computed_on_four_submissions(tmp_path: Path) -> None:
    """test_a passed by s1, s2 (rest of Dyn 3, 2), failed by s3, s4 (rest 1, 2): r = 0.25/sqrt(0.25*0.5)."""
    out = make_out(tmp_path, {"s1": {"test_h": "x"}, "s2": {"test_b": WRONG, "test_h": "x"},
                              "s3": {"test_a": WRONG, "test_c": WRONG, "test_h": "x"},
                              "s4": {"test_a": WRONG, "test_b": WRONG, "test_h": "x"}})  # fmt: skip
    assert entry_of(report_of(out), "test_a")["discrimination"] == pytest.approx(2**-0.5)


def test_discrimination_is_none_when_undefined() -> None:
    """No correlation when everyone passes, nobody varies, or fewer than two submissions took the test."""
    assert discrimination([True, True, True], [1, 2, 3]) is None
    assert discrimination([True, False], [2, 2]) is None
    assert discrimination([False], [1]) is None


def test_common_messages_are_counted_with_who_hit_them(tmp_path: Path) -> None:
    """Failures that differ only in numbers and paths count as one message, with who hit it."""
    other = WRONG.replace("0x7f3a9c", "0x11").replace("1x2y", "zz9")
    out = make_out(tmp_path, {"amy": {"test_c": WRONG}, "ben": {"test_c": other},
                              "cyd": {"test_c": "E   KeyError: 'x'"}})  # fmt: skip
    messages = entry_of(report_of(out), "test_c")["messages"]
    assert [(m["count"], m["submissions"]) for m in messages] == [(2, ["amy", "ben"]), (1, ["cyd"])]


def test_html_escapes_hostile_text(tmp_path: Path) -> None:
    """A message and a folder name with markup appear escaped in the HTML, never as markup."""
    hostile = "E   ValueError: <script>alert(1)</script>"
    out = make_out(tmp_path, {"eve<img src=x onerror=alert(2)>": {"test_a": hostile}})
    write_class_report(out)
    page = (out / REPORT_HTML).read_text()
    assert "<script" not in page and "<img src=x" not in page
    assert "&lt;script&gt;alert(&lt;n&gt;)&lt;/script&gt;" in page and "eve&lt;img src=x" in page


def test_report_says_staff_only(tmp_path: Path) -> None:
    """Both files say first that they are staff only (they name hidden tests and their results)."""
    json_path, html_path = write_class_report(make_out(tmp_path, {"amy": {}}))
    assert json.loads(json_path.read_text())["staff_only"] == STAFF_ONLY
    assert STAFF_ONLY in html_path.read_text().split("<h1>")[0]


def test_statuses_are_counted_and_missing_times_are_not_invented(tmp_path: Path) -> None:
    """Statuses fold into graded/unsandboxed/timeout/error/refused; a missing grading time stays missing."""
    out = make_out(tmp_path, {"amy": {}})
    write_submission(out, "ben", {}, status="graded, unsandboxed", seconds=30.0)
    write_submission(out, "cat", {n: "this test never reported a result" for n in POINTS}, status="timeout")
    grade._write_error(out / "gradebook.csv--refused", "refused: a reserved name", status="refused")
    report = report_of(out)
    assert report["statuses"] == {"graded": 1, "unsandboxed": 1, "timeout": 1, "error": 0, "refused": 1,
                                  "other": 0}  # fmt: skip
    assert report["grading_seconds"]["n"] == 3 and report["grading_seconds"]["max"] == 30.0
    assert report["grading_seconds"]["not_recorded"] == ["gradebook.csv--refused"]


def test_cli_refuses_a_missing_folder(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """``ca15-grade report`` on a folder that does not exist exits non-zero and names it."""
    missing = tmp_path / "no-such-out"
    assert main(["report", str(missing)]) != 0
    err = capsys.readouterr().err
    assert "OUT" in err and str(missing) in err and "does not exist" in err


def test_cli_refuses_a_folder_without_results(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """``ca15-grade report`` on a folder without NAME/results.json exits non-zero, saying what it wants."""
    assert main(["report", str(tmp_path)]) != 0
    assert "NAME/results.json" in capsys.readouterr().err
    assert not (tmp_path / REPORT_HTML).exists()


def test_cli_writes_the_report_and_prints_its_paths(tmp_path: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    """``ca15-grade report OUT`` writes both files and prints their paths, one a line."""
    out = make_out(tmp_path, {"amy": {}, "ben": {"test_b": WRONG}})
    assert main(["report", str(out)]) == 0
    assert capsys.readouterr().out.split() == [str(out / REPORT_JSON), str(out / REPORT_HTML)]
    assert (out / REPORT_HTML).read_text().count("data:image/png;base64,") == 2  # scores, grading times


def test_batch_end_writes_the_class_report(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``grade_batch`` writes the class report after the gradebook (a batch of one refused submission)."""
    monkeypatch.setattr(grade, "expected_tests", lambda config: [])
    out = tmp_path / "out"
    grade.grade_batch([tmp_path / "gradebook.csv"], out, GradeConfig(sandbox="none"), echo=lambda line: None)
    assert json.loads((out / REPORT_JSON).read_text())["statuses"]["refused"] == 1
    assert (out / REPORT_HTML).is_file()


def test_batch_keeps_the_gradebook_when_the_report_fails(tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """A class report that raises costs a warning, never the gradebook."""
    import grader.pipeline.class_report

    def broken(out_dir: Path) -> None:
        raise RuntimeError("boom")

    monkeypatch.setattr(grade, "expected_tests", lambda config: [])
    monkeypatch.setattr(grader.pipeline.class_report, "write_class_report", broken)
    lines: list[str] = []
    out = tmp_path / "out"
    config = GradeConfig(sandbox="none")
    gradebook = grade.grade_batch([tmp_path / "gradebook.csv"], out, config, echo=lines.append)
    assert gradebook.is_file() and "gradebook.csv--refused" in gradebook.read_text()
    warning = "warning: the class report could not be written (RuntimeError: boom)"
    assert any(line.startswith(warning) for line in lines)


def test_grading_cost_names_stage_times_and_the_most_expensive_tests(tmp_path: Path) -> None:
    """Stage seconds are summarised over the submissions; tests are ranked by their mean seconds (here b: 3, c: 2,
    a: 1), and a malformed time table is left out rather than crashing the report."""
    out = make_out(tmp_path, {"one": {}, "two": {}, "odd": {}})
    times = {"one": ({"notebook": 10.0, "tests": 20.0}, {"a": 1.0, "b": 2.0, "c": 2.0}),
             "two": ({"notebook": 14.0, "tests": 30.0}, {"a": 1.0, "b": 4.0, "<script>": 0.5}),
             "odd": ("not a table", {"a": "slow", "b": True})}  # fmt: skip
    for name, (stages, tests) in times.items():
        path = out / name / "results.json"
        results = json.loads(path.read_text())
        results["extra_data"].update({"stages": stages, "test_seconds": tests})
        path.write_text(json.dumps(results))
    cost = report_of(out)["grading_cost"]
    assert (cost["stages"]["notebook"]["mean"], cost["stages"]["tests"]["max"], cost["stages"]["tests"]["n"]) == (12.0, 30.0, 2)
    assert [(t["test"], t["mean_seconds"], t["submissions"]) for t in cost["expensive_tests"]] == [
        ("b", 3.0, 2), ("c", 2.0, 1), ("a", 1.0, 2), ("<script>", 0.5, 1)]
    page = (out / "class-report.html").read_text()
    assert "&lt;script&gt;" in page and "<script>" not in page and "most expensive tests" in page
