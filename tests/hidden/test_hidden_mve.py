"""Hidden tests: ModelBasedValueExpansion."""

import pytest
import torch

pytestmark = pytest.mark.component("ModelBasedValueExpansion")


@pytest.mark.shape
def test_targets_stop_at_a_middle_termination(impl):
    """G_t = r_t + γ(1 − d_t) G_{t+1}, G_H = V: rewards 1, done at t=1, V=10, γ=0.5 -> [1.5, 1, 6]."""
    compute_targets = impl.module("planning.algorithms").compute_targets
    g = compute_targets(torch.ones(1, 3), torch.tensor([[0.0, 1.0, 0.0]]), torch.tensor([10.0]), 0.5)
    assert torch.allclose(g, torch.tensor([[1.5, 1.0, 6.0]]))
