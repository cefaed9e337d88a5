"""DynaQAgent (Sutton & Barto 2018, §8.2, with function approximation) and its pure helpers.

A bug is charged once: the agent's replay buffer and dynamics model are other components' tasks
(ReplayBuffer, DynamicsModel), so every graded test that stores, replays or simulates transitions first
replaces ``agent.buffer`` and ``agent.dynamics_model`` in the worker by the test doubles below
(:func:`_with_doubles`); only DynaQAgent's own code (and the given code around it) runs.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from grader.judge.contracts import assert_draws_only_from, assert_inputs_unchanged

pytestmark = pytest.mark.component("DynaQAgent")
#: Components whose code these tests replace by test doubles (a bug there is charged there, not here;
#: the student's dashboard says so).
DOUBLES_FOR = ("ReplayBuffer", "DynamicsModel")


def _helpers(impl):
    return impl.module("model_based_rl.algorithms")


def _transitions(n: int, rng: np.random.Generator, state_dim: int, action_dim: int, done_every: int = 0):
    """``n`` random transitions (integer actions, rewards in [-1, 1]), generated in the judge."""
    out = []
    for i in range(n):
        done = bool(done_every) and i % done_every == 0
        out.append((rng.standard_normal(state_dim), int(rng.integers(action_dim)), float(rng.uniform(-1, 1)),
                    rng.standard_normal(state_dim), done))  # fmt: skip
    return out


class _Maze:
    """A deterministic grid maze owned by the tests (Gymnasium API, one-hot observations of row*width + col).

    Actions 0 = up, 1 = right, 2 = down, 3 = left; a move into a wall or off the grid stays put. Entering the
    goal gives reward 1 and terminates; every other step gives 0. Episodes are truncated after ``max_steps``.
    """

    MOVES = ((-1, 0), (0, 1), (1, 0), (0, -1))

    def __init__(self, height, width, walls=(), start=(0, 0), goal=None, max_steps=None):
        self.height, self.width = height, width
        self.walls = frozenset(tuple(w) for w in walls)
        self.start = tuple(start)
        self.goal = (height - 1, width - 1) if goal is None else tuple(goal)
        self.max_steps = max_steps
        self.n_states = height * width
        self.pos, self.steps, self.done = self.start, 0, True

    def _obs(self):
        obs = np.zeros(self.n_states, dtype=np.float32)
        obs[self.pos[0] * self.width + self.pos[1]] = 1.0
        return obs

    def reset(self, *, seed=None, options=None):
        self.pos, self.steps, self.done = self.start, 0, False
        return self._obs(), {}

    def step(self, action):
        if isinstance(action, bool) or not isinstance(action, (int, np.integer)) or not 0 <= action < 4:
            raise AssertionError(f"the agent chose {action!r}, not an action in {{0, 1, 2, 3}}")
        if self.done:
            raise AssertionError("step() after the end of the episode")
        row, col = self.pos[0] + self.MOVES[action][0], self.pos[1] + self.MOVES[action][1]
        if 0 <= row < self.height and 0 <= col < self.width and (row, col) not in self.walls:
            self.pos = (row, col)
        self.steps += 1
        terminated = self.pos == self.goal
        truncated = not terminated and self.max_steps is not None and self.steps >= self.max_steps
        self.done = terminated or truncated
        return self._obs(), float(terminated), terminated, truncated, {}


class _OldGym:
    """Old Gym API over a :class:`_Maze`: reset() -> obs, step() -> (obs, reward, done, info)."""

    def __init__(self, env):
        self.env = env

    def reset(self):
        return self.env.reset(seed=0)[0]

    def step(self, action):
        obs, reward, terminated, truncated, info = self.env.step(action)
        return obs, reward, terminated or truncated, {**info, "TimeLimit.truncated": truncated}


class _ModelDouble(torch.nn.Module):
    """The part of DynamicsModel's interface that DynaQAgent uses, around a subclass's :meth:`_means`:
    ``forward`` returns the dict of predicted means (and tiny stds), ``sample_prediction`` the means."""

    def _means(self, state, action) -> tuple[torch.Tensor, torch.Tensor]:
        """The predicted next states ``(B, S)`` and rewards ``(B, 1)``."""
        raise NotImplementedError

    def forward(self, state, action):
        next_state, reward = self._means(state, action)
        return {
            "next_state_mean": next_state,
            "reward_mean": reward,
            "next_state_std": torch.full_like(next_state, 1e-6),
            "reward_std": torch.full_like(reward, 1e-6),
        }

    def sample_prediction(self, state, action, generator=None):
        out = self.forward(state, action)
        return out["next_state_mean"], out["reward_mean"].squeeze(-1)


class _KnownModel(_ModelDouble):
    """A stand-in dynamics model: ``s' = s``, reward ``+1`` for action 0 and ``-1`` otherwise; logs its queries."""

    def __init__(self) -> None:
        super().__init__()
        self.queries: list[tuple[torch.Tensor, torch.Tensor]] = []

    def _means(self, state, action):
        state = torch.as_tensor(state, dtype=torch.float32)
        state = state.reshape(-1, state.shape[-1])
        action = torch.as_tensor(action).reshape(-1).long().to(state.device)
        self.queries.append((state.detach().cpu().clone(), action.detach().cpu().clone()))
        reward = torch.where(action == 0, 1.0, -1.0).to(state).reshape(-1, 1)
        return state.clone(), reward


class _Batch(NamedTuple):
    """The fields a DynaQAgent reads from a replay batch (``utils.Transition``'s names)."""

    states: torch.Tensor
    actions: torch.Tensor
    rewards: torch.Tensor
    next_states: torch.Tensor
    dones: torch.Tensor


