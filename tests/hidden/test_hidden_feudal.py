"""Hidden tests: FeudalNetwork (other hand-computed cases of the FuN math)."""

import math

import pytest
import torch

pytestmark = pytest.mark.component("FeudalNetwork")


def _alg(impl):
    return impl.module("hierarchical_rl.algorithms")


def _worker_loss(impl, *args, **kwargs):
    """fun_worker_loss's (policy, value, entropy), read by name."""
    out = impl.module("hierarchical_rl.algorithms").fun_worker_loss(*args, **kwargs)
    return {"policy": out.policy, "value": out.value, "entropy": out.entropy}


def _worker_loss_grads(impl, log_probs, values, rewards, intrinsic):
    """d(policy + value)/d log π and d(policy + value)/dV of fun_worker_loss (α = 2, γ_W = 0)."""
    log_probs, values = log_probs.clone().requires_grad_(), values.clone().requires_grad_()
    out = impl.module("hierarchical_rl.algorithms").fun_worker_loss(
        log_probs, torch.zeros(2), values, rewards, intrinsic, alpha=2.0, gamma=0.0
    )
    (out.policy + out.value).backward()
    return log_probs.grad, values.grad


@pytest.mark.shape
def test_intrinsic_reward_with_a_horizon_longer_than_the_path(impl):
    """c = 3 on a 3-step path: missing terms are dropped but the sum is still divided by c."""
    states = torch.tensor([[0.0, 0.0], [0.0, 2.0], [3.0, 2.0]])
    goals = torch.tensor([[0.0, 1.0], [1.0, 1.0], [5.0, 5.0]])
    r = _alg(impl).fun_intrinsic_reward(states, goals, 3)
    # r_1 = cos((0,2),(0,1)) / 3 = 1/3;  r_2 = (cos((3,0),(1,1)) + cos((3,2),(0,1))) / 3 = (1/√2 + 2/√13) / 3
    expected = torch.tensor([0.0, 1.0 / 3.0, (1.0 / math.sqrt(2.0) + 2.0 / math.sqrt(13.0)) / 3.0])
    torch.testing.assert_close(r, expected)


@pytest.mark.shape
def test_transition_policy_loss_clamps_the_horizon_at_the_last_state(impl):
    """c = 5 > N − 1: every direction is s_{N−1} − s_t; L_M = −(0 + 2/√2 − 1)/3 = −(√2 − 1)/3."""
    states = torch.tensor([[0.0, 0.0], [2.0, 0.0], [2.0, 2.0], [0.0, 2.0]])
    goals = torch.tensor([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0]])
    adv = torch.tensor([1.0, 2.0, -1.0])
    # directions (0,2), (−2,2), (−2,0): cosines with the goals 0, 1/√2, 1
    loss = _alg(impl).fun_transition_policy_loss(states, goals, adv, 5)
    assert float(loss) == pytest.approx(-(math.sqrt(2.0) - 1.0) / 3.0, abs=1e-5)


@pytest.mark.shape
def test_worker_loss_without_discount_ignores_the_bootstrap(impl):
    """γ_W = 0: R̃_t = r_t + α r^I_t = (2, −1) whatever the bootstrap; A = (1.5, −1.5) against V = 0.5."""
    log_probs = torch.log(torch.tensor([0.5, 0.2]))
    args = (log_probs, torch.tensor([0.3, 0.7]), torch.tensor([0.5, 0.5]), torch.tensor([1.0, 0.0]),
            torch.tensor([0.5, -0.5]))  # fmt: skip
    for bootstrap in (0.0, 10.0):
        out = impl.run(_worker_loss, *args, alpha=2.0, gamma=0.0, bootstrap=bootstrap, entropy_coef=0.5)
        # policy = −(1.5 log 0.5 − 1.5 log 0.2)/2 − 0.5 · 0.5 = −0.75 log 2.5 − 0.25; value = ½ · 1.5² = 1.125
        assert float(out["policy"]) == pytest.approx(-0.75 * math.log(2.5) - 0.25, abs=1e-5)
        assert float(out["value"]) == pytest.approx(1.125, abs=1e-5)
        assert float(out["entropy"]) == pytest.approx(0.5, abs=1e-6)


@pytest.mark.gradient
def test_worker_loss_gradients_hand_computed(impl):
    """d policy/d log π_t = −A_t/T = (−0.75, 0.75); d value/dV_t = −(R̃_t − V_t)/T = (−0.75, 0.75)."""
    log_grad, value_grad = impl.run(
        _worker_loss_grads,
        torch.log(torch.tensor([0.5, 0.2])),
        torch.tensor([0.5, 0.5]),
        torch.tensor([1.0, 0.0]),
        torch.tensor([0.5, -0.5]),
    )
    assert log_grad is not None and value_grad is not None, "the loss must reach log π and V"
    torch.testing.assert_close(log_grad, torch.tensor([-0.75, 0.75]))
    torch.testing.assert_close(value_grad, torch.tensor([-0.75, 0.75]))
