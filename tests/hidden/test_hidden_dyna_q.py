"""Hidden tests: DynaQAgent."""

import pytest
import torch

pytestmark = pytest.mark.component("DynaQAgent")


@pytest.mark.shape
def test_q_learning_targets_with_half_discount(impl):
    """y = r + γ(1 − d) max Q': [1 + 0.5·3, 0] = [2.5, 0]."""
    targets = impl.module("model_based_rl.algorithms").q_learning_targets
    y = targets(torch.tensor([1.0, 0.0]), torch.tensor([[1.0, 3.0], [2.0, 5.0]]), torch.tensor([0.0, 1.0]), 0.5)
    assert torch.allclose(y, torch.tensor([2.5, 0.0]))
