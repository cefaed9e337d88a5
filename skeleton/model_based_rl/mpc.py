"""Model predictive control with random shooting and the cross-entropy method (PETS, Chua et al. 2018, §4).

At every real step the controller searches an open-loop action sequence ``a_{t:t+H}`` that maximises the
expected model return, executes its first action and re-plans (receding horizon, PETS Algorithm 1 l. 6-9).
A candidate is scored by propagating ``P`` particles through the learned ensemble with trajectory sampling
(``ts1``: a fresh member per particle and step; ``tsinf``: one member per particle for the whole horizon,
PETS §4.3) and averaging their (discounted) returns over particles:

    J(a_{t:t+H}) = 1/P Σ_p Σ_{τ<H} γ^τ r(s^p_{t+τ}, a_{t+τ}),  s^p_{t+τ+1} ~ f_{b(p,τ)}(s^p_{t+τ}, a_{t+τ})

Optimisers:
    * random shooting (Nagabandi et al., 2018): ``N`` sequences uniform in the action box, the best one wins;
    * CEM (Botev et al., 2013, "The Cross-Entropy Method for Optimization"; PETS appendix): sample ``N``
      sequences from ``N(μ, σ²)`` clipped to the box, keep the ``K`` elites with the highest returns, refit
      with momentum ``μ ← α μ + (1 − α) mean(elites)``, ``σ ← α σ + (1 − α) std(elites)``, iterate;
      warm-started with the previous solution shifted by one step (PETS code, ``prev_sol``).

Documented deviations:
    * CEM samples are *clipped* to the bounds instead of PETS's truncated normal with variance constraint;
    * the refit uses the standard deviation with momentum (PETS applies the momentum to the variance);
    * the executed action is the first action of the final CEM mean (as PETS), clipped to the bounds;
    * ``model_ensemble`` may also be a plain callable (e.g. the true dynamics), see the class docstring.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from utils.checks import (
    check_choice,
    check_in_range,
    check_positive_float,
    check_positive_int,
)
from utils.torch_utils import as_tensor, resolve_device

__all__ = ["ModelPredictiveController", "cem_update", "evaluate_sequences", "shift_plan"]

METHODS = ("cem", "random")
PROPAGATIONS = ("ts1", "tsinf", "mean")

#: ``step_fn(states (M, S), actions (M, A)) -> (next_states (M, S), rewards (M,))``
StepFn = Callable[[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]


def cem_update(
    mean: torch.Tensor, std: torch.Tensor, elites: torch.Tensor, alpha: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """Refit the CEM sampling distribution to the elites, with momentum (Botev et al., 2013).

    Args:
        mean: ``(H, A)`` float32 current sampling mean.
        std: ``(H, A)`` float32 current sampling standard deviation.
        elites: ``(K, H, A)`` float32 elite sequences.
        alpha: momentum in ``[0, 1)``: weight of the *old* parameters.

    Returns:
        ``(new_mean, new_std)``, each ``(H, A)`` float32:
        ``new_mean = α mean + (1 − α) elites.mean(0)``,
        ``new_std = α std + (1 − α) elites.std(0)`` (population std, ``unbiased=False``).
    """
    # TODO(student): new_mean = a*mean + (1-a)*mean_k(elites); new_std = a*std + (1-a)*std_k(elites).
    raise NotImplementedError("cem_update: new_mean = a*mean + (1-a)*mean_k(elites); new_std = a*std + (1-a)*std_k(elites).")


def shift_plan(mean: torch.Tensor, fill_value: float | torch.Tensor = 0.0) -> torch.Tensor:
    """Warm start for the next step: drop the executed first action and append a fresh last one.

    Args:
        mean: ``(H, A)`` float32 plan of the current step.
        fill_value: scalar or ``(A,)`` value of the appended last step (the controller passes the middle
            of the action box).

    Returns:
        ``(H, A)`` float32: ``[mean[1], ..., mean[H-1], fill_value]`` (a new tensor; ``mean`` is unchanged).
    """
    # TODO(student): return [mean[1:], fill] stacked along the horizon, same shape (H, A) as mean.
    raise NotImplementedError("shift_plan: return [mean[1:], fill] stacked along the horizon, same shape (H, A) as mean.")


def evaluate_sequences(
    step_fn: StepFn,
    initial_state: torch.Tensor,
    sequences: torch.Tensor,
    num_particles: int = 1,
    gamma: float = 1.0,
) -> torch.Tensor:
    """Expected (discounted) model return of every candidate action sequence, all rolled out in parallel.

    Particle ``p`` of candidate ``n`` sits at row ``n * P + p`` (``repeat_interleave`` layout); ``step_fn`` is
    called once per time step on all ``N · P`` particles.

    Args:
        step_fn: ``(states (M, S), actions (M, A)) -> (next_states (M, S), rewards (M,))`` with ``M = N · P``.
        initial_state: ``(S,)`` float32 current state.
        sequences: ``(N, H, A)`` float32 candidate action sequences.
        num_particles: ``P`` particles per candidate.
        gamma: discount ``γ`` of the return.

    Returns:
        ``(N,)`` float32: ``1/P Σ_p Σ_τ γ^τ r^p_τ``; a non-finite return becomes ``-1e6`` (PETS code).
    """
    n, horizon, _ = sequences.shape
    # TODO(student): roll out N*P particles for H steps; return the particle mean of sum_t gamma^t r_t.
    raise NotImplementedError("evaluate_sequences: roll out N*P particles for H steps; return the particle mean of sum_t gamma^t r_t.")


def _bound(name: str, value: Any, action_dim: int) -> torch.Tensor:
    t = torch.as_tensor(np.asarray(value, dtype=np.float32))
    if t.dim() == 0:
        t = t.expand(action_dim)
    if t.shape != (action_dim,) or not torch.isfinite(t).all():
        raise ValueError(
            f"{name} must be a finite scalar or an array of shape ({action_dim},), got {value!r}"
        )
    return t.clone()


class ModelPredictiveController:
    """Receding-horizon planner over a learned ensemble (PETS) or a known dynamics function.

    Args:
        model_ensemble: what the planner rolls out. Either
            * a :class:`~model_based_rl.ensemble.ModelEnsemble` (anything with ``propagate`` and
              ``sample_member_indices``): particles are propagated with ``propagation``; or
            * a callable ``dynamics_fn(states (M, S), actions (M, A))`` returning ``next_states (M, S)``, a
              tuple ``(next_states, rewards (M,))``, or a dict with ``next_state_mean`` (and ``reward_mean``),
              e.g. the true dynamics in tests or a single :class:`DynamicsModel` (its means are used).
              A callable is treated as deterministic: one particle per candidate.
        action_dim: ``A``.
        horizon: ``H``, planning horizon.
        num_samples: ``N``, candidate sequences per iteration.
        method: ``"cem"`` or ``"random"`` (random shooting).
        num_elites: ``K`` elites of CEM (``K <= N``).
        num_iterations: CEM iterations per planning call.
        alpha: CEM momentum (weight of the old mean/std), in ``[0, 1)``.
        initial_std: initial CEM std; default ``(action_high - action_low) / 4`` (PETS: var = (ub-lb)²/16).
        action_low: scalar or ``(A,)`` lower bounds.
        action_high: scalar or ``(A,)`` upper bounds (strictly above ``action_low``).
        num_particles: ``P`` particles per candidate for an ensemble (PETS: 20).
        propagation: ``"ts1"``, ``"tsinf"`` or ``"mean"`` (see ``ModelEnsemble.propagate``).
        reward_fn: optional ``reward_fn(states (M, S), actions (M, A)) -> (M,)``; it replaces the model's
            reward head and is evaluated at the *next* state: ``r_t = reward_fn(s_{t+1}, a_t)``.
        gamma: discount of the planned return, in ``(0, 1]``.
        device: torch device of the planning tensors.
        generator: optional ``torch.Generator`` (on ``device``) for all sampling.
    """

    def __init__(
        self,
        model_ensemble: Any,
        action_dim: int,
        horizon: int = 10,
        num_samples: int = 100,
        method: str = "cem",
        num_elites: int = 10,
        num_iterations: int = 5,
        alpha: float = 0.1,
        initial_std: float | None = None,
        action_low: float | Any = -1.0,
        action_high: float | Any = 1.0,
        num_particles: int = 20,
        propagation: str = "ts1",
        reward_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None,
        gamma: float = 1.0,
        device: str | torch.device = "cpu",
        generator: torch.Generator | None = None,
    ) -> None:
        if not callable(model_ensemble) and not hasattr(model_ensemble, "propagate"):
            raise ValueError(
                "model_ensemble must be a ModelEnsemble (with propagate) or a callable "
                f"dynamics_fn(states, actions) -> next_states, got {type(model_ensemble).__name__}"
            )
        self.model = model_ensemble
        self.is_ensemble = hasattr(model_ensemble, "propagate") and hasattr(
            model_ensemble, "sample_member_indices"
        )
        self.action_dim = check_positive_int("action_dim", action_dim)
        self.horizon = check_positive_int("horizon", horizon)
        self.num_samples = check_positive_int("num_samples", num_samples)
        self.method = check_choice("method", method, METHODS)
        self.num_elites = check_positive_int("num_elites", num_elites)
        if self.method == "cem" and self.num_elites > self.num_samples:
            raise ValueError(
                f"num_elites must be <= num_samples ({self.num_samples}), got {num_elites}; "
                f"CEM keeps the best num_elites of the num_samples candidates"
            )
        self.num_iterations = check_positive_int("num_iterations", num_iterations)
        self.alpha = check_in_range("alpha", alpha, 0.0, 1.0, high_open=True)
        self.num_particles = check_positive_int("num_particles", num_particles)
        self.propagation = check_choice("propagation", propagation, PROPAGATIONS)
        self.gamma = check_in_range("gamma", gamma, 0.0, 1.0, low_open=True)
        if reward_fn is not None and not callable(reward_fn):
            raise ValueError(
                f"reward_fn must be None or a callable (states, actions) -> rewards, got {reward_fn!r}"
            )
        self.reward_fn = reward_fn
        self.device = resolve_device(device)
        self.generator = generator

        low = _bound("action_low", action_low, self.action_dim)
        high = _bound("action_high", action_high, self.action_dim)
        if not (low < high).all():
            raise ValueError(
                f"action_low must be below action_high in every dimension, got action_low={low.tolist()} "
                f"and action_high={high.tolist()}"
            )
        self.action_low = low.to(self.device)
        self.action_high = high.to(self.device)
        if initial_std is None:
            self.initial_std = ((self.action_high - self.action_low) / 4.0).expand(self.horizon, -1).clone()
        else:
            std = check_positive_float("initial_std", initial_std)
            self.initial_std = torch.full((self.horizon, self.action_dim), std, device=self.device)
        self._plan: torch.Tensor | None = None

    # ------------------------------------------------------------------ public API
    def reset(self) -> None:
        """Forget the warm start (call at the start of an episode)."""
        self._plan = None

    @property
    def action_mid(self) -> torch.Tensor:
        """``(A,)`` float32 centre of the action box."""
        return (self.action_low + self.action_high) / 2.0

    @torch.no_grad()
    def plan_action(self, state: Any) -> torch.Tensor:
        """The first action of the best plan from ``state``.

        Args:
            state: ``(S,)`` tensor / array (a ``(1, S)`` batch of one is accepted too).

        Returns:
            ``(A,)`` float32 action inside ``[action_low, action_high]``.
        """
        state = as_tensor(state, self.device)
        if state.dim() == 2 and state.shape[0] == 1:
            state = state[0]
        if state.dim() != 1:
            raise ValueError(f"state must have shape (S,), got {tuple(state.shape)}")
        if self.method == "random":
            plan = self._plan_random(state)
        else:
            plan = self._plan_cem(state)
            self._plan = shift_plan(plan, self.action_mid)
        return torch.max(torch.min(plan[0], self.action_high), self.action_low).to(torch.float32)

    def evaluate(self, state: Any, sequences: torch.Tensor) -> torch.Tensor:
        """Expected return ``(N,)`` of candidate ``sequences (N, H, A)`` from ``state (S,)`` (no grad)."""
        state = as_tensor(state, self.device).reshape(-1)
        sequences = as_tensor(sequences, self.device)
        with torch.no_grad():
            return evaluate_sequences(
                self._step_fn(sequences.shape[0]), state, sequences, self._particles(), self.gamma
            )

    # ------------------------------------------------------------------ optimisers
    def _plan_random(self, state: torch.Tensor) -> torch.Tensor:
        """Random shooting: the best of ``N`` uniform sequences, ``(H, A)``."""
        u = torch.rand(
            self.num_samples, self.horizon, self.action_dim, generator=self.generator, device=self.device
        )
        sequences = self.action_low + u * (self.action_high - self.action_low)
        returns = self.evaluate(state, sequences)
        return sequences[torch.argmax(returns)]

    def _plan_cem(self, state: torch.Tensor) -> torch.Tensor:
        """CEM: ``num_iterations`` rounds of sample / evaluate / refit; returns the final mean ``(H, A)``."""
        mean = self._plan if self._plan is not None else self.action_mid.expand(self.horizon, -1).clone()
        std = self.initial_std.clone()
        for _ in range(self.num_iterations):
            # TODO(student): sample N sequences ~ N(mean, std^2) clipped to the box, score them, keep top-K.
            raise NotImplementedError("ModelPredictiveController._plan_cem: sample N sequences ~ N(mean, std^2) clipped to the box, score them, keep top-K.")
            mean, std = cem_update(mean, std, elites, self.alpha)
        return mean

    # ------------------------------------------------------------------ rollouts
    def _particles(self) -> int:
        return self.num_particles if self.is_ensemble else 1

    def _step_fn(self, num_candidates: int) -> StepFn:
        """The one-step model used by :func:`evaluate_sequences` for one batch of candidates."""
        if self.is_ensemble:
            member_idx = None
            if self.propagation == "tsinf":  # one member per particle for the whole rollout
                member_idx = self.model.sample_member_indices(
                    num_candidates * self.num_particles, self.generator
                )

            def ensemble_step(
                states: torch.Tensor, actions: torch.Tensor
            ) -> tuple[torch.Tensor, torch.Tensor]:
                next_states, rewards = self.model.propagate(
                    states, actions, mode=self.propagation, member_idx=member_idx, generator=self.generator
                )
                return next_states, self._reward(next_states, actions, rewards)

            return ensemble_step

        def callable_step(states: torch.Tensor, actions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            out = self.model(states, actions)
            rewards = None
            if isinstance(out, dict):
                next_states, rewards = out["next_state_mean"], out.get("reward_mean")
            elif isinstance(out, tuple):
                next_states, rewards = out
            else:
                next_states = out
            next_states = as_tensor(next_states, self.device)
            if rewards is not None:
                rewards = as_tensor(rewards, self.device).reshape(-1)
            return next_states, self._reward(next_states, actions, rewards)

        return callable_step

    def _reward(
        self, next_states: torch.Tensor, actions: torch.Tensor, model_rewards: torch.Tensor | None
    ) -> torch.Tensor:
        if self.reward_fn is not None:
            return as_tensor(self.reward_fn(next_states, actions), self.device).reshape(-1)
        if model_rewards is None:
            raise ValueError(
                "reward_fn is required when model_ensemble is a dynamics_fn that returns only next states; "
                "pass reward_fn(states, actions) -> rewards, or return (next_states, rewards)"
            )
        return model_rewards
