"""Calibrate the convergence tests: how often does a *correct* implementation pass each one?

``make calibrate`` (``python -m grader.calibrate``) runs every graded convergence test against the reference
and against *perturbed references* — correct implementations that differ from ours the way a student's may —
over many seeds, and prints each test's pass rate:

``reference``   the reference as it is;
``draw``        the reference with one extra draw from ``random``, ``numpy`` and ``torch``'s global generators
                before every public function or method call (another random-number order);
``fp``          the reference whose networks start from parameters perturbed by one part in a million, from a
                private generator (another floating-point order: the global random streams are untouched).

Seeds: ``pytest --seed-offset=k`` makes the ``seed`` fixture seed with ``k`` and ``reseed(n)`` with
``n + 1000·k``, so offset ``k`` is a different, reproducible draw of every seed a test uses; offset 0 is what
the grader runs. A test's *false-fail rate* for a correct implementation is estimated from the failures over
all variants and seeds; with no failure in ``n`` runs the rule of three bounds it by ``3/n`` (95%).

The table goes to stdout and, with ``--out``, to a Markdown file (docs/calibration.md).
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
GRADED = ("tests/components", "tests/hidden")
VARIANTS = ("reference", "draw", "fp")

#: Appended to every module of a perturbed copy; ``_ca15_perturb`` is written next to the packages.
HOOK = "\ntry:\n    import _ca15_perturb\n    _ca15_perturb.apply(globals(), {kind!r})\nexcept ImportError:\n    pass\n"

PERTURB_MODULE = '''"""Perturbations of a correct implementation (grader.calibrate): the semantics are unchanged."""
import functools, inspect, random

def _draw():
    random.random()
    try:
        import numpy
        numpy.random.random()
    except ImportError:
        pass
    try:
        import torch
        torch.rand(1)
    except ImportError:
        pass

def _drawing(fn):
    @functools.wraps(fn)
    def inner(*args, **kwargs):
        _draw()
        return fn(*args, **kwargs)
    return inner

def _nudged(init):
    @functools.wraps(init)
    def inner(self, *args, **kwargs):
        init(self, *args, **kwargs)
        import torch
        if not isinstance(self, torch.nn.Module):
            return
        gen = torch.Generator().manual_seed(12345)
        with torch.no_grad():
            for p in self.parameters():
                if p.is_floating_point():
                    p.mul_(1 + 1e-6 * torch.randn(p.shape, generator=gen, dtype=p.dtype).to(p.device))
    return inner

def apply(namespace, kind):
    name = namespace.get("__name__")
    for key, obj in list(namespace.items()):
        if getattr(obj, "__module__", None) != name or key.startswith("_"):
            continue
        if kind == "draw" and inspect.isfunction(obj):
            namespace[key] = _drawing(obj)
        elif inspect.isclass(obj):
            if kind == "draw":
                for attr, member in list(vars(obj).items()):
                    if inspect.isfunction(member) and (attr == "__init__" or not attr.startswith("_")):
                        setattr(obj, attr, _drawing(member))
            elif kind == "fp" and hasattr(obj, "parameters") and "__init__" in vars(obj):
                obj.__init__ = _nudged(obj.__init__)
'''


def perturbed_root(src: Path, kind: str, dest: Path) -> Path:
    """A copy of the implementation root ``src`` at ``dest`` with perturbation ``kind`` ("draw" or "fp")."""
    if kind not in ("draw", "fp"):
        raise ValueError(f"kind must be 'draw' or 'fp', got {kind!r}")
    shutil.copytree(src, dest, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    (dest / "_ca15_perturb.py").write_text(PERTURB_MODULE)
    for module in dest.rglob("*.py"):
        if module.name != "_ca15_perturb.py":
            module.write_text(module.read_text(encoding="utf-8") + HOOK.format(kind=kind), encoding="utf-8")
    return dest


@dataclass
class Tally:
    """Outcomes of one test per variant: passed and run counts, and the seed offsets that failed."""

    runs: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    passed: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    failed_at: dict[str, list[int]] = field(default_factory=lambda: defaultdict(list))


def junit_outcomes(path: Path) -> dict[str, bool]:
    """``{test id: passed}`` from a pytest JUnit XML file (skipped tests are left out)."""
    outcomes: dict[str, bool] = {}
    for case in ET.parse(path).getroot().iter("testcase"):
        if case.find("skipped") is not None:
            continue
        name = f"{case.get('classname', '')}::{case.get('name', '')}"
        outcomes[name] = case.find("failure") is None and case.find("error") is None
    return outcomes


def run_once(root: Path, offset: int, only: str, timeout: float, marker: str = "convergence") -> dict[str, bool]:
    """Every graded test selected by ``marker`` against ``root`` with seed offset ``offset``: ``{test: passed}``."""
    with tempfile.TemporaryDirectory(prefix="ca15-calibrate-") as tmp:
        xml = Path(tmp) / "junit.xml"
        cmd = [sys.executable, "-m", "pytest", *GRADED, "-q", "-p", "no:randomly", "-p", "no:cacheprovider",
               "--graded-only", "-m", marker, "--isolation=none", f"--impl={root}", f"--seed-offset={offset}",
               f"--junitxml={xml}", "--tb=no", "-o", "junit_family=xunit1"]  # fmt: skip
        if only:
            cmd += ["-k", only]
        env = {**os.environ, "CI": "1", "HYPOTHESIS_STORAGE_DIRECTORY": f"{tmp}/hypothesis"}
        try:
            subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired:
            return {}
        return junit_outcomes(xml) if xml.is_file() else {}


def calibrate(seeds: int, variants: list[str], only: str = "", jobs: int = 2, timeout: float = 1800,
              marker: str = "convergence", echo=print) -> dict[str, Tally]:  # fmt: skip
    """Run the tests selected by ``marker`` for ``seeds`` offsets per variant; the tallies per test."""
    tallies: dict[str, Tally] = defaultdict(Tally)
    with tempfile.TemporaryDirectory(prefix="ca15-perturbed-") as tmp:
        roots = {v: REPO / "reference" if v == "reference" else perturbed_root(REPO / "reference", v, Path(tmp) / v)
                 for v in variants}  # fmt: skip
        jobs_list = [(v, k) for k in range(seeds) for v in variants]
        start = time.monotonic()

        def one(job: tuple[str, int]) -> tuple[str, int, dict[str, bool]]:
            variant, offset = job
            return variant, offset, run_once(roots[variant], offset, only, timeout, marker)

        with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
            for done, (variant, offset, outcomes) in enumerate(pool.map(one, jobs_list), start=1):
                if not outcomes:
                    echo(f"warning: {variant} seed offset {offset}: no outcome (timeout or collection error)")
                for test, ok in outcomes.items():
                    tally = tallies[test]
                    tally.runs[variant] += 1
                    tally.passed[variant] += ok
                    if not ok:
                        tally.failed_at[variant].append(offset)
                failed = ", ".join(t.rsplit("::", 1)[-1] for t, ok in sorted(outcomes.items()) if not ok)
                echo(f"[{done}/{len(jobs_list)}] {variant} offset {offset}: {sum(outcomes.values())}/{len(outcomes)} "
                     f"passed ({time.monotonic() - start:.0f} s){' failed: ' + failed if failed else ''}")  # fmt: skip
    return dict(tallies)


def false_fail_bound(failures: int, runs: int) -> float:
    """Point estimate of the false-fail rate, or the rule-of-three 95% bound 3/n (at most 1) when nothing
    failed."""
    if runs <= 0:
        raise ValueError(f"runs must be positive, got {runs}")
    return failures / runs if failures else min(1.0, 3 / runs)


def format_table(tallies: dict[str, Tally], variants: list[str]) -> str:
    """A Markdown table: one row per test, pass counts per variant, the estimated false-fail rate."""
    head = ["test", *variants, "false-fail (est.)"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for test in sorted(tallies):
        t = tallies[test]
        cells = []
        for v in variants:
            cell = f"{t.passed[v]}/{t.runs[v]}"
            if t.failed_at[v]:
                cell += f" (fails at {', '.join(map(str, t.failed_at[v][:5]))})"
            cells.append(cell)
        runs = sum(t.runs[v] for v in variants)
        fails = runs - sum(t.passed[v] for v in variants)
        bound = false_fail_bound(fails, runs) if runs else float("nan")
        est = f"{bound:.1%}" + (" (≤, none failed)" if not fails else "")
        lines.append("| " + " | ".join([test, *cells, est]) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m grader.calibrate", description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=30, help="seed offsets per variant (default 30)")
    parser.add_argument("--variants", default=",".join(VARIANTS), help=f"comma list of {', '.join(VARIANTS)}")
    parser.add_argument("--only", default="", help="pytest -k expression restricting the tests")
    parser.add_argument("--jobs", type=int, default=2, help="pytest runs at once (default 2)")
    parser.add_argument("--marker", default="convergence",
                        help="pytest -m expression (default: convergence; 'not gpu' checks every graded test)")
    parser.add_argument("--out", type=Path, default=None, help="also write the table to this Markdown file")
    args = parser.parse_args(argv)
    variants = [v for v in args.variants.split(",") if v]
    unknown = sorted(set(variants) - set(VARIANTS))
    if unknown or not variants:
        parser.error(f"--variants: expected a comma list of {', '.join(VARIANTS)}, got {args.variants!r}")
    if args.seeds < 1:
        parser.error(f"--seeds: expected a positive number, got {args.seeds}")
    start = time.monotonic()
    tallies = calibrate(args.seeds, variants, args.only, args.jobs, marker=args.marker)
    table = format_table(tallies, variants)
    print(table)
    if args.out:
        header = (f"# Convergence calibration\n\n`python -m grader.calibrate --seeds {args.seeds} --variants "
                  f"{','.join(variants)} --marker {args.marker!r}{' --only ' + repr(args.only) if args.only else ''}` "
                  f"({time.monotonic() - start:.0f} s, {args.jobs} jobs). Each cell: runs passed / runs; a run is "
                  "one seed offset of the whole test (all of its internal seeds).\n\n")  # fmt: skip
        args.out.write_text(header + table + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
