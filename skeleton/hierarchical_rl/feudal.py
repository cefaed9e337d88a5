"""FeUdal Networks (FuN) of Vezhnevets, Osindero, Schaul, Heess, Jaderberg, Silver and Kavukcuoglu (2017),
"FeUdal Networks for Hierarchical Reinforcement Learning", ICML.

A Manager and a Worker share a perceptual module. The Manager works in a latent state space and emits unit
*goal directions* at a lower temporal resolution; the Worker picks primitive actions, its policy modulated
by the Manager's recent goals (paper §3, eqs. 1-6):

    z_t = f_percept(x_t)                                               (1)
    s_t = f_Mspace(z_t)                                                (2)
    h^M_t, ĝ_t = f_Mrnn(s_t, h^M_{t−1});   g_t = ĝ_t / ‖ĝ_t‖            (3)
    w_t = φ( Σ_{i=t−c}^{t} g_i )           (φ linear, no bias, d → k)   (4)
    h^W_t, U_t = f_Wrnn(z_t, h^W_{t−1})    (U_t ∈ R^{|A|×k})            (5)
    π_t = SoftMax(U_t w_t)                                             (6)

Learning (paper §3, eqs. 7-8 and the Worker's update after them):

* the Manager follows the *transition policy gradient* (eq. 7)
      ∇g_t = A^M_t ∇_θ d_cos(s_{t+c} − s_t, g_t(θ)),   A^M_t = R_t − V^M_t(x_t, θ),
  i.e. it minimises ``−A^M_t · cos(s_{t+c} − s_t, g_t)`` with ``s`` and ``A^M`` held constant;
* the Worker gets the intrinsic reward (eq. 8)
      r^I_t = 1/c Σ_{i=1}^{c} d_cos(s_t − s_{t−i}, g_{t−i})
  and is trained by advantage actor-critic on ``r + α r^I``:
      ∇π_t = A^D_t ∇_θ log π(a_t | x_t; θ),   A^D_t = R_t + α R^I_t − V^D_t(x_t; θ),
  with its own (smaller) discount ``γ_W``; the Manager discounts with ``γ_M``;
* no gradient flows from the Worker into the goals (they enter eq. 4 detached), and the latent states
  ``s_t`` are constants in eqs. 7 and 8.

The Manager's recurrent core is the paper's *dilated LSTM* (§4): ``r = c`` separate LSTM states share one
set of weights; at step ``t`` only the state ``t mod r`` is updated, and the output is the mean of the ``r``
states' outputs (the pool of the last ``c`` outputs).

Documented deviations:
    * states are feature vectors, so ``f_percept`` is an MLP (the paper uses a CNN on pixels);
    * the Worker's LSTM has ``worker_dim`` units and a linear layer maps its output to ``U_t`` (the paper's
      Worker LSTM outputs ``U_t`` directly, with ``|A|·k`` units);
    * training uses whole episodes (the recurrent net is unrolled over the episode, one update per episode),
      not the paper's asynchronous A3C with 400-step truncated BPTT; there is no ε random-goal exploration;
    * at the start of an episode, eq. 8 keeps only the terms with ``t − i ≥ 0`` (still divided by ``c``),
      eq. 4 pools only the goals emitted so far, and eq. 7 uses ``s_{min(t+c, T)}`` near the episode's end;
    * the Worker's reward for action ``a_t`` is the environment reward of that step plus ``α r^I_{t+1}``, the
      intrinsic reward of the state the action led to;
    * separate value heads: ``V^M`` reads the Manager's dilated-LSTM output, ``V^D`` the Worker's LSTM.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from utils.checks import check_in_range, check_nonnegative_float, check_positive_float, check_positive_int
from utils.env_utils import unpack_reset, unpack_step
from utils.torch_utils import as_tensor, mlp, resolve_device

__all__ = [
    "DilatedLSTM",
    "FeudalNetwork",
    "FeudalState",
    "FeudalStep",
    "WorkerLoss",
    "discounted_returns",
    "fun_intrinsic_reward",
    "fun_policy_logits",
    "fun_transition_policy_loss",
    "fun_worker_loss",
]

_COS_EPS = 1e-8


# --------------------------------------------------------------------------------------------------------
# The math (pure functions)
# --------------------------------------------------------------------------------------------------------


def discounted_returns(
    rewards: torch.Tensor, gamma: float, bootstrap: float | torch.Tensor = 0.0
) -> torch.Tensor:
    """``R_t = Σ_{j≥t} γ^{j−t} r_j + γ^{T−t} · bootstrap`` for a trajectory of ``T`` rewards.

    Args:
        rewards: ``(T,)`` float32.
        gamma: discount.
        bootstrap: value of the state after the last reward (``0`` at a terminal state).

    Returns:
        ``(T,)`` float32 returns.
    """
    out = torch.empty_like(rewards)
    running = torch.as_tensor(bootstrap, dtype=rewards.dtype, device=rewards.device)
    for t in range(rewards.shape[0] - 1, -1, -1):
        running = rewards[t] + gamma * running
        out[t] = running
    return out


def fun_intrinsic_reward(states: torch.Tensor, goals: torch.Tensor, c: int) -> torch.Tensor:
    """The Worker's intrinsic reward of every step (FuN eq. 8).

        r^I_t = 1/c Σ_{i=1}^{c} d_cos(s_t − s_{t−i}, g_{t−i}),   terms with ``t − i < 0`` dropped (still / c),

    where ``d_cos(a, b) = aᵀb / (‖a‖ ‖b‖)`` (``0`` when either vector is zero).

    Args:
        states: ``(N, d)`` float32 Manager-space states ``s_0 .. s_{N−1}`` (no gradient needed).
        goals: ``(N, d)`` float32 goals ``g_0 .. g_{N−1}`` (the last one is not used).
        c: the Manager's horizon.

    Returns:
        ``(N,)`` float32 intrinsic rewards, ``r^I_0 = 0``.
    """
    # TODO(student): r^I_t = (1/c) Σ_{i=1..c, t−i≥0} cos(s_t − s_{t−i}, g_{t−i}), no gradient (FuN eq. 8).
    raise NotImplementedError("fun_intrinsic_reward: r^I_t = (1/c) Σ_{i=1..c, t−i≥0} cos(s_t − s_{t−i}, g_{t−i}), no gradient (FuN eq. 8).")


def fun_transition_policy_loss(
    states: torch.Tensor, goals: torch.Tensor, advantages: torch.Tensor, c: int
) -> torch.Tensor:
    """The Manager's transition policy gradient as a loss (FuN eq. 7).

        L_M = − 1/T Σ_t A^M_t · d_cos(s_{min(t+c, N−1)} − s_t, g_t(θ))

    Gradient flows only into the goals: the states and the advantages are constants.

    Args:
        states: ``(N, d)`` float32 Manager-space states ``s_0 .. s_{N−1}`` (``N ≥ T``, usually ``T + 1``).
        goals: ``(T, d)`` float32 goals ``g_0 .. g_{T−1}`` (with gradient).
        advantages: ``(T,)`` float32 ``A^M_t = R_t − V^M(x_t)``.
        c: the Manager's horizon.

    Returns:
        scalar loss.
    """
    # TODO(student): −mean_t A^M_t · cos(s_{min(t+c, N−1)} − s_t, g_t) with s and A^M detached (FuN eq. 7).
    raise NotImplementedError("fun_transition_policy_loss: −mean_t A^M_t · cos(s_{min(t+c, N−1)} − s_t, g_t) with s and A^M detached (FuN eq. 7).")


def fun_policy_logits(
    worker_u: torch.Tensor, goal_window: torch.Tensor, phi_weight: torch.Tensor
) -> torch.Tensor:
    """The Worker's action logits modulated by the pooled goals (FuN eqs. 4 and 6).

        w_t = φ(Σ_i g_i) = W_φ Σ_i g_i,   logits_t = U_t w_t   (π_t = SoftMax(logits_t))

    Args:
        worker_u: ``(B, A, k)`` float32 ``U_t``.
        goal_window: ``(B, n, d)`` float32 the last goals ``g_{t−c} .. g_t`` (``n ≤ c + 1``).
        phi_weight: ``(k, d)`` float32 weight of the bias-free linear map ``φ``.

    Returns:
        ``(B, A)`` float32 logits.
    """
    # TODO(student): w = W_φ (Σ_i g_i) over the window, logits = U w (FuN eqs. 4 and 6).
    raise NotImplementedError("fun_policy_logits: w = W_φ (Σ_i g_i) over the window, logits = U w (FuN eqs. 4 and 6).")


class WorkerLoss(NamedTuple):
    """Losses of the Worker's advantage actor-critic (scalars)."""

    policy: torch.Tensor
    value: torch.Tensor
    entropy: torch.Tensor


