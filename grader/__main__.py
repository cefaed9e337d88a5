"""``ca15-grade`` / ``python -m grader``: grade submissions, or build the Gradescope autograder.

    ca15-grade SUBMISSION... --out DIR [--jobs N] [--no-notebook] [--no-hidden] [--no-sandbox] [--wall S]
               [--submission-wall S] [--memory MIB] [--roster ROSTER.csv] [--previous OLD [--allow-lower]]
    ca15-grade gradescope build [--out autograder.zip]
    ca15-grade gradescope run [--root /autograder]
    ca15-grade report OUT          the class report of a graded batch: OUT/class-report.json, .html (staff only)
    ca15-grade diff OLD NEW        what changed between two graded batches, and why: NEW/regrade.md, .csv (staff only)
    ca15-grade similarity OUT [--against PAST] [--submissions SUB...]
                                   similar student code per component: OUT/similarity.html, .csv (staff only;
                                   evidence for a human, never a penalty)
"""

from __future__ import annotations

import argparse
import signal
import sys
from dataclasses import replace
from pathlib import Path

from grader.pipeline.grade import GradeConfig, grade_batch
from grader.pipeline.lms import RosterRow, read_roster, write_lms_gradebooks
from grader.pipeline.regrade import HELD, PROPOSED, clear_final, finish_regrade, previous_problem
from grader.judge.sandbox import SandboxUnavailable, stop_everything


