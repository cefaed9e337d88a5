"""Grade submissions: unpack, execute the notebook, run the graded tests in a sandbox, score, report.

    ca15-grade SUBMISSION... --out DIR [--jobs N] [--no-notebook] [--wall SECONDS] [--submission-wall SECONDS]

Per submission ``NAME`` (a folder or a ``.zip``), written atomically once it is graded:
    DIR/NAME/results.json     Gradescope's format (hidden tests: visibility hidden, staff only, no output)
    DIR/NAME/feedback.md, feedback.html   per-component tables (public and hidden points apart), teaching
                              failure messages, each cut so that the report stays under 100 KB
    DIR/NAME/failures.txt     every failed public test's whole message
    DIR/NAME/notebook.ipynb   the executed notebook (when the submission has one)
    DIR/NAME/log.txt          the TA's log: sandbox output, limits hit
    DIR/NAME/student-code.json  staff only: the code the student wrote, per component (``ca15-grade similarity``)
and for the batch ``DIR/gradebook.csv`` (one row per submission, status graded / timeout / error). A batch
that is interrupted (even by SIGKILL) resumes where it stopped: submissions with a ``results.json`` are not
graded again.
"""

from __future__ import annotations

import csv
import json
import os
import re
import shutil
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field, replace
from pathlib import Path

from grader.judge.forkserver import spawn
from grader.pipeline.feedback import (component_split, failures_text, inert, inert_tree, notebook_text, render_html,
                             render_markdown, write_curves)
from grader.pipeline.regrade import PROPOSED, REGRADE_CSV, REGRADE_MD, grading_digests, submission_digest
from grader.judge.sandbox import (SANDBOX_USER, SHUTDOWN, Interrupted, Limits, ReportChannel, RunResult,
                            RunCgroup, WorkerSandbox, check_bwrap, check_kit_private, run_limited,
                            stop_everything)
from grader.pipeline.unpack import (EXPECTED_PACKAGES, NOTEBOOK_NAME, SKIPPED_DIRS, SubmissionError, find_notebook,
                                    find_root, submission_name, unpack)
from grader.version import kit_version

REPO = Path(__file__).resolve().parents[2]
CATEGORIES = ("shape", "gradient", "convergence", "property")


@dataclass
class GradeConfig:
    """Everything a grading run depends on besides the submission."""

    kit: Path = REPO
    python: str = sys.executable
    test_limits: Limits = field(default_factory=lambda: Limits(wall_seconds=1800, cpu_seconds=3600))
    notebook_limits: Limits = field(default_factory=lambda: Limits(wall_seconds=600, cpu_seconds=1200))
    cell_timeout: int = 120
    notebook_points: int = 5
    run_notebook: bool = True
    include_hidden: bool = True
    #: "bwrap": every worker in bubblewrap (checked before a batch starts); "user": every worker as the
    #: unprivileged ``sandbox_user`` (Gradescope without namespaces); "none": --no-sandbox (rlimits only)
    sandbox: str = "bwrap"
    #: the account the "user" engine runs workers as (setup.sh creates ``ca15-worker``)
    sandbox_user: str = SANDBOX_USER
    worker_limits: Limits = field(default_factory=lambda: Limits(wall_seconds=1800, cpu_seconds=3600))
    #: where each submission's temporary workspace is made (default: the system's temporary folder)
    workspace_root: Path | None = None
    #: grade only these test files (stems after ``test_``: ``("running_stats",)`` runs
    #: tests/components/test_running_stats.py and tests/hidden/test_hidden_running_stats.py); () is all of them
    only: tuple[str, ...] = ()
    #: wall-clock seconds for one whole submission (notebook and tests together; ``--submission-wall``)
    submission_wall: float = 2400.0
    #: fresh workers the judge may start per phase (public, hidden); then the rest of the phase fails
    max_fresh_workers: int = 25
    #: fork each judge (and the collection of the expected tests) from a warm interpreter that has imported
    #: torch, numpy and pytest once (grader/judge/forkserver.py); False starts each as a fresh ``python -m pytest``
    warm_judges: bool = True


def test_targets(config: GradeConfig) -> list[str]:
    """The graded test files or folders the judge runs: public, then hidden (when included); ``config.only``
    narrows them to the named files (Gradescope's smoke test grades one component)."""
    dirs = ["components"] + (["hidden"] if config.include_hidden else [])
    folders = [config.kit / "tests" / d for d in dirs if (config.kit / "tests" / d).is_dir()]
    if not config.only:
        return [str(f) for f in folders]
    files = [f / (f"test_{stem}.py" if f.name == "components" else f"test_hidden_{stem}.py")
             for stem in config.only for f in folders]  # fmt: skip
    return [str(f) for f in files if f.is_file()]


