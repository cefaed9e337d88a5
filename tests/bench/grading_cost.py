"""What grading one correct submission costs: CPU-seconds and peak memory of the whole process tree, and where
the time goes (issue 26). Part of ``make bench``.

    python tests/bench/grading_cost.py [--submission PATH] [--no-notebook] [--baseline GIT-REF]

The submission defaults to the bundled correct one (``make submit``'s zip of ``reference/`` with the notebook,
as ``grader.authoring.examples`` writes it). ``ca15-grade`` runs in a cgroup of its own where this host lets us make
one (root on a cgroup-v1 host): CPU-seconds from ``cpuacct.usage`` and peak memory from the memory group's
``max_usage_in_bytes``, both over every process of the tree (the sandboxes' groups nest inside it). Elsewhere
CPU-seconds come from ``getrusage(RUSAGE_CHILDREN)`` (every reaped descendant) and the peak is only the
largest single process (``ru_maxrss``), and the output says so. Then the stage times and the ten most
expensive tests, from the results.json ``extra_data`` the grader writes. ``--baseline REF`` grades the same
submission first with the kit as it was at git commit REF (a temporary worktree using this kit's venv), and
prints both figures and their ratio: a comparison measured side by side, in one run on one machine.
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


def grade(submission: Path, out: Path, extra: list[str], kit: Path = REPO) -> dict:
    """Grade ``submission`` with ``ca15-grade`` of ``kit`` into ``out``; wall, CPU-seconds and peak memory of the
    tree."""
    groups = _make_groups()
    before = resource.getrusage(resource.RUSAGE_CHILDREN)

    def enter() -> None:  # in the child, before exec: every descendant inherits the groups
        for group in groups.values():
            (group / "tasks").write_text(str(os.getpid()))

    start = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", "grader", str(submission), "--out", str(out), "--jobs", "1", *extra],
                          cwd=kit, capture_output=True, text=True, preexec_fn=enter)  # fmt: skip
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
    parser.add_argument("--baseline", default=None, metavar="GIT-REF",
                        help="also grade with the kit at this commit, first, and print the ratio")
    args = parser.parse_args(argv)
    flags = ["--no-notebook"] if args.no_notebook else []
    with tempfile.TemporaryDirectory(prefix="ca15-cost-") as tmp:
        submission = args.submission.resolve() if args.submission else bundled_submission(Path(tmp) / "examples")
        baseline = _baseline(args.baseline, submission, Path(tmp), flags) if args.baseline else None
        out = Path(tmp) / "out"
        figures = grade(submission, out, flags)
        results = json.loads(next(out.glob("*/results.json")).read_text())
    _report(submission, figures, results)
    if baseline is not None:
        old, old_results = baseline
        print(f"[grading_cost] the same submission with the kit at {args.baseline}: score {old_results.get('score')}")
        print(f"  wall        {old['wall_s']:8.1f} s   (now {figures['wall_s'] / old['wall_s']:.2f} of it)")
        print(f"  CPU         {old['cpu_s']:8.1f} s   (now {figures['cpu_s'] / old['cpu_s']:.2f} of it)")
        print(f"  peak memory {old['peak_mib']:8.0f} MiB (now {figures['peak_mib'] / old['peak_mib']:.2f} of it)")
    return 0


def _baseline(ref: str, submission: Path, tmp: Path, flags: list[str]) -> tuple[dict, dict]:
    """Grade ``submission`` with the kit at git ``ref`` (a detached worktree with this kit's venv linked in)."""
    tree = tmp / "baseline-kit"
    subprocess.run(["git", "worktree", "add", "--detach", "--quiet", str(tree), ref], cwd=REPO, check=True)
    try:
        (tree / ".venv").symlink_to(REPO / ".venv")
        out = tmp / "baseline-out"
        figures = grade(submission, out, flags, kit=tree)
        return figures, json.loads(next(out.glob("*/results.json")).read_text())
    finally:
        subprocess.run(["git", "worktree", "remove", "--force", str(tree)], cwd=REPO, check=False)


def _report(submission: Path, figures: dict, results: dict) -> None:
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


if __name__ == "__main__":
    sys.exit(main())
