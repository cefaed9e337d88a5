"""``ca15-grade similarity`` (grader/pipeline/similarity.py): per component, disguised copies rank above independent
work, the handout never counts, and the report is a staff-only, escaped page that says it is no penalty.

The student code is in ``similarity_data/`` (see its README): three independent implementations of two
components' regions, written for this test, and two disguised copies of one of them.
"""

from __future__ import annotations

import ast
import csv
import json
import shutil
import zipfile
from itertools import combinations
from pathlib import Path

import pytest

from grader.authoring.generate import REPO
from grader.pipeline.similarity import (NOTEBOOK, STUDENT_CODE, compare_component, extract_notebook, handout, main,
                               read_student_code, save_student_code, similarity_report, student_code)

DATA = Path(__file__).parent / "similarity_data"
#: fixture folder -> (the skeleton file it fills, the component)
FIXTURES = {"running_stats": ("utils/running_stats.py", "RunningStats"),
            "mve": ("planning/mve.py", "ModelBasedValueExpansion")}  # fmt: skip
INDEPENDENT = ("a", "b", "c")
DISGUISED = ("b_disguised_1", "b_disguised_2")  # copies of b
VARIANTS = INDEPENDENT + DISGUISED


def family(name: str) -> str:
    return name.split("_")[0]


def read_regions(path: Path) -> tuple[dict[str, str], list[str]]:
    """A ``.regions`` fixture: {qualname: body at column 0} and the names to move to the end of the file."""
    regions: dict[str, list[str]] = {}
    moves: list[str] = []
    current = None
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.startswith("# @region "):
            current = regions.setdefault(line.split(maxsplit=2)[2].strip(), [])
        elif line.startswith("# @move-to-end "):
            moves.append(line.split(maxsplit=2)[2].strip())
        elif current is not None:
            current.append(line)
    return {name: "\n".join(body) for name, body in regions.items()}, moves


def fill(skeleton: str, regions: dict[str, str], moves: list[str] = ()) -> str:
    """``skeleton`` with each region's stub replaced by its body (at the stub's indentation), then each name
    in ``moves`` (a top-level function or class) moved to the end of the file."""
    lines = skeleton.splitlines()
    for qualname, body in regions.items():
        head = f'raise NotImplementedError("{qualname}:'
        stub = [i for i, line in enumerate(lines) if line.strip().startswith(head)]
        assert len(stub) == 1, f"no single stub for {qualname}"
        indent = lines[stub[0]][: len(lines[stub[0]]) - len(lines[stub[0]].lstrip())]
        lines[stub[0] : stub[0] + 1] = [indent + x if x.strip() else "" for x in body.splitlines()]
    text = "\n".join(lines) + "\n"
    for name in moves:
        node = next(n for n in ast.parse(text).body if getattr(n, "name", None) == name)
        start = min([node.lineno] + [d.lineno for d in getattr(node, "decorator_list", [])]) - 1
        lines = text.splitlines()
        moved, rest = lines[start : node.end_lineno], lines[:start] + lines[node.end_lineno :]
        text = "\n".join(rest).rstrip() + "\n\n\n" + "\n".join(moved) + "\n"
    ast.parse(text)  # still Python
    return text


def make_submission(folder: Path, variant: str | None, extra: dict[str, str] | None = None) -> Path:
    """A submission holding only the fixture components' files: the skeleton's (``variant`` None: untouched)
    or filled with ``variant``'s regions; ``extra``: {qualname: body} put into the running-stats file too."""
    for key, (rel, _) in FIXTURES.items():
        text = (REPO / "skeleton" / rel).read_text(encoding="utf-8")
        if variant is not None:
            regions, moves = read_regions(DATA / key / f"{variant}.regions")
            if key == "running_stats" and extra:
                regions.update(extra)
            text = fill(text, regions, moves)
        (folder / rel).parent.mkdir(parents=True, exist_ok=True)
        (folder / rel).write_text(text, encoding="utf-8")
    return folder