class _ListBuffer:
    """A stand-in replay buffer (a list): ``add``, ``len`` and uniform ``sample`` with replacement.

    ``sample`` draws its indices as ``ReplayBuffer.sample`` does without an ``rng`` (a generator seeded from
    numpy's global one), so seeded runs are reproducible; batches are float32 tensors (int64 actions).
    """

    def __init__(self, device: str | torch.device = "cpu") -> None:
        self.device = torch.device(device)
        self.items: list[tuple[np.ndarray, int, float, np.ndarray, float]] = []

    def add(self, state: Any, action: Any, reward: float, next_state: Any, done: bool) -> None:
        state = torch.as_tensor(state).detach().cpu().numpy().astype(np.float32).reshape(-1)
        next_state = torch.as_tensor(next_state).detach().cpu().numpy().astype(np.float32).reshape(-1)
        self.items.append((state, int(action), float(reward), next_state, float(done)))

    def __len__(self) -> int:
        return len(self.items)

    def sample(self, batch_size: int, rng: np.random.Generator | None = None) -> _Batch:
        if not self.items:
            raise ValueError("sample() from an empty _ListBuffer")
        if rng is None:
            rng = np.random.default_rng(np.random.randint(0, 2**31 - 1))
        picked = [self.items[i] for i in rng.integers(0, len(self.items), size=batch_size)]
        columns = list(zip(*picked))
        return _Batch(
            states=torch.as_tensor(np.stack(columns[0]), device=self.device),
            actions=torch.as_tensor(columns[1], dtype=torch.int64, device=self.device),
            rewards=torch.as_tensor(columns[2], dtype=torch.float32, device=self.device),
            next_states=torch.as_tensor(np.stack(columns[3]), device=self.device),
            dones=torch.as_tensor(columns[4], dtype=torch.float32, device=self.device),
        )


class _MeanModel(_ModelDouble):
    """A stand-in learned model with DynamicsModel's interface as DynaQAgent uses it: an MLP on
    ``[s, one_hot(a)]`` predicting ``(s' - s, r)``; ``forward`` returns the dict of means (and tiny stds), and
    ``optimizer`` (Adam) is what ``update_model`` steps."""

    def __init__(self, state_dim: int, action_dim: int, hidden_dim: int = 128, lr: float = 1e-2) -> None:
        super().__init__()
        self.state_dim, self.action_dim = state_dim, action_dim
        self.net = torch.nn.Sequential(
            torch.nn.Linear(state_dim + action_dim, hidden_dim), torch.nn.SiLU(),
            torch.nn.Linear(hidden_dim, hidden_dim), torch.nn.SiLU(),
            torch.nn.Linear(hidden_dim, state_dim + 1),
        )  # fmt: skip
        self.optimizer = torch.optim.Adam(self.parameters(), lr=lr)

    def _means(self, state, action):
        state = torch.as_tensor(state, dtype=torch.float32).reshape(-1, self.state_dim)
        one_hot = torch.nn.functional.one_hot(torch.as_tensor(action).long().reshape(-1), self.action_dim)
        out = self.net(torch.cat([state, one_hot.to(state)], dim=-1))
        return state + out[:, : self.state_dim], out[:, self.state_dim :]


def _always_terminal(next_states):
    """A known termination rule: every simulated transition ends the episode."""
    return torch.ones(next_states.shape[0], device=next_states.device)


def _no_real_batches(*args, **kwargs):
    raise AssertionError(
        "planning_step sampled the real replay buffer; it must use model-simulated transitions"
    )


# ----------------------------------------------------------------------------------------------- probes
# (they run in the worker and return raw observations; the tests judge them)


def _with_doubles(impl, agent, model: torch.nn.Module | None = None) -> None:
    """Replace the agent's replay buffer by a :class:`_ListBuffer` and its dynamics model by ``model`` (default:
    a :class:`_MeanModel` of the agent's sizes and ``model_lr``), both on the agent's device."""
    agent.buffer = _ListBuffer(agent.device)
    if model is None:
        model = _MeanModel(agent.state_dim, agent.action_dim, hidden_dim=128, lr=agent.model_lr)
    agent.dynamics_model = model.to(agent.device)


def _with_linear_q(impl, agent, weight):
    """Replace the agent's Q-network by a bias-free linear map of known ``weight`` (A, S): Q(s) = weight @ s."""
    q_network = torch.nn.Linear(agent.state_dim, agent.action_dim, bias=False).to(agent.device)
    with torch.no_grad():
        q_network.weight.copy_(torch.as_tensor(weight, dtype=torch.float32))
    agent.q_network = q_network


def _store_all(impl, agent, transitions):
    for transition in transitions:
        agent.store_experience(*transition)


def _call_n(impl, obj, method, n):
    """Call ``obj.method()`` ``n`` times; the return values."""
    return [getattr(obj, method)() for _ in range(n)]


def _named_params(impl, module):
    return {name: p.detach().clone() for name, p in module.named_parameters()}


def _named_grads(impl, module):
    return {name: None if p.grad is None else p.grad.detach().clone()
            for name, p in module.named_parameters()}  # fmt: skip


def _param_devices(impl, module):
    return [str(p.device) for p in module.parameters()]


def _loss_and_grad(impl, q_values, actions, targets):
    q = q_values.detach().clone().requires_grad_(True)
    loss = impl.module("model_based_rl.algorithms").q_learning_loss(q, actions, targets)
    loss.backward()
    return loss, q.grad


def _grads_into_targets(impl, q_values, actions, targets):
    """In the worker: q_learning_loss of fresh leaves that both require grad, backpropagated: the gradients
    (q_values.grad, targets.grad)."""
    q = q_values.detach().clone().requires_grad_(True)
    y = targets.detach().clone().requires_grad_(True)
    impl.module("model_based_rl.algorithms").q_learning_loss(q, actions, y).backward()
    return q.grad, y.grad


def _epsilon_greedy_draws(impl, q_values, epsilon, n):
    f = impl.module("model_based_rl.algorithms").epsilon_greedy_action
    return [f(q_values, epsilon) for _ in range(n)]


def _deepcopy(impl, obj):
    import copy

    return copy.deepcopy(obj)


def _learn_then_act(impl, agent, pending, state, epsilon, num_planning_steps, model_updates):
    """One step of the Dyna-Q box with the agent's step API: store the last real transition and learn from it
    (direct RL, model learning, planning), then choose the action in ``state`` (None: no action)."""
    if pending is not None:
        transition, learn = pending
        agent.store_experience(*transition)
        if learn:
            agent.update()
            for _ in range(model_updates):
                agent.update_model()
            agent.planning_step(num_planning_steps)
    return None if state is None else agent.get_action(state, epsilon)


