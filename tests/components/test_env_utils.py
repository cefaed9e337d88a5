"""Tests of EnvironmentUtils (given code) on a Gymnasium env and on a fake old-Gym (4-tuple) env."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
import torch

pytestmark = pytest.mark.component("EnvironmentUtils")


class OldStyleChain:
    """Old Gym API: reset() -> obs (no seed keyword), step(a) -> (obs, reward, done, info), seed(s).

    A chain 0..length: action 1 moves right (reward 1 at the end, terminal); a time limit of ``limit``
    steps ends the episode with info["TimeLimit.truncated"] = True.
    """

    def __init__(self, length: int = 3, limit: int = 10) -> None:
        self.length, self.limit = length, limit
        self.seeded_with = None

    def seed(self, seed):
        self.seeded_with = seed
        return [seed]

    def reset(self):
        self.pos, self.t = 0, 0
        return np.array([self.pos], dtype=np.float32)

    def step(self, action):
        assert action in (0, 1), action  # plain python ints after conversion
        self.t += 1
        self.pos = min(self.pos + int(action), self.length)
        at_goal = self.pos == self.length
        timeout = self.t >= self.limit and not at_goal
        info = {"TimeLimit.truncated": True} if timeout else {}
        if at_goal:
            info["is_success"] = True
        return np.array([self.pos], dtype=np.float32), float(at_goal), at_goal or timeout, info


class BrokenStepChain(OldStyleChain):
    """An OldStyleChain whose step returns only 3 values."""

    def step(self, action):
        return super().step(action)[:3]


def _in_worker(impl, factory, *args, **kwargs):
    """In the worker: ``factory(*args, **kwargs)``, kept there (the judge gets a handle), so that the calls
    of EnvironmentUtils act on one environment object whose state the judge can then read."""
    return factory(*args, **kwargs)


def _gym_make(impl, name):
    """In the worker: ``gymnasium.make(name)`` (the judge gets a handle)."""
    return gym.make(name)


@pytest.mark.shape
@pytest.mark.points(0)
def test_gymnasium_reset_and_step(impl):
    """On CartPole-v1, reset gives (obs, info) and step gives a 5-tuple of the right types; seeds reproduce."""
    env = impl.run(_gym_make, "CartPole-v1")
    E = impl.EnvironmentUtils
    obs, info = E.reset(env, seed=3)
    obs2, _ = E.reset(env, seed=3)
    assert obs.shape == (4,) and isinstance(info, dict)
    np.testing.assert_array_equal(obs, obs2)
    out = E.step(env, torch.tensor(1))  # tensors are converted to plain actions
    assert len(out) == 5
    obs, reward, terminated, truncated, info = out
    assert obs.shape == (4,) and reward == 1.0 and terminated is False and truncated is False
    env.close()


@pytest.mark.shape
@pytest.mark.points(0)
def test_old_style_env_reset_and_step(impl):
    """A 4-tuple env: reset(seed) falls back to env.seed; done maps to terminated, or to truncated on timeout."""
    E = impl.EnvironmentUtils
    env = impl.run(_in_worker, OldStyleChain, length=2, limit=3)
    obs, info = E.reset(env, seed=7)
    assert env.seeded_with == 7 and obs.tolist() == [0.0] and info == {}
    assert E.step(env, 1)[2:4] == (False, False)
    obs, reward, terminated, truncated, info = E.step(env, np.int64(1))
    assert (reward, terminated, truncated) == (1.0, True, False)
    E.reset(env)
    for _ in range(2):
        E.step(env, 0)
    obs, reward, terminated, truncated, info = E.step(env, 0)
    assert (terminated, truncated) == (False, True)


@pytest.mark.shape
@pytest.mark.points(0)
def test_rollout_records_the_episode(impl):
    """rollout returns T+1 observations, T actions/rewards, the end flags and max_steps truncation."""
    E = impl.EnvironmentUtils
    traj = E.rollout(OldStyleChain(length=3), lambda obs: 1, max_steps=50, seed=0)
    assert traj.length == 3 and len(traj.observations) == 4 and len(traj.actions) == 3
    assert traj.episode_return == 1.0 and traj.terminated and not traj.truncated and traj.success
    assert traj.discounted_return(0.5) == pytest.approx(0.25)
    cut = E.rollout(OldStyleChain(length=3), lambda obs: 0, max_steps=2)
    assert cut.length == 2 and cut.truncated and not cut.terminated


@pytest.mark.shape
@pytest.mark.points(0)
def test_evaluate_is_seeded_and_summarises(impl):
    """evaluate on CartPole returns mean/std return and length; the same seed gives the same numbers."""
    E = impl.EnvironmentUtils
    env = impl.run(_gym_make, "CartPole-v1")
    policy = lambda obs: int(obs[2] + obs[3] > 0)
    a = E.evaluate(env, policy, num_episodes=3, seed=11, max_steps=100)
    b = E.evaluate(env, policy, num_episodes=3, seed=11, max_steps=100)
    assert a["returns"] == b["returns"]
    assert a["mean_return"] == pytest.approx(np.mean(a["returns"]))
    assert a["std_return"] == pytest.approx(np.std(a["returns"]))
    assert a["mean_length"] == pytest.approx(np.mean(a["lengths"])) and a["success_rate"] is None
    old = E.evaluate(OldStyleChain(length=2), lambda obs: 1, num_episodes=2, seed=0)
    assert old["mean_return"] == 1.0 and old["success_rate"] == 1.0
    with pytest.raises(ValueError, match="num_episodes"):
        E.evaluate(env, policy, num_episodes=0)
    env.close()


@pytest.mark.shape
@pytest.mark.points(0)
def test_step_rejects_malformed_returns_and_reports_dims(impl):
    """A step returning 3 values raises ValueError; space_dims reads CartPole's (4, 2, discrete)."""
    env = impl.run(_in_worker, BrokenStepChain)
    env.reset()
    with pytest.raises(ValueError, match="env.step"):
        impl.EnvironmentUtils.step(env, 1)
    assert impl.EnvironmentUtils.space_dims(impl.run(_gym_make, "CartPole-v1")) == (4, 2, True)
