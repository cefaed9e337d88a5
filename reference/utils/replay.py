"""Experience replay: a uniform ring buffer and the prioritized buffer of Schaul et al. (2016).

References:
    Lin, L.-J. (1992). Self-improving reactive agents based on reinforcement learning, planning and
    teaching. Machine Learning 8. (experience replay)
    Mnih, V. et al. (2015). Human-level control through deep reinforcement learning. Nature 518.
    (the fixed-capacity FIFO replay memory sampled uniformly)
    Schaul, T., Quan, J., Antonoglou, I., Silver, D. (2016). Prioritized Experience Replay. ICLR.
    §3.3 proportional prioritization p_i = |δ_i| + ε, Eq. (1) P(i) = p_i^α / Σ_k p_k^α,
    §3.4 importance-sampling weights w_i = (N · P(i))^-β / max_j w_j with β annealed to 1,
    Algorithm 1 (new transitions get the maximal priority seen so far), Appendix B.2.1 (sum tree,
    stratified sampling: the range [0, p_total) is split into k equal segments, one sample per segment).

Storage is preallocated numpy, allocated at the first ``add`` from the shapes and dtypes seen:
integer actions (python/numpy ints, integer arrays) stay ``int64``, everything else is ``float32``;
``dones`` are stored as ``float32`` (1.0 = terminal) so they enter TD targets directly.

Documented choices (deviations or unspecified details):
    * Uniform sampling draws indices *with replacement* (as ``numpy.random.Generator.integers``), so a
      batch larger than the number of stored transitions is allowed; sampling an empty buffer is a
      ``ValueError``.
    * The IS weights are normalised by the largest weight over the *whole buffer*, i.e. the weight of
      the transition with the smallest priority (as in OpenAI baselines), not by the batch maximum;
      so every weight is <= 1 and weights of different batches are comparable.
    * β is annealed linearly from ``beta`` to ``beta_final`` over ``beta_annealing_steps`` calls of
      ``sample`` (the paper anneals over the course of training, without fixing the schedule).
"""

from __future__ import annotations

import numbers
from typing import Any, NamedTuple

import numpy as np
import torch

from utils.checks import (
    check_in_range,
    check_positive_float,
    check_positive_int,
)
from utils.sum_tree import SumTree
from utils.torch_utils import resolve_device

__all__ = [
    "PrioritizedReplayBuffer",
    "PrioritizedTransition",
    "ReplayBuffer",
    "Transition",
    "annealed_beta",
    "circular_write_indices",
    "importance_weights",
    "per_probabilities",
    "stratified_prefix_sums",
]


class Transition(NamedTuple):
    """A batch of transitions (torch tensors on the buffer's device).

    Attributes:
        states: (B, *S) float32.
        actions: (B, *A) int64 for integer actions, float32 otherwise (``(B,)`` for scalar actions).
        rewards: (B,) float32.
        next_states: (B, *S) float32.
        dones: (B,) float32, 1.0 where the episode terminated.
    """

    states: torch.Tensor
    actions: torch.Tensor
    rewards: torch.Tensor
    next_states: torch.Tensor
    dones: torch.Tensor


class PrioritizedTransition(NamedTuple):
    """A prioritized batch: a :class:`Transition` plus IS weights and buffer indices.

    Attributes:
        states, actions, rewards, next_states, dones: as in :class:`Transition`.
        weights: (B,) float32 importance-sampling weights in (0, 1].
        indices: (B,) int64 buffer slots, to pass back to ``update_priorities``.
    """

    states: torch.Tensor
    actions: torch.Tensor
    rewards: torch.Tensor
    next_states: torch.Tensor
    dones: torch.Tensor
    weights: torch.Tensor
    indices: torch.Tensor


# --------------------------------------------------------------------------------------------------
# Pure functions (the math; unit-tested on their own)
# --------------------------------------------------------------------------------------------------


