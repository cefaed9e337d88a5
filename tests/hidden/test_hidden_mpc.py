"""Hidden tests: ModelPredictiveController."""

import pytest
import torch

pytestmark = pytest.mark.component("ModelPredictiveController")


@pytest.mark.shape
def test_cem_update_with_identical_elites(impl):
    """Identical elites at 2 with α = 0.25: mean 0.75·2 = 1.5, std 0.25·1 + 0.75·0 = 0.25."""
    cem_update = impl.module("model_based_rl.algorithms").cem_update
    mean, std = cem_update(torch.zeros(1, 1), torch.ones(1, 1), torch.full((2, 1, 1), 2.0), 0.25)
    assert mean.item() == pytest.approx(1.5)
    assert std.item() == pytest.approx(0.25)
