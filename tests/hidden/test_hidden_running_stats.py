"""Hidden tests: RunningStats."""

import numpy as np
import pytest

pytestmark = pytest.mark.component("RunningStats")


@pytest.mark.shape
def test_chan_merge_of_two_pairs(impl):
    """{0, 2} merged with {2, 4}: n = 4, mean 2, M2 = 2 + 2 + 2²·2·2/4 = 8."""
    merge = impl.module("utils.running_stats").chan_merge
    count, mean, m2 = merge(2, np.array([1.0]), np.array([2.0]), 2, np.array([3.0]), np.array([2.0]))
    assert count == 4 and np.allclose(mean, [2.0]) and np.allclose(m2, [8.0])