def circular_write_indices(position: int, count: int, capacity: int) -> np.ndarray:
    """Slots that ``count`` new items occupy in a ring buffer whose next free slot is ``position``.

    Items are written one after another, wrapping around to slot 0 after slot ``capacity - 1``, so the
    oldest items are overwritten first.

    Args:
        position: next slot to write, ``0 <= position < capacity``.
        count: number of items to write (may exceed ``capacity``: later items overwrite earlier ones).
        capacity: number of slots.

    Returns:
        (count,) int64 slot indices, e.g. ``circular_write_indices(3, 3, 4) == [3, 0, 1]``.
    """
    # TODO(student): slots (position + k) mod capacity for k = 0..count-1 (ring buffer, oldest overwritten first).
    # BEGIN SOLUTION
    return (position + np.arange(count, dtype=np.int64)) % capacity
    # END SOLUTION


def per_probabilities(priorities: np.ndarray, alpha: float) -> np.ndarray:
    """Sampling distribution of proportional prioritization, Schaul et al. (2016) Eq. (1).

    Args:
        priorities: (N,) float, p_i > 0 (``|δ_i| + ε``).
        alpha: prioritization exponent α >= 0 (α = 0 is uniform sampling).

    Returns:
        (N,) float64, P(i) = p_i^α / Σ_k p_k^α (sums to 1).
    """
    # TODO(student): P(i) = p_i^alpha / sum_k p_k^alpha  (Schaul et al. 2016, Eq. 1).
    # BEGIN SOLUTION
    scaled = np.asarray(priorities, dtype=np.float64) ** alpha
    return scaled / scaled.sum()
    # END SOLUTION


def stratified_prefix_sums(total: float, batch_size: int, rng: np.random.Generator) -> np.ndarray:
    """Stratified prefix sums for sampling from a sum tree (Schaul et al. 2016, Appendix B.2.1).

    The range [0, total) is split into ``batch_size`` equal segments; one value is drawn uniformly in
    each segment, so a batch covers the whole priority mass (lower variance than i.i.d. draws).

    Args:
        total: sum of all (scaled) priorities, > 0.
        batch_size: B, number of segments / samples.
        rng: numpy generator for the uniform draws (one ``rng.random(B)`` call).

    Returns:
        (B,) float64, value j uniform in [j·total/B, (j+1)·total/B), increasing in j.
    """
    # TODO(student): one uniform draw u_j ~ rng.random(B) per segment: (j + u_j) * total / B, j = 0..B-1.
    # BEGIN SOLUTION
    segment = total / batch_size
    return (np.arange(batch_size, dtype=np.float64) + rng.random(batch_size)) * segment
    # END SOLUTION


def importance_weights(
    probabilities: np.ndarray, size: int, beta: float, min_probability: float | None = None
) -> np.ndarray:
    """Importance-sampling weights of prioritized replay, Schaul et al. (2016) §3.4.

    ``w_i = (N · P(i))^-β``, divided by the largest weight so that every weight is <= 1. The largest
    weight belongs to the least likely transition: with ``min_probability`` (the smallest P over the
    whole buffer) it is ``(N · min_probability)^-β``; without it, the batch maximum is used.

    Args:
        probabilities: (B,) float, P(i) of the sampled transitions, > 0.
        size: N, number of transitions stored in the buffer.
        beta: correction exponent β in [0, 1] (β = 1 fully compensates the non-uniform sampling).
        min_probability: smallest sampling probability in the buffer, or None for batch normalisation.

    Returns:
        (B,) float64 weights in (0, 1].
    """
    # TODO(student): w_i = (N * P(i))^-beta, divided by the max weight (from min_probability if given, else batch max).
    # BEGIN SOLUTION
    probabilities = np.asarray(probabilities, dtype=np.float64)
    weights = (size * probabilities) ** (-beta)
    if min_probability is None:
        max_weight = weights.max()
    else:
        max_weight = (size * min_probability) ** (-beta)
    return weights / max_weight
    # END SOLUTION


