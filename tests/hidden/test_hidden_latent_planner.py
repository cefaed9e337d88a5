"""Hidden tests: LatentSpacePlanner (hand-computed, on inputs the public tests do not use)."""

from __future__ import annotations

import pytest
import torch

pytestmark = pytest.mark.component("LatentSpacePlanner")


@pytest.mark.shape
def test_latent_rollout_returns_doubling_latent(impl):
    """z' = 2z, r(z, a) = z + a over H = 3: from z0 = 1 with (0, 1, -1), R = 1 + 3 + 3 = 7; from -1 with 1s, -4."""
    z0 = torch.tensor([[1.0], [-1.0]])
    actions = torch.tensor([[[0.0], [1.0], [-1.0]], [[1.0], [1.0], [1.0]]])  # (N=2, H=3, A=1)
    returns = impl.module("planning.algorithms").latent_rollout_returns(
        z0, actions, lambda z, a: 2 * z, lambda z, a: (z + a).sum(-1)
    )
    # second: r0 = -1 + 1 = 0, z1 = -2, r1 = -2 + 1 = -1, z2 = -4, r2 = -4 + 1 = -3
    assert returns.shape == (2,)
    assert returns.tolist() == pytest.approx([7.0, -4.0])


@pytest.mark.shape
def test_cem_refit_three_of_five_elites(impl):
    """Elites of returns (3, -1, 5, 0, 4) are candidates 2, 4, 0: mean (3, 3), population std (√(8/3), √(26/3))."""
    actions = torch.tensor([[[1.0, 2.0]], [[100.0, 100.0]], [[3.0, 0.0]], [[-50.0, 7.0]], [[5.0, 7.0]]])
    returns = torch.tensor([3.0, -1.0, 5.0, 0.0, 4.0])
    mean, std = impl.module("planning.algorithms").cem_refit(actions, returns, 3)
    assert mean.shape == std.shape == (1, 2)
    assert mean.reshape(-1).tolist() == pytest.approx([3.0, 3.0])
    # first action entry: 1, 3, 5 -> variance (4 + 0 + 4) / 3; second: 2, 0, 7 -> (1 + 9 + 16) / 3
    assert std.reshape(-1).tolist() == pytest.approx([(8 / 3) ** 0.5, (26 / 3) ** 0.5], rel=1e-5)


@pytest.mark.shape
def test_sample_action_sequences_zero_std_is_the_clipped_mean(impl):
    """σ = 0: every candidate is clip(μ): μ = [[0.5, 3], [-2, 0]] in [-1, 1] x [-1, 2] is [[0.5, 2], [-1, 0]]."""
    mean = torch.tensor([[0.5, 3.0], [-2.0, 0.0]])
    samples = impl.module("planning.algorithms").sample_action_sequences(
        mean, torch.zeros(2, 2), 4, torch.tensor([-1.0, -1.0]), torch.tensor([1.0, 2.0])
    )
    assert samples.shape == (4, 2, 2)
    assert samples.tolist() == [[[0.5, 2.0], [-1.0, 0.0]]] * 4
