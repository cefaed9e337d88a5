"""Hidden tests: MonteCarloTreeSearch."""

import math

import pytest

pytestmark = pytest.mark.component("MonteCarloTreeSearch")


@pytest.mark.shape
def test_ucb_score_other_numbers(impl):
    """UCB1 = Q + c√(ln N / n): 0.5 + 2√(ln 16 / 4); an unvisited child scores +inf."""
    ucb = impl.module("planning.algorithms").ucb_score
    assert ucb(0.5, 4, 16, 2.0) == pytest.approx(0.5 + 2 * math.sqrt(math.log(16) / 4))
    assert ucb(0.5, 0, 16, 2.0) == math.inf