def fun_worker_loss(
    log_probs: torch.Tensor,
    entropies: torch.Tensor,
    values: torch.Tensor,
    rewards: torch.Tensor,
    intrinsic_rewards: torch.Tensor,
    alpha: float,
    gamma: float,
    bootstrap: float | torch.Tensor = 0.0,
    entropy_coef: float = 0.0,
) -> WorkerLoss:
    """The Worker's advantage actor-critic on ``r + α r^I`` (FuN §3, after eq. 8).

        R̃_t = Σ_j γ_W^{j−t} (r_j + α r^I_j) + γ_W^{T−t} · bootstrap,   A^D_t = R̃_t − V^D(x_t)
        policy = −mean(A^D_t · log π(a_t|x_t)) − entropy_coef · mean(H_t),   value = ½ mean((R̃_t − V^D(x_t))²)

    Args:
        log_probs: ``(T,)`` float32 ``log π(a_t | x_t)`` (with gradient).
        entropies: ``(T,)`` float32 policy entropies ``H_t`` (with gradient).
        values: ``(T,)`` float32 ``V^D(x_t)`` (with gradient).
        rewards: ``(T,)`` float32 environment rewards of the actions.
        intrinsic_rewards: ``(T,)`` float32 intrinsic rewards of the actions.
        alpha: weight ``α`` of the intrinsic reward.
        gamma: the Worker's discount ``γ_W``.
        bootstrap: ``V^D`` of the state after the last action (``0`` at a terminal state).
        entropy_coef: weight of the entropy bonus.

    Returns:
        :class:`WorkerLoss` ``(policy, value, entropy)``; the advantage is a constant in the policy loss.
    """
    # TODO(student): returns R of r + α r^I (γ_W), A = R − V detached; policy/value/entropy (FuN §3).
    raise NotImplementedError("fun_worker_loss: returns R of r + α r^I (γ_W), A = R − V detached; policy/value/entropy (FuN §3).")


