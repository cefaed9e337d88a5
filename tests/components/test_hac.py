"""HierarchicalActorCritic (Levy et al., 2019, "Learning Multi-Level Hierarchies with Hindsight")."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from grader.judge.contracts import assert_inputs_unchanged
from grader.judge.episodes import JudgeNetwork, train_with_looks

pytestmark = pytest.mark.component("HierarchicalActorCritic")


# ------------------------------------------------------------------------------------------------------
# helpers
# ------------------------------------------------------------------------------------------------------
def _alg(impl):
    return impl.module("hierarchical_rl.algorithms")


def _agent(impl, device, **kw):
    args = {
        "state_dim": 2,
        "action_dim": 2,
        "num_levels": 2,
        "horizon": 5,
        "hidden_dim": 32,
        "batch_size": 16,
        "seed": 0,
    }
    args.update(kw)
    return impl.HierarchicalActorCritic(device=device, **args)


class _Line:
    """A 2-D point moving by 0.1·a per step; goal env Dict observations, gymnasium 5-tuples."""

    def __init__(self, start, goal) -> None:
        self.start, self.goal = np.asarray(start, np.float32), np.asarray(goal, np.float32)

    def _obs(self):
        return {
            "observation": self.p.copy(),
            "achieved_goal": self.p.copy(),
            "desired_goal": self.goal.copy(),
        }

    def reset(self, seed=None, options=None):
        self.p = self.start.copy()
        return self._obs(), {}

    def step(self, action):
        self.p = np.clip(self.p + 0.1 * np.clip(np.asarray(action, np.float32), -1, 1), -1, 1).astype(
            np.float32
        )
        return self._obs(), -1.0, False, False, {}


class _PointMass:
    """The tests' goal-reaching task: a point in [-1, 1]^2 moved by 0.2·a per step (a ∈ [-1, 1]^2), a random
    start and goal per episode, success within 0.15 of the goal (episode end), at most 25 steps."""

    def __init__(self, seed: int, step: float = 0.2, radius: float = 0.15, max_steps: int = 25) -> None:
        self.rng = np.random.default_rng(seed)
        self.step_size, self.radius, self.max_steps = step, radius, max_steps

    def _obs(self):
        return {"observation": self.p.copy(), "achieved_goal": self.p.copy(), "desired_goal": self.g.copy()}

    def reset(self, seed=None, options=None):
        if seed is not None:
            self.rng = np.random.default_rng(seed)
        self.p = self.rng.uniform(-1.0, 1.0, 2).astype(np.float32)
        self.g = self.rng.uniform(-1.0, 1.0, 2).astype(np.float32)
        while np.linalg.norm(self.g - self.p) <= self.radius:
            self.g = self.rng.uniform(-1.0, 1.0, 2).astype(np.float32)
        self.t = 0
        return self._obs(), {"is_success": 0.0}

    def step(self, action):
        a = np.asarray(action, dtype=np.float64)
        assert a.shape == (2,) and np.all(np.isfinite(a)), f"actions are finite (2,) arrays, got {action!r}"
        self.p = np.clip(self.p + self.step_size * np.clip(a, -1.0, 1.0), -1.0, 1.0).astype(np.float32)
        self.t += 1
        success = float(np.linalg.norm(self.p - self.g) <= self.radius)
        truncated = not success and self.t >= self.max_steps
        return self._obs(), 0.0 if success else -1.0, bool(success), truncated, {"is_success": success}


def _eval_envs(seed, episodes=20):
    """The judge's evaluation episodes: one point mass per episode, seeded apart from training."""
    return [_PointMass(seed=1000 * (seed + 1) + i) for i in range(episodes)]


def _within(x, goal, threshold) -> bool:
    return bool(np.all(np.abs(np.asarray(x, np.float64) - np.asarray(goal, np.float64)) <= threshold))


def _learned_hierarchy(impl, agent, num_levels: int):
    """The deterministic outputs of what each level's actor learned, computed in the judge: the actor networks'
    weights are read once (``agent.actors[level].net``, the given ``HACActor``'s MLP) and every forward pass
    happens here, ``out = tanh(f([state, goal]))`` (the tests' state and action boxes are [−1, 1], so the
    actor's centre is 0 and its half-range 1), clipped to the box as ``select_action`` does."""
    nets = [JudgeNetwork(impl, agent.actors[level].net) for level in range(num_levels)]

    def output(level: int, state, goal) -> np.ndarray:
        x = np.concatenate([np.asarray(state, np.float32), np.asarray(goal, np.float32)])[None]
        return np.clip(np.tanh(nets[level](x)[0].numpy()), -1.0, 1.0).astype(np.float32)

    return output


