"""The convergence calibration script (grader.authoring.calibrate): perturbed references stay correct, tallies add up."""

from __future__ import annotations

import json
import math
import random
import subprocess
import sys
from pathlib import Path
from textwrap import dedent
from xml.sax.saxutils import quoteattr

import pytest

from grader.authoring.calibrate import (
    LAMBDAS,
    Outcome,
    Tally,
    box_cox,
    box_cox_lambda,
    check_false_fail,
    false_fail_bound,
    format_table,
    junit_outcomes,
    majority_false_fail,
    node_id,
    perturbed_root,
    runs_needed,
    slack_false_fail,
    t_sf,
    write_record,
)

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
    outcomes = junit_outcomes(xml)
    assert {name: o.passed for name, o in outcomes.items()} == {"a::ok": True, "a::bad": False, "a::err": False}
    assert all(o.learned == [] and o.rule is None for o in outcomes.values())


def test_junit_outcomes_reads_each_seed_of_a_majority_test(tmp_path: Path) -> None:
    """The seed_trial properties of a test case become its per-seed outcomes, in order, and its (need, of)."""
    props = "".join(
        f'<property name="seed_trial" value="{json.dumps(dict(seed=s, learned=ok, need=2, of=3)).replace(chr(34), "&quot;")}"/>'
        for s, ok in [(0, True), (1, False), (2, True)]
    )
    xml = tmp_path / "j.xml"
    xml.write_text(f'<testsuites><testsuite><testcase classname="m" name="t"><properties>{props}</properties>'
                   '</testcase></testsuite></testsuites>')  # fmt: skip
    assert junit_outcomes(xml) == {"m::t": Outcome(True, [True, False, True], (2, 3))}


def test_false_fail_bound_is_the_rate_or_three_over_n() -> None:
    """2 failures in 40 runs estimate 5%; none in 60 runs is bounded by 3/60 = 5%, none in 2 by 100%."""
    assert false_fail_bound(2, 40) == 0.05
    assert false_fail_bound(0, 60) == 0.05
    assert false_fail_bound(0, 2) == 1.0  # a bound, never above 100%
    with pytest.raises(ValueError, match="runs must be positive"):
        false_fail_bound(0, 0)


def test_majority_false_fail_is_the_binomial_tail() -> None:
    """2 of 3 seeds needed, p = 0.1: fail when 2 or 3 seeds fail, 3·0.1²·0.9 + 0.1³ = 0.028."""
    assert majority_false_fail(0.1, 2, 3) == pytest.approx(0.028)
    assert majority_false_fail(0.1, 3, 3) == pytest.approx(1 - 0.9**3)  # every seed needed
    assert majority_false_fail(0.0, 2, 3) == 0.0
    with pytest.raises(ValueError, match="need must be between 1 and of = 3, got 4"):
        majority_false_fail(0.1, 4, 3)


def test_runs_needed_counts_every_seed_of_a_majority_test() -> None:
    """30 seeds take 10 offsets of a 3-seed majority test, 30 of a single-seed test, and at least one."""
    assert runs_needed(Outcome(True, [True] * 3, (2, 3)), 30) == 10
    assert runs_needed(Outcome(True, [True] * 3, (2, 3)), 10) == 4
    assert runs_needed(Outcome(True), 30) == 30
    assert runs_needed(Outcome(True), 0) == 1


def test_node_id_turns_a_junit_name_back_into_a_path() -> None:
    """JUnit's dotted class name and test name give the node id pytest selects (parameters kept)."""
    assert node_id("tests.components.test_x::test_y[seed1]") == "tests/components/test_x.py::test_y[seed1]"


def test_seed_trials_stops_once_the_majority_is_decided(seed_trials, request: pytest.FixtureRequest) -> None:
    """Two learning seeds of three decide a 2-of-3 test: the third is not run; both outcomes are recorded."""
    tried = []
    seed_trials(lambda seed: (tried.append(seed) or True, "ok"), "learned", seeds=(0, 1, 2), need=2)
    assert tried == [0, 1]
    recorded = [json.loads(v) for k, v in request.node.user_properties if k == "seed_trial"]
    assert recorded == [{"seed": s, "learned": True, "need": 2, "of": 3} for s in (0, 1)]


