"""Tests of the options framework and SMDP / intra-option Q-learning (Sutton, Precup & Singh 1999)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

pytestmark = pytest.mark.component("Option")

GAMMA = 0.9


@pytest.fixture
def opts(impl):
    """The options module of the implementation under test (helpers are re-exported by algorithms.py)."""
    return impl.module("hierarchical_rl.algorithms")


@pytest.fixture
def envs(impl):
    """The environments module of the implementation under test."""
    return impl.module("hierarchical_rl.environments")


def _primitives(opts, first_id=8):
    return [opts.primitive_option(a, option_id=first_id + a) for a in range(4)]


# --- Option API (given code) -----------------------------------------------------------------------------


@pytest.mark.shape
@pytest.mark.points(0)
def test_option_api_of_the_notebook(impl):
    """The seed notebook's calls: Option(initiation_set=, policy=, termination_condition=, option_id=)."""
    option = impl.Option(
        initiation_set=lambda s: True,
        policy=lambda s: 3,
        termination_condition=lambda s: np.random.random() < 0.1,
        option_id=0,
    )
    state = np.random.randn(4)
    assert option.option_id == 0
    assert option.can_initiate(state) is True
    assert option.get_action(state) == 3
    assert isinstance(option.should_terminate(state), bool)


@pytest.mark.shape
@pytest.mark.points(0)
def test_option_accepts_sets_and_mappings(impl):
    """Initiation/termination given as sets of states and the policy as a mapping."""
    option = impl.Option(
        initiation_set={0, 1, 2},
        policy={0: 1, 1: 1, 2: 0},
        termination_condition={2, 5},
        option_id=4,
        name="o",
    )
    assert [option.can_initiate(s) for s in (0, 2, 3)] == [True, True, False]
    assert option.get_action(2) == 0
    assert option.should_terminate(5) and not option.should_terminate(1)
    assert option.termination_probability(2) == 1.0 and option.termination_probability(0) == 0.0
    assert option.name == "o" and option.option_id == 4


@pytest.mark.property
@pytest.mark.points(0)
@pytest.mark.parametrize("beta", [0.0, 0.3, 1.0])
def test_stochastic_termination_frequency(impl, beta):
    """A termination condition returning a probability beta terminates with frequency ~beta."""
    option = impl.Option(lambda s: True, lambda s: 0, lambda s: beta, option_id=1)
    rng = np.random.default_rng(0)
    n = 4000
    freq = np.mean([option.should_terminate(0, rng) for _ in range(n)])
    assert abs(freq - beta) < 0.03
    constant = impl.Option(None, lambda s: 0, beta)  # a constant probability works the same
    assert abs(np.mean([constant.should_terminate(0, rng) for _ in range(n)]) - beta) < 0.03


@pytest.mark.shape
@pytest.mark.points(0)
def test_primitive_option_is_one_step(opts):
    """primitive_option(a): available everywhere, takes a, terminates with probability 1."""
    option = opts.primitive_option(2)
    assert option.option_id == 2
    assert option.can_initiate(17) and option.get_action(17) == 2
    assert option.termination_probability(17) == 1.0 and option.should_terminate(17)


@pytest.mark.shape
@pytest.mark.points(0)
@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"initiation_set": None, "policy": 3, "termination_condition": 1.0}, "policy"),
        ({"initiation_set": None, "policy": {}, "termination_condition": 1.5}, "termination_condition"),
        ({"initiation_set": 5, "policy": {}, "termination_condition": 1.0}, "initiation_set"),
        ({"initiation_set": None, "policy": {}, "termination_condition": 1.0, "option_id": -1}, "option_id"),
    ],
)
def test_option_bad_arguments_raise(impl, kwargs, name):
    """Bad Option arguments raise ValueError naming the argument."""
    with pytest.raises(ValueError, match=name):
        impl.Option(**kwargs)


# --- hallway options (given code) ------------------------------------------------------------------------


@pytest.mark.shape
@pytest.mark.points(0)
def test_hallway_options_structure(opts, envs):
    """8 options; each starts in its room (and the room's other hallway) and stops outside the room."""
    env = envs.FourRoomsEnv()
    options = opts.make_hallway_options(env)
    assert len(options) == 8
    assert sorted(o.option_id for o in options) == list(range(8))
    for k, option in enumerate(options):
        room = k // 2
        inside = [env.cell_index(c) for c in env.rooms[room]]
        assert all(option.can_initiate(s) for s in inside)
        assert all(option.termination_probability(s) == 0.0 for s in inside)
        assert all(option.termination_probability(env.cell_index(h)) == 1.0 for h in env.hallways)
        starts = {env.cells[s] for s in range(env.num_states) if option.can_initiate(s)}
        assert len(starts - set(env.rooms[room])) == 1  # the non-target hallway