def _hierarchy_success_rate(impl, agent, envs, horizon, threshold) -> float:
    """Success rate of the deterministic 2-level hierarchy (HAC Alg. 1 without exploration), one episode on
    each of the judge's ``envs``: level 0 proposes at most H subgoals; level 1 gets at most H primitive actions
    per subgoal and stops early when the subgoal or the task goal is within ``threshold``. Every subgoal and
    action comes from the learned actors evaluated in the judge (:func:`_learned_hierarchy`), so the worker's
    ``select_action`` cannot answer evaluation states differently from what its networks learned."""
    output = _learned_hierarchy(impl, agent, num_levels=2)
    success = []
    for env in envs:
        obs = env.reset()[0]
        state, goal, reached = obs["observation"], obs["desired_goal"], False
        for _ in range(horizon):  # level 0's attempts
            subgoal = output(0, state, goal)
            for _ in range(horizon):  # level 1's actions towards the subgoal
                ob, _, terminated, truncated, info = env.step(output(1, state, subgoal))
                state, reached = ob["observation"], reached or bool(info["is_success"])
                if terminated or truncated or _within(state, goal, threshold):
                    break
                if _within(state, subgoal, threshold):
                    break
            if terminated or truncated or _within(state, goal, threshold):
                break
        success.append(reached)
    return float(np.mean(success))


# probes (run in the worker; they return raw observations)
def _worker_point_mass(impl, seed):
    """Probe: the tests' point mass built in the worker and kept there (the judge gets a handle), so that training
    in pieces (train_with_looks) steps one environment, as a single ``train`` call does."""
    return _PointMass(seed=seed)


def _transition(impl, fn, kwargs, base=None):
    """Probe: call ``fn`` of the algorithms module (with a HACTransition built from ``base`` first when given)
    and return the fields of the transition it returns."""
    alg = impl.module("hierarchical_rl.algorithms")
    args = () if base is None else (alg.HACTransition(**base),)
    t = getattr(alg, fn)(*args, **kwargs)
    return {name: getattr(t, name) for name in alg.HACTransition._fields}


def _critic_values_and_losses(impl, agent, batches):
    """Probe: per level, the critic's Q(s, g, a) on the batch and critic_loss(level, batch)."""
    out = []
    for level, (states, actions, rewards, next_states, goals, dones) in enumerate(batches):
        q = agent.critics[level](states, goals, actions)
        out.append((q, agent.critic_loss(level, (states, actions, rewards, next_states, goals, dones))))
    return out


def _grads(net):
    return [None if p.grad is None else p.grad.detach().clone() for p in net.parameters()]


def _loss_gradients(impl, agent, level, batch):
    """Probe: gradients after critic_loss(level).backward() (actor and critic), then, with the critic's
    gradients zeroed, after actor_loss(level).backward() (actor)."""
    agent.critic_loss(level, batch).backward()
    after_critic_loss = {"actor": _grads(agent.actors[level]), "critic": _grads(agent.critics[level])}
    agent.critics[level].zero_grad()
    agent.actor_loss(level, batch[0], batch[4]).backward()
    return after_critic_loss, _grads(agent.actors[level])


def _parameter_devices(impl, agent):
    """Probe: the devices of every actor and critic parameter."""
    return [str(p.device) for net in [*agent.actors, *agent.critics] for p in net.parameters()]


# ------------------------------------------------------------------------------------------------------
# API contract (given code)
# ------------------------------------------------------------------------------------------------------
@pytest.mark.shape
@pytest.mark.points(0)
def test_notebook_call_shapes(impl, device):
    """The notebook's 3-level agent (subgoal_dims=[8, 6, 4], state_dim=4) outputs (6,), (4,), (2,)."""
    agent = impl.HierarchicalActorCritic(
        state_dim=4, action_dim=2, num_levels=3, subgoal_dims=[8, 6, 4], lr=1e-3, device=device
    )
    assert agent.num_levels == 3
    state = np.random.randn(4)
    for level, dim in enumerate([6, 4, 2]):
        out = agent.select_action(state, level=level)
        assert isinstance(out, np.ndarray) and out.shape == (dim,) and out.dtype == np.float32
        low, high = agent.output_bounds(level)
        assert np.all(out >= low - 1e-6) and np.all(out <= high + 1e-6)
    out = agent.select_action(state, level=0, goal=np.zeros(8), explore=True)
    assert out.shape == (6,)


