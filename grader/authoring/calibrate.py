"""Calibrate the convergence tests: how often does a *correct* implementation pass each one?

``make calibrate`` (``python -m grader.authoring.calibrate``) runs every graded convergence test against the reference
and against *perturbed references* — correct implementations that differ from ours the way a student's may —
over many seeds, and prints each test's pass rate:

``reference``   the reference as it is;
``draw``        the reference with one extra draw from ``random``, ``numpy`` and ``torch``'s global generators
                before every public function or method call (another random-number order);
``fp``          the reference whose networks start from parameters perturbed by one part in a million, from a
                private generator (another floating-point order: the global random streams are untouched).

Seeds: ``pytest --seed-offset=k`` makes the ``seed`` fixture seed with ``k`` and ``reseed(n)`` with
``n + 1000·k``, so offset ``k`` is a different, reproducible draw of every seed a test uses; offset 0 is what
the grader runs. A majority test (the ``seed_trials`` fixture: it passes when ``need`` of its ``of`` seeds
learn) runs every seed here (``--all-seeds``) and records each seed's outcome, so one offset tries ``of``
seeds; ``--seeds N`` runs each test on enough offsets to try N seeds against the reference
(``--perturbed-seeds M``: M against each perturbed reference).

A test's *false-fail rate* for a correct implementation is estimated over all variants. For a majority test:
P(fewer than ``need`` of ``of`` seeds learn) at the per-seed failure rate p (binomial). For a test that checks
its statistics with the ``margin`` fixture: each check's values over the runs are fitted (Student-t prediction
of one more run, after a Box-Cox transform of value/threshold when both are positive) and the checks' rates
summed; the observed failure rate where it is larger. For any other test the failure rate of its runs. With
no failure in ``n`` seeds or runs the rule of three bounds the rate by ``3/n`` (95%).

The table goes to stdout and, with ``--out``, to a Markdown file (docs/calibration.md).
"""

from __future__ import annotations

import argparse
import json
import math
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

from grader.judge.markers import MARGIN, SEED_TRIAL

REPO = Path(__file__).resolve().parents[2]
GRADED = ("tests/components", "tests/hidden")
VARIANTS = ("reference", "draw", "fp")

#: Appended to every module of a perturbed copy; ``_ca15_perturb`` is written next to the packages.
HOOK = "\ntry:\n    import _ca15_perturb\n    _ca15_perturb.apply(globals(), {kind!r})\nexcept ImportError:\n    pass\n"

