"""Build the student release ``dist/student/`` from the kit (``make release``).

Contents:
    skeleton/            the student's working copy (generated from reference/, see grader.authoring.generate)
    notebooks/           the assignment notebook(s)
    tests/components/    the public graded tests, with every ``# BEGIN HIDDEN`` ... ``# END HIDDEN`` block dropped
    tests/conftest.py    the harness (and grader/student/dashboard.py: the per-component table, ``make test``)
    tests/hidden_points.json   the hidden tests' points per component, no test name (:func:`write_hidden_points`)
    grader/              only what the harness imports (impl, markers, the judge/worker codec, worker, remote,
                         episodes, sandbox) and ``submit`` (``make submit``: submission.zip, see grader.student.submit)
    constraints.txt, pyproject.toml, Makefile, README.md   install, test and submit commands for students
    .github/workflows/classroom.yml   GitHub Classroom's autograding: one step per component, its public
                         points (grader.authoring.classroom, from the grader's own point budget)

Never shipped: reference/, tests/hidden/, tests/kit/, the generator and the grader proper. The build is
refused if any solution line of reference/ would appear in it (:func:`leaked_solution_lines`).
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
from pathlib import Path

from grader.authoring.classroom import kit_budget, write_workflow
from grader.student.dashboard import HIDDEN_POINTS_FILE, TODO_SITES_FILE
from grader.authoring.generate import REPO, MarkerError, all_regions, build

BEGIN_HIDDEN = "# BEGIN HIDDEN"
END_HIDDEN = "# END HIDDEN"
#: The kit's files (relative to grader/) the release ships: the sandboxed side a worker needs, the judge side the
#: public tests import (the ``impl`` fixture's remote API, episodes, contracts, the sandbox engines) and the student
#: side (dashboard, submit); never the grading pipeline or the authoring tools.
HARNESS_MODULES = ("__init__.py",
                   "sandboxed/__init__.py", "sandboxed/impl.py", "sandboxed/codec.py", "sandboxed/worker.py",
                   "sandboxed/channel.py",
                   "judge/__init__.py", "judge/markers.py", "judge/remote.py", "judge/episodes.py", "judge/contracts.py",
                   "judge/sandbox.py", "judge/limits.py", "judge/seccomp.py",
                   "student/__init__.py", "student/submit.py", "student/dashboard.py")  # fmt: skip
STUDENT_FILES = REPO / "grader" / "student"


def strip_hidden(source: str, path: str = "<string>") -> str:
    """``source`` without its ``# BEGIN HIDDEN`` ... ``# END HIDDEN`` blocks (markers included).

    Raises:
        MarkerError: unbalanced or nested hidden markers, naming file and line.
    """
    out: list[str] = []
    open_at: int | None = None
    for number, line in enumerate(source.splitlines(keepends=True), start=1):
        text = line.strip()
        if text == BEGIN_HIDDEN:
            if open_at is not None:
                raise MarkerError(path, number, f"nested {BEGIN_HIDDEN!r} (the block at line {open_at} is open)")
            open_at = number
        elif text == END_HIDDEN:
            if open_at is None:
                raise MarkerError(path, number, f"{END_HIDDEN!r} without a matching {BEGIN_HIDDEN!r}")
            open_at = None
        elif open_at is None:
            out.append(line)
    if open_at is not None:
        raise MarkerError(path, open_at, f"{BEGIN_HIDDEN!r} is never closed by {END_HIDDEN!r}")
    return "".join(out)


def solution_lines(src: Path, min_tokens: int = 4) -> set[str]:
    """Stripped solution lines of ``src`` with at least ``min_tokens`` whitespace-separated tokens that do
    not also occur outside solution regions (those are given code, shipped anyway)."""
    lines: set[str] = set()
    given: set[str] = set()
    by_file: dict[str, list[tuple[int, int]]] = {}
    for region in all_regions(src):
        by_file.setdefault(region.path, []).append((region.begin, region.end))
    for path in sorted(src.rglob("*.py")):
        rel = str(path.relative_to(src))
        spans = by_file.get(rel, [])
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
            text = line.strip()
            if not text or text.startswith("#"):
                continue
            if any(b < number < e for b, e in spans):
                if len(text.split()) >= min_tokens:
                    lines.add(text)
            else:
                given.add(text)
    return lines - given


def leaked_solution_lines(release: Path, src: Path) -> list[str]:
    """``file: line`` for every solution line of ``src`` found in a text file of ``release``."""
    secret = solution_lines(src)
    leaks = []
    for path in sorted(p for p in release.rglob("*") if p.is_file()):
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            continue
        found = {line.strip() for line in text.splitlines()} & secret
        leaks += [f"{path.relative_to(release)}: {line}" for line in sorted(found)]
    return leaks


def hidden_points(expected: list[dict]) -> dict[str, int]:
    """``{component: points}`` of the hidden tests among ``expected`` (``grader.pipeline.grade.expected_tests``), for every
    component that has any; the same tests and points the grader scores, and nothing else (no name)."""
    points: dict[str, int] = {}
    for test in expected:
        if test.get("hidden") and test["points"] > 0:
            points[test["component"]] = points.get(test["component"], 0) + test["points"]
    return dict(sorted(points.items()))


def write_hidden_points(path: Path, repo: Path = REPO) -> Path:
    """Write the release's ``tests/hidden_points.json`` (read by ``grader.student.dashboard``: the "hidden" column)."""
    from grader.pipeline.grade import GradeConfig, expected_tests

    data = {"about": "points of the grader's hidden tests per component (not in this kit; the grader runs them)",
            "hidden_points": hidden_points(expected_tests(GradeConfig(kit=repo)))}  # fmt: skip
    path.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
    return path


