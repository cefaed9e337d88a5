"""Tests of the options framework and SMDP / intra-option Q-learning (Sutton, Precup & Singh 1999)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from grader.judge.contracts import assert_draws_only_from, assert_inputs_unchanged

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


# --- probes (run in the worker; they return raw observations) ---------------------------------------------


def _terminations(impl, options, n):
    """Probe: n draws of should_terminate(0, rng) per option, with one generator seeded 0 for all."""
    rng = np.random.default_rng(0)
    return [[bool(o.should_terminate(0, rng)) for _ in range(n)] for o in options]


def _set_q(impl, agent, index, value):
    """Probe: write ``value`` into the agent's table in place, ``agent.q[index] = value``."""
    agent.q[index] = value


def _option_tables(impl, options, num_states):
    """Probe: per option and state: can_initiate, get_action (None where the policy is not defined) and
    termination_probability."""
    tables = []
    for o in options:
        actions = []
        for s in range(num_states):
            try:
                actions.append(int(o.get_action(s)))
            except ValueError:
                actions.append(None)
        tables.append({
            "init": [bool(o.can_initiate(s)) for s in range(num_states)],
            "action": actions,
            "beta": [float(o.termination_probability(s)) for s in range(num_states)],
        })  # fmt: skip
    return tables


def _learn_then_choose(impl, agent, intra_option, start, option, rewards, transitions, state, terminated,
                       truncated):  # fmt: skip
    """Probe: the agent's learning step after ``option`` ran from ``start`` in the judge's environment
    (SMDP: update with option_return of the rewards; intra-option: intra_option_update of every primitive
    transition), then its next choice in ``state`` (None when the episode ended)."""
    if intra_option:
        for transition in transitions:
            agent.intra_option_update(*transition)
    else:
        alg = impl.module("hierarchical_rl.algorithms")
        agent.update(start, option, alg.option_return(rewards, agent.gamma), state, len(rewards), terminated)
    return None if terminated or truncated else agent.select_option(state)


# --- the tests' four-rooms task ---------------------------------------------------------------------------

_ROOMS_LAYOUT = (
    "#############",
    "#.....#.....#",
    "#.....#.....#",
    "#...........#",
    "#.....#.....#",
    "#.....#.....#",
    "##.####.....#",
    "#.....###.###",
    "#.....#.....#",
    "#.....#.....#",
    "#...........#",
    "#.....#.....#",
    "#############",
)
_MOVES = ((-1, 0), (0, 1), (1, 0), (0, -1))  # up, right, down, left
_HALLWAYS = ((3, 6), (6, 2), (7, 9), (10, 6))