# ------------------------------------------------------------------------------------------- the workspace
def _private(path: Path) -> None:
    """Only the grader's account may read ``path`` (the unpacked submission): every sandboxed run gets its own
    copy, so that no run, a classmate's included, can read another submission through the workspace."""
    for p in [path, *path.rglob("*")]:
        p.chmod(0o700 if p.is_dir() else 0o600)


def prepare_workspace(ws: Path, submission: Path, config: GradeConfig) -> tuple[Path, Path | None]:
    """Unpack the submission into ``ws/submission`` (the grader's only). ``ws/workers`` holds one fresh folder per
    sandboxed run (each worker, the notebook), ``ws/judge`` is the judge's home, ``ws/scratch`` keeps what the
    grader copies out (the executed notebook). The kit's tests stay in the kit: only the judge reads them,
    and no sandboxed run can (see :class:`grader.judge.sandbox.WorkerSandbox`)."""
    left_out = unpack(submission, ws / "submission")
    if left_out:
        (ws / "left_out.json").write_text(json.dumps(left_out))  # one entry each, whatever a name holds
    root = find_root(ws / "submission")
    notebook = find_notebook(ws / "submission")
    for sub in ("scratch", "workers", "judge"):
        (ws / sub).mkdir()
    _private(ws / "submission")
    ws.chmod(0o711)  # runs reach their own folder under workers/ by its (unguessable) name; nobody lists these
    (ws / "workers").chmod(0o711)
    return root, notebook


def _judge_env(home: Path, config: GradeConfig) -> dict[str, str]:
    """The judge's environment: the kit on the path, ``home`` its home and temporary folder."""
    return {
        "PATH": f"{Path(config.python).parent}:/usr/bin:/bin",
        "PYTHONPATH": str(config.kit),
        "HOME": str(home),
        "TMPDIR": str(home),
        "HYPOTHESIS_STORAGE_DIRECTORY": str(home / ".hypothesis"),  # never inside the kit
        "MPLBACKEND": "Agg",
        "CI": "1",
        "OMP_NUM_THREADS": "1",
        "MKL_NUM_THREADS": "1",
        "PYTHONDONTWRITEBYTECODE": "1",
        "PYTHONHASHSEED": "0",
        "LANG": "C.UTF-8",
    }


def worker_sandbox(ws: Path, config: GradeConfig) -> WorkerSandbox:
    return WorkerSandbox(engine=config.sandbox, python=config.python, scratch=str(ws / "workers"),
                         limits=config.worker_limits, user=config.sandbox_user)  # fmt: skip


def run_tests(ws: Path, root: Path, config: GradeConfig) -> RunResult:
    """The judge: pytest with the kit's graded tests (public, then hidden), in a trusted process that never
    imports ``root``; every worker that runs ``root`` starts in the sandbox. Records come over the pipe."""
    kit = config.kit
    targets = test_targets(config)
    spec = ws / "judge" / "worker-sandbox.json"
    spec.write_text(worker_sandbox(ws, config).to_json())
    cmd = [
        config.python, "-m", "pytest", *targets, "-c", str(kit / "pyproject.toml"), "--rootdir", str(kit),
        "-p", "grader.judge.pytest_report", "-q", "--no-header", "-p", "no:randomly", "-p", "no:xdist",
        f"--impl={root}", "--graded-only", "--isolation=process", f"--worker-sandbox={spec}",
        "--fast-todo",  # a TODO ends a hypothesis test at its first example: no shrinking of NotImplementedError
        f"--max-fresh-workers={config.max_fresh_workers}",
    ]  # fmt: skip
    channel = ReportChannel()
    return run_limited(
        cmd, cwd=ws / "judge", env=_judge_env(ws / "judge", config),
        limits=replace(config.test_limits, memory_bytes=16 * 2**30, max_processes=max(1024, config.test_limits.max_processes)),
        channel=channel, spawn=spawn if config.warm_judges else None,
    )  # fmt: skip


#: Where the kit's own copy of the assignment notebook is put, beside the student's notebook, to be run.
ASSIGNMENT_COPY = ".ca15-assignment.ipynb"


def _read_json(path: Path) -> dict | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError, UnicodeDecodeError):
        return None
    return data if isinstance(data, dict) else None


