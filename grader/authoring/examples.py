"""The bundled example submissions, built from the kit and graded as a TA would (``make grade-examples``).

    python -m grader.authoring.examples [--out build/examples] [--jobs 2]

Four submissions are written to ``OUT/submissions`` and graded into ``OUT/grades``:
    reference   the full solution, as ``reference.zip``, exactly what ``make submit`` writes -> full marks
                (notebook points included)
    skeleton    the student starting point                 -> zero on every graded test
    partial     the solution with the planning/ and hierarchical_rl/ tasks left undone -> partial credit
    crashing    the solution, but importing it kills the interpreter (os._exit) -> zero, explained
Each has the layout of ``make submit`` (:mod:`grader.student.submit`): the implementation folders and the assignment
notebook as ``CA15.ipynb`` at the top level. The gradebook is printed at the end.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from pathlib import Path

from grader.authoring.generate import REPO, build, find_regions, strip_source
from grader.pipeline.grade import GradeConfig, grade_batch
from grader.student.submit import NOTEBOOK_NAME, submission_files, write_folder, write_zip

PARTIAL_UNDONE = ("planning/", "hierarchical_rl/")


def make_examples(dest: Path) -> list[Path]:
    """Write the four example submissions under ``dest`` (replaced) with the layout of ``make submit``; return
    their paths (``reference.zip``, then the folders ``skeleton``, ``partial``, ``crashing``)."""
    if dest.exists():
        shutil.rmtree(dest)
    with tempfile.TemporaryDirectory(prefix="ca15-examples-") as tmp:
        roots = Path(tmp)  # the implementation roots; each is then packed as a student's `make submit` would
        ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
        reference = roots / "reference"
        shutil.copytree(REPO / "reference", reference, ignore=ignore)
        skeleton = roots / "skeleton"
        build(REPO / "reference", skeleton)
        partial = roots / "partial"
        shutil.copytree(REPO / "reference", partial, ignore=ignore)
        for path in sorted(partial.rglob("*.py")):
            rel = str(path.relative_to(partial))
            if rel.startswith(PARTIAL_UNDONE) and find_regions(path.read_text(), rel):
                path.write_text(strip_source(path.read_text(), rel))
        crashing = roots / "crashing"
        shutil.copytree(REPO / "reference", crashing, ignore=ignore)
        init = crashing / "utils" / "__init__.py"
        init.write_text("import os\nos._exit(1)  # a submission that kills the interpreter on import\n" + init.read_text())
        notebook = REPO / "notebooks" / NOTEBOOK_NAME
        subs = [write_zip(submission_files(reference, notebook)[0], dest / "reference.zip")]
        for root in (skeleton, partial, crashing):
            subs.append(write_folder(submission_files(root, notebook)[0], dest / root.name))
    return subs


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
