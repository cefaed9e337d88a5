"""Planning in a learned latent space with the cross-entropy method (PlaNet's planner).

Reference:
    D. Hafner et al., "Learning Latent Dynamics for Planning from Pixels" (PlaNet), ICML 2019, §2
    ("Planning algorithm") and the latent-planning CEM algorithm of its appendix: encode the current
    observation into a latent state; keep a time-dependent diagonal Gaussian belief over action sequences
    ``a_{t:t+H} ~ N(μ, diag σ²)`` starting from ``μ = 0, σ = 1``; for a number of iterations sample
    ``J`` candidate sequences, roll all of them out in the latent transition model in one batch, score each by
    the sum of predicted rewards over the horizon, and refit ``(μ, σ)`` to the ``K`` best (the elites);
    execute the first action of the final mean ``μ_t``, then re-plan at the next step (MPC).
    PlaNet's defaults are ``H = 12, I = 10, J = 1000, K = 100``.

Deviations / choices (documented on purpose):
    * The belief starts at the middle of the action box, ``μ = (low + high) / 2``, with
      ``σ = (high − low) / 2`` (PlaNet's ``N(0, 1)`` for the box [-1, 1]), and candidates are clipped to
      the box, so every returned action respects the bounds.
    * The reward of a step is ``r̂(z_t, a_t)`` (the notebook's reward model reads the latent and the
      action), the return is ``Σ_{t=0}^{H-1} r̂(z_t, a_t)`` (undiscounted, as in PlaNet).
    * The default number of iterations is 5 (PlaNet: 10); ``num_elites`` defaults to 10 % of the
      candidates (PlaNet's 100 of 1000).
    * The transition is whatever the caller gives (deterministic here): PlaNet's stochastic state is not
      sampled.

Accepted models (so that the notebook's plain ``nn.Sequential`` networks, a ``DynamicsModel`` and a
:class:`~planning.world_model.WorldModel` all work):
    * ``encoder(state (B, S))`` returns the latent ``(B, Z)`` or a ``(mean, log_var)`` tuple (the mean is used).
    * ``dynamics_model`` and ``reward_model`` are called as ``f(z, a)`` when their ``forward`` (or the callable)
      takes two positional arguments, and as ``f(cat([z, a], -1))`` when it takes one (an ``nn.Sequential``).
    * ``dynamics_model`` may return the next latent ``(B, Z)``, a dict (``"next_state_mean"``, as
      ``DynamicsModel`` returns, or ``"next_latent"`` / ``"mean"``) or a tuple whose first item is the latent.
    * ``reward_model`` may return ``(B, 1)``, ``(B,)`` or a dict with ``"reward_mean"`` / ``"reward"``.
    * ``action_dim``: an explicit argument wins; otherwise it is read from ``dynamics_model.action_dim``,
      or inferred from the input size of the first ``nn.Linear`` of the reward model (then of the dynamics
      model) as ``in_features − latent_dim``.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

import torch
from torch import nn
from utils.checks import check_positive_int
from utils.torch_utils import as_tensor, resolve_device

__all__ = ["LatentSpacePlanner", "cem_refit", "latent_rollout_returns", "sample_action_sequences"]

LatentStep = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def sample_action_sequences(
    mean: torch.Tensor,
    std: torch.Tensor,
    num_candidates: int,
    action_low: torch.Tensor,
    action_high: torch.Tensor,
) -> torch.Tensor:
    """Candidate action sequences from the CEM belief ``N(mean, diag std²)``, clipped to the action box.

    Args:
        mean: ``(H, A)`` float32, the belief mean μ.
        std: ``(H, A)`` float32, the belief standard deviation σ (>= 0).
        num_candidates: N, how many sequences to draw.
        action_low: ``(A,)`` float32 lower bounds.
        action_high: ``(A,)`` float32 upper bounds.

    Returns:
        ``(N, H, A)`` float32 sequences ``clip(μ + σ ⊙ ε, low, high)`` with ``ε ~ N(0, I)`` (``torch.randn``).
    """
    # TODO(student): N sequences a = clip(μ + σ ⊙ ε, low, high), ε ~ N(0, I) of shape (N, H, A) (torch.randn).
    raise NotImplementedError("sample_action_sequences: N sequences a = clip(μ + σ ⊙ ε, low, high), ε ~ N(0, I) of shape (N, H, A) (torch.randn).")


def latent_rollout_returns(
    z0: torch.Tensor,
    action_sequences: torch.Tensor,
    transition: LatentStep,
    reward: LatentStep,
) -> torch.Tensor:
    """Return of every candidate sequence, rolled out in the latent model in one batch per step.

    Args:
        z0: ``(N, Z)`` float32, the start latent (the encoded current state, repeated N times).
        action_sequences: ``(N, H, A)`` float32 candidates.
        transition: ``transition(z (N, Z), a (N, A)) -> (N, Z)``, the next latent.
        reward: ``reward(z (N, Z), a (N, A)) -> (N,)``, the predicted reward of taking ``a`` in ``z``.

    Returns:
        ``(N,)`` float32 returns ``R = Σ_{t=0}^{H-1} r̂(z_t, a_t)`` with ``z_{t+1} = transition(z_t, a_t)``.
    """
    # TODO(student): batched rollout, for t < H: R += reward(z_t, a_t), z_{t+1} = transition(z_t, a_t); return R (N,).
    raise NotImplementedError("latent_rollout_returns: batched rollout, for t < H: R += reward(z_t, a_t), z_{t+1} = transition(z_t, a_t); return R (N,).")


def cem_refit(
    action_sequences: torch.Tensor, returns: torch.Tensor, num_elites: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Refit the CEM belief to the elite candidates (the ``num_elites`` highest returns).

    Args:
        action_sequences: ``(N, H, A)`` float32 candidates.
        returns: ``(N,)`` float32 their returns.
        num_elites: K, 1 <= K <= N.

    Returns:
        ``(mean, std)``, each ``(H, A)`` float32: the per-(step, action) mean and population standard
        deviation (``unbiased=False``, so that K = 1 gives std 0) of the K elites.
    """
    # TODO(student): the K elites (torch.topk of returns); return their mean and population std over dim 0.
    raise NotImplementedError("cem_refit: the K elites (torch.topk of returns); return their mean and population std over dim 0.")