@pytest.mark.shape
@pytest.mark.points(0)
def test_goal_space_maps_states_by_cyclic_coordinates(impl, device):
    """φ_i(s) = s[j mod S]: truncation when d_i < S, identity when equal, cyclic tiling when d_i > S."""
    agent = impl.HierarchicalActorCritic(
        state_dim=4, action_dim=2, num_levels=3, subgoal_dims=[8, 6, 4], device=device
    )
    s = np.array([1.0, 2.0, 3.0, 4.0], dtype=np.float32)
    np.testing.assert_array_equal(agent.project(s, 0), [1, 2, 3, 4, 1, 2, 3, 4])
    np.testing.assert_array_equal(agent.project(s, 1), [1, 2, 3, 4, 1, 2])
    np.testing.assert_array_equal(agent.project(s, 2), [1, 2, 3, 4])
    small = impl.HierarchicalActorCritic(state_dim=4, action_dim=2, num_levels=2, goal_dim=2, device=device)
    np.testing.assert_array_equal(small.project(s, 0), [1, 2])
    assert small.goal_dims == [2, 4] and small.output_dims == [4, 2]


@pytest.mark.shape
@pytest.mark.points(0)
def test_bad_arguments_raise_value_errors(impl, device):
    """Wrong subgoal_dims length, mismatching goal_dim, a bad level or a bad horizon name the argument."""
    with pytest.raises(ValueError, match="subgoal_dims"):
        impl.HierarchicalActorCritic(
            state_dim=4, action_dim=2, num_levels=3, subgoal_dims=[8, 6], device=device
        )
    with pytest.raises(ValueError, match="goal_dim"):
        impl.HierarchicalActorCritic(state_dim=4, action_dim=2, num_levels=2, subgoal_dims=[3, 4], goal_dim=2)
    with pytest.raises(ValueError, match="horizon"):
        impl.HierarchicalActorCritic(state_dim=4, action_dim=2, horizon=0)
    agent = _agent(impl, device)
    with pytest.raises(ValueError, match="level"):
        agent.select_action(np.zeros(2), level=2)


# ------------------------------------------------------------------------------------------------------
# goal test, critic target, transitions (student code)
# ------------------------------------------------------------------------------------------------------
@pytest.mark.shape
def test_goal_achieved_needs_every_coordinate_within_threshold(impl):
    """|achieved − goal| ≤ threshold must hold in every coordinate; batched over leading axes."""
    achieved = _alg(impl).hac_goal_achieved
    assert bool(achieved(np.array([0.05, -0.1]), np.zeros(2), 0.1))
    assert not bool(achieved(np.array([0.05, -0.11]), np.zeros(2), 0.1))
    assert bool(achieved(np.array([0.3, 0.0]), np.zeros(2), np.array([0.5, 0.01])))
    batch = achieved(np.array([[0.0, 0.0], [0.2, 0.0], [0.0, 0.05]]), np.zeros(2), 0.1)
    np.testing.assert_array_equal(np.asarray(batch), [True, False, True])


@pytest.mark.shape
def test_critic_target_hand_computed(impl):
    """y = clip(r + γ(1 − done) Q', −H, 0), hand-computed for γ = 0.5, H = 5."""
    target = _alg(impl).hac_critic_target
    r = torch.tensor([-1.0, 0.0, -1.0, -5.0, -1.0])
    q = torch.tensor([-2.0, -3.0, -10.0, -1.0, 0.0])
    d = torch.tensor([0.0, 1.0, 0.0, 0.0, 0.0])
    y = target(r, q, d, 0.5, 5)
    torch.testing.assert_close(y, torch.tensor([-2.0, 0.0, -5.0, -5.0, -1.0]))


