"""Hidden tests: HierarchicalActorCritic."""

import pytest
import torch

pytestmark = pytest.mark.component("HierarchicalActorCritic")


@pytest.mark.shape
def test_critic_target_clipped_to_minus_h(impl):
    """y = r + γ(1 − d)Q' clipped to [−H, 0]: [−1 − 0.9·3, clip(−1 − 18) = −10, 0]."""
    target = impl.module("hierarchical_rl.algorithms").hac_critic_target
    y = target(torch.tensor([-1.0, -1.0, 0.0]), torch.tensor([-3.0, -20.0, -2.0]), torch.tensor([0.0, 0.0, 1.0]), 0.9, 10)
    assert torch.allclose(y, torch.tensor([-3.7, -10.0, 0.0]))