def _run_dyna(impl, agent, env, episodes, max_steps, epsilon, num_planning_steps, model_updates, stored,
              learning_starts):  # fmt: skip
    """The judge runs the Dyna-Q loop (as ``DynaQAgent.train`` does) on its own ``env``, calling the agent's
    step API in the worker, and counts the real steps itself. ``stored``: transitions the agent already holds;
    it learns once it holds ``learning_starts``.

    Returns:
        (lengths, reached, stored): real steps of each episode, whether it entered the goal, and the number
        of transitions stored.
    """
    lengths, reached, pending = [], [], None
    for _ in range(episodes):
        obs = env.reset()[0]
        terminated, steps = False, 0
        for steps in range(1, max_steps + 1):
            action = impl.run(_learn_then_act, agent, pending, obs, epsilon, num_planning_steps,
                              model_updates)  # fmt: skip
            next_obs, reward, terminated, truncated, _ = env.step(action)
            stored += 1
            pending = ((obs, action, reward, next_obs, terminated), stored >= learning_starts)
            obs = next_obs
            if terminated or truncated:
                break
        lengths.append(steps)
        reached.append(terminated)
    impl.run(_learn_then_act, agent, pending, None, epsilon, num_planning_steps, model_updates)
    return lengths, reached, stored


# ----------------------------------------------------------------------------------------------- pure math


@pytest.mark.shape
def test_q_learning_targets_hand_computed(impl):
    """y = r + gamma (1 - done) max_a Q'(s', a), with done masking the bootstrap (S&B eq. 6.8)."""
    q_learning_targets = _helpers(impl).q_learning_targets
    rewards = torch.tensor([1.0, 0.0, -1.0, 2.0])
    next_q = torch.tensor([[1.0, 2.0], [3.0, -1.0], [0.5, 0.25], [-4.0, -2.0]])
    dones = torch.tensor([0.0, 1.0, 0.0, 0.5])
    y = q_learning_targets(rewards, next_q, dones, 0.5)
    assert y.shape == (4,)
    torch.testing.assert_close(
        y, torch.tensor([1.0 + 0.5 * 2.0, 0.0, -1.0 + 0.5 * 0.5, 2.0 + 0.5 * 0.5 * -2.0])
    )
    bool_dones = q_learning_targets(rewards[:3], next_q[:3], torch.tensor([False, True, False]), 0.5)
    torch.testing.assert_close(bool_dones, y[:3])


@pytest.mark.gradient
def test_q_learning_targets_carry_no_gradient(impl):
    """The targets are constants: no gradient flows back into the target-network values."""
    next_q = torch.randn(5, 3, requires_grad=True)
    y = _helpers(impl).q_learning_targets(torch.zeros(5), next_q, torch.zeros(5), 0.9)
    assert not y.requires_grad
    torch.testing.assert_close(y, 0.9 * next_q.detach().max(dim=1).values)


@pytest.mark.gradient
def test_q_learning_loss_value_and_gradient(impl):
    """Loss = mean (y - Q(s,a))^2; its gradient is -2 (y - Q(s,a)) / B at the taken action and 0 elsewhere."""
    q = torch.tensor([[1.0, 2.0, 3.0], [0.0, -1.0, 4.0]])
    actions = torch.tensor([2, 1])
    targets = torch.tensor([2.0, 1.0])
    loss, grad = impl.run(_loss_and_grad, q, actions, targets)
    assert loss.shape == ()
    torch.testing.assert_close(loss, torch.tensor(((2.0 - 3.0) ** 2 + (1.0 + 1.0) ** 2) / 2))
    assert grad is not None, "no gradient reached q_values"
    torch.testing.assert_close(grad, torch.tensor([[0.0, 0.0, 1.0], [0.0, -2.0, 0.0]]))


@pytest.mark.gradient
def test_q_learning_loss_sends_no_gradient_into_its_targets(impl):
    """Targets that require grad (a caller's own network output) get none: y is a constant (S&B eq. 6.8)."""
    q = torch.tensor([[1.0, 2.0, 3.0], [0.0, -1.0, 4.0]])
    q_grad, targets_grad = impl.run(_grads_into_targets, q, torch.tensor([2, 1]), torch.tensor([2.0, 1.0]))
    assert targets_grad is None or torch.count_nonzero(targets_grad) == 0, (
        f"q_learning_loss must treat its targets as constants (detach them); they received {targets_grad}"
    )
    torch.testing.assert_close(q_grad, torch.tensor([[0.0, 0.0, 1.0], [0.0, -2.0, 0.0]]))


def _tabular_step_observations(impl, q, action, reward, next_q, done, gamma):
    """The target and the gradient of the squared TD error of one transition, w.r.t. a tabular row ``Q(s, ·)``."""
    helpers = impl.module("model_based_rl.algorithms")
    row = q.detach().clone().reshape(1, -1).requires_grad_(True)
    target = helpers.q_learning_targets(reward.reshape(1), next_q.reshape(1, -1), done.reshape(1), gamma)
    helpers.q_learning_loss(row, action.reshape(1), target).backward()
    return target, row.grad


@st.composite
def _transitions_of_a_tabular_q(draw):
    """One transition (s, a, r, s', done) of a tabular Q with 1-5 actions, values in [-10, 10], and (γ, α)."""
    n = draw(st.integers(1, 5))
    values = st.floats(-10, 10, allow_nan=False, width=32)
    return {
        "q": draw(st.lists(values, min_size=n, max_size=n)),
        "action": draw(st.integers(0, n - 1)),
        "reward": draw(values),
        "next_q": draw(st.lists(values, min_size=n, max_size=n)),
        "done": draw(st.booleans()),
        "gamma": draw(st.floats(0, 1, width=32)),
        "alpha": draw(st.floats(0.0625, 1, width=32)),
    }


