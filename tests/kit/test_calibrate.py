"""The convergence calibration script (grader.calibrate): perturbed references stay correct, tallies add up."""

from __future__ import annotations

import random
import subprocess
import sys
from pathlib import Path
from textwrap import dedent

import pytest

from grader.calibrate import Tally, false_fail_bound, format_table, junit_outcomes, perturbed_root

PLAIN = "def double(x):\n    return 2 * x\n"
NET = dedent(
    '''
    import torch

    class Net(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.layer = torch.nn.Linear(3, 2)

        def act(self, x):
            return self.layer(x)
    '''
)


def _run(root: Path, code: str) -> str:
    proc = subprocess.run([sys.executable, "-c", code], cwd=root, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.strip()


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("tiny") / "root"
    (root / "pkg").mkdir(parents=True)
    (root / "pkg" / "__init__.py").write_text("")
    (root / "pkg" / "mod.py").write_text(PLAIN)
    (root / "pkg" / "net.py").write_text(NET)
    return root


def test_draw_variant_keeps_results_and_moves_the_random_streams(tiny: Path, tmp_path: Path) -> None:
    """The 'draw' copy computes the same values, and each public call advances python's random stream."""
    code = "import random; random.seed(0); from pkg.mod import double; print(double(21), random.random())"
    plain, drawn = _run(tiny, code), _run(perturbed_root(tiny, "draw", tmp_path / "draw"), code)
    random.seed(0)
    random.random()
    assert plain.split()[0] == drawn.split()[0] == "42"
    assert float(drawn.split()[1]) == random.random()  # one draw was taken before double() ran


def test_fp_variant_nudges_parameters_by_a_part_in_a_million(tiny: Path, tmp_path: Path) -> None:
    """The 'fp' copy starts its networks within 1e-6 (relative) of the plain ones, global streams untouched."""
    code = ("import torch; torch.manual_seed(0); from pkg.net import Net; n = Net(); "
            "print(*n.layer.weight.flatten().tolist(), torch.rand(1).item())")  # fmt: skip
    plain = [float(v) for v in _run(tiny, code).split()]
    nudged = [float(v) for v in _run(perturbed_root(tiny, "fp", tmp_path / "fp"), code).split()]
    assert plain[-1] == nudged[-1]
    diffs = [abs(a - b) / abs(a) for a, b in zip(plain[:-1], nudged[:-1])]
    assert 0 < max(diffs) <= 5e-6


def test_unknown_perturbation_is_refused(tiny: Path, tmp_path: Path) -> None:
    """A perturbation kind other than draw/fp is a ValueError naming it."""
    with pytest.raises(ValueError, match="'noise'"):
        perturbed_root(tiny, "noise", tmp_path / "x")


def test_junit_outcomes_reads_pass_fail_and_drops_skips(tmp_path: Path) -> None:
    """Passed, failed, errored and skipped test cases of a JUnit file map to True, False, False and nothing."""
    xml = tmp_path / "j.xml"
    xml.write_text(
        '<testsuites><testsuite><testcase classname="a" name="ok"/>'
        '<testcase classname="a" name="bad"><failure message="x"/></testcase>'
        '<testcase classname="a" name="err"><error message="x"/></testcase>'
        '<testcase classname="a" name="skip"><skipped/></testcase></testsuite></testsuites>'
    )
    assert junit_outcomes(xml) == {"a::ok": True, "a::bad": False, "a::err": False}


def test_false_fail_bound_is_the_rate_or_three_over_n() -> None:
    """2 failures in 40 runs estimate 5%; none in 60 runs is bounded by 3/60 = 5%, none in 2 by 100%."""
    assert false_fail_bound(2, 40) == 0.05
    assert false_fail_bound(0, 60) == 0.05
    assert false_fail_bound(0, 2) == 1.0  # a bound, never above 100%
    with pytest.raises(ValueError, match="runs must be positive"):
        false_fail_bound(0, 0)


def test_table_lists_counts_and_failing_offsets() -> None:
    """A row shows passes/runs per variant, the failing seed offsets, and the estimate over all variants."""
    tally = Tally()
    tally.runs.update(reference=30, draw=30)
    tally.passed.update(reference=30, draw=29)
    tally.failed_at["draw"].append(7)
    table = format_table({"t::x": tally}, ["reference", "draw"])
    assert "| t::x | 30/30 | 29/30 (fails at 7) | 1.7% |" in table
