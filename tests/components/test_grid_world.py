"""SimpleGridWorld: given code (no student tasks), so every test carries ``points(0)``."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

pytestmark = pytest.mark.component("SimpleGridWorld")

UP, RIGHT, DOWN, LEFT = 0, 1, 2, 3


def value_iteration(P: np.ndarray, R: np.ndarray, gamma: float, tol: float = 1e-12) -> np.ndarray:
    """Optimal state values of the tabular MDP ``(P, R)`` (absorbing states carry zero reward)."""
    V = np.zeros(P.shape[0])
    for _ in range(10_000):
        V_new = (R + gamma * P @ V).max(axis=1)
        if np.abs(V_new - V).max() < tol:
            return V_new
        V = V_new
    return V


def _check_env(impl, observation, render_mode):
    """In the worker: gymnasium's check_env on a walled, slippery grid and on dyna_maze (raises on a problem).

    check_env needs the environment object itself (an instance of gymnasium.Env, its generators and
    spaces), so it runs where the environment lives; a failed check comes back as the exception it raised.
    """
    import warnings

    from gymnasium.utils.env_checker import check_env

    env = impl.SimpleGridWorld(
        5, walls=[(1, 1), (2, 3)], slip=0.2, observation=observation, render_mode=render_mode
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "not able to test alternative render modes": no gym.make spec
        check_env(env, skip_render_check=render_mode is None)
        check_env(impl.SimpleGridWorld.dyna_maze(observation=observation, render_mode=render_mode))


def _slip_landings(impl, env, action, draws, seed):
    """In the worker: the index of the cell ``action`` reaches from the start, once after each of ``draws``
    resets."""
    env.reset(seed=seed)
    landings = []
    for _ in range(draws):
        env.reset()
        landings.append(env.state_to_index(env.step(action)[4]["position"]))
    return landings


@pytest.mark.shape
@pytest.mark.points(0)
@pytest.mark.parametrize("observation", ["coords", "onehot", "index"])
@pytest.mark.parametrize("render_mode", [None, "ansi", "rgb_array"])
def test_passes_gymnasium_env_checker(impl, observation, render_mode):
    """gymnasium's check_env accepts the env for every observation and render mode."""
    assert impl.run(_check_env, observation, render_mode) is None


@pytest.mark.shape
@pytest.mark.points(0)
def test_walls_and_edges_block_moves(impl):
    """Moving off the grid or into a wall leaves the agent where it is; a free move changes the position."""
    env = impl.SimpleGridWorld(3, walls=[(0, 1)], start=(0, 0), goal=(2, 2))
    obs, info = env.reset(seed=0)
    np.testing.assert_array_equal(obs, [0.0, 0.0])
    for action in (UP, LEFT, RIGHT):  # edge, edge, wall at (0, 1)
        obs, reward, terminated, truncated, info = env.step(action)
        assert info["position"] == (0, 0)
        assert (reward, terminated, truncated) == (0.0, False, False)
    obs, *_ = env.step(DOWN)
    np.testing.assert_array_equal(obs, [1.0, 0.0])


@pytest.mark.shape
@pytest.mark.points(0)
def test_goal_terminates_with_goal_reward(impl):
    """Entering the goal gives goal_reward and terminates; other steps give step_reward."""
    env = impl.SimpleGridWorld(
        height=1, width=3, start=(0, 0), goal=(0, 2), step_reward=-0.5, goal_reward=10.0
    )
    env.reset(seed=0)
    assert env.step(RIGHT)[1:4] == (-0.5, False, False)
    _, reward, terminated, truncated, info = env.step(RIGHT)
    assert (reward, terminated, truncated) == (10.0, True, False)
    assert info["position"] == (0, 2)


@pytest.mark.shape
@pytest.mark.points(0)
def test_truncation_at_max_steps(impl):
    """The episode is truncated (not terminated) exactly at max_steps; step after that needs a reset."""
    env = impl.SimpleGridWorld(4, max_steps=3)
    env.reset(seed=0)
    flags = [env.step(UP)[2:4] for _ in range(3)]
    assert flags == [(False, False), (False, False), (False, True)]
    with pytest.raises(RuntimeError, match="reset"):
        env.step(UP)
    env.reset()
    assert env.step(UP)[2:4] == (False, False)


@pytest.mark.shape
@pytest.mark.points(0)
def test_onehot_and_index_observations(impl):
    """onehot observations are float32 one-hot vectors of row*width+col; index observations are that int."""
    env = impl.SimpleGridWorld(height=2, width=3, start=(1, 0), goal=(0, 2), observation="onehot")
    obs, _ = env.reset(seed=0)
    assert obs.dtype == np.float32 and obs.shape == (6,)
    np.testing.assert_array_equal(obs, np.eye(6, dtype=np.float32)[3])
    obs, *_ = env.step(RIGHT)
    assert obs.argmax() == 4 and obs.sum() == 1.0
    env = impl.SimpleGridWorld(height=2, width=3, start=(1, 0), goal=(0, 2), observation="index")
    assert env.reset(seed=0)[0] == 3
    assert env.state_to_index((1, 2)) == 5 and env.index_to_state(5) == (1, 2)


