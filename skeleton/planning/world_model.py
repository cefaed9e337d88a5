"""World model: a VAE of the state (V) and a latent transition and reward model (M).

References:
    * D. Ha and J. Schmidhuber, "World Models", 2018 (arXiv:1803.10122). V: a variational auto-encoder
      that compresses an observation into a latent ``z`` (§2.1, "VAE (V) Model"); M: a model that predicts
      the next latent from ``z`` and the action (§2.2, "MDN-RNN (M) Model").
    * D. P. Kingma and M. Welling, "Auto-Encoding Variational Bayes", ICLR 2014. The reparameterisation
      trick ``z = μ + σ ⊙ ε, ε ~ N(0, I)`` (§2.4 and Eq. (10)) and the closed-form KL divergence of a
      diagonal Gaussian from ``N(0, I)``, ``KL = -½ Σ_j (1 + log σ_j² − μ_j² − σ_j²)`` (Appendix B).
    * D. Hafner et al., "Learning Latent Dynamics for Planning from Pixels" (PlaNet), ICML 2019. A latent
      transition model ``p(s_t | s_{t-1}, a_{t-1})`` and a reward model ``p(r_t | s_t)`` trained jointly with
      the encoder and the decoder (§3, Eq. (3)), then rolled out in imagination for planning.

The objective per batch (all parts are batch means) is::

    L = L_rec + β · L_KL + L_latent + L_reward
    L_rec    = Σ_s (decode(z) − s)²                       z = μ + σ ⊙ ε,  (μ, log σ²) = encode(s)
    L_KL     = KL(N(μ, σ²) ‖ N(0, I))                      Kingma & Welling, Appendix B
    L_latent = Σ_z (predict_next_latent(z, a) − sg[μ'])²   μ' = encode(s').mean,  sg = stop-gradient
    L_reward = (predict_reward(z, a) − r)²

Deviations from the papers (simplifications for low-dimensional states, documented on purpose):
    * M is a deterministic residual MLP ``z' = z + f([z, a])``, not Ha & Schmidhuber's MDN-RNN nor
      PlaNet's recurrent state-space model: there is no recurrent state and no mixture density.
    * PlaNet's KL between the transition prior and the next-step posterior is replaced by a squared error
      between the predicted next latent and the *mean* of the next state's encoding, with a stop-gradient
      on that target (as in the target of a value function): the target encoder is not pulled towards the
      prediction, so the encoder cannot shrink every latent to make the dynamics loss trivially small.
    * The reward model reads ``(z_t, a_t)`` (the reward of taking ``a_t`` in ``z_t``), as in the
      assignment notebook, instead of PlaNet's ``p(r_t | s_t)``.
    * The reconstruction term is a squared error (a unit-variance Gaussian likelihood up to a factor and a
      constant); ``beta`` weighs the KL term as in β-VAE. For states of small scale a ``beta`` well below 1
      keeps the posterior from collapsing.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from utils.checks import check_nonnegative_float, check_positive_float, check_positive_int
from utils.torch_utils import as_tensor, mlp, resolve_device

__all__ = ["WorldModel", "gaussian_kl"]

#: log σ² is clamped to this range before it is used, so that ``exp`` stays finite early in training.
LOG_VAR_MIN, LOG_VAR_MAX = -10.0, 10.0


def gaussian_kl(mean: torch.Tensor, log_var: torch.Tensor) -> torch.Tensor:
    """KL divergence of ``N(mean, diag(exp(log_var)))`` from the standard normal ``N(0, I)``.

    Kingma & Welling (2014), Appendix B: ``KL = -½ Σ_j (1 + log σ_j² − μ_j² − σ_j²)``.

    Args:
        mean: ``(..., Z)`` float32, the posterior means μ.
        log_var: ``(..., Z)`` float32, the posterior log-variances log σ².

    Returns:
        ``(...,)`` float32: the KL of each distribution, summed over the last (latent) dimension; >= 0.
    """
    if mean.shape != log_var.shape:
        raise ValueError(
            f"gaussian_kl: mean and log_var must have the same shape, got {tuple(mean.shape)} and "
            f"{tuple(log_var.shape)}; pass the two halves returned by encode()"
        )
    # TODO(student): closed-form KL(N(μ, σ²) ‖ N(0, I)) = -½ Σ_j (1 + log σ_j² − μ_j² − σ_j²), summed over dim -1.
    raise NotImplementedError("gaussian_kl: closed-form KL(N(μ, σ²) ‖ N(0, I)) = -½ Σ_j (1 + log σ_j² − μ_j² − σ_j²), summed over dim -1.")


class WorldModel(nn.Module):
    """VAE encoder/decoder plus latent transition and reward models (Ha & Schmidhuber 2018; PlaNet).

    Args:
        state_dim: S, size of a state vector.
        action_dim: A, size of an action vector.
        latent_dim: Z, size of the latent code.
        hidden_dim: width of the two hidden layers of every network.
        beta: weight β >= 0 of the KL term (β-VAE; 1.0 is the plain ELBO).
        lr: Adam learning rate of :meth:`train_step`.
        device: where the networks live.

    Attributes:
        encoder: ``S -> 2Z`` MLP giving ``(mean, log_var)``.
        decoder: ``Z -> S`` MLP.
        transition: ``Z + A -> Z`` MLP, the residual ``f`` of ``z' = z + f([z, a])``.
        reward_head: ``Z + A -> 1`` MLP.
        optimizer: Adam over all parameters.
    """

    def __init__(
        self,
        state_dim: int,
        action_dim: int,
        latent_dim: int = 16,
        hidden_dim: int = 128,
        beta: float = 1.0,
        lr: float = 1e-3,
        device: str | torch.device = "cpu",
    ) -> None:
        super().__init__()
        self.state_dim = check_positive_int("state_dim", state_dim)
        self.action_dim = check_positive_int("action_dim", action_dim)
        self.latent_dim = check_positive_int("latent_dim", latent_dim)
        self.hidden_dim = check_positive_int("hidden_dim", hidden_dim)
        self.beta = check_nonnegative_float("beta", beta)
        self.lr = check_positive_float("lr", lr)
        self.device = resolve_device(device)

        hidden = [self.hidden_dim, self.hidden_dim]
        self.encoder = mlp(self.state_dim, hidden, 2 * self.latent_dim)
        self.decoder = mlp(self.latent_dim, hidden, self.state_dim)
        self.transition = mlp(self.latent_dim + self.action_dim, hidden, self.latent_dim)
        self.reward_head = mlp(self.latent_dim + self.action_dim, hidden, 1)
        self.to(self.device)
        self.optimizer = torch.optim.Adam(self.parameters(), lr=self.lr)

    # ------------------------------------------------------------------ V: the VAE
    def encode(self, state: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Posterior ``q(z | s) = N(mean, exp(log_var))``.

        Args:
            state: ``(B, S)`` float32 (any leading shape works).

        Returns:
            ``(mean, log_var)``, each ``(B, Z)`` float32; ``log_var`` clamped to [-10, 10].
        """
        state = self._checked(state, self.state_dim, "state")
        mean, log_var = self.encoder(state).chunk(2, dim=-1)
        return mean, log_var.clamp(LOG_VAR_MIN, LOG_VAR_MAX)

    def reparameterize(self, mean: torch.Tensor, log_var: torch.Tensor) -> torch.Tensor:
        """A differentiable sample ``z ~ N(mean, exp(log_var))`` (Kingma & Welling 2014, §2.4).

        Args:
            mean: ``(B, Z)`` float32.
            log_var: ``(B, Z)`` float32.

        Returns:
            ``(B, Z)`` float32 sample; gradients flow to ``mean`` and ``log_var``.
        """
        # TODO(student): reparameterised sample z = μ + σ ⊙ ε, σ = exp(½ log σ²), ε ~ N(0, I) (torch.randn_like).
        raise NotImplementedError("WorldModel.reparameterize: reparameterised sample z = μ + σ ⊙ ε, σ = exp(½ log σ²), ε ~ N(0, I) (torch.randn_like).")

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """Reconstructed state from a latent.

        Args:
            z: ``(B, Z)`` float32.

        Returns:
            ``(B, S)`` float32.
        """
        return self.decoder(self._checked(z, self.latent_dim, "z"))

    # ------------------------------------------------------------------ M: latent transition and reward
    def predict_next_latent(self, z: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
        """Deterministic latent transition ``z' = z + f([z, a])``.

        Args:
            z: ``(B, Z)`` float32.
            action: ``(B, A)`` float32.

        Returns:
            ``(B, Z)`` float32.
        """
        z = self._checked(z, self.latent_dim, "z")
        action = self._checked(action, self.action_dim, "action")
        return z + self.transition(torch.cat([z, action], dim=-1))

    def predict_reward(self, z: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
        """Reward of taking ``action`` in latent ``z``.

        Args:
            z: ``(B, Z)`` float32.
            action: ``(B, A)`` float32.

        Returns:
            ``(B, 1)`` float32.
        """
        z = self._checked(z, self.latent_dim, "z")
        action = self._checked(action, self.action_dim, "action")
        return self.reward_head(torch.cat([z, action], dim=-1))

    # ------------------------------------------------------------------ training
    def loss(
        self,
        states: torch.Tensor,
        actions: torch.Tensor,
        rewards: torch.Tensor,
        next_states: torch.Tensor,
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """The world-model objective on a batch of transitions.

        ``(μ, log σ²) = encode(s)``, ``z = reparameterize(μ, log σ²)``, ``μ' = encode(s').mean`` (no gradient)::

            reconstruction = mean_B Σ_s (decode(z) − s)²
            kl             = mean_B gaussian_kl(μ, log σ²)
            latent         = mean_B Σ_z (predict_next_latent(z, a) − μ')²
            reward         = mean_B (predict_reward(z, a) − r)²
            total          = reconstruction + β · kl + latent + reward

        Args:
            states: ``(B, S)`` float32.
            actions: ``(B, A)`` float32.
            rewards: ``(B,)`` or ``(B, 1)`` float32.
            next_states: ``(B, S)`` float32.

        Returns:
            ``(total, parts)``: the scalar loss and a dict of scalar tensors ``"reconstruction"``, ``"kl"``,
            ``"latent"``, ``"reward"`` (each a batch mean, the KL unweighted by β).
        """
        states = self._checked(states, self.state_dim, "states")
        actions = self._checked(actions, self.action_dim, "actions")
        next_states = self._checked(next_states, self.state_dim, "next_states")
        rewards = as_tensor(rewards, self.device).reshape(-1)
        if not (states.shape[0] == actions.shape[0] == rewards.shape[0] == next_states.shape[0]):
            raise ValueError(
                "loss: states, actions, rewards and next_states must hold the same number of transitions, got "
                f"{states.shape[0]}, {actions.shape[0]}, {rewards.shape[0]}, {next_states.shape[0]}"
            )
        # TODO(student): total = rec + β·KL + latent + reward as in the module docstring (z reparameterised, target sg[μ']).
        raise NotImplementedError("WorldModel.loss: total = rec + β·KL + latent + reward as in the module docstring (z reparameterised, target sg[μ']).")

    def train_step(
        self,
        states: torch.Tensor,
        actions: torch.Tensor,
        rewards: torch.Tensor,
        next_states: torch.Tensor,
    ) -> dict[str, float]:
        """One Adam step on :meth:`loss`.

        Args:
            states: ``(B, S)``; actions: ``(B, A)``; rewards: ``(B,)`` or ``(B, 1)``; next_states: ``(B, S)``.

        Returns:
            ``{"total", "reconstruction", "kl", "latent", "reward"}`` as Python floats (before the step).
        """
        self.train()
        total, parts = self.loss(states, actions, rewards, next_states)
        self.optimizer.zero_grad(set_to_none=True)
        total.backward()
        self.optimizer.step()
        return {"total": float(total.detach()), **{k: float(v.detach()) for k, v in parts.items()}}

    # ------------------------------------------------------------------ imagination
    def imagine(self, z: torch.Tensor, actions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Multi-step rollout in latent space, without observations ("dreaming").

        Args:
            z: ``(B, Z)`` float32, the start latent ``z_0`` (e.g. ``encode(s_0)[0]``).
            actions: ``(B, T, A)`` float32, the actions ``a_0 … a_{T-1}``.

        Returns:
            ``(latents, rewards)``: ``latents`` ``(B, T, Z)`` float32 with ``latents[:, t] = z_{t+1}``, the
            latent after action ``a_t``; ``rewards`` ``(B, T)`` float32 with ``rewards[:, t] = r̂(z_t, a_t)``.
        """
        z = self._checked(z, self.latent_dim, "z")
        actions = self._checked(actions, self.action_dim, "actions")
        if z.dim() != 2 or actions.dim() != 3 or actions.shape[0] != z.shape[0]:
            raise ValueError(
                f"imagine: expected z of shape (B, {self.latent_dim}) and actions of shape (B, T, "
                f"{self.action_dim}) with the same B, got {tuple(z.shape)} and {tuple(actions.shape)}"
            )
        # TODO(student): for t < T: r_t = predict_reward(z_t, a_t), z_{t+1} = predict_next_latent(z_t, a_t); stack both.
        raise NotImplementedError("WorldModel.imagine: for t < T: r_t = predict_reward(z_t, a_t), z_{t+1} = predict_next_latent(z_t, a_t); stack both.")

    # ------------------------------------------------------------------ plumbing
    def _checked(self, x: torch.Tensor, size: int, name: str) -> torch.Tensor:
        """``x`` as float32 on the model's device, its last dimension checked against ``size``."""
        x = as_tensor(x, self.device)
        if x.dim() == 0 or x.shape[-1] != size:
            raise ValueError(
                f"{name} must have last dimension {size}, got shape {tuple(x.shape)}; check the state_dim/"
                f"action_dim/latent_dim this WorldModel was built with"
            )
        return x
