"""Bootstrapped ensemble of probabilistic dynamics models (PE of PETS: Chua et al., 2018, §4.1-4.2).

Each of the ``E`` members is a PETS probabilistic network (see :mod:`model_based_rl.dynamics`) trained on its
own bootstrap resample of every batch (PETS §4.1: "bootstraps ... sampled with replacement"), so the members
disagree where data are scarce. The spread of the member means measures *epistemic* uncertainty, the
members' predicted variances the *aleatoric* one; by the law of total variance (PETS §4, eq. of the moments of
the mixture ``p(s') = 1/E Σ_e N(μ_e, σ_e²)``)

    E[s'] = 1/E Σ_e μ_e,      Var[s'] = 1/E Σ_e σ_e²  +  1/E Σ_e (μ_e − E[s'])²
                                        (aleatoric)        (epistemic)

Particles are propagated through the ensemble with the trajectory-sampling schemes of PETS §4.3:
``ts1`` re-draws the member of every particle at every step, ``tsinf`` keeps the member of a particle for the
whole horizon; ``mean`` is the deterministic expectation over members.

All members are evaluated at once with batched ``(E, in, out)`` weights and one ``torch.baddbmm`` per layer
(as the ``EnsembleLinear`` layers of mbrl-lib, Pineda et al., 2021), never with a loop over members.

Documented deviations: as in :mod:`model_based_rl.dynamics` (log-std bounds, NLL averaged over dimensions,
joint reward head); the learnable log-std bounds are shared by all members (as in mbrl-lib); in ``mean`` mode
``propagate`` is deterministic (no noise is drawn).
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import torch
from torch import nn
from utils.checks import check_choice, check_nonnegative_float, check_positive_float, check_positive_int
from utils.torch_utils import as_tensor, resolve_device

from model_based_rl.dynamics import InputNormalizer, encode_discrete_action, gaussian_nll, soft_bound_log_std

__all__ = [
    "EnsembleLinear",
    "EnsemblePrediction",
    "ModelEnsemble",
    "bootstrap_indices",
    "combine_ensemble_moments",
]

PROPAGATION_MODES = ("mean", "ts1", "tsinf")


class EnsembleLinear(nn.Module):
    """``E`` independent affine maps evaluated with one batched matmul.

    Args:
        ensemble_size: ``E``.
        in_features: input width.
        out_features: output width.

    Parameters: ``weight (E, in, out)`` and ``bias (E, 1, out)`` float32, each member initialised like
    ``nn.Linear`` (uniform in ``±1/sqrt(in_features)``).
    """

    def __init__(self, ensemble_size: int, in_features: int, out_features: int) -> None:
        super().__init__()
        self.ensemble_size = check_positive_int("ensemble_size", ensemble_size)
        self.in_features = check_positive_int("in_features", in_features)
        self.out_features = check_positive_int("out_features", out_features)
        bound = 1.0 / math.sqrt(in_features)
        self.weight = nn.Parameter(
            torch.empty(ensemble_size, in_features, out_features).uniform_(-bound, bound)
        )
        self.bias = nn.Parameter(torch.empty(ensemble_size, 1, out_features).uniform_(-bound, bound))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``y[e] = x[e] @ weight[e] + bias[e]`` for every member at once.

        Args:
            x: ``(E, B, in)`` float32.

        Returns:
            ``(E, B, out)`` float32.
        """
        # TODO(student): y[e] = x[e] @ W[e] + b[e] for all members in ONE batched call (torch.baddbmm).
        raise NotImplementedError("EnsembleLinear.forward: y[e] = x[e] @ W[e] + b[e] for all members in ONE batched call (torch.baddbmm).")

    def extra_repr(self) -> str:
        return (
            f"ensemble_size={self.ensemble_size}, in_features={self.in_features}, "
            f"out_features={self.out_features}"
        )


class EnsemblePrediction(NamedTuple):
    """Moments of the ensemble mixture for a batch of ``B`` inputs (all float32)."""

    next_state_mean: torch.Tensor  #: (B, S) mean of the member means
    reward_mean: torch.Tensor  #: (B,)
    aleatoric_std: torch.Tensor  #: (B, S) sqrt of the mean member variance
    epistemic_std: torch.Tensor  #: (B, S) std of the member means
    reward_aleatoric_std: torch.Tensor  #: (B,)
    reward_epistemic_std: torch.Tensor  #: (B,)