@pytest.mark.property
@given(t=_transitions_of_a_tabular_q())
def test_tabular_step_moves_q_by_alpha_times_td_error(impl, t):
    """A gradient step of size α/2 on the loss moves Q(s,a) by α [r + γ(1−d) max Q(s',·) − Q(s,a)], nothing else."""
    q = torch.tensor(t["q"])
    target, grad = impl.run(
        _tabular_step_observations, q, torch.tensor(t["action"]), torch.tensor(t["reward"]),
        torch.tensor(t["next_q"]), torch.tensor(float(t["done"])), t["gamma"],
    )  # fmt: skip
    bootstrap = 0.0 if t["done"] else t["gamma"] * max(t["next_q"])
    td_error = t["reward"] + bootstrap - t["q"][t["action"]]  # S&B eq. 6.8
    assert grad is not None, "no gradient of q_learning_loss reached Q(s, ·)"
    stepped = (q - t["alpha"] / 2 * grad.reshape(-1)).tolist()
    expected = list(t["q"])
    expected[t["action"]] += t["alpha"] * td_error
    assert float(target.reshape(-1)[0]) == pytest.approx(t["reward"] + bootstrap, abs=1e-4)
    assert stepped == pytest.approx(expected, abs=1e-4), f"target {t['reward'] + bootstrap}, α {t['alpha']}"


@pytest.mark.shape
def test_epsilon_greedy_zero_is_greedy_with_random_ties(impl):
    """epsilon=0 picks only argmax actions, and breaks ties between them uniformly (400 draws)."""
    epsilon_greedy_action = _helpers(impl).epsilon_greedy_action
    assert epsilon_greedy_action(torch.tensor([0.1, 0.7, -0.3]), 0.0) == 1
    picks = impl.run(_epsilon_greedy_draws, torch.tensor([1.0, 3.0, 3.0, 0.0]), 0.0, 400)
    assert len(picks) == 400
    assert all(isinstance(p, int) for p in picks[:5])
    counts = np.bincount(picks, minlength=4)
    assert counts[0] == counts[3] == 0
    assert 140 <= counts[1] <= 260  # Binomial(400, 1/2): mean 200, sd 10


@pytest.mark.shape
def test_epsilon_greedy_one_is_uniform(impl):
    """epsilon=1 picks every action with probability 1/A (4000 draws, 5-sigma band)."""
    q = np.array([5.0, 0.0, 0.0, 0.0])
    picks = impl.run(_epsilon_greedy_draws, q, 1.0, 4000)
    assert len(picks) == 4000
    counts = np.bincount(picks, minlength=4)
    assert np.all(np.abs(counts - 1000) <= 5 * np.sqrt(4000 * 0.25 * 0.75))


@pytest.mark.shape
def test_epsilon_greedy_mixes_with_probability_epsilon(impl):
    """With epsilon=0.4 and a unique best of 4 actions, the best is picked with probability 1 - 0.4 + 0.1."""
    picks = np.array(impl.run(_epsilon_greedy_draws, torch.tensor([0.0, 0.0, 1.0, 0.0]), 0.4, 4000))
    assert picks.shape == (4000,)
    assert abs((picks == 2).mean() - 0.7) <= 5 * np.sqrt(0.7 * 0.3 / 4000)


def _epsilon_greedy_with(impl, f, q_values, epsilon, n, rng):
    """``n`` calls of ``f(q_values, epsilon, rng)`` with one generator (the generator-only check's call)."""
    return [f(q_values, epsilon, rng) for _ in range(n)]


@pytest.mark.shape
def test_epsilon_greedy_draws_only_from_the_rng_passed(impl):
    """Given a numpy Generator, epsilon_greedy_action draws from it only (ε = 0.5, tied best actions)."""
    f = _helpers(impl).epsilon_greedy_action
    picks = assert_draws_only_from(impl, _epsilon_greedy_with, f, torch.tensor([1.0, 3.0, 3.0, 0.0]), 0.5, 64,
                                   kind="numpy")  # fmt: skip
    assert len(picks) == 64 and all(isinstance(p, int) and 0 <= p < 4 for p in picks)
    assert {1, 2} <= set(picks)


@pytest.mark.shape
def test_helpers_leave_their_inputs_unchanged(impl):
    """q_learning_targets, q_learning_loss and epsilon_greedy_action leave the caller's tensors and arrays
    unchanged and return the documented values."""
    h = _helpers(impl)
    rewards, dones = torch.tensor([1.0, 0.0, -1.0, 2.0]), torch.tensor([0.0, 1.0, 0.0, 0.5])
    next_q = torch.tensor([[1.0, 2.0], [3.0, -1.0], [0.5, 0.25], [-4.0, -2.0]])
    y = assert_inputs_unchanged(impl, h.q_learning_targets, None, rewards, next_q, dones, 0.5)
    # y = r + γ (1 − done) max_a Q'(s', a)
    expected = [1.0 + 0.5 * (1 - 0.0) * 2.0, 0.0 + 0.5 * (1 - 1.0) * 3.0, -1.0 + 0.5 * (1 - 0.0) * 0.5,
                2.0 + 0.5 * (1 - 0.5) * -2.0]  # fmt: skip
    torch.testing.assert_close(y, torch.tensor(expected))
    q = torch.tensor([[1.0, 2.0, 3.0], [0.0, -1.0, 4.0]])
    loss = assert_inputs_unchanged(impl, h.q_learning_loss, None, q, torch.tensor([2, 1]), torch.tensor([2.0, 1.0]))
    torch.testing.assert_close(loss, torch.tensor(((2.0 - 3.0) ** 2 + (1.0 - -1.0) ** 2) / 2))
    for q_values in (torch.tensor([0.5, 3.0, -2.0]), np.array([0.5, 3.0, -2.0])):
        explored = assert_inputs_unchanged(impl, h.epsilon_greedy_action, None, q_values, 0.5,
                                           np.random.default_rng(0))  # fmt: skip
        assert isinstance(explored, int) and 0 <= explored < 3, explored
        greedy = assert_inputs_unchanged(impl, h.epsilon_greedy_action, None, q_values, 0.0)
        assert greedy == 1, f"epsilon=0 must pick the unique argmax 1 of {q_values.tolist()}, got {greedy!r}"