@pytest.mark.property
@given(
    st.lists(st.tuples(st.floats(-30, 5), st.floats(-30, 5), st.booleans()), min_size=1, max_size=16),
    st.floats(0.0, 1.0),
    st.integers(1, 20),
)
def test_critic_target_always_in_bounds(impl, rows, gamma, horizon):
    """For any rewards and next values the target lies in [−H, 0] and equals the clipped DDPG target."""
    r = torch.tensor([row[0] for row in rows])
    q = torch.tensor([row[1] for row in rows])
    d = torch.tensor([float(row[2]) for row in rows])
    y = _alg(impl).hac_critic_target(r, q, d, gamma, horizon)
    assert y.shape == r.shape
    assert torch.all(y >= -horizon - 1e-5) and torch.all(y <= 1e-6)
    torch.testing.assert_close(y, (r + gamma * (1 - d) * q).clamp(-horizon, 0.0))


@pytest.mark.property
@given(st.integers(1, 12), st.integers(0, 2**16))
def test_critic_values_and_targets_bounded(impl, horizon, data_seed):
    """The bounded critic outputs Q ∈ [−H, 0] and its training loss is finite and ≤ H² on any batch."""
    agent = impl.HierarchicalActorCritic(
        state_dim=3, action_dim=2, num_levels=2, horizon=horizon, hidden_dim=16, seed=0
    )
    g = torch.Generator().manual_seed(data_seed)
    B = 8
    goal_dims, output_dims = agent.goal_dims, agent.output_dims
    batches = []
    for level in range(2):
        states = 10 * torch.randn(B, 3, generator=g)
        goals = 10 * torch.randn(B, goal_dims[level], generator=g)
        actions = 10 * torch.randn(B, output_dims[level], generator=g)
        rewards = -horizon * torch.rand(B, generator=g)
        dones = (torch.rand(B, generator=g) < 0.5).float()
        batches.append((states, actions, rewards, 10 * torch.randn(B, 3, generator=g), goals, dones))
    for q, loss in impl.run(_critic_values_and_losses, agent, batches):
        assert q.shape == (B,) and torch.all(q >= -horizon) and torch.all(q <= 0)
        loss = float(loss.detach())
        assert np.isfinite(loss) and 0.0 <= loss <= horizon**2 + 1e-4


@pytest.mark.shape
def test_hindsight_action_transition_upper_level(impl):
    """An upper level's action becomes the subgoal actually reached; r = −1, done = 0 on a missed goal."""
    t = impl.run(_transition, "hindsight_action_transition", dict(
        state=np.array([0.0, 0.0]),
        action=np.array([0.9, 0.9]),
        next_state=np.array([0.3, 0.2]),
        goal=np.array([1.0, 1.0]),
        next_achieved_goal=np.array([0.3, 0.2]),
        threshold=0.1,
        achieved_subgoal=np.array([0.3, 0.2]),
    ))  # fmt: skip
    np.testing.assert_allclose(t["action"], [0.3, 0.2])
    np.testing.assert_allclose(t["state"], [0.0, 0.0])
    np.testing.assert_allclose(t["next_state"], [0.3, 0.2])
    np.testing.assert_allclose(t["goal"], [1.0, 1.0])
    assert float(t["reward"]) == -1.0 and float(t["done"]) == 0.0


@pytest.mark.shape
def test_hindsight_action_transition_goal_reached_and_lowest_level(impl):
    """Reaching the goal gives reward 0 and done 1; the lowest level keeps its primitive action."""
    t = impl.run(_transition, "hindsight_action_transition", dict(
        state=np.array([0.0, 0.0]),
        action=np.array([-0.5, 0.25]),
        next_state=np.array([0.95, 1.05]),
        goal=np.array([1.0, 1.0]),
        next_achieved_goal=np.array([0.95, 1.05]),
        threshold=np.array([0.1, 0.1]),
        achieved_subgoal=None,
    ))  # fmt: skip
    np.testing.assert_allclose(t["action"], [-0.5, 0.25])
    assert float(t["reward"]) == 0.0 and float(t["done"]) == 1.0