def annealed_beta(step: int, beta_start: float, beta_final: float, annealing_steps: int) -> float:
    """β after ``step`` samples, linearly annealed from ``beta_start`` to ``beta_final`` (then constant).

    Args:
        step: number of ``sample`` calls so far (>= 0).
        beta_start: β at step 0.
        beta_final: β from ``annealing_steps`` on.
        annealing_steps: length of the linear schedule (>= 1).
    """
    fraction = min(step / annealing_steps, 1.0)
    return beta_start + fraction * (beta_final - beta_start)


# --------------------------------------------------------------------------------------------------
# Buffers
# --------------------------------------------------------------------------------------------------


def _is_integer_like(x: Any) -> bool:
    if isinstance(x, bool):
        return False
    if isinstance(x, numbers.Integral):
        return True
    if isinstance(x, torch.Tensor):
        return not x.is_floating_point() and not x.is_complex() and x.dtype != torch.bool
    arr = np.asarray(x)
    return np.issubdtype(arr.dtype, np.integer)


def _to_numpy(x: Any) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        return x.detach().cpu().numpy()
    return np.asarray(x)


class ReplayBuffer:
    """Uniform experience replay: a fixed-capacity ring buffer of transitions (Mnih et al., 2015).

    Args:
        capacity: maximum number of transitions kept; the oldest is overwritten first.
        device: torch device of the sampled tensors.

    Example:
        >>> buf = ReplayBuffer(1000)
        >>> buf.add(state, action, reward, next_state, done)
        >>> batch = buf.sample(32)          # Transition of tensors, batch.rewards: (32,)
    """

    def __init__(self, capacity: int, device: str | torch.device = "cpu") -> None:
        self.capacity = check_positive_int("capacity", capacity)
        self.device = resolve_device(device)
        self._states: np.ndarray | None = None
        self._actions: np.ndarray | None = None
        self._rewards: np.ndarray | None = None
        self._next_states: np.ndarray | None = None
        self._dones: np.ndarray | None = None
        self._position = 0
        self._size = 0

    # ---------------------------------------------------------------- storage
    def _allocate(self, state: np.ndarray, action: Any) -> None:
        action_arr = _to_numpy(action)
        action_dtype = np.int64 if _is_integer_like(action) else np.float32
        self._states = np.zeros((self.capacity, *state.shape), dtype=np.float32)
        self._next_states = np.zeros((self.capacity, *state.shape), dtype=np.float32)
        self._actions = np.zeros((self.capacity, *action_arr.shape), dtype=action_dtype)
        self._rewards = np.zeros(self.capacity, dtype=np.float32)
        self._dones = np.zeros(self.capacity, dtype=np.float32)

    def _check_shapes(self, states: np.ndarray, actions: np.ndarray, next_states: np.ndarray, batched: bool) -> None:
        lead = 1 if batched else 0
        expected_s = self._states.shape[1:]
        expected_a = self._actions.shape[1:]
        for name, arr, expected in (
            ("state", states, expected_s),
            ("next_state", next_states, expected_s),
            ("action", actions, expected_a),
        ):
            if arr.shape[lead:] != expected:
                raise ValueError(
                    f"{name} must have shape {expected} (the shape of the first transition added), got "
                    f"{arr.shape[lead:]}; a buffer stores transitions of one environment - use clear() or a "
                    f"new buffer for another one"
                )

    def _write(self, slots: np.ndarray, states, actions, rewards, next_states, dones) -> None:
        """Store already-converted arrays at ``slots`` (leading dimension = len(slots))."""
        self._states[slots] = states
        self._actions[slots] = actions
        self._rewards[slots] = rewards
        self._next_states[slots] = next_states
        self._dones[slots] = dones

    def add(self, state: Any, action: Any, reward: float, next_state: Any, done: bool | float) -> int:
        """Store one transition, overwriting the oldest when full.

        Args:
            state: (*S) array-like observation.
            action: int, or (*A) array-like.
            reward: scalar reward.
            next_state: (*S) array-like observation after the step.
            done: whether the episode terminated (stored as 1.0 / 0.0).

        Returns:
            The slot the transition was written to.
        """
        state_arr = _to_numpy(state).astype(np.float32, copy=False)
        next_arr = _to_numpy(next_state).astype(np.float32, copy=False)
        if self._states is None:
            self._allocate(state_arr, action)
        action_arr = _to_numpy(action)
        self._check_shapes(state_arr, action_arr, next_arr, batched=False)
        slot = int(circular_write_indices(self._position, 1, self.capacity)[0])
        self._states[slot] = state_arr
        self._actions[slot] = action_arr
        self._rewards[slot] = float(reward)
        self._next_states[slot] = next_arr
        self._dones[slot] = float(done)
        self._position = (slot + 1) % self.capacity
        self._size = min(self._size + 1, self.capacity)
        self._on_insert(np.array([slot], dtype=np.int64))
        return slot

    push = add  # alias used by many DQN tutorials

    def add_batch(self, states: Any, actions: Any, rewards: Any, next_states: Any, dones: Any) -> np.ndarray:
        """Store N transitions at once (in order: the last one is the newest).

        Args:
            states: (N, *S); actions: (N,) or (N, *A); rewards: (N,); next_states: (N, *S); dones: (N,).

        Returns:
            (min(N, capacity),) int64 slots written, oldest first: when N > capacity only the last ``capacity``
            transitions are written (the earlier ones would be overwritten at once).
        """
        states_arr = _to_numpy(states).astype(np.float32, copy=False)
        next_arr = _to_numpy(next_states).astype(np.float32, copy=False)
        actions_arr = _to_numpy(actions)
        rewards_arr = _to_numpy(rewards).astype(np.float32).reshape(-1)
        dones_arr = _to_numpy(dones).astype(np.float32).reshape(-1)
        n = states_arr.shape[0] if states_arr.ndim > 0 else 0
        if n == 0:
            raise ValueError(f"states must be a non-empty batch (N, *S), got shape {states_arr.shape}")
        for name, arr in (("actions", actions_arr), ("rewards", rewards_arr), ("next_states", next_arr),
                          ("dones", dones_arr)):
            if arr.ndim == 0 or arr.shape[0] != n:
                raise ValueError(f"{name} must have leading dimension N={n} (as states), got shape {arr.shape}")
        if self._states is None:
            self._allocate(states_arr[0], actions_arr[0])
        self._check_shapes(states_arr, actions_arr, next_arr, batched=True)
        # only the last `capacity` items survive; write just those (in order)
        keep = slice(max(0, n - self.capacity), n)
        skipped = keep.start
        start = (self._position + skipped) % self.capacity
        slots = circular_write_indices(start, n - skipped, self.capacity)
        self._write(slots, states_arr[keep], actions_arr[keep], rewards_arr[keep], next_arr[keep], dones_arr[keep])
        self._position = int((self._position + n) % self.capacity)
        self._size = min(self._size + n, self.capacity)
        self._on_insert(slots)
        return slots

    def _on_insert(self, slots: np.ndarray) -> None:
        """Hook for subclasses (priorities of new transitions)."""

    # ---------------------------------------------------------------- sampling
    def _check_sample(self, batch_size: int) -> int:
        batch_size = check_positive_int("batch_size", batch_size)
        if self._size == 0:
            raise ValueError(
                "cannot sample from an empty replay buffer (len = 0); add transitions first, e.g. wait "
                "until len(buffer) >= batch_size"
            )
        return batch_size

    def _gather(self, indices: np.ndarray) -> Transition:
        """Tensors of the transitions at ``indices`` ((B,) int64) on the buffer's device."""
        dev = self.device
        return Transition(
            states=torch.as_tensor(self._states[indices], device=dev),
            actions=torch.as_tensor(self._actions[indices], device=dev),
            rewards=torch.as_tensor(self._rewards[indices], device=dev),
            next_states=torch.as_tensor(self._next_states[indices], device=dev),
            dones=torch.as_tensor(self._dones[indices], device=dev),
        )

    def sample(self, batch_size: int, rng: np.random.Generator | None = None) -> Transition:
        """A uniformly sampled batch (indices drawn with replacement).

        Args:
            batch_size: B >= 1 (may exceed ``len(self)``).
            rng: numpy generator; None draws a generator from numpy's global one (seeded by ``np.random.seed``).

        Returns:
            :class:`Transition` of tensors on ``device``; rewards and dones have shape (B,).

        Raises:
            ValueError: if the buffer is empty or ``batch_size`` < 1.
        """
        batch_size = self._check_sample(batch_size)
        if rng is None:
            rng = np.random.default_rng(np.random.randint(0, 2**31 - 1))
        # TODO(student): draw batch_size slots uniformly with replacement from the len(self) stored ones (rng.integers), as int64.
        # BEGIN SOLUTION
        indices = rng.integers(0, self._size, size=batch_size, dtype=np.int64)
        # END SOLUTION
        return self._gather(indices)

    def can_sample(self, batch_size: int) -> bool:
        """Whether at least ``batch_size`` transitions are stored."""
        return self._size >= batch_size

    def __len__(self) -> int:
        return self._size

    def clear(self) -> None:
        """Forget every transition (storage is re-allocated at the next ``add``)."""
        self._states = self._actions = self._rewards = self._next_states = self._dones = None
        self._position = 0
        self._size = 0

    def __repr__(self) -> str:
        return f"{type(self).__name__}(capacity={self.capacity}, size={self._size}, device='{self.device}')"