@pytest.mark.shape
def test_agent_calls_leave_their_inputs_unchanged(impl):
    """get_action, store_experience, simulate and predict_termination leave the caller's states and actions
    unchanged and return (or store) the documented values."""
    agent = impl.DynaQAgent(state_dim=3, action_dim=2, batch_size=4)
    impl.run(_with_doubles, agent, _KnownModel())  # s' = s, reward +1 for action 0 and -1 otherwise
    state = np.array([0.5, -1.0, 2.0], dtype=np.float32)
    next_state = np.array([1.5, 0.0, -3.0], dtype=np.float32)
    impl.run(_with_linear_q, agent, [[1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])  # Q(s) = (s_0, s_2)
    explored = assert_inputs_unchanged(impl, agent, "get_action", state, 0.5)
    assert isinstance(explored, int) and explored in (0, 1), explored
    # epsilon = 0: argmax of Q = (0.5, 2.0) is 1, of Q = (2.0, -1.0) is 0
    assert assert_inputs_unchanged(impl, agent, "get_action", torch.tensor([0.5, -1.0, 2.0]), 0.0) == 1
    assert assert_inputs_unchanged(impl, agent, "get_action", torch.tensor([2.0, 0.0, -1.0]), 0.0) == 0

    assert assert_inputs_unchanged(impl, agent, "store_experience", state, 1, 1.0, next_state, False) is None
    assert_inputs_unchanged(impl, agent, "store_experience", torch.tensor([2.0, 0.0, -1.0]), 0, -1.0,
                            torch.tensor([1.0, 1.0, 4.0]), True)  # fmt: skip
    stored = agent.buffer.items
    assert len(stored) == 2, f"two store_experience calls should add two transitions, the buffer holds {len(stored)}"
    for row, (s, a, r, s2, d) in zip(stored, [(state, 1, 1.0, next_state, 0.0),
                                              ([2.0, 0.0, -1.0], 0, -1.0, [1.0, 1.0, 4.0], 1.0)]):  # fmt: skip
        np.testing.assert_allclose(row[0], s)
        assert (row[1], row[2]) == (a, r)
        np.testing.assert_allclose(row[3], s2)
        assert row[4] == d
    torch.testing.assert_close(agent.seen_states, torch.tensor([[0.5, -1.0, 2.0], [2.0, 0.0, -1.0]]))
    torch.testing.assert_close(agent.seen_actions, torch.tensor([1, 0]))

    states, actions = torch.tensor([[0.5, -1.0, 2.0], [3.0, 0.0, -0.5]]), torch.tensor([1, 0])
    next_states, sim_rewards, sim_dones = assert_inputs_unchanged(impl, agent, "simulate", states, actions)
    torch.testing.assert_close(next_states, states)  # the model double's s' = s
    torch.testing.assert_close(sim_rewards, torch.tensor([-1.0, 1.0]))  # -1 for action 1, +1 for action 0
    termination = torch.sigmoid(agent.termination_logits(states, actions))  # p(done | s, a) of the classifier
    torch.testing.assert_close(sim_dones, termination)
    dones = assert_inputs_unchanged(impl, agent, "predict_termination", states, actions, states + 1.0)
    torch.testing.assert_close(dones, termination)
    assert torch.all((0 <= dones) & (dones <= 1)), dones


# ----------------------------------------------------------------------------------------------- agent


@pytest.mark.shape
def test_notebook_cell_calls(impl, device):
    """The seed notebook's calls work: construct, act, store (buffer of 1), plan with a tiny buffer."""
    agent = impl.DynaQAgent(state_dim=4, action_dim=2, lr=1e-3, device=device)
    impl.run(_with_doubles, agent)
    state = np.random.randn(4)
    action = agent.get_action(state, epsilon=0.1)
    assert isinstance(action, int) and action in (0, 1)
    agent.store_experience(state, action, 1.0, np.random.randn(4), False)
    assert len(agent.buffer) == 1
    assert agent.update() is None  # fewer transitions than batch_size
    loss = agent.planning_step(num_planning_steps=5)  # one seen pair: it is drawn batch_size times
    assert isinstance(loss, float) and np.isfinite(loss)


@pytest.mark.shape
def test_get_action_is_greedy_in_q_network(impl, device):
    """get_action(epsilon=0) returns argmax_a Q(s, a) of the agent's q_network."""
    agent = impl.DynaQAgent(state_dim=3, action_dim=5, device=device)
    q_network = agent.q_network
    for _ in range(10):
        state = np.random.randn(3).astype(np.float32)
        q = q_network(torch.as_tensor(state, device=device))
        assert agent.get_action(state, epsilon=0.0) == int(q.argmax())


@pytest.mark.gradient
def test_update_takes_a_gradient_step_on_every_q_parameter(impl, device):
    """update() returns a float loss, moves every Q-network parameter, and leaves the target network alone."""
    agent = impl.DynaQAgent(
        state_dim=3, action_dim=2, batch_size=8, target_update_interval=1000, device=device
    )
    impl.run(_with_doubles, agent)
    impl.run(_store_all, agent, _transitions(7, np.random.default_rng(0), 3, 2))
    assert agent.update() is None
    impl.run(_store_all, agent, _transitions(5, np.random.default_rng(1), 3, 2, done_every=2))
    q_network, target_network = agent.q_network, agent.target_network
    before = impl.run(_named_params, q_network)
    target_before = target_network.state_dict()
    loss = agent.update()
    assert isinstance(loss, float) and loss > 0
    grads = impl.run(_named_grads, q_network)
    after = impl.run(_named_params, q_network)
    assert before and set(grads) == set(after) == set(before)
    for name, param in after.items():
        assert grads[name] is not None and grads[name].abs().sum() > 0, name
        assert not torch.equal(param, before[name]), name
    target_after = target_network.state_dict()
    assert target_before and set(target_after) == set(target_before)
    for name, value in target_after.items():
        assert torch.equal(value, target_before[name]), name


@pytest.mark.convergence
def test_repeated_updates_fit_a_one_step_problem(impl, device, margin):
    """On terminal transitions only, repeated update() calls fit Q(s, a) to the rewards (|error| < 0.1).

    Calibration (docs/calibration.md, 2026-12-01): passed all 60 runs (30 seed offsets on the reference, 15 on
    each perturbed reference); the fit of its check puts the false-fail rate at 0.00 % (the error is far below
    0.1 every run).
    """
    agent = impl.DynaQAgent(state_dim=2, action_dim=2, lr=5e-3, batch_size=4, device=device)
    impl.run(_with_doubles, agent)
    states = np.eye(2, dtype=np.float32)
    rewards = np.array([[1.0, -1.0], [0.5, 0.0]])
    terminal = [(states[s], a, rewards[s, a], states[1 - s], True) for s in range(2) for a in range(2)]
    impl.run(_store_all, agent, terminal)
    impl.run(_call_n, agent, "update", 400)
    q = agent.q_network(torch.as_tensor(states, device=device)).detach().cpu().numpy()
    margin("max |Q(s, a) - r(s, a)|", np.abs(q - rewards).max(), "<", 0.1, detail=f"Q = {q.round(3).tolist()}")


@pytest.mark.gradient
@pytest.mark.points(0)
def test_update_model_lowers_model_loss(impl, device):
    """update_model() fits the dynamics model and the termination classifier to the stored transitions."""
    agent = impl.DynaQAgent(state_dim=4, action_dim=2, batch_size=16, device=device)
    eye = np.eye(4, dtype=np.float32)
    transitions = []
    for s in range(4):
        for a in range(2):
            s2 = (s + 1 if a == 1 else s - 1) % 4
            transitions.append((eye[s], a, float(a), eye[s2], s2 == 0))
    impl.run(_store_all, agent, transitions)
    states = torch.as_tensor(np.repeat(eye, 2, axis=0), device=device)
    actions = torch.tensor([0, 1] * 4, device=device)
    next_idx = [(s + 1 if a == 1 else s - 1) % 4 for s in range(4) for a in range(2)]
    first = agent.dynamics_model(states, actions)["next_state_mean"]
    first_error = (first.cpu() - torch.as_tensor(eye[next_idx])).pow(2).mean().item()
    losses = impl.run(_call_n, agent, "update_model", 200)
    assert all(isinstance(x, float) for x in losses)
    next_states, rewards, dones = agent.simulate(states, actions)
    error = (next_states.cpu() - torch.as_tensor(eye[next_idx])).pow(2).mean().item()
    assert error < 0.25 * first_error and error < 0.02
    torch.testing.assert_close(rewards.cpu(), torch.tensor([0.0, 1.0] * 4), atol=0.15, rtol=0)
    expected_done = torch.tensor([float(i == 0) for i in next_idx])
    assert (dones.cpu() - expected_done).abs().max() < 0.3


@pytest.mark.convergence
@pytest.mark.points(2)
def test_planning_learns_from_the_model_not_the_buffer(impl, device, margin):
    """With a known model (reward +1 for action 0, -1 else, always terminal), planning alone fits Q to it.

    Calibration (docs/calibration.md, 2026-12-01): passed all 60 runs (30 seed offsets on the reference, 15 on
    each perturbed reference); the fit of its check puts the false-fail rate at 0.01 % (max |Q - r| 4.0 sd below
    0.15).
    """
    agent = impl.DynaQAgent(
        state_dim=3,
        action_dim=2,
        lr=1e-2,
        batch_size=8,
        device=device,
        termination_fn=_always_terminal,
    )
    states = np.eye(3, dtype=np.float32)
    # the real rewards are all 0
    real = [(states[s], a, 0.0, states[(s + 1) % 3], False) for s in range(3) for a in range(2)]
    impl.run(_with_doubles, agent, _KnownModel())
    impl.run(_store_all, agent, real)
    agent.buffer.sample = _no_real_batches
    loss = agent.planning_step(num_planning_steps=300)
    assert isinstance(loss, float)
    assert agent.dynamics_model.queries, "planning_step never queried agent.dynamics_model"
    q = agent.q_network(torch.as_tensor(states, device=device)).detach().cpu()
    error = (q - torch.tensor([[1.0, -1.0]] * 3)).abs().max()
    margin("max |Q(s, a) - model reward|", error, "<", 0.15, detail=f"Q = {q.numpy().round(3).tolist()}")


@pytest.mark.shape
@pytest.mark.parametrize("search_control", ["taken", "random"])
def test_planning_searches_from_seen_states(impl, device, search_control):
    """Planning queries the model only at seen states, with their taken actions ("taken") or any action ("random")."""
    agent = impl.DynaQAgent(
        state_dim=4, action_dim=3, batch_size=16, device=device, search_control=search_control
    )
    rng = np.random.default_rng(0)
    seen = rng.standard_normal((5, 4)).astype(np.float32)
    taken = [0, 1, 0, 1, 0]  # action 2 is never taken
    impl.run(_with_doubles, agent, _KnownModel())
    impl.run(_store_all, agent, [(s, a, 0.0, rng.standard_normal(4), False) for s, a in zip(seen, taken)])
    agent.buffer.sample = _no_real_batches
    q_network = agent.q_network
    before = impl.run(_named_params, q_network)
    agent.planning_step(num_planning_steps=20)
    after = impl.run(_named_params, q_network)
    assert before and set(after) == set(before)
    assert any(not torch.equal(before[name], after[name]) for name in before)
    queries = agent.dynamics_model.queries
    queried_states = torch.cat([s for s, _ in queries])
    queried_actions = torch.cat([a for _, a in queries])
    assert queried_states.shape[0] >= 20 * 16
    distances = (queried_states[:, None, :] - torch.as_tensor(seen)[None]).abs().amax(dim=-1)
    closest = distances.argmin(dim=1)
    assert torch.all(distances.min(dim=1).values < 1e-5), "planning used a state that was never stored"
    assert len(set(closest.tolist())) == 5, "planning should draw from all seen states"
    if search_control == "taken":
        assert torch.equal(queried_actions, torch.as_tensor(taken)[closest])
    else:
        assert set(queried_actions.tolist()) == {0, 1, 2}


def _record_q_steps(impl, agent):
    """In the worker: wrap ``agent._q_step`` so that every Q-learning step keeps a copy of its ``(states,
    actions)`` minibatch in ``agent.recorded_q_steps`` (then calls the real step)."""
    step, agent.recorded_q_steps = agent._q_step, []

    def recording(*args, **kwargs):
        states, actions = (list(args) + [kwargs.get("states"), kwargs.get("actions")][len(args):])[:2]
        agent.recorded_q_steps.append((states.detach().cpu().clone(), actions.detach().cpu().reshape(-1).clone()))
        return step(*args, **kwargs)

    agent._q_step = recording


def _planned_batches(impl, device, search_control, batch_size, steps):
    """The ``(steps, batch_size)`` seen-state ids (one-hot states e_0..e_3, taken action 0 in each) and actions
    of the minibatches ``steps`` planning steps trained on (``search_control`` as given; known model double)."""
    agent = impl.DynaQAgent(
        state_dim=4, action_dim=4, batch_size=batch_size, device=device, search_control=search_control
    )
    impl.run(_with_doubles, agent, _KnownModel())
    eye = np.eye(4, dtype=np.float32)
    impl.run(_store_all, agent, [(eye[i], 0, 0.0, eye[(i + 1) % 4], False) for i in range(4)])
    agent.buffer.sample = _no_real_batches
    impl.run(_record_q_steps, agent)
    agent.planning_step(num_planning_steps=steps)
    batches = agent.recorded_q_steps
    assert len(batches) == steps, f"planning_step({steps}) took {len(batches)} Q-learning steps (_q_step), not {steps}"
    states = torch.stack([s for s, _ in batches])
    actions = torch.stack([a for _, a in batches])
    assert states.shape == (steps, batch_size, 4) and actions.shape == (steps, batch_size), (
        f"planning minibatches of shapes {tuple(states.shape)}, {tuple(actions.shape)}: each step trains on "
        f"batch_size = {batch_size} simulated transitions"
    )
    ids = states.argmax(-1)
    assert torch.equal(states, torch.as_tensor(eye)[ids]), "planning used a state that was never stored"
    return ids, actions.long()


def _pair_counts(first: torch.Tensor, second: torch.Tensor) -> torch.Tensor:
    """``(4, 4)`` counts of the ordered pairs ``(first[i], second[i])`` of values in 0..3."""
    return torch.bincount(4 * first.reshape(-1) + second.reshape(-1), minlength=16).reshape(4, 4)


@pytest.mark.shape
def test_planning_draws_seen_states_independently_with_replacement(impl, device):
    """Each planning step draws its batch's seen-state indices afresh, uniformly and independently (with
    replacement): of 4 seen states, neighbouring rows (2k, 2k + 1) of a step and the same row of two steps each
    hold every ordered pair (i, j), i = j included, 70..180 times in 2000.

    Each of the 32 pair counts (16 within steps, 16 across) is Binomial(2000, 1/16) (mean 125, sd 10.8): it
    leaves [70, 180] with probability 6.7e-7 (exact binomial tails), so a correct planner fails with probability
    < 2.2e-5 (union bound), for any generator stream. A window of consecutive seen pairs from one random start,
    a shuffled pass without replacement, or indices drawn once and reused by every step fails.
    """
    ids, _ = _planned_batches(impl, device, "taken", batch_size=2000, steps=2)
    checks = {
        "neighbouring rows (2k, 2k + 1) of a step": _pair_counts(ids[:, 0::2], ids[:, 1::2]),
        "the same row of planning steps 1 and 2": _pair_counts(ids[0], ids[1]),
    }
    for what, pairs in checks.items():
        assert pairs.min() >= 70 and pairs.max() <= 180, (
            f"{what} hold the ordered seen-state pairs with counts {pairs.tolist()} (expected 125 each): every "
            "planning step draws batch_size indices into the seen pairs, independently and uniformly, with "
            "replacement"
        )


@pytest.mark.shape
def test_random_search_control_draws_each_rows_action_independently(impl, device):
    """search_control="random" gives every row of a planning batch its own uniform action, independent of the
    row's state, of the other rows and of the other steps: of 4 actions, the same row's (state, action) pairs
    each appear 175..325 times in 4000 rows, and neighbouring rows' and two steps' action pairs 70..180 in 2000.

    A (state, action) count is Binomial(4000, 1/16) (mean 250, sd 15.3), outside [175, 325] with probability
    1.2e-6; an action-pair count Binomial(2000, 1/16), outside [70, 180] with probability 6.7e-7 (exact binomial
    tails). A correct planner fails with probability < 4.1e-5 (union bound over the 48 counts). One random action
    for the whole batch, an action tied to the drawn index, or actions drawn once for every step fails.
    """
    ids, actions = _planned_batches(impl, device, "random", batch_size=2000, steps=2)
    checks = {
        "the (state, action) pairs of a row": (_pair_counts(ids, actions), 175, 325, 250),
        "the actions of neighbouring rows (2k, 2k + 1)": (_pair_counts(actions[:, 0::2], actions[:, 1::2]), 70, 180, 125),
        "the actions of the same row at steps 1 and 2": (_pair_counts(actions[0], actions[1]), 70, 180, 125),
    }  # fmt: skip
    for what, (pairs, low, high, expected) in checks.items():
        assert pairs.min() >= low and pairs.max() <= high, (
            f"{what} came with counts {pairs.tolist()} (expected {expected} each): with search_control='random' "
            "every row's action is its own uniform draw over all action_dim actions"
        )


@pytest.mark.shape
@pytest.mark.points(0)  # the early return is given code; with the buffer double no student code runs here
def test_planning_without_steps_or_seen_states_does_nothing(impl, device):
    """planning_step returns None and leaves Q unchanged with 0 steps or before any experience."""
    agent = impl.DynaQAgent(state_dim=2, action_dim=2, device=device)
    impl.run(_with_doubles, agent)
    assert agent.planning_step(num_planning_steps=3) is None
    impl.run(_store_all, agent, _transitions(3, np.random.default_rng(0), 2, 2))
    before = impl.run(_named_params, agent.q_network)
    assert agent.planning_step(num_planning_steps=0) is None
    after = impl.run(_named_params, agent.q_network)
    assert before and set(after) == set(before)
    assert all(torch.equal(before[name], after[name]) for name in before)


@pytest.mark.shape
def test_train_returns_per_episode_history_on_both_env_apis(impl, device):
    """train() runs on Gymnasium (5-tuple) and old-Gym (4-tuple) envs and returns per-episode lists."""
    env = _Maze(3, 3, max_steps=15)
    agent = impl.DynaQAgent(state_dim=9, action_dim=4, batch_size=8, device=device)
    impl.run(_with_doubles, agent)
    history = agent.train(env, num_episodes=3, num_planning_steps=2, max_steps_per_episode=20, epsilon=0.5)
    assert set(history) >= {"returns", "lengths", "cumulative_steps"}
    assert len(history["returns"]) == len(history["lengths"]) == 3
    assert all(1 <= n <= 15 for n in history["lengths"])
    assert history["cumulative_steps"] == np.cumsum(history["lengths"]).tolist()
    assert all(r in (0.0, 1.0) for r in history["returns"])

    old_gym = _OldGym(_Maze(3, 3, max_steps=15))
    history = agent.train(
        old_gym, num_episodes=2, num_planning_steps=1, max_steps_per_episode=20, epsilon=0.5
    )
    assert len(history["lengths"]) == 2 and all(1 <= n <= 15 for n in history["lengths"])
    assert len(agent.buffer) == history["cumulative_steps"][-1]  # real steps of both train() calls


@pytest.mark.shape
@pytest.mark.points(0)
@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"gamma": 1.5}, "gamma"),
        ({"gamma": -0.1}, "gamma"),
        ({"state_dim": 0}, "state_dim"),
        ({"action_dim": 0}, "action_dim"),
        ({"lr": 0.0}, "lr"),
        ({"batch_size": 0}, "batch_size"),
        ({"search_control": "greedy"}, "search_control"),
    ],
)
def test_bad_constructor_arguments(impl, kwargs, match):
    """Bad constructor arguments raise ValueError naming the argument."""
    args = {"state_dim": 3, "action_dim": 2, **kwargs}
    with pytest.raises(ValueError, match=match):
        impl.DynaQAgent(**args)


