"""Environment helpers that work with Gymnasium (5-tuple) and old Gym-style (4-tuple) environments.

Given code (no student task). Gymnasium's API (``reset(seed=...) -> (obs, info)``,
``step(a) -> (obs, reward, terminated, truncated, info)``) is the target; old Gym environments
(``reset() -> obs``, ``step(a) -> (obs, reward, done, info)``, seeding through ``env.seed``) are adapted:
``done`` becomes ``terminated`` unless ``info["TimeLimit.truncated"]`` says the episode was cut by a time
limit, in which case it becomes ``truncated`` (the distinction matters for bootstrapping: a truncated
episode's last state still has a value).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from utils.checks import check_positive_int

__all__ = ["EnvironmentUtils", "Trajectory", "unpack_reset", "unpack_step"]


def unpack_reset(result: Any) -> tuple[Any, dict]:
    """``(obs, info)`` of a Gymnasium ``(obs, info)`` reset or an old-Gym ``obs`` reset."""
    if isinstance(result, tuple) and len(result) == 2 and isinstance(result[1], dict):
        return result[0], result[1]
    return result, {}


def unpack_step(result: Any) -> tuple[Any, float, bool, bool, dict]:
    """``(obs, reward, terminated, truncated, info)`` of a Gymnasium 5-tuple or an old-Gym 4-tuple step.

    An old-Gym ``done`` with ``info["TimeLimit.truncated"]`` is a truncation, otherwise a termination.

    Raises:
        ValueError: for a result of neither 4 nor 5 values.
    """
    if not isinstance(result, tuple) or len(result) not in (4, 5):
        size = len(result) if isinstance(result, tuple) else type(result).__name__
        raise ValueError(
            f"env.step must return (obs, reward, terminated, truncated, info) or (obs, reward, done, info), "
            f"got {size}"
        )
    if len(result) == 5:
        obs, reward, terminated, truncated, info = result
        return obs, float(reward), bool(terminated), bool(truncated), dict(info or {})
    obs, reward, done, info = result
    info = dict(info or {})
    truncated = bool(done) and bool(info.get("TimeLimit.truncated", False))
    return obs, float(reward), bool(done) and not truncated, truncated, info


@dataclass
class Trajectory:
    """One episode (or its first ``max_steps`` steps).

    Attributes:
        observations: T + 1 observations (the last is the observation after the final step).
        actions: T actions; rewards: T floats; infos: T info dicts of the steps.
        terminated: the episode reached a terminal state.
        truncated: the episode was cut (time limit of the env, or ``max_steps`` of the rollout).
    """

    observations: list[Any] = field(default_factory=list)
    actions: list[Any] = field(default_factory=list)
    rewards: list[float] = field(default_factory=list)
    infos: list[dict] = field(default_factory=list)
    terminated: bool = False
    truncated: bool = False

    @property
    def length(self) -> int:
        """Number of steps T."""
        return len(self.rewards)

    @property
    def episode_return(self) -> float:
        """Undiscounted return Σ r_t."""
        return float(sum(self.rewards))

    @property
    def success(self) -> bool | None:
        """``info["is_success"]`` (or ``"success"``) of the last step, None if the env does not report it."""
        if not self.infos:
            return None
        last = self.infos[-1]
        for key in ("is_success", "success"):
            if key in last:
                return bool(last[key])
        return None

    def discounted_return(self, gamma: float) -> float:
        """Σ γ^t r_t."""
        return float(sum(r * gamma**t for t, r in enumerate(self.rewards)))


def _to_env_action(action: Any) -> Any:
    """Tensors -> numpy, 0-d arrays -> python scalars (what ``Discrete.contains`` accepts)."""
    if hasattr(action, "detach"):
        action = action.detach().cpu().numpy()
    if isinstance(action, np.ndarray) and action.ndim == 0:
        return action.item()
    return action


class EnvironmentUtils:
    """Static helpers: API-normalised ``reset`` / ``step``, seeded ``rollout`` and ``evaluate``."""

    @staticmethod
    def reset(env: Any, seed: int | None = None) -> tuple[Any, dict]:
        """Reset ``env`` and return ``(obs, info)`` for Gymnasium and old Gym environments.

        With ``seed``: Gymnasium envs get ``reset(seed=seed)``; old envs that reject the keyword are
        seeded through ``env.seed(seed)`` when they have it. The action space is seeded too (so that
        ``env.action_space.sample()`` is reproducible).
        """
        if seed is None:
            result = env.reset()
        else:
            try:
                result = env.reset(seed=seed)
            except TypeError:  # old gym: reset() takes no seed
                if hasattr(env, "seed"):
                    env.seed(seed)
                result = env.reset()
            space = getattr(env, "action_space", None)
            if space is not None and hasattr(space, "seed"):
                space.seed(seed)
        return unpack_reset(result)

    @staticmethod
    def step(env: Any, action: Any) -> tuple[Any, float, bool, bool, dict]:
        """One step as ``(obs, reward, terminated, truncated, info)`` for both APIs (see :func:`unpack_step`).

        Raises:
            ValueError: if ``env.step`` returns neither 4 nor 5 values.
        """
        return unpack_step(env.step(_to_env_action(action)))

    @staticmethod
    def rollout(
        env: Any, policy: Callable[[Any], Any], max_steps: int = 1000, seed: int | None = None
    ) -> Trajectory:
        """Run ``policy`` (obs -> action) for one episode, at most ``max_steps`` steps.

        Args:
            env: Gymnasium or old Gym environment.
            policy: callable mapping an observation to an action (tensors are converted).
            max_steps: step budget; reaching it sets ``truncated``.
            seed: seed of the reset (and of the action space), for reproducible episodes.
        """
        max_steps = check_positive_int("max_steps", max_steps)
        obs, _ = EnvironmentUtils.reset(env, seed=seed)
        traj = Trajectory(observations=[obs])
        for _ in range(max_steps):
            action = policy(obs)
            obs, reward, terminated, truncated, info = EnvironmentUtils.step(env, action)
            traj.actions.append(action)
            traj.rewards.append(reward)
            traj.observations.append(obs)
            traj.infos.append(info)
            if terminated or truncated:
                traj.terminated, traj.truncated = terminated, truncated
                return traj
        traj.truncated = True
        return traj

    @staticmethod
    def evaluate(
        env: Any,
        policy: Callable[[Any], Any],
        num_episodes: int = 10,
        seed: int | None = None,
        max_steps: int = 1000,
    ) -> dict[str, Any]:
        """Average undiscounted return of ``policy`` over ``num_episodes`` episodes.

        Episode i is reset with ``seed + i`` (when ``seed`` is given), so evaluations are reproducible
        and the episodes differ.

        Returns:
            dict with ``mean_return``, ``std_return``, ``min_return``, ``max_return``, ``mean_length``,
            ``returns`` (list), ``lengths`` (list) and ``success_rate`` (fraction of episodes whose last
            info reports success; None if the env never reports it).
        """
        num_episodes = check_positive_int("num_episodes", num_episodes)
        returns, lengths, successes = [], [], []
        for i in range(num_episodes):
            traj = EnvironmentUtils.rollout(env, policy, max_steps, None if seed is None else seed + i)
            returns.append(traj.episode_return)
            lengths.append(traj.length)
            if traj.success is not None:
                successes.append(traj.success)
        mean = sum(returns) / num_episodes
        return {
            "mean_return": mean,
            "std_return": math.sqrt(sum((r - mean) ** 2 for r in returns) / num_episodes),
            "min_return": min(returns),
            "max_return": max(returns),
            "mean_length": sum(lengths) / num_episodes,
            "returns": returns,
            "lengths": lengths,
            "success_rate": (sum(successes) / len(successes)) if successes else None,
        }

    @staticmethod
    def space_dims(env: Any) -> tuple[int, int, bool]:
        """``(obs_dim, action_dim, discrete)``: flat observation size, number of discrete actions or the
        continuous action size, and whether the action space is discrete."""
        obs_space, act_space = env.observation_space, env.action_space
        obs_dim = int(np.prod(obs_space.shape)) if obs_space.shape else int(getattr(obs_space, "n", 1))
        if hasattr(act_space, "n"):
            return obs_dim, int(act_space.n), True
        return obs_dim, int(np.prod(act_space.shape)), False