def run_notebook(ws: Path, root: Path, notebook: Path, config: GradeConfig) -> tuple[RunResult, dict]:
    """Run the kit's own copy of the assignment notebook (its code cells, by id) against a fresh copy of the
    submission, in the sandbox (driver and kernel), beside the student's notebook so that relative paths
    resolve as in it; credit each cell from the ``execute_reply`` status the driver reports over the signed
    channel (:func:`grader.pipeline.notebook_credit.credit_run`), and require the submitted notebook to hold the
    assignment's cells. Cells the student added never run. Nothing the run writes is visible to the tests:
    its folder is removed before they start."""
    from grader.pipeline.notebook_credit import credit_run

    sandbox = replace(worker_sandbox(ws, config), limits=config.notebook_limits)
    base = sandbox.stage(ws / "submission")  # the whole submission: the notebook's own folder
    rel_root, rel_book = root.relative_to(ws / "submission"), notebook.relative_to(ws / "submission")
    assignment_path = config.kit / "notebooks" / NOTEBOOK_NAME
    assignment = _read_json(assignment_path) if assignment_path.is_file() else None
    run_book = rel_book.parent / ASSIGNMENT_COPY if assignment is not None else rel_book
    if assignment is not None:
        shutil.copy2(assignment_path, base / "submission" / run_book)
    channel = ReportChannel()
    report_env, key_fd = channel.sandbox_env()
    cmd = sandbox.command(base, lambda sub, tmp, out: [
        config.python, "-m", "grader.sandboxed.notebook", f"{sub}/{run_book}", "--impl", f"{sub}/{rel_root}",
        "--out", f"{out}/executed.ipynb", "--cell-timeout", str(config.cell_timeout), "--budget", "grading"],
        writable=True,
        extra_env=report_env)  # fmt: skip
    try:
        result = run_limited(cmd.argv, cwd=Path(cmd.cwd), env=cmd.env, limits=config.notebook_limits,
                             channel=channel, channel_env=False, drop_to=cmd.drop_to,
                             pass_fds=(*cmd.fds, key_fd), seccomp=cmd.seccomp)  # fmt: skip
        submitted = _read_json(ws / "submission" / rel_book)  # the grader's read-only copy, as data
        summary = inert_tree(credit_run(result.records, assignment or submitted, submitted))
        executed = base / "out" / "executed.ipynb"  # shown to the student; never credited
        if executed.is_file() and not executed.is_symlink() and executed.stat().st_size < 50 * 2**20:
            shutil.copy2(executed, ws / "scratch" / "executed.ipynb")
    finally:
        cmd.close()
        cmd.finish()
        os.close(key_fd)
        shutil.rmtree(base, ignore_errors=True)
    return result, summary


# --------------------------------------------------------------------------------------------- expectations
_EXPECTED: dict[tuple[Path, bool, tuple[str, ...]], list[dict]] = {}
_EXPECTED_LOCK = threading.Lock()


def expected_tests(config: GradeConfig) -> list[dict]:
    """The graded tests the kit defines (collected once from the kit itself, never from a submission)."""
    key = (config.kit, config.include_hidden, config.only)
    with _EXPECTED_LOCK:
        if key not in _EXPECTED:
            targets = test_targets(config)
            if not targets:
                raise ValueError(f"only={config.only!r}: no graded test file of that name in {config.kit / 'tests'}")
            channel = ReportChannel()
            with tempfile.TemporaryDirectory(prefix="ca15-collect-") as home:  # a judge's environment, its own home
                result = run_limited(
                    [config.python, "-m", "pytest", *targets, "--collect-only", "-q", "-p", "grader.judge.pytest_report",
                     "-p", "no:randomly", "-p", "no:xdist", "--graded-only", f"--impl={config.kit}"],  # never imports the impl
                    cwd=config.kit, env=_judge_env(Path(home), config), channel=channel,
                    spawn=spawn if config.warm_judges else None,
                    limits=Limits(wall_seconds=300, cpu_seconds=600, memory_bytes=8 * 2**30),
                )  # fmt: skip
            collected = [r for r in result.records if r.get("type") == "collected"]
            if not collected:
                raise RuntimeError(f"could not collect the kit's graded tests:\n{result.output[-3000:]}")
            _EXPECTED[key] = [_relative(t) for t in collected[0]["tests"]]
        return _EXPECTED[key]


def _relative(test: dict) -> dict:
    """A test record whose node id is relative to the tests folder (the same in the kit and a workspace)."""
    nodeid = test["nodeid"]
    idx = nodeid.find("tests/")
    return {**test, "nodeid": nodeid[idx:] if idx >= 0 else nodeid}