def todo_sites(skeleton: Path, repo: Path = REPO) -> dict[str, list[dict]]:
    """``{component: [{"where": "skeleton/<path>:<line>", "todo": text}, ...]}``: every TODO of the skeleton
    (each ``raise NotImplementedError`` of a solution region, in file order), filed under the component whose
    graded test catches that region (docs/coverage.json, ``caught_by``). ``make test K=<component>`` lists
    them all: a test stops at its first TODO, so the later ones of a component never show there."""
    import ast

    from grader.pipeline.grade import GradeConfig, expected_tests

    component_of = {t["nodeid"]: t["component"] for t in expected_tests(GradeConfig(kit=repo))}
    regions = json.loads((repo / "docs" / "coverage.json").read_text(encoding="utf-8"))["regions"]
    owner = {(r["path"], r["qualname"]): component_of.get(r["caught_by"]) for r in regions}
    sites: dict[str, list[dict]] = {}
    for path in sorted({r["path"] for r in regions}):
        tree = ast.parse((skeleton / path).read_text(encoding="utf-8"))
        scopes: list[tuple[str, ast.AST]] = []

        def walk(node: ast.AST, prefix: str) -> None:
            for child in ast.iter_child_nodes(node):
                if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                    name = f"{prefix}{child.name}"
                    if not isinstance(child, ast.ClassDef):
                        scopes.append((name, child))
                    walk(child, name + ".")

        walk(tree, "")
        for qualname, fn in scopes:
            component = owner.get((path, qualname))
            if component is None:
                continue
            for node in ast.walk(fn):
                call = getattr(node, "exc", None) if isinstance(node, ast.Raise) else None
                if isinstance(call, ast.Call) and getattr(call.func, "id", "") == "NotImplementedError":
                    text = call.args[0].value if call.args and isinstance(call.args[0], ast.Constant) else qualname
                    sites.setdefault(component, []).append({"where": f"skeleton/{path}:{node.lineno}", "todo": text})
    return {c: sorted(v, key=lambda s: (s["where"].rsplit(":", 1)[0], int(s["where"].rsplit(":", 1)[1])))
            for c, v in sorted(sites.items())}  # fmt: skip


def doubles_for(tests: Path) -> dict[str, list[str]]:
    """``{component: [other components its tests replace by test doubles]}`` from each test file's
    ``DOUBLES_FOR`` tuple and its ``pytestmark`` component (docs/CONVENTIONS.md §3, "a bug is charged once")."""
    import ast

    found: dict[str, list[str]] = {}
    for path in sorted(tests.glob("test_*.py")):
        component, doubles = None, None
        for node in ast.parse(path.read_text(encoding="utf-8")).body:
            if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
                name = node.targets[0].id
                if name == "DOUBLES_FOR":
                    doubles = list(ast.literal_eval(node.value))
                elif name == "pytestmark" and isinstance(node.value, ast.Call) and node.value.args:
                    component = ast.literal_eval(node.value.args[0])
        if component and doubles:
            found[component] = doubles
    return found


def build_release(dst: Path, repo: Path = REPO) -> Path:
    """Write the student release into ``dst`` (replaced). Returns ``dst``.

    Raises:
        MarkerError: a solution or hidden marker problem.
        RuntimeError: a solution line would leak into the release.
    """
    with tempfile.TemporaryDirectory(prefix="ca15-release-") as tmp:
        out = Path(tmp) / "student"
        build(repo / "reference", out / "skeleton")
        shutil.copytree(
            repo / "notebooks", out / "notebooks", ignore=shutil.ignore_patterns(".ipynb_checkpoints", "__pycache__")
        )
        tests = out / "tests"
        (tests / "components").mkdir(parents=True)
        for path in sorted((repo / "tests" / "components").rglob("*.py")):
            rel = path.relative_to(repo / "tests" / "components")
            (tests / "components" / rel).parent.mkdir(parents=True, exist_ok=True)
            (tests / "components" / rel).write_text(strip_hidden(path.read_text(encoding="utf-8"), str(rel)))
        shutil.copy2(repo / "tests" / "conftest.py", tests / "conftest.py")
        write_hidden_points(tests / HIDDEN_POINTS_FILE, repo)
        (tests / TODO_SITES_FILE).write_text(json.dumps(
            {"about": "every TODO of skeleton/ per component (make test K=<component> lists them)",
             "todo_sites": todo_sites(out / "skeleton", repo), "doubles": doubles_for(tests / "components")},
            indent=1) + "\n", encoding="utf-8")  # fmt: skip
        for name in HARNESS_MODULES:
            (out / "grader" / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(repo / "grader" / name, out / "grader" / name)
        shutil.copy2(repo / "constraints.txt", out / "constraints.txt")
        for name in ("Makefile", "README.md", "pyproject.toml"):
            shutil.copy2(STUDENT_FILES / name, out / name)
        write_workflow(out, kit_budget(repo, shipped=out))
        leaks = leaked_solution_lines(out, repo / "reference")
        if leaks:
            raise RuntimeError("solution lines would leak into the release:\n  " + "\n  ".join(leaks[:20]))
        if dst.exists():
            shutil.rmtree(dst)
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.copytree(out, dst)
    return dst


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Build the student release (dist/student/).")
    parser.add_argument("--out", type=Path, default=REPO / "dist" / "student", help="default: dist/student")
    args = parser.parse_args(argv)
    try:
        build_release(args.out)
    except (MarkerError, RuntimeError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