@pytest.mark.shape
@pytest.mark.points(0)
def test_hallway_options_reach_their_hallway_from_every_cell(opts, envs):
    """With slip 0, each hallway option leads from every cell of its initiation set to its hallway by a
    shortest path (Manhattan distance inside a room)."""
    env = envs.FourRoomsEnv()
    options = opts.make_hallway_options(env)
    for k, option in enumerate(options):
        target = env.room_hallways(k // 2)[k % 2]
        for s in range(env.num_states):
            if not option.can_initiate(s):
                continue
            cell, steps = env.cells[s], 0
            while True:  # deterministic moves (slip 0)
                cell, steps = env.move(cell, option.get_action(env.cell_index(cell))), steps + 1
                if option.should_terminate(env.cell_index(cell)) or steps > 30:
                    break
            assert cell == target, (option.name, env.cells[s], cell)
            if env.room_of(s) >= 0:
                assert steps == abs(target[0] - env.cells[s][0]) + abs(target[1] - env.cells[s][1])


# --- the math (student code) -----------------------------------------------------------------------------


@pytest.mark.shape
def test_option_return_hand_computed(opts):
    """option_return([1, 2, 3], 0.5) = 1 + 0.5*2 + 0.25*3 = 2.75; no rewards give 0."""
    assert opts.option_return([1.0, 2.0, 3.0], 0.5) == pytest.approx(2.75)
    assert opts.option_return(np.array([0.0, 0.0, 1.0]), 0.9) == pytest.approx(0.81)
    assert opts.option_return([], 0.9) == pytest.approx(0.0)
    assert opts.option_return([4.0], 0.0) == pytest.approx(4.0)


@pytest.mark.shape
def test_smdp_target_hand_computed(opts):
    """smdp_target(1, k=3, maxQ=2, gamma=0.5) = 1 + 0.125*2 = 1.25; done: just the reward."""
    assert opts.smdp_target(1.0, 3, 2.0, False, 0.5) == pytest.approx(1.25)
    assert opts.smdp_target(1.0, 3, 2.0, True, 0.5) == pytest.approx(1.0)
    assert opts.smdp_target(0.0, 1, 10.0, False, 0.9) == pytest.approx(9.0)  # k=1: Q-learning


@pytest.mark.property
@given(
    rewards=st.lists(st.floats(-5, 5), min_size=1, max_size=12),
    next_q=st.floats(-10, 10),
    gamma=st.floats(0.0, 1.0),
)
def test_smdp_target_equals_bootstrapped_discounted_sum(opts, rewards, next_q, gamma):
    """r + gamma^k Q equals the discounted sum of the k rewards followed by Q; option_return is recursive."""
    k = len(rewards)
    target = opts.smdp_target(opts.option_return(rewards, gamma), k, next_q, False, gamma)
    expected = sum(gamma**i * r for i, r in enumerate(rewards)) + gamma**k * next_q
    assert target == pytest.approx(expected, abs=1e-9)
    head = rewards[0] + gamma * opts.option_return(rewards[1:], gamma)
    assert opts.option_return(rewards, gamma) == pytest.approx(head, abs=1e-9)


@pytest.mark.shape
def test_intra_option_target_hand_computed(opts):
    """U = (1-beta) Q(s',o) + beta max Q: r=1, Q=2, max=4, beta=0.25, gamma=0.5 gives 1 + 0.5*2.5 = 2.25."""
    assert opts.intra_option_target(1.0, 2.0, 4.0, 0.25, False, 0.5) == pytest.approx(2.25)
    assert opts.intra_option_target(1.0, 2.0, 4.0, 0.25, True, 0.5) == pytest.approx(1.0)
    assert opts.intra_option_target(0.0, 2.0, 4.0, 1.0, False, 0.5) == pytest.approx(
        2.0
    )  # beta=1: Q-learning
    assert opts.intra_option_target(0.0, 2.0, 4.0, 0.0, False, 0.5) == pytest.approx(1.0)  # beta=0: continue


@pytest.mark.shape
@pytest.mark.points(0)
@pytest.mark.parametrize(
    ("call", "name"),
    [
        (lambda o: o.smdp_target(1.0, 0, 0.0, False, 0.9), "k"),
        (lambda o: o.smdp_target(1.0, 1, 0.0, False, 1.5), "gamma"),
        (lambda o: o.option_return([1.0], -0.1), "gamma"),
        (lambda o: o.intra_option_target(1.0, 0.0, 0.0, 1.2, False, 0.9), "beta"),
    ],
)
def test_math_bad_arguments_raise(opts, call, name):
    """Bad k, gamma or beta raise ValueError naming the argument."""
    with pytest.raises(ValueError, match=name):
        call(opts)


# --- the agent -------------------------------------------------------------------------------------------


@pytest.mark.shape
def test_smdp_update_hand_computed(opts):
    """Q(s,o) += alpha (r + gamma^k max_o' Q(s',o') - Q(s,o)) with the max over options available in s'."""
    options = _primitives(opts, first_id=0)
    agent = opts.SMDPQLearningAgent(options, num_states=5, gamma=0.5, alpha=0.5)
    agent.q[3] = [1.0, 4.0, 2.0, 0.0]
    agent.q[0, 2] = 1.0
    td = agent.update(0, 2, 2.0, 3, 2, False)  # target 2 + 0.25*4 = 3
    assert td == pytest.approx(2.0)
    assert agent.q[0, 2] == pytest.approx(2.0)
    agent.update(1, options[0], 1.0, 3, 5, True)  # an Option object works too; done: target = 1
    assert agent.q[1, 0] == pytest.approx(0.5)


@pytest.mark.shape
def test_execute_option_returns_discounted_reward_and_duration(opts, envs):
    """A hallway option from (1, 7) to the goal hallway (7, 9): k = 8 steps, reward gamma^7, done."""
    env = envs.FourRoomsEnv(slip=0.0, goal=(7, 9), start=(1, 7))
    options = opts.make_hallway_options(env)
    option = next(o for o in options if o.name.endswith("(7, 9)") and o.can_initiate(env.cell_index((1, 7))))
    agent = opts.SMDPQLearningAgent(options, env.num_states, gamma=GAMMA)
    obs, _ = env.reset(seed=0)
    s_next, reward, k, done = agent.execute_option(env, obs, option)
    assert (env.cells[s_next], k, done) == ((7, 9), 8, True)
    assert reward == pytest.approx(GAMMA**7)


@pytest.mark.shape
def test_execute_option_stops_at_termination_and_step_cap(opts, envs):
    """A hallway option stops on leaving its room (k = path length, reward 0); max_steps caps k."""
    env = envs.FourRoomsEnv(slip=0.0, goal=(11, 11), start=(1, 1), step_reward=-1.0)
    options = opts.make_hallway_options(env)
    to_east = next(o for o in options if o.name == "room0->hallway(3, 6)")
    agent = opts.SMDPQLearningAgent(options, env.num_states, gamma=0.5)
    obs, _ = env.reset(seed=0)
    s_next, reward, k, done = agent.execute_option(env, obs, to_east)
    assert (env.cells[s_next], k, done) == ((3, 6), 7, False)
    assert reward == pytest.approx(-(1 - 0.5**7) / 0.5)  # -sum_{i<7} 0.5^i
    obs, _ = env.reset(seed=0)
    s_next, reward, k, done = agent.execute_option(env, obs, to_east, max_steps=2)
    assert k == 2 and reward == pytest.approx(-1.5)


@pytest.mark.shape
def test_intra_option_update_touches_exactly_the_consistent_options(impl, opts):
    """After (s=0, a=0, r=1, s'=1): every option with pi(0)=0 and 0 in I is updated with r + gamma U(s', o)."""
    Option = impl.Option
    options = [
        opts.primitive_option(0, option_id=0),  # consistent, beta = 1
        opts.primitive_option(1, option_id=1),  # other action
        Option(None, lambda s: 0, 0.0, option_id=2),  # consistent, never stops: U = Q(s', o)
        Option({1, 2}, lambda s: 0, 0.0, option_id=3),  # takes 0 but cannot be active in s=0
        Option(None, lambda s: 0, lambda s: 0.5, option_id=4),  # consistent, beta = 0.5
    ]
    agent = opts.SMDPQLearningAgent(options, num_states=3, gamma=0.5, alpha=0.5)
    agent.q[1] = [2.0, 6.0, 4.0, 0.0, 2.0]  # max over available in s'=1 is 6
    before = agent.q.copy()
    updated = agent.intra_option_update(0, 0, 1.0, 1, False)
    assert sorted(updated) == [0, 2, 4]
    assert agent.q[0, 0] == pytest.approx(0.5 * (1.0 + 0.5 * 6.0))
    assert agent.q[0, 2] == pytest.approx(0.5 * (1.0 + 0.5 * 4.0))
    assert agent.q[0, 4] == pytest.approx(0.5 * (1.0 + 0.5 * (0.5 * 2.0 + 0.5 * 6.0)))
    np.testing.assert_array_equal(agent.q[0, [1, 3]], before[0, [1, 3]])
    np.testing.assert_array_equal(agent.q[1:], before[1:])
    agent.intra_option_update(2, 1, 3.0, 0, True)  # terminal: target = r
    assert agent.q[2, 1] == pytest.approx(1.5)


@pytest.mark.shape
def test_intra_option_learning_values_options_never_executed(opts, envs):
    """Running only primitive options with intra_option=True still learns hallway-option values."""
    env = envs.FourRoomsEnv(slip=0.0, goal=(3, 6), start=(3, 1))
    hallway = opts.make_hallway_options(env)
    agent = opts.SMDPQLearningAgent(hallway + _primitives(opts), env.num_states, alpha=0.5, intra_option=True)
    option = next(i for i, o in enumerate(hallway) if o.name == "room0->hallway(3, 6)")
    for _ in range(10):  # walk right along row 3 to the goal hallway with the 'right' primitive
        obs, _ = env.reset(seed=0)
        done = False
        while not done:
            obs, _, _, done = agent.execute_option(env, obs, agent.options[8 + 1])
    for col in range(1, 6):
        assert agent.q[env.cell_index((3, col)), option] > 0.0


@pytest.mark.shape
@pytest.mark.points(0)
def test_select_option_respects_initiation_sets(impl, opts):
    """Only options whose initiation set holds the state are chosen; greedy picks the best of them."""
    options = [
        impl.Option({0}, lambda s: 0, 1.0, option_id=0),
        impl.Option({0, 1}, lambda s: 1, 1.0, option_id=1),
    ]
    agent = opts.SMDPQLearningAgent(options, num_states=3, epsilon=1.0, seed=0)
    assert {agent.select_option(1) for _ in range(50)} == {1}
    assert {agent.select_option(0) for _ in range(50)} == {0, 1}
    agent.q[0] = [1.0, 0.0]
    assert agent.select_option(0, greedy=True) == 0
    with pytest.raises(ValueError, match="state 2"):
        agent.select_option(2)


@pytest.mark.shape
@pytest.mark.points(0)
@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"options": []}, "options"),
        ({"options": [0, 1]}, "options"),
        ({"num_states": 0}, "num_states"),
        ({"gamma": 1.5}, "gamma"),
        ({"alpha": 0.0}, "alpha"),
        ({"lr": 2.0}, "lr"),
        ({"epsilon": -0.1}, "epsilon"),
    ],
)
def test_agent_bad_arguments_raise(opts, kwargs, name):
    """Bad agent arguments raise ValueError naming the argument."""
    args = {"options": _primitives(opts), "num_states": 4, **kwargs}
    with pytest.raises(ValueError, match=name):
        opts.SMDPQLearningAgent(**args)