# ------------------------------------------------------------------------------------------------- scoring
def score(expected: list[dict], test_run: RunResult | None, notebook: dict | None, config: GradeConfig) -> dict:
    """Per-test scores, per-component and per-category subtotals, notebook points, and the total."""
    reported = {}
    if test_run is not None:
        for rec in test_run.records:
            if rec.get("type") == "test":
                reported[_relative(rec)["nodeid"]] = rec
    tests = []
    for exp in expected:
        rec = reported.get(exp["nodeid"])
        if rec is None:
            outcome, message = "not run", (
                "this test never reported a result: the test process stopped before it "
                "(crash, hard exit, time or memory limit), so it counts as failed"
            )
        else:
            outcome, message = rec["outcome"], inert(rec.get("message", ""))
        earned = exp["points"] if outcome == "passed" else 0
        tests.append({**exp, "outcome": outcome, "message": message, "score": earned,
                      "duration": (rec or {}).get("duration", 0.0), "curves": inert_tree((rec or {}).get("curves", []))})  # fmt: skip
    components: dict[str, dict] = {}
    categories = {c: {"score": 0, "max_score": 0} for c in CATEGORIES}
    for t in tests:
        comp = components.setdefault(t["component"], {"score": 0, "max_score": 0, "passed": 0, "tests": 0})
        comp["score"] += t["score"]
        comp["max_score"] += t["points"]
        comp["tests"] += 1
        comp["passed"] += t["outcome"] == "passed"
        categories[t["category"]]["score"] += t["score"]
        categories[t["category"]]["max_score"] += t["points"]
    nb_score = 0
    if notebook is not None and config.notebook_points:
        complete = not notebook.get("errors") and not notebook.get("missing") and not notebook.get("not_run")
        nb_score = config.notebook_points if notebook.get("ran") and complete else 0
    total = sum(t["score"] for t in tests) + nb_score
    max_total = sum(t["points"] for t in tests) + (config.notebook_points if config.run_notebook else 0)
    return {
        "tests": tests,
        "components": dict(sorted(components.items())),
        "categories": categories,
        "notebook": notebook,
        "notebook_score": nb_score,
        "score": total,
        "max_score": max_total,
    }


def gradescope_results(scored: dict, notes: list[str], config: GradeConfig, environment: dict | None = None) -> dict:
    """Gradescope's ``results.json``.

    Public tests are ``visible`` (name, docstring and failure message). Hidden tests keep their own row (name,
    points, passed or failed; never their message, which stays in the TA's ``log.txt``) with Gradescope
    visibility ``hidden``: staff see them, a student never does; the student sees the total score, and
    ``make test`` in the release lists the hidden points per component. ``environment``
    (:func:`grading_environment`) goes to ``extra_data.grader`` and to a last, 0-point row of visibility
    ``hidden`` that staff see on Gradescope: the kit's version, the sandbox engine and the limits in force.
    """
    entries = []
    for i, t in enumerate(scored["tests"], start=1):
        entry = {
            "name": f"{t['component']} [{t['category']}] {t['nodeid'].split('::', 1)[-1]}",
            "number": str(i),
            "score": t["score"],
            "max_score": t["points"],
            "status": "passed" if t["outcome"] == "passed" else "failed",
            "tags": [t["component"], t["category"]],
        }
        if t["hidden"]:  # staff only (Gradescope never shows a `hidden` row to the student); no message either
            entry["visibility"] = "hidden"
            entry["output"] = "Hidden test." if t["outcome"] == "passed" else "Hidden test: failed."
        else:
            entry["visibility"] = "visible"
            entry["output"] = (t["doc"] + ("\n\n" + t["message"] if t["message"] and t["outcome"] != "passed" else "")).strip()
        entries.append(entry)
    if config.run_notebook and config.notebook_points:
        nb = scored["notebook"] or {}
        entries.append({
            "name": "Notebook runs from start to finish", "number": str(len(entries) + 1),
            "score": scored["notebook_score"], "max_score": config.notebook_points, "visibility": "visible",
            "status": "passed" if scored["notebook_score"] else "failed",
            "output": notebook_text(nb),
        })  # fmt: skip
    if environment is not None:
        entries.append({
            "name": ENVIRONMENT_ROW, "number": str(len(entries) + 1), "score": 0, "max_score": 0,
            "status": "passed", "visibility": "hidden", "tags": ["grader"],
            "output": f"Kit {environment['version']}; sandbox: {environment['summary']}.",
        })  # fmt: skip
    return {
        "score": scored["score"],
        "output": "\n".join(notes) if notes else "Graded.",
        "visibility": "visible",
        "stdout_visibility": "hidden",
        "tests": entries,
        "extra_data": {"components": scored["components"], "categories": scored["categories"],
                       "public_hidden": component_split(scored),
                       **({"grader": environment} if environment is not None else {})},  # fmt: skip
    }