@pytest.mark.shape
@pytest.mark.points(0)
def test_render_modes(impl):
    """ansi renders one text line per row with the agent, walls and goal; rgb_array is (H*px, W*px, 3) uint8."""
    env = impl.SimpleGridWorld.dyna_maze(render_mode="ansi")
    env.reset(seed=0)
    lines = env.render().strip().split("\n")
    assert len(lines) == 6 and all(len(line) == 9 for line in lines)
    assert lines[2][0] == "A" and lines[0][8] == "G" and lines[1][2] == "#"
    env = impl.SimpleGridWorld.dyna_maze(render_mode="rgb_array")
    env.reset(seed=0)
    image = env.render()
    px = env.cell_pixels
    assert image.shape == (6 * px, 9 * px, 3) and image.dtype == np.uint8
    assert impl.SimpleGridWorld(3).render() is None


@pytest.mark.shape
@pytest.mark.points(0)
def test_transition_table_rows_are_distributions(impl):
    """P has shape (nS, nA, nS), non-negative rows summing to 1, also with slip; the goal is the only terminal."""
    env = impl.SimpleGridWorld(4, walls=[(1, 1), (2, 2)], slip=0.3, goal=(3, 0))
    P, R, terminal = env.transition_table()
    assert P.shape == (16, 4, 16) and R.shape == (16, 4) and terminal.shape == (16,)
    assert P.dtype == np.float64 and terminal.dtype == bool
    assert (P >= 0).all()
    np.testing.assert_allclose(P.sum(axis=2), 1.0)
    assert terminal.nonzero()[0].tolist() == [env.state_to_index((3, 0))]


@pytest.mark.property
@pytest.mark.points(0)
@given(
    height=st.integers(2, 5),
    width=st.integers(2, 5),
    data=st.data(),
)
def test_transition_table_matches_step(impl, height, width, data):
    """With slip=0, step() from any free cell lands where P puts probability 1 and returns R[s, a]."""
    cells = [(r, c) for r in range(height) for c in range(width)]
    goal = data.draw(st.sampled_from(cells))
    walls = data.draw(st.lists(st.sampled_from([c for c in cells if c != goal]), max_size=3, unique=True))
    free = [c for c in cells if c != goal and c not in walls]
    if not free:
        return
    start = data.draw(st.sampled_from(free))
    action = data.draw(st.integers(0, 3))
    env = impl.SimpleGridWorld(
        height=height, width=width, walls=walls, start=start, goal=goal, step_reward=-1.0, goal_reward=5.0
    )
    P, R, terminal = env.transition_table()
    env.reset(seed=0)
    _, reward, terminated, _, info = env.step(action)
    s, s2 = env.state_to_index(start), env.state_to_index(info["position"])
    assert P[s, action, s2] == 1.0
    assert R[s, action] == reward
    assert terminal[s2] == terminated


@pytest.mark.shape
@pytest.mark.points(0)
def test_slip_matches_transition_table_statistically(impl):
    """With slip, the empirical next-cell frequencies match P (4000 draws, 4-sigma margin)."""
    env = impl.SimpleGridWorld(3, start=(1, 1), goal=(0, 0), slip=0.4)
    P, _, _ = env.transition_table()
    s = env.state_to_index((1, 1))
    counts = np.zeros(env.n_states)
    for index in impl.run(_slip_landings, env, RIGHT, 4000, seed=123):
        counts[index] += 1
    freq = counts / 4000
    sigma = np.sqrt(P[s, RIGHT] * (1 - P[s, RIGHT]) / 4000)
    assert np.all(np.abs(freq - P[s, RIGHT]) <= 4 * sigma + 1e-9)
    assert P[s, RIGHT, env.state_to_index((1, 2))] == pytest.approx(0.6 + 0.1)


@pytest.mark.convergence
@pytest.mark.points(0)
def test_value_iteration_finds_the_14_step_path_of_the_dyna_maze(impl):
    """Value iteration on dyna_maze's table gives V(start) = gamma^13, and its greedy policy takes 14 steps."""
    env = impl.SimpleGridWorld.dyna_maze()
    assert (env.height, env.width, env.start, env.goal) == (6, 9, (2, 0), (0, 8))
    gamma = 0.9
    P, R, _ = env.transition_table()
    V = value_iteration(P, R, gamma)
    assert V[env.state_to_index(env.start)] == pytest.approx(gamma**13)
    Q = R + gamma * P @ V
    env.reset(seed=0)
    steps, terminated, info = 0, False, {"position": env.start}
    while not terminated and steps < 100:
        _, _, terminated, _, info = env.step(int(Q[env.state_to_index(info["position"])].argmax()))
        steps += 1
    assert terminated and steps == 14


@pytest.mark.shape
@pytest.mark.points(0)
@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"walls": [(2, 2)], "goal": (2, 2)}, "goal"),
        ({"walls": [(0, 0)]}, "start"),
        ({"start": (1, 1), "goal": (1, 1)}, "differ"),
        ({"goal": (5, 0)}, "outside"),
        ({"walls": [(0, 9)]}, "walls"),
        ({"slip": 1.5}, "slip"),
        ({"observation": "pixels"}, "observation"),
        ({"render_mode": "human"}, "render_mode"),
        ({"height": 0}, "height"),
        ({"max_steps": 0}, "max_steps"),
    ],
)
def test_bad_arguments_raise_value_errors(impl, kwargs, match):
    """Bad constructor arguments raise ValueError naming the problem."""
    with pytest.raises(ValueError, match=match):
        impl.SimpleGridWorld(3, **kwargs)


@pytest.mark.shape
@pytest.mark.points(0)
def test_bad_action_raises_value_error(impl):
    """An action outside {0, 1, 2, 3} is a ValueError naming the action."""
    env = impl.SimpleGridWorld(3)
    env.reset(seed=0)
    with pytest.raises(ValueError, match="action"):
        env.step(4)