class _Rooms:
    """The tests' four-rooms task (Sutton, Precup & Singh 1999): 104 cells numbered row-major, index
    observations, the intended move with probability 2/3 else one of the other three, reward 1 on entering
    the goal (episode end), truncation after max_steps. It offers what make_hallway_options reads (rooms,
    room_hallways, move, cell_index, num_actions)."""

    num_actions = 4

    def __init__(self, goal=(7, 9), start=(1, 1), slip=1 / 3, max_steps=1000, seed=0) -> None:
        self.cells = [(r, c) for r, row in enumerate(_ROOMS_LAYOUT) for c, ch in enumerate(row) if ch == "."]
        self.index = {cell: i for i, cell in enumerate(self.cells)}
        self.num_states = len(self.cells)
        self.hallways = list(_HALLWAYS)
        self.rooms = [[c for c in self.cells if self._room(c) == k] for k in range(4)]
        self.goal, self.start, self.slip, self.max_steps = goal, start, slip, max_steps
        self.rng = np.random.default_rng(seed)
        self.agent, self.steps = start, 0

    @staticmethod
    def _room(cell):
        if cell in _HALLWAYS:
            return -1
        r, c = cell
        return (0 if r < (6 if c < 6 else 7) else 2) + (0 if c < 6 else 1)

    def room_hallways(self, room):
        return [h for h in self.hallways if room in {self._room((h[0] + dr, h[1] + dc)) for dr, dc in _MOVES}]

    def cell_index(self, cell):
        return int(cell) if isinstance(cell, (int, np.integer)) else self.index[tuple(cell)]

    def move(self, cell, direction):
        nxt = (cell[0] + _MOVES[direction][0], cell[1] + _MOVES[direction][1])
        return nxt if nxt in self.index else cell

    def reset(self, seed=None, options=None):
        if seed is not None:
            self.rng = np.random.default_rng(seed)
        self.agent, self.steps = self.start, 0
        return self.index[self.agent], {}

    def step(self, action):
        assert action in range(4), f"a primitive action must be 0..3, got {action!r}"
        direction = int(action)
        if self.rng.random() < self.slip:
            direction = [a for a in range(4) if a != direction][int(self.rng.integers(3))]
        self.agent = self.move(self.agent, direction)
        self.steps += 1
        terminated = self.agent == self.goal
        truncated = not terminated and self.steps >= self.max_steps
        return self.index[self.agent], float(terminated), terminated, truncated, {}


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
    constant = impl.Option(None, lambda s: 0, beta)  # a constant probability works the same
    n = 4000
    draws, constant_draws = impl.run(_terminations, [option, constant], n)
    assert len(draws) == len(constant_draws) == n
    assert abs(np.mean(draws) - beta) < 0.03
    assert abs(np.mean(constant_draws) - beta) < 0.03


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
def test_hallway_options_structure(impl, opts, envs):
    """8 options; each starts in its room (and the room's other hallway) and stops outside the room."""
    env = envs.FourRoomsEnv()
    options = opts.make_hallway_options(env)
    assert len(options) == 8
    assert sorted(o.option_id for o in options) == list(range(8))
    cells, rooms, hallways = env.cells, env.rooms, env.hallways
    index = {cell: i for i, cell in enumerate(cells)}
    for k, table in enumerate(impl.run(_option_tables, options, env.num_states)):
        room = k // 2
        inside = [index[c] for c in rooms[room]]
        assert all(table["init"][s] for s in inside)
        assert all(table["beta"][s] == 0.0 for s in inside)
        assert all(table["beta"][index[h]] == 1.0 for h in hallways)
        starts = {cells[s] for s in range(len(cells)) if table["init"][s]}
        assert len(starts - set(rooms[room])) == 1  # the non-target hallway