#: The name of results.json's staff-only row that records the grader's version and sandbox.
ENVIRONMENT_ROW = "Grader environment (staff only)"


def grading_environment(sandbox: WorkerSandbox, config: GradeConfig) -> dict:
    """The staff-visible facts of one grading: the kit's version, the sandbox engine and the limits really
    in force on this host (:meth:`WorkerSandbox.facts`), and a one-line summary of them."""
    facts = sandbox.facts()
    return {"version": kit_version(config.kit), "sandbox": facts, "summary": sandbox.summary(facts)}


# ------------------------------------------------------------------------------------------ one submission
def _explain(run: RunResult, limits: Limits, what: str) -> list[str]:
    notes = []
    if run.timed_out:
        notes.append(f"The {what} hit the wall-clock limit of {limits.wall_seconds:.0f} s and was stopped; "
                     "tests that had not reported count as failed (look for an infinite loop).")  # fmt: skip
    elif run.signal_name:
        notes.append(f"The {what} was killed by {run.signal_name} (a crash, or a limit: CPU "
                     f"{limits.cpu_seconds} s, memory {limits.memory_bytes >> 20} MiB); tests that had not "
                     "reported count as failed.")  # fmt: skip
    if run.output_truncated:
        notes.append(f"The {what} printed more than {limits.max_output_bytes >> 10} KiB; the rest was discarded.")
    if run.forged_records:
        notes.append("Unsigned lines were written to the grader's report pipe and ignored.")  # never their count
    return notes


#: What a lost worker did, in fixed words (never a number or text that the worker chose), and the phrases of
#: grader.judge.remote's WorkerLost messages that say so.
LOST_KINDS = (
    ("ran past its time limit", "ran past the time limit"),
    ("sent something that is not data", "not valid data|is larger than the"),
    ("could not import your code", "could not be imported|did not start properly"),
    ("had to be replaced too often (the rest of the run was not tried)", "was replaced \\d+ times"),
    ("crashed or was killed", "died while|is gone"),
)


def worker_notes(tests: list[dict]) -> list[str]:
    """One note for the public tests whose worker died, hung or sent non-data (each such test failed on its
    own). Hidden tests never count, and the note names fixed kinds only: a worker chooses its exit status and
    what it sends, so repeating either would let a hidden test's worker signal to the student."""
    lost = [t for t in tests if not t.get("hidden") and "WorkerLost" in t.get("message", "")]
    if not lost:
        return []
    kinds = [kind for kind, pattern in LOST_KINDS if any(re.search(pattern, t["message"]) for t in lost)]
    return [f"In {len(lost)} public test(s) the worker process running your code {' or '.join(kinds) or 'failed'}; "
            "each of those tests failed, and the next test started a fresh worker."]


def _remove(folder: Path) -> None:
    """Remove a workspace or staging folder, retrying while the last sandboxed processes of an interrupted
    run still write into it (they die with their parent, a moment later)."""
    for _ in range(50):
        shutil.rmtree(folder, ignore_errors=True)
        if not folder.exists():
            return
        time.sleep(0.1)


def grade_one(submission: Path, out_dir: Path, config: GradeConfig) -> dict:
    """Grade one submission and write its folder atomically; returns its gradebook row. Raises
    :class:`Interrupted`, writing nothing, when the grader is stopping (a resumed batch grades it again)."""
    staging = Path(tempfile.mkdtemp(prefix=f".{submission_name(submission)}.", suffix=".partial", dir=out_dir))
    try:
        return _grade_one(submission, out_dir, config, staging)
    finally:
        _remove(staging)


