"""Hierarchical Actor-Critic (HAC) of Levy, Konidaris, Platt and Saenko (2019), "Learning Multi-Level
Hierarchies with Hindsight", ICLR (Algorithm 1, HAC, and Algorithm 2, train-level).

A hierarchy of ``k`` goal-conditioned DDPG actor-critics. Every level gets a goal, acts for at most ``H``
attempts, and each attempt of an upper level is a *subgoal* handed to the level below, which in turn gets at
most ``H`` attempts to reach it; the lowest level outputs primitive actions. Three kinds of transitions let
all levels learn at the same time (paper §4):

* **hindsight action transitions** (§4.2): an upper level's action is replaced by the subgoal the level
  below actually reached, ``ã = φ(s')``, so that the upper level learns as if the level below were already
  optimal (a stationary transition function). Reward ``0`` and episode end if ``s'`` achieves the level's
  goal, else ``−1``;
* **hindsight goal transitions** (§4.3, HER): copies of the hindsight action transitions whose goal is a
  state achieved later in the same sequence of attempts, with the reward recomputed against that goal;
* **subgoal testing transitions** (§4.4): with probability ``λ`` a proposed subgoal is *tested*: every level
  below acts without exploration noise, and if the subgoal is missed the proposing level stores
  ``(s, subgoal, −H, s', g, discount 0)``, which teaches it which subgoals the current lower levels can reach.

The critic of each level is bounded to the range of its returns, ``Q ∈ [−H, 0]`` (the paper's implementation
details; the authors' code scales a sigmoid, ``Q = −H σ(f(s, g, a) + b)``, whose fixed offset ``b`` starts
the critic optimistic, near ``q_init = −0.067``), and its target is

    y = r + γ (1 − done) Q(s', π(s', g), g)         clipped to [−H, 0]

(DDPG's target with the discount set to 0 at the end of a level's episode).

Level indexing (the notebook's convention, opposite to the paper's):
    level ``0`` is the **highest** level (it receives the task goal) and level ``num_levels − 1`` the
    **lowest** (it outputs primitive actions). The paper numbers levels bottom-up: its level ``i`` is this
    module's level ``num_levels − 1 − i``.

Goal spaces (how ``subgoal_dims`` is read):
    ``subgoal_dims[i]`` is the dimension ``d_i`` of the goal that level ``i`` *consumes*. Level ``0``
    consumes the task goal (so ``subgoal_dims[0]`` is the task-goal dimension), level ``i < k − 1`` *outputs*
    a subgoal of dimension ``subgoal_dims[i + 1]`` and the lowest level outputs a primitive action of
    ``action_dim``. Each goal space is a fixed coordinate map of the state space,

        φ_i(s) = (s_{j mod S})_{j = 0..d_i − 1}        (S = state_dim),

    i.e. the first ``d_i`` state coordinates when ``d_i ≤ S`` and the state tiled cyclically when
    ``d_i > S``. A goal ``g`` of level ``i`` is *achieved* in state ``s`` when
    ``|φ_i(s) − g| ≤ threshold_i`` in every coordinate (§4, per-dimension thresholds). With
    ``subgoal_dims=None`` every subgoal lives in the state space (``d_i = S`` for ``i ≥ 1``) and the task goal
    has ``goal_dim`` coordinates (default ``S``). When the environment reports an ``achieved_goal`` (a
    goal-env Dict observation), that is used for level 0 instead of ``φ_0``. So the notebook's
    ``num_levels=3, subgoal_dims=[8, 6, 4]`` with ``state_dim=4`` builds a top level for 8-D goals that
    proposes 6-D subgoals, a middle level that proposes 4-D subgoals (= states), and a lowest level acting
    with 2-D primitive actions.

Documented deviations:
    * no target networks (the authors' code does not use them by default: the bounded critic keeps the
      targets stable);
    * hindsight goals use the "future" strategy of HER (``num_hindsight_goals`` achieved goals drawn from the
      rest of the level's sequence, the last one always included) instead of the paper's single final goal
      plus a few random ones;
    * exploration: Gaussian noise of ``exploration_noise`` × half the output range, and a uniformly random
      output with probability ``random_action_prob`` (as the authors' code).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from utils.checks import (
    check_in_range,
    check_nonnegative_float,
    check_nonnegative_int,
    check_positive_float,
    check_positive_int,
)
from utils.env_utils import unpack_reset, unpack_step
from utils.torch_utils import as_tensor, mlp, resolve_device

__all__ = [
    "HACActor",
    "HACCritic",
    "HACTransition",
    "HierarchicalActorCritic",
    "goal_space_indices",
    "hac_critic_target",
    "hac_goal_achieved",
    "hindsight_action_transition",
    "hindsight_goal_transition",
    "subgoal_test_transition",
]


class HACTransition(NamedTuple):
    """One transition of one level's replay buffer.

    Attributes:
        state: ``(S,)`` float32, the state the attempt started in.
        action: ``(A_i,)`` float32, a primitive action (lowest level) or a subgoal (upper levels).
        reward: ``0.0`` (goal achieved), ``-1.0`` (not achieved) or ``-H`` (failed subgoal test).
        next_state: ``(S,)`` float32, the state the attempt ended in.
        goal: ``(G_i,)`` float32, the level's goal.
        done: ``1.0`` when the target is the reward alone (goal achieved or failed subgoal test),
            else ``0.0``.
    """

    state: np.ndarray
    action: np.ndarray
    reward: float
    next_state: np.ndarray
    goal: np.ndarray
    done: float


# --------------------------------------------------------------------------------------------------------
# The math (pure functions)
# --------------------------------------------------------------------------------------------------------


def goal_space_indices(state_dim: int, goal_dim: int) -> np.ndarray:
    """The coordinate map ``φ`` from states to a goal space of ``goal_dim`` coordinates.

    Returns:
        ``(goal_dim,)`` int64 indices ``j mod state_dim``: ``φ(s) = s[..., indices]``.
    """
    check_positive_int("state_dim", state_dim)
    check_positive_int("goal_dim", goal_dim)
    return np.arange(goal_dim, dtype=np.int64) % state_dim


def hac_goal_achieved(
    achieved_goal: np.ndarray, goal: np.ndarray, threshold: float | np.ndarray
) -> np.ndarray:
    """Whether ``achieved_goal`` lies within ``threshold`` of ``goal`` in every coordinate (HAC §4).

    Args:
        achieved_goal: ``(..., G)`` float, the goal-space image of the state, ``φ(s)``.
        goal: ``(..., G)`` float, the goal (broadcast against ``achieved_goal``).
        threshold: scalar or ``(G,)`` float, the per-coordinate tolerance.

    Returns:
        ``(...)`` bool array (a 0-d array for single goals; use ``bool(...)``).
    """
    # TODO(student): achieved iff |achieved_goal − goal| ≤ threshold in EVERY coordinate (last axis) (HAC §4).
    raise NotImplementedError("hac_goal_achieved: achieved iff |achieved_goal − goal| ≤ threshold in EVERY coordinate (last axis) (HAC §4).")


def hac_critic_target(
    rewards: torch.Tensor, next_q: torch.Tensor, dones: torch.Tensor, gamma: float, horizon: int
) -> torch.Tensor:
    """HAC's bounded DDPG target ``y = clip(r + γ (1 − done) Q(s', π(s', g), g), −H, 0)``.

    Args:
        rewards: ``(B,)`` float32 rewards (``0``, ``−1`` or ``−H``).
        next_q: ``(B,)`` float32 ``Q(s', π(s', g), g)``, computed without gradient.
        dones: ``(B,)`` float32, ``1`` where the level's episode ended (no bootstrap).
        gamma: discount ``γ``.
        horizon: ``H``, the attempts per level; returns of a level lie in ``[−H, 0]``.

    Returns:
        ``(B,)`` float32 targets in ``[−H, 0]``.
    """
    # TODO(student): y = r + γ (1 − done) · next_q, clipped to [−H, 0] (HAC §4, bounded critic).
    raise NotImplementedError("hac_critic_target: y = r + γ (1 − done) · next_q, clipped to [−H, 0] (HAC §4, bounded critic).")


def hindsight_action_transition(
    state: np.ndarray,
    action: np.ndarray,
    next_state: np.ndarray,
    goal: np.ndarray,
    next_achieved_goal: np.ndarray,
    threshold: float | np.ndarray,
    achieved_subgoal: np.ndarray | None = None,
) -> HACTransition:
    """The hindsight action transition of one attempt (HAC §4.2).

    Args:
        state: ``(S,)`` the state the attempt started in.
        action: ``(A_i,)`` the level's action: a proposed subgoal (upper levels) or a primitive action.
        next_state: ``(S,)`` the state the attempt ended in.
        goal: ``(G_i,)`` the level's goal.
        next_achieved_goal: ``(G_i,)`` the goal-space image of ``next_state`` for this level.
        threshold: scalar or ``(G_i,)`` goal tolerance of this level.
        achieved_subgoal: ``(A_i,)`` for upper levels the subgoal the level below actually reached,
            ``φ_{i+1}(next_state)``; ``None`` for the lowest level (its primitive action is kept).

    Returns:
        ``HACTransition(state, ã, r, next_state, goal, done)`` with ``ã = achieved_subgoal`` (or ``action``
        when it is ``None``), ``r = 0, done = 1`` if ``next_achieved_goal`` achieves ``goal`` else
        ``r = −1, done = 0``.
    """
    # TODO(student): action ← subgoal reached below (lowest: kept); r, done = 0, 1 if goal achieved else −1, 0
    raise NotImplementedError("hindsight_action_transition: action ← subgoal reached below (lowest: kept); r, done = 0, 1 if goal achieved else −1, 0")


def hindsight_goal_transition(
    transition: HACTransition,
    new_goal: np.ndarray,
    next_achieved_goal: np.ndarray,
    threshold: float | np.ndarray,
) -> HACTransition:
    """A hindsight goal transition (HAC §4.3): ``transition`` relabelled with a goal achieved later.

    Args:
        transition: a hindsight action transition of this level.
        new_goal: ``(G_i,)`` a goal achieved later in the same sequence of attempts.
        next_achieved_goal: ``(G_i,)`` the goal-space image of ``transition.next_state``.
        threshold: scalar or ``(G_i,)`` goal tolerance of this level.

    Returns:
        the transition with ``goal = new_goal`` and reward/done recomputed against it
        (``0``/``1`` if ``next_achieved_goal`` achieves ``new_goal``, else ``−1``/``0``); the rest is kept.
    """
    # TODO(student): goal ← new_goal; (r, done) = (0, 1) if next_achieved_goal achieves it, else (−1, 0).
    raise NotImplementedError("hindsight_goal_transition: goal ← new_goal; (r, done) = (0, 1) if next_achieved_goal achieves it, else (−1, 0).")


def subgoal_test_transition(
    state: np.ndarray, subgoal: np.ndarray, next_state: np.ndarray, goal: np.ndarray, horizon: int
) -> HACTransition:
    """The penalty transition of a *missed* subgoal test (HAC §4.4).

    Args:
        state: ``(S,)`` the state the subgoal was proposed in.
        subgoal: ``(A_i,)`` the proposed (missed) subgoal — the original action, *not* the hindsight one.
        next_state: ``(S,)`` where the level below ended.
        goal: ``(G_i,)`` the proposing level's goal.
        horizon: ``H``; the penalty is ``−H`` (the lowest return of a level).

    Returns:
        ``HACTransition(state, subgoal, −H, next_state, goal, done=1)`` (discount 0: no bootstrap).
    """
    # TODO(student): the penalty transition (s, proposed subgoal, r = −H, s', g), done = 1 (HAC §4.4).
    raise NotImplementedError("subgoal_test_transition: the penalty transition (s, proposed subgoal, r = −H, s', g), done = 1 (HAC §4.4).")


# --------------------------------------------------------------------------------------------------------
# Networks and buffers (given)
# --------------------------------------------------------------------------------------------------------


class HACActor(nn.Module):
    """Deterministic policy ``π_i(s, g)`` of one level, squashed into the box ``[low, high]``.

    ``forward(states (B, S), goals (B, G)) -> (B, A) float32``, ``a = center + half_range · tanh(f(s, g))``.
    """

    def __init__(
        self,
        state_dim: int,
        goal_dim: int,
        out_dim: int,
        low: np.ndarray,
        high: np.ndarray,
        hidden_dim: int = 64,
    ) -> None:
        super().__init__()
        self.net = mlp(state_dim + goal_dim, [hidden_dim, hidden_dim], out_dim)
        low_t = torch.as_tensor(np.asarray(low, dtype=np.float32))
        high_t = torch.as_tensor(np.asarray(high, dtype=np.float32))
        self.register_buffer("center", (high_t + low_t) / 2.0)
        self.register_buffer("half_range", (high_t - low_t) / 2.0)

    def forward(self, states: torch.Tensor, goals: torch.Tensor) -> torch.Tensor:
        return self.center + self.half_range * torch.tanh(self.net(torch.cat([states, goals], dim=-1)))


class HACCritic(nn.Module):
    """Bounded critic ``Q_i(s, g, a) = −H · σ(f(s, g, a) + b) ∈ [−H, 0]`` of one level (HAC §4).

    The fixed offset ``b = −log(H / |q_init| − 1)`` makes a freshly initialised critic optimistic,
    ``Q ≈ q_init`` (the authors' code: ``q_init = −0.067``); ``q_init=None`` drops it (``b = 0``).

    ``forward(states (B, S), goals (B, G), actions (B, A)) -> (B,) float32``.
    """

    def __init__(
        self,
        state_dim: int,
        goal_dim: int,
        action_dim: int,
        horizon: int,
        hidden_dim: int = 64,
        q_init: float | None = -0.067,
    ) -> None:
        super().__init__()
        self.horizon = int(horizon)
        self.net = mlp(state_dim + goal_dim + action_dim, [hidden_dim, hidden_dim], 1)
        if q_init is not None and not -self.horizon < q_init < 0:
            raise ValueError(f"q_init must lie in (−H, 0) = ({-self.horizon}, 0) or be None, got {q_init!r}")
        self.q_offset = 0.0 if q_init is None else -math.log(self.horizon / abs(q_init) - 1.0)

    def forward(self, states: torch.Tensor, goals: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        logits = self.net(torch.cat([states, goals, actions], dim=-1)).squeeze(-1)
        return -float(self.horizon) * torch.sigmoid(logits + self.q_offset)


class _LevelBuffer:
    """A ring buffer of :class:`HACTransition` stored as numpy arrays (one per level)."""

    def __init__(self, capacity: int, state_dim: int, action_dim: int, goal_dim: int) -> None:
        self.capacity = capacity
        self.states = np.zeros((capacity, state_dim), dtype=np.float32)
        self.actions = np.zeros((capacity, action_dim), dtype=np.float32)
        self.rewards = np.zeros(capacity, dtype=np.float32)
        self.next_states = np.zeros((capacity, state_dim), dtype=np.float32)
        self.goals = np.zeros((capacity, goal_dim), dtype=np.float32)
        self.dones = np.zeros(capacity, dtype=np.float32)
        self.size = 0
        self._next = 0

    def __len__(self) -> int:
        return self.size

    def add(self, t: HACTransition) -> None:
        i = self._next
        self.states[i], self.actions[i], self.rewards[i] = t.state, t.action, t.reward
        self.next_states[i], self.goals[i], self.dones[i] = t.next_state, t.goal, t.done
        self._next = (i + 1) % self.capacity
        self.size = min(self.size + 1, self.capacity)

    def sample(
        self, batch_size: int, rng: np.random.Generator, device: torch.device
    ) -> tuple[torch.Tensor, ...]:
        idx = rng.integers(0, self.size, size=batch_size)
        arrays = (self.states, self.actions, self.rewards, self.next_states, self.goals, self.dones)
        return tuple(torch.as_tensor(a[idx], device=device) for a in arrays)


@dataclass
class _Episode:
    """Mutable state of one episode shared by the recursive level runs."""

    env: Any
    explore: bool
    learn: bool
    goals: list[np.ndarray | None]
    done: bool = False
    success: bool | None = None  # the env's own ``info["is_success"]`` when it reports one
    steps: int = 0
    env_reward: float = 0.0
    info: dict = field(default_factory=dict)


def _parse_obs(obs: Any) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None]:
    """``(state, desired_goal, achieved_goal)`` from a goal-env Dict observation (or a plain state)."""
    if isinstance(obs, dict):
        if "observation" not in obs:
            raise ValueError(
                "env observations must be goal-env dicts with keys 'observation', 'desired_goal' and "
                f"'achieved_goal', got keys {sorted(obs)}"
            )
        ach = obs.get("achieved_goal")
        des = obs.get("desired_goal")
        return (
            np.asarray(obs["observation"], dtype=np.float32),
            None if des is None else np.asarray(des, dtype=np.float32),
            None if ach is None else np.asarray(ach, dtype=np.float32),
        )
    return np.asarray(obs, dtype=np.float32), None, None


# --------------------------------------------------------------------------------------------------------
# The agent
# --------------------------------------------------------------------------------------------------------


class HierarchicalActorCritic:
    """A ``num_levels``-level HAC agent (Levy et al., 2019). Level 0 is the highest, see the module docstring.

    Args:
        state_dim: ``S``, state features.
        action_dim: primitive action features (continuous, in ``[action_low, action_high]``).
        num_levels: ``k ≥ 1`` levels (``1`` is plain goal-conditioned DDPG with HER).
        subgoal_dims: ``k`` goal dimensions, ``subgoal_dims[i]`` = the goal dimension level ``i`` consumes
            (level ``i < k−1`` outputs subgoals of ``subgoal_dims[i+1]``); ``None``: subgoals are states.
        lr: Adam learning rate of every actor and critic.
        horizon: ``H``, the attempts each level gets per goal (the lowest level: primitive steps).
        gamma: discount ``γ``.
        subgoal_test_prob: ``λ``, the probability of testing a proposed subgoal.
        action_low, action_high: bounds of the primitive actions (scalars or ``(action_dim,)``).
        state_low, state_high: bounds of the state space (scalars or ``(S,)``): subgoals are proposed in
            ``φ_i([state_low, state_high])``.
        goal_dim: task-goal dimension of level 0 (default ``subgoal_dims[0]`` or ``S``).
        goal_threshold: achievement tolerance: a scalar, or one entry per level (scalar or ``(d_i,)``).
        hidden_dim: width of the two hidden layers of every network.
        buffer_capacity: transitions kept per level.
        batch_size: minibatch size of :meth:`update`.
        exploration_noise: Gaussian noise std as a fraction of half the output range.
        random_action_prob: probability of a uniformly random output while exploring.
        num_hindsight_goals: hindsight goal transitions per hindsight action transition.
        device: torch device of the networks.
        seed: seed of the agent's own numpy generator (exploration, sampling); ``None`` draws one from numpy.
    """

    def __init__(
        self,
        state_dim: int,
        action_dim: int,
        num_levels: int = 2,
        subgoal_dims: Sequence[int] | None = None,
        lr: float = 1e-3,
        horizon: int = 10,
        gamma: float = 0.95,
        subgoal_test_prob: float = 0.3,
        action_low: float | Sequence[float] = -1.0,
        action_high: float | Sequence[float] = 1.0,
        state_low: float | Sequence[float] = -1.0,
        state_high: float | Sequence[float] = 1.0,
        goal_dim: int | None = None,
        goal_threshold: float | Sequence[Any] = 0.1,
        hidden_dim: int = 64,
        buffer_capacity: int = 100_000,
        batch_size: int = 128,
        exploration_noise: float = 0.1,
        random_action_prob: float = 0.2,
        num_hindsight_goals: int = 2,
        device: str | torch.device = "cpu",
        seed: int | None = None,
    ) -> None:
        self.state_dim = check_positive_int("state_dim", state_dim)
        self.action_dim = check_positive_int("action_dim", action_dim)
        self.num_levels = check_positive_int("num_levels", num_levels)
        self.lr = check_positive_float("lr", lr)
        self.horizon = check_positive_int("horizon", horizon)
        self.gamma = check_in_range("gamma", gamma, 0.0, 1.0)
        self.subgoal_test_prob = check_in_range("subgoal_test_prob", subgoal_test_prob, 0.0, 1.0)
        self.hidden_dim = check_positive_int("hidden_dim", hidden_dim)
        self.buffer_capacity = check_positive_int("buffer_capacity", buffer_capacity)
        self.batch_size = check_positive_int("batch_size", batch_size)
        self.exploration_noise = check_nonnegative_float("exploration_noise", exploration_noise)
        self.random_action_prob = check_in_range("random_action_prob", random_action_prob, 0.0, 1.0)
        self.num_hindsight_goals = check_nonnegative_int("num_hindsight_goals", num_hindsight_goals)
        self.device = resolve_device(device)
        self.rng = np.random.default_rng(seed if seed is not None else int(np.random.randint(0, 2**31 - 1)))

        k, S = self.num_levels, self.state_dim
        if goal_dim is not None:
            check_positive_int("goal_dim", goal_dim)
        if subgoal_dims is None:
            self.goal_dims = [goal_dim if goal_dim is not None else S] + [S] * (k - 1)
        else:
            dims = list(subgoal_dims)
            if len(dims) != k:
                raise ValueError(
                    f"subgoal_dims must hold one goal dimension per level (num_levels={k} entries, "
                    f"subgoal_dims[i] = the goal dimension level i consumes), got {len(dims)} entries: "
                    f"{dims!r}"
                )
            for i, d in enumerate(dims):
                check_positive_int(f"subgoal_dims[{i}]", d)
            if goal_dim is not None and goal_dim != dims[0]:
                raise ValueError(
                    f"goal_dim must equal subgoal_dims[0] (the top level's goal dimension), got "
                    f"goal_dim={goal_dim} and subgoal_dims[0]={dims[0]}; pass only one of them"
                )
            self.goal_dims = [int(d) for d in dims]
        #: output dimension of each level: the next level's goal, or the primitive action for the lowest.
        self.output_dims = self.goal_dims[1:] + [self.action_dim]
        #: φ_i as coordinate indices into the state (module docstring).
        self.goal_indices = [goal_space_indices(S, d) for d in self.goal_dims]

        self.action_low = self._box("action_low", action_low, self.action_dim)
        self.action_high = self._box("action_high", action_high, self.action_dim)
        self.state_low = self._box("state_low", state_low, S)
        self.state_high = self._box("state_high", state_high, S)
        for lo_name, lo, hi_name, hi in (
            ("action_low", self.action_low, "action_high", self.action_high),
            ("state_low", self.state_low, "state_high", self.state_high),
        ):
            if not np.all(lo < hi):
                raise ValueError(f"{lo_name} must be < {hi_name} in every coordinate, got {lo} and {hi}")
        self.thresholds = self._thresholds(goal_threshold)

        self.actors: list[HACActor] = []
        self.critics: list[HACCritic] = []
        self.actor_optimizers: list[torch.optim.Optimizer] = []
        self.critic_optimizers: list[torch.optim.Optimizer] = []
        self.buffers: list[_LevelBuffer] = []
        for i in range(k):
            low, high = self.output_bounds(i)
            actor = HACActor(S, self.goal_dims[i], self.output_dims[i], low, high, self.hidden_dim).to(
                self.device
            )
            critic = HACCritic(S, self.goal_dims[i], self.output_dims[i], self.horizon, self.hidden_dim).to(
                self.device
            )
            self.actors.append(actor)
            self.critics.append(critic)
            self.actor_optimizers.append(torch.optim.Adam(actor.parameters(), lr=self.lr))
            self.critic_optimizers.append(torch.optim.Adam(critic.parameters(), lr=self.lr))
            self.buffers.append(_LevelBuffer(self.buffer_capacity, S, self.output_dims[i], self.goal_dims[i]))

    # ---------------------------------------------------------------- set-up helpers
    @staticmethod
    def _box(name: str, value: Any, dim: int) -> np.ndarray:
        arr = np.asarray(value, dtype=np.float32)
        if arr.ndim == 0:
            return np.full(dim, float(arr), dtype=np.float32)
        if arr.shape != (dim,):
            raise ValueError(f"{name} must be a scalar or have shape ({dim},), got shape {arr.shape}")
        return arr.copy()

    def _thresholds(self, goal_threshold: Any) -> list[np.ndarray]:
        k = self.num_levels
        if np.ndim(goal_threshold) == 0:
            per_level = [goal_threshold] * k
        else:
            per_level = list(goal_threshold)
            if len(per_level) != k:
                raise ValueError(
                    f"goal_threshold must be a scalar or hold one entry per level ({k}), got {len(per_level)}"
                )
        out = []
        for i, th in enumerate(per_level):
            arr = self._box(f"goal_threshold[{i}]", th, self.goal_dims[i])
            if not np.all(arr > 0):
                raise ValueError(f"goal_threshold[{i}] must be > 0 in every coordinate, got {arr}")
            out.append(arr)
        return out

    def _check_level(self, level: Any) -> int:
        if not isinstance(level, (int, np.integer)) or not 0 <= level < self.num_levels:
            raise ValueError(
                f"level must be an integer in [0, {self.num_levels - 1}] (0 = highest, "
                f"{self.num_levels - 1} = lowest/primitive), got {level!r}"
            )
        return int(level)

    # ---------------------------------------------------------------- goal spaces
    def output_bounds(self, level: int) -> tuple[np.ndarray, np.ndarray]:
        """``(low, high)`` of a level's output: ``φ_{level+1}`` of the state box, or the action box."""
        level = self._check_level(level)
        if level == self.num_levels - 1:
            return self.action_low.copy(), self.action_high.copy()
        idx = self.goal_indices[level + 1]
        return self.state_low[idx].copy(), self.state_high[idx].copy()

    def project(self, state: np.ndarray, level: int) -> np.ndarray:
        """``φ_level(state)``: ``(..., S) -> (..., d_level)``, the goal-space image of a state."""
        level = self._check_level(level)
        state = np.asarray(state, dtype=np.float32)
        if state.shape[-1] != self.state_dim:
            raise ValueError(
                f"state must have {self.state_dim} features (last axis), got shape {state.shape}"
            )
        return state[..., self.goal_indices[level]]

    def _achieved(self, level: int, state: np.ndarray, env_achieved: np.ndarray | None) -> np.ndarray:
        if level == 0 and env_achieved is not None:
            return env_achieved
        return self.project(state, level)

    # ---------------------------------------------------------------- acting
    def select_action(
        self, state: np.ndarray, level: int = 0, goal: np.ndarray | None = None, explore: bool = False
    ) -> np.ndarray:
        """The output of one level for one state.

        Args:
            state: ``(S,)`` float state.
            level: ``0`` (highest) .. ``num_levels − 1`` (lowest, primitive actions).
            goal: ``(d_level,)`` the level's goal; ``None`` uses ``φ_level(state)`` (hold the current state).
            explore: add exploration noise / random outputs.

        Returns:
            ``(output_dims[level],)`` float32: a subgoal for upper levels, a primitive action for the lowest.
        """
        level = self._check_level(level)
        state = np.asarray(state, dtype=np.float32).reshape(-1)
        if state.shape != (self.state_dim,):
            raise ValueError(f"state must have shape ({self.state_dim},), got {state.shape}")
        if goal is None:
            goal = self.project(state, level)
        goal = np.asarray(goal, dtype=np.float32).reshape(-1)
        if goal.shape != (self.goal_dims[level],):
            raise ValueError(
                f"goal of level {level} must have shape ({self.goal_dims[level]},), got {goal.shape}"
            )
        return self._act(level, state, goal, explore)

    def _act(self, level: int, state: np.ndarray, goal: np.ndarray, explore: bool) -> np.ndarray:
        low, high = self.output_bounds(level)
        if explore and self.rng.random() < self.random_action_prob:
            return self.rng.uniform(low, high).astype(np.float32)
        with torch.no_grad():
            s = as_tensor(state, self.device).unsqueeze(0)
            g = as_tensor(goal, self.device).unsqueeze(0)
            out = self.actors[level](s, g).squeeze(0).cpu().numpy()
        if explore:
            out = (
                out + self.rng.normal(0.0, 1.0, size=out.shape) * self.exploration_noise * (high - low) / 2.0
            )
        return np.clip(out, low, high).astype(np.float32)

    # ---------------------------------------------------------------- learning
    def store_transition(self, level: int, transition: HACTransition) -> None:
        """Add ``transition`` to level ``level``'s replay buffer."""
        self.buffers[self._check_level(level)].add(transition)

    def critic_loss(self, level: int, batch: Sequence[torch.Tensor]) -> torch.Tensor:
        """Mean squared error of ``Q_level(s, g, a)`` against :func:`hac_critic_target` on a batch.

        ``batch = (states, actions, rewards, next_states, goals, dones)`` tensors as sampled by the buffers.
        """
        states, actions, rewards, next_states, goals, dones = batch
        with torch.no_grad():
            next_q = self.critics[level](next_states, goals, self.actors[level](next_states, goals))
            target = hac_critic_target(rewards, next_q, dones, self.gamma, self.horizon)
        return F.mse_loss(self.critics[level](states, goals, actions), target)

    def actor_loss(self, level: int, states: torch.Tensor, goals: torch.Tensor) -> torch.Tensor:
        """DDPG's actor loss ``−mean Q_level(s, g, π_level(s, g))``."""
        return -self.critics[level](states, goals, self.actors[level](states, goals)).mean()

    def update_level(self, level: int, batch_size: int | None = None) -> dict[str, float]:
        """One critic and one actor gradient step of level ``level`` (no-op while its buffer is empty)."""
        level = self._check_level(level)
        buffer = self.buffers[level]
        if len(buffer) == 0:
            return {}
        batch = buffer.sample(batch_size or self.batch_size, self.rng, self.device)
        c_loss = self.critic_loss(level, batch)
        self.critic_optimizers[level].zero_grad()
        c_loss.backward()
        self.critic_optimizers[level].step()
        a_loss = self.actor_loss(level, batch[0], batch[4])
        self.actor_optimizers[level].zero_grad()
        a_loss.backward()
        self.actor_optimizers[level].step()
        return {"critic_loss": float(c_loss.detach()), "actor_loss": float(a_loss.detach())}

    def update(self, num_updates: int = 1, batch_size: int | None = None) -> list[dict[str, float]]:
        """``num_updates`` gradient steps of every level; returns the last losses of each level."""
        check_positive_int("num_updates", num_updates)
        losses: list[dict[str, float]] = [{} for _ in range(self.num_levels)]
        for _ in range(num_updates):
            for level in range(self.num_levels):
                losses[level] = self.update_level(level, batch_size)
        return losses

    # ---------------------------------------------------------------- episodes (Alg. 1 and 2)
    def _env_step(self, ep: _Episode, action: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        obs, reward, terminated, truncated, info = unpack_step(ep.env.step(action))
        done = terminated or truncated
        state, _, achieved = _parse_obs(obs)
        ep.steps += 1
        ep.env_reward += float(reward)
        ep.info = dict(info or {})
        if "is_success" in ep.info:
            ep.success = bool(ep.success) or bool(ep.info["is_success"])
        ep.done = ep.done or bool(done)
        return state, achieved

    def _goal_reached_at_or_above(
        self, level: int, state: np.ndarray, env_achieved: np.ndarray | None, ep: _Episode
    ) -> bool:
        for j in range(level + 1):
            goal = ep.goals[j]
            if goal is not None and bool(
                hac_goal_achieved(self._achieved(j, state, env_achieved), goal, self.thresholds[j])
            ):
                return True
        return False

    def _run_level(
        self,
        level: int,
        state: np.ndarray,
        env_achieved: np.ndarray | None,
        goal: np.ndarray,
        testing: bool,
        ep: _Episode,
    ) -> tuple[np.ndarray, np.ndarray | None]:
        """Alg. 2 (train_level): at most ``H`` attempts of ``level`` towards ``goal``; returns the end."""
        ep.goals[level] = goal
        lowest = level == self.num_levels - 1
        rows: list[tuple[HACTransition, np.ndarray]] = []
        for _ in range(self.horizon):
            action = self._act(level, state, goal, explore=ep.explore and not testing)
            if lowest:
                next_state, next_env_achieved = self._env_step(ep, action)
                achieved_subgoal = None
            else:
                test_next = testing or (ep.explore and self.rng.random() < self.subgoal_test_prob)
                next_state, next_env_achieved = self._run_level(
                    level + 1, state, env_achieved, action, test_next, ep
                )
                ep.goals[level + 1] = None
                achieved_subgoal = self.project(next_state, level + 1)
                if (
                    ep.learn
                    and test_next
                    and not bool(hac_goal_achieved(achieved_subgoal, action, self.thresholds[level + 1]))
                ):
                    self.store_transition(
                        level, subgoal_test_transition(state, action, next_state, goal, self.horizon)
                    )
            next_achieved = self._achieved(level, next_state, next_env_achieved)
            if ep.learn:
                transition = hindsight_action_transition(
                    state, action, next_state, goal, next_achieved, self.thresholds[level], achieved_subgoal
                )
                self.store_transition(level, transition)
                rows.append((transition, next_achieved))
            state, env_achieved = next_state, next_env_achieved
            if ep.done or self._goal_reached_at_or_above(level, state, env_achieved, ep):
                break
        if ep.learn and self.num_hindsight_goals > 0:
            self._store_hindsight_goals(level, rows)
        return state, env_achieved

    def _store_hindsight_goals(self, level: int, rows: list[tuple[HACTransition, np.ndarray]]) -> None:
        n = len(rows)
        for t, (transition, next_achieved) in enumerate(rows):
            # "future" strategy: goals achieved at or after this attempt; the final one always included
            picks = [n - 1] + list(self.rng.integers(t, n, size=self.num_hindsight_goals - 1))
            for j in picks:
                self.store_transition(
                    level,
                    hindsight_goal_transition(transition, rows[j][1], next_achieved, self.thresholds[level]),
                )

    def run_episode(self, env: Any, explore: bool = True, learn: bool = True) -> dict[str, Any]:
        """Alg. 1: one episode of the whole hierarchy from ``env.reset()`` towards the env's desired goal.

        Args:
            env: a goal environment: ``reset()`` returns a Dict observation (``observation``,
                ``achieved_goal``, ``desired_goal``) or ``(obs, info)``; ``step(action)`` returns a gymnasium
                5-tuple or a 4-tuple.
            explore: exploration noise and subgoal tests (``False``: the deterministic hierarchy).
            learn: store hindsight action, hindsight goal and subgoal-test transitions.

        Returns:
            ``{"success": bool, "steps": int, "env_reward": float}``; ``success`` is the env's
            ``info["is_success"]`` when it reports one, else whether level 0's goal test holds at the end. The
            hierarchy stops as soon as *its* test (per-coordinate ``goal_threshold``) holds, so choose a
            threshold inside the env's success region (e.g. ``r / √2`` for a Euclidean success radius ``r``).
        """
        obs, _ = unpack_reset(env.reset())
        state, desired, achieved = _parse_obs(obs)
        if desired is None:
            raise ValueError(
                "env.reset() must return a goal-env Dict observation with a 'desired_goal' (the task goal of "
                "level 0); wrap a plain environment so that it reports its goal"
            )
        if desired.shape != (self.goal_dims[0],):
            raise ValueError(
                f"the env's desired_goal has shape {desired.shape} but the top level consumes goals of "
                f"dimension {self.goal_dims[0]} (goal_dim / subgoal_dims[0])"
            )
        ep = _Episode(env=env, explore=explore, learn=learn, goals=[None] * self.num_levels)
        state, achieved = self._run_level(0, state, achieved, desired, False, ep)
        reached = bool(hac_goal_achieved(self._achieved(0, state, achieved), desired, self.thresholds[0]))
        success = reached if ep.success is None else ep.success
        return {"success": bool(success), "steps": ep.steps, "env_reward": ep.env_reward}

    def evaluate(self, env: Any, num_episodes: int = 10) -> float:
        """Success rate of the deterministic hierarchy (no noise, no tests, nothing stored)."""
        check_positive_int("num_episodes", num_episodes)
        return float(
            np.mean(
                [self.run_episode(env, explore=False, learn=False)["success"] for _ in range(num_episodes)]
            )
        )

    def train(
        self,
        env: Any,
        num_episodes: int,
        updates_per_episode: int = 20,
        eval_every: int = 0,
        eval_episodes: int = 10,
        verbose: bool = False,
    ) -> dict[str, list]:
        """Train the hierarchy: each episode runs Alg. 1 with exploration, then updates every level.

        Args:
            env: a goal environment (see :meth:`run_episode`).
            num_episodes: training episodes.
            updates_per_episode: gradient steps of every level after each episode.
            eval_every: evaluate the deterministic hierarchy every this many episodes (``0``: never).
            eval_episodes: episodes per evaluation.
            verbose: print progress at each evaluation.

        Returns:
            ``{"success": [bool per episode], "steps": [int], "success_rate": [moving mean over 10 episodes],
            "eval_episode": [int], "eval_success_rate": [float]}``.
        """
        check_positive_int("num_episodes", num_episodes)
        check_positive_int("updates_per_episode", updates_per_episode)
        check_nonnegative_int("eval_every", eval_every)
        history: dict[str, list] = {
            "success": [],
            "steps": [],
            "success_rate": [],
            "eval_episode": [],
            "eval_success_rate": [],
        }
        for episode in range(1, num_episodes + 1):
            result = self.run_episode(env, explore=True, learn=True)
            self.update(updates_per_episode)
            history["success"].append(result["success"])
            history["steps"].append(result["steps"])
            history["success_rate"].append(float(np.mean(history["success"][-10:])))
            if eval_every and episode % eval_every == 0:
                rate = self.evaluate(env, eval_episodes)
                history["eval_episode"].append(episode)
                history["eval_success_rate"].append(rate)
                if verbose:
                    print(f"episode {episode}: eval success rate {rate:.2f}")
        return history