def graded_folder(out: Path, name: str, submission: Path) -> None:
    """``out/name`` as ``ca15-grade`` leaves it: results.json and student-code.json (saved at grading)."""
    (out / name).mkdir(parents=True)
    (out / name / "results.json").write_text(json.dumps({"score": 0, "tests": []}))
    log = save_student_code(submission, None, REPO, out / name / STUDENT_CODE)
    assert STUDENT_CODE in log[0]


def read_csv(path: Path) -> list[dict]:
    with open(path, newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def score(row: dict) -> float:
    return max(float(row["similarity_a_to_b"]), float(row["similarity_b_to_a"]))


@pytest.fixture(scope="module")
def batch(tmp_path_factory):
    """A graded folder of the five variants and two untouched skeletons, and its similarity report."""
    tmp = tmp_path_factory.mktemp("similarity")
    out = tmp / "out"
    for name in (*VARIANTS, "skeleton_1", "skeleton_2"):
        sub = make_submission(tmp / "subs" / name, None if name.startswith("skeleton") else name)
        graded_folder(out, name, sub)
    html_path, csv_path = similarity_report(out)
    return out, html_path, csv_path, read_csv(csv_path)


@pytest.mark.parametrize("key", sorted(FIXTURES))
def test_every_disguised_copy_ranks_above_every_independent_pair(batch, key):
    _, _, _, rows = batch
    component = FIXTURES[key][1]
    rows = [r for r in rows if r["component"] == component]
    scores = {frozenset((r["submission_a"], r["submission_b"])): (score(r), int(r["rank"])) for r in rows}
    copies = [frozenset(p) for p in combinations(("b", *DISGUISED), 2)]
    independent = [frozenset(p) for p in combinations(VARIANTS, 2) if family(p[0]) != family(p[1])]
    assert all(p in scores for p in copies), f"a disguised copy shares no code with b: {sorted(scores)}"
    worst_copy = min(scores[p][0] for p in copies)
    best_independent = max((scores.get(p, (0.0, 0))[0] for p in independent), default=0.0)
    summary = {"/".join(sorted(p)): round(scores.get(p, (0.0, 0))[0], 3) for p in copies + independent}
    assert worst_copy > best_independent, f"{component}: a copy scores no higher than independent work: " \
                                          f"{summary}"
    assert worst_copy >= 0.8, f"{component}: a disguised copy is not recognised as one: {summary}"
    assert best_independent < 0.5, f"{component}: independent work looks copied: {summary}"
    last_copy_rank = max(scores[p][1] for p in copies)
    assert all(scores[p][1] > last_copy_rank for p in independent if p in scores), summary


def test_the_untouched_skeleton_scores_zero(batch):
    out, _, _, rows = batch
    assert not [r for r in rows if "skeleton" in r["submission_a"] + r["submission_b"]]
    assert read_student_code(out / "skeleton_1" / STUDENT_CODE)["components"] == {}
    # the handout is also subtracted from the fingerprints: whole skeleton files as student code match nothing
    hand = handout(REPO)
    for rel, component in FIXTURES.values():
        text = (REPO / "skeleton" / rel).read_text(encoding="utf-8")
        pairs, _ = compare_component(component, {"x": text, "y": text}, hand.given(component))
        assert pairs == [], f"{component}: the skeleton compared with itself scores {pairs}"


def test_only_the_student_lines_are_extracted(tmp_path):
    sub = make_submission(tmp_path / "b_disguised_1", "b_disguised_1")
    doc = student_code(sub, None, REPO)
    assert sorted(doc["components"]) == ["ModelBasedValueExpansion", "RunningStats"]
    runs = doc["components"]["RunningStats"]
    assert {r["region"] for r in runs} == {"chan_merge", "RunningStats.update"}
    text = "\n".join(r["text"] for r in runs)
    assert "gap ** 2" in text and "np.var(arr, axis = 0)" in text
    assert '"""' not in text and "def " not in text and "NotImplementedError" not in text, text
    assert "planning/mve.py: not in the submission" not in doc["errors"]
    assert any(e.startswith("model_based_rl/") and "not in the submission" in e for e in doc["errors"])
    assert "no notebook in the submission" in doc["errors"]


def test_a_reformatted_handout_is_not_student_code(tmp_path):
    """Reformatting a whole file (an editor's format-on-save) changes every handout line, never its code."""
    def regions(sub: Path) -> dict[str, list[str]]:
        found = student_code(sub, None, REPO)["components"]
        return {c: [r["region"] for r in runs] for c, runs in found.items()}

    plain = regions(make_submission(tmp_path / "b", "b"))
    for variant in (None, "b"):
        sub = make_submission(tmp_path / f"{variant}-formatted", variant)
        for rel, _ in FIXTURES.values():
            (sub / rel).write_text(ast.unparse(ast.parse((sub / rel).read_text(encoding="utf-8"))))
        assert regions(sub) == ({} if variant is None else plain)


def test_a_file_that_does_not_parse_is_compared_line_by_line(tmp_path):
    sub = make_submission(tmp_path / "b", "b")
    path = sub / FIXTURES["running_stats"][0]
    path.write_text(path.read_text().replace("shift = mean_b - mean_a", "shift = mean_b - mean_a)"))
    runs = student_code(sub, None, REPO)["components"]["RunningStats"]
    assert [r["region"] for r in runs] == ["chan_merge", "RunningStats.update"]
    assert "shift = mean_b - mean_a)" in runs[0]["text"] and '"""' not in runs[0]["text"]


def test_notebook_cells_of_the_release_are_not_student_code():
    given = handout(REPO).notebook_cells
    book = json.loads((REPO / "notebooks" / "CA15.ipynb").read_text(encoding="utf-8"))
    assert extract_notebook("CA15.ipynb", book, given) == []
    book["cells"].append({"cell_type": "code", "id": "mine", "metadata": {}, "outputs": [],
                          "execution_count": None, "source": ["x = 1\n", "print(x)\n"]})  # fmt: skip
    runs = extract_notebook("CA15.ipynb", book, given)
    assert [(r["component"], r["text"]) for r in runs] == [(NOTEBOOK, "x = 1\nprint(x)\n")]


def test_report_says_it_is_evidence_not_a_penalty(batch):
    _, html_path, _, _ = batch
    page = html_path.read_text(encoding="utf-8")
    assert "never a penalty" in page[:2000] and "Staff only" in page[:2000]
    assert "<script" not in page
    assert "<mark>" in page  # the matching code is highlighted
    for component in ("RunningStats", "ModelBasedValueExpansion"):
        assert f"id='c-{component}'" in page


def test_hostile_code_is_escaped_and_csv_cells_neutralised(tmp_path):
    hostile = {"RunningStats.update": 'batch_mean = arr.mean(axis=0)  # </pre><script>alert(1)</script>\n'
                                      'note = "<script>alert(2)</script><img src=x onerror=alert(3)>"\n'
                                      "batch_m2 = ((arr - batch_mean) ** 2).sum(axis=0)"}  # fmt: skip
    out = tmp_path / "out"
    for name in ("hostile", "=copy"):
        graded_folder(out, name, make_submission(tmp_path / "subs" / name, "b", hostile))
    html_path, csv_path = similarity_report(out)
    page = html_path.read_text(encoding="utf-8")
    assert "&lt;script&gt;alert(2)&lt;/script&gt;" in page and "&lt;/pre&gt;" in page
    assert "<script" not in page and "<img" not in page
    rows = read_csv(csv_path)
    assert rows and not [r for r in rows if r["submission_a"][0] == "=" or r["submission_b"][0] == "="]


def test_cli_reads_submissions_and_past_terms(tmp_path, capsys):
    subs = tmp_path / "subs"
    out = tmp_path / "out"
    for name in ("b", "c"):  # graded before student-code.json existed: results.json only
        make_submission(subs / name, name)
        (out / name).mkdir(parents=True)
        (out / name / "results.json").write_text("{}")
    with zipfile.ZipFile(subs / "c.zip", "w") as archive:  # a zip, unpacked as the grader does
        for path in sorted((subs / "c").rglob("*")):
            archive.write(path, path.relative_to(subs / "c").as_posix())
    past = tmp_path / "past"
    make_submission(past / "b_disguised_1", "b_disguised_1")  # a past submission folder
    make_submission(past / "b_disguised_2", "b_disguised_2")  # a copy of the other past one: never compared
    argv = [str(out), "--submissions", str(subs / "b"), str(subs / "c.zip"), "--against", str(past)]
    assert main(argv) == 0
    assert capsys.readouterr().out.split() == [str(out / "similarity.html"), str(out / "similarity.csv")]
    rows = [r for r in read_csv(out / "similarity.csv") if r["component"] == "RunningStats"]
    assert (rows[0]["submission_a"], rows[0]["submission_b"]) in {("b", "past/b_disguised_1"),
                                                                  ("b", "past/b_disguised_2")}  # fmt: skip
    assert not [r for r in rows if r["submission_a"].startswith("past/")]  # current first; never past, past


@pytest.mark.parametrize("argv, message", [
    (["{missing}"],
     "OUT: expected the output folder of `ca15-grade SUB... --out OUT`, got {missing}: it does not exist"),
    (["{out}", "--against", "{missing}"], "--against: expected a folder of earlier terms' submissions"),
    (["{out}", "--submissions", "{file}"],
     "--submissions: expected submission folders or .zip files, got {file}"),
    (["{out}"], "holds none; pass the submissions with --submissions"),
    (["{out}", "--top", "0"], "--top: expected at least 1 pair per component, got 0"),
])  # fmt: skip
def test_bad_arguments_are_named(tmp_path, capsys, argv, message):
    (tmp_path / "out" / "x").mkdir(parents=True)
    (tmp_path / "out" / "x" / "results.json").write_text("{}")
    (tmp_path / "f.txt").write_text("")
    names = {"missing": str(tmp_path / "nope"), "out": str(tmp_path / "out"), "file": str(tmp_path / "f.txt")}
    with pytest.raises(SystemExit) as exc:
        main([a.format(**names) for a in argv])
    assert exc.value.code == 2
    assert message.format(**names) in capsys.readouterr().err


def test_extraction_never_raises(tmp_path):
    kit = tmp_path / "kit"  # no reference/: the Gradescope autograder's kit
    kit.mkdir()
    log = save_student_code(tmp_path, None, kit, tmp_path / STUDENT_CODE)
    doc = json.loads((tmp_path / STUDENT_CODE).read_text())
    assert doc["components"] == {} and "no handout" in doc["errors"][0] and log
    unwritable = tmp_path / "missing" / STUDENT_CODE
    assert save_student_code(tmp_path, None, REPO, unwritable)[0].startswith("could not write")
    shutil.rmtree(kit)


def test_ca15_grade_runs_it(batch, tmp_path, capsys):
    from grader.__main__ import _similarity
    from grader.__main__ import main as ca15_grade

    out = tmp_path / "out"
    shutil.copytree(batch[0], out)  # the batch's own report stays as the other tests read it
    assert ca15_grade(["similarity", str(out), "--top", "3"]) == 0
    assert capsys.readouterr().out.split() == [str(out / "similarity.html"), str(out / "similarity.csv")]
    _similarity(out)  # --similarity, at the end of a batch
    assert f"similarity (staff only): {out / 'similarity.html'}" in capsys.readouterr().out
    _similarity(tmp_path / "nowhere")  # a failure is reported, never raised: the gradebook stands
    assert "no similarity report" in capsys.readouterr().err
