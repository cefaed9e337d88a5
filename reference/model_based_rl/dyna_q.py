"""Dyna-Q with function approximation: Q-learning from real experience plus planning with a learned model.

Reference:
    Sutton, R. S. & Barto, A. G. (2018). *Reinforcement Learning: An Introduction* (2nd ed.), §8.2
    "Dyna: Integrated Planning, Acting, and Learning", the box "Tabular Dyna-Q" (p. 164):

        Loop forever:
          (a) S ← current (nonterminal) state
          (b) A ← ε-greedy(S, Q)
          (c) take A; observe R, S'
          (d) Q(S, A) ← Q(S, A) + α [R + γ max_a Q(S', a) − Q(S, A)]           (direct RL, eq. 6.8)
          (e) Model(S, A) ← R, S'                                              (model learning)
          (f) loop n times:                                                    (planning)
                S ← random previously observed state                           ("search control")
                A ← random action [S&B: previously taken in S]
                R, S' ← Model(S, A)
                Q(S, A) ← Q(S, A) + α [R + γ max_a Q(S', a) − Q(S, A)]

    The Q-learning target (S&B eq. 6.8) is ``y = R + γ (1 − done) max_a Q(S', a)``.

Function approximation (documented deviations from the tabular box):
    * Q is a neural network ``Q_θ(s) ∈ R^A``; steps (d) and (f) are semi-gradient steps (Adam) on the
      squared TD error ``mean_b (y_b − Q_θ(s_b, a_b))²`` (S&B §9.3, eq. 9.7 with the Q-learning target),
      over minibatches. Targets use a periodically copied target network (Mnih et al., 2015, "Human-level
      control through deep reinforcement learning", Nature 518) every ``target_update_interval`` gradient
      steps (real and simulated); ``target_update_interval=1`` bootstraps from the current network as in
      the tabular algorithm.
    * Step (d) uses a minibatch of ``batch_size`` real transitions drawn from a replay buffer
      (:class:`utils.ReplayBuffer`) instead of only the latest transition.
    * The model (e) is the probabilistic network :class:`model_based_rl.dynamics.DynamicsModel` (PETS,
      Chua et al. 2018) with one-hot actions, trained by gradient steps on replayed real transitions. By
      default only its *means* are fitted, by squared error (``model_loss="mse"``): S&B's Dyna-Q model is
      deterministic, and the PETS Gaussian NLL (``model_loss="nll"``) fits the means of near-deterministic
      outputs (one-hot cells) very slowly, because their collapsing variances dominate the gradient (Seitzer
      et al. 2022, "On the Pitfalls of Heteroscedastic Uncertainty Estimation with Probabilistic Neural
      Networks", ICLR). Planning uses the mean prediction (``stochastic_planning=True`` samples instead,
      meaningful with ``model_loss="nll"``).
    * Termination: ``DynamicsModel`` has no "done" head, so the agent learns a small termination classifier
      ``p_ψ(done | s, a)`` (an MLP on ``[s, one_hot(a)]`` trained with binary cross-entropy on the real
      ``done`` flags, next to the dynamics model). A simulated transition's ``done`` is that *probability*,
      so the planning target is the expected backup ``r + γ (1 − p_done) max_a Q(s', a)``. A known
      termination rule can be given instead as ``termination_fn(next_states) -> dones``; then the
      classifier is not used.
    * Search control (f): a planning minibatch draws ``batch_size`` of the (state, action) pairs stored by
      :meth:`DynaQAgent.store_experience`, uniformly with replacement: a random previously observed state
      with an action previously taken in it, as in the S&B box (``search_control="taken"``). With
      ``search_control="random"`` the action is uniform over all ``A`` actions instead, which asks the
      model about pairs it never saw (its generalisation then matters). With fewer seen pairs than
      ``batch_size``, pairs repeat; with none at all, :meth:`DynaQAgent.planning_step` does nothing and
      returns None.
    * The real ``done`` flag only marks *termination*; a time-limit truncation is stored as not done
      (so its next state is bootstrapped, Pardo et al. 2018).
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from utils import ReplayBuffer
from utils.checks import (
    check_choice,
    check_in_range,
    check_nonnegative_int,
    check_positive_float,
    check_positive_int,
)
from utils.env_utils import unpack_reset, unpack_step
from utils.torch_utils import as_tensor, mlp, resolve_device

from model_based_rl.dynamics import DynamicsModel

__all__ = ["DynaQAgent", "epsilon_greedy_action", "q_learning_loss", "q_learning_targets"]


# --------------------------------------------------------------------------------------------------
# Pure functions (the math)
# --------------------------------------------------------------------------------------------------


def q_learning_targets(
    rewards: torch.Tensor, next_q_target: torch.Tensor, dones: torch.Tensor, gamma: float
) -> torch.Tensor:
    """Q-learning targets ``y = r + γ (1 − done) max_a Q_target(s', a)`` (S&B eq. 6.8).

    Args:
        rewards: ``(B,)`` float32 rewards.
        next_q_target: ``(B, A)`` float32 target-network values of the next states.
        dones: ``(B,)`` float32 (or bool) termination flags; values in ``[0, 1]`` (a probability of
            termination gives the expected target).
        gamma: discount ``γ`` in ``[0, 1]``.

    Returns:
        ``(B,)`` float32 targets (no gradient flows into ``next_q_target`` through them).
    """
    # TODO(student): y = rewards + gamma * (1 - dones) * max_a next_q_target[:, a], detached (S&B eq. 6.8).
    # BEGIN SOLUTION
    next_value = next_q_target.detach().max(dim=1).values
    return rewards + gamma * (1.0 - dones.to(rewards.dtype)) * next_value
    # END SOLUTION


def q_learning_loss(q_values: torch.Tensor, actions: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Squared TD error of the taken actions, ``mean_b (y_b − Q(s_b, a_b))²`` (S&B eq. 9.7 with eq. 6.8).

    Args:
        q_values: ``(B, A)`` float32 online-network values ``Q_θ(s_b, ·)``.
        actions: ``(B,)`` int64 taken actions.
        targets: ``(B,)`` float32 targets ``y_b`` (treated as constants).

    Returns:
        ``()`` float32 loss; its gradient reaches ``q_values`` only at the taken actions.
    """
    # TODO(student): gather Q(s_b, a_b) from q_values and return the mean of (targets - Q(s_b, a_b))^2.
    # BEGIN SOLUTION
    q_taken = q_values.gather(1, actions.long().reshape(-1, 1)).squeeze(1)
    return ((targets.detach() - q_taken) ** 2).mean()
    # END SOLUTION


def epsilon_greedy_action(
    q_values: torch.Tensor | np.ndarray, epsilon: float, rng: np.random.Generator | None = None
) -> int:
    """ε-greedy choice (S&B §2.2): a uniformly random action with probability ε, else a greedy one.

    Ties among greedy actions are broken uniformly at random (so an untrained, constant Q explores).

    Args:
        q_values: ``(A,)`` action values of one state.
        epsilon: exploration probability in ``[0, 1]``.
        rng: a numpy ``Generator``, or ``None`` for numpy's global generator (seeded by ``np.random.seed``).
            With ``None`` the body draws from the ``np.random`` *module* itself (``rng = np.random``), which
            has ``random()`` and ``choice()`` but not the ``Generator``-only ``integers()``: draw with
            ``rng.random()`` and ``rng.choice(...)`` only, so that both cases work.

    Returns:
        The chosen action, a python ``int`` in ``[0, A)``.
    """
    rng = np.random if rng is None else rng
    q = q_values.detach().cpu().numpy() if isinstance(q_values, torch.Tensor) else np.asarray(q_values)
    q = q.reshape(-1)
    # TODO(student): with probability epsilon a uniform action in [0, A); else a uniform choice among argmax_a q.
    # BEGIN SOLUTION
    if rng.random() < epsilon:
        return int(rng.choice(q.shape[0]))
    greedy = np.flatnonzero(q == q.max())
    return int(rng.choice(greedy))
    # END SOLUTION


# --------------------------------------------------------------------------------------------------
# Agent
# --------------------------------------------------------------------------------------------------


class DynaQAgent:
    """Dyna-Q (S&B §8.2) with a neural Q-function, a learned dynamics model and model-based planning.

    Args:
        state_dim: ``S``, observation features (flat float vectors, e.g. one-hot grid cells).
        action_dim: ``A``, number of discrete actions.
        lr: Adam learning rate of the Q-network.
        gamma: discount ``γ`` in ``[0, 1]``.
        hidden_dim: width of the Q-network's two hidden layers.
        buffer_capacity: capacity of the real replay buffer and of the seen-state memory.
        batch_size: minibatch size of Q-learning, model learning and planning steps.
        target_update_interval: copy the Q-network into the target network every this many Q gradient
            steps (real and simulated); 1 bootstraps from the current network.
        model_lr: Adam learning rate of the dynamics model and the termination classifier.
        model_hidden_dim: width of the dynamics model's hidden layers (and the termination classifier's).
        model_num_hidden_layers: hidden layers of the dynamics model.
        model_batch_size: minibatch size of model learning (larger batches fit the model in fewer steps).
        model_normalize_inputs: let the dynamics model normalise its inputs with running statistics. Off by
            default: one-hot observations of rarely visited cells have near-zero variance, and normalising
            them blows their inputs up.
        model_loss: ``"mse"`` fits the model's means by squared error (a deterministic model, as Dyna-Q's);
            ``"nll"`` uses :meth:`DynamicsModel.train_step` (PETS Gaussian NLL, fits means more slowly).
        termination_fn: optional known rule ``(B, S) float32 next states -> (B,) dones`` used in planning
            instead of the learned termination classifier.
        search_control: ``"taken"`` plans with seen states and the actions taken in them (S&B);
            ``"random"`` with seen states and uniformly random actions.
        stochastic_planning: sample simulated transitions from the model's Gaussian instead of using its mean.
        device: torch device of every network and sampled batch.

    Attributes:
        q_network, target_network: ``S -> A`` MLPs.
        dynamics_model: the :class:`DynamicsModel` (``discrete_actions=True``).
        termination_model: ``S + A -> 1`` logit MLP of ``p(done | s, a)``.
        buffer: :class:`utils.ReplayBuffer` of real transitions.

    Raises:
        ValueError: for non-positive dimensions/sizes/learning rates or ``gamma`` outside ``[0, 1]``.
    """

    def __init__(
        self,
        state_dim: int,
        action_dim: int,
        lr: float = 1e-3,
        gamma: float = 0.95,
        hidden_dim: int = 64,
        buffer_capacity: int = 10_000,
        batch_size: int = 32,
        target_update_interval: int = 10,
        model_lr: float = 1e-2,
        model_hidden_dim: int = 128,
        model_num_hidden_layers: int = 2,
        model_batch_size: int = 128,
        model_normalize_inputs: bool = False,
        model_loss: str = "mse",
        search_control: str = "taken",
        termination_fn: Callable[[torch.Tensor], torch.Tensor] | None = None,
        stochastic_planning: bool = False,
        device: str | torch.device = "cpu",
    ) -> None:
        self.state_dim = check_positive_int("state_dim", state_dim)
        self.action_dim = check_positive_int("action_dim", action_dim)
        self.lr = check_positive_float("lr", lr)
        self.gamma = check_in_range("gamma", gamma, 0.0, 1.0)
        self.hidden_dim = check_positive_int("hidden_dim", hidden_dim)
        self.buffer_capacity = check_positive_int("buffer_capacity", buffer_capacity)
        self.batch_size = check_positive_int("batch_size", batch_size)
        self.target_update_interval = check_positive_int("target_update_interval", target_update_interval)
        self.model_lr = check_positive_float("model_lr", model_lr)
        self.model_hidden_dim = check_positive_int("model_hidden_dim", model_hidden_dim)
        self.model_batch_size = check_positive_int("model_batch_size", model_batch_size)
        self.model_loss = check_choice("model_loss", model_loss, ("mse", "nll"))
        self.search_control = check_choice("search_control", search_control, ("taken", "random"))
        if termination_fn is not None and not callable(termination_fn):
            raise ValueError(
                f"termination_fn must be a callable next_states -> dones or None, got {termination_fn!r}"
            )
        self.termination_fn = termination_fn
        self.stochastic_planning = bool(stochastic_planning)
        self.device = resolve_device(device)

        self.q_network = mlp(self.state_dim, [self.hidden_dim, self.hidden_dim], self.action_dim).to(
            self.device
        )
        self.target_network = copy.deepcopy(self.q_network)
        self.target_network.requires_grad_(False)
        self.optimizer = torch.optim.Adam(self.q_network.parameters(), lr=self.lr)

        self.dynamics_model = DynamicsModel(
            self.state_dim,
            self.action_dim,
            hidden_dim=self.model_hidden_dim,
            num_hidden_layers=check_positive_int("model_num_hidden_layers", model_num_hidden_layers),
            discrete_actions=True,
            lr=self.model_lr,
            normalize_inputs=model_normalize_inputs,
            device=self.device,
        )
        self.termination_model = mlp(self.state_dim + self.action_dim, [self.model_hidden_dim], 1).to(
            self.device
        )
        self.termination_optimizer = torch.optim.Adam(self.termination_model.parameters(), lr=self.model_lr)

        self.buffer = ReplayBuffer(self.buffer_capacity, device=self.device)
        self._seen_states = torch.zeros(self.buffer_capacity, self.state_dim, device=self.device)
        self._seen_actions = torch.zeros(self.buffer_capacity, dtype=torch.long, device=self.device)
        self._num_seen = 0
        self._seen_position = 0
        self.num_q_updates = 0
        self.num_real_steps = 0

    # ------------------------------------------------------------------ plumbing
    def _state_tensor(self, state: Any) -> torch.Tensor:
        """``(S,)`` float32 tensor of one observation, with a teaching error for a wrong shape."""
        s = as_tensor(state, self.device).reshape(-1)
        if s.shape[0] != self.state_dim:
            raise ValueError(
                f"state must be a flat vector of {self.state_dim} features (state_dim), got shape "
                f"{tuple(np.shape(state))}; for a grid world use observation='onehot' or 'coords'"
            )
        return s

    @property
    def seen_states(self) -> torch.Tensor:
        """``(N, S)`` float32 states stored so far (the most recent ``buffer_capacity``), for search control."""
        return self._seen_states[: self._num_seen]

    @property
    def seen_actions(self) -> torch.Tensor:
        """``(N,)`` int64 actions taken in :attr:`seen_states` (same order)."""
        return self._seen_actions[: self._num_seen]

    def _one_hot(self, actions: torch.Tensor) -> torch.Tensor:
        return F.one_hot(actions.long().reshape(-1), self.action_dim).to(torch.float32)

    def termination_logits(self, states: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        """``(B,)`` float32 logits of ``p(done | s, a)`` for ``states (B, S)`` and ``actions (B,) int64``."""
        return self.termination_model(torch.cat([states, self._one_hot(actions)], dim=-1)).squeeze(-1)

    @torch.no_grad()
    def predict_termination(
        self, states: torch.Tensor, actions: torch.Tensor, next_states: torch.Tensor
    ) -> torch.Tensor:
        """``(B,)`` float32 termination of simulated transitions: ``termination_fn(next_states)`` if given,
        else the classifier's probability ``p(done | s, a)``."""
        if self.termination_fn is not None:
            dones = as_tensor(self.termination_fn(next_states), self.device)
            return dones.reshape(-1)
        return torch.sigmoid(self.termination_logits(states, actions))

    def _q_step(
        self,
        states: torch.Tensor,
        actions: torch.Tensor,
        rewards: torch.Tensor,
        next_states: torch.Tensor,
        dones: torch.Tensor,
    ) -> float:
        """One semi-gradient Q-learning step on a batch (real or simulated); returns the loss."""
        with torch.no_grad():
            next_q = self.target_network(next_states)
        targets = q_learning_targets(rewards.reshape(-1), next_q, dones.reshape(-1).float(), self.gamma)
        loss = q_learning_loss(self.q_network(states), actions.long().reshape(-1), targets)
        self.optimizer.zero_grad()
        loss.backward()
        self.optimizer.step()
        self.num_q_updates += 1
        if self.num_q_updates % self.target_update_interval == 0:
            self.update_target_network()
        return float(loss.detach())

    def update_target_network(self) -> None:
        """Copy the Q-network's parameters into the target network."""
        self.target_network.load_state_dict(self.q_network.state_dict())

    # ------------------------------------------------------------------ acting and storing
    def get_action(self, state: Any, epsilon: float = 0.0) -> int:
        """ε-greedy action of the Q-network for one observation ``state: (S,)``.

        Raises:
            ValueError: for ``epsilon`` outside ``[0, 1]`` or a state of the wrong size.
        """
        epsilon = check_in_range("epsilon", epsilon, 0.0, 1.0)
        with torch.no_grad():
            q_values = self.q_network(self._state_tensor(state))
        return epsilon_greedy_action(q_values, epsilon)

    def store_experience(self, state: Any, action: int, reward: float, next_state: Any, done: bool) -> None:
        """Store a real transition in :attr:`buffer` and remember ``state`` for search control.

        ``done`` means *terminated* (not truncated by a time limit).
        """
        s = self._state_tensor(state)
        s2 = self._state_tensor(next_state)
        action = int(action)
        if not 0 <= action < self.action_dim:
            raise ValueError(f"action must be in [0, {self.action_dim}), got {action}")
        self.buffer.add(s.cpu().numpy(), action, float(reward), s2.cpu().numpy(), bool(done))
        self._seen_states[self._seen_position] = s
        self._seen_actions[self._seen_position] = action
        self._seen_position = (self._seen_position + 1) % self.buffer_capacity
        self._num_seen = min(self._num_seen + 1, self.buffer_capacity)

    # ------------------------------------------------------------------ learning
    def update(self) -> float | None:
        """Direct RL (step d): one Q-learning gradient step on a real minibatch of ``batch_size``.

        Returns:
            the loss, or None while the buffer holds fewer than ``batch_size`` transitions.
        """
        if len(self.buffer) < self.batch_size:
            return None
        batch = self.buffer.sample(self.batch_size)
        return self._q_step(batch.states, batch.actions, batch.rewards, batch.next_states, batch.dones)

    def update_model(self) -> float | None:
        """Model learning (step e): one gradient step of the dynamics model and the termination classifier.

        The minibatch has ``model_batch_size`` transitions drawn with replacement, so it works from the first
        stored transition on.

        Returns:
            the dynamics model's loss before the step (MSE of next state plus MSE of reward, or the Gaussian
            NLL with ``model_loss="nll"``), or None with an empty buffer.
        """
        if len(self.buffer) == 0:
            return None
        batch = self.buffer.sample(self.model_batch_size)
        if self.model_loss == "nll":
            loss = self.dynamics_model.train_step(
                batch.states, batch.actions, batch.next_states, batch.rewards
            )
        else:
            self.dynamics_model.train()
            prediction = self.dynamics_model(batch.states, batch.actions)
            model_loss = F.mse_loss(prediction["next_state_mean"], batch.next_states) + F.mse_loss(
                prediction["reward_mean"].reshape(-1), batch.rewards
            )
            self.dynamics_model.optimizer.zero_grad()
            model_loss.backward()
            self.dynamics_model.optimizer.step()
            loss = float(model_loss.detach())
        logits = self.termination_logits(batch.states, batch.actions)
        termination_loss = F.binary_cross_entropy_with_logits(logits, batch.dones.float())
        self.termination_optimizer.zero_grad()
        termination_loss.backward()
        self.termination_optimizer.step()
        return loss

    def simulate(
        self, states: torch.Tensor, actions: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The learned model's outcome ``R, S' ← Model(S, A)`` of a batch, without gradients.

        Args:
            states: ``(B, S)`` float32.
            actions: ``(B,)`` int64.

        Returns:
            ``(next_states (B, S), rewards (B,), dones (B,))`` float32: the dynamics model's mean (or a sample
            with ``stochastic_planning``) and :meth:`predict_termination` (probabilities in ``[0, 1]``).
        """
        with torch.no_grad():
            if self.stochastic_planning:
                next_states, rewards = self.dynamics_model.sample_prediction(states, actions)
                next_states, rewards = next_states.reshape(-1, self.state_dim), rewards.reshape(-1)
            else:
                prediction = self.dynamics_model(states, actions)
                next_states = prediction["next_state_mean"]
                rewards = prediction["reward_mean"].reshape(-1)
            dones = self.predict_termination(states, actions, next_states)
        return next_states, rewards, dones

    def planning_step(self, num_planning_steps: int = 5) -> float | None:
        """Planning (step f): ``num_planning_steps`` Q-learning steps on model-simulated minibatches.

        Each step draws ``batch_size`` indices uniformly (with replacement) into the seen pairs
        (:attr:`seen_states`, :attr:`seen_actions`); takes those states with their taken actions
        (``search_control="taken"``) or with uniformly random actions (``"random"``); simulates the outcomes
        with the learned model (:meth:`simulate`); and takes one Q-learning step on them (``_q_step``).
        The real buffer is not sampled. Every index (and every ``"random"`` action) is its own draw from
        torch's global generator: independent of the other rows, of the row's state and of the other steps.

        Returns:
            the mean planning loss, or None when ``num_planning_steps == 0`` or no state was seen yet.

        Raises:
            ValueError: if ``num_planning_steps`` is negative or not an integer.
        """
        num_planning_steps = check_nonnegative_int("num_planning_steps", num_planning_steps)
        if num_planning_steps == 0 or self._num_seen == 0:
            return None
        losses = []
        for _ in range(num_planning_steps):
            # TODO(student): search control (seen states + taken/random actions), simulate(s, a), then one _q_step on it.
            # BEGIN SOLUTION
            index = torch.randint(self._num_seen, (self.batch_size,), device=self.device)
            states = self._seen_states[index]
            if self.search_control == "taken":
                actions = self._seen_actions[index]
            else:
                actions = torch.randint(self.action_dim, (self.batch_size,), device=self.device)
            next_states, rewards, dones = self.simulate(states, actions)
            losses.append(self._q_step(states, actions, rewards, next_states, dones))
            # END SOLUTION
        return float(np.mean(losses))

    # ------------------------------------------------------------------ training loop
    def train(
        self,
        env: Any,
        num_episodes: int,
        num_planning_steps: int = 5,
        max_steps_per_episode: int = 500,
        epsilon: float = 0.1,
        learning_starts: int | None = None,
        model_updates_per_step: int = 1,
    ) -> dict[str, list[float]]:
        """Run Dyna-Q on ``env`` (S&B §8.2 box): act, learn Q, learn the model, plan, every real step.

        Works with Gymnasium ``reset() -> (obs, info)`` / 5-tuple ``step`` and old-Gym ``reset() -> obs`` /
        4-tuple ``step`` environments whose observations are flat vectors of ``state_dim`` features.

        Args:
            env: the environment.
            num_episodes: episodes to run (>= 1).
            num_planning_steps: ``n``, planning steps per real step (0: model-free Q-learning with replay).
            max_steps_per_episode: cut an episode after this many real steps.
            epsilon: exploration probability of the behaviour policy, in ``[0, 1]``.
            learning_starts: stored transitions needed before any update (default ``batch_size``).
            model_updates_per_step: :meth:`update_model` calls per real step (S&B's table is learned in one
                write; a neural model may need several gradient steps to keep up).

        Returns:
            history dict of per-episode lists: ``"returns"``, ``"lengths"`` (real steps),
            ``"cumulative_steps"`` (real steps taken by this agent so far, over all ``train`` calls).
        """
        num_episodes = check_positive_int("num_episodes", num_episodes)
        num_planning_steps = check_nonnegative_int("num_planning_steps", num_planning_steps)
        max_steps_per_episode = check_positive_int("max_steps_per_episode", max_steps_per_episode)
        epsilon = check_in_range("epsilon", epsilon, 0.0, 1.0)
        model_updates_per_step = check_nonnegative_int("model_updates_per_step", model_updates_per_step)
        learning_starts = (
            self.batch_size
            if learning_starts is None
            else check_nonnegative_int("learning_starts", learning_starts)
        )
        history: dict[str, list[float]] = {"returns": [], "lengths": [], "cumulative_steps": []}
        for _ in range(num_episodes):
            state, _ = unpack_reset(env.reset())
            episode_return, length = 0.0, 0
            for _ in range(max_steps_per_episode):
                action = self.get_action(state, epsilon)
                next_state, reward, terminated, truncated, _ = unpack_step(env.step(action))
                self.store_experience(state, action, reward, next_state, terminated)
                episode_return += reward
                length += 1
                self.num_real_steps += 1
                if len(self.buffer) >= learning_starts:
                    self.update()
                    for _ in range(model_updates_per_step):
                        self.update_model()
                    self.planning_step(num_planning_steps)
                state = next_state
                if terminated or truncated:
                    break
            history["returns"].append(episode_return)
            history["lengths"].append(length)
            history["cumulative_steps"].append(self.num_real_steps)
        return history