PERTURB_MODULE = '''"""Perturbations of a correct implementation (grader.authoring.calibrate): the semantics are unchanged."""
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
class Outcome:
    """One test in one pytest run: its verdict and, for a ``seed_trials`` test, each seed's outcome."""

    passed: bool
    learned: list[bool] = field(default_factory=list)  # one per seed run, in order
    rule: tuple[int, int] | None = None  # (need, of): the test passes when ``need`` of ``of`` seeds learn
    margins: list[tuple[str, float, str, float]] = field(default_factory=list)  # (what, value, op, threshold)


@dataclass
class Tally:
    """Outcomes of one test per variant: runs and passes, the seed offsets that failed, and for a majority test
    (``seed_trials``) the seeds run and the seeds that learned."""

    runs: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    passed: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    failed_at: dict[str, list[int]] = field(default_factory=lambda: defaultdict(list))
    trials: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    learned: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    rule: tuple[int, int] | None = None
    margins: dict[str, list[tuple[float, str, float]]] = field(default_factory=lambda: defaultdict(list))

    def add(self, variant: str, offset: int, outcome: Outcome) -> None:
        self.runs[variant] += 1
        self.passed[variant] += outcome.passed
        if not outcome.passed:
            self.failed_at[variant].append(offset)
        self.trials[variant] += len(outcome.learned)
        self.learned[variant] += sum(outcome.learned)
        self.rule = outcome.rule or self.rule
        for what, value, op, threshold in outcome.margins:
            self.margins[what].append((value, op, threshold))


def junit_outcomes(path: Path) -> dict[str, Outcome]:
    """``{test id: Outcome}`` from a pytest JUnit XML file (xunit1, so that ``user_properties`` are kept;
    skipped tests are left out)."""
    outcomes: dict[str, Outcome] = {}
    for case in ET.parse(path).getroot().iter("testcase"):
        if case.find("skipped") is not None:
            continue
        name = f"{case.get('classname', '')}::{case.get('name', '')}"
        outcome = Outcome(case.find("failure") is None and case.find("error") is None)
        for prop in case.iter("property"):
            if prop.get("name") == SEED_TRIAL:
                trial = json.loads(prop.get("value", "{}"))
                outcome.learned.append(bool(trial["learned"]))
                outcome.rule = (int(trial["need"]), int(trial["of"]))
            elif prop.get("name") == MARGIN:
                check = json.loads(prop.get("value", "{}"))
                outcome.margins.append((str(check["what"]), float(check["value"]), check["op"], float(check["threshold"])))
        outcomes[name] = outcome
    return outcomes


def node_id(test: str) -> str:
    """The pytest node id of a JUnit test name: ``tests.components.test_x::test_y[p]`` ->
    ``tests/components/test_x.py::test_y[p]``."""
    module, _, name = test.partition("::")
    return f"{module.replace('.', '/')}.py::{name}"


def run_once(root: Path, offset: int, only: str, timeout: float, marker: str = "convergence",
             nodes: list[str] | None = None) -> dict[str, Outcome]:  # fmt: skip
    """The graded tests selected by ``marker`` (and ``only``; or the node ids ``nodes``) against ``root`` with
    seed offset ``offset``, every seed of a majority test run (``--all-seeds``): ``{test: Outcome}``."""
    with tempfile.TemporaryDirectory(prefix="ca15-calibrate-") as tmp:
        xml = Path(tmp) / "junit.xml"
        cmd = [sys.executable, "-m", "pytest", *(nodes or GRADED), "-q", "-p", "no:randomly", "-p", "no:cacheprovider",
               "--graded-only", "-m", marker, "--isolation=none", f"--impl={root}", f"--seed-offset={offset}",
               "--all-seeds", f"--junitxml={xml}", "--tb=no", "-o", "junit_family=xunit1"]  # fmt: skip
        if only:
            cmd += ["-k", only]
        env = {**os.environ, "CI": "1", "HYPOTHESIS_STORAGE_DIRECTORY": f"{tmp}/hypothesis"}
        try:
            subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired:
            return {}
        return junit_outcomes(xml) if xml.is_file() else {}


def runs_needed(outcome: Outcome, target: int) -> int:
    """Seed offsets a test needs for ``target`` seeds: ``target`` runs, or target / seeds-per-run (rounded up)
    for a majority test, whose every run tries ``of`` seeds."""
    per_run = outcome.rule[1] if outcome.rule else 1
    return max(1, -(-target // per_run))


def calibrate(seeds: int, variants: list[str], only: str = "", jobs: int = 2, timeout: float = 1800,
              marker: str = "convergence", echo=print, perturbed_seeds: int | None = None) -> dict[str, Tally]:  # fmt: skip
    """Run the tests selected by ``marker`` until each has been tried on ``seeds`` seeds against the reference
    (``perturbed_seeds``, default ``seeds``, against each perturbed reference); the tallies per test.

    Offset 0 runs every selected test once per variant and shows how many seeds a run of each test tries; the
    further offsets run only the tests that still need seeds, by node id."""
    tallies: dict[str, Tally] = defaultdict(Tally)
    perturbed_seeds = seeds if perturbed_seeds is None else perturbed_seeds
    target = {v: seeds if v == "reference" else perturbed_seeds for v in variants}
    with tempfile.TemporaryDirectory(prefix="ca15-perturbed-") as tmp:
        roots = {v: REPO / "reference" if v == "reference" else perturbed_root(REPO / "reference", v, Path(tmp) / v)
                 for v in variants}  # fmt: skip
        start = time.monotonic()
        done = 0

        def one(job: tuple[str, int, list[str] | None]) -> tuple[str, int, dict[str, Outcome]]:
            variant, offset, nodes = job
            return variant, offset, run_once(roots[variant], offset, only, timeout, marker, nodes)

        def run_jobs(jobs_list: list[tuple[str, int, list[str] | None]], total: int) -> dict[str, Outcome]:
            nonlocal done
            first: dict[str, Outcome] = {}
            with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
                for variant, offset, outcomes in pool.map(one, jobs_list):
                    done += 1
                    if not outcomes:
                        echo(f"warning: {variant} seed offset {offset}: no outcome (timeout or collection error)")
                    for test, outcome in outcomes.items():
                        tallies[test].add(variant, offset, outcome)
                        first.setdefault(test, outcome)
                    failed = ", ".join(t.rsplit("::", 1)[-1] for t, o in sorted(outcomes.items()) if not o.passed)
                    echo(f"[{done}/{total}] {variant} offset {offset}: "
                         f"{sum(o.passed for o in outcomes.values())}/{len(outcomes)} passed "
                         f"({time.monotonic() - start:.0f} s){' failed: ' + failed if failed else ''}")  # fmt: skip
            return first

        first = run_jobs([(v, 0, None) for v in variants], len(variants))  # how many seeds a run of each tries
        later = []
        for offset in range(1, max(target.values())):
            for v in variants:
                nodes = sorted(node_id(t) for t, o in first.items() if offset < runs_needed(o, target[v]))
                if nodes:
                    later.append((v, offset, nodes))
        run_jobs(later, len(variants) + len(later))
    return dict(tallies)


def false_fail_bound(failures: int, runs: int) -> float:
    """Point estimate of the false-fail rate, or the rule-of-three 95% bound 3/n (at most 1) when nothing
    failed."""
    if runs <= 0:
        raise ValueError(f"runs must be positive, got {runs}")
    return failures / runs if failures else min(1.0, 3 / runs)


def majority_false_fail(p: float, need: int, of: int) -> float:
    """P(fewer than ``need`` of ``of`` independent seeds learn) when each seed fails with probability ``p``."""
    if not 0 <= p <= 1:
        raise ValueError(f"p must be a probability in [0, 1], got {p}")
    if not 1 <= need <= of:
        raise ValueError(f"need must be between 1 and of = {of}, got {need}")
    return sum(math.comb(of, j) * p**j * (1 - p) ** (of - j) for j in range(of - need + 1, of + 1))


def t_sf(t: float, df: float) -> float:
    """P(T > t) for Student's t with ``df`` degrees of freedom (through the regularized incomplete beta
    function: P(|T| > |t|) = I_{df/(df+t²)}(df/2, 1/2))."""
    if df <= 0:
        raise ValueError(f"df must be positive, got {df}")
    tail = 0.5 * _betainc(df / 2, 0.5, df / (df + t * t))
    return tail if t >= 0 else 1 - tail


def _betainc(a: float, b: float, x: float) -> float:
    """The regularized incomplete beta function I_x(a, b), by its continued fraction (modified Lentz)."""
    if x <= 0 or x >= 1:
        return 0.0 if x <= 0 else 1.0
    if x > (a + 1) / (a + b + 2):  # the fraction converges fast on this side only
        return 1 - _betainc(b, a, 1 - x)
    front = math.exp(math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log1p(-x)) / a
    tiny, c, d = 1e-300, 1.0, 1 - (a + b) * x / (a + 1)
    d = 1 / (d if abs(d) > tiny else tiny)
    f = d
    for m in range(1, 300):
        for numerator in (m * (b - m) * x / ((a + 2 * m - 1) * (a + 2 * m)),
                          -(a + m) * (a + b + m) * x / ((a + 2 * m) * (a + 2 * m + 1))):  # fmt: skip
            d = 1 + numerator * d
            d = 1 / (d if abs(d) > tiny else tiny)
            c = 1 + numerator / c
            c = c if abs(c) > tiny else tiny
            f *= c * d
        if abs(c * d - 1) < 1e-15:
            break
    return front * f


def _mean_sd(xs: list[float]) -> tuple[float, float, bool]:
    """Mean, sample standard deviation, and whether the values are one value up to rounding."""
    mean = sum(xs) / len(xs)
    sd = math.sqrt(sum((x - mean) ** 2 for x in xs) / (len(xs) - 1))
    return mean, sd, sd <= 1e-9 * max(1.0, abs(mean))


def slack_false_fail(slacks: list[float]) -> float:
    """P(the next run's slack ≤ 0) when the slacks seen so far are draws of a normal of unknown mean and spread:
    the Student-t prediction of one more draw, t = mean / (sd · √(1 + 1/n)) with n - 1 degrees of freedom.
    A slack is how far a run was on the passing side of its threshold (negative: it failed)."""
    return _slack_fit(slacks)[0]


def _slack_fit(slacks: list[float]) -> tuple[float, float]:
    """:func:`slack_false_fail` and the slacks' mean in standard deviations (inf when they are constant)."""
    n = len(slacks)
    if n < 3:
        raise ValueError(f"a fit needs at least 3 slacks, got {n}")
    mean, sd, constant = _mean_sd(slacks)
    if constant:  # the same slack every run: a deterministic check
        return (0.0 if mean > 0 else 1.0), math.inf
    return t_sf(mean / (sd * math.sqrt(1 + 1 / n)), n - 1), mean / sd


#: Box-Cox powers tried for a positive statistic (0: the log).
LAMBDAS = tuple(k / 4 for k in range(-8, 9))


def box_cox(x: float, lam: float) -> float:
    """The Box-Cox transform (x^λ - 1)/λ, log x at λ = 0: increasing in x > 0, and 0 at x = 1."""
    return math.log(x) if lam == 0 else (x**lam - 1) / lam


def box_cox_lambda(xs: list[float]) -> float:
    """The λ of :data:`LAMBDAS` under which the positive ``xs`` look most normal: the maximum of the profile
    log-likelihood -n/2 · log σ²(λ) + (λ - 1) · Σ log x (Box and Cox 1964)."""
    logs = sum(math.log(x) for x in xs)

    def loglik(lam: float) -> float:
        ys = [box_cox(x, lam) for x in xs]
        mean = sum(ys) / len(ys)
        var = sum((y - mean) ** 2 for y in ys) / len(ys)
        return -math.inf if var <= 0 else -len(ys) / 2 * math.log(var) + (lam - 1) * logs

    return max(LAMBDAS, key=loglik)


def check_false_fail(runs: list[tuple[float, str, float]]) -> tuple[float, float]:
    """One check of a ``margin`` test over many runs, ``[(value, op, threshold), ...]``: the estimated
    probability that a run fails it, and the fitted distance to the threshold in standard deviations.

    When every value and threshold is positive (errors, distances, step counts: skewed, bounded by 0), the
    ratios value/threshold are Box-Cox transformed with the λ of maximum likelihood and the slack is how far
    each lies on the passing side of 1 (-T(x) for < and <=, T(x) for > and >=); otherwise the slack is
    threshold - value (or value - threshold). The slacks are fitted by :func:`slack_false_fail`."""
    finite = [(v, op, c) for v, op, c in runs if math.isfinite(v) and math.isfinite(c)]
    below = [op in ("<", "<=") for _, op, _ in finite]
    if all(v > 0 and c > 0 for v, _, c in finite):
        ratios = [v / c for v, _, c in finite]
        lam = box_cox_lambda(ratios)
        slacks = [-box_cox(x, lam) if b else box_cox(x, lam) for x, b in zip(ratios, below)]
    else:
        slacks = [(c - v) if b else (v - c) for (v, _, c), b in zip(finite, below)]
    return _slack_fit(slacks)


def estimate(t: Tally, variants: list[str]) -> str:
    """The estimated false-fail rate of a correct implementation, over all variants: from the per-seed failure
    rate for a majority test (``seed_trials``), from its fitted checks for a ``margin`` test, else from the
    runs."""
    trials = sum(t.trials[v] for v in variants)
    if t.rule and trials:
        fails = trials - sum(t.learned[v] for v in variants)
        p = false_fail_bound(fails, trials)
        need, of = t.rule
        rate = majority_false_fail(p, need, of)
        seeds = f"p {'≤ ' if not fails else ''}{p:.1%} per seed ({fails}/{trials} seeds failed)"
        return f"{rate:.2%} ({need} of {of} seeds; {seeds})"
    runs = sum(t.runs[v] for v in variants)
    if not runs:
        return "n/a"
    fails = runs - sum(t.passed[v] for v in variants)
    checks = {what: values for what, values in t.margins.items() if len(values) >= 3}
    if checks:
        fitted = {what: check_false_fail(values) for what, values in checks.items()}
        rate = min(1.0, sum(r for r, _ in fitted.values()))
        closest = min(fitted, key=lambda what: fitted[what][1])
        distance = fitted[closest][1]
        near = f"closest: {closest}, {distance:.1f} sd" if math.isfinite(distance) else "the same values every run"
        runs_fitted = max(len(values) for values in checks.values())
        note = f"fit of {len(fitted)} check{'s' * (len(fitted) > 1)} over {runs_fitted} runs; {near}"
        if fails:
            return f"{max(rate, fails / runs):.2%} ({fails}/{runs} runs failed; {note})"
        return f"{rate:.2%} ({note})"
    return f"{false_fail_bound(fails, runs):.1%}" + (" (≤, none failed)" if not fails else "")


def format_table(tallies: dict[str, Tally], variants: list[str]) -> str:
    """A Markdown table: one row per test, runs passed per variant (and seeds learned, for a majority test),
    the estimated false-fail rate."""
    head = ["test", *variants, "false-fail (est.)"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for test in sorted(tallies):
        t = tallies[test]
        cells = []
        for v in variants:
            cell = f"{t.passed[v]}/{t.runs[v]}"
            if t.trials[v]:
                cell += f"; seeds {t.learned[v]}/{t.trials[v]}"
            if t.failed_at[v]:
                cell += f" (fails at {', '.join(map(str, t.failed_at[v][:5]))})"
            cells.append(cell)
        lines.append("| " + " | ".join([test, *cells, estimate(t, variants).replace("|", "\\|")]) + " |")
    return "\n".join(lines)


def write_record(old: str, command: str, table: str, variants: list[str], merge: bool) -> str:
    """The Markdown record (docs/calibration.md) after a run of ``command`` that printed ``table``.

    ``old`` is the record's current text. Its '## ' sections are kept. With ``merge`` (an ``--only`` run) the
    new rows replace the rows of the same tests and the other rows stay, when ``old`` has a table with the
    same variants; the header then names this run as well."""
    at = old.find("\n## ")
    kept = old[at:] if at >= 0 else ""
    head_row = table.splitlines()[0]
    if merge and head_row in old:
        rows = {line.split(" | ", 1)[0]: line for line in old[: at if at >= 0 else len(old)].splitlines()
                if line.startswith("| ") and line != head_row}  # fmt: skip
        rows.update({line.split(" | ", 1)[0]: line for line in table.splitlines()[2:]})
        top = old[: old.index(head_row)].rstrip("\n")
        rows_text = "\n".join(rows[key] for key in sorted(rows))
        table = "\n".join(table.splitlines()[:2]) + "\n" + rows_text
        return f"{top}\n\nRows re-run: {command}.\n\n{table}\n{kept}"
    return f"# Convergence calibration\n\n{command}.\n\n{CELLS}\n\n{table}\n{kept}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m grader.authoring.calibrate", description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=30,
                        help="seeds each test is tried on against the reference (default 30)")  # fmt: skip
    parser.add_argument("--perturbed-seeds", type=int, default=None,
                        help="seeds each test is tried on against each perturbed reference (default: --seeds)")
    parser.add_argument("--variants", default=",".join(VARIANTS), help=f"comma list of {', '.join(VARIANTS)}")
    parser.add_argument("--only", default="", help="pytest -k expression restricting the tests")
    parser.add_argument("--jobs", type=int, default=2, help="pytest runs at once (default 2)")
    parser.add_argument("--marker", default="convergence",
                        help="pytest -m expression (default: convergence; 'not gpu' checks every graded test)")
    parser.add_argument("--out", type=Path, default=None,
                        help="also write the table to this Markdown file (its '## ' sections are kept)")
    parser.add_argument("--values", type=Path, default=None,
                        help="also write every recorded margin check, {test: {check: [[value, op, threshold], ...]}}, "
                             "to this JSON file (to choose a threshold from)")  # fmt: skip
    args = parser.parse_args(argv)
    variants = [v for v in args.variants.split(",") if v]
    unknown = sorted(set(variants) - set(VARIANTS))
    if unknown or not variants:
        parser.error(f"--variants: expected a comma list of {', '.join(VARIANTS)}, got {args.variants!r}")
    if args.seeds < 1:
        parser.error(f"--seeds: expected a positive number, got {args.seeds}")
    if args.perturbed_seeds is not None and args.perturbed_seeds < 1:
        parser.error(f"--perturbed-seeds: expected a positive number, got {args.perturbed_seeds}")
    start = time.monotonic()
    tallies = calibrate(args.seeds, variants, args.only, args.jobs, marker=args.marker,
                        perturbed_seeds=args.perturbed_seeds)  # fmt: skip
    table = format_table(tallies, variants)
    print(table)
    if args.values:
        checks = {test: dict(t.margins) for test, t in sorted(tallies.items()) if t.margins}
        args.values.write_text(json.dumps(checks, indent=1) + "\n", encoding="utf-8")
    if args.out:
        perturbed = "" if args.perturbed_seeds is None else f" --perturbed-seeds {args.perturbed_seeds}"
        only = f" --only {args.only!r}" if args.only else ""
        command = (f"`python -m grader.authoring.calibrate --seeds {args.seeds}{perturbed} --variants {','.join(variants)} "
                   f"--marker {args.marker!r}{only}` ({time.monotonic() - start:.0f} s, {args.jobs} jobs, "
                   f"{time.strftime('%Y-%m-%d')})")  # fmt: skip
        old = args.out.read_text(encoding="utf-8") if args.out.is_file() else ""
        args.out.write_text(write_record(old, command, table, variants, merge=bool(args.only)), encoding="utf-8")
    return 0


#: What a cell of the table means (the header of docs/calibration.md).
CELLS = (
    "Each cell: runs passed / runs, where a run is one seed offset of the whole test; for a majority test "
    "(`seed_trials`: it passes when `need` of its `of` seeds learn) also the seeds that learned / seeds tried, "
    "every seed run (`--all-seeds`). The estimate pools the variants: for a majority test it is P(fewer than "
    "`need` of `of` seeds learn) at the per-seed failure rate p, with p the observed rate or, when no seed "
    "failed, the rule-of-three bound 3/n. For a test whose checks are recorded (the `margin` fixture), each "
    "check's slacks over all runs (how far each run was on the passing side of its threshold: for positive "
    "values and threshold, of the ratio value/threshold after the Box-Cox transform of maximum likelihood, "
    "which suits errors and step counts) give P(one more run fails it) by the Student-t prediction, and the "
    "test's estimate is the sum over its checks; \"closest\" names the check nearest its threshold, in standard "
    "deviations of its slack. Another test: the observed failure rate or 3/n."
)


if __name__ == "__main__":
    sys.exit(main())
