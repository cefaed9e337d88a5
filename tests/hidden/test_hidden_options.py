"""Hidden tests: Option (SMDP learning over options)."""

import pytest

pytestmark = pytest.mark.component("Option")


@pytest.mark.shape
def test_smdp_target_discounts_by_gamma_to_the_k(impl):
    """r + γ^k max Q(s', ·) = 2 + 0.5³·4 = 2.5; at a terminal s' only r = 2 remains."""
    smdp_target = impl.module("hierarchical_rl.algorithms").smdp_target
    assert smdp_target(2.0, 3, 4.0, False, 0.5) == pytest.approx(2.5)
    assert smdp_target(2.0, 3, 4.0, True, 0.5) == pytest.approx(2.0)