@pytest.mark.shape
@pytest.mark.points(0)
def test_bad_call_arguments(impl):
    """Bad epsilon, planning steps, episode counts and state sizes raise ValueError naming them."""
    agent = impl.DynaQAgent(state_dim=3, action_dim=2)
    with pytest.raises(ValueError, match="epsilon"):
        agent.get_action(np.zeros(3), epsilon=1.5)
    with pytest.raises(ValueError, match="epsilon"):
        agent.get_action(np.zeros(3), epsilon=-0.1)
    with pytest.raises(ValueError, match="num_planning_steps"):
        agent.planning_step(num_planning_steps=-1)
    with pytest.raises(ValueError, match="state"):
        agent.get_action(np.zeros(5))
    env = _Maze(3, 3)
    with pytest.raises(ValueError, match="num_episodes"):
        agent.train(env, num_episodes=0)
    with pytest.raises(ValueError, match="num_planning_steps"):
        agent.train(env, num_episodes=1, num_planning_steps=-2)
    with pytest.raises(ValueError, match="epsilon"):
        agent.train(env, num_episodes=1, epsilon=2.0)


@pytest.mark.gradient
@pytest.mark.gpu
@pytest.mark.points(0)
def test_runs_on_the_requested_device(impl, device):
    """Networks, buffer batches and planning live on the --device (run with --device cuda)."""
    agent = impl.DynaQAgent(state_dim=4, action_dim=2, batch_size=8, device=device)
    impl.run(_store_all, agent, _transitions(10, np.random.default_rng(0), 4, 2, done_every=3))
    assert isinstance(agent.update(), float)
    assert isinstance(agent.update_model(), float)
    assert isinstance(agent.planning_step(3), float)
    for net in (agent.q_network, agent.target_network, agent.dynamics_model):
        devices = impl.run(_param_devices, net)
        assert devices and all(torch.device(d).type == device.type for d in devices), devices


