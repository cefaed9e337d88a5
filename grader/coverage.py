"""Task coverage: every solution region must be caught by a graded test (issue: generator).

For each region of ``reference/``, a *mutant* implementation root is built in which only that region is
replaced by its ``NotImplementedError`` stub; the graded tests that carry points are run against it and the
region counts as *caught* when at least one fails. A region that no test catches is either dead code or an
untested task: both are defects of the assignment.

Cost control: the test files that mention the region's function or class are tried first, non-convergence
tests before convergence tests, each run stopping at the first failure (``-x``); only a region that survives
those is run against the whole graded suite.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from grader.generate import REPO, Region, all_regions, strip_source

GRADED = [REPO / "tests" / "components", REPO / "tests" / "hidden"]


@dataclass(frozen=True)
class Coverage:
    """Whether a region is caught, and by which test (the first failing test's node id)."""

    region: Region
    caught_by: str | None

    @property
    def caught(self) -> bool:
        return self.caught_by is not None


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


def _first_failure(root: Path, files: list[Path], marker: str, timeout: float) -> str | None:
    if not files:
        return None
    cmd = [
        sys.executable, "-m", "pytest", "-x", "-q", "--no-header", "-rf", "--graded-only",
        "-p", "no:randomly", f"--impl={root}", "-m", marker, *map(str, files),
        "--isolation=none",  # the mutants are the kit's own code: the same requests and codec, without a worker
    ]  # fmt: skip
    env = {**os.environ, "CI": "1"}
    try:
        proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=timeout, env=env)
    except subprocess.TimeoutExpired:
        return f"(timeout after {timeout:.0f} s)"
    if proc.returncode == 1:
        match = re.search(r"^FAILED (\S+)", proc.stdout, re.MULTILINE)
        return match.group(1) if match else "(a test failed)"
    if proc.returncode in (0, 5):
        return None
    raise RuntimeError(f"pytest could not run for the mutant (exit {proc.returncode}):\n{proc.stdout}\n{proc.stderr}")


_PARSE_LOCK = threading.Lock()


def check_region(src: Path, region: Region, timeout: float = 900) -> Coverage:
    """Build the mutant of ``src`` with only ``region`` stubbed and find a graded test that fails on it."""
    with tempfile.TemporaryDirectory(prefix="ca15-mutant-") as tmp:
        root = Path(tmp) / "impl"
        shutil.copytree(src, root, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        target = root / region.path
        with _PARSE_LOCK:  # CPython 3.11's ast.parse is not thread-safe (python/cpython#106905)
            target.write_text(strip_source(target.read_text(encoding="utf-8"), region.path, only=region))
        files = _graded_files()
        near = relevant_files(region, files)
        rest = [f for f in files if f not in near]
        for group in (near, rest):
            for marker in ("not convergence", "convergence"):
                caught = _first_failure(root, group, marker, timeout)
                if caught:
                    return Coverage(region, caught)
    return Coverage(region, None)


def coverage(src: Path, jobs: int = 2, only: str = "") -> list[Coverage]:
    """Coverage of every region of ``src`` whose ``path:qualname`` contains ``only``."""
    regions = [r for r in all_regions(src) if only in f"{r.path}:{r.qualname}"]
    with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
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

