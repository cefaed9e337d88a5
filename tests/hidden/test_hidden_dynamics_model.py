"""Hidden tests: DynamicsModel (same component as the public tests, other hand-computed cases)."""

import math

import pytest
import torch

pytestmark = pytest.mark.component("DynamicsModel")


@pytest.mark.shape
def test_gaussian_nll_of_a_scaled_residual(impl):
    """NLL at residual 2 with σ = 2 is ½·1 + log 2 + ½ log 2π (hand-computed)."""
    nll = impl.module("model_based_rl.algorithms").gaussian_nll
    value = nll(torch.zeros(3, 1), torch.full((3, 1), math.log(2.0)), torch.full((3, 1), 2.0))
    assert value.item() == pytest.approx(0.5 + math.log(2.0) + 0.5 * math.log(2 * math.pi), abs=1e-5)