def _grade_one(submission: Path, out_dir: Path, config: GradeConfig, staging: Path) -> dict:
    name = submission_name(submission)
    final = out_dir / name
    log: list[str] = [f"submission: {submission}"]
    notes: list[str] = []
    status = "graded"
    start = time.monotonic()
    stages = _Stages(start)  # staff only: where the time went (results.json extra_data.stages)
    ws = Path(tempfile.mkdtemp(prefix="ca15-ws-", dir=config.workspace_root))
    try:
        try:
            root, notebook = prepare_workspace(ws, submission, config)
            log.append(f"implementation root: {root.relative_to(ws / 'submission')}/")
            if (ws / "left_out.json").is_file():
                skipped = [inert(entry) for entry in json.loads((ws / "left_out.json").read_text())]
                log.append(f"left out of the submission: {', '.join(skipped[:20])}")
                notes.append(f"{len(skipped)} entries of the submission were left out (links and special files are "
                             f"never graded): {', '.join(skipped[:5])}")  # fmt: skip
            sandbox = worker_sandbox(ws, config)
            environment = grading_environment(sandbox, config)
            log.append(f"worker sandbox: {sandbox.describe()}")
            log.append(f"limits in force: {environment['summary']}; kit {environment['version']}")
            if config.sandbox == "none":
                status = "unsandboxed"
        except SubmissionError as exc:
            status = "error"
            notes.append(f"Not graded: {exc}.")
            root = notebook = None
            environment = None
        stages.mark("unpack")
        submitted = submission_digest(ws / "submission")  # as graded, for a regrade's diff (grader/pipeline/regrade.py)
        if root is not None:  # staff only, never graded: the student's own code, for `ca15-grade similarity`
            try:
                from grader.pipeline.similarity import STUDENT_CODE, save_student_code

                log += save_student_code(root, notebook, config.kit, staging / STUDENT_CODE)  # never raises
            except Exception as exc:  # noqa: BLE001 - never worth a grade
                log.append(f"student code not saved: {type(exc).__name__}: {exc}")
        stages.mark("digests and student code")
        nb_summary = None
        if root is not None and config.run_notebook:
            if notebook is None:
                nb_summary = {"ran": False, "why": f"No notebook found: add your notebook as {NOTEBOOK_NAME} next to the "
                              f"implementation folders ({', '.join(p + '/' for p in EXPECTED_PACKAGES)}, utils), as "
                              "`make submit` does (it packs notebooks/CA15.ipynb as CA15.ipynb)."}  # fmt: skip
                notes.append(nb_summary["why"])
            else:
                nb_limits = replace(config.notebook_limits, wall_seconds=min(config.notebook_limits.wall_seconds,
                                                                             config.submission_wall))  # fmt: skip
                nb_run, nb_summary = run_notebook(ws, root, notebook, replace(config, notebook_limits=nb_limits))
                log += ["--- notebook ---", inert(nb_run.output)]
                notes += _explain(nb_run, config.notebook_limits, "notebook run")
                executed = ws / "scratch" / "executed.ipynb"
                if executed.is_file() and executed.stat().st_size < 50 * 2**20:
                    shutil.copy2(executed, staging / "notebook.ipynb")
        stages.mark("notebook")
        test_run = None
        left = config.submission_wall - (time.monotonic() - start)
        if root is not None and left < 10:
            status = "timeout"
            notes.append(f"The submission's time budget of {config.submission_wall:.0f} s was used up before the tests "
                         "could run (the notebook took it): every test counts as failed.")  # fmt: skip
        elif root is not None:
            test_limits = replace(config.test_limits, wall_seconds=min(config.test_limits.wall_seconds, left))
            test_run = run_tests(ws, root, replace(config, test_limits=test_limits))
            log += ["--- tests ---", inert(test_run.output)]
            notes += _explain(test_run, config.test_limits, "test run")
            finished = any(r.get("type") == "finished" for r in test_run.records)
            if not finished and not test_run.timed_out and not test_run.signal_name:
                reported = sum(r.get("type") == "test" for r in test_run.records)
                notes.append(
                    f"The test process ended early (exit status {test_run.returncode}) after {reported} tests had "
                    "reported; the rest count as failed. Likely cause: the code exits the interpreter "
                    "(sys.exit/os._exit) or crashes when it is imported or called."
                )
            if test_run.timed_out:
                status = "timeout"
            elif config.sandbox == "none":
                status = "graded, unsandboxed"
            elif config.sandbox == "user":
                status = f"graded, as {environment['sandbox']['account']} (no namespaces)"
        stages.mark("tests")
    finally:
        _remove(ws)
    if SHUTDOWN.is_set():  # the runs were stopped midway: their verdicts are not this submission's
        raise Interrupted(f"{name}: not graded, the grader is stopping")
    scored = score(expected_tests(config), test_run, nb_summary, config)
    notes += worker_notes(scored["tests"])
    try:  # what a regrade needs to explain itself (grader/pipeline/regrade.py); never worth a grade
        digests = grading_digests(submitted, config.kit, test_targets(config), expected_tests(config),
                                  kit_version(config.kit), notebook=config.run_notebook)  # fmt: skip
    except Exception as exc:  # noqa: BLE001
        digests = None
        log.append(f"no digests recorded: {type(exc).__name__}: {exc}")
    results = gradescope_results(scored, notes, config, environment)
    stages.mark("scoring")
    log += _write_reports(staging, [
        ("feedback.md", lambda: render_markdown(name, scored, notes)),
        ("failures.txt", lambda: failures_text(scored)),
        ("feedback.html", lambda: render_html(name, scored, notes)),
        ("learning curves", lambda: write_curves(scored, staging)),
    ])  # fmt: skip
    stages.mark("reporting")  # results.json comes last, with every stage: the folder moves into place after it
    results["extra_data"].update({"status": status, "seconds": round(time.monotonic() - start, 1),
                                  "stages": stages.seconds, **test_seconds(scored["tests"]),
                                  **({"digests": digests} if digests is not None else {})})  # fmt: skip
    (staging / "results.json").write_text(json.dumps(results, indent=2), errors="backslashreplace")
    (staging / "log.txt").write_text("\n".join(log), errors="backslashreplace")
    if final.exists():
        shutil.rmtree(final)
    os.replace(staging, final)
    return gradebook_row(name, results)


