"""What grading one correct submission costs: CPU-seconds and peak memory of the whole process tree, and where
the time goes (issue 26). Part of ``make bench``.

    python tests/bench/grading_cost.py [--submission PATH] [--no-notebook] [--jobs 1]

The submission defaults to the bundled correct one (``make submit``'s zip of ``reference/`` with the notebook,
as ``grader.authoring.examples`` writes it). ``ca15-grade`` runs in a cgroup of its own where this host lets us make
one (root on a cgroup-v1 host): CPU-seconds from ``cpuacct.usage`` and peak memory from the memory group's
``max_usage_in_bytes``, both over every process of the tree (the sandboxes' groups nest inside it). Elsewhere
CPU-seconds come from ``getrusage(RUSAGE_CHILDREN)`` (every reaped descendant) and the peak is only the
largest single process (``ru_maxrss``), and the output says so. Then the stage times and the ten most
expensive tests, from the results.json ``extra_data`` the grader writes.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import secrets
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
CGROUP_ROOT = Path("/sys/fs/cgroup")


def _own(controller: str) -> str:
    for line in Path("/proc/self/cgroup").read_text().splitlines():
        _, names, path = line.split(":", 2)
        if controller in names.split(","):
            return path.lstrip("/")
    raise OSError(f"no {controller} cgroup")


def _make_groups() -> dict[str, Path]:
    """A cpuacct and a memory group under this process's own (cgroup v1, root), or {} where we cannot."""
    if os.geteuid() != 0:
        return {}
    groups, name = {}, f"ca15-bench-{secrets.token_hex(4)}"
    try:
        for controller in ("cpuacct", "memory"):
            base = CGROUP_ROOT / ("cpu,cpuacct" if controller == "cpuacct" and (CGROUP_ROOT / "cpu,cpuacct").is_dir()
                                 else controller)  # fmt: skip
            group = base / _own(controller) / name
            group.mkdir()
            groups[controller] = group
    except OSError:
        for group in groups.values():
            group.rmdir()
        return {}
    return groups


def bundled_submission(dest: Path) -> Path:
    """The bundled correct submission (``reference.zip`` of ``grader.authoring.examples``), written into ``dest``."""
    sys.path.insert(0, str(REPO))
    from grader.authoring.examples import make_examples

    return make_examples(dest)[0]


def grade(submission: Path, out: Path, extra: list[str]) -> dict:
    """Grade ``submission`` with ``ca15-grade`` into ``out``; wall, CPU-seconds and peak memory of the tree."""
    groups = _make_groups()
    before = resource.getrusage(resource.RUSAGE_CHILDREN)

    def enter() -> None:  # in the child, before exec: every descendant inherits the groups
        for group in groups.values():
            (group / "tasks").write_text(str(os.getpid()))

    start = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", "grader", str(submission), "--out", str(out), "--jobs", "1", *extra],
                          cwd=REPO, capture_output=True, text=True, preexec_fn=enter)  # fmt: skip
    wall = time.monotonic() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != 0:
        raise SystemExit(f"ca15-grade failed ({proc.returncode}):\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}")
    figures = {"wall_s": wall}
    if groups:
        figures["cpu_s"] = int((groups["cpuacct"] / "cpuacct.usage").read_text()) / 1e9
        figures["peak_mib"] = int((groups["memory"] / "memory.max_usage_in_bytes").read_text()) / 2**20
        figures["accounting"] = "cgroup (every process of the tree)"
        for group in groups.values():
            group.rmdir()
    else:
        figures["cpu_s"] = (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)
        figures["peak_mib"] = after.ru_maxrss / 1024
        figures["accounting"] = "getrusage (CPU of reaped descendants; peak of the largest single process)"
    return figures


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--submission", type=Path, default=None, help="default: the bundled correct submission")
    parser.add_argument("--no-notebook", action="store_true", help="leave the notebook out")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="ca15-cost-") as tmp:
        submission = args.submission.resolve() if args.submission else bundled_submission(Path(tmp) / "examples")
        out = Path(tmp) / "out"
        figures = grade(submission, out, ["--no-notebook"] if args.no_notebook else [])
        results = json.loads(next(out.glob("*/results.json")).read_text())
    extra = results.get("extra_data", {})
    print(f"[grading_cost] {submission.name}: score {results.get('score')}, status {extra.get('status')}")
    print(f"  wall        {figures['wall_s']:8.1f} s")
    print(f"  CPU         {figures['cpu_s']:8.1f} s   ({figures['accounting']})")
    print(f"  peak memory {figures['peak_mib']:8.0f} MiB")
    for stage, seconds in (extra.get("stages") or {}).items():
        print(f"  stage {stage:<22} {seconds:8.1f} s")
    tests = sorted((extra.get("test_seconds") or {}).items(), key=lambda kv: -kv[1])[:10]
    if tests:
        print("  the ten most expensive tests:")
        for nodeid, seconds in tests:
            print(f"    {seconds:7.1f} s  {nodeid}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
