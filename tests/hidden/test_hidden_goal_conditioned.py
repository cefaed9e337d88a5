"""Hidden tests: GoalConditionedAgent (other hand-computed cases of HER's helpers)."""

import numpy as np
import pytest
import torch

pytestmark = pytest.mark.component("GoalConditionedAgent")


def _gc(impl):
    return impl.module("hierarchical_rl.goal_conditioned")


def _critic_targets_from_grad_inputs(impl, rewards, next_q, dones):
    """her_critic_targets' result when its rewards and next_q require grad: its values (detached) and, beside
    them, whether it requires grad (observations: the test decides)."""
    rewards, next_q = rewards.clone().requires_grad_(), next_q.clone().requires_grad_()
    gc = impl.module("hierarchical_rl.goal_conditioned")
    y = gc.her_critic_targets(rewards, next_q, dones, 0.5, None, 0.0)
    return y.detach(), bool(y.requires_grad)


@pytest.mark.shape
def test_critic_targets_upper_clip_only_and_bool_dones(impl):
    """q_max = 0 alone, bool dones, γ = ½: [−1 + 1.5 → 0, −1 − 2 = −3 (no lower clip), done: 0]."""
    y = _gc(impl).her_critic_targets(
        torch.tensor([-1.0, -1.0, 0.0]), torch.tensor([3.0, -4.0, 5.0]), torch.tensor([False, False, True]),
        0.5, None, 0.0,
    )  # fmt: skip
    torch.testing.assert_close(y, torch.tensor([0.0, -3.0, 0.0]))


@pytest.mark.shape
def test_future_goals_of_the_last_transition_are_the_final_state(impl):
    """'future' at t = T − 1 can only pick row T; k = 0 gives an empty (0, G) array."""
    ach = np.array([[0.0, 1.0], [2.0, 3.0], [4.0, 5.0], [6.0, 7.0]], dtype=np.float32)
    goals = _gc(impl).sample_her_goals(ach, 2, 20, "future", np.random.default_rng(0))
    np.testing.assert_array_equal(goals, np.array([[6.0, 7.0]] * 20, dtype=np.float32))
    assert _gc(impl).sample_her_goals(ach, 0, 0, "future", np.random.default_rng(0)).shape == (0, 2)


@pytest.mark.shape
def test_relabel_final_with_a_distance_reward(impl):
    """'final' relabels both transitions with m(s_2) = 3; rewards −|m(s_{t+1}) − 3| = (−2, 0)."""
    ach = np.array([[0.0], [1.0], [3.0]], dtype=np.float32)
    goals, rewards = _gc(impl).relabel_episode(
        ach, 1, "final", lambda a, d: -np.abs(a - d).sum(axis=-1), np.random.default_rng(0)
    )
    np.testing.assert_array_equal(goals, np.full((2, 1, 1), 3.0, dtype=np.float32))
    np.testing.assert_allclose(rewards, [[-2.0], [0.0]])


@pytest.mark.gradient
def test_critic_targets_carry_no_gradient_from_the_rewards(impl):
    """The targets are constants even when the rewards (not only next_q) require grad: y = r + ½·q' = (−2, −½)."""
    y, requires_grad = impl.run(_critic_targets_from_grad_inputs, torch.tensor([-1.0, 0.0]),
                                torch.tensor([-2.0, -1.0]), torch.zeros(2))  # fmt: skip
    torch.testing.assert_close(y, torch.tensor([-2.0, -0.5]))
    assert not requires_grad
