"""Tests of the hierarchical-RL environments (given code: every test carries points(0))."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from grader.judge.episodes import JudgeView, space_from_spec, space_spec

pytestmark = pytest.mark.component("HierarchicalRLEnvironment")

HALLWAYS = [(3, 6), (6, 2), (7, 9), (10, 6)]
#: PointMassGoalEnv's "gap" walls (x_min, y_min, x_max, y_max): a wall at x = 0, a gap at y in [0.4, 0.8].
GAP_WALLS = ((-0.05, -1.0, 0.05, 0.4), (-0.05, 0.8, 0.05, 1.0))


@pytest.fixture
def envs(impl):
    """The environments module of the implementation under test."""
    return impl.module("hierarchical_rl.environments")


def _check_env(impl, env) -> None:
    from gymnasium.utils.env_checker import check_env

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "no spec" / render-mode notes of the checker
        check_env(JudgeView(impl, env), skip_render_check=False)


def _class_names(impl, obj):
    """Probe: the qualified names of the classes of ``obj`` (its MRO), as strings."""
    return [f"{c.__module__}.{c.__qualname__}" for c in type(obj).__mro__]


def _slip_directions(impl, env, n):
    """Probe: the direction actually taken by n 'right' steps from (2, 3) (info['direction'])."""
    out = []
    for _ in range(n):
        env.reset(options={"start": (2, 3)})
        out.append(env.step(1)[4]["direction"])
    return out


def _play(impl, env, seed, actions, cell_key=None):
    """Probe: reset(seed) then the actions until the episode ends; the observations (and info[cell_key])."""
    env.reset(seed=seed)
    out = []
    for a in actions:
        obs, _, term, trunc, info = env.step(a)
        out.append((obs, None if cell_key is None else info[cell_key]))
        if term or trunc:
            break
    return out


def _in_walls(point, walls) -> bool:
    x, y = float(point[0]), float(point[1])
    return any(x0 <= x <= x1 and y0 <= y <= y1 for x0, y0, x1, y1 in walls)


# --- four rooms ------------------------------------------------------------------------------------------


@pytest.mark.shape
@pytest.mark.points(0)
@pytest.mark.parametrize("observation", ["index", "coords", "onehot"])
def test_four_rooms_passes_gymnasium_env_checker(impl, envs, observation):
    """FourRoomsEnv passes gymnasium's check_env for every observation type."""
    _check_env(impl, envs.FourRoomsEnv(observation=observation, render_mode="ansi"))


@pytest.mark.shape
@pytest.mark.points(0)
def test_four_rooms_layout_is_the_standard_one(envs):
    """104 free cells, the four standard hallways, rooms of 25/30/25/20 cells."""
    env = envs.FourRoomsEnv()
    assert env.num_states == len(env.cells) == 104
    assert sorted(env.hallways) == HALLWAYS
    assert [len(room) for room in env.rooms] == [25, 30, 25, 20]
    assert env.room_of((1, 1)) == 0 and env.room_of((1, 11)) == 1
    assert env.room_of((11, 1)) == 2 and env.room_of((11, 11)) == 3
    assert all(env.room_of(h) == -1 for h in HALLWAYS)
    assert env.hallway_rooms((3, 6)) == (0, 1) and env.hallway_rooms((7, 9)) == (1, 3)
    assert env.room_of(env.cell_index((8, 8))) == 3  # indices work too


@pytest.mark.shape
@pytest.mark.points(0)
def test_four_rooms_observation_types_agree(envs):
    """index, coords and onehot observations describe the same cell."""
    obs = {}
    for kind in ("index", "coords", "onehot"):
        env = envs.FourRoomsEnv(observation=kind, start=(2, 3), slip=0.0)
        env.reset(seed=0)
        obs[kind], *_ = env.step(1)  # right
    env = envs.FourRoomsEnv()
    assert env.cells[obs["index"]] == (2, 4)
    np.testing.assert_array_equal(obs["coords"], np.array([2.0, 4.0], dtype=np.float32))
    assert obs["onehot"].shape == (104,) and obs["onehot"].sum() == 1.0
    assert {env.obs_to_index(o) for o in obs.values()} == {obs["index"]}


@pytest.mark.property
@pytest.mark.points(0)
def test_four_rooms_slip_statistics(impl, envs):
    """With slip 1/3 the intended move happens ~2/3 of the time, each other move ~1/9."""
    env = envs.FourRoomsEnv(start=(2, 3))  # all four neighbours of (2, 3) are free
    env.reset(seed=123)
    n = 3000
    directions = impl.run(_slip_directions, env, n)
    assert len(directions) == n
    counts = np.zeros(4)
    for d in directions:
        counts[d] += 1
    freq = counts / n
    assert abs(freq[1] - 2 / 3) < 0.04
    for d in (0, 2, 3):
        assert abs(freq[d] - 1 / 9) < 0.03


