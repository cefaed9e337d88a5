"""Hidden tests: ModelEnsemble."""

import math

import pytest
import torch

pytestmark = pytest.mark.component("ModelEnsemble")


@pytest.mark.shape
def test_moments_of_two_members(impl):
    """Members N(1, 1²) and N(3, 3²): mean 2, aleatoric √5, epistemic 1 (population std of the means)."""
    combine = impl.module("model_based_rl.algorithms").combine_ensemble_moments
    mean, aleatoric, epistemic = combine(torch.tensor([[[1.0]], [[3.0]]]), torch.tensor([[[1.0]], [[3.0]]]))
    assert mean.item() == pytest.approx(2.0)
    assert aleatoric.item() == pytest.approx(math.sqrt(5.0), abs=1e-5)
    assert epistemic.item() == pytest.approx(1.0, abs=1e-5)