def test_seed_trials_fails_naming_every_seed_run(seed_trials) -> None:
    """Two failing seeds of three decide a 2-of-3 test too: the message names both, with their details."""
    with pytest.raises(AssertionError, match=r"learned: on 0 of the 2 seeds run, 2 needed: seed 5: 0.10 \(no\); "
                       r"seed 6: 0.20 \(no\)"):  # fmt: skip
        seed_trials(lambda seed: (False, f"{(seed - 4) / 10:.2f}"), "learned", seeds=(5, 6, 7), need=2)
    with pytest.raises(ValueError, match="need must be between 1 and len"):
        seed_trials(lambda seed: (True, ""), "learned", seeds=(0,), need=2)


def test_table_lists_counts_and_failing_offsets() -> None:
    """A row shows passes/runs per variant, the failing seed offsets, and the estimate over all variants."""
    tally = Tally()
    tally.runs.update(reference=30, draw=30)
    tally.passed.update(reference=30, draw=29)
    tally.failed_at["draw"].append(7)
    table = format_table({"t::x": tally}, ["reference", "draw"])
    assert "| t::x | 30/30 | 29/30 (fails at 7) | 1.7% |" in table


def test_table_estimates_a_majority_test_from_its_seeds() -> None:
    """A 2-of-3 test with 1 failed seed in 60: p = 1/60, false-fail 3p²(1-p) + p³ ≈ 0.08%."""
    tally = Tally()
    for offset in range(10):
        tally.add("reference", offset, Outcome(True, [True, True, True], (2, 3)))
        tally.add("draw", offset, Outcome(True, [True, offset != 4, True], (2, 3)))
    row = format_table({"t::m": tally}, ["reference", "draw"]).splitlines()[-1]
    assert row == "| t::m | 10/10; seeds 30/30 | 10/10; seeds 29/30 | 0.08% (2 of 3 seeds; p 1.7% per seed (1/60 seeds failed)) |"


def test_an_only_run_replaces_its_rows_and_keeps_the_rest() -> None:
    """Re-running one test (--only) replaces its row, keeps the other rows and the '## ' sections."""
    head = "| test | reference | false-fail (est.) |\n|---|---|---|"
    old = write_record("", "`first`", f"{head}\n| t::a | 1/1 | x |\n| t::b | 1/1 | x |", ["reference"], merge=False)
    old += "\n## Other check\n\nkept\n"
    new = write_record(old, "`second`", f"{head}\n| t::b | 2/2 | y |", ["reference"], merge=True)
    assert "| t::a | 1/1 | x |\n| t::b | 2/2 | y |" in new and "| t::b | 1/1 | x |" not in new
    assert "`first`" in new and "Rows re-run: `second`." in new
    assert new.endswith("## Other check\n\nkept\n")
    fresh = write_record(old, "`third`", f"{head}\n| t::c | 3/3 | z |", ["reference"], merge=False)
    assert "t::a" not in fresh and "`first`" not in fresh and fresh.endswith("kept\n")


def test_t_sf_matches_the_closed_forms() -> None:
    """Student t tails: 1/4 at t = 1 with 1 df (Cauchy); 1/2 - t/(2·sqrt(2 + t²)) with 2 df; symmetric."""
    assert t_sf(1.0, 1) == pytest.approx(0.25)
    assert t_sf(2.0, 2) == pytest.approx(0.5 - 2 / (2 * 6**0.5))
    assert t_sf(-2.0, 2) == pytest.approx(1 - (0.5 - 2 / (2 * 6**0.5)))
    assert t_sf(3.0, 1e7) == pytest.approx(0.0013499, rel=1e-4)  # the normal tail at 3 sd


def test_slack_fit_is_the_t_prediction_of_one_more_run() -> None:
    """Slacks 1, 2, 3: mean 2, sd 1, t = 2/sqrt(1 + 1/3) = sqrt(3) with 2 df, so P = 1/2 - sqrt(3)/(2·sqrt(5))."""
    assert slack_false_fail([1.0, 2.0, 3.0]) == pytest.approx(0.5 - 3**0.5 / (2 * 5**0.5))
    assert slack_false_fail([0.5] * 4) == 0.0  # the same margin every run
    with pytest.raises(ValueError, match="at least 3 slacks, got 2"):
        slack_false_fail([1.0, 2.0])


def test_box_cox_is_zero_at_one_and_the_log_at_lambda_zero() -> None:
    """T(1) = 0 for every λ (a ratio of 1 sits on the threshold); T(e) = 1 at λ = 0; T(4) = (2 - 1)/0.5 at λ = 1/2."""
    assert all(box_cox(1.0, lam) == 0 for lam in LAMBDAS)
    assert box_cox(math.e, 0) == pytest.approx(1.0)
    assert box_cox(4.0, 0.5) == pytest.approx(2.0)