@pytest.mark.shape
def test_hindsight_goal_transition_relabels_goal_and_reward(impl):
    """The goal is replaced by a later achieved goal and the reward/done recomputed against it."""
    base = dict(
        state=np.zeros(2, np.float32),
        action=np.array([0.3, 0.2], np.float32),
        reward=-1.0,
        next_state=np.array([0.3, 0.2], np.float32),
        goal=np.array([1.0, 1.0], np.float32),
        done=0.0,
    )
    relabel = {"next_achieved_goal": np.array([0.3, 0.2]), "threshold": 0.1}
    hit = impl.run(
        _transition, "hindsight_goal_transition", {"new_goal": np.array([0.32, 0.15]), **relabel}, base
    )
    np.testing.assert_allclose(hit["goal"], [0.32, 0.15], rtol=1e-6)
    assert float(hit["reward"]) == 0.0 and float(hit["done"]) == 1.0
    np.testing.assert_allclose(hit["action"], base["action"])
    np.testing.assert_allclose(hit["state"], base["state"])
    np.testing.assert_allclose(hit["next_state"], base["next_state"])
    won = impl.run(_transition, "hindsight_goal_transition", {"new_goal": np.array([0.6, 0.2]), **relabel},
                   {**base, "reward": 0.0, "done": 1.0})  # fmt: skip
    assert float(won["reward"]) == -1.0 and float(won["done"]) == 0.0


@pytest.mark.shape
def test_subgoal_test_penalty_transition(impl):
    """A missed subgoal test stores the proposed subgoal with reward −H and done 1 (no bootstrap)."""
    t = impl.run(_transition, "subgoal_test_transition", dict(
        state=np.array([0.0, 0.0]),
        subgoal=np.array([0.8, -0.8]),
        next_state=np.array([0.2, -0.1]),
        goal=np.array([1.0, -1.0]),
        horizon=7,
    ))  # fmt: skip
    np.testing.assert_allclose(t["action"], [0.8, -0.8])
    np.testing.assert_allclose(t["next_state"], [0.2, -0.1])
    np.testing.assert_allclose(t["goal"], [1.0, -1.0])
    assert float(t["reward"]) == -7.0 and float(t["done"]) == 1.0


@pytest.mark.shape
def test_episode_stores_hindsight_and_penalty_transitions(impl, device):
    """With λ = 1 an untrained 2-level agent stores −H penalties, and level-0 actions are reached states."""
    agent = _agent(impl, device, subgoal_test_prob=1.0, num_hindsight_goals=1, goal_threshold=0.01)
    env = _Line(start=[0.0, 0.0], goal=[0.9, -0.9])
    result = agent.run_episode(env)
    assert 1 <= result["steps"] <= 25
    top = agent.buffers[0]
    n = len(top)
    rewards, actions, next_states = top.rewards[:n], top.actions[:n], top.next_states[:n]
    assert np.any(rewards == -5.0), "a missed subgoal test must store a −H penalty transition"
    assert np.all(top.dones[:n][rewards == -5.0] == 1.0)
    hindsight = rewards != -5.0
    assert hindsight.sum() >= 2  # hindsight action + hindsight goal transitions
    np.testing.assert_allclose(actions[hindsight], next_states[hindsight], atol=1e-6)
    assert np.all(np.isin(rewards, [0.0, -1.0, -5.0]))
    assert len(agent.buffers[1]) > 0


# ------------------------------------------------------------------------------------------------------
# gradients
# ------------------------------------------------------------------------------------------------------
@pytest.mark.gradient
def test_critic_loss_trains_critic_only_and_actor_loss_reaches_actor(impl, device):
    """The critic loss has gradient in the critic but not the actor; the actor loss reaches the actor."""
    agent = _agent(impl, device, num_levels=3)
    for level in range(3):
        B = 8
        batch = (
            torch.randn(B, 2, device=device),
            torch.rand(B, agent.output_dims[level], device=device) * 2 - 1,
            -torch.ones(B, device=device),
            torch.randn(B, 2, device=device),
            torch.randn(B, agent.goal_dims[level], device=device),
            torch.zeros(B, device=device),
        )
        after_critic_loss, actor_grads = impl.run(_loss_gradients, agent, level, batch)
        assert all(gr is None or torch.all(gr == 0) for gr in after_critic_loss["actor"])
        grads = after_critic_loss["critic"]
        assert grads and all(gr is not None and torch.isfinite(gr).all() for gr in grads)
        assert any(gr.abs().sum() > 0 for gr in grads)
        assert actor_grads and all(gr is not None and torch.isfinite(gr).all() for gr in actor_grads)
        assert any(gr.abs().sum() > 0 for gr in actor_grads)


@pytest.mark.gradient
def test_update_moves_every_level(impl, device):
    """After one episode, update() changes the actor and critic parameters of every level."""
    agent = _agent(impl, device, num_levels=3, horizon=3)
    agent.run_episode(_Line(start=[0.0, 0.0], goal=[0.5, 0.5]))
    before = [[p.detach().clone() for p in net.parameters()] for net in [*agent.actors, *agent.critics]]
    losses = agent.update(num_updates=2)
    assert len(losses) == 3 and all(np.isfinite(v) for d in losses for v in d.values())
    for net, old in zip([*agent.actors, *agent.critics], before, strict=True):
        assert any(not torch.equal(p.detach(), o) for p, o in zip(net.parameters(), old, strict=True))