@pytest.mark.shape
@pytest.mark.points(0)
def test_four_rooms_without_slip_is_deterministic_and_walls_block(envs):
    """slip=0: moves are exact; moving into a wall leaves the agent in place."""
    env = envs.FourRoomsEnv(start=(1, 1), slip=0.0)
    env.reset(seed=0)
    _, _, _, _, info = env.step(0)  # up into the outer wall
    assert info["cell"] == (1, 1)
    _, _, _, _, info = env.step(2)  # down
    assert info["cell"] == (2, 1)


@pytest.mark.shape
@pytest.mark.points(0)
def test_four_rooms_goal_is_movable(envs):
    """reset(options={'goal': g}) moves the goal; entering it gives goal_reward and terminates."""
    env = envs.FourRoomsEnv(slip=0.0, goal_reward=2.0, step_reward=-0.5)
    env.reset(seed=0, options={"goal": (9, 9), "start": (9, 7)})
    assert env.goal == (9, 9)
    _, r1, term1, _, _ = env.step(1)
    _, r2, term2, _, _ = env.step(1)
    assert (r1, term1) == (-0.5, False)
    assert (r2, term2) == (2.0, True)
    env.reset(seed=1)  # the goal stays where it was moved
    assert env.goal == (9, 9) and env.agent != (9, 9)


@pytest.mark.shape
@pytest.mark.points(0)
def test_four_rooms_truncates_after_max_steps(envs):
    """The episode is truncated (not terminated) after max_steps steps."""
    env = envs.FourRoomsEnv(start=(1, 1), slip=0.0, max_steps=3)
    env.reset(seed=0)
    flags = [env.step(0)[2:4] for _ in range(3)]
    assert flags == [(False, False), (False, False), (False, True)]


@pytest.mark.shape
@pytest.mark.points(0)
@pytest.mark.parametrize("slip", [0.0, 1 / 3, 1.0])
def test_four_rooms_transition_table_is_stochastic(envs, slip):
    """transition_table() is (104, 4, 104), non-negative, each row sums to 1."""
    p = envs.FourRoomsEnv(slip=slip).transition_table()
    assert p.shape == (104, 4, 104)
    assert (p >= 0).all()
    np.testing.assert_allclose(p.sum(-1), 1.0, atol=1e-12)


@pytest.mark.shape
@pytest.mark.points(0)
def test_four_rooms_transition_table_matches_hand_computed_row(envs):
    """From the corner (1, 1), 'right' with slip 1/3: 2/3 right, 2/9 stays (up/left blocked), 1/9 down."""
    env = envs.FourRoomsEnv()
    p = env.transition_table()[env.cell_index((1, 1)), 1]
    assert p[env.cell_index((1, 2))] == pytest.approx(2 / 3)
    assert p[env.cell_index((1, 1))] == pytest.approx(2 / 9)
    assert p[env.cell_index((2, 1))] == pytest.approx(1 / 9)


@pytest.mark.shape
@pytest.mark.points(0)
def test_four_rooms_render_ansi(envs):
    """The ANSI render is 13 lines of 13 characters holding the agent and the goal."""
    env = envs.FourRoomsEnv(render_mode="ansi", start=(1, 1), goal=(11, 11))
    env.reset(seed=0)
    lines = env.render().splitlines()
    assert len(lines) == 13 and all(len(line) == 13 for line in lines)
    assert lines[1][1] == "A" and lines[11][11] == "G"


@pytest.mark.shape
@pytest.mark.points(0)
@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"goal": (0, 0)}, "goal"),
        ({"goal": (6, 6)}, "goal"),
        ({"goal": (20, 3)}, "goal"),
        ({"start": (6, 0)}, "start"),
        ({"slip": 1.5}, "slip"),
        ({"slip": -0.1}, "slip"),
        ({"observation": "pixels"}, "observation"),
        ({"max_steps": 0}, "max_steps"),
        ({"start": (7, 9)}, "start"),  # the default goal
    ],
)
def test_four_rooms_bad_arguments_raise(envs, kwargs, name):
    """A goal/start in a wall or outside, a slip outside [0, 1], ... raise ValueError naming the argument."""
    with pytest.raises(ValueError, match=name):
        envs.FourRoomsEnv(**kwargs)


@pytest.mark.property
@pytest.mark.points(0)
@given(actions=st.lists(st.integers(0, 3), min_size=1, max_size=60), seed=st.integers(0, 2**16))
def test_four_rooms_agent_stays_on_free_cells(impl, envs, actions, seed):
    """Whatever the actions, the agent is always on a free cell and the observation is valid."""
    env = envs.FourRoomsEnv()
    space = space_from_spec(impl.run(space_spec, env.observation_space))
    cells = env.cells
    steps = impl.run(_play, env, seed, actions, "cell")
    assert 1 <= len(steps) <= len(actions)
    for obs, cell in steps:
        assert space.contains(obs)
        assert cell in cells


