"""Wall time of grading one submission (default: the reference) with this kit and with an earlier revision.

    python tests/bench/grading_time.py [--baseline REV] [--submission reference] [--runs 1] [--no-sandbox]

Both are measured in one run on the same machine (baseline first, then this kit, alternating when
``--runs`` > 1), with the notebook left out, as ``ca15-grade SUB --out DIR`` does it. The baseline is
checked out from this repository's git history into a temporary folder and run with this venv's python.
Prints one line per run and the ratio of the medians.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def grade_seconds(kit: Path, submission: Path, extra: list[str]) -> tuple[float, str]:
    with tempfile.TemporaryDirectory(prefix="ca15-bench-out-") as out:
        start = time.monotonic()
        proc = subprocess.run(
            [sys.executable, "-m", "grader", str(submission), "--out", out, "--no-notebook", *extra],
            cwd=kit, capture_output=True, text=True, env={"PYTHONPATH": str(kit), "PATH": "/usr/bin:/bin"},
        )  # fmt: skip
        seconds = time.monotonic() - start
    if proc.returncode != 0:
        raise SystemExit(f"grading with {kit} failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}")
    row = [line for line in proc.stdout.splitlines() if line.startswith(submission.name + ",")]
    return seconds, row[-1] if row else "?"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--baseline", default="1c7d566", help="git revision to compare with (default: 1c7d566)")
    parser.add_argument("--submission", type=Path, default=REPO / "reference")
    parser.add_argument("--runs", type=int, default=1)
    parser.add_argument("--no-sandbox", action="store_true", help="grade this kit with --no-sandbox")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="ca15-baseline-") as tmp:
        base = Path(tmp) / "kit"
        subprocess.run(["git", "worktree", "add", "--detach", str(base), args.baseline], cwd=REPO, check=True,
                       capture_output=True)  # fmt: skip
        try:
            times: dict[str, list[float]] = {"baseline": [], "this kit": []}
            for _ in range(args.runs):
                for label, kit, extra in (("baseline", base, []),
                                          ("this kit", REPO, ["--no-sandbox"] if args.no_sandbox else [])):  # fmt: skip
                    seconds, row = grade_seconds(kit, args.submission.resolve(), extra)
                    times[label].append(seconds)
                    print(f"{label:>9}: {seconds:7.1f} s  {row}", flush=True)
        finally:
            subprocess.run(["git", "worktree", "remove", "--force", str(base)], cwd=REPO, capture_output=True)
    ratio = statistics.median(times["this kit"]) / statistics.median(times["baseline"])
    print(f"this kit / baseline: {ratio:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
