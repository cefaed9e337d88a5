"""The bit-flipping environment of Hindsight Experience Replay.

Andrychowicz, M., Wolski, F., Ray, A., Schneider, J., Fong, R., Welinder, P., McGrew, B., Tobin, J.,
Abbeel, P. & Zaremba, W. (2017). *Hindsight Experience Replay*. NeurIPS. §3.1 (motivating example) and
§4.1 ("Does HER improve performance?", bit-flipping results of Fig. 1).

The state is a vector of ``n`` bits ``s ∈ {0, 1}^n``, the goal a target vector ``g ∈ {0, 1}^n``; action
``i`` flips bit ``i``. The reward is sparse, ``r(s, g) = −[s ≠ g]`` (−1 on every step that does not end at
the goal, 0 when it does). Without hindsight relabelling, random exploration almost never meets ``g``
once ``n`` exceeds ~10, so a DQN agent gets no learning signal; HER turns every episode into useful data.

The interface follows the goal-environment convention (``gymnasium_robotics.GoalEnv``): observations are
dictionaries with ``"observation"``, ``"achieved_goal"`` and ``"desired_goal"`` (here the first two are the
same bit vector) and :meth:`BitFlippingEnv.compute_reward` recomputes rewards for any (achieved, desired)
pair, vectorised over leading batch dimensions, which is what hindsight relabelling needs.

Deviations (documented):
    * The episode terminates (``terminated=True``) as soon as the goal is reached; the paper lets it run
      to the time limit. With sparse −1/0 rewards the optimal policy is the same.
    * The goal is resampled at ``reset`` until it differs from the initial state, so that no episode is
      solved before the agent acts (the paper samples both uniformly; they coincide with prob. ``2^-n``).
    * ``reward_type="dense"`` (negative Hamming distance) is an extra for experiments; the paper uses
      the sparse reward only.
"""

from __future__ import annotations

from typing import Any, ClassVar

import gymnasium as gym
import numpy as np
from gymnasium import spaces
from utils.checks import check_choice, check_positive_int

__all__ = ["BitFlippingEnv"]