# --- point mass ------------------------------------------------------------------------------------------


@pytest.mark.shape
@pytest.mark.points(0)
@pytest.mark.parametrize("walls", ["none", "gap"])
@pytest.mark.parametrize("flatten", [False, True])
def test_point_mass_passes_gymnasium_env_checker(impl, envs, walls, flatten):
    """PointMassGoalEnv passes gymnasium's check_env (Dict and flat observations)."""
    _check_env(impl, envs.PointMassGoalEnv(walls=walls, flatten=flatten, render_mode="ansi"))


@pytest.mark.shape
@pytest.mark.points(0)
def test_point_mass_observation_layout(envs):
    """Dict observation: observation = achieved_goal = position, desired_goal = goal; flatten: position."""
    env = envs.PointMassGoalEnv(start=(0.1, 0.2), goal=(0.5, -0.5))
    obs, info = env.reset(seed=0)
    assert set(obs) == {"observation", "achieved_goal", "desired_goal"}
    np.testing.assert_allclose(obs["observation"], [0.1, 0.2], rtol=1e-6)
    np.testing.assert_allclose(obs["achieved_goal"], [0.1, 0.2], rtol=1e-6)
    np.testing.assert_allclose(obs["desired_goal"], [0.5, -0.5], rtol=1e-6)
    assert env.goal_dim == 2
    flat = envs.PointMassGoalEnv(start=(0.1, 0.2), goal=(0.5, -0.5), flatten=True)
    obs, info = flat.reset(seed=0)
    assert obs.shape == (2,) and obs.dtype == np.float32
    np.testing.assert_allclose(info["desired_goal"], [0.5, -0.5], rtol=1e-6)


@pytest.mark.shape
@pytest.mark.points(0)
def test_point_mass_moves_by_dt_times_speed(envs):
    """One step moves by dt * max_speed * action."""
    env = envs.PointMassGoalEnv(start=(0.0, 0.0), goal=(0.9, 0.9), dt=0.1, max_speed=2.0)
    env.reset(seed=0)
    obs, *_ = env.step(np.array([1.0, -0.5], dtype=np.float32))
    np.testing.assert_allclose(obs["observation"], [0.2, -0.1], atol=1e-6)


@pytest.mark.shape
@pytest.mark.points(0)
@pytest.mark.parametrize("reward_type", ["sparse", "dense"])
def test_point_mass_compute_reward_is_vectorised_and_matches_step(envs, reward_type):
    """compute_reward on a batch equals the per-step rewards and keeps the batch shape."""
    env = envs.PointMassGoalEnv(reward_type=reward_type, start=(-0.5, -0.5), goal=(-0.2, -0.5))
    obs, _ = env.reset(seed=0)
    achieved, desired, rewards = [], [], []
    for _ in range(5):
        obs, r, term, _, _ = env.step(np.array([1.0, 0.0], dtype=np.float32))
        achieved.append(obs["achieved_goal"])
        desired.append(obs["desired_goal"])
        rewards.append(r)
        if term:
            break
    batch = env.compute_reward(np.stack(achieved), np.stack(desired), {})
    assert batch.shape == (len(rewards),)
    np.testing.assert_allclose(batch, rewards, atol=1e-6)
    grid = env.compute_reward(np.zeros((3, 4, 2)), np.full((3, 4, 2), 0.05), {})
    assert grid.shape == (3, 4)


@pytest.mark.shape
@pytest.mark.points(0)
def test_point_mass_sparse_and_dense_rewards_hand_computed(envs):
    """sparse: 0 within distance_threshold else -1; dense: minus the distance."""
    sparse = envs.PointMassGoalEnv(distance_threshold=0.1)
    dense = envs.PointMassGoalEnv(reward_type="dense")
    a = np.array([[0.0, 0.0], [0.0, 0.0]])
    g = np.array([[0.06, 0.08], [0.3, 0.4]])  # distances 0.1 and 0.5
    np.testing.assert_allclose(sparse.compute_reward(a, g, None), [0.0, -1.0])
    np.testing.assert_allclose(dense.compute_reward(a, g, None), [-0.1, -0.5], atol=1e-6)