# ----------------------------------------------------------------------------------------------- convergence

#: A 4 x 5 maze (shortest path 9 steps): a wall column with one gap at the bottom.
MAZE = {"height": 4, "width": 5, "walls": [(0, 2), (1, 2), (2, 2)], "start": (1, 0), "goal": (0, 4)}


@pytest.mark.convergence
@pytest.mark.points(3)
@pytest.mark.timeout(240)
def test_planning_reaches_the_goal_in_fewer_real_steps(impl, reseed, seed_trials):
    """S&B Figure 8.2 in small: after one shared random-walk episode, Dyna-Q with n=10 planning steps needs
    fewer than 3/4 of the real steps of the same agent without planning over the next 5 episodes (3 of 5 seeds).

    Measured with the reference over 6-seed groups (0-5, 12-17, 18-23, 30-35, 36-41, with its own DynamicsModel
    and ReplayBuffer): the ratio of the summed steps was 0.31-0.52 (0.56 with search_control="random"); with the
    test doubles (_ListBuffer, _MeanModel), seeds 6-11: 0.32 (n=10 540 steps, n=0 1686). A single seed misses
    0.75 more often: 4 of 60 seeds as 2 of 3, so that rule would fail a correct implementation about 1.3 % of
    the time; hence 3 of 5. Calibration (docs/calibration.md, 2026-12-01): again 4 of 60 seeds failed (30 on the
    reference, 15 on each perturbed reference), p ≈ 6.7 %; 3 of 5 seeds fail together with an estimated 0.27 %.
    """

    def trial(seed: int) -> tuple[bool, str]:
        env = _Maze(**MAZE)  # the judge's maze: it steps the environment and counts the real steps itself
        explorer = impl.DynaQAgent(
            state_dim=env.n_states,
            action_dim=4,
            lr=3e-3,
            gamma=0.95,
            target_update_interval=10,
            model_lr=1e-2,
            model_hidden_dim=128,
        )
        impl.run(_with_doubles, explorer)  # a _MeanModel of width 128 learns the maze instead of DynamicsModel
        # Episode 1: a random walk to the goal, learning Q and the model on the way (S&B's first episode is
        # a random walk too: Q = 0 everywhere). Both agents below continue from this same state.
        _, reached, stored = _run_dyna(
            impl, explorer, env, 1, max_steps=2000, epsilon=1.0, num_planning_steps=0, model_updates=1,
            stored=0, learning_starts=32,
        )
        assert reached == [True], "the random walk should reach the goal of this small maze"
        steps = {}
        for n in (0, 10):
            agent = impl.run(_deepcopy, explorer)
            reseed(100 + seed)
            lengths, _, _ = _run_dyna(
                impl,
                agent,
                env,
                5,
                max_steps=100,
                epsilon=0.1,
                num_planning_steps=n,
                model_updates=3 if n else 0,  # without planning the model is never used
                stored=stored,
                learning_starts=32,  # train()'s default: the agent's batch_size
            )
            steps[n] = sum(lengths)
        return steps[10] < 0.75 * steps[0], f"{steps[10]} real steps with planning, {steps[0]} without"

    seed_trials(trial, "Dyna-Q with 10 planning steps needed fewer than 3/4 of the real steps of no planning",
                seeds=(0, 1, 2, 3, 4), need=3)  # fmt: skip