def test_box_cox_lambda_finds_the_log_of_a_geometric_set_in_any_unit() -> None:
    """1, 2, 4, 8, 16 are evenly spaced on the log scale: λ = 0; scaling every value by 10 keeps λ."""
    assert box_cox_lambda([1.0, 2.0, 4.0, 8.0, 16.0]) == 0.0
    assert box_cox_lambda([1.0, 2.0, 3.0, 4.0, 5.0]) == box_cox_lambda([10.0, 20.0, 30.0, 40.0, 50.0])


def test_check_fit_transforms_positive_ratios_and_leaves_signed_values_raw() -> None:
    """Positive values: the slacks are -T(value/threshold) at the fitted λ; negative values: threshold - value."""
    values = [0.05, 0.1, 0.2, 0.4, 0.1]
    lam = box_cox_lambda([v / 0.5 for v in values])
    rate, distance = check_false_fail([(v, "<", 0.5) for v in values])
    assert rate == pytest.approx(slack_false_fail([-box_cox(v / 0.5, lam) for v in values])) and distance > 0
    above, _ = check_false_fail([(0.5 / v, ">", 1.0) for v in values])  # 1/x: the same slacks seen from above
    assert above == pytest.approx(slack_false_fail([box_cox(0.5 / v, box_cox_lambda([0.5 / v for v in values]))
                                                    for v in values]))  # fmt: skip
    signed, _ = check_false_fail([(-11.0, "<", -10.0), (-12.0, "<", -10.0), (-13.0, "<", -10.0)])
    assert signed == pytest.approx(slack_false_fail([1.0, 2.0, 3.0]))


def test_junit_outcomes_reads_each_checked_margin(tmp_path: Path) -> None:
    """The margin properties of a test case become its checks: (what, value, op, threshold), in order."""
    props = "".join(
        f'<property name="margin" value={quoteattr(json.dumps(dict(what=w, value=v, op=op, threshold=c)))}/>'
        for w, v, op, c in [("mse", 0.002, "<", 0.01), ("ratio", 0.3, "<", 0.6)]
    )
    xml = tmp_path / "j.xml"
    xml.write_text(f'<testsuites><testsuite><testcase classname="m" name="t"><properties>{props}</properties>'
                   '</testcase></testsuite></testsuites>')  # fmt: skip
    assert junit_outcomes(xml)["m::t"].margins == [("mse", 0.002, "<", 0.01), ("ratio", 0.3, "<", 0.6)]


def test_margin_checks_records_and_names_what_failed(margin, request: pytest.FixtureRequest) -> None:
    """margin() returns the value of a passing check, fails a missed one naming both numbers, records both."""
    assert margin("final distance", 0.04, "<", 0.1) == 0.04
    with pytest.raises(AssertionError, match=r"success rate: 0.3, needed >= 0.5 \(seed 7\)"):
        margin("success rate", 0.3, ">=", 0.5, detail="seed 7")
    recorded = [json.loads(v) for k, v in request.node.user_properties if k == "margin"]
    assert recorded == [{"what": "final distance", "value": 0.04, "op": "<", "threshold": 0.1},
                        {"what": "success rate", "value": 0.3, "op": ">=", "threshold": 0.5}]  # fmt: skip
    with pytest.raises(ValueError, match="op must be one of"):
        margin("x", 1.0, "==", 1.0)


def test_table_estimates_a_margin_test_from_its_fitted_checks() -> None:
    """Two checks with slacks 1, 2, 3 (negative values: no log fit): each fails with 1/2 - sqrt(3)/(2·sqrt(5)) =
    11.27%, and the test's estimate is their sum, 22.54%; the closest check is 2.0 sd from its threshold (its
    name's "|" escaped for the Markdown table)."""
    tally = Tally()
    for offset, slack in enumerate([1.0, 2.0, 3.0]):
        checks = [("|a|", -10 - slack, "<", -10.0), ("b", -10 + slack, ">", -10.0)]
        tally.add("reference", offset, Outcome(True, margins=checks))
    row = format_table({"t::f": tally}, ["reference"]).splitlines()[-1]
    assert row == "| t::f | 3/3 | 22.54% (fit of 2 checks over 3 runs; closest: \\|a\\|, 2.0 sd) |"
