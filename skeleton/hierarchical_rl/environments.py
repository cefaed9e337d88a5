"""Environments for the hierarchical-RL part of CA15 (given code: no student tasks here).

* :class:`FourRoomsEnv` - the four-rooms gridworld of Sutton, Precup & Singh (1999), "Between MDPs and
  semi-MDPs: A framework for temporal abstraction in reinforcement learning", Artificial Intelligence 112,
  the "rooms" example: an 11x11 interior (13x13 with the outer wall), four rooms joined by four hallways,
  104 free cells, four actions (up, right, down, left). A move succeeds with probability 2/3; with
  probability 1/3 the agent moves in one of the *other three* directions, chosen uniformly (``slip=1/3``).
  Moving into a wall leaves the agent where it is.
* :class:`PointMassGoalEnv` - a continuous 2-D point mass in ``[-1, 1]^2`` with velocity control and an
  optional interior wall with a gap, exposing the Gymnasium-Robotics ``GoalEnv`` interface (a Dict
  observation with ``observation``, ``achieved_goal`` and ``desired_goal`` and a vectorised
  ``compute_reward``), for goal-conditioned agents (HER, Andrychowicz et al. 2017), HAC (Levy et al. 2019)
  and FeUdal networks (Vezhnevets et al. 2017).
* ``BitFlippingEnv`` (Andrychowicz et al. 2017, §3.1) is re-exported from ``hierarchical_rl.bit_flipping``
  when that module is present.
* :class:`HierarchicalRLEnvironment` - the name the notebook imports: a small factory over the above,
  ``HierarchicalRLEnvironment.make("four_rooms", slip=0.0)``, ``HierarchicalRLEnvironment.point_mass()``,
  ``HierarchicalRLEnvironment.names()``.

Both environments are ``gymnasium.Env`` subclasses, seeded through ``reset(seed=...)`` (they draw every
random number from ``self.np_random``), and pass ``gymnasium.utils.env_checker.check_env``.

Deviations (documented):
    * Four rooms: rewards are "1 on entering the goal, 0 otherwise" by default, and the episode terminates
      at the goal; the paper's experiments used the same reward with discount γ = 0.9, which is the
      agent's business here. ``goal_reward`` and ``step_reward`` make other choices possible.
      An episode is truncated after ``max_steps`` steps (the paper has no limit).
    * Point mass: kinematic (velocity-controlled) dynamics, ``x' = clip(x + dt * max_speed * a)``; a move
      that would cross a wall stops at the last free point before it.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any, ClassVar

import gymnasium as gym
import numpy as np
from gymnasium import spaces
from utils.checks import check_choice, check_in_range, check_positive_float, check_positive_int

__all__ = [
    "FOUR_ROOMS_LAYOUT",
    "FourRoomsEnv",
    "HierarchicalRLEnvironment",
    "PointMassGoalEnv",
]

# ---------------------------------------------------------------------------------------------------------
# Four rooms
# ---------------------------------------------------------------------------------------------------------

#: The standard four-rooms layout (Sutton, Precup & Singh 1999, the rooms example): '#' wall, '.' free cell.
#: Rows/columns are 0-based; the four hallways are (3, 6), (6, 2), (7, 9) and (10, 6).
FOUR_ROOMS_LAYOUT: tuple[str, ...] = (
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

#: Action index -> (d_row, d_col): 0 up, 1 right, 2 down, 3 left.
GRID_MOVES: tuple[tuple[int, int], ...] = ((-1, 0), (0, 1), (1, 0), (0, -1))
ACTION_NAMES: tuple[str, ...] = ("up", "right", "down", "left")

Cell = tuple[int, int]


class FourRoomsEnv(gym.Env):
    """The four-rooms gridworld (Sutton, Precup & Singh 1999, the rooms example).

    States are the 104 free cells (100 room cells and 4 hallways), numbered row-major:
    ``env.cells[i]`` is the ``(row, col)`` of state ``i``. Rooms are numbered 0 top-left, 1 top-right,
    2 bottom-left, 3 bottom-right.

    Observations (``observation=``):
        * ``"index"`` (default): ``int`` state index, space ``Discrete(104)``.
        * ``"coords"``: ``(2,) float32`` ``(row, col)``, space ``Box(0, 12, (2,))``.
        * ``"onehot"``: ``(104,) float32`` one-hot of the index.
    :meth:`obs_to_index` maps any of them back to the index.

    Actions: ``Discrete(4)``: 0 up, 1 right, 2 down, 3 left. With probability ``1 - slip`` the intended
    move happens, otherwise one of the other three, uniformly (paper: ``slip = 1/3``).

    Reward: ``goal_reward`` on entering the goal (the episode then terminates), ``step_reward`` otherwise.
    Truncation after ``max_steps`` steps.

    Args:
        goal: goal cell, as ``(row, col)`` or state index (default ``(7, 9)``, the hallway between the two
            eastern rooms). Movable: ``reset(options={"goal": ...})`` or :meth:`set_goal`.
        start: start cell, ``(row, col)`` or index; ``None`` (default) draws a uniform non-goal cell at
            every reset. ``reset(options={"start": ...})`` overrides it for one episode.
        slip: probability that the move goes in one of the other three directions, in ``[0, 1]``.
        goal_reward: reward on entering the goal.
        step_reward: reward of every other step.
        max_steps: steps before truncation.
        observation: ``"index"``, ``"coords"`` or ``"onehot"``.
        render_mode: ``None`` or ``"ansi"``.

    Raises:
        ValueError: for a goal/start in a wall or outside the grid, a slip outside ``[0, 1]``, a bad
            observation type, ``max_steps < 1``.
    """

    metadata: ClassVar[dict[str, Any]] = {"render_modes": ["ansi"], "render_fps": 4}

    def __init__(
        self,
        goal: Cell | int | None = (7, 9),
        start: Cell | int | None = None,
        slip: float = 1.0 / 3.0,
        goal_reward: float = 1.0,
        step_reward: float = 0.0,
        max_steps: int = 1000,
        observation: str = "index",
        render_mode: str | None = None,
    ) -> None:
        self.layout = FOUR_ROOMS_LAYOUT
        self.height, self.width = len(self.layout), len(self.layout[0])
        self.cells: list[Cell] = [
            (r, c) for r in range(self.height) for c in range(self.width) if self.layout[r][c] != "#"
        ]
        self._index_of: dict[Cell, int] = {cell: i for i, cell in enumerate(self.cells)}
        self.num_states = len(self.cells)
        self.num_actions = len(GRID_MOVES)
        self.hallways: list[Cell] = [cell for cell in self.cells if self._is_hallway(cell)]
        self.rooms: list[list[Cell]] = [
            [cell for cell in self.cells if self._room(cell) == k] for k in range(4)
        ]

        self.slip = check_in_range("slip", slip, 0.0, 1.0)
        self.goal_reward = float(goal_reward)
        self.step_reward = float(step_reward)
        self.max_steps = check_positive_int("max_steps", max_steps)
        self.observation = check_choice("observation", observation, ("index", "coords", "onehot"))
        self.render_mode = check_choice("render_mode", render_mode, (None, "ansi"))
        self.goal: Cell = self.to_cell(goal if goal is not None else (7, 9), "goal")
        self.start: Cell | None = None if start is None else self.to_cell(start, "start")
        if self.start == self.goal:
            raise ValueError(f"start must differ from goal, both are {self.goal}; pick another start or goal")

        self.action_space = spaces.Discrete(self.num_actions)
        if self.observation == "index":
            self.observation_space = spaces.Discrete(self.num_states)
        elif self.observation == "coords":
            self.observation_space = spaces.Box(
                0.0, float(max(self.height, self.width) - 1), (2,), np.float32
            )
        else:
            self.observation_space = spaces.Box(0.0, 1.0, (self.num_states,), np.float32)
        self.agent: Cell = self.cells[0]
        self.steps = 0

    # --- layout ------------------------------------------------------------------------------------------
    def _free(self, cell: Cell) -> bool:
        r, c = cell
        return 0 <= r < self.height and 0 <= c < self.width and self.layout[r][c] != "#"

    def _is_hallway(self, cell: Cell) -> bool:
        """A free cell with walls on two opposite sides."""
        r, c = cell
        if not self._free(cell):
            return False
        vertical = not self._free((r - 1, c)) and not self._free((r + 1, c))
        horizontal = not self._free((r, c - 1)) and not self._free((r, c + 1))
        return vertical or horizontal

    def _room(self, cell: Cell) -> int:
        if self._is_hallway(cell):
            return -1
        r, c = cell
        mid_col = 6
        mid_row = 6 if c < mid_col else 7  # the horizontal wall is at row 6 (west) and row 7 (east)
        return (0 if r < mid_row else 2) + (0 if c < mid_col else 1)

    def room_of(self, cell: Cell | int) -> int:
        """Room of a cell: 0 top-left, 1 top-right, 2 bottom-left, 3 bottom-right; -1 for a hallway."""
        return self._room(self.to_cell(cell, "cell"))

    def hallway_rooms(self, hallway: Cell | int) -> tuple[int, int]:
        """The two rooms a hallway joins (sorted)."""
        cell = self.to_cell(hallway, "hallway")
        if cell not in self.hallways:
            raise ValueError(f"hallway must be one of {self.hallways}, got {cell}")
        r, c = cell
        near = {self._room((r + dr, c + dc)) for dr, dc in GRID_MOVES if self._free((r + dr, c + dc))}
        return tuple(sorted(near))  # type: ignore[return-value]

    def room_hallways(self, room: int) -> list[Cell]:
        """The two hallways of a room (in the order of :attr:`hallways`)."""
        check_choice("room", room, (0, 1, 2, 3))
        return [h for h in self.hallways if room in self.hallway_rooms(h)]

    def to_cell(self, cell: Cell | int | Sequence[int] | np.ndarray, name: str = "cell") -> Cell:
        """``(row, col)`` of a free cell given as ``(row, col)`` or state index.

        Raises:
            ValueError: naming ``name`` when the cell is a wall, outside the grid or not a valid index.
        """
        if isinstance(cell, (int, np.integer)) and not isinstance(cell, bool):
            if not 0 <= int(cell) < self.num_states:
                raise ValueError(f"{name} as a state index must be in [0, {self.num_states}), got {cell!r}")
            return self.cells[int(cell)]
        try:
            r, c = (int(v) for v in cell)  # type: ignore[union-attr]
        except (TypeError, ValueError) as exc:
            raise ValueError(f"{name} must be a (row, col) pair or a state index, got {cell!r}") from exc
        if not self._free((r, c)):
            raise ValueError(
                f"{name} must be a free cell of the {self.height}x{self.width} four-rooms grid, got {(r, c)}, "
                f"which is {'a wall' if 0 <= r < self.height and 0 <= c < self.width else 'outside the grid'}"
            )
        return (r, c)

    def cell_index(self, cell: Cell | int) -> int:
        """State index of a cell."""
        return self._index_of[self.to_cell(cell, "cell")]

    def obs_to_index(self, obs: Any) -> int:
        """State index of an observation of any of the three observation types."""
        arr = np.asarray(obs)
        if arr.ndim == 0:
            return int(arr)
        if arr.shape == (2,):
            return self._index_of[(round(float(arr[0])), round(float(arr[1])))]
        if arr.shape == (self.num_states,):
            return int(np.argmax(arr))
        raise ValueError(
            f"obs must be an index, a (2,) coordinate or a ({self.num_states},) one-hot, got {arr.shape}"
        )

    def _obs(self) -> Any:
        idx = self._index_of[self.agent]
        if self.observation == "index":
            return idx
        if self.observation == "coords":
            return np.asarray(self.agent, dtype=np.float32)
        onehot = np.zeros(self.num_states, dtype=np.float32)
        onehot[idx] = 1.0
        return onehot

    def _info(self) -> dict[str, Any]:
        return {
            "cell": self.agent,
            "state": self._index_of[self.agent],
            "room": self._room(self.agent),
            "goal": self.goal,
            "steps": self.steps,
        }

    # --- dynamics ----------------------------------------------------------------------------------------
    def move(self, cell: Cell, direction: int) -> Cell:
        """Deterministic move from ``cell`` in ``direction``: the next cell, or ``cell`` when blocked."""
        dr, dc = GRID_MOVES[direction]
        nxt = (cell[0] + dr, cell[1] + dc)
        return nxt if self._free(nxt) else cell

    def set_goal(self, goal: Cell | int) -> None:
        """Move the goal (takes effect immediately)."""
        self.goal = self.to_cell(goal, "goal")

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[Any, dict]:
        """Start an episode. ``options`` may hold ``"goal"`` (moves the goal for this and later episodes)
        and ``"start"`` (start cell of this episode)."""
        super().reset(seed=seed)
        options = options or {}
        if options.get("goal") is not None:
            self.set_goal(options["goal"])
        start = options.get("start", self.start)
        if start is not None:
            start = self.to_cell(start, "start")
            if start == self.goal:
                raise ValueError(f"start must differ from the goal {self.goal}, got {start}")
            self.agent = start
        else:
            candidates = [cell for cell in self.cells if cell != self.goal]
            self.agent = candidates[int(self.np_random.integers(len(candidates)))]
        self.steps = 0
        return self._obs(), self._info()

    def step(self, action: int) -> tuple[Any, float, bool, bool, dict]:
        """One step: the move of ``action`` with prob. ``1 - slip``, else one of the other three moves."""
        if not self.action_space.contains(action):
            raise ValueError(f"action must be an int in [0, {self.num_actions}), got {action!r}")
        action = int(action)
        direction = action
        if self.slip > 0.0 and self.np_random.random() < self.slip:
            others = [a for a in range(self.num_actions) if a != action]
            direction = others[int(self.np_random.integers(len(others)))]
        self.agent = self.move(self.agent, direction)
        self.steps += 1
        terminated = self.agent == self.goal
        reward = self.goal_reward if terminated else self.step_reward
        truncated = (not terminated) and self.steps >= self.max_steps
        info = self._info()
        info["direction"] = direction
        return self._obs(), float(reward), bool(terminated), bool(truncated), info

    def transition_table(self) -> np.ndarray:
        """The transition probabilities ``P[s, a, s']``: ``(num_states, 4, num_states) float64``.

        Each row ``P[s, a]`` sums to 1. The goal's rows are those of the dynamics too (the episode ends
        there, which is the agent's business).
        """
        p = np.zeros((self.num_states, self.num_actions, self.num_states))
        other = self.slip / (self.num_actions - 1)
        for s, cell in enumerate(self.cells):
            for a in range(self.num_actions):
                for d in range(self.num_actions):
                    prob = 1.0 - self.slip if d == a else other
                    p[s, a, self._index_of[self.move(cell, d)]] += prob
        return p

    def reward_table(self) -> np.ndarray:
        """Expected rewards ``R[s, a] = sum_s' P[s, a, s'] r(s')``: ``(num_states, 4) float64``."""
        r_next = np.full(self.num_states, self.step_reward)
        r_next[self._index_of[self.goal]] = self.goal_reward
        return self.transition_table() @ r_next

    def render(self) -> str | None:
        """ANSI picture: ``#`` wall, ``.`` free, ``H`` hallway, ``G`` goal, ``A`` agent."""
        if self.render_mode is None:
            gym.logger.warn("render() called without a render_mode; use FourRoomsEnv(render_mode='ansi')")
            return None
        return self.ansi()

    def ansi(self) -> str:
        """The grid as text (independent of ``render_mode``)."""
        rows = []
        for r in range(self.height):
            row = []
            for c in range(self.width):
                cell = (r, c)
                if cell == self.agent:
                    row.append("A")
                elif cell == self.goal:
                    row.append("G")
                elif not self._free(cell):
                    row.append("#")
                elif cell in self.hallways:
                    row.append("H")
                else:
                    row.append(".")
            rows.append("".join(row))
        return "\n".join(rows) + "\n"


# ---------------------------------------------------------------------------------------------------------
# Point mass
# ---------------------------------------------------------------------------------------------------------

#: Axis-aligned wall rectangle ``(x_min, y_min, x_max, y_max)``.
Rect = tuple[float, float, float, float]

#: Named wall sets: "none"; "gap": a vertical wall at x = 0 (thickness 0.1) with a gap at y in [0.4, 0.8].
WALL_PRESETS: dict[str, tuple[Rect, ...]] = {
    "none": (),
    "gap": ((-0.05, -1.0, 0.05, 0.4), (-0.05, 0.8, 0.05, 1.0)),
}


class PointMassGoalEnv(gym.Env):
    """A velocity-controlled 2-D point mass that must reach a goal (Gymnasium-Robotics ``GoalEnv`` API).

    State: the position ``x in [-1, 1]^2``. Action: a velocity ``a in [-1, 1]^2``; the position moves to
    ``clip(x + dt * max_speed * a, -1, 1)``, stopping at the last free point before a wall.

    Observation (default): a Dict with ``observation`` ``(2,) float32`` (the position),
    ``achieved_goal`` ``(2,) float32`` (the position) and ``desired_goal`` ``(2,) float32`` (the goal).
    With ``flatten=True`` the observation is only the position, a ``Box((2,))``: HAC and FeUdal agents
    receive the goal separately (``env.goal``, ``info["desired_goal"]``).

    Reward (:meth:`compute_reward`, vectorised over leading axes): ``"sparse"``: ``0`` when
    ``||achieved - desired|| <= distance_threshold``, ``-1`` otherwise; ``"dense"``: ``-||achieved - desired||``.
    ``info["is_success"]`` is ``1.0``/``0.0``. The episode terminates on success when
    ``terminate_on_success`` (default; Gymnasium-Robotics envs do not, set it False for that behaviour)
    and is truncated after ``max_steps`` steps.

    Args:
        walls: ``"none"``, ``"gap"`` (a vertical wall at x = 0 with a gap at y in [0.4, 0.8]) or a sequence
            of rectangles ``(x_min, y_min, x_max, y_max)``.
        start: fixed start position ``(2,)``, or ``None`` (default) for uniform free positions.
        goal: fixed goal ``(2,)``, or ``None`` (default) for a uniform free goal at every reset.
            ``reset(options={"goal": g, "start": s})`` overrides both for one episode.
        dt: time step; max_speed: speed of a full action; distance_threshold: success radius.
        reward_type: ``"sparse"`` or ``"dense"``.
        max_steps: steps before truncation.
        flatten: observation = position only (see above).
        terminate_on_success: end the episode when the goal is reached.
        render_mode: ``None`` or ``"ansi"``.

    Raises:
        ValueError: a start or goal in a wall or outside ``[-1, 1]^2``, a bad wall spec, a non-positive
            ``dt``, ``max_speed`` or ``distance_threshold``, an unknown ``reward_type``.
    """

    metadata: ClassVar[dict[str, Any]] = {"render_modes": ["ansi"], "render_fps": 10}
    goal_dim = 2
    state_dim = 2
    action_dim = 2

    def __init__(
        self,
        walls: str | Sequence[Sequence[float]] = "none",
        start: Sequence[float] | np.ndarray | None = None,
        goal: Sequence[float] | np.ndarray | None = None,
        dt: float = 0.1,
        max_speed: float = 1.0,
        distance_threshold: float = 0.1,
        reward_type: str = "sparse",
        max_steps: int = 100,
        flatten: bool = False,
        terminate_on_success: bool = True,
        render_mode: str | None = None,
    ) -> None:
        self.walls: tuple[Rect, ...] = self._parse_walls(walls)
        self.dt = check_positive_float("dt", dt)
        self.max_speed = check_positive_float("max_speed", max_speed)
        self.distance_threshold = check_positive_float("distance_threshold", distance_threshold)
        self.reward_type = check_choice("reward_type", reward_type, ("sparse", "dense"))
        self.max_steps = check_positive_int("max_steps", max_steps)
        self.flatten = bool(flatten)
        self.terminate_on_success = bool(terminate_on_success)
        self.render_mode = check_choice("render_mode", render_mode, (None, "ansi"))
        self.start = None if start is None else self._check_point("start", start)
        self.fixed_goal = None if goal is None else self._check_point("goal", goal)

        self.action_space = spaces.Box(-1.0, 1.0, (2,), np.float32)

        def box() -> spaces.Box:
            return spaces.Box(-1.0, 1.0, (2,), np.float32)

        if self.flatten:
            self.observation_space = box()
        else:
            self.observation_space = spaces.Dict(
                {"observation": box(), "achieved_goal": box(), "desired_goal": box()}
            )
        self.position = np.zeros(2, dtype=np.float32)
        self.goal = np.zeros(2, dtype=np.float32)
        self.steps = 0

    # --- geometry ----------------------------------------------------------------------------------------
    @staticmethod
    def _parse_walls(walls: str | Sequence[Sequence[float]]) -> tuple[Rect, ...]:
        if isinstance(walls, str):
            return WALL_PRESETS[check_choice("walls", walls, tuple(WALL_PRESETS))]
        rects = []
        for rect in walls:
            vals = tuple(float(v) for v in rect)
            if len(vals) != 4 or not (vals[0] < vals[2] and vals[1] < vals[3]):
                raise ValueError(
                    f"walls must hold rectangles (x_min, y_min, x_max, y_max) with x_min < x_max and "
                    f"y_min < y_max, got {rect!r}"
                )
            rects.append(vals)
        return tuple(rects)  # type: ignore[return-value]

    def in_wall(self, point: Sequence[float] | np.ndarray) -> bool:
        """Whether a point lies inside (or on the border of) a wall rectangle."""
        x, y = float(point[0]), float(point[1])
        return any(x0 <= x <= x1 and y0 <= y <= y1 for x0, y0, x1, y1 in self.walls)

    def _check_point(self, name: str, point: Sequence[float] | np.ndarray) -> np.ndarray:
        arr = np.asarray(point, dtype=np.float64)
        if arr.shape != (2,) or not np.all(np.isfinite(arr)) or np.any(np.abs(arr) > 1.0):
            raise ValueError(f"{name} must be a point (x, y) in [-1, 1]^2, got {point!r}")
        if self.in_wall(arr):
            raise ValueError(f"{name} must not lie inside a wall {self.walls}, got {tuple(arr)}")
        return arr.astype(np.float32)

    def _sample_free(self) -> np.ndarray:
        for _ in range(10_000):
            p = self.np_random.uniform(-1.0, 1.0, size=2)
            if not self.in_wall(p):
                return p.astype(np.float32)
        raise RuntimeError("could not sample a free point: the walls cover (almost) the whole square")

    def move(self, position: np.ndarray, action: np.ndarray) -> np.ndarray:
        """Next position: ``clip(x + dt * max_speed * a, -1, 1)``, stopped at the last free point before a
        wall (checked on sub-steps of at most 0.01)."""
        a = np.clip(np.asarray(action, dtype=np.float64), -1.0, 1.0)
        start = np.asarray(position, dtype=np.float64)
        target = np.clip(start + self.dt * self.max_speed * a, -1.0, 1.0)
        if not self.walls:
            return target.astype(np.float32)
        n = max(1, math.ceil(float(np.linalg.norm(target - start)) / 0.01))
        last = start
        for i in range(1, n + 1):
            p = start + (target - start) * (i / n)
            if self.in_wall(p):
                break
            last = p
        return last.astype(np.float32)

    # --- GoalEnv API -------------------------------------------------------------------------------------
    def compute_reward(
        self, achieved_goal: np.ndarray, desired_goal: np.ndarray, info: Any = None
    ) -> np.ndarray:
        """Reward of achieved vs desired goals, vectorised: ``(..., 2), (..., 2) -> (...) float32``.

        ``"sparse"``: ``-(d > distance_threshold)``; ``"dense"``: ``-d`` with ``d = ||achieved - desired||``.
        """
        d = np.linalg.norm(
            np.asarray(achieved_goal, np.float64) - np.asarray(desired_goal, np.float64), axis=-1
        )
        if self.reward_type == "sparse":
            return -(d > self.distance_threshold).astype(np.float32)
        return (-d).astype(np.float32)

    def is_success(self, achieved_goal: np.ndarray, desired_goal: np.ndarray) -> np.ndarray:
        """``1.0`` where ``||achieved - desired|| <= distance_threshold``: ``(...) float32``."""
        d = np.linalg.norm(
            np.asarray(achieved_goal, np.float64) - np.asarray(desired_goal, np.float64), axis=-1
        )
        return (d <= self.distance_threshold).astype(np.float32)

    def _obs(self) -> Any:
        if self.flatten:
            return self.position.copy()
        return {
            "observation": self.position.copy(),
            "achieved_goal": self.position.copy(),
            "desired_goal": self.goal.copy(),
        }

    def _info(self) -> dict[str, Any]:
        return {
            "is_success": float(self.is_success(self.position, self.goal)),
            "desired_goal": self.goal.copy(),
            "achieved_goal": self.position.copy(),
            "steps": self.steps,
        }

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[Any, dict]:
        """Start an episode; ``options`` may hold ``"start"`` and ``"goal"`` points for this episode."""
        super().reset(seed=seed)
        options = options or {}
        if options.get("start") is not None:
            self.position = self._check_point("start", options["start"])
        elif self.start is not None:
            self.position = self.start.copy()
        else:
            self.position = self._sample_free()
        if options.get("goal") is not None:
            self.goal = self._check_point("goal", options["goal"])
        elif self.fixed_goal is not None:
            self.goal = self.fixed_goal.copy()
        else:  # a random goal is never reached at the start
            self.goal = self._sample_free()
            for _ in range(100):
                if not self.is_success(self.position, self.goal):
                    break
                self.goal = self._sample_free()
        self.steps = 0
        return self._obs(), self._info()

    def step(self, action: np.ndarray) -> tuple[Any, float, bool, bool, dict]:
        """Move by ``dt * max_speed * action``; reward from :meth:`compute_reward`."""
        a = np.asarray(action, dtype=np.float64)
        if a.shape != (2,) or not np.all(np.isfinite(a)):
            raise ValueError(f"action must be a finite (2,) velocity in [-1, 1]^2, got {action!r}")
        self.position = self.move(self.position, a)
        self.steps += 1
        info = self._info()
        reward = float(self.compute_reward(self.position, self.goal, info))
        terminated = bool(self.terminate_on_success and info["is_success"] > 0.0)
        truncated = (not terminated) and self.steps >= self.max_steps
        return self._obs(), reward, terminated, bool(truncated), info

    def render(self) -> str | None:
        """ANSI picture on a 21x21 grid: ``#`` wall, ``G`` goal, ``A`` agent."""
        if self.render_mode is None:
            gym.logger.warn("render() called without a render_mode; use PointMassGoalEnv(render_mode='ansi')")
            return None
        return self.ansi()

    def ansi(self, size: int = 21) -> str:
        """The square as text (y up), independent of ``render_mode``."""

        def to_grid(p: np.ndarray) -> tuple[int, int]:
            col = round((float(p[0]) + 1.0) / 2.0 * (size - 1))
            row = round((1.0 - float(p[1])) / 2.0 * (size - 1))
            return row, col

        grid = [["." for _ in range(size)] for _ in range(size)]
        for r in range(size):
            for c in range(size):
                x = -1.0 + 2.0 * c / (size - 1)
                y = 1.0 - 2.0 * r / (size - 1)
                if self.in_wall((x, y)):
                    grid[r][c] = "#"
        gr, gc = to_grid(self.goal)
        grid[gr][gc] = "G"
        ar, ac = to_grid(self.position)
        grid[ar][ac] = "A"
        return "\n".join("".join(row) for row in grid) + "\n"


# ---------------------------------------------------------------------------------------------------------
# Bit flipping (defined in hierarchical_rl/bit_flipping.py)
# ---------------------------------------------------------------------------------------------------------
from hierarchical_rl.bit_flipping import BitFlippingEnv  # noqa: E402

__all__.append("BitFlippingEnv")


# ---------------------------------------------------------------------------------------------------------
# Factory
# ---------------------------------------------------------------------------------------------------------


class HierarchicalRLEnvironment:
    """Factory of the hierarchical-RL environments (the name the notebook imports).

    Examples::

        env = HierarchicalRLEnvironment.make("four_rooms", slip=0.0)
        env = HierarchicalRLEnvironment.four_rooms(goal=(9, 9))
        env = HierarchicalRLEnvironment.point_mass(walls="gap", flatten=True)
        HierarchicalRLEnvironment.names()        # ['bit_flipping', 'four_rooms', 'point_mass'] (when present)
        env = HierarchicalRLEnvironment("point_mass", reward_type="dense")   # same as make(...)

    Calling the class itself is a shortcut for :meth:`make` and returns the environment (not an instance
    of this class); with no name it makes the four-rooms gridworld.
    """

    FourRooms = FourRoomsEnv
    PointMass = PointMassGoalEnv

    @staticmethod
    def _registry() -> dict[str, Callable[..., gym.Env]]:
        return {"four_rooms": FourRoomsEnv, "point_mass": PointMassGoalEnv, "bit_flipping": BitFlippingEnv}

    def __new__(cls, name: str = "four_rooms", **kwargs: Any) -> gym.Env:  # type: ignore[misc]
        return cls.make(name, **kwargs)

    @classmethod
    def names(cls) -> list[str]:
        """Names accepted by :meth:`make`, sorted."""
        return sorted(cls._registry())

    @classmethod
    def make(cls, name: str, **kwargs: Any) -> gym.Env:
        """The environment called ``name`` (see :meth:`names`), built with ``kwargs``.

        Raises:
            ValueError: for an unknown name, listing the known ones.
        """
        registry = cls._registry()
        check_choice("name", name, tuple(registry))
        return registry[name](**kwargs)

    @staticmethod
    def four_rooms(**kwargs: Any) -> FourRoomsEnv:
        """:class:`FourRoomsEnv` (kwargs as there)."""
        return FourRoomsEnv(**kwargs)

    @staticmethod
    def point_mass(**kwargs: Any) -> PointMassGoalEnv:
        """:class:`PointMassGoalEnv` (kwargs as there)."""
        return PointMassGoalEnv(**kwargs)

    @staticmethod
    def bit_flipping(**kwargs: Any) -> BitFlippingEnv:
        """:class:`BitFlippingEnv` from ``hierarchical_rl.bit_flipping`` (kwargs as there)."""
        return BitFlippingEnv(**kwargs)
