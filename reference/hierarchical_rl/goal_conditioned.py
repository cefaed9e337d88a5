"""Goal-conditioned reinforcement learning with Hindsight Experience Replay (HER).

Andrychowicz, M., Wolski, F., Ray, A., Schneider, J., Fong, R., Welinder, P., McGrew, B., Tobin, J.,
Abbeel, P. & Zaremba, W. (2017). *Hindsight Experience Replay*. NeurIPS.

A goal-conditioned policy ``π(s, g)`` and value ``Q(s, g, a)`` take the desired goal as an extra input
(universal value function approximators, §2.4). Rewards are sparse, ``r(s, a, g) = −[f_g(s') = 0]``
(§3.3): −1 until the achieved goal ``m(s')`` is within ``distance_threshold`` of ``g``, 0 when it is.
HER (Algorithm 1) stores every transition ``(s_t, a_t, r_t, s_{t+1}, g)`` of an episode and, in
addition, ``k`` copies relabelled with goals ``g'`` that were *achieved later*, whose rewards are
recomputed with ``r(s_t, a_t, g')``. The goal-selection strategies of §4.5 are implemented:

    * ``final``   — ``g' = m(s_T)``, the goal achieved at the end of the episode;
    * ``future``  — ``g' = m(s_j)`` with ``j`` uniform in ``{t+1, …, T}`` (the paper's best, k = 4);
    * ``episode`` — ``g' = m(s_j)`` with ``j`` uniform over the whole episode, ``{1, …, T}``.

The off-policy learner is DDPG (Lillicrap et al., 2016) for continuous actions, as in the paper's robotic
experiments (§4.1, Appendix A), or DQN (Mnih et al., 2015) for discrete actions, as in the bit-flipping
experiment (§3.1, Fig. 1). As in the paper's implementation (Appendix A / OpenAI baselines ``her``):

    * critic targets are clipped to ``[−1/(1−γ), 0]``, the range of returns of −1/0 rewards (eq. of
      :func:`her_critic_targets`);
    * the actor loss is ``−Q(s, g, π(s, g))`` plus an L2 penalty ``λ‖π(s, g)‖²`` on the (normalised) actions
      (:func:`her_actor_loss`);
    * target networks are Polyak-averaged, ``θ' ← τθ + (1−τ)θ'``.

Deviations (documented):
    * Target networks are soft-updated after every gradient step (the paper: once per cycle of 40 steps
      with ``1 − τ = 0.95``), and there are no observation normalisers, no parallel workers and no
      ``random_eps`` exploration; exploration is Gaussian action noise (continuous) or ε-greedy (discrete).
    * With ``terminal_on_success=True`` (default) a relabelled transition whose recomputed reward marks
      success (``reward >= 0``, the −1/0 convention) is terminal, so its target is exactly ``r``. The paper
      bootstraps through every transition; for sparse −1/0 rewards the two agree (staying at the goal is
      worth 0), and the terminal version matches environments that end the episode on success.
    * The ``random`` strategy of §4.5 (goals from the whole replay buffer) is not implemented.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any, NamedTuple

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from utils.checks import (
    check_choice,
    check_in_range,
    check_nonnegative_float,
    check_nonnegative_int,
    check_positive_float,
    check_positive_int,
)
from utils.torch_utils import as_tensor, mlp, resolve_device, soft_update

__all__ = [
    "HER_STRATEGIES",
    "GoalBatch",
    "GoalConditionedAgent",
    "GoalReplayBuffer",
    "her_actor_loss",
    "her_critic_targets",
    "relabel_episode",
    "sample_her_goals",
    "sparse_goal_reward",
]

#: Goal-selection strategies of §4.5.
HER_STRATEGIES: tuple[str, ...] = ("future", "final", "episode")


# ========================================================================================================
# Pure functions: the math of HER and of the actor-critic update
# ========================================================================================================
def sparse_goal_reward(achieved: np.ndarray, desired: np.ndarray, distance_threshold: float) -> np.ndarray:
    """The sparse goal reward of §3.3: ``0`` if ``‖achieved − desired‖ ≤ threshold`` else ``−1``.

    Args:
        achieved: ``(..., G)`` achieved goals.
        desired: ``(..., G)`` desired goals (broadcastable with ``achieved``).
        distance_threshold: success radius ``ε`` (>= 0).

    Returns:
        ``(...)`` float32 rewards in ``{−1, 0}``.
    """
    dist = np.linalg.norm(np.asarray(achieved, np.float32) - np.asarray(desired, np.float32), axis=-1)
    return np.where(dist <= distance_threshold, 0.0, -1.0).astype(np.float32)


def sample_her_goals(
    episode_achieved: np.ndarray, t: int, k: int, strategy: str, rng: np.random.Generator
) -> np.ndarray:
    """Sample ``k`` hindsight goals for transition ``t`` of an episode (§4.5), with replacement.

    ``episode_achieved[j] = m(s_j)`` is the goal achieved in state ``s_j``, ``j = 0..T``; transition ``t``
    goes from ``s_t`` to ``s_{t+1}``. The ``k`` row indices are independent draws (each uniform over the
    strategy's rows, so rows may repeat), not consecutive rows or a shuffled pass over them.

    Args:
        episode_achieved: ``(T+1, G)`` achieved goals of the episode's states ``s_0 … s_T``.
        t: index of the transition, ``0 <= t < T``.
        k: number of goals to sample (>= 0).
        strategy: ``"future"`` — rows ``j`` uniform in ``{t+1, …, T}``; ``"final"`` — row ``T``;
            ``"episode"`` — rows ``j`` uniform in ``{1, …, T}`` (goals achieved by the episode's moves).
        rng: numpy generator for the indices.

    Returns:
        ``(k, G)`` array of goals, each a row of ``episode_achieved``, same dtype.

    Raises:
        ValueError: for an unknown strategy, a negative ``k`` or ``t`` outside ``[0, T)``.
    """
    check_choice("strategy", strategy, HER_STRATEGIES)
    k = check_nonnegative_int("k", k)
    episode_achieved = np.asarray(episode_achieved)
    if episode_achieved.ndim != 2 or episode_achieved.shape[0] < 2:
        raise ValueError(
            f"episode_achieved must have shape (T+1, G) with T >= 1, got {episode_achieved.shape}"
        )
    T = episode_achieved.shape[0] - 1
    if not (0 <= int(t) < T):
        raise ValueError(f"t must be a transition index in [0, {T - 1}] (episode of T={T}), got {t!r}")
    # TODO(student): k row indices per strategy: future ~U{t+1..T}, final = T, episode ~U{1..T} (§4.5)
    # BEGIN SOLUTION
    if strategy == "future":
        idx = rng.integers(t + 1, T + 1, size=k)
    elif strategy == "final":
        idx = np.full(k, T)
    else:  # "episode"
        idx = rng.integers(1, T + 1, size=k)
    return episode_achieved[idx]
    # END SOLUTION


def relabel_episode(
    episode_achieved: np.ndarray,
    k: int,
    strategy: str,
    compute_reward: Callable[[np.ndarray, np.ndarray], np.ndarray],
    rng: np.random.Generator,
) -> tuple[np.ndarray, np.ndarray]:
    """Hindsight goals and their recomputed rewards for every transition of an episode (Alg. 1, inner loop).

    For each transition ``t = 0..T−1``: ``G_t = sample_her_goals(episode_achieved, t, k, strategy, rng)``
    and, for each ``g' ∈ G_t``, ``r' = r(s_t, a_t, g') = compute_reward(m(s_{t+1}), g')``.

    Args:
        episode_achieved: ``(T+1, G)`` achieved goals of the states ``s_0 … s_T``.
        k: hindsight goals per transition (>= 0).
        strategy: one of :data:`HER_STRATEGIES`.
        compute_reward: vectorised reward, ``(N, G) achieved, (N, G) desired -> (N,)`` float.
        rng: numpy generator, passed on to :func:`sample_her_goals` (call it once per ``t``, in order).

    Returns:
        ``(goals, rewards)``: ``(T, k, G)`` float32 goals and ``(T, k)`` float32 rewards.
    """
    episode_achieved = np.asarray(episode_achieved, dtype=np.float32)
    T, G = episode_achieved.shape[0] - 1, episode_achieved.shape[1]
    # TODO(student): per t, k goals g' from sample_her_goals and r' = compute_reward(m(s_{t+1}), g') (Alg. 1)
    # BEGIN SOLUTION
    goals = np.stack([sample_her_goals(episode_achieved, t, k, strategy, rng) for t in range(T)]).astype(
        np.float32
    )
    goals = goals.reshape(T, k, G)
    next_achieved = np.repeat(episode_achieved[1:, None, :], k, axis=1)  # (T, k, G)
    rewards = np.asarray(
        compute_reward(next_achieved.reshape(T * k, G), goals.reshape(T * k, G)), dtype=np.float32
    )
    return goals, rewards.reshape(T, k)
    # END SOLUTION


def her_critic_targets(
    rewards: torch.Tensor,
    next_q: torch.Tensor,
    dones: torch.Tensor,
    gamma: float,
    q_min: float | None = None,
    q_max: float | None = None,
) -> torch.Tensor:
    """One-step TD targets ``y = r + γ (1 − d) Q'(s', g, a')``, clipped to ``[q_min, q_max]``.

    With −1/0 rewards every return lies in ``[−1/(1−γ), 0]``; the paper's implementation clips the targets
    to that range (``q_min = −1/(1−γ)``, ``q_max = 0``), which keeps the bootstrapped values from drifting.

    Args:
        rewards: ``(B,)`` float32 rewards.
        next_q: ``(B,)`` float32 target-network values of the next state (no gradient needed).
        dones: ``(B,)`` float32 (or bool) terminal flags; 1 stops the bootstrap.
        gamma: discount ``γ ∈ [0, 1]``.
        q_min: lower clip, or ``None`` for none.
        q_max: upper clip, or ``None`` for none.

    Returns:
        ``(B,)`` float32 targets, detached from the graph.
    """
    # TODO(student): y = r + gamma * (1 - done) * next_q, clamped to [q_min, q_max] where given; no gradient
    # BEGIN SOLUTION
    y = rewards + gamma * (1.0 - dones.to(rewards.dtype)) * next_q
    if q_min is not None or q_max is not None:
        y = y.clamp(min=q_min, max=q_max)
    return y.detach()
    # END SOLUTION


def her_actor_loss(q_values: torch.Tensor, actions: torch.Tensor, action_l2: float) -> torch.Tensor:
    """DDPG actor loss with the paper's action penalty: ``−mean(Q(s, g, π(s, g))) + λ · mean(π(s, g)²)``.

    Args:
        q_values: ``(B,)`` float32 critic values of the actor's actions (differentiable w.r.t. the actor).
        actions: ``(B, A)`` float32 actor outputs, normalised to ``[−1, 1]``.
        action_l2: penalty weight ``λ >= 0`` (1.0 in the paper's implementation).

    Returns:
        scalar float32 loss; the mean of the square is over batch and action dimensions.
    """
    # TODO(student): the actor loss -mean(Q) + action_l2 * mean(actions**2) (HER Appendix A)
    # BEGIN SOLUTION
    return -q_values.mean() + action_l2 * actions.pow(2).mean()
    # END SOLUTION


# ========================================================================================================
# Replay storage (given)
# ========================================================================================================
class GoalBatch(NamedTuple):
    """A minibatch of goal-conditioned transitions (tensors on the agent's device).

    Attributes:
        states: ``(B, S)`` float32.
        actions: ``(B, A)`` float32 (continuous, as stored) or ``(B,)`` int64 (discrete).
        rewards: ``(B,)`` float32.
        next_states: ``(B, S)`` float32.
        dones: ``(B,)`` float32 terminal flags.
        goals: ``(B, G)`` float32 desired (or relabelled) goals.
    """

    states: torch.Tensor
    actions: torch.Tensor
    rewards: torch.Tensor
    next_states: torch.Tensor
    dones: torch.Tensor
    goals: torch.Tensor


class GoalReplayBuffer:
    """A FIFO ring buffer of goal-conditioned transitions ``(s, a, r, s', done, g)``.

    Storage grows by doubling up to ``capacity``, so a large capacity costs nothing until it is used.
    ``len(buffer)`` is the number of transitions stored (real and relabelled alike).

    Args:
        state_dim, action_dim, goal_dim: sizes ``S``, ``A``, ``G``.
        capacity: maximum number of transitions; the oldest are overwritten.
        discrete_actions: store actions as ``int64`` indices instead of ``(A,)`` float32 vectors.
    """

    def __init__(
        self, state_dim: int, action_dim: int, goal_dim: int, capacity: int, discrete_actions: bool = False
    ) -> None:
        self.state_dim = check_positive_int("state_dim", state_dim)
        self.action_dim = check_positive_int("action_dim", action_dim)
        self.goal_dim = check_positive_int("goal_dim", goal_dim)
        self.capacity = check_positive_int("capacity", capacity)
        self.discrete_actions = bool(discrete_actions)
        self._size = 0
        self._next = 0
        self._alloc(min(self.capacity, 1024))

    def _alloc(self, n: int) -> None:
        old = getattr(self, "_data", None)
        act_shape: tuple[int, ...] = () if self.discrete_actions else (self.action_dim,)
        data = {
            "states": np.zeros((n, self.state_dim), np.float32),
            "actions": np.zeros((n, *act_shape), np.int64 if self.discrete_actions else np.float32),
            "rewards": np.zeros((n,), np.float32),
            "next_states": np.zeros((n, self.state_dim), np.float32),
            "dones": np.zeros((n,), np.float32),
            "goals": np.zeros((n, self.goal_dim), np.float32),
        }
        if old is not None:
            for key, arr in old.items():
                data[key][: len(arr)] = arr
        self._data = data

    def __len__(self) -> int:
        return self._size

    def add(
        self,
        states: Any,
        actions: Any,
        rewards: Any,
        next_states: Any,
        dones: Any,
        goals: Any,
    ) -> None:
        """Append ``N`` transitions (leading dimension ``N``; a single transition may omit it)."""
        states = np.asarray(states, np.float32).reshape(-1, self.state_dim)
        n = states.shape[0]
        cols = {
            "states": states,
            "actions": np.asarray(actions).reshape(n, *(() if self.discrete_actions else (self.action_dim,))),
            "rewards": np.asarray(rewards, np.float32).reshape(n),
            "next_states": np.asarray(next_states, np.float32).reshape(n, self.state_dim),
            "dones": np.asarray(dones, np.float32).reshape(n),
            "goals": np.asarray(goals, np.float32).reshape(n, self.goal_dim),
        }
        for i in range(n):  # ring-buffer writes; n is at most T·(1+k) per call
            if self._next >= len(self._data["rewards"]) and len(self._data["rewards"]) < self.capacity:
                self._alloc(min(self.capacity, 2 * len(self._data["rewards"])))
            for key, col in cols.items():
                self._data[key][self._next] = col[i]
            self._next = (self._next + 1) % self.capacity
            self._size = min(self._size + 1, self.capacity)

    def as_arrays(self) -> dict[str, np.ndarray]:
        """Copies of the stored transitions, oldest first: ``{"states": (N, S), "actions", "rewards",
        "next_states", "dones", "goals"}`` with the shapes of :class:`GoalBatch` (numpy, ``N = len``)."""
        n = self._size
        order = np.arange(n) if n < self.capacity else (np.arange(n) + self._next) % self.capacity
        return {key: arr[order].copy() for key, arr in self._data.items()}

    def sample(
        self, batch_size: int, rng: np.random.Generator, device: torch.device | str = "cpu"
    ) -> GoalBatch:
        """A minibatch of ``batch_size`` transitions drawn uniformly with replacement."""
        if self._size == 0:
            raise RuntimeError("the replay buffer is empty: store some experience before sampling/updating")
        idx = rng.integers(0, self._size, size=batch_size)
        d = self._data
        return GoalBatch(
            states=as_tensor(d["states"][idx], device),
            actions=as_tensor(
                d["actions"][idx], device, torch.int64 if self.discrete_actions else torch.float
            ),
            rewards=as_tensor(d["rewards"][idx], device),
            next_states=as_tensor(d["next_states"][idx], device),
            dones=as_tensor(d["dones"][idx], device),
            goals=as_tensor(d["goals"][idx], device),
        )


# ========================================================================================================
# The agent
# ========================================================================================================
class GoalConditionedAgent:
    """Goal-conditioned DDPG (continuous) or DQN (discrete) agent trained with Hindsight Experience Replay.

    **Storage.** :meth:`store_experience` appends the real transition to :attr:`buffer` at once (so
    ``len(buffer)`` grows by 1) and records it in the current episode. When the episode ends —
    ``done=True`` (a terminal transition) or an explicit :meth:`end_episode` (e.g. at a time limit) —
    ``her_k`` relabelled copies of each of its ``T`` transitions are added, so an episode of ``T`` steps
    leaves ``T·(1 + her_k)`` transitions in the buffer. Relabelled rewards come from
    :meth:`compute_reward` (``reward_fn`` if given, else the sparse −1/0 reward with
    ``distance_threshold``); the real transition keeps the reward it was given.

    **Achieved goals.** ``m(s)`` maps states to achieved goals: ``achieved_goal_fn`` if given, else the
    first ``goal_dim`` coordinates of the state (requires ``goal_dim <= state_dim``). Goal-environment
    loops can pass the achieved goals directly (``store_experience(..., achieved_goal=,
    next_achieved_goal=)``), as :meth:`train` does.

    **Actions.** Continuous: ``action_dim`` is the action size, the actor outputs ``u ∈ [−1, 1]^A``
    mapped affinely onto ``[action_low, action_high]``; the critic sees ``u``. Discrete
    (``discrete_actions=True``): ``action_dim`` is the number of actions and a Q-network outputs one
    value per action.

    Args:
        state_dim: state size ``S``.
        action_dim: action size ``A`` (continuous) or number of actions (discrete).
        goal_dim: goal size ``G``.
        lr: Adam learning rate of the critic/Q-network and of the actor.
        her_k: relabelled goals per real transition (``k``; 0 disables HER).
        strategy: goal-selection strategy, one of ``"future"``, ``"final"``, ``"episode"``.
        gamma: discount ``γ ∈ [0, 1)``.
        hidden_dim: width of the hidden layers.
        n_hidden_layers: number of hidden layers of every network.
        buffer_capacity: replay capacity in transitions.
        batch_size: minibatch size of :meth:`update`.
        tau: Polyak rate of the target networks, ``θ' ← τθ + (1−τ)θ'``.
        action_low, action_high: continuous action bounds (scalars or ``(A,)``).
        discrete_actions: DQN over ``action_dim`` discrete actions instead of DDPG.
        achieved_goal_fn: ``m``: ``(..., S)`` states -> ``(..., G)`` achieved goals.
        reward_fn: ``reward_fn(achieved (N, G), desired (N, G), info) -> (N,)``, e.g. a goal env's
            ``compute_reward``; default: the sparse reward with ``distance_threshold``.
        distance_threshold: success radius of the default reward.
        action_l2: weight of the actor's action penalty.
        clip_return: clip critic targets to ``[−1/(1−γ), 0]`` (assumes rewards in [−1, 0]).
        terminal_on_success: treat relabelled transitions whose reward is ``>= 0`` as terminal.
        seed: seed of the agent's numpy generator (exploration, sampling, relabelling); ``None`` draws it
            from numpy's global generator. Network initialisation uses torch's global generator.
        device: torch device of the networks.

    Raises:
        ValueError: naming the argument, for out-of-range values, an unknown strategy, or
            ``goal_dim > state_dim`` without ``achieved_goal_fn``.
    """

    def __init__(
        self,
        state_dim: int,
        action_dim: int,
        goal_dim: int,
        lr: float = 1e-3,
        her_k: int = 4,
        strategy: str = "future",
        gamma: float = 0.98,
        hidden_dim: int = 256,
        n_hidden_layers: int = 2,
        buffer_capacity: int = 1_000_000,
        batch_size: int = 128,
        tau: float = 0.05,
        action_low: float | np.ndarray = -1.0,
        action_high: float | np.ndarray = 1.0,
        discrete_actions: bool = False,
        achieved_goal_fn: Callable[[np.ndarray], np.ndarray] | None = None,
        reward_fn: Callable[..., Any] | None = None,
        distance_threshold: float = 0.05,
        action_l2: float = 1.0,
        clip_return: bool = True,
        terminal_on_success: bool = True,
        seed: int | None = None,
        device: str | torch.device = "cpu",
    ) -> None:
        self.state_dim = check_positive_int("state_dim", state_dim)
        self.action_dim = check_positive_int("action_dim", action_dim)
        self.goal_dim = check_positive_int("goal_dim", goal_dim)
        self.lr = check_positive_float("lr", lr)
        self.her_k = check_nonnegative_int("her_k", her_k)
        self.strategy = check_choice("strategy", strategy, HER_STRATEGIES)
        self.gamma = check_in_range("gamma", gamma, 0.0, 1.0, high_open=True)
        self.hidden_dim = check_positive_int("hidden_dim", hidden_dim)
        self.n_hidden_layers = check_nonnegative_int("n_hidden_layers", n_hidden_layers)
        self.batch_size = check_positive_int("batch_size", batch_size)
        self.tau = check_in_range("tau", tau, 0.0, 1.0, low_open=True)
        self.distance_threshold = check_nonnegative_float("distance_threshold", distance_threshold)
        self.action_l2 = check_nonnegative_float("action_l2", action_l2)
        self.discrete_actions = bool(discrete_actions)
        self.clip_return = bool(clip_return)
        self.terminal_on_success = bool(terminal_on_success)
        self.device = resolve_device(device)
        if reward_fn is not None and not callable(reward_fn):
            raise ValueError(
                f"reward_fn must be callable (achieved, desired, info) -> rewards, got {reward_fn}"
            )
        self.reward_fn = reward_fn

        if achieved_goal_fn is None:
            if self.goal_dim > self.state_dim:
                raise ValueError(
                    f"goal_dim ({self.goal_dim}) > state_dim ({self.state_dim}): the default achieved goal "
                    f"(the first goal_dim state coordinates) does not exist; pass achieved_goal_fn mapping "
                    f"states (..., {self.state_dim}) to achieved goals (..., {self.goal_dim})"
                )
            achieved_goal_fn = self._first_coordinates
        elif not callable(achieved_goal_fn):
            raise ValueError(f"achieved_goal_fn must be callable states -> goals, got {achieved_goal_fn!r}")
        self.achieved_goal_fn = achieved_goal_fn

        low = np.broadcast_to(np.asarray(action_low, np.float32), (self.action_dim,)).copy()
        high = np.broadcast_to(np.asarray(action_high, np.float32), (self.action_dim,)).copy()
        if not self.discrete_actions and not np.all(low < high):
            raise ValueError(f"action_low must be < action_high elementwise, got {low} and {high}")
        self.action_low, self.action_high = low, high
        self._action_center = (high + low) / 2.0
        self._action_half = (high - low) / 2.0

        if seed is None:
            seed = int(np.random.randint(0, 2**31 - 1))
        self.rng = np.random.default_rng(seed)

        hidden = [self.hidden_dim] * self.n_hidden_layers
        in_dim = self.state_dim + self.goal_dim
        if self.discrete_actions:
            self.q_network = mlp(in_dim, hidden, self.action_dim).to(self.device)
            self.q_target = copy.deepcopy(self.q_network)
            self.q_optimizer = torch.optim.Adam(self.q_network.parameters(), lr=self.lr)
            self.actor = self.actor_target = None
            self.critic = self.critic_target = None
        else:
            self.actor = mlp(in_dim, hidden, self.action_dim, out_activation=nn.Tanh).to(self.device)
            self.critic = mlp(in_dim + self.action_dim, hidden, 1).to(self.device)
            self.actor_target = copy.deepcopy(self.actor)
            self.critic_target = copy.deepcopy(self.critic)
            self.actor_optimizer = torch.optim.Adam(self.actor.parameters(), lr=self.lr)
            self.critic_optimizer = torch.optim.Adam(self.critic.parameters(), lr=self.lr)
            self.q_network = self.q_target = None

        self.buffer = GoalReplayBuffer(
            self.state_dim,
            self.action_dim,
            self.goal_dim,
            check_positive_int("buffer_capacity", buffer_capacity),
            discrete_actions=self.discrete_actions,
        )
        self._episode: list[tuple[np.ndarray, Any, np.ndarray, np.ndarray, np.ndarray]] = []
        self.num_updates = 0

    # ----------------------------------------------------------------------------------------------------
    # goals and rewards
    # ----------------------------------------------------------------------------------------------------
    def _first_coordinates(self, states: np.ndarray) -> np.ndarray:
        return np.asarray(states, np.float32)[..., : self.goal_dim]

    @property
    def q_bounds(self) -> tuple[float | None, float | None]:
        """``(q_min, q_max)`` of the target clipping: ``(−1/(1−γ), 0)`` or ``(None, None)``."""
        return (-1.0 / (1.0 - self.gamma), 0.0) if self.clip_return else (None, None)

    def achieved_goal(self, states: Any) -> np.ndarray:
        """``m(s)``: ``(..., S)`` states -> ``(..., G)`` float32 achieved goals."""
        goals = np.asarray(self.achieved_goal_fn(np.asarray(states, np.float32)), np.float32)
        if goals.shape[-1:] != (self.goal_dim,):
            raise ValueError(
                f"achieved_goal_fn must return goals of last dimension goal_dim={self.goal_dim}, "
                f"got shape {goals.shape}"
            )
        return goals

    def compute_reward(self, achieved: Any, desired: Any) -> np.ndarray:
        """The reward of every (achieved, desired) pair, the one place rewards are recomputed.

        Args:
            achieved: ``(N, G)`` achieved goals.
            desired: ``(N, G)`` desired goals.

        Returns:
            ``(N,)`` float32: ``reward_fn(achieved, desired, {})`` if given, else the sparse −1/0 reward.
        """
        achieved = np.asarray(achieved, np.float32)
        desired = np.asarray(desired, np.float32)
        if self.reward_fn is not None:
            rewards = self.reward_fn(achieved, desired, {})
        else:
            rewards = sparse_goal_reward(achieved, desired, self.distance_threshold)
        return np.asarray(rewards, np.float32).reshape(achieved.shape[:-1])

    # ----------------------------------------------------------------------------------------------------
    # acting
    # ----------------------------------------------------------------------------------------------------
    def _inputs(self, states: Any, goals: Any) -> torch.Tensor:
        s = as_tensor(states, self.device).reshape(-1, self.state_dim)
        g = as_tensor(goals, self.device).reshape(-1, self.goal_dim)
        return torch.cat([s, g], dim=-1)

    def get_action(self, state: Any, goal: Any, noise_scale: float = 0.1) -> np.ndarray | int:
        """Action of the goal-conditioned policy with exploration.

        Args:
            state: ``(S,)`` state.
            goal: ``(G,)`` desired goal.
            noise_scale: continuous: std of Gaussian noise added to the normalised action ``u ∈ [−1, 1]``
                (i.e. relative to half the action range) before clipping; discrete: ε of ε-greedy.
                0 gives the greedy/deterministic action.

        Returns:
            continuous: ``(A,)`` float32 array within ``[action_low, action_high]``;
            discrete: a python ``int`` in ``[0, action_dim)``.
        """
        noise_scale = check_nonnegative_float("noise_scale", noise_scale)
        x = self._inputs(state, goal)
        if self.discrete_actions:
            if noise_scale > 0 and self.rng.random() < noise_scale:
                return int(self.rng.integers(self.action_dim))
            with torch.no_grad():
                return int(self.q_network(x).argmax(dim=-1).item())
        with torch.no_grad():
            u = self.actor(x)[0].cpu().numpy()
        if noise_scale > 0:
            u = u + noise_scale * self.rng.standard_normal(self.action_dim).astype(np.float32)
        u = np.clip(u, -1.0, 1.0)
        action = self._action_center + self._action_half * u
        return np.clip(action, self.action_low, self.action_high).astype(np.float32)

    # ----------------------------------------------------------------------------------------------------
    # storing (Algorithm 1)
    # ----------------------------------------------------------------------------------------------------
    def store_experience(
        self,
        state: Any,
        action: Any,
        reward: float,
        next_state: Any,
        done: bool,
        goal: Any,
        achieved_goal: Any = None,
        next_achieved_goal: Any = None,
    ) -> None:
        """Store a real transition; on ``done`` end the episode and add its hindsight transitions.

        Args:
            state: ``(S,)`` state ``s_t``.
            action: ``(A,)`` action (continuous) or an int (discrete).
            reward: the environment's reward ``r_t`` (stored as given).
            next_state: ``(S,)`` state ``s_{t+1}``.
            done: ``s_{t+1}`` is terminal: stops the bootstrap and ends the episode (see
                :meth:`end_episode`). For a time limit, store with ``done=False`` and call ``end_episode()``.
            goal: ``(G,)`` desired goal of the episode.
            achieved_goal: ``(G,)`` ``m(s_t)``; default ``achieved_goal_fn(state)``.
            next_achieved_goal: ``(G,)`` ``m(s_{t+1})``; default ``achieved_goal_fn(next_state)``.
        """
        # copies: the episode record must not change when the caller reuses its observation arrays
        s = np.array(state, np.float32).reshape(self.state_dim)
        s2 = np.array(next_state, np.float32).reshape(self.state_dim)
        g = np.array(goal, np.float32).reshape(self.goal_dim)
        if self.discrete_actions:
            a: Any = int(np.asarray(action).reshape(()))
            if not 0 <= a < self.action_dim:
                raise ValueError(f"action must be an index in [0, {self.action_dim - 1}], got {action!r}")
        else:
            a = np.asarray(action, np.float32).reshape(self.action_dim)
        ag = self.achieved_goal(s) if achieved_goal is None else np.array(achieved_goal, np.float32)
        ag2 = (
            self.achieved_goal(s2)
            if next_achieved_goal is None
            else np.array(next_achieved_goal, np.float32)
        )
        self.buffer.add(s, a, float(reward), s2, float(bool(done)), g)
        self._episode.append((s, a, s2, ag.reshape(self.goal_dim), ag2.reshape(self.goal_dim)))
        if done:
            self.end_episode()

    def end_episode(self) -> int:
        """Close the current episode: add ``her_k`` relabelled transitions per transition (Alg. 1).

        Goals come from :func:`relabel_episode` with this agent's strategy and rewards from
        :meth:`compute_reward`; with ``terminal_on_success`` a relabelled transition whose reward is
        ``>= 0`` is terminal. Calling it with no stored transition does nothing.

        Returns:
            the number of relabelled transitions added (``T · her_k``).
        """
        episode, self._episode = self._episode, []
        if not episode or self.her_k == 0:
            return 0
        T, k = len(episode), self.her_k
        states = np.stack([e[0] for e in episode])
        next_states = np.stack([e[2] for e in episode])
        achieved = np.concatenate([episode[0][3][None], np.stack([e[4] for e in episode])])  # (T+1, G)
        actions = np.stack([np.asarray(e[1]) for e in episode])
        goals, rewards = relabel_episode(achieved, k, self.strategy, self.compute_reward, self.rng)
        dones = (rewards >= 0.0) if self.terminal_on_success else np.zeros_like(rewards, dtype=bool)
        self.buffer.add(
            np.repeat(states, k, axis=0),
            np.repeat(actions, k, axis=0),
            rewards.reshape(T * k),
            np.repeat(next_states, k, axis=0),
            dones.reshape(T * k),
            goals.reshape(T * k, self.goal_dim),
        )
        return T * k

    # ----------------------------------------------------------------------------------------------------
    # learning
    # ----------------------------------------------------------------------------------------------------
    def update(self) -> dict[str, float]:
        """One gradient step on a uniformly sampled minibatch (DQN, or DDPG critic then actor).

        Returns:
            ``{"critic_loss", "q_mean"}`` and, for continuous actions, ``"actor_loss"``.

        Raises:
            RuntimeError: if the buffer is empty.
        """
        batch = self.buffer.sample(self.batch_size, self.rng, self.device)
        x = torch.cat([batch.states, batch.goals], dim=-1)
        x2 = torch.cat([batch.next_states, batch.goals], dim=-1)
        q_min, q_max = self.q_bounds
        if self.discrete_actions:
            with torch.no_grad():
                next_q = self.q_target(x2).max(dim=-1).values
            y = her_critic_targets(batch.rewards, next_q, batch.dones, self.gamma, q_min, q_max)
            q = self.q_network(x).gather(1, batch.actions.view(-1, 1)).squeeze(1)
            loss = F.mse_loss(q, y)
            self.q_optimizer.zero_grad()
            loss.backward()
            self.q_optimizer.step()
            soft_update(self.q_target, self.q_network, self.tau)
            self.num_updates += 1
            return {"critic_loss": float(loss.item()), "q_mean": float(q.mean().item())}

        center = torch.as_tensor(self._action_center, device=self.device)
        half = torch.as_tensor(self._action_half, device=self.device)
        u = ((batch.actions - center) / half).clamp(-1.0, 1.0)
        with torch.no_grad():
            u2 = self.actor_target(x2)
            next_q = self.critic_target(torch.cat([x2, u2], dim=-1)).squeeze(-1)
        y = her_critic_targets(batch.rewards, next_q, batch.dones, self.gamma, q_min, q_max)
        q = self.critic(torch.cat([x, u], dim=-1)).squeeze(-1)
        critic_loss = F.mse_loss(q, y)
        self.critic_optimizer.zero_grad()
        critic_loss.backward()
        self.critic_optimizer.step()

        u_pi = self.actor(x)
        q_pi = self.critic(torch.cat([x, u_pi], dim=-1)).squeeze(-1)
        a_loss = her_actor_loss(q_pi, u_pi, self.action_l2)
        self.actor_optimizer.zero_grad()
        a_loss.backward()
        self.actor_optimizer.step()
        self.critic_optimizer.zero_grad()  # the actor's backward pass also filled the critic's grads

        soft_update(self.actor_target, self.actor, self.tau)
        soft_update(self.critic_target, self.critic, self.tau)
        self.num_updates += 1
        return {
            "critic_loss": float(critic_loss.item()),
            "actor_loss": float(a_loss.item()),
            "q_mean": float(q.mean().item()),
        }

    # ----------------------------------------------------------------------------------------------------
    # environment loops (goal environments with Dict observations)
    # ----------------------------------------------------------------------------------------------------
    def _is_success(self, obs: dict[str, Any], info: dict[str, Any]) -> float:
        if "is_success" in info:
            return float(info["is_success"])
        r = self.compute_reward(np.asarray(obs["achieved_goal"])[None], np.asarray(obs["desired_goal"])[None])
        return float(r[0] >= 0.0)

    def run_episode(
        self,
        env: Any,
        noise_scale: float = 0.0,
        learn: bool = False,
        max_episode_steps: int | None = None,
        seed: int | None = None,
    ) -> tuple[float, float, int]:
        """Play one episode of a goal env (``reset() -> (obs dict, info)``, gymnasium ``step``).

        Args:
            env: environment with ``"observation"``/``"achieved_goal"``/``"desired_goal"`` observations.
            noise_scale: exploration of :meth:`get_action`.
            learn: store the transitions (and relabel them at the end).
            max_episode_steps: optional extra step limit (the env's own truncation is always honoured).
            seed: passed to ``env.reset``.

        Returns:
            ``(episode return, success of the final state (0/1), steps)``.
        """
        obs, info = env.reset(seed=seed)
        ret, steps, terminated = 0.0, 0, False
        while True:
            action = self.get_action(obs["observation"], obs["desired_goal"], noise_scale)
            obs2, reward, terminated, truncated, info = env.step(action)
            steps += 1
            ret += float(reward)
            if max_episode_steps is not None and steps >= max_episode_steps:
                truncated = True
            if learn:
                self.store_experience(
                    obs["observation"],
                    action,
                    float(reward),
                    obs2["observation"],
                    bool(terminated),
                    obs["desired_goal"],
                    achieved_goal=obs["achieved_goal"],
                    next_achieved_goal=obs2["achieved_goal"],
                )
            obs = obs2
            if terminated or truncated:
                break
        if learn and not terminated:
            self.end_episode()
        success = self._is_success(obs, info)
        return ret, success, steps

    def evaluate(self, env: Any, num_episodes: int = 10, max_episode_steps: int | None = None) -> float:
        """Success rate of the greedy/deterministic policy over ``num_episodes`` episodes (no learning)."""
        num_episodes = check_positive_int("num_episodes", num_episodes)
        wins = [self.run_episode(env, 0.0, False, max_episode_steps)[1] for _ in range(num_episodes)]
        return float(np.mean(wins))

    def train(
        self,
        env: Any,
        num_episodes: int,
        updates_per_episode: int = 10,
        noise_scale: float = 0.2,
        eval_every: int = 0,
        eval_episodes: int = 10,
        max_episode_steps: int | None = None,
        seed: int | None = None,
    ) -> dict[str, list[float]]:
        """Collect episodes with exploration, relabel them with HER and train after each episode.

        Args:
            env: a goal env (Dict observations, ``compute_reward``; see :meth:`run_episode`). Pass its
                ``compute_reward`` as the agent's ``reward_fn`` so relabelled rewards match the env's.
            num_episodes: training episodes.
            updates_per_episode: gradient steps after each episode (once the buffer holds a batch).
            noise_scale: exploration (Gaussian std of normalised actions, or ε of ε-greedy).
            eval_every: evaluate the greedy policy every this many episodes (0: never).
            eval_episodes: episodes per evaluation.
            max_episode_steps: optional extra step limit.
            seed: seed of the first ``env.reset``.

        Returns:
            history with per-episode ``"returns"``, ``"successes"`` (0/1), ``"success_rate"`` (running mean
            over the last 100 episodes) and ``"critic_loss"`` (mean over the episode's updates, NaN if
            none), plus ``"eval_episode"`` / ``"eval_success_rate"`` when evaluating.
        """
        num_episodes = check_positive_int("num_episodes", num_episodes)
        updates_per_episode = check_nonnegative_int("updates_per_episode", updates_per_episode)
        eval_every = check_nonnegative_int("eval_every", eval_every)
        history: dict[str, list[float]] = {
            "returns": [],
            "successes": [],
            "success_rate": [],
            "critic_loss": [],
            "eval_episode": [],
            "eval_success_rate": [],
        }
        for episode in range(num_episodes):
            ret, success, _ = self.run_episode(
                env, noise_scale, True, max_episode_steps, seed=seed if episode == 0 else None
            )
            losses = [
                self.update()["critic_loss"]
                for _ in range(updates_per_episode if len(self.buffer) >= self.batch_size else 0)
            ]
            history["returns"].append(ret)
            history["successes"].append(success)
            history["success_rate"].append(float(np.mean(history["successes"][-100:])))
            history["critic_loss"].append(float(np.mean(losses)) if losses else float("nan"))
            if eval_every and (episode + 1) % eval_every == 0:
                history["eval_episode"].append(float(episode + 1))
                history["eval_success_rate"].append(self.evaluate(env, eval_episodes, max_episode_steps))
        return history