class _Stages:
    """Wall seconds per grading stage, each mark closing the stage that ran since the previous one."""

    def __init__(self, start: float) -> None:
        self._last, self.seconds = start, {}

    def mark(self, stage: str) -> None:
        now = time.monotonic()
        self.seconds[stage] = round(self.seconds.get(stage, 0.0) + now - self._last, 2)
        self._last = now


def test_seconds(tests: list[dict]) -> dict:
    """Staff-only timing of a run's tests: each test's seconds (as pytest measured them in the judge, all phases)
    and their sums for the public and the hidden tests."""
    per_test = {t["nodeid"]: round(float(t.get("duration") or 0.0), 3) for t in tests}
    return {"test_seconds": per_test,
            "test_seconds_total": {"public": round(sum(v for t, v in zip(tests, per_test.values()) if not t["hidden"]), 2),
                                   "hidden": round(sum(v for t, v in zip(tests, per_test.values()) if t["hidden"]), 2)}}  # fmt: skip


def _write_reports(folder: Path, reports: list) -> list[str]:
    """Write each ``(file name, render)`` into ``folder``; a report that fails to render or write is replaced
    by a note and logged, never raised: results.json, written after, and the score stand. Returns log lines."""
    log = []
    for filename, render in reports:
        try:
            text = render()
            if text is not None:
                (folder / filename).write_text(text, encoding="utf-8", errors="backslashreplace")
        except Exception as exc:  # noqa: BLE001 - a report is never worth a grade
            log.append(f"could not write {filename}: {type(exc).__name__}: {exc}")
            if filename.endswith((".md", ".html", ".txt")):
                (folder / filename).write_text(f"This report could not be written ({type(exc).__name__}); your score "
                                               "in results.json stands. Please tell the course staff.\n")  # fmt: skip
    return log


def gradebook_row(name: str, results: dict) -> dict:
    extra = results.get("extra_data", {})
    row = {"submission": name, "status": extra.get("status", "graded"), "score": results["score"]}
    if extra.get("why"):
        row["why"] = extra["why"]
    if extra.get("grader"):
        row["sandbox"] = extra["grader"].get("summary", "")
    row["max_score"] = sum(t["max_score"] for t in results["tests"])
    for comp, sub in extra.get("components", {}).items():
        row[comp] = sub["score"]
    return row


# ------------------------------------------------------------------------------------------------ batches
def _write_error(final: Path, why: str, status: str = "error") -> None:
    """A results.json with score 0 and ``status``, so that the gradebook lists the submission and says why."""
    staging = Path(tempfile.mkdtemp(prefix=f".{final.name}.", suffix=".partial", dir=final.parent))
    why = inert(why)
    results = {"score": 0, "output": why, "visibility": "visible", "tests": [],
               "extra_data": {"status": status, "why": why}}  # fmt: skip
    (staging / "results.json").write_text(json.dumps(results, indent=2))
    if final.exists():
        shutil.rmtree(final)
    os.replace(staging, final)


def write_gradebook(out_dir: Path, name: str = "gradebook.csv") -> Path:
    """``gradebook.csv`` (or ``name``: ``gradebook.proposed.csv`` for ``--previous``, grader/pipeline/regrade.py) from
    every graded submission folder in ``out_dir`` (written atomically)."""
    rows = []
    for path in sorted(out_dir.glob("[!.]*/results.json")):
        try:
            rows.append(gradebook_row(path.parent.name, json.loads(path.read_text())))
        except (json.JSONDecodeError, KeyError):
            rows.append({"submission": path.parent.name, "status": "error", "score": 0, "max_score": 0})
    columns = ["submission", "status", "score", "max_score"]
    columns += sorted({k for r in rows for k in r} - set(columns) - {"why", "sandbox"}) + ["sandbox", "why"]
    tmp = out_dir / ".gradebook.csv.partial"
    with open(tmp, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=columns, restval="")
        writer.writeheader()
        writer.writerows(rows)
    os.replace(tmp, out_dir / name)
    return out_dir / name


