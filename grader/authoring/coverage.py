"""Task coverage: every solution region must be caught by a graded test (issue: generator).

For each region of ``reference/``, a *mutant* implementation root is built in which only that region is
replaced by its ``NotImplementedError`` stub; the graded tests that carry points are run against it and the
region counts as *caught* when at least one fails. A region that no test catches is either dead code or an
untested task: both are defects of the assignment.

Cost control: the test files that mention the region's function or class are tried first, non-convergence
tests before convergence tests, each run stopping at the first failure (``-x``); only a region that survives
those is run against the whole graded suite.

The full run is slow (minutes per component), so it is not repeated by every ``make test``: ``make coverage``
writes the lock file ``docs/coverage.json`` (committed), stamped with :func:`inputs_digest`, the SHA-256 of
everything that decides the outcome (the reference, the graded tests and the harness modules they run
through). The kit's test checks that the stamp matches the current files and that every region is caught.

    python -m grader.authoring.coverage [--jobs N] [--only SUBSTRING]   # run; a full run writes docs/coverage.json
    python -m grader.authoring.coverage --check                         # only check the record against the files
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from grader.authoring.generate import REPO, Region, all_regions, strip_source

GRADED = [REPO / "tests" / "components", REPO / "tests" / "hidden"]
RECORD = REPO / "docs" / "coverage.json"

#: The inputs that decide a mutation run's outcome, relative to the kit: folders (with the suffix of the
#: files that count, "" for every file) and single files. Nothing else (kit tests, docs, the grader's
#: reporting) can change which graded test fails on a mutant.
DIGEST_FOLDERS: tuple[tuple[str, str], ...] = (("reference", ".py"), ("tests/components", ""), ("tests/hidden", ""))
DIGEST_FILES: tuple[str, ...] = (
    "tests/conftest.py",
    *(f"grader/{name}.py" for name in ("sandboxed/impl", "judge/markers", "judge/remote", "sandboxed/codec",
                                        "sandboxed/worker", "judge/episodes")),
)
STALE = "reference/ or the graded tests changed since `{command}` last ran: run `{command}` and commit {record}"


@dataclass(frozen=True)
class Coverage:
    """Whether a region is caught, and by which test (the first failing test's node id)."""

    region: Region
    caught_by: str | None

    @property
    def caught(self) -> bool:
        return self.caught_by is not None


def digest_inputs(repo: Path = REPO) -> list[str]:
    """The files :func:`inputs_digest` hashes, relative to ``repo`` (POSIX separators), sorted; ``__pycache__``
    folders and byte code left out."""
    found: set[str] = set()
    for folder, suffix in DIGEST_FOLDERS:
        base = repo / folder
        if not base.is_dir():
            continue
        for path in base.rglob("*"):
            rel = path.relative_to(repo)
            if "__pycache__" in rel.parts or path.suffix in (".pyc", ".pyo") or not path.is_file():
                continue
            if path.name.endswith(suffix):
                found.add(rel.as_posix())
    found.update(f for f in DIGEST_FILES if (repo / f).is_file())
    return sorted(found)


def inputs_digest(repo: Path = REPO) -> str:
    """SHA-256 (hex) over ``(relative path, bytes)`` of every file of :func:`digest_inputs`, in sorted order.

    Each file contributes its path, its length and its bytes (length-prefixed, so that no two different file
    sets hash alike). The same digest stamps ``docs/coverage.json`` and ``docs/mutants.json``.
    """
    return files_digest(repo, digest_inputs(repo))


def files_digest(repo: Path, rels: list[str], digest: hashlib._Hash | None = None) -> str:
    """SHA-256 (hex) over ``(relative path, length, bytes)`` of the files ``rels`` of ``repo``, in the given
    order (a missing file counts as empty), continuing ``digest`` when one is given."""
    digest = digest or hashlib.sha256()
    for rel in rels:
        path = repo / rel
        data = path.read_bytes() if path.is_file() else b""
        digest.update(f"{rel}\0{len(data)}\0".encode())
        digest.update(data)
    return digest.hexdigest()


def stale_message(record: Path, digest: str, repo: Path = REPO, command: str = "make coverage") -> str | None:
    """Why the record at ``record`` does not describe the files of ``repo`` (``None`` when it does).

    ``digest`` is the current :func:`inputs_digest`; the message says what to run (``command``)."""
    rel = record.relative_to(repo) if record.is_relative_to(repo) else record
    how = STALE.format(record=rel, command=command)
    if not record.is_file():
        return f"{rel} is missing. {how}"
    try:
        stamped = json.loads(record.read_text(encoding="utf-8")).get("digest")
    except (json.JSONDecodeError, AttributeError) as exc:
        return f"{rel} is not a JSON object with a 'digest' ({exc}). {how}"
    if stamped != digest:
        return f"{rel}: expected digest {digest[:16]}... of the current files, got {str(stamped)[:16]}... {how}"
    return None


def coverage_record(results: list["Coverage"], digest: str) -> dict:
    """The JSON object of ``docs/coverage.json``: the digest and one entry per region, in region order."""
    regions = [
        {"path": c.region.path, "qualname": c.region.qualname, "begin": c.region.begin, "caught_by": c.caught_by}
        for c in results
    ]
    return {"digest": digest, "regions": regions}


def write_record(path: Path, record: dict) -> None:
    """Write ``record`` as sorted, indented JSON with a final newline (stable diffs)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(record, indent=1, sort_keys=True, ensure_ascii=False) + "\n", encoding="utf-8")


def _graded_files() -> list[Path]:
    return sorted(p for d in GRADED if d.is_dir() for p in d.rglob("test_*.py"))


def _snake(name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


def relevant_files(region: Region, files: list[Path]) -> list[Path]:
    """Test files that mention the region's class or function name (word match), the component's own test
    file (``test_<snake_case class>.py``) first, so that a region is credited to its own component."""
    names = {region.qualname.split(".")[0], region.qualname.split(".")[-1]}
    names.discard("<locals>")
    pattern = re.compile(r"\b(" + "|".join(map(re.escape, sorted(names))) + r")\b")
    near = [f for f in files if pattern.search(f.read_text(encoding="utf-8"))]
    own = _snake(region.qualname.split(".")[0])
    return sorted(near, key=lambda f: (own not in f.stem, str(f)))


class MutantTimeout(Exception):
    """A pytest run against a mutant did not finish within its time budget."""


def pytest_command(root: Path, files: list[Path], marker: str) -> list[str]:
    """The pytest command that runs the graded tests of ``files`` selected by ``marker`` against ``root``,
    stopping at the first failure."""
    return [
        sys.executable, "-m", "pytest", "-x", "-q", "--no-header", "-rf", "--graded-only",
        "-p", "no:randomly", f"--impl={root}", "-m", marker, *map(str, files),
        "--isolation=none",  # the mutants are the kit's own code: the same requests and codec, without a worker
    ]  # fmt: skip


def failed_test(returncode: int, stdout: str, stderr: str = "") -> str | None:
    """The node id of the first failing test of a pytest run (``None`` when nothing failed).

    Raises:
        RuntimeError: when pytest itself could not run (exit codes other than 0, 1 and 5).
    """
    if returncode == 1:
        match = re.search(r"^FAILED (\S+)", stdout, re.MULTILINE)
        return match.group(1) if match else "(a test failed)"
    if returncode in (0, 5):
        return None
    raise RuntimeError(f"pytest could not run for the mutant (exit {returncode}):\n{stdout}\n{stderr}")


def run_pytest(root: Path, files: list[Path], marker: str, timeout: float) -> str | None:
    """Run :func:`pytest_command` in a fresh process; the first failing test, or ``None``.

    Raises:
        MutantTimeout: when the run takes longer than ``timeout`` seconds (the process is killed).
    """
    if not files:
        return None
    env = {**os.environ, "CI": "1"}
    cmd = pytest_command(root, files, marker)
    try:
        proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=timeout, env=env)
    except subprocess.TimeoutExpired as exc:
        raise MutantTimeout(f"timeout after {timeout:.0f} s") from exc
    return failed_test(proc.returncode, proc.stdout, proc.stderr)


def _first_failure(root: Path, files: list[Path], marker: str, timeout: float) -> str | None:
    try:
        return run_pytest(root, files, marker, timeout)
    except MutantTimeout as exc:
        return f"({exc})"


def search_plan(region: Region, files: list[Path] | None = None, near_only: bool = False) -> list[tuple[list[Path], str]]:
    """The pytest runs that look for a test catching a mutant of ``region``, cheapest and nearest first:
    (test files, marker expression) pairs; the files that mention the region before the rest (unless
    ``near_only``), non-convergence tests before convergence tests."""
    files = _graded_files() if files is None else files
    near = relevant_files(region, files)
    groups = [near] if near_only else [near, [f for f in files if f not in near]]
    return [(group, marker) for group in groups if group for marker in ("not convergence", "convergence")]


def first_failure(
    root: Path,
    region: Region,
    timeout: float,
    near_only: bool = False,
    run: Callable[[Path, list[Path], str, float], str | None] = run_pytest,
) -> str | None:
    """The first graded test that fails against the implementation ``root`` (a mutant of ``region``),
    following :func:`search_plan`; ``None`` when every run passes.

    ``timeout`` bounds all runs together (seconds).

    Raises:
        MutantTimeout: when the runs have not found a failure when ``timeout`` is spent.
    """
    deadline = time.monotonic() + timeout
    for files, marker in search_plan(region, near_only=near_only):
        left = deadline - time.monotonic()
        if left <= 0:
            raise MutantTimeout(f"timeout after {timeout:.0f} s")
        caught = run(root, files, marker, left)
        if caught:
            return caught
    return None


_PARSE_LOCK = threading.Lock()


def check_region(src: Path, region: Region, timeout: float = 900) -> Coverage:
    """Build the mutant of ``src`` with only ``region`` stubbed and find a graded test that fails on it.

    A run that exceeds ``timeout`` counts as caught (a test's own timeout would fail it in grading)."""
    with tempfile.TemporaryDirectory(prefix="ca15-mutant-") as tmp:
        root = Path(tmp) / "impl"
        shutil.copytree(src, root, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        target = root / region.path
        with _PARSE_LOCK:  # CPython 3.11's ast.parse is not thread-safe (python/cpython#106905)
            target.write_text(strip_source(target.read_text(encoding="utf-8"), region.path, only=region))
        files = _graded_files()
        for group, marker in search_plan(region, files):
            caught = _first_failure(root, group, marker, timeout)
            if caught:
                return Coverage(region, caught)
    return Coverage(region, None)


def coverage(src: Path, jobs: int = 2, only: str = "") -> list[Coverage]:
    """Coverage of every region of ``src`` whose ``path:qualname`` contains ``only``."""
    regions = [r for r in all_regions(src) if only in f"{r.path}:{r.qualname}"]
    with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:  # the threads wait on pytest processes
        return list(pool.map(lambda r: check_region(src, r), regions))


def format_table(results: list[Coverage]) -> str:
    """A plain-text table: region, location, and the test that catches it (or UNCAUGHT)."""
    rows = [(f"{c.region.qualname}", f"{c.region.path}:{c.region.begin}", c.caught_by or "UNCAUGHT") for c in results]
    widths = [max([len(h)] + [len(r[i]) for r in rows]) for i, h in enumerate(("region", "where", "caught by"))]
    line = "  ".join(f"{{:<{w}}}" for w in widths)
    out = [line.format("region", "where", "caught by"), line.format(*("-" * w for w in widths))]
    out += [line.format(*r) for r in rows]
    caught = sum(c.caught for c in results)
    out.append(f"{caught}/{len(results)} regions caught")
    return "\n".join(out)



def main(argv: list[str] | None = None) -> int:
    """``make coverage``: run the mutation check; a full run (no ``--only``) writes ``docs/coverage.json``."""
    parser = argparse.ArgumentParser(description="Every solution region must be caught by a graded test.")
    parser.add_argument("--src", type=Path, default=REPO / "reference", help="reference root (default: reference/)")
    parser.add_argument("--jobs", type=int, default=2, help="parallel mutant runs (default: 2)")
    parser.add_argument("--only", default="", help="only regions whose path:qualname contains this (no record)")
    parser.add_argument("--record", type=Path, default=RECORD, help="the lock file (default: docs/coverage.json)")
    parser.add_argument("--check", action="store_true", help="only check the record against the current files")
    args = parser.parse_args(argv)
    if args.jobs < 1:
        parser.error(f"--jobs: expected a positive number of parallel runs, got {args.jobs}")
    if args.check:
        problem = stale_message(args.record, inputs_digest())
        print(problem or f"{args.record} is up to date", file=sys.stderr if problem else sys.stdout)
        return 1 if problem else 0
    digest = inputs_digest()  # taken before the run: files edited meanwhile leave the record stale, as they should
    started = time.monotonic()
    results = coverage(args.src, jobs=args.jobs, only=args.only)
    print(format_table(results))
    print(f"{time.monotonic() - started:.0f} s")
    if not args.only and args.src.resolve() == (REPO / "reference").resolve():
        write_record(args.record, coverage_record(results, digest))
        print(f"wrote {args.record}")
    return 0 if all(c.caught for c in results) else 1


if __name__ == "__main__":
    sys.exit(main())