def bootstrap_indices(
    batch_size: int,
    ensemble_size: int,
    generator: torch.Generator | None = None,
    device: str | torch.device = "cpu",
) -> torch.Tensor:
    """Bootstrap resamples of a batch, one per member (PETS §4.1).

    Args:
        batch_size: ``B``, the size of the batch (and of each resample).
        ensemble_size: ``E``.
        generator: optional ``torch.Generator`` (on ``device``).
        device: device of the result.

    Returns:
        ``(E, B)`` int64: row ``e`` holds ``B`` indices into the batch drawn uniformly *with replacement*.
    """
    batch_size = check_positive_int("batch_size", batch_size)
    ensemble_size = check_positive_int("ensemble_size", ensemble_size)
    # TODO(student): (E, B) int64 indices in [0, B) drawn uniformly WITH replacement, one row per member.
    raise NotImplementedError("bootstrap_indices: (E, B) int64 indices in [0, B) drawn uniformly WITH replacement, one row per member.")


def combine_ensemble_moments(
    means: torch.Tensor, stds: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Moments of the uniform mixture of the members' Gaussians (law of total variance).

    Args:
        means: ``(E, B, D)`` float32 member means ``μ_e``.
        stds: ``(E, B, D)`` float32 member standard deviations ``σ_e``.

    Returns:
        ``(mean, aleatoric_std, epistemic_std)``, each ``(B, D)`` float32:
        ``mean = 1/E Σ μ_e``, ``aleatoric_std = sqrt(1/E Σ σ_e²)``,
        ``epistemic_std = sqrt(1/E Σ (μ_e − mean)²)`` (population std over members; 0 when ``E = 1``),
        so that ``aleatoric_std² + epistemic_std²`` is the mixture variance.
    """
    # TODO(student): mean = avg_e mu_e; aleatoric = sqrt(avg_e sigma_e^2); epistemic = std_e(mu_e) (pop.)
    raise NotImplementedError("combine_ensemble_moments: mean = avg_e mu_e; aleatoric = sqrt(avg_e sigma_e^2); epistemic = std_e(mu_e) (pop.)")


class ModelEnsemble(nn.Module):
    """``E`` PETS probabilistic dynamics networks in batched ``(E, ...)`` layers.

    Args:
        state_dim: ``S``.
        action_dim: ``A`` (number of actions when ``discrete_actions``).
        ensemble_size: ``E``.
        hidden_dim: width of the hidden layers.
        num_hidden_layers: number of hidden layers (SiLU activations).
        lr: Adam learning rate.
        weight_decay: Adam weight decay.
        discrete_actions: actions are integer indices one-hot encoded to ``A``.
        predict_delta: the networks predict ``Δs = s' − s``.
        min_log_std: initial lower log-std bound.
        max_log_std: initial upper log-std bound.
        log_std_bound_coef: weight of the bound regulariser.
        normalize_inputs: normalise inputs with running statistics of the training inputs.
        device: torch device.
    """

    def __init__(
        self,
        state_dim: int,
        action_dim: int,
        ensemble_size: int = 5,
        hidden_dim: int = 200,
        num_hidden_layers: int = 3,
        lr: float = 1e-3,
        weight_decay: float = 0.0,
        discrete_actions: bool = False,
        predict_delta: bool = True,
        min_log_std: float = -10.0,
        max_log_std: float = 0.5,
        log_std_bound_coef: float = 0.01,
        normalize_inputs: bool = True,
        device: str | torch.device = "cpu",
    ) -> None:
        super().__init__()
        self.state_dim = check_positive_int("state_dim", state_dim)
        self.action_dim = check_positive_int("action_dim", action_dim)
        self.ensemble_size = check_positive_int("ensemble_size", ensemble_size)
        self.hidden_dim = check_positive_int("hidden_dim", hidden_dim)
        self.num_hidden_layers = check_positive_int("num_hidden_layers", num_hidden_layers)
        self.lr = check_positive_float("lr", lr)
        self.weight_decay = check_nonnegative_float("weight_decay", weight_decay)
        self.log_std_bound_coef = check_nonnegative_float("log_std_bound_coef", log_std_bound_coef)
        if not float(min_log_std) < float(max_log_std):
            raise ValueError(
                f"min_log_std must be below max_log_std, got min_log_std={min_log_std!r} >= "
                f"max_log_std={max_log_std!r}; typical values are -10 and 0.5"
            )
        self.discrete_actions = bool(discrete_actions)
        self.predict_delta = bool(predict_delta)
        self.normalize_inputs = bool(normalize_inputs)
        self.device = resolve_device(device)

        in_dim = self.state_dim + self.action_dim
        self.output_dim = self.state_dim + 1
        self.normalizer = InputNormalizer(
            in_dim, num_normalized=self.state_dim if self.discrete_actions else in_dim
        )
        layers: list[nn.Module] = []
        last = in_dim
        for _ in range(self.num_hidden_layers):
            layers += [EnsembleLinear(self.ensemble_size, last, self.hidden_dim), nn.SiLU()]
            last = self.hidden_dim
        layers.append(EnsembleLinear(self.ensemble_size, last, 2 * self.output_dim))
        self.net = nn.Sequential(*layers)
        self.min_log_std = nn.Parameter(torch.full((self.output_dim,), float(min_log_std)))
        self.max_log_std = nn.Parameter(torch.full((self.output_dim,), float(max_log_std)))
        self.to(self.device)
        self.optimizer = torch.optim.Adam(self.parameters(), lr=self.lr, weight_decay=self.weight_decay)

    # ------------------------------------------------------------------ plumbing
    def _prepare(self, states: Any, actions: Any) -> tuple[torch.Tensor, torch.Tensor]:
        """``states (..., B, S)`` and ``actions (..., B, A)`` float32 tensors (one-hot when discrete)."""
        states = as_tensor(states, self.device)
        if states.dim() == 1:
            states = states.unsqueeze(0)
        if states.shape[-1] != self.state_dim or states.dim() not in (2, 3):
            raise ValueError(
                f"states must have shape (B, {self.state_dim}) or (E, B, {self.state_dim}), "
                f"got {tuple(states.shape)}"
            )
        if self.discrete_actions:
            a = actions if isinstance(actions, torch.Tensor) else torch.as_tensor(actions)
            lead = states.shape[:-1]
            actions = encode_discrete_action(a.reshape(-1), self.action_dim, self.device).reshape(
                *lead, self.action_dim
            )
        else:
            actions = as_tensor(actions, self.device)
            if actions.dim() == 1:
                actions = actions.unsqueeze(0)
        if actions.shape[:-1] != states.shape[:-1] or actions.shape[-1] != self.action_dim:
            raise ValueError(
                f"actions must have shape {(*states.shape[:-1], self.action_dim)} to match states "
                f"{tuple(states.shape)}, got {tuple(actions.shape)}"
            )
        if states.dim() == 3 and states.shape[0] != self.ensemble_size:
            raise ValueError(
                f"per-member states must have leading dimension ensemble_size={self.ensemble_size}, "
                f"got {tuple(states.shape)}"
            )
        return states, actions

    def _mean_log_std(self, states: torch.Tensor, actions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Member means and bounded log-stds ``(E, B, S+1)`` from ``(B, ·)`` or ``(E, B, ·)`` inputs."""
        x = torch.cat([states, actions], dim=-1)
        if self.normalize_inputs:
            x = self.normalizer(x)
        if x.dim() == 2:
            x = x.unsqueeze(0).expand(self.ensemble_size, -1, -1)
            states = states.unsqueeze(0)
        out = self.net(x)
        mean, raw_log_std = out[..., : self.output_dim], out[..., self.output_dim :]
        if self.predict_delta:
            mean = torch.cat([states + mean[..., : self.state_dim], mean[..., self.state_dim :]], dim=-1)
        return mean, soft_bound_log_std(raw_log_std, self.min_log_std, self.max_log_std)

    def forward(self, states: Any, actions: Any) -> dict[str, torch.Tensor]:
        """Every member's predictive Gaussian.

        Args:
            states: ``(B, S)`` (broadcast to every member) or ``(E, B, S)`` (one batch per member) float32.
            actions: ``(B, A)`` / ``(E, B, A)`` float32, or int64 ``(B,)`` / ``(E, B)`` when discrete.

        Returns:
            dict with ``next_state_mean (E, B, S)``, ``reward_mean (E, B, 1)``, ``next_state_std (E, B, S)``,
            ``reward_std (E, B, 1)`` (float32).
        """
        states, actions = self._prepare(states, actions)
        mean, log_std = self._mean_log_std(states, actions)
        std = log_std.exp()
        s = self.state_dim
        return {
            "next_state_mean": mean[..., :s],
            "reward_mean": mean[..., s:],
            "next_state_std": std[..., :s],
            "reward_std": std[..., s:],
        }

    @torch.no_grad()
    def predict(self, states: Any, actions: Any) -> EnsemblePrediction:
        """Mixture moments of the ensemble for ``states (B, S)``, ``actions (B, A)`` (see the NamedTuple)."""
        out = self.forward(states, actions)
        mean_s, ale_s, epi_s = combine_ensemble_moments(out["next_state_mean"], out["next_state_std"])
        mean_r, ale_r, epi_r = combine_ensemble_moments(out["reward_mean"], out["reward_std"])
        return EnsemblePrediction(mean_s, mean_r[:, 0], ale_s, epi_s, ale_r[:, 0], epi_r[:, 0])

    # ------------------------------------------------------------------ training
    def loss(
        self,
        states: Any,
        actions: Any,
        next_states: Any,
        rewards: Any,
    ) -> torch.Tensor:
        """Sum over members of each member's Gaussian NLL plus the log-std bound regulariser.

        Args:
            states: ``(E, B, S)`` per-member batches (or ``(B, S)``, the same batch for every member).
            actions: ``(E, B, A)`` / ``(B, A)`` float32 (int64 ``(E, B)`` / ``(B,)`` when discrete).
            next_states: same leading shape as ``states``.
            rewards: ``(E, B)`` / ``(E, B, 1)`` or ``(B,)`` / ``(B, 1)`` float32.

        Returns:
            ``()`` float32: ``Σ_e NLL_e + c (Σ max_log_std − Σ min_log_std)``.
        """
        states, actions = self._prepare(states, actions)
        next_states = as_tensor(next_states, self.device).reshape(states.shape)
        rewards = as_tensor(rewards, self.device).reshape(*states.shape[:-1], 1)
        mean, log_std = self._mean_log_std(states, actions)
        target = torch.cat([next_states, rewards], dim=-1)
        if target.dim() == 2:
            target = target.unsqueeze(0).expand_as(mean)
        nll = gaussian_nll(mean, log_std, target) * self.ensemble_size  # = Σ_e mean NLL of member e
        return nll + self.log_std_bound_coef * (self.max_log_std.sum() - self.min_log_std.sum())

    def train_step(
        self,
        states: Any,
        actions: Any,
        next_states: Any,
        rewards: Any,
        generator: torch.Generator | None = None,
    ) -> float:
        """One Adam step, member ``e`` on its own bootstrap resample ``batch[bootstrap_indices[e]]``.

        Args:
            states: ``(B, S)`` float32.
            actions: ``(B, A)`` float32 (``(B,)`` int64 when discrete).
            next_states: ``(B, S)`` float32.
            rewards: ``(B,)`` or ``(B, 1)`` float32.
            generator: optional generator for the bootstrap indices.

        Returns:
            the loss before the step divided by ``E`` (the mean member NLL, plus the regulariser / E).
        """
        s, a = self._prepare(states, actions)
        if s.dim() != 2:
            raise ValueError(
                f"states must have shape (B, {self.state_dim}) in train_step, got {tuple(s.shape)}"
            )
        batch = s.shape[0]
        ns = as_tensor(next_states, self.device).reshape(batch, self.state_dim)
        r = as_tensor(rewards, self.device).reshape(batch, 1)
        if self.normalize_inputs:
            self.normalizer.update(torch.cat([s, a], dim=-1))
        idx = bootstrap_indices(batch, self.ensemble_size, generator=generator, device=self.device)
        self.train()
        loss = self.loss(s[idx], a[idx] if not self.discrete_actions else a[idx].argmax(-1), ns[idx], r[idx])
        self.optimizer.zero_grad()
        loss.backward()
        self.optimizer.step()
        return float(loss.detach()) / self.ensemble_size

    # ------------------------------------------------------------------ propagation
    def sample_member_indices(
        self, num_particles: int, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        """A member for each of ``num_particles`` particles, uniformly: ``(N,)`` int64 in ``[0, E)``."""
        num_particles = check_positive_int("num_particles", num_particles)
        return torch.randint(0, self.ensemble_size, (num_particles,), generator=generator, device=self.device)

    def forward_members(
        self, states: torch.Tensor, actions: torch.Tensor, member_idx: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean and std of member ``member_idx[n]`` at particle ``n``, with ONE ensemble forward.

        Particles are grouped by member into a padded ``(E, M, ·)`` batch (``M`` = largest group), evaluated
        with the batched layers, and scattered back, so the cost is ``E·M ≈ N`` rows rather than ``E·N``.

        Args:
            states: ``(N, S)`` float32.
            actions: ``(N, A)`` float32 (one-hot encoded already when discrete).
            member_idx: ``(N,)`` int64 in ``[0, E)``.

        Returns:
            ``(mean, std)``, each ``(N, S+1)`` float32 (next state then reward).
        """
        n = states.shape[0]
        member_idx = member_idx.to(self.device).long()
        counts = torch.bincount(member_idx, minlength=self.ensemble_size)
        order = torch.argsort(member_idx, stable=True)
        sorted_members = member_idx[order]
        starts = torch.cumsum(counts, 0) - counts
        slot = torch.arange(n, device=self.device) - starts[sorted_members]
        m = int(counts.max()) if n else 0
        s_pad = states.new_zeros(self.ensemble_size, m, self.state_dim)
        a_pad = actions.new_zeros(self.ensemble_size, m, self.action_dim)
        s_pad[sorted_members, slot] = states[order]
        a_pad[sorted_members, slot] = actions[order]
        mean_pad, log_std_pad = self._mean_log_std(s_pad, a_pad)
        mean = torch.empty(n, self.output_dim, device=self.device, dtype=mean_pad.dtype)
        log_std = torch.empty_like(mean)
        mean[order] = mean_pad[sorted_members, slot]
        log_std[order] = log_std_pad[sorted_members, slot]
        return mean, log_std.exp()

    def propagate(
        self,
        states: Any,
        actions: Any,
        mode: str = "ts1",
        member_idx: torch.Tensor | None = None,
        generator: torch.Generator | None = None,
        deterministic: bool = False,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """One step of particle propagation (PETS §4.3).

        Args:
            states: ``(N, S)`` float32 particles.
            actions: ``(N, A)`` float32 (``(N,)`` int64 when discrete).
            mode: ``"ts1"`` (a fresh random member per particle at this call), ``"tsinf"`` (member
                ``member_idx[n]`` for particle ``n``, fixed by the caller for the whole horizon) or ``"mean"``
                (the average of all member means; always deterministic).
            member_idx: ``(N,)`` int64, required for ``"tsinf"`` (see :meth:`sample_member_indices`).
            generator: optional generator for the member draws and the noise.
            deterministic: return the chosen member's mean instead of a sample ``μ + σ ε``.

        Returns:
            ``(next_states (N, S), rewards (N,))`` float32.
        """
        check_choice("mode", mode, PROPAGATION_MODES)
        states, actions = self._prepare(states, actions)
        if states.dim() != 2:
            raise ValueError(
                f"states must have shape (N, {self.state_dim}) in propagate, got {tuple(states.shape)}"
            )
        n = states.shape[0]
        if mode == "tsinf":
            if member_idx is None:
                raise ValueError(
                    "member_idx is required for mode='tsinf' (the fixed member of each particle), got None; "
                    "draw it once per rollout with sample_member_indices(num_particles)"
                )
            member_idx = torch.as_tensor(member_idx, device=self.device).long().reshape(-1)
            if member_idx.shape[0] != n or member_idx.min() < 0 or member_idx.max() >= self.ensemble_size:
                raise ValueError(
                    f"member_idx must be ({n},) int64 in [0, {self.ensemble_size}), got shape "
                    f"{tuple(member_idx.shape)} with values in "
                    f"[{int(member_idx.min())}, {int(member_idx.max())}]"
                )
        s = self.state_dim
        # TODO(student): per-particle member (ts1 fresh, tsinf member_idx, mean: average), draw mu+sigma*eps.
        raise NotImplementedError("ModelEnsemble.propagate: per-particle member (ts1 fresh, tsinf member_idx, mean: average), draw mu+sigma*eps.")