def progress_bar(done: int, total: int, width: int = 20) -> str:
    """``[#########-----------]  9/20`` for a batch ``done`` of ``total`` submissions through."""
    filled = round(width * done / total) if total else width
    return f"[{'#' * filled}{'-' * (width - filled)}] {done:>{len(str(total))}}/{total}"


#: Names in the output folder that belong to the grader, never to a submission.
RESERVED_NAMES = {"gradebook.csv", "gradebook", "submissions", "gradebook.canvas.csv", "gradebook.lms.csv",
                  "class-report.html", "class-report.json", PROPOSED, REGRADE_MD, REGRADE_CSV,
                  "similarity.html", "similarity.csv"}


def plan_names(submissions: list[Path]) -> tuple[list[Path], dict[str, str]]:
    """The submissions to grade and, for each one refused, its gradebook label and the reason: a name that is
    the grader's own (``gradebook.csv``) or that another submission already has (the first in sorted order
    keeps it). Refusing one never stops the batch."""
    keep: list[Path] = []
    refused: dict[str, str] = {}
    owner: dict[str, Path] = {}
    for sub in sorted(submissions, key=str):
        name = submission_name(sub)
        if name in RESERVED_NAMES:
            refused[f"{name}--refused"] = (f"{sub}: refused, its name {name!r} is one of the grader's output files; "
                                           "rename the submission and grade it again")  # fmt: skip
        elif name in owner:
            k = 2
            while f"{name}--duplicate-{k}" in refused:
                k += 1
            refused[f"{name}--duplicate-{k}"] = (f"{sub}: refused, its name {name!r} is already taken by "
                                                 f"{owner[name]}; rename one of them and grade it again")  # fmt: skip
        else:
            owner[name] = sub
            keep.append(sub)
    return keep, refused


def grade_batch(submissions: list[Path], out_dir: Path, config: GradeConfig, jobs: int = 1, echo=print,
                gradebook: str = "gradebook.csv") -> Path:
    """Grade every submission not graded yet (resume), ``jobs`` at a time; write the gradebook (as
    ``gradebook``: ``--previous`` writes ``gradebook.proposed.csv``, grader/pipeline/regrade.py)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    for stale in out_dir.glob(".*.partial"):
        shutil.rmtree(stale, ignore_errors=True) if stale.is_dir() else stale.unlink()
    submissions, refused = plan_names(submissions)
    for label, why in refused.items():
        if not (out_dir / label / "results.json").is_file():
            echo(f"refused: {why}")
            _write_error(out_dir / label, why, status="refused")
    todo = [s for s in submissions if not (out_dir / submission_name(s) / "results.json").is_file()]
    done = len(submissions) - len(todo)
    if done:
        echo(f"resuming: {done} of {len(submissions)} already graded")
    if config.sandbox == "bwrap":
        check_bwrap(config.python)  # fail closed: no sandbox, no grading (unless --no-sandbox)
    elif config.sandbox == "user":
        check_kit_private(config.kit)
    echo(f"worker sandbox: {worker_sandbox(out_dir, config).describe()}")
    expected_tests(config)  # collect once, before the workers start
    with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
        futures = {pool.submit(grade_one, s, out_dir, config): s for s in todo}
        try:
            for future in as_completed(futures):
                done += 1
                sub = futures[future]
                bar = progress_bar(done, len(submissions))
                try:
                    row = future.result()
                    echo(f"{bar} {row['submission']}: {row['status']}, {row['score']}/{row['max_score']}")
                except Interrupted:
                    continue  # not graded: the batch is stopping, and a rerun grades it
                except Exception as exc:  # noqa: BLE001 - one submission's grader failure never stops the batch
                    echo(f"{bar} {submission_name(sub)}: grader error: {type(exc).__name__}: {exc}")
                    _write_error(out_dir / submission_name(sub), f"internal grader error: {type(exc).__name__}: {exc}")
                write_gradebook(out_dir, gradebook)
        except BaseException:  # SIGTERM/SIGINT (grader.__main__), or anything else: stop every run, start none
            for future in futures:
                future.cancel()
            stop_everything()
            raise
        finally:
            write_gradebook(out_dir, gradebook)
    RunCgroup.sweep()
    written = write_gradebook(out_dir, gradebook)
    try:  # the staff's class report (grader/pipeline/class_report.py); it never costs the gradebook or a result
        from grader.pipeline.class_report import write_class_report

        write_class_report(out_dir)
    except Exception as exc:  # noqa: BLE001
        echo(f"warning: the class report could not be written ({type(exc).__name__}: {exc}); "
             f"`ca15-grade report {out_dir}` tries again")  # fmt: skip
    return written