class PrioritizedReplayBuffer(ReplayBuffer):
    """Proportional prioritized experience replay (Schaul et al., 2016, §3.3, Algorithm 1).

    Transition i is sampled with probability P(i) = p_i^α / Σ_k p_k^α, where p_i = |δ_i| + ε is set by
    :meth:`update_priorities`; new transitions get the largest priority seen so far, so each is replayed
    at least once soon. The scaled priorities p_i^α live in a :class:`SumTree` (O(log N) updates and
    sampling); a batch is drawn by stratified sampling, and comes with IS weights
    w_i = (N·P(i))^-β / max_j w_j, β annealed linearly from ``beta`` to ``beta_final``.

    Args:
        capacity: maximum number of transitions.
        alpha: prioritization exponent α >= 0 (0: uniform).
        beta: initial IS exponent β in [0, 1].
        beta_final: β at the end of annealing, in [0, 1].
        beta_annealing_steps: number of ``sample`` calls over which β goes from ``beta`` to ``beta_final``.
        eps: ε > 0 added to |δ| so that no transition has zero probability.
        device: torch device of the sampled tensors.
    """

    def __init__(
        self,
        capacity: int,
        alpha: float = 0.6,
        beta: float = 0.4,
        beta_final: float = 1.0,
        beta_annealing_steps: int = 100_000,
        eps: float = 1e-6,
        device: str | torch.device = "cpu",
    ) -> None:
        super().__init__(capacity, device)
        self.alpha = check_in_range("alpha", alpha, 0.0, float("inf"), high_open=True)
        self.beta_start = check_in_range("beta", beta, 0.0, 1.0)
        self.beta_final = check_in_range("beta_final", beta_final, 0.0, 1.0)
        self.beta_annealing_steps = check_positive_int("beta_annealing_steps", beta_annealing_steps)
        self.eps = check_positive_float("eps", eps)
        self.tree = SumTree(self.capacity)
        self._priorities = np.zeros(self.capacity, dtype=np.float64)  # raw p_i = |δ_i| + ε
        self.max_priority = 1.0
        self._sample_calls = 0

    @property
    def beta(self) -> float:
        """The current β (after ``self._sample_calls`` calls of ``sample``)."""
        return annealed_beta(self._sample_calls, self.beta_start, self.beta_final, self.beta_annealing_steps)

    def _on_insert(self, slots: np.ndarray) -> None:
        self._priorities[slots] = self.max_priority
        self.tree.update(slots, np.full(len(slots), self.max_priority**self.alpha))

    def priorities(self) -> np.ndarray:
        """(N,) float64 raw priorities p_i of the stored transitions (slot order)."""
        return self._priorities[: self._size].copy()

    def probabilities(self) -> np.ndarray:
        """(N,) float64 sampling probabilities P(i) of the stored transitions (slot order), Eq. (1)."""
        return per_probabilities(self._priorities[: self._size], self.alpha)

    def sample(self, batch_size: int, rng: np.random.Generator | None = None) -> PrioritizedTransition:
        """A prioritized batch with IS weights; advances the β schedule by one step.

        Args:
            batch_size: B >= 1 (one sample per stratum; duplicates are possible).
            rng: numpy generator; None draws a generator from numpy's global one (seeded by np.random.seed).

        Returns:
            :class:`PrioritizedTransition`: the transitions, ``weights`` (B,) float32 in (0, 1] and
            ``indices`` (B,) int64 to pass to :meth:`update_priorities`.
        """
        batch_size = self._check_sample(batch_size)
        if rng is None:
            rng = np.random.default_rng(np.random.randint(0, 2**31 - 1))
        total = self.tree.total
        prefix = stratified_prefix_sums(total, batch_size, rng)
        leaves = np.asarray(self.tree.find(prefix), dtype=np.int64)
        # guard against floating-point drift landing on an empty leaf past the stored range
        indices = np.minimum(leaves, self._size - 1)
        probabilities = self.tree.get(indices) / total
        min_probability = self.tree.leaves()[: self._size].min() / total
        weights = importance_weights(probabilities, self._size, self.beta, min_probability)
        self._sample_calls += 1
        batch = self._gather(indices)
        return PrioritizedTransition(
            *batch,
            weights=torch.as_tensor(weights, dtype=torch.float32, device=self.device),
            indices=torch.as_tensor(indices, dtype=torch.int64, device=self.device),
        )

    def update_priorities(self, indices: Any, priorities: Any) -> None:
        """Set p_i = |priorities_i| + ε for the given slots (usually |TD errors| of the last batch).

        Args:
            indices: (B,) int slots from ``sample(...).indices`` (tensor or array).
            priorities: (B,) float |δ| (tensor or array; the absolute value is taken).

        Raises:
            ValueError: on mismatched lengths, slots outside the stored range or non-finite priorities.
        """
        idx = _to_numpy(indices).astype(np.int64).reshape(-1)
        pri = np.abs(_to_numpy(priorities).astype(np.float64).reshape(-1))
        if idx.shape != pri.shape:
            raise ValueError(f"indices and priorities must have the same length, got {idx.shape} and {pri.shape}")
        if idx.size and (idx.min() < 0 or idx.max() >= self._size):
            raise ValueError(
                f"indices must be slots of stored transitions in [0, {self._size}), got min {idx.min()} "
                f"max {idx.max()}; pass the indices returned by sample()"
            )
        if not np.all(np.isfinite(pri)):
            raise ValueError("priorities must be finite (got nan or inf); check the TD errors for divergence")
        raw = pri + self.eps
        self._priorities[idx] = raw
        self.tree.update(idx, raw**self.alpha)
        if raw.size:
            self.max_priority = max(self.max_priority, float(raw.max()))

    def clear(self) -> None:
        """Forget every transition and reset priorities and the β schedule."""
        super().clear()
        self.tree = SumTree(self.capacity)
        self._priorities[:] = 0.0
        self.max_priority = 1.0
        self._sample_calls = 0

    def __repr__(self) -> str:
        return (
            f"PrioritizedReplayBuffer(capacity={self.capacity}, size={self._size}, alpha={self.alpha}, "
            f"beta={self.beta:.3f}, device='{self.device}')"
        )

