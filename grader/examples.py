"""The bundled example submissions, built from the kit and graded as a TA would (``make grade-examples``).

    python -m grader.examples [--out build/examples] [--jobs 2]

Four submissions are written to ``OUT/submissions`` and graded into ``OUT/grades``:
    reference   the full solution                          -> full marks
    skeleton    the student starting point                 -> zero on every graded test
    partial     the solution with the planning/ and hierarchical_rl/ tasks left undone -> partial credit
    crashing    the solution, but importing it kills the interpreter (os._exit) -> zero, explained
Each carries the assignment notebook. The gradebook is printed at the end.
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

from grader.generate import REPO, build, find_regions, strip_source
from grader.grade import GradeConfig, grade_batch

PARTIAL_UNDONE = ("planning/", "hierarchical_rl/")


def _with_notebook(root: Path) -> None:
    notebook = REPO / "notebooks" / "CA15.ipynb"
    if notebook.is_file():
        shutil.copy2(notebook, root / "CA15.ipynb")


def make_examples(dest: Path) -> list[Path]:
    """Write the four example submissions under ``dest`` (replaced); return their folders."""
    if dest.exists():
        shutil.rmtree(dest)
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    reference = dest / "reference"
    shutil.copytree(REPO / "reference", reference, ignore=ignore)
    skeleton = dest / "skeleton"
    build(REPO / "reference", skeleton)
    partial = dest / "partial"
    shutil.copytree(REPO / "reference", partial, ignore=ignore)
    for path in sorted(partial.rglob("*.py")):
        rel = str(path.relative_to(partial))
        if rel.startswith(PARTIAL_UNDONE) and find_regions(path.read_text(), rel):
            path.write_text(strip_source(path.read_text(), rel))
    crashing = dest / "crashing"
    shutil.copytree(REPO / "reference", crashing, ignore=ignore)
    init = crashing / "utils" / "__init__.py"
    init.write_text("import os\nos._exit(1)  # a submission that kills the interpreter on import\n" + init.read_text())
    roots = [reference, skeleton, partial, crashing]
    for root in roots:
        _with_notebook(root)
    return roots


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=REPO / "build" / "examples")
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--no-notebook", action="store_true")
    args = parser.parse_args(argv)
    subs = make_examples(args.out / "submissions")
    grades = args.out / "grades"
    if grades.exists():
        shutil.rmtree(grades)
    gradebook = grade_batch(subs, grades, GradeConfig(run_notebook=not args.no_notebook), jobs=args.jobs)
    print(f"\ngradebook ({gradebook}):")
    print(gradebook.read_text(), end="")
    print(f"feedback per submission: {grades}/<name>/feedback.html")
    return 0


if __name__ == "__main__":
    sys.exit(main())
