"""Probabilistic dynamics model of PETS (Chua et al., 2018, "Deep Reinforcement Learning in a Handful of
Trials using Probabilistic Dynamics Models", NeurIPS).

A single network ``f_θ(s, a)`` outputs a diagonal Gaussian over the next state and the reward,

    p_θ(s', r | s, a) = N( [s + Δμ_θ(s, a), μ^r_θ(s, a)],  diag(σ_θ(s, a)²) )               (PETS §4.1)

trained by the Gaussian negative log-likelihood of the observed transitions (PETS eq. 1,
``loss_Gauss = Σ_n [μ_θ(s_n, a_n) − s_{n+1}]ᵀ Σ_θ⁻¹ [μ_θ(s_n, a_n) − s_{n+1}] + log det Σ_θ``), here with the
½ factor and the ``log 2π`` constant so that it equals ``-log N(target; μ, σ²)`` exactly.

The predicted log-standard-deviation is kept inside learnable soft bounds (PETS appendix A.1 and the authors'
code, ``max_logvar``/``min_logvar``):

    log σ ← max_log_std − softplus(max_log_std − log σ)
    log σ ← min_log_std + softplus(log σ − min_log_std)

with the regulariser ``c · (Σ max_log_std − Σ min_log_std)`` added to the loss so that the bounds tighten
around the data instead of drifting apart.

Documented deviations:
    * the bounds act on the log *standard deviation* (PETS bounds the log *variance*; the two differ by a
      factor 2 only), with defaults ``min_log_std=-10``, ``max_log_std=0.5``;
    * the NLL is averaged over batch *and* output dimensions (PETS sums over dimensions), so that its scale
      does not depend on the state dimension; this only rescales the learning rate;
    * the network predicts the reward jointly with the next state (the PETS paper uses known rewards);
    * inputs are normalised with running statistics of the training inputs (as in the PETS code), kept as
      buffers on the module and updated by :meth:`DynamicsModel.train_step`.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from utils.checks import check_nonnegative_float, check_positive_float, check_positive_int
from utils.torch_utils import as_tensor, mlp, resolve_device

__all__ = ["DynamicsModel", "InputNormalizer", "gaussian_nll", "soft_bound_log_std"]

_LOG_2PI = math.log(2.0 * math.pi)


def gaussian_nll(mean: torch.Tensor, log_std: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Negative log-likelihood of ``target`` under ``N(mean, exp(log_std)²)``, averaged over all entries.

    ``-log N(y; μ, σ²) = ½ ((y − μ)/σ)² + log σ + ½ log 2π``  (PETS eq. 1 with the ½ and the constant).

    Args:
        mean: ``(..., D)`` float32 predicted means.
        log_std: ``(..., D)`` float32 predicted log standard deviations (same shape as ``mean``).
        target: ``(..., D)`` float32 observed values (same shape as ``mean``).

    Returns:
        ``()`` float32: the mean NLL over every entry, equal to
        ``-torch.distributions.Normal(mean, log_std.exp()).log_prob(target).mean()``.
    """
    # TODO(student): mean over entries of 0.5*((target-mean)/exp(log_std))^2 + log_std + 0.5*log(2*pi).
    raise NotImplementedError("gaussian_nll: mean over entries of 0.5*((target-mean)/exp(log_std))^2 + log_std + 0.5*log(2*pi).")


def soft_bound_log_std(
    raw_log_std: torch.Tensor, min_log_std: torch.Tensor, max_log_std: torch.Tensor
) -> torch.Tensor:
    """Softly clamp a raw log-std into ``(min_log_std, max_log_std)`` (PETS appendix A.1).

    ``x ← max − softplus(max − x)`` then ``x ← min + softplus(x − min)``: smooth, monotone, and
    differentiable with respect to the input *and* both bounds (which are learnable parameters).

    Args:
        raw_log_std: ``(..., D)`` float32 unconstrained network outputs.
        min_log_std: ``(D,)`` float32 (or broadcastable) lower bound.
        max_log_std: ``(D,)`` float32 (or broadcastable) upper bound.

    Returns:
        ``(..., D)`` float32 bounded log standard deviations (strictly above ``min_log_std``, at most
        ``max_log_std`` + log 2).
    """
    # TODO(student): x = max - softplus(max - raw); then return min + softplus(x - min) (PETS bounds).
    raise NotImplementedError("soft_bound_log_std: x = max - softplus(max - raw); then return min + softplus(x - min) (PETS bounds).")