# ------------------------------------------------------------------------------------------------------
# contracts (CONVENTIONS §3, issue 23): inputs unchanged, every named loss against a hand computation
# ------------------------------------------------------------------------------------------------------
def _loss_terms(impl, agent, level, batch):
    """Probe: the critic's Q(s, g, a), Q(s', g, π(s', g)) and Q(s, g, π(s, g)) of level ``level`` on the
    batch (raw network outputs), beside critic_loss(level, batch) and actor_loss(level, s, g)."""
    states, actions, _, next_states, goals, _ = batch
    critic, actor = agent.critics[level], agent.actors[level]
    with torch.no_grad():
        q = critic(states, goals, actions)
        q_next = critic(next_states, goals, actor(next_states, goals))
        q_pi = critic(states, goals, actor(states, goals))
    losses = agent.critic_loss(level, batch).detach(), agent.actor_loss(level, states, goals).detach()
    return q, q_next, q_pi, *losses


def _with_transition(impl, fn):
    """Probe: a function (its handle comes back) calling ``fn(*before, HACTransition(*fields), *after)``, the
    transition built in the worker around the caller's own arrays, so that a change to them shows."""
    alg = impl.module("hierarchical_rl.algorithms")

    def call(before, fields, *after):
        return fn(*before, alg.HACTransition(*fields), *after)

    return call


def _assert_transition(t, state, action, reward, next_state, goal, done):
    """``t`` (a HACTransition that came back as data) holds these fields, float32 arrays compared exactly."""
    __tracebackhide__ = True
    for name, value in [("state", state), ("action", action), ("next_state", next_state), ("goal", goal)]:
        np.testing.assert_array_equal(getattr(t, name), np.asarray(value, np.float32), err_msg=name)
    assert (float(t.reward), float(t.done)) == (reward, done), f"(reward, done) = ({t.reward}, {t.done})"


@pytest.mark.shape
def test_transition_helpers_leave_their_inputs_unchanged(impl):
    """hac_goal_achieved, hac_critic_target and the three transition builders leave every array and tensor
    they are given as it was (float32 arrays, targets a clip changes) and return the documented values."""
    alg = _alg(impl)
    s, s2 = np.array([0.0, 0.5], np.float32), np.array([0.3, 0.2], np.float32)
    goal, action, reached = np.array([1.0, 1.0], np.float32), np.array([0.9, -0.9], np.float32), s2.copy()
    threshold = np.array([0.1, 0.2], np.float32)
    near = np.array([0.3, 0.35], np.float32)
    achieved = assert_inputs_unchanged(impl, alg.hac_goal_achieved, None, np.stack([s, s2]), near, threshold)
    # |s − near| = (0.3, 0.15): coordinate 0 misses 0.1; |s2 − near| = (0, 0.15): within (0.1, 0.2) everywhere
    np.testing.assert_array_equal(achieved, np.array([False, True]))
    r, q = torch.tensor([-1.0, 0.0, -5.0, -1.0]), torch.tensor([-20.0, 3.0, -1.0, -2.0])
    d = torch.tensor([0.0, 0.0, 1.0, 0.0])
    y = assert_inputs_unchanged(impl, alg.hac_critic_target, None, r, q, d, 0.9, 5)
    # clip(r + γ (1 − d) Q', −5, 0)
    expected = [max(-1.0 + 0.9 * -20.0, -5.0), min(0.0 + 0.9 * 3.0, 0.0), -5.0 + 0.0, -1.0 + 0.9 * -2.0]
    torch.testing.assert_close(y, torch.tensor(expected))
    hat = alg.hindsight_action_transition
    t = assert_inputs_unchanged(impl, hat, None, s, action, s2, goal, reached, threshold, reached)
    _assert_transition(t, s, reached, -1.0, s2, goal, 0.0)  # ã = the subgoal reached; s2 misses (1, 1)
    t = assert_inputs_unchanged(impl, hat, None, s, action, s2, s2, reached, 0.1, None)
    _assert_transition(t, s, action, 0.0, s2, s2, 1.0)  # lowest level: the action kept; the goal is reached
    relabel = impl.run(_with_transition, alg.hindsight_goal_transition)
    t = assert_inputs_unchanged(impl, relabel, None, (), (s, action, -1.0, s2, goal, 0.0), s2, reached, threshold)
    _assert_transition(t, s, action, 0.0, s2, s2, 1.0)  # relabelled with the goal s2 it reached
    t = assert_inputs_unchanged(impl, alg.subgoal_test_transition, None, s, action, s2, goal, 5)
    _assert_transition(t, s, action, -5.0, s2, goal, 1.0)  # the proposed subgoal, penalty −H, no bootstrap