# --- convergence -----------------------------------------------------------------------------------------

SEEDS = (0, 1, 2)
EPISODES = 40


def _steps_over_training(opts, envs, seed, with_options, intra_option=False):
    env = envs.FourRoomsEnv(goal=(7, 9), start=(1, 1), max_steps=1000)  # slip 1/3 as in the paper
    options = (opts.make_hallway_options(env) if with_options else []) + _primitives(opts)
    agent = opts.SMDPQLearningAgent(
        options, env.num_states, gamma=0.9, alpha=0.125, epsilon=0.1, seed=seed, intra_option=intra_option
    )
    history = agent.train(env, EPISODES)
    assert len(history["steps"]) == EPISODES
    return np.asarray(history["steps"])


@pytest.mark.convergence
@pytest.mark.points(2)
@pytest.mark.timeout(60)
def test_smdp_q_learning_with_hallway_options_beats_primitive_q_learning(opts, envs, curve):
    """Over the first 40 episodes, hallway options (+primitives) need less than 60% of the primitive steps
    of plain Q-learning, on each of 3 seeds, and the last episodes are short."""
    for seed in SEEDS:
        prim = _steps_over_training(opts, envs, seed, with_options=False)
        hier = _steps_over_training(opts, envs, seed, with_options=True)
        curve(f"options, seed {seed}", hier, xlabel="episode", ylabel="steps to goal")
        curve(f"primitive Q-learning, seed {seed}", prim, xlabel="episode", ylabel="steps to goal")
        assert hier.sum() < 0.6 * prim.sum(), (seed, hier.sum(), prim.sum())
        assert hier[-10:].mean() < 100, (seed, hier[-10:])


@pytest.mark.convergence
@pytest.mark.timeout(60)
def test_intra_option_q_learning_beats_primitive_q_learning(opts, envs):
    """Intra-option Q-learning with hallway options also needs less than 60% of plain Q-learning's steps."""
    for seed in SEEDS:
        prim = _steps_over_training(opts, envs, seed, with_options=False)
        intra = _steps_over_training(opts, envs, seed, with_options=True, intra_option=True)
        assert intra.sum() < 0.6 * prim.sum(), (seed, intra.sum(), prim.sum())
        assert intra[-10:].mean() < 100, (seed, intra[-10:])