class BitFlippingEnv(gym.Env):
    """Flip bits of a binary vector until it equals a random target vector.

    Observation (``spaces.Dict``), each a ``(n_bits,) float32`` array of 0.0/1.0:
        ``observation``: the current bits ``s``; ``achieved_goal``: the same bits; ``desired_goal``: ``g``.

    Action: ``Discrete(n_bits)``, action ``i`` flips bit ``i``.

    Reward: ``compute_reward(achieved, desired, info)``: sparse ``−1`` unless ``achieved == desired``
    (``0``), or with ``reward_type="dense"`` minus the number of differing bits. The episode terminates
    on success and is truncated after ``max_steps`` steps. ``info["is_success"]`` is ``1.0`` on success.

    Args:
        n_bits: number of bits ``n`` (>= 1).
        max_steps: step limit of an episode (>= 1); ``None`` means ``n_bits`` as in the paper.
        reward_type: ``"sparse"`` (paper) or ``"dense"``.
        seed: seed of the first :meth:`reset` that is called without one.
        render_mode: ``None`` or ``"ansi"`` (``render()`` returns a string).
    """

    metadata: ClassVar[dict[str, Any]] = {"render_modes": ["ansi"], "render_fps": 4}

    def __init__(
        self,
        n_bits: int = 10,
        max_steps: int | None = None,
        reward_type: str = "sparse",
        seed: int | None = None,
        render_mode: str | None = None,
    ) -> None:
        super().__init__()
        self.n_bits = check_positive_int("n_bits", n_bits)
        self.max_steps = self.n_bits if max_steps is None else check_positive_int("max_steps", max_steps)
        self.reward_type = check_choice("reward_type", reward_type, ("sparse", "dense"))
        if render_mode is not None:
            check_choice("render_mode", render_mode, self.metadata["render_modes"])
        self.render_mode = render_mode
        self._pending_seed = seed

        bits = spaces.Box(low=0.0, high=1.0, shape=(self.n_bits,), dtype=np.float32)
        self.observation_space = spaces.Dict(
            {"observation": bits, "achieved_goal": bits, "desired_goal": bits}
        )
        self.action_space = spaces.Discrete(self.n_bits)

        self.state = np.zeros(self.n_bits, dtype=np.float32)
        self.goal = np.ones(self.n_bits, dtype=np.float32)
        self.steps = 0

    # ----------------------------------------------------------------------------------------------------
    def compute_reward(self, achieved_goal: Any, desired_goal: Any, info: Any = None) -> Any:
        """Reward of reaching ``achieved_goal`` when ``desired_goal`` is wanted, vectorised.

        Args:
            achieved_goal: ``(..., n_bits)`` 0/1 values (any leading batch shape).
            desired_goal: ``(..., n_bits)``, broadcastable with ``achieved_goal``.
            info: unused (GoalEnv signature).

        Returns:
            ``(...)`` float32 array of rewards (a python ``float`` for single goals): sparse ``−1.0`` /
            ``0.0``, or dense minus the number of differing bits.
        """
        achieved = np.asarray(achieved_goal, dtype=np.float32)
        desired = np.asarray(desired_goal, dtype=np.float32)
        differing = (np.abs(achieved - desired) > 0.5).sum(axis=-1)
        if self.reward_type == "sparse":
            reward = np.where(differing > 0, -1.0, 0.0).astype(np.float32)
        else:
            reward = (-differing).astype(np.float32)
        return float(reward) if np.ndim(reward) == 0 else reward

    def compute_terminated(self, achieved_goal: Any, desired_goal: Any, info: Any = None) -> Any:
        """Whether ``achieved_goal`` equals ``desired_goal`` (vectorised like :meth:`compute_reward`)."""
        achieved = np.asarray(achieved_goal, dtype=np.float32)
        desired = np.asarray(desired_goal, dtype=np.float32)
        done = np.all(np.abs(achieved - desired) <= 0.5, axis=-1)
        return bool(done) if np.ndim(done) == 0 else done

    def compute_truncated(self, achieved_goal: Any, desired_goal: Any, info: Any = None) -> bool:
        """Whether the step limit is reached (GoalEnv signature; goals are unused)."""
        return self.steps >= self.max_steps

    # ----------------------------------------------------------------------------------------------------
    def _obs(self) -> dict[str, np.ndarray]:
        return {
            "observation": self.state.copy(),
            "achieved_goal": self.state.copy(),
            "desired_goal": self.goal.copy(),
        }

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        """Sample a uniform initial bit vector and a different uniform goal.

        Args:
            seed: reseeds ``self.np_random`` (the constructor's ``seed`` is used on the first call).
            options: may hold ``"state"`` and/or ``"goal"`` (``(n_bits,)`` 0/1 arrays) to fix them.

        Returns:
            ``(observation dict, {"is_success": 0.0})``.
        """
        if seed is None and self._pending_seed is not None:
            seed = self._pending_seed
        self._pending_seed = None
        super().reset(seed=seed)
        options = options or {}
        if "state" in options:
            self.state = self._as_bits("options['state']", options["state"])
        else:
            self.state = self.np_random.integers(0, 2, size=self.n_bits).astype(np.float32)
        if "goal" in options:
            self.goal = self._as_bits("options['goal']", options["goal"])
        else:
            self.goal = self.np_random.integers(0, 2, size=self.n_bits).astype(np.float32)
            while np.array_equal(self.goal, self.state):
                self.goal = self.np_random.integers(0, 2, size=self.n_bits).astype(np.float32)
        self.steps = 0
        success = self.compute_terminated(self.state, self.goal)
        return self._obs(), {"is_success": float(success)}

    def step(self, action: Any) -> tuple[dict[str, np.ndarray], float, bool, bool, dict[str, Any]]:
        """Flip bit ``action``.

        Returns:
            ``(obs, reward, terminated, truncated, info)``; ``terminated`` when the bits equal the goal,
            ``truncated`` when ``max_steps`` steps have been taken without success.
        """
        if not self.action_space.contains(action) and not (
            np.ndim(action) == 0 and float(action).is_integer() and 0 <= int(action) < self.n_bits
        ):
            raise ValueError(f"action must be an integer bit index in [0, {self.n_bits - 1}], got {action!r}")
        i = int(action)
        self.state = self.state.copy()
        self.state[i] = 1.0 - self.state[i]
        self.steps += 1
        reward = float(self.compute_reward(self.state, self.goal, None))
        terminated = bool(self.compute_terminated(self.state, self.goal))
        truncated = (not terminated) and self.steps >= self.max_steps
        return self._obs(), reward, terminated, truncated, {"is_success": float(terminated)}

    def render(self) -> str | None:
        """With ``render_mode="ansi"``: ``"state 0101… | goal 1100…"``; otherwise ``None``."""
        if self.render_mode != "ansi":
            return None
        bits = lambda v: "".join(str(int(b)) for b in v)
        return f"state {bits(self.state)} | goal {bits(self.goal)} | step {self.steps}/{self.max_steps}"

    def _as_bits(self, name: str, value: Any) -> np.ndarray:
        arr = np.asarray(value, dtype=np.float32).reshape(-1)
        if arr.shape != (self.n_bits,) or not np.all((arr == 0) | (arr == 1)):
            raise ValueError(f"{name} must be {self.n_bits} values in {{0, 1}}, got {value!r}")
        return arr