def _grade(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="ca15-grade", description="Grade CA15 submissions (folders or zips).")
    parser.add_argument("submissions", nargs="+", type=Path, help="submission folders or .zip files")
    parser.add_argument("--out", type=Path, required=True, help="output folder (results per submission, gradebook)")
    parser.add_argument("--jobs", type=int, default=1, help="submissions graded in parallel (default: 1)")
    parser.add_argument("--no-notebook", action="store_true", help="do not execute the notebooks")
    parser.add_argument("--no-hidden", action="store_true", help="public tests only")
    parser.add_argument("--wall", type=float, default=None, help="wall-clock seconds for one test run")
    parser.add_argument("--memory", type=int, default=None, help="memory limit (MiB) of one worker")
    parser.add_argument("--submission-wall", type=float, default=None,
                        help="wall-clock seconds for one whole submission, notebook and tests (default: 2400)")
    parser.add_argument("--no-sandbox", action="store_true",
                        help="run workers without bubblewrap (rlimits only); every result is marked unsandboxed")
    parser.add_argument("--cold-judges", action="store_true",
                        help="start every judge as a fresh `python -m pytest` instead of forking it from a warm "
                             "interpreter that imported torch once (about 2 CPU-seconds more per submission; the "
                             "same verdicts: grader/judge/forkserver.py)")
    parser.add_argument("--roster", type=Path, default=None, metavar="ROSTER.csv",
                        help="CSV with columns submission, student_id, name[, section]: also write "
                             "OUT/gradebook.canvas.csv and OUT/gradebook.lms.csv")
    parser.add_argument("--previous", type=Path, default=None, metavar="OLD",
                        help="an earlier output folder (only read): after grading, write OUT/regrade.md and .csv "
                             "(what changed and why); when a score went down, the gradebook stays "
                             f"OUT/{PROPOSED} and the exit status is {HELD} (grader/pipeline/regrade.py)")
    parser.add_argument("--allow-lower", action="store_true",
                        help="with --previous: make the gradebook final even though scores went down")
    parser.add_argument("--similarity", action="store_true",
                        help="after grading, also write OUT/similarity.html and .csv (staff only; as "
                             "`ca15-grade similarity OUT`, grader/pipeline/similarity.py)")
    parser.add_argument("--kit", type=Path, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.allow_lower and args.previous is None:
        parser.error("--allow-lower: only with --previous OLD")
    if args.previous is not None and (problem := previous_problem(args.previous, args.out)):
        parser.error(problem)
    missing = [str(s) for s in args.submissions if not s.exists()]
    if missing:
        parser.error(f"submissions: these do not exist: {', '.join(missing)}")
    if args.jobs < 1:
        parser.error(f"--jobs must be >= 1, got {args.jobs}")
    try:  # a bad roster is refused before anything is graded
        roster = read_roster(args.roster) if args.roster is not None else None
    except ValueError as exc:
        parser.error(f"--roster: {exc}")
    config = GradeConfig(run_notebook=not args.no_notebook, include_hidden=not args.no_hidden,
                         sandbox="none" if args.no_sandbox else "bwrap", warm_judges=not args.cold_judges)
    if args.kit is not None:
        config = replace(config, kit=args.kit.resolve())
    limits = config.test_limits
    if args.wall is not None:
        limits = replace(limits, wall_seconds=args.wall)
    config = replace(config, test_limits=limits)
    if args.submission_wall is not None:
        if args.submission_wall < 60:
            parser.error(f"--submission-wall: expected at least 60 seconds, got {args.submission_wall:g}")
        config = replace(config, submission_wall=args.submission_wall)
    if args.memory is not None:
        if args.memory < 512:
            parser.error(f"--memory: expected at least 512 MiB (a worker imports torch), got {args.memory}")
        config = replace(config, worker_limits=replace(config.worker_limits, memory_bytes=args.memory * 2**20))
    signal.signal(signal.SIGTERM, _stopped)
    signal.signal(signal.SIGINT, _stopped)
    guarded = {}
    if args.previous is not None:  # gradebook.csv appears only once the regrade check has passed
        clear_final(args.out.resolve())
        guarded = {"gradebook": PROPOSED}
    try:
        gradebook = grade_batch([s.resolve() for s in args.submissions], args.out.resolve(), config, jobs=args.jobs,
                                **guarded)  # fmt: skip
    except SandboxUnavailable as exc:
        print(f"ca15-grade: refusing to grade: {exc}", file=sys.stderr)
        return 3
    except Stopped as stop:
        graded = len(list(args.out.glob("*/results.json")))
        print(f"ca15-grade: interrupted by {stop.name}: its judges, workers and workspaces are gone; {graded} "
              "submission(s) have results. Run the same command again to grade the rest.", file=sys.stderr)
        return 128 + stop.signum
    held = 0
    if args.previous is not None:
        gradebook, held = finish_regrade(args.previous.resolve(), args.out.resolve(), args.allow_lower)
    print(f"\ngradebook{' (proposed, not final)' if held else ''}: {gradebook}")
    print(gradebook.read_text(), end="")
    if args.similarity:
        _similarity(args.out.resolve())
    if held:
        return held
    return 0 if roster is None else _write_lms(args.out.resolve(), roster)


def _similarity(out: Path) -> None:
    """``--similarity``: the similarity report of the batch; a failure is reported, never fatal."""
    try:
        from grader.pipeline.similarity import similarity_report

        for path in similarity_report(out):
            print(f"similarity (staff only): {path}")
    except Exception as exc:  # noqa: BLE001 - never worth the gradebook
        print(f"ca15-grade: no similarity report ({type(exc).__name__}: {exc}); `ca15-grade similarity {out}` "
              "tries again", file=sys.stderr)


def _write_lms(out: Path, roster: list[RosterRow]) -> int:
    """The LMS gradebooks of ``--roster``; every submission or student left without a grade goes to stderr."""
    try:
        report = write_lms_gradebooks(out, roster)
    except (ValueError, OSError) as exc:
        print(f"ca15-grade: no LMS gradebooks: {exc}", file=sys.stderr)
        return 1
    print(f"LMS gradebooks: {report.canvas} (Canvas), {report.generic} (Moodle, Blackboard)")
    for name in report.unmatched_submissions:
        print(f"roster: submission {name} has no roster row: it is not in the LMS gradebooks",
              file=sys.stderr)
    for row in report.missing_submissions:
        what = f"no submission {row.submission!r} was graded" if row.submission else "no submission named"
        print(f"roster: {row.describe()}: {what}: score left empty", file=sys.stderr)
    for row, status in report.not_graded:
        print(f"roster: {row.describe()}: submission {row.submission} has status {status}: score left empty",
              file=sys.stderr)
    for note in report.notes:
        print(f"roster: {note}", file=sys.stderr)
    return 0


class Stopped(BaseException):
    """SIGTERM or SIGINT reached ca15-grade."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum, self.name = signum, signal.Signals(signum).name


def _stopped(signum: int, frame) -> None:
    """Stop every judge, worker and notebook run now (grade_batch then removes the workspaces and writes
    nothing for the submissions in flight), and unwind the main thread."""
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    stop_everything()
    raise Stopped(signum)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["gradescope"]:
        from grader.pipeline.gradescope import main as gradescope_main

        return gradescope_main(argv[1:])
    if argv[:1] == ["report"]:
        from grader.pipeline.class_report import main as report_main

        return report_main(argv[1:])
    if argv[:1] == ["similarity"]:
        from grader.pipeline.similarity import main as similarity_main

        return similarity_main(argv[1:])
    if argv[:1] == ["diff"]:
        from grader.pipeline.regrade import main as diff_main

        return diff_main(argv[1:])
    return _grade(argv)


if __name__ == "__main__":
    sys.exit(main())
