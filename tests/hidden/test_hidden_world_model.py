"""Hidden tests: WorldModel."""

import math

import pytest
import torch

pytestmark = pytest.mark.component("WorldModel")


@pytest.mark.shape
def test_gaussian_kl_two_dimensions(impl):
    """KL(N((1,0), diag(1,2)) || N(0,I)) = ½(1) + ½(2 − 1 − log 2) = 1 − ½ log 2."""
    kl = impl.module("planning.algorithms").gaussian_kl
    value = kl(torch.tensor([1.0, 0.0]), torch.tensor([0.0, math.log(2.0)]))
    assert value.item() == pytest.approx(1 - 0.5 * math.log(2.0), abs=1e-5)