def _takes_pair(fn: Any) -> bool:
    """Whether ``fn`` is called as ``fn(z, a)`` (two positional parameters) rather than ``fn(cat([z, a]))``."""
    target = fn.forward if isinstance(fn, nn.Module) else fn
    try:
        params = inspect.signature(target).parameters.values()
    except (TypeError, ValueError):
        return True
    positional = [
        p for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD) and p.default is p.empty
    ]
    if any(p.kind is p.VAR_POSITIONAL for p in params):
        return True
    return len(positional) >= 2


def _first_linear(model: Any) -> nn.Linear | None:
    if isinstance(model, nn.Linear):
        return model
    if isinstance(model, nn.Module):
        return next((m for m in model.modules() if isinstance(m, nn.Linear)), None)
    return None


class LatentSpacePlanner:
    """CEM planning over action sequences in a learned latent space (PlaNet, Hafner et al. 2019).

    Args:
        encoder: state ``(B, S)`` -> latent ``(B, Z)`` or ``(mean, log_var)``.
        decoder: latent ``(B, Z)`` -> state ``(B, S)``; kept for inspection (:meth:`decode_plan`), not used
            to plan.
        dynamics_model: latent transition, ``f(z, a)`` or ``f(cat([z, a]))`` (see the module docstring).
        reward_model: reward of ``(z, a)``, ``r(z, a)`` or ``r(cat([z, a]))``.
        latent_dim: Z.
        planning_horizon: H, steps per candidate sequence.
        action_dim: A; inferred from the models when ``None`` (see the module docstring).
        num_iterations: CEM iterations per :meth:`plan` call.
        num_elites: K, elites per refit; ``None`` means 10 % of the candidates (at least 1).
        action_low: lower action bound, scalar or ``(A,)``.
        action_high: upper action bound, scalar or ``(A,)``; must exceed ``action_low``.
        device: where planning runs; ``nn.Module`` models are moved there.

    Raises:
        ValueError: for a bad size, bounds with ``low >= high``, or an ``action_dim`` that cannot be inferred.
    """

    def __init__(
        self,
        encoder: Callable[..., Any],
        decoder: Callable[..., Any] | None,
        dynamics_model: Callable[..., Any],
        reward_model: Callable[..., Any],
        latent_dim: int,
        planning_horizon: int = 12,
        action_dim: int | None = None,
        num_iterations: int = 5,
        num_elites: int | None = None,
        action_low: float | Any = -1.0,
        action_high: float | Any = 1.0,
        device: str | torch.device = "cpu",
    ) -> None:
        for name, model in (
            ("encoder", encoder),
            ("dynamics_model", dynamics_model),
            ("reward_model", reward_model),
        ):
            if not callable(model):
                raise ValueError(  # noqa: TRY004 - the kit reports every bad argument as a ValueError
                    f"{name} must be a callable model (e.g. an nn.Module), got {type(model).__name__}"
                )
        if decoder is not None and not callable(decoder):
            raise ValueError(f"decoder must be a callable model or None, got {type(decoder).__name__}")
        self.latent_dim = check_positive_int("latent_dim", latent_dim)
        self.planning_horizon = check_positive_int("planning_horizon", planning_horizon)
        self.num_iterations = check_positive_int("num_iterations", num_iterations)
        self.num_elites = None if num_elites is None else check_positive_int("num_elites", num_elites)
        self.device = resolve_device(device)

        self.encoder = self._moved(encoder)
        self.decoder = self._moved(decoder)
        self.dynamics_model = self._moved(dynamics_model)
        self.reward_model = self._moved(reward_model)
        self._dynamics_pair = _takes_pair(dynamics_model)
        self._reward_pair = _takes_pair(reward_model)

        self.action_dim = self._infer_action_dim(action_dim)
        low = as_tensor(action_low, self.device).reshape(-1)
        high = as_tensor(action_high, self.device).reshape(-1)
        for name, bound in (("action_low", low), ("action_high", high)):
            if bound.numel() not in (1, self.action_dim) or not torch.isfinite(bound).all():
                raise ValueError(
                    f"{name} must be a finite scalar or have {self.action_dim} entries (one per action "
                    f"dimension), got {bound.tolist()}"
                )
        self.action_low = low.expand(self.action_dim).clone()
        self.action_high = high.expand(self.action_dim).clone()
        if not bool((self.action_low < self.action_high).all()):
            raise ValueError(
                f"action_low must be below action_high in every dimension, got action_low="
                f"{self.action_low.tolist()} and action_high={self.action_high.tolist()}"
            )
        #: ``(H, A)`` mean of the final CEM belief of the last :meth:`plan` call.
        self.last_plan: torch.Tensor | None = None

    @classmethod
    def from_world_model(
        cls, world_model: nn.Module, planning_horizon: int = 12, **kwargs: Any
    ) -> LatentSpacePlanner:
        """A planner over a :class:`~planning.world_model.WorldModel` (its encoder mean, transition and reward).

        Args:
            world_model: a ``WorldModel`` (``encode``, ``decode``, ``predict_next_latent``, ``predict_reward``,
                ``latent_dim``, ``action_dim``).
            planning_horizon: H.
            **kwargs: any other constructor argument (``num_iterations``, ``action_low``, ``device``, ...).
        """
        for attr in ("encode", "decode", "predict_next_latent", "predict_reward", "latent_dim", "action_dim"):
            if not hasattr(world_model, attr):
                raise ValueError(
                    f"world_model must be a WorldModel (it lacks {attr!r}), got {type(world_model).__name__}"
                )
        kwargs.setdefault("action_dim", world_model.action_dim)
        kwargs.setdefault("device", getattr(world_model, "device", "cpu"))
        return cls(
            encoder=world_model.encode,
            decoder=world_model.decode,
            dynamics_model=world_model.predict_next_latent,
            reward_model=world_model.predict_reward,
            latent_dim=world_model.latent_dim,
            planning_horizon=planning_horizon,
            **kwargs,
        )

    # ------------------------------------------------------------------ model adapters
    def encode(self, state: torch.Tensor) -> torch.Tensor:
        """Latent of a batch of states: ``(B, S) -> (B, Z)`` float32 (the mean when the encoder is a VAE)."""
        out = self.encoder(state)
        if isinstance(out, (tuple, list)):
            out = out[0]
        if out.shape[-1] != self.latent_dim:
            raise ValueError(
                f"the encoder returned latents of size {out.shape[-1]}, but latent_dim={self.latent_dim}; "
                "pass the encoder's output size as latent_dim"
            )
        return out

    def transition(self, z: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
        """Next latent ``(N, Z)`` from ``z (N, Z)`` and ``action (N, A)``."""
        out = (
            self.dynamics_model(z, action)
            if self._dynamics_pair
            else self.dynamics_model(torch.cat([z, action], -1))
        )
        if isinstance(out, dict):
            key = next((k for k in ("next_state_mean", "next_latent", "mean") if k in out), None)
            if key is None:
                raise ValueError(
                    f"dynamics_model returned a dict without 'next_state_mean'/'next_latent'/'mean' "
                    f"(keys: {sorted(out)})"
                )
            out = out[key]
        elif isinstance(out, (tuple, list)):
            out = out[0]
        return out

    def reward(self, z: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
        """Predicted reward ``(N,)`` of taking ``action (N, A)`` in ``z (N, Z)``."""
        out = (
            self.reward_model(z, action)
            if self._reward_pair
            else self.reward_model(torch.cat([z, action], -1))
        )
        if isinstance(out, dict):
            key = next((k for k in ("reward_mean", "reward") if k in out), None)
            if key is None:
                raise ValueError(
                    f"reward_model returned a dict without 'reward_mean'/'reward' (keys: {sorted(out)})"
                )
            out = out[key]
        return out.reshape(z.shape[0])

    # ------------------------------------------------------------------ planning
    @torch.no_grad()
    def plan(self, state: Any, num_candidates: int = 1000) -> torch.Tensor:
        """First action of the CEM plan from ``state`` (model-predictive control: re-plan every step).

        Args:
            state: ``(S,)`` (or ``(1, S)``) float32 tensor or array, the current observation.
            num_candidates: N, candidate sequences per CEM iteration.

        Returns:
            ``(A,)`` float32 action within ``[action_low, action_high]``; the full ``(H, A)`` plan is kept in
            :attr:`last_plan`.
        """
        num_candidates = check_positive_int("num_candidates", num_candidates)
        num_elites = self.num_elites if self.num_elites is not None else max(1, num_candidates // 10)
        if num_elites > num_candidates:
            raise ValueError(
                f"num_candidates must be at least num_elites={num_elites}, got {num_candidates}; "
                "draw more candidates or lower num_elites"
            )
        state = as_tensor(state, self.device)
        if state.dim() == 1:
            state = state.unsqueeze(0)
        if state.dim() != 2 or state.shape[0] != 1:
            raise ValueError(f"state must have shape (S,) or (1, S), got {tuple(state.shape)}")
        z0 = self.encode(state).expand(num_candidates, self.latent_dim)

        shape = (self.planning_horizon, self.action_dim)
        mean = ((self.action_low + self.action_high) / 2).expand(shape).clone()
        std = ((self.action_high - self.action_low) / 2).expand(shape).clone()
        for _ in range(self.num_iterations):
            candidates = sample_action_sequences(mean, std, num_candidates, self.action_low, self.action_high)
            returns = latent_rollout_returns(z0, candidates, self.transition, self.reward)
            mean, std = cem_refit(candidates, returns, num_elites)
        self.last_plan = mean
        return torch.maximum(torch.minimum(mean[0], self.action_high), self.action_low)

    @torch.no_grad()
    def decode_plan(self, state: Any) -> torch.Tensor:
        """Decoded imagined states ``(H, S)`` of :attr:`last_plan` from ``state`` (for visualisation)."""
        if self.decoder is None or self.last_plan is None:
            raise ValueError("decode_plan needs a decoder and a previous plan() call")
        state = as_tensor(state, self.device).reshape(1, -1)
        z = self.encode(state)
        decoded = []
        for action in self.last_plan:
            z = self.transition(z, action.unsqueeze(0))
            out = self.decoder(z)
            decoded.append(out.reshape(-1))
        return torch.stack(decoded)

    # ------------------------------------------------------------------ plumbing
    def _moved(self, model: Any) -> Any:
        return model.to(self.device) if isinstance(model, nn.Module) else model

    def _infer_action_dim(self, action_dim: int | None) -> int:
        if action_dim is not None:
            return check_positive_int("action_dim", action_dim)
        attr = getattr(self.dynamics_model, "action_dim", None)
        if isinstance(attr, int) and not isinstance(attr, bool) and attr >= 1:
            return attr
        # Prefer models that read cat([z, a]) (their first layer's input is Z + A by construction), then any.
        ordered = sorted(
            ((self.reward_model, self._reward_pair), (self.dynamics_model, self._dynamics_pair)),
            key=lambda m: m[1],
        )
        for model, _ in ordered:
            layer = _first_linear(model)
            if layer is not None and layer.in_features > self.latent_dim:
                return layer.in_features - self.latent_dim
        raise ValueError(
            "action_dim could not be inferred: pass action_dim=..., or give a dynamics_model with an "
            "`action_dim` attribute or a reward_model whose first nn.Linear reads cat([z, a]) "
            f"(in_features = latent_dim + action_dim with latent_dim={self.latent_dim})"
        )