@pytest.mark.shape
@pytest.mark.points(0)
def test_point_mass_success_flag_and_termination(envs):
    """Reaching the goal sets info['is_success'] = 1, reward 0, and terminates the episode."""
    env = envs.PointMassGoalEnv(start=(0.0, 0.0), goal=(0.15, 0.0), distance_threshold=0.1)
    env.reset(seed=0)
    _, r, term, _, info = env.step(np.array([1.0, 0.0]))
    assert (r, term, info["is_success"]) == (0.0, True, 1.0)
    env = envs.PointMassGoalEnv(start=(0.0, 0.0), goal=(0.9, 0.0), terminate_on_success=False, max_steps=2)
    env.reset(seed=0)
    _, r, term, trunc, info = env.step(np.array([1.0, 0.0]))
    assert (r, term, trunc, info["is_success"]) == (-1.0, False, False, 0.0)
    assert env.step(np.array([1.0, 0.0]))[3] is True  # truncated after max_steps


@pytest.mark.shape
@pytest.mark.points(0)
def test_point_mass_wall_blocks_and_gap_lets_through(envs):
    """With the 'gap' wall, moving right at y=0 never crosses x=0; at y=0.6 (the gap) it does."""
    env = envs.PointMassGoalEnv(walls="gap", start=(-0.5, 0.0), goal=(0.9, -0.9), max_steps=50)
    obs, _ = env.reset(seed=0)
    for _ in range(20):
        obs, *_ = env.step(np.array([1.0, 0.0]))
    assert obs["observation"][0] < -0.04
    obs, _ = env.reset(options={"start": (-0.5, 0.6)})
    for _ in range(20):
        obs, *_ = env.step(np.array([1.0, 0.0]))
    assert obs["observation"][0] > 0.5


@pytest.mark.property
@pytest.mark.points(0)
@given(
    actions=st.lists(st.tuples(st.floats(-1, 1), st.floats(-1, 1)), min_size=1, max_size=40),
    seed=st.integers(0, 2**16),
)
def test_point_mass_stays_in_bounds_and_out_of_walls(impl, envs, actions, seed):
    """Positions stay in [-1, 1]^2 and never inside a wall."""
    env = envs.PointMassGoalEnv(walls="gap", terminate_on_success=False, max_steps=1000)
    steps = impl.run(_play, env, seed, [np.array(a, dtype=np.float32) for a in actions])
    assert len(steps) == len(actions)
    for obs, _ in steps:
        pos = obs["observation"]
        assert np.all(np.abs(pos) <= 1.0)
        assert not _in_walls(pos, GAP_WALLS)


@pytest.mark.shape
@pytest.mark.points(0)
def test_point_mass_random_goal_is_resampled_per_episode(envs):
    """Without a fixed goal, reset draws a new free goal that is not already reached."""
    env = envs.PointMassGoalEnv(walls="gap")
    goals = []
    for seed in range(5):
        obs, info = env.reset(seed=seed)
        goals.append(tuple(obs["desired_goal"]))
        assert not _in_walls(obs["desired_goal"], GAP_WALLS) and info["is_success"] == 0.0
    assert len(set(goals)) == 5
    obs, _ = env.reset(options={"goal": (0.5, 0.5)})
    np.testing.assert_allclose(obs["desired_goal"], [0.5, 0.5])


@pytest.mark.shape
@pytest.mark.points(0)
@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"goal": (0.0, 0.0), "walls": "gap"}, "goal"),
        ({"goal": (1.5, 0.0)}, "goal"),
        ({"start": (0.0, -0.5), "walls": "gap"}, "start"),
        ({"dt": 0.0}, "dt"),
        ({"distance_threshold": -1.0}, "distance_threshold"),
        ({"reward_type": "shaped"}, "reward_type"),
        ({"walls": "maze"}, "walls"),
        ({"walls": [(0.5, 0.0, 0.1, 1.0)]}, "walls"),
        ({"max_steps": 0}, "max_steps"),
    ],
)
def test_point_mass_bad_arguments_raise(envs, kwargs, name):
    """Bad constructor arguments raise ValueError naming the argument."""
    with pytest.raises(ValueError, match=name):
        envs.PointMassGoalEnv(**kwargs)


# --- factory ---------------------------------------------------------------------------------------------


@pytest.mark.shape
@pytest.mark.points(0)
def test_factory_makes_every_named_environment(impl, envs):
    """HierarchicalRLEnvironment.make/names/shortcuts build the environments; unknown names raise."""
    factory = impl.HierarchicalRLEnvironment
    assert {"four_rooms", "point_mass"} <= set(factory.names())
    for name in factory.names():
        env = factory.make(name)
        env.reset(seed=0)
    four_rooms = "hierarchical_rl.environments.FourRoomsEnv"
    point_mass = "hierarchical_rl.environments.PointMassGoalEnv"
    assert four_rooms in impl.run(_class_names, factory.make("four_rooms", slip=0.0))
    assert four_rooms in impl.run(_class_names, factory.four_rooms())
    assert point_mass in impl.run(_class_names, factory.point_mass(flatten=True))
    assert point_mass in impl.run(_class_names, factory("point_mass"))
    with pytest.raises(ValueError, match="name"):
        factory.make("mujoco_ant")