class InputNormalizer(nn.Module):
    """Running mean / std of network inputs (Chan et al. parallel update), kept as buffers.

    Only the first ``num_normalized`` features are normalised (e.g. the state and continuous action part);
    the rest (one-hot actions) pass through unchanged. Before any update it is the identity.

    Args:
        dim: number of input features.
        num_normalized: how many leading features to normalise (default: all).
        eps: features whose running std is below ``eps`` are only centred (divided by 1).
    """

    def __init__(self, dim: int, num_normalized: int | None = None, eps: float = 1e-6) -> None:
        super().__init__()
        self.num_normalized = dim if num_normalized is None else num_normalized
        self.eps = eps
        self.register_buffer("mean", torch.zeros(dim))
        self.register_buffer("var", torch.ones(dim))
        self.register_buffer("count", torch.zeros(()))

    @torch.no_grad()
    def update(self, x: torch.Tensor) -> None:
        """Fold a batch ``x: (B, dim)`` (or ``(..., dim)``) into the running statistics."""
        x = x.reshape(-1, x.shape[-1]).to(self.mean.dtype)
        k = self.num_normalized
        n = x.shape[0]
        if n == 0 or k == 0:
            return
        batch_mean = x[:, :k].mean(0)
        batch_var = x[:, :k].var(0, unbiased=False)
        if self.count.item() == 0:
            self.mean[:k] = batch_mean
            self.var[:k] = batch_var
        else:
            total = self.count + n
            delta = batch_mean - self.mean[:k]
            m_a = self.var[:k] * self.count
            m_b = batch_var * n
            self.mean[:k] = self.mean[:k] + delta * n / total
            self.var[:k] = (m_a + m_b + delta**2 * self.count * n / total) / total
        self.count += n

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(x − mean) / std`` on the normalised features; identity before the first update."""
        if self.count.item() == 0:
            return x
        std = self.var.sqrt()
        std = torch.where(std < self.eps, torch.ones_like(std), std)  # constant features: centre only
        return (x - self.mean) / std


class DynamicsModel(nn.Module):
    """PETS probabilistic network ``(s, a) ↦ N(s', r)`` with soft-bounded log-std.

    Args:
        state_dim: ``S``, state features.
        action_dim: ``A``, action features; with ``discrete_actions`` the number of actions (one-hot width).
        hidden_dim: width of the hidden layers.
        num_hidden_layers: number of hidden layers (SiLU/swish activations as in PETS).
        discrete_actions: actions are integer indices ``(B,)`` (or a scalar) one-hot encoded to ``A``.
        predict_delta: predict ``Δs = s' − s`` (PETS) rather than ``s'``; the outputs are ``s'`` anyway.
        lr: Adam learning rate of :meth:`train_step`.
        weight_decay: Adam weight decay.
        min_log_std: initial value of the learnable lower log-std bound (every output).
        max_log_std: initial value of the learnable upper log-std bound (every output).
        log_std_bound_coef: weight ``c`` of the bound regulariser ``c (Σ max − Σ min)`` (PETS: 0.01).
        normalize_inputs: normalise inputs with running statistics updated by :meth:`train_step`.
        device: torch device of the parameters.

    Shapes: ``forward`` always returns batched outputs; an unbatched call (``state: (S,)`` with
    ``action: (A,)``, or a scalar action when discrete) is a batch of one and returns ``(1, S)`` / ``(1, 1)``.
    """

    def __init__(
        self,
        state_dim: int,
        action_dim: int,
        hidden_dim: int = 200,
        num_hidden_layers: int = 3,
        discrete_actions: bool = False,
        predict_delta: bool = True,
        lr: float = 1e-3,
        weight_decay: float = 0.0,
        min_log_std: float = -10.0,
        max_log_std: float = 0.5,
        log_std_bound_coef: float = 0.01,
        normalize_inputs: bool = True,
        device: str | torch.device = "cpu",
    ) -> None:
        super().__init__()
        self.state_dim = check_positive_int("state_dim", state_dim)
        self.action_dim = check_positive_int("action_dim", action_dim)
        self.hidden_dim = check_positive_int("hidden_dim", hidden_dim)
        self.num_hidden_layers = check_positive_int("num_hidden_layers", num_hidden_layers)
        self.discrete_actions = bool(discrete_actions)
        self.predict_delta = bool(predict_delta)
        self.lr = check_positive_float("lr", lr)
        self.weight_decay = check_nonnegative_float("weight_decay", weight_decay)
        if not float(min_log_std) < float(max_log_std):
            raise ValueError(
                f"min_log_std must be below max_log_std, got min_log_std={min_log_std!r} >= "
                f"max_log_std={max_log_std!r}; typical values are -10 and 0.5"
            )
        self.log_std_bound_coef = check_nonnegative_float("log_std_bound_coef", log_std_bound_coef)
        self.device = resolve_device(device)

        in_dim = self.state_dim + self.action_dim
        self.output_dim = self.state_dim + 1  # next state (or its delta) and the reward
        self.normalizer = InputNormalizer(
            in_dim, num_normalized=self.state_dim if self.discrete_actions else in_dim
        )
        self.normalize_inputs = bool(normalize_inputs)
        self.net = mlp(
            in_dim, [self.hidden_dim] * self.num_hidden_layers, 2 * self.output_dim, activation=nn.SiLU
        )
        self.min_log_std = nn.Parameter(torch.full((self.output_dim,), float(min_log_std)))
        self.max_log_std = nn.Parameter(torch.full((self.output_dim,), float(max_log_std)))
        self.to(self.device)
        self.optimizer = torch.optim.Adam(self.parameters(), lr=self.lr, weight_decay=self.weight_decay)

    # ------------------------------------------------------------------ plumbing
    def _prepare(self, state: Any, action: Any) -> tuple[torch.Tensor, torch.Tensor]:
        """Tensors ``state: (B, S)`` float32 and ``action: (B, A)`` float32 (one-hot when discrete)."""
        state = as_tensor(state, self.device)
        if state.dim() == 1:
            state = state.unsqueeze(0)
        if state.dim() != 2 or state.shape[-1] != self.state_dim:
            raise ValueError(
                f"state must have shape (B, {self.state_dim}) or ({self.state_dim},), "
                f"got {tuple(state.shape)}"
            )
        if self.discrete_actions:
            action = encode_discrete_action(action, self.action_dim, self.device)
        else:
            action = as_tensor(action, self.device)
            if action.dim() == 1:
                action = action.unsqueeze(0)
            if action.dim() != 2 or action.shape[-1] != self.action_dim:
                raise ValueError(
                    f"action must have shape (B, {self.action_dim}) or ({self.action_dim},), "
                    f"got {tuple(action.shape)}"
                )
        if action.shape[0] != state.shape[0]:
            raise ValueError(
                f"state and action must have the same batch size, got {state.shape[0]} and {action.shape[0]}"
            )
        return state, action

    def _inputs(self, state: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
        x = torch.cat([state, action], dim=-1)
        return self.normalizer(x) if self.normalize_inputs else x

    def forward(self, state: Any, action: Any) -> dict[str, torch.Tensor]:
        """Predictive Gaussian of the next state and the reward.

        Args:
            state: ``(B, S)`` or ``(S,)`` float32.
            action: ``(B, A)`` / ``(A,)`` float32, or with ``discrete_actions`` ``(B,)`` / scalar int64.

        Returns:
            dict with, in this order, ``next_state_mean (B, S)``, ``reward_mean (B, 1)``,
            ``next_state_std (B, S)``, ``reward_std (B, 1)`` (all float32, stds > 0).
        """
        state, action = self._prepare(state, action)
        mean, log_std = self._mean_log_std(state, action)
        std = log_std.exp()
        return {
            "next_state_mean": mean[:, : self.state_dim],
            "reward_mean": mean[:, self.state_dim :],
            "next_state_std": std[:, : self.state_dim],
            "reward_std": std[:, self.state_dim :],
        }

    def _mean_log_std(self, state: torch.Tensor, action: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Means ``(B, S+1)`` (next state, reward) and bounded log-stds ``(B, S+1)``."""
        out = self.net(self._inputs(state, action))
        mean, raw_log_std = out[:, : self.output_dim], out[:, self.output_dim :]
        if self.predict_delta:
            mean = torch.cat([state + mean[:, : self.state_dim], mean[:, self.state_dim :]], dim=-1)
        log_std = soft_bound_log_std(raw_log_std, self.min_log_std, self.max_log_std)
        return mean, log_std

    # ------------------------------------------------------------------ sampling
    def sample_prediction(
        self, state: Any, action: Any, generator: torch.Generator | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Draw ``s' ~ N(μ_s, σ_s²)`` and ``r ~ N(μ_r, σ_r²)`` (reparameterised, so differentiable).

        Args:
            state: ``(B, S)`` or ``(S,)`` float32.
            action: as in :meth:`forward`.
            generator: optional ``torch.Generator`` on the model's device for the noise.

        Returns:
            ``(next_state, reward)``: ``(B, S)`` and ``(B,)`` float32, or ``(S,)`` and ``()`` when ``B == 1``.
        """
        out = self.forward(state, action)
        # TODO(student): reparameterised draw next_state = mean + std * eps, reward likewise (eps ~ N(0, I)).
        raise NotImplementedError("DynamicsModel.sample_prediction: reparameterised draw next_state = mean + std * eps, reward likewise (eps ~ N(0, I)).")
        if next_state.shape[0] == 1:
            return next_state[0], reward[0]
        return next_state, reward

    # ------------------------------------------------------------------ training
    def loss(self, states: Any, actions: Any, next_states: Any, rewards: Any) -> torch.Tensor:
        """Gaussian NLL of the observed transitions plus the log-std bound regulariser.

        ``L = NLL([s', r]; [μ_s, μ_r], [σ_s, σ_r]) + c (Σ max_log_std − Σ min_log_std)``

        Args:
            states: ``(B, S)`` float32.
            actions: ``(B, A)`` float32 or ``(B,)`` int64 when discrete.
            next_states: ``(B, S)`` float32.
            rewards: ``(B,)`` or ``(B, 1)`` float32.

        Returns:
            ``()`` float32 scalar loss (differentiable).
        """
        states, actions = self._prepare(states, actions)
        next_states = as_tensor(next_states, self.device).reshape(states.shape[0], self.state_dim)
        rewards = as_tensor(rewards, self.device).reshape(states.shape[0], 1)
        mean, log_std = self._mean_log_std(states, actions)
        # TODO(student): NLL of [s', r] under N(mean, exp(log_std)^2) + coef*(sum(max_log_std) - sum(min)).
        raise NotImplementedError("DynamicsModel.loss: NLL of [s', r] under N(mean, exp(log_std)^2) + coef*(sum(max_log_std) - sum(min)).")

    def train_step(self, states: Any, actions: Any, next_states: Any, rewards: Any) -> float:
        """One Adam step on :meth:`loss` (after folding the inputs into the normalisation statistics).

        Returns:
            the loss before the step, as a float.
        """
        if self.normalize_inputs:
            s, a = self._prepare(states, actions)
            self.normalizer.update(torch.cat([s, a], dim=-1))
        self.train()
        loss = self.loss(states, actions, next_states, rewards)
        self.optimizer.zero_grad()
        loss.backward()
        self.optimizer.step()
        return float(loss.detach())


def encode_discrete_action(action: Any, num_actions: int, device: torch.device) -> torch.Tensor:
    """One-hot ``(B, num_actions)`` float32 from integer actions ``(B,)``, ``(B, 1)`` or a scalar.

    Raises:
        ValueError: for non-integer values or indices outside ``[0, num_actions)``.
    """
    a = action if isinstance(action, torch.Tensor) else torch.as_tensor(action)
    a = a.to(device)
    if a.dim() == 2 and a.shape[-1] == 1:
        a = a[:, 0]
    if a.dim() == 0:
        a = a.unsqueeze(0)
    if a.dim() != 1:
        raise ValueError(
            f"discrete action must be an int, or int tensor of shape (B,), got shape {tuple(a.shape)}"
        )
    if a.is_floating_point() and not torch.equal(a, a.round()):
        raise ValueError(f"discrete action must hold integers, got {a.tolist()}")
    a = a.long()
    if a.numel() and (a.min() < 0 or a.max() >= num_actions):
        raise ValueError(f"discrete action must be in [0, {num_actions}), got values {a.unique().tolist()}")
    return F.one_hot(a, num_actions).to(torch.float32)