@pytest.mark.shape
def test_agent_methods_leave_their_inputs_unchanged(impl, device):
    """critic_loss, actor_loss, select_action, project and store_transition leave the caller's batch, states
    and goals as they were (rewards below −H, so that a clip in place would show) and return (or store) the
    documented values."""
    agent = _agent(impl, device)  # H = 5, γ = 0.95 (default), states, subgoals and actions in [−1, 1]²
    g = torch.Generator().manual_seed(0)
    batch = (torch.randn(6, 2, generator=g), torch.rand(6, 2, generator=g) * 2 - 1,
             torch.tensor([-1.0, 0.0, -7.0, -1.0, -5.0, 0.0]), torch.randn(6, 2, generator=g),
             torch.randn(6, 2, generator=g), torch.tensor([0.0, 1.0, 1.0, 0.0, 0.0, 0.0]))  # fmt: skip
    rewards, dones = batch[2], batch[5]
    for level in (0, 1):
        q, q_next, q_pi, _, _ = impl.run(_loss_terms, agent, level, batch)  # the networks' raw outputs
        critic_loss = assert_inputs_unchanged(impl, agent, "critic_loss", level, batch).detach()
        target = (rewards + 0.95 * (1.0 - dones) * q_next).clamp(-5.0, 0.0)
        assert float(critic_loss) == pytest.approx(float((q - target).pow(2).mean()), rel=1e-5, abs=1e-6), level
        actor_loss = assert_inputs_unchanged(impl, agent, "actor_loss", level, batch[0], batch[4]).detach()
        assert float(actor_loss) == pytest.approx(float(-q_pi.mean()), rel=1e-5, abs=1e-6), level
    state, goal = np.array([2.0, -3.0], np.float32), np.array([0.5, 0.5], np.float32)
    explored = assert_inputs_unchanged(impl, agent, "select_action", state, 0, goal, True)
    assert explored.shape == (2,) and explored.dtype == np.float32 and np.all(np.abs(explored) <= 1.0), explored
    greedy = assert_inputs_unchanged(impl, agent, "select_action", state, 0, goal, False)
    subgoal = agent.actors[0](torch.tensor(state[None], device=device), torch.tensor(goal[None], device=device))
    np.testing.assert_allclose(greedy, np.clip(subgoal[0].detach().cpu().numpy(), -1.0, 1.0), rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(assert_inputs_unchanged(impl, agent, "project", state, 1), state)  # φ_1 = id
    wide = _agent(impl, device, subgoal_dims=[2, 3])  # level 1's goals: φ_1(s) = s[[0, 1, 0]] (j mod S)
    np.testing.assert_array_equal(assert_inputs_unchanged(impl, wide, "project", state, 1), [2.0, -3.0, 2.0])
    store = impl.run(_with_transition, agent.store_transition)
    stored = assert_inputs_unchanged(impl, store, None, (0,), (state, goal, -1.0, state.copy(), goal.copy(), 0.0))
    assert stored is None
    buffer = agent.buffers[0]
    assert len(buffer) == 1 and len(agent.buffers[1]) == 0
    for name, value in [("states", state), ("actions", goal), ("rewards", -1.0), ("next_states", state),
                        ("goals", goal), ("dones", 0.0)]:  # fmt: skip
        np.testing.assert_array_equal(getattr(buffer, name)[0], value, err_msg=name)


@pytest.mark.shape
def test_critic_and_actor_losses_hand_computed(impl, device):
    """critic_loss = mean((Q(s, g, a) − clip(r + γ(1 − d) Q(s', g, π(s', g)), −H, 0))²) and
    actor_loss = −mean Q(s, g, π(s, g)), computed here from the networks' outputs (γ = 0.5, H = 5)."""
    agent = _agent(impl, device, gamma=0.5)
    g = torch.Generator().manual_seed(1)
    rewards, dones = torch.tensor([-1.0, 0.0, -5.0, -1.0, 0.0]), torch.tensor([0.0, 1.0, 1.0, 0.0, 0.0])
    for level in (0, 1):
        batch = (torch.randn(5, 2, generator=g), torch.rand(5, 2, generator=g) * 2 - 1, rewards,
                 torch.randn(5, 2, generator=g), torch.randn(5, 2, generator=g), dones)  # fmt: skip
        batch = tuple(x.to(device) for x in batch)
        out = impl.run(_loss_terms, agent, level, batch)
        q, q_next, q_pi, critic_loss, actor_loss = (x.cpu() for x in out)
        target = (rewards + 0.5 * (1.0 - dones) * q_next).clamp(-5.0, 0.0)
        assert float(critic_loss) == pytest.approx(float((q - target).pow(2).mean()), rel=1e-5, abs=1e-6)
        assert float(actor_loss) == pytest.approx(float(-q_pi.mean()), rel=1e-5, abs=1e-6)


# ------------------------------------------------------------------------------------------------------
# convergence
# ------------------------------------------------------------------------------------------------------
@pytest.mark.convergence
@pytest.mark.points(3)
@pytest.mark.timeout(240)
def test_two_levels_learn_point_mass_reaching(impl, seed_trials):
    """A 2-level HAC (H = 5) reaches ≥ 50 % of random goals of a point mass within 120 episodes (judged after 60,
    90 and 120; a seed stops at its first success), on ≥ 2 of 3 seeds.

    Trained in the worker on the tests' point mass (HAC's episode loop is given code that needs the env), evaluated
    in the judge: the deterministic hierarchy on 20 new goals, every subgoal and action computed here from the
    actors' weights, so an agent whose ``select_action`` knows the way but whose networks learned nothing fails.
    Measured with the reference (seeds 0-9): 0.0-0.05 before; 0.4-0.9 after 60 episodes (9 of 10 seeds ≥ 0.5),
    0.85-1.0 after 120. ``train`` is given code without a schedule, so training in pieces is the same run.
    Calibration (docs/calibration.md, 2026-12-03, judge-side actors): no seed of 60 failed (30 on the reference, 15 on each
    perturbed reference), so p ≤ 5 % per seed (rule of three) and the estimated false-fail rate is ≤ 0.73 %.
    """

    def trial(seed: int) -> tuple[bool, str]:
        agent = impl.HierarchicalActorCritic(
            state_dim=2, action_dim=2, num_levels=2, horizon=5, goal_threshold=0.1, batch_size=64, seed=seed
        )
        # a step of 0.2 per action: far goals need several subgoals (5 steps reach 1.0 per coordinate)
        before = _hierarchy_success_rate(impl, agent, _eval_envs(seed), horizon=5, threshold=0.1)
        env = impl.run(_worker_point_mass, seed)  # one environment for every piece of the run
        after, episodes, _ = train_with_looks(
            lambda n: agent.train(env, n, updates_per_episode=10),
            lambda: _hierarchy_success_rate(impl, agent, _eval_envs(seed), horizon=5, threshold=0.1),
            (60, 90, 120), lambda rate: rate >= 0.5 and rate >= before + 0.3)
        return after >= 0.5 and after >= before + 0.3, f"{before:.2f} -> {after:.2f} after {episodes} episodes"

    seed_trials(trial, "HAC learned (success ≥ 0.50 and ≥ before + 0.30)", seeds=(0, 1, 2), need=2)


# ------------------------------------------------------------------------------------------------------
# GPU
# ------------------------------------------------------------------------------------------------------
@pytest.mark.gpu
@pytest.mark.gradient
@pytest.mark.points(0)
def test_runs_on_cuda(impl):
    """Networks live on CUDA; an episode, an update and select_action work there."""
    agent = _agent(impl, "cuda", num_levels=3, horizon=3)
    devices = impl.run(_parameter_devices, agent)
    assert devices and all(d.startswith("cuda") for d in devices)
    agent.run_episode(_Line(start=[0.0, 0.0], goal=[0.5, 0.5]))
    losses = agent.update(num_updates=2)
    assert all(np.isfinite(v) for d in losses for v in d.values())
    assert agent.select_action(np.zeros(2), level=2).shape == (2,)