# --------------------------------------------------------------------------------------------------------
# Networks (given)
# --------------------------------------------------------------------------------------------------------


class DilatedLSTM(nn.Module):
    """The Manager's dilated LSTM (FuN §4): ``r`` LSTM states, one shared cell, state ``t mod r`` updated.

    ``forward(x (B, in), (h (r, B, H), c (r, B, H)), t) -> (out (B, H), (h, c))`` where ``out`` is the mean of
    the ``r`` states' hidden outputs (the pool of the last ``r`` outputs).
    """

    def __init__(self, input_dim: int, hidden_dim: int, dilation: int) -> None:
        super().__init__()
        self.cell = nn.LSTMCell(input_dim, hidden_dim)
        self.hidden_dim = hidden_dim
        self.dilation = dilation

    def initial_state(self, batch: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        zeros = torch.zeros(self.dilation, batch, self.hidden_dim, device=device)
        return zeros, zeros.clone()

    def forward(
        self, x: torch.Tensor, state: tuple[torch.Tensor, torch.Tensor], t: int
    ) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
        h, c = state
        j = t % self.dilation
        h_j, c_j = self.cell(x, (h[j], c[j]))
        # out-of-place update keeps the autograd graph of the earlier steps intact
        mask = torch.zeros(self.dilation, 1, 1, device=x.device, dtype=x.dtype)
        mask[j] = 1.0
        h = h * (1.0 - mask) + mask * h_j.unsqueeze(0)
        c = c * (1.0 - mask) + mask * c_j.unsqueeze(0)
        return h.mean(dim=0), (h, c)


class FeudalState(NamedTuple):
    """Recurrent state of a :class:`FeudalNetwork` for a batch of ``B`` streams.

    Attributes:
        manager: ``(h, c)`` each ``(c, B, d)``, the dilated LSTM's states.
        worker: ``(h, c)`` each ``(B, worker_dim)``.
        goals: the last goals, each ``(B, d)`` (at most ``c + 1``; detached).
        t: the step counter (selects the dilated LSTM's state).
    """

    manager: tuple[torch.Tensor, torch.Tensor]
    worker: tuple[torch.Tensor, torch.Tensor]
    goals: tuple[torch.Tensor, ...]
    t: int


class FeudalStep(NamedTuple):
    """Outputs of one step of a :class:`FeudalNetwork` (batch ``B``)."""

    logits: torch.Tensor  # (B, A) the Worker's action logits
    goal: torch.Tensor  # (B, d) unit goal g_t (with gradient)
    manager_state: torch.Tensor  # (B, d) s_t = f_Mspace(z_t)
    manager_value: torch.Tensor  # (B,) V^M(x_t)
    worker_value: torch.Tensor  # (B,) V^D(x_t)


class FeudalNetwork(nn.Module):
    """FeUdal Network (Vezhnevets et al., 2017) for vector states and discrete actions.

    Args:
        state_dim: features of the state ``x_t``.
        action_dim: number of discrete actions ``|A|``.
        manager_dim: ``d``, dimension of ``z_t``, the Manager's latent state ``s_t`` and the goals ``g_t``.
        worker_dim: hidden units of the Worker's LSTM.
        lr: Adam learning rate.
        horizon_c: ``c``, the Manager's horizon (dilation of its LSTM, goal pooling and eqs. 7-8).
        embedding_dim_k: ``k``, dimension of the goal embedding ``w_t`` and of the rows of ``U_t``.
        gamma_manager: ``γ_M``.
        gamma_worker: ``γ_W``.
        alpha: weight ``α`` of the intrinsic reward.
        entropy_coef: weight of the Worker's entropy bonus.
        value_coef: weight of both value losses.
        hidden_dim: hidden units of the perception MLP.
        max_grad_norm: gradient clipping of each update (``None``: no clipping).
        device: torch device.
    """

    def __init__(
        self,
        state_dim: int,
        action_dim: int,
        manager_dim: int = 16,
        worker_dim: int = 32,
        lr: float = 1e-3,
        horizon_c: int = 10,
        embedding_dim_k: int = 16,
        gamma_manager: float = 0.99,
        gamma_worker: float = 0.95,
        alpha: float = 0.5,
        entropy_coef: float = 0.01,
        value_coef: float = 0.5,
        hidden_dim: int = 64,
        max_grad_norm: float | None = 5.0,
        device: str | torch.device = "cpu",
    ) -> None:
        super().__init__()
        self.state_dim = check_positive_int("state_dim", state_dim)
        self.action_dim = check_positive_int("action_dim", action_dim)
        self.manager_dim = check_positive_int("manager_dim", manager_dim)
        self.worker_dim = check_positive_int("worker_dim", worker_dim)
        self.lr = check_positive_float("lr", lr)
        self.horizon_c = check_positive_int("horizon_c", horizon_c)
        self.embedding_dim_k = check_positive_int("embedding_dim_k", embedding_dim_k)
        self.gamma_manager = check_in_range("gamma_manager", gamma_manager, 0.0, 1.0)
        self.gamma_worker = check_in_range("gamma_worker", gamma_worker, 0.0, 1.0)
        self.alpha = check_nonnegative_float("alpha", alpha)
        self.entropy_coef = check_nonnegative_float("entropy_coef", entropy_coef)
        self.value_coef = check_nonnegative_float("value_coef", value_coef)
        self.hidden_dim = check_positive_int("hidden_dim", hidden_dim)
        self.max_grad_norm = (
            None if max_grad_norm is None else check_positive_float("max_grad_norm", max_grad_norm)
        )
        self.device = resolve_device(device)

        d, k = self.manager_dim, self.embedding_dim_k
        self.percept = mlp(self.state_dim, [self.hidden_dim], d, out_activation=nn.ReLU)  # eq. 1
        self.manager_space = nn.Sequential(nn.Linear(d, d), nn.ReLU())  # eq. 2
        self.manager_rnn = DilatedLSTM(d, d, self.horizon_c)  # eq. 3
        self.manager_value_head = nn.Linear(d, 1)
        self.worker_rnn = nn.LSTMCell(d, self.worker_dim)  # eq. 5
        self.worker_u = nn.Linear(self.worker_dim, self.action_dim * k)
        self.worker_value_head = nn.Linear(self.worker_dim, 1)
        self.phi = nn.Linear(d, k, bias=False)  # eq. 4
        self.to(self.device)
        self.optimizer = torch.optim.Adam(self.parameters(), lr=self.lr)
        self._state: FeudalState | None = None
        self.reset_state()

    # ---------------------------------------------------------------- recurrent state
    def initial_state(self, batch_size: int = 1) -> FeudalState:
        """Zero recurrent state for ``batch_size`` streams."""
        check_positive_int("batch_size", batch_size)
        zeros_w = torch.zeros(batch_size, self.worker_dim, device=self.device)
        return FeudalState(
            manager=self.manager_rnn.initial_state(batch_size, self.device),
            worker=(zeros_w, zeros_w.clone()),
            goals=(),
            t=0,
        )

    def reset_state(self) -> None:
        """Forget the recurrent state used by :meth:`select_action` (call at every episode start)."""
        self._state = self.initial_state(1)

    # ---------------------------------------------------------------- forward
    def step(self, states: torch.Tensor, state: FeudalState) -> tuple[FeudalStep, FeudalState]:
        """One step of eqs. 1-6 for a batch.

        Args:
            states: ``(B, state_dim)`` float32 observations ``x_t``.
            state: the recurrent state from the previous step (or :meth:`initial_state`).

        Returns:
            ``(FeudalStep, next_state)``.
        """
        if states.ndim != 2 or states.shape[-1] != self.state_dim:
            raise ValueError(f"states must have shape (B, {self.state_dim}), got {tuple(states.shape)}")
        z = self.percept(states)  # (B, d)
        s = self.manager_space(z)  # (B, d)
        m_out, m_state = self.manager_rnn(s, state.manager, state.t)
        goal = m_out / m_out.norm(dim=-1, keepdim=True).clamp_min(_COS_EPS)  # eq. 3, unit norm
        manager_value = self.manager_value_head(m_out).squeeze(-1)
        h_w, c_w = self.worker_rnn(z, state.worker)
        u = self.worker_u(h_w).view(-1, self.action_dim, self.embedding_dim_k)  # (B, A, k)
        goals = (*state.goals, goal.detach())[-(self.horizon_c + 1) :]  # g_{t−c} .. g_t, no worker gradient
        logits = fun_policy_logits(u, torch.stack(goals, dim=1), self.phi.weight)
        worker_value = self.worker_value_head(h_w).squeeze(-1)
        out = FeudalStep(
            logits=logits, goal=goal, manager_state=s, manager_value=manager_value, worker_value=worker_value
        )
        return out, FeudalState(manager=m_state, worker=(h_w, c_w), goals=goals, t=state.t + 1)

    # ---------------------------------------------------------------- acting
    def select_action(self, state: np.ndarray, greedy: bool = False) -> tuple[int, np.ndarray]:
        """Act for one observation and advance the internal recurrent state.

        Args:
            state: ``(state_dim,)`` observation.
            greedy: take the most likely action instead of sampling from ``π_t``.

        Returns:
            ``(action, goal)``: the Worker's action (int) and the Manager's unit goal ``g_t``,
            ``(manager_dim,)`` float32 numpy.
        """
        x = as_tensor(self._obs_vector(state), self.device).unsqueeze(0)
        with torch.no_grad():
            out, self._state = self.step(x, self._state)
        if greedy:
            action = int(out.logits.argmax(dim=-1).item())
        else:
            action = int(torch.distributions.Categorical(logits=out.logits).sample().item())
        return action, out.goal.squeeze(0).cpu().numpy().astype(np.float32)

    def _obs_vector(self, obs: Any) -> np.ndarray:
        arr = np.asarray(obs, dtype=np.float32).reshape(-1)
        if arr.shape != (self.state_dim,):
            raise ValueError(
                f"state must have shape ({self.state_dim},) (state_dim features), got {np.shape(obs)}; "
                "encode discrete observations as vectors (e.g. one-hot) first"
            )
        return arr

    # ---------------------------------------------------------------- learning
    def compute_losses(
        self,
        observations: torch.Tensor,
        actions: torch.Tensor,
        rewards: torch.Tensor,
        terminal: bool,
    ) -> dict[str, torch.Tensor]:
        """Unroll the network over one episode and compute every loss.

        Args:
            observations: ``(T + 1, state_dim)`` float32 ``x_0 .. x_T`` (``x_T``: the observation after the
                last action).
            actions: ``(T,)`` int64 actions ``a_0 .. a_{T−1}``.
            rewards: ``(T,)`` float32 environment rewards of the actions.
            terminal: whether ``x_T`` is terminal (no bootstrap) or the episode was cut (bootstrap from V).

        Returns:
            dict with ``loss`` (the total: ``manager + worker_policy + value_coef·(manager_value +
            worker_value)``), ``manager`` (eq. 7), ``manager_value`` (``½·mean_t (R^M_t − V^M(x_t))²``, the
            Manager's critic, as the Worker's), ``worker_policy``, ``worker_value``, ``entropy`` and
            ``intrinsic_reward`` (mean).
        """
        t_len = actions.shape[0]
        if observations.shape[0] != t_len + 1:
            raise ValueError(
                f"observations must hold T + 1 = {t_len + 1} rows (one after the last action), got "
                f"{observations.shape[0]}"
            )
        state = self.initial_state(1)
        steps = []
        for t in range(t_len + 1):
            out, state = self.step(observations[t : t + 1], state)
            steps.append(out)
        logits = torch.cat([o.logits for o in steps[:-1]])  # (T, A)
        goals = torch.cat([o.goal for o in steps])  # (T+1, d)
        m_states = torch.cat([o.manager_state for o in steps])  # (T+1, d)
        m_values = torch.cat([o.manager_value for o in steps])  # (T+1,)
        w_values = torch.cat([o.worker_value for o in steps])  # (T+1,)

        dist = torch.distributions.Categorical(logits=logits)
        log_probs = dist.log_prob(actions)
        entropies = dist.entropy()
        intrinsic = fun_intrinsic_reward(m_states, goals, self.horizon_c)[1:]  # reward of the reached state
        boot_m = 0.0 if terminal else m_values[-1].detach()
        boot_w = 0.0 if terminal else w_values[-1].detach()

        worker = fun_worker_loss(
            log_probs,
            entropies,
            w_values[:-1],
            rewards,
            intrinsic,
            self.alpha,
            self.gamma_worker,
            boot_w,
            self.entropy_coef,
        )
        m_returns = discounted_returns(rewards, self.gamma_manager, boot_m)
        m_advantages = (m_returns - m_values[:-1]).detach()
        manager = fun_transition_policy_loss(m_states, goals[:-1], m_advantages, self.horizon_c)
        manager_value = 0.5 * (m_returns - m_values[:-1]).pow(2).mean()
        loss = manager + worker.policy + self.value_coef * (manager_value + worker.value)
        return {
            "loss": loss,
            "manager": manager,
            "manager_value": manager_value,
            "worker_policy": worker.policy,
            "worker_value": worker.value,
            "entropy": worker.entropy,
            "intrinsic_reward": intrinsic.mean() if t_len > 0 else torch.zeros(()),
        }

    def update(self, observations: Any, actions: Any, rewards: Any, terminal: bool) -> dict[str, float]:
        """One gradient step on one episode (see :meth:`compute_losses`); returns the losses as floats."""
        obs = as_tensor(np.asarray(observations, dtype=np.float32), self.device)
        acts = as_tensor(np.asarray(actions), self.device, dtype=torch.int64)
        rews = as_tensor(np.asarray(rewards, dtype=np.float32), self.device)
        losses = self.compute_losses(obs, acts, rews, terminal)
        self.optimizer.zero_grad()
        losses["loss"].backward()
        if self.max_grad_norm is not None:
            nn.utils.clip_grad_norm_(self.parameters(), self.max_grad_norm)
        self.optimizer.step()
        return {name: float(value.detach()) for name, value in losses.items()}

    def run_episode(self, env: Any, max_steps: int = 200, greedy: bool = False) -> dict[str, Any]:
        """Play one episode with :meth:`select_action`.

        Args:
            env: ``reset()`` returns an observation (or ``(obs, info)``); ``step(a)`` a gymnasium 5-tuple or a
                4-tuple. Observations must be ``(state_dim,)`` vectors.
            max_steps: cut the episode after this many steps.
            greedy: act greedily.

        Returns:
            ``{"observations": (T+1, S), "actions": (T,), "rewards": (T,), "terminal": bool,
            "return": float}``.
        """
        check_positive_int("max_steps", max_steps)
        obs, _ = unpack_reset(env.reset())
        self.reset_state()
        observations, actions, rewards = [self._obs_vector(obs)], [], []
        terminal = False
        for _ in range(max_steps):
            action, _ = self.select_action(observations[-1], greedy=greedy)
            obs, reward, terminated, truncated, _ = unpack_step(env.step(action))
            observations.append(self._obs_vector(obs))
            actions.append(action)
            rewards.append(float(reward))
            if terminated:
                terminal = True
                break
            if truncated:
                break
        return {
            "observations": np.stack(observations),
            "actions": np.asarray(actions, dtype=np.int64),
            "rewards": np.asarray(rewards, dtype=np.float32),
            "terminal": terminal,
            "return": float(np.sum(rewards)),
        }

    def train(
        self, env: Any, num_episodes: int, max_steps: int = 200, verbose: bool = False
    ) -> dict[str, list]:
        """Train on ``num_episodes`` episodes, one update per episode.

        Returns:
            ``{"returns": [...], "lengths": [...], "manager_loss": [...], "worker_loss": [...],
            "intrinsic_reward": [...]}``, one entry per episode.
        """
        check_positive_int("num_episodes", num_episodes)
        history: dict[str, list] = {
            "returns": [],
            "lengths": [],
            "manager_loss": [],
            "worker_loss": [],
            "intrinsic_reward": [],
        }
        for episode in range(1, num_episodes + 1):
            ep = self.run_episode(env, max_steps=max_steps)
            if len(ep["actions"]) > 0:
                losses = self.update(ep["observations"], ep["actions"], ep["rewards"], ep["terminal"])
            else:
                losses = {"manager": 0.0, "worker_policy": 0.0, "intrinsic_reward": 0.0}
            history["returns"].append(ep["return"])
            history["lengths"].append(len(ep["actions"]))
            history["manager_loss"].append(losses["manager"])
            history["worker_loss"].append(losses["worker_policy"])
            history["intrinsic_reward"].append(losses["intrinsic_reward"])
            if verbose and episode % 10 == 0:
                print(f"episode {episode}: mean return (last 10) {np.mean(history['returns'][-10:]):.3f}")
        return history