@pytest.mark.shape
@pytest.mark.points(0)
def test_hallway_options_reach_their_hallway_from_every_cell(impl, opts, envs):
    """With slip 0, each hallway option leads from every cell of its initiation set to its hallway by a
    shortest path (Manhattan distance inside a room)."""
    env = envs.FourRoomsEnv()
    options = opts.make_hallway_options(env)
    cells = env.cells
    assert sorted(cells) == sorted(_Rooms().cells)
    index, rooms = {cell: i for i, cell in enumerate(cells)}, _Rooms()  # the judge's own moves
    for k, table in enumerate(impl.run(_option_tables, options, len(cells))):
        target = env.room_hallways(k // 2)[k % 2]
        for s in range(len(cells)):
            if not table["init"][s]:
                continue
            cell, steps = cells[s], 0
            while True:  # deterministic moves (slip 0)
                action = table["action"][index[cell]]
                assert action is not None, (k, cells[s], cell)
                cell, steps = rooms.move(cell, action), steps + 1
                if table["beta"][index[cell]] == 1.0 or steps > 30:
                    break
            assert cell == target, (k, cells[s], cell)
            if rooms._room(cells[s]) >= 0:
                assert steps == abs(target[0] - cells[s][0]) + abs(target[1] - cells[s][1])


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
def test_smdp_update_hand_computed(impl, opts):
    """Q(s,o) += alpha (r + gamma^k max_o' Q(s',o') - Q(s,o)) with the max over options available in s'."""
    options = _primitives(opts, first_id=0)
    agent = opts.SMDPQLearningAgent(options, num_states=5, gamma=0.5, alpha=0.5)
    impl.run(_set_q, agent, 3, [1.0, 4.0, 2.0, 0.0])
    impl.run(_set_q, agent, (0, 2), 1.0)
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
    impl.run(_set_q, agent, 1, [2.0, 6.0, 4.0, 0.0, 2.0])  # max over available in s'=1 is 6
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
def test_intra_option_update_reads_beta_at_the_next_state(impl, opts):
    """U(s', o) uses beta_o(s'), not beta_o(s): beta(0) = 0.25, beta(1) = 0.75, step 0 -> 1 gives 1.75."""
    options = [
        impl.Option(None, lambda s: 0, lambda s: (0.25, 0.75, 0.5)[int(s)], option_id=0),
        opts.primitive_option(1, option_id=1),  # not consistent with action 0: only supplies max Q(s', .)
    ]
    agent = opts.SMDPQLearningAgent(options, num_states=3, gamma=0.5, alpha=0.5)
    impl.run(_set_q, agent, 1, [2.0, 6.0])  # Q(s', o) = 2, max_o' Q(s', o') = 6
    assert agent.intra_option_update(0, 0, 1.0, 1, False) == [0]
    # beta(s'=1) = 0.75: U = 0.25 * 2 + 0.75 * 6 = 5, target 1 + 0.5 * 5 = 3.5, Q = 0 + 0.5 * 3.5 = 1.75
    # (beta(s=0) = 0.25 would give U = 3, target 2.5, Q = 1.25)
    assert agent.q[0, 0] == pytest.approx(1.75)
    assert agent.q[0, 1] == 0.0


@pytest.mark.shape
def test_intra_option_update_steps_from_the_current_value(impl, opts):
    """Q(s,o) moves alpha of the way from its current value to the target: Q = 2, target 5 -> 2 + 0.5 * 3 = 3.5."""
    options = [opts.primitive_option(0, option_id=0)]  # beta = 1: U(s', o) = max_o' Q(s', o')
    agent = opts.SMDPQLearningAgent(options, num_states=2, gamma=0.5, alpha=0.5)
    impl.run(_set_q, agent, 1, [8.0])  # target = 1 + 0.5 * 8 = 5
    impl.run(_set_q, agent, (0, 0), 2.0)
    agent.intra_option_update(0, 0, 1.0, 1, False)
    # (a sign slip, Q += alpha (target + Q), gives 2 + 0.5 * 7 = 5.5)
    assert agent.q[0, 0] == pytest.approx(3.5)


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
    impl.run(_set_q, agent, 0, [1.0, 0.0])
    assert {agent.select_option(0, greedy=True) for _ in range(20)} == {0}
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


# --- contracts (CONVENTIONS §3, issue 23): inputs unchanged, generator only, bounds -----------------------


def _termination_draws(impl, options, rng):
    """Probe for assert_draws_only_from: 40 draws of should_terminate per option, all from ``rng``."""
    return [[bool(o.should_terminate(s % 3, rng)) for s in range(40)] for o in options]


@pytest.mark.shape
def test_option_return_and_options_leave_their_inputs_unchanged(impl, opts):
    """option_return leaves the caller's reward array as it was (float64 and float32) and returns the discounted
    sum; an Option's can_initiate, get_action, termination_probability and should_terminate leave an array
    state as it was and read it as the tuple (0, 1): in I, π = 2, β = 0.5 (a drawn bool), a sure stop."""
    for dtype in (np.float64, np.float32):
        ret = assert_inputs_unchanged(impl, opts.option_return, None, np.array([1.0, -2.0, 3.0], dtype), 0.5)
        assert ret == pytest.approx(1.0 + 0.5 * -2.0 + 0.25 * 3.0)  # = 0.75
    option = impl.Option({(0, 1)}, {(0, 1): 2}, lambda s: 0.5, option_id=1)
    state = np.array([0, 1])
    assert assert_inputs_unchanged(impl, option, "can_initiate", state) is True
    assert assert_inputs_unchanged(impl, option, "can_initiate", np.array([1, 0])) is False  # not in I
    assert assert_inputs_unchanged(impl, option, "get_action", state) == 2
    assert assert_inputs_unchanged(impl, option, "termination_probability", state) == 0.5
    assert isinstance(assert_inputs_unchanged(impl, option, "should_terminate", state), bool)  # β = 0.5: drawn
    sure = impl.Option(None, lambda s: 0, {(0, 1)}, option_id=2)  # stops surely in (0, 1), never elsewhere
    assert assert_inputs_unchanged(impl, sure, "should_terminate", state) is True
    assert assert_inputs_unchanged(impl, sure, "should_terminate", np.array([1, 0])) is False


@pytest.mark.shape
@pytest.mark.points(0)
def test_should_terminate_draws_only_from_rng(impl):
    """should_terminate(state, rng) (given) samples a probability beta with the rng passed only: the same
    seed gives the same stops whatever the global generators' state, which stays untouched."""
    beta = lambda s: (0.2, 0.5, 0.9)[s]  # noqa: E731 - a probability per state
    options = [impl.Option(None, lambda s: 0, 0.5), impl.Option(None, lambda s: 0, beta)]
    draws = assert_draws_only_from(impl, _termination_draws, options, kind="numpy")
    assert len(draws) == 2 and all(len(d) == 40 for d in draws)
    assert 0 < sum(draws[0]) < 40


@pytest.mark.shape
def test_targets_at_the_discount_bounds(opts):
    """gamma = 0 keeps only the first reward (no bootstrap); gamma = 1 sums undiscounted and bootstraps."""
    assert opts.option_return([2.0, 5.0, -7.0], 0.0) == pytest.approx(2.0)
    assert opts.option_return([2.0, 5.0, -7.0], 1.0) == pytest.approx(0.0)
    assert opts.smdp_target(2.0, 3, 10.0, False, 0.0) == pytest.approx(2.0)
    assert opts.smdp_target(2.0, 3, 10.0, False, 1.0) == pytest.approx(12.0)
    assert opts.intra_option_target(1.0, 2.0, 4.0, 0.5, False, 0.0) == pytest.approx(1.0)
    assert opts.intra_option_target(1.0, 2.0, 4.0, 0.5, False, 1.0) == pytest.approx(4.0)


# --- convergence -----------------------------------------------------------------------------------------

SEEDS = (0, 1, 2)
EPISODES = 60  # training episodes
GREEDY_EPISODES = 40  # episodes of the learned greedy policy, after training
RANDOM_EPISODES = 200  # episodes of the judge's random choice of options, the yardstick of the greedy policy
STEPS_BOUND = 0.8  # training must take less than this share of plain Q-learning's primitive steps
GREEDY_BOUND = 0.7  # the greedy policy then less than this share of the random choice's steps per episode
_CORNERS = ((1, 1), (1, 11), (11, 1), (11, 11))  # the start cell of rooms 0-3: each room's far corner


def _task(seed):
    """``seed``'s start and goal cells: the goal is hallway ``k mod 4`` and the start the far corner of one of
    the two rooms that do not border it, ``k = seed mod 1000 + seed // 1000`` (a seed offset moves it too). Three
    consecutive seeds each have another goal, so no fixed choice of options earns two of them: only an agent
    that learns from the rewards does."""
    k, rooms = seed % 1000 + seed // 1000, _Rooms()
    goal = _HALLWAYS[k % 4]
    far = [corner for room, corner in enumerate(_CORNERS) if goal not in rooms.room_hallways(room)]
    return {"start": far[(k // 4) % 2], "goal": goal}


def _random_argmax(values, rng):
    """The index of a largest entry of ``values``, ties broken uniformly with ``rng`` (one draw)."""
    best = np.flatnonzero(values == values.max())
    return int(best[rng.integers(len(best))])


def _run_option(env, table, state, rng):
    """Run one option (its policy and termination as tables) in the judge's env from ``state`` until it
    terminates or the episode ends: ``(next state, rewards, transitions (s, a, r, s', terminated), terminated,
    truncated)``."""
    rewards, transitions = [], []
    while True:
        action = table["action"][state]
        assert action is not None, f"the option's policy has no action in state {state}, where it runs"
        next_state, reward, terminated, truncated, _ = env.step(action)
        rewards.append(reward)
        transitions.append((state, action, reward, next_state, terminated))
        state = next_state
        if terminated or truncated or rng.random() < table["beta"][state]:
            return state, rewards, transitions, terminated, truncated


def _policy_steps(env, tables, rng, choose, episodes, stop_at=None):
    """The primitive steps of each of ``episodes`` episodes in which the judge chooses the options
    (``choose(state) -> option index``) and runs them; nothing learns. ``stop_at(steps so far) -> bool``: stop
    after the first episode at which it holds (fewer episodes are returned)."""
    steps = []
    for _ in range(episodes):
        if stop_at is not None and steps and stop_at(steps):
            break
        state, _ = env.reset()
        n, done = 0, False
        while not done:
            option = choose(state)
            assert tables[option]["init"][state], f"option {option} cannot start in state {state}"
            state, rewards, _, terminated, truncated = _run_option(env, tables[option], state, rng)
            n, done = n + len(rewards), terminated or truncated
        steps.append(n)
    return np.asarray(steps)


def _q_learning_steps(seed):
    """The judge's own plain Q-learning on ``seed``'s four rooms (primitive actions, gamma 0.9, alpha 0.125,
    epsilon 0.1, ties broken at random): the primitive steps of each of the first EPISODES episodes."""
    env, rng = _Rooms(**_task(seed), seed=seed), np.random.default_rng(seed)
    q = np.zeros((env.num_states, env.num_actions))
    steps = []
    for _ in range(EPISODES):
        s, _ = env.reset()
        n, done = 0, False
        while not done:
            a = int(rng.integers(4)) if rng.random() < 0.1 else _random_argmax(q[s], rng)
            s_next, r, terminated, truncated, _ = env.step(a)
            q[s, a] += 0.125 * (r + (0.0 if terminated else 0.9 * q[s_next].max()) - q[s, a])
            s, n, done = s_next, n + 1, terminated or truncated
        steps.append(n)
    return np.asarray(steps)


def _options_experiment(impl, opts, seed, intra_option=False, prim_steps=None):
    """An agent with the hallway options (+ primitives) on ``seed``'s four rooms, everything counted by the
    judge: ``(primitive steps of each of the EPISODES training episodes, of each of the GREEDY_EPISODES episodes
    of the learned greedy policy, of each of the RANDOM_EPISODES episodes of options chosen at random)``.

    The judge's four rooms runs every option (its policy and termination as tables); during training the
    agent chooses options and learns through its step-level API (one request per choice). Afterwards the
    judge reads the agent's table ``q`` once and runs its greedy policy (ties broken at random); the random
    choice is the judge's own, among the same options.

    Stopped once the verdict of :func:`_options_trial` is decided (the same verdict, less work for an agent
    that does not learn): training stops once its steps reach ``STEPS_BOUND`` of ``prim_steps`` in all (the
    greedy policy is then not run: ``None``), the greedy policy once its steps reach ``GREEDY_BOUND`` of the
    random choice's mean per episode over all GREEDY_EPISODES (the random choice runs first, on its own
    generators, so the greedy policy's draws are the same either way)."""
    task = _task(seed)
    env, rng = _Rooms(**task, seed=seed), np.random.default_rng(seed)
    options = opts.make_hallway_options(env) + _primitives(opts)
    agent = opts.SMDPQLearningAgent(
        options, env.num_states, gamma=0.9, alpha=0.125, epsilon=0.1, seed=seed, intra_option=intra_option
    )
    tables = impl.run(_option_tables, options, env.num_states)
    available = [[o for o in range(len(tables)) if tables[o]["init"][s]] for s in range(env.num_states)]
    training = []
    for _ in range(EPISODES):
        if prim_steps is not None and training and sum(training) / prim_steps.sum() >= STEPS_BOUND:
            return np.asarray(training), None, None
        state, _ = env.reset()
        option, n, done = agent.select_option(state), 0, False
        while not done:  # the judge's environment decides when the episode ends
            assert option in available[state], f"the agent chose option {option!r}, which cannot start in {state}"
            start = state
            state, rewards, transitions, terminated, truncated = _run_option(env, tables[option], state, rng)
            n, done = n + len(rewards), terminated or truncated
            option = impl.run(
                _learn_then_choose, agent, intra_option, start, option, rewards, transitions, state, terminated,
                truncated,
            )  # fmt: skip
        training.append(n)
    q = np.asarray(agent.q, dtype=float)
    assert q.shape == (env.num_states, len(tables)), f"agent.q should be (num_states, num_options), got {q.shape}"

    def greedy(state):
        return available[state][_random_argmax(q[state, available[state]], rng)]

    chance = np.random.default_rng([seed, 1])
    random_steps = _policy_steps(
        _Rooms(**task, seed=[seed, 2]), tables, chance,
        lambda s: available[s][int(chance.integers(len(available[s])))], RANDOM_EPISODES,
    )  # fmt: skip
    greedy_steps = _policy_steps(
        env, tables, rng, greedy, GREEDY_EPISODES,
        stop_at=lambda steps: sum(steps) / GREEDY_EPISODES / random_steps.mean() >= GREEDY_BOUND,
    )  # fmt: skip
    return np.asarray(training), greedy_steps, random_steps


def _options_trial(impl, opts, reseed, curve=None, intra_option=False):
    """One seed of the options experiment: ``trial(seed) -> (learned, detail)`` for ``seed_trials``: learned
    when the agent's training needs < 80 % of the primitive steps of plain Q-learning over the same EPISODES
    episodes, and its greedy policy afterwards < 70 % of the steps of options chosen at random."""

    def trial(seed: int) -> tuple[bool, str]:
        shifted = reseed(seed)  # the seed under --seed-offset, for the judge's own generators and the agent's
        prim = _q_learning_steps(shifted)
        training, greedy, chance = _options_experiment(impl, opts, shifted, intra_option=intra_option,
                                                       prim_steps=prim)  # fmt: skip
        if curve is not None:
            curve(f"options, seed {seed}", training, xlabel="episode", ylabel="steps to goal")
            curve(f"primitive Q-learning, seed {seed}", prim, xlabel="episode", ylabel="steps to goal")
        faster = training.sum() / prim.sum()
        if greedy is None:
            return False, (f"after {len(training)} of its {EPISODES} training episodes the agent had taken "
                           f"{faster:.2f} of plain Q-learning's steps over all {EPISODES}, not under "
                           f"{STEPS_BOUND}: stopped there")  # fmt: skip
        learned = greedy.sum() / GREEDY_EPISODES / chance.mean()  # steps per episode over all GREEDY_EPISODES
        if len(greedy) < GREEDY_EPISODES:
            return False, (f"training took {faster:.2f} of plain Q-learning's steps; the greedy policy's first "
                           f"{len(greedy)} of {GREEDY_EPISODES} episodes then already took {learned:.2f} of random "
                           f"option choice's {chance.mean():.0f} steps per episode over all {GREEDY_EPISODES}: "
                           f"stopped there")  # fmt: skip
        detail = (f"training took {faster:.2f} of plain Q-learning's steps; the greedy policy then took "
                  f"{greedy.mean():.0f} steps per episode, {learned:.2f} of random option choice's "
                  f"{chance.mean():.0f}")  # fmt: skip
        return faster < STEPS_BOUND and learned < GREEDY_BOUND, detail

    return trial


@pytest.mark.convergence
@pytest.mark.points(2)
@pytest.mark.timeout(60)
def test_smdp_q_learning_with_hallway_options_beats_primitive_q_learning(impl, opts, curve, reseed, seed_trials):
    """With hallway options (+primitives), SMDP Q-learning needs less than 80 % of plain Q-learning's primitive
    steps over 60 episodes, and its greedy policy then reaches the goal in less than 70 % of the steps of
    choosing options at random, on 2 of 3 seeds (each seed moves the start and the goal).

    Steps counted by the judge (its four rooms runs the options; plain Q-learning and the random choice are its
    own). Measured with the reference on 240 seeds (30 on each of the 8 tasks: a corner start, a hallway goal that
    does not border its room): 0.12-0.67 of the plain steps (95 % below 0.45); greedy policy 0.26-0.74 of the
    random choice's steps (95 % below 0.57, 3 seeds at 0.7 or more), where an agent that chooses at random and
    never learns takes 0.68-1.35 (1 seed below 0.7).
    Calibration (docs/calibration.md, 2026-12-04): 1 seed of 60 failed (30 on the reference, 15 on each perturbed
    reference), p 1.7 % per seed, so the estimated false-fail rate is 0.08 % (with the 240 seeds above: p 1.25 %,
    0.05 %).
    """
    seed_trials(_options_trial(impl, opts, reseed, curve), "hallway options needed < 80 % of plain Q-learning's "
                "steps, then the greedy policy < 70 % of random option choice's", seeds=SEEDS, need=2)  # fmt: skip


@pytest.mark.convergence
@pytest.mark.timeout(60)
def test_intra_option_q_learning_beats_primitive_q_learning(impl, opts, reseed, seed_trials):
    """Intra-option Q-learning with hallway options also needs less than 80 % of plain Q-learning's steps
    over 60 episodes, and its greedy policy then less than 70 % of random option choice's (2 of 3 seeds).

    Steps counted by the judge as above. Measured with the reference on the same 240 seeds: 0.16-0.74 of the plain
    steps (95 % below 0.56); greedy policy 0.26-0.71 of the random choice's steps (95 % below 0.47, 1 seed at 0.7
    or more).
    Calibration (docs/calibration.md, 2026-12-04): no seed of 60 failed (30 on the reference, 15 on each perturbed
    reference), so p ≤ 5 % per seed (rule of three) and the estimated false-fail rate is ≤ 0.73 % (with the 240
    seeds above: p 0.4 %, 0.005 %).
    """
    seed_trials(_options_trial(impl, opts, reseed, intra_option=True), "intra-option learning needed < 80 % of "
                "plain Q-learning's steps, then the greedy policy < 70 % of random option choice's", seeds=SEEDS,
                need=2)  # fmt: skip
