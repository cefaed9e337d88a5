"""Hidden tests: PrioritizedReplayBuffer."""

import numpy as np
import pytest

pytestmark = pytest.mark.component("PrioritizedReplayBuffer")


@pytest.mark.shape
def test_probabilities_and_weights_square_root_priorities(impl):
    """α = ½ on priorities 1, 4, 9 gives P = (1, 2, 3)/6; β = 1 weights (N·P)^-1 / max = (1, ½, ⅓)."""
    replay = impl.module("utils.replay")
    probs = replay.per_probabilities(np.array([1.0, 4.0, 9.0]), 0.5)
    assert np.allclose(probs, np.array([1, 2, 3]) / 6)
    assert np.allclose(replay.importance_weights(probs, 3, 1.0), [1.0, 0.5, 1 / 3])
