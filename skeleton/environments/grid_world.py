"""A small configurable grid world (Gymnasium API), including the Dyna maze of Sutton & Barto.

Reference:
    Sutton, R. S. & Barto, A. G. (2018). *Reinforcement Learning: An Introduction* (2nd ed.), MIT Press.
    Example 8.1 ("Dyna Maze", Figure 8.2): a 6 x 9 maze, start S at row 2 / column 0, goal G in the
    top-right corner, reward +1 on reaching G and 0 otherwise, four deterministic actions; moves into a wall
    or off the grid leave the agent where it is. The shortest path from S to G takes 14 steps.

Layout and indexing:
    Cells are ``(row, col)`` with row 0 at the top. The flat index of a cell is ``row * width + col``, so the
    tabular state space has ``height * width`` entries, wall cells included (they are unreachable and are
    modelled as absorbing cells in :meth:`SimpleGridWorld.transition_table`).

Actions (``Discrete(4)``): 0 = up, 1 = right, 2 = down, 3 = left.

Observations (``observation=``):
    ``"coords"``  ``(2,) float32`` ``[row, col]``            (``Box(0, [height-1, width-1])``)
    ``"onehot"``  ``(height*width,) float32`` one-hot of the flat index (``Box(0, 1)``)
    ``"index"``   ``int`` flat index                          (``Discrete(height*width)``; for tabular code)

Stochasticity (a documented extension of the example, off by default): with probability ``slip`` the
executed action is drawn uniformly from the four actions instead of the chosen one (so the intended move
still happens with probability ``1 - slip + slip/4``).

Rewards: ``goal_reward`` on the step that enters the goal (the episode then *terminates*), ``step_reward``
on every other step. Episodes are *truncated* after ``max_steps`` steps (``None``: never).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, ClassVar

import gymnasium as gym
import numpy as np
from gymnasium import spaces
from utils.checks import check_choice, check_in_range, check_positive_int

__all__ = ["SimpleGridWorld"]

Cell = tuple[int, int]

#: (d_row, d_col) of the four actions: up, right, down, left.
MOVES: tuple[Cell, ...] = ((-1, 0), (0, 1), (1, 0), (0, -1))
ACTION_NAMES: tuple[str, ...] = ("up", "right", "down", "left")

DYNA_MAZE_WALLS: tuple[Cell, ...] = ((1, 2), (2, 2), (3, 2), (4, 5), (0, 7), (1, 7), (2, 7))


class SimpleGridWorld(gym.Env):
    """A rectangular grid world with walls, a start cell and a terminating goal cell.

    Args:
        size: side length of a square grid; ``height``/``width`` override it.
        height: number of rows (default ``size``).
        width: number of columns (default ``size``).
        walls: iterable of ``(row, col)`` wall cells.
        start: start cell ``(row, col)`` (default ``(0, 0)``).
        goal: goal cell ``(row, col)`` (default the bottom-right corner).
        max_steps: truncate episodes after this many steps; ``None`` never truncates.
        slip: probability in ``[0, 1]`` that a uniformly random action replaces the chosen one.
        step_reward: reward of every step that does not enter the goal.
        goal_reward: reward of the step that enters the goal.
        observation: ``"coords"``, ``"onehot"`` or ``"index"`` (see the module docstring).
        render_mode: ``None``, ``"ansi"`` (text) or ``"rgb_array"`` (``(H*16, W*16, 3) uint8``).

    Raises:
        ValueError: for a bad size, a start/goal outside the grid or inside a wall, ``start == goal``, a
            wall outside the grid, ``slip`` outside ``[0, 1]``, or an unknown observation/render mode.
    """

    metadata: ClassVar[dict[str, Any]] = {"render_modes": ["ansi", "rgb_array"], "render_fps": 4}
    #: Pixels per cell in ``rgb_array`` renders.
    cell_pixels: ClassVar[int] = 16

    def __init__(
        self,
        size: int = 5,
        *,
        height: int | None = None,
        width: int | None = None,
        walls: Iterable[Cell] = (),
        start: Cell = (0, 0),
        goal: Cell | None = None,
        max_steps: int | None = 100,
        slip: float = 0.0,
        step_reward: float = 0.0,
        goal_reward: float = 1.0,
        observation: str = "coords",
        render_mode: str | None = None,
    ) -> None:
        super().__init__()
        self.height = check_positive_int("height", size if height is None else height)
        self.width = check_positive_int("width", size if width is None else width)
        if self.height * self.width < 2:
            raise ValueError(
                f"the grid needs at least 2 cells (a start and a goal), got height={self.height}, "
                f"width={self.width}"
            )
        self.walls: frozenset[Cell] = frozenset(self._cell("walls entry", w) for w in walls)
        self.start: Cell = self._cell("start", start)
        self.goal: Cell = self._cell("goal", (self.height - 1, self.width - 1) if goal is None else goal)
        for name, cell in (("start", self.start), ("goal", self.goal)):
            if cell in self.walls:
                raise ValueError(f"{name} {cell} lies inside a wall; remove it from walls or move the {name}")
        if self.start == self.goal:
            raise ValueError(f"start and goal must differ, both are {self.start}; the episode would be empty")
        self.max_steps = None if max_steps is None else check_positive_int("max_steps", max_steps)
        self.slip = check_in_range("slip", slip, 0.0, 1.0)
        self.step_reward = float(step_reward)
        self.goal_reward = float(goal_reward)
        self.observation = check_choice("observation", observation, ("coords", "onehot", "index"))
        self.render_mode = check_choice("render_mode", render_mode, (None, "ansi", "rgb_array"))

        self.n_states = self.height * self.width
        self.n_actions = len(MOVES)
        self.action_space = spaces.Discrete(self.n_actions)
        if observation == "coords":
            high = np.array([self.height - 1, self.width - 1], dtype=np.float32)
            self.observation_space = spaces.Box(low=np.zeros(2, np.float32), high=high, dtype=np.float32)
        elif observation == "onehot":
            self.observation_space = spaces.Box(low=0.0, high=1.0, shape=(self.n_states,), dtype=np.float32)
        else:
            self.observation_space = spaces.Discrete(self.n_states)

        self.agent_pos: Cell = self.start
        self.steps = 0
        self._needs_reset = True

    # ------------------------------------------------------------------ factories
    @classmethod
    def dyna_maze(cls, **overrides: Any) -> SimpleGridWorld:
        """The maze of Sutton & Barto Example 8.1 (6 x 9, start (2, 0), goal (0, 8), reward 1 at the goal).

        Keyword arguments override the example's settings (e.g. ``observation="onehot"``,
        ``max_steps=500``). The example has no step limit, so ``max_steps`` defaults to ``None``.
        """
        settings: dict[str, Any] = {
            "height": 6,
            "width": 9,
            "walls": DYNA_MAZE_WALLS,
            "start": (2, 0),
            "goal": (0, 8),
            "max_steps": None,
            "step_reward": 0.0,
            "goal_reward": 1.0,
        }
        settings.update(overrides)
        return cls(**settings)

    # ------------------------------------------------------------------ indexing helpers
    def _cell(self, name: str, cell: Any) -> Cell:
        try:
            row, col = (int(v) for v in cell)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"{name} must be a (row, col) pair of integers, got {cell!r}") from exc
        if not (0 <= row < self.height and 0 <= col < self.width):
            raise ValueError(
                f"{name} {cell!r} lies outside the {self.height} x {self.width} grid "
                f"(rows 0..{self.height - 1}, columns 0..{self.width - 1})"
            )
        return (row, col)

    def state_to_index(self, cell: Cell) -> int:
        """Flat index ``row * width + col`` of a ``(row, col)`` cell."""
        row, col = self._cell("cell", cell)
        return row * self.width + col

    def index_to_state(self, index: int) -> Cell:
        """The ``(row, col)`` cell of a flat index in ``[0, height * width)``."""
        if not (0 <= int(index) < self.n_states) or isinstance(index, bool):
            raise ValueError(f"index must be in [0, {self.n_states}), got {index!r}")
        return divmod(int(index), self.width)

    def free_cells(self) -> list[Cell]:
        """All cells that are not walls, in flat-index order."""
        return [
            divmod(i, self.width) for i in range(self.n_states) if divmod(i, self.width) not in self.walls
        ]

    def encode(self, cell: Cell) -> np.ndarray | int:
        """The observation of ``cell`` under this env's observation mode."""
        row, col = cell
        if self.observation == "coords":
            return np.array([row, col], dtype=np.float32)
        index = row * self.width + col
        if self.observation == "index":
            return index
        obs = np.zeros(self.n_states, dtype=np.float32)
        obs[index] = 1.0
        return obs

    def move(self, cell: Cell, action: int) -> Cell:
        """The deterministic successor of ``cell`` under ``action`` (walls and edges block)."""
        d_row, d_col = MOVES[action]
        row, col = cell[0] + d_row, cell[1] + d_col
        if not (0 <= row < self.height and 0 <= col < self.width) or (row, col) in self.walls:
            return cell
        return (row, col)

    # ------------------------------------------------------------------ gymnasium API
    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray | int, dict[str, Any]]:
        """Start a new episode at ``start`` (or at ``options["start"]``, a free ``(row, col)`` cell).

        Returns:
            ``(observation, info)``; ``info`` holds ``"position"`` and ``"steps"``.
        """
        super().reset(seed=seed)
        start = self.start
        if options and options.get("start") is not None:
            start = self._cell("options['start']", options["start"])
            if start in self.walls or start == self.goal:
                raise ValueError(f"options['start'] must be a free, non-goal cell, got {start}")
        self.agent_pos = start
        self.steps = 0
        self._needs_reset = False
        return self.encode(self.agent_pos), self._info()

    def step(self, action: int) -> tuple[np.ndarray | int, float, bool, bool, dict[str, Any]]:
        """Move one cell; returns ``(observation, reward, terminated, truncated, info)``.

        Raises:
            ValueError: for an action outside ``{0, 1, 2, 3}``.
            RuntimeError: when called before :meth:`reset` or after the episode ended.
        """
        if self._needs_reset:
            raise RuntimeError(
                "step() called before reset() or after the episode ended; call env.reset() first"
            )
        if isinstance(action, bool) or not self.action_space.contains(action):
            raise ValueError(f"action must be an integer in [0, {self.n_actions}), got {action!r}")
        action = int(action)
        executed = action
        if self.slip > 0 and self.np_random.random() < self.slip:
            executed = int(self.np_random.integers(self.n_actions))
        self.agent_pos = self.move(self.agent_pos, executed)
        self.steps += 1
        terminated = self.agent_pos == self.goal
        reward = self.goal_reward if terminated else self.step_reward
        truncated = (not terminated) and self.max_steps is not None and self.steps >= self.max_steps
        self._needs_reset = terminated or truncated
        info = self._info()
        info["executed_action"] = executed
        return self.encode(self.agent_pos), float(reward), bool(terminated), bool(truncated), info

    def _info(self) -> dict[str, Any]:
        return {"position": self.agent_pos, "steps": self.steps}

    # ------------------------------------------------------------------ planning
    def transition_table(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The exact MDP, for dynamic programming over flat indices.

        Returns:
            P: ``(nS, nA, nS) float64``, ``P[s, a, s2]`` = probability of moving from ``s`` to ``s2`` under
                ``a``; every row sums to 1.
            R: ``(nS, nA) float64`` expected reward of taking ``a`` in ``s``.
            terminal: ``(nS,) bool``, True at the goal. Terminal cells and wall cells are absorbing with
                zero reward, so ``V = R + gamma * P V`` needs no special casing.
        """
        n_s, n_a = self.n_states, self.n_actions
        P = np.zeros((n_s, n_a, n_s), dtype=np.float64)
        R = np.zeros((n_s, n_a), dtype=np.float64)
        terminal = np.zeros(n_s, dtype=bool)
        terminal[self.state_to_index(self.goal)] = True
        for s in range(n_s):
            cell = self.index_to_state(s)
            if terminal[s] or cell in self.walls:
                P[s, :, s] = 1.0
                continue
            successors = [self.state_to_index(self.move(cell, a)) for a in range(n_a)]
            for a in range(n_a):
                P[s, a, successors[a]] += 1.0 - self.slip
                for s2 in successors:
                    P[s, a, s2] += self.slip / n_a
        goal_index = self.state_to_index(self.goal)
        reward_of_next = np.full(n_s, self.step_reward)
        reward_of_next[goal_index] = self.goal_reward
        live = ~terminal & np.array([self.index_to_state(s) not in self.walls for s in range(n_s)])
        R[live] = P[live] @ reward_of_next
        return P, R, terminal

    # ------------------------------------------------------------------ rendering
    def render(self) -> str | np.ndarray | None:
        """``"ansi"``: text grid (``#`` wall, ``G`` goal, ``A`` agent, ``.`` free);
        ``"rgb_array"``: ``(height*16, width*16, 3) uint8`` image; ``None``: nothing."""
        if self.render_mode is None:
            return None
        if self.render_mode == "ansi":
            rows = []
            for r in range(self.height):
                row = []
                for c in range(self.width):
                    cell = (r, c)
                    if cell == self.agent_pos:
                        row.append("A")
                    elif cell in self.walls:
                        row.append("#")
                    else:
                        row.append("G" if cell == self.goal else ".")
                rows.append("".join(row))
            return "\n".join(rows) + "\n"
        px = self.cell_pixels
        image = np.full((self.height * px, self.width * px, 3), 255, dtype=np.uint8)
        colours = {
            "wall": (40, 40, 40),
            "goal": (60, 180, 75),
            "agent": (230, 25, 75),
            "start": (200, 200, 240),
        }

        def paint(cell: Cell, colour: tuple[int, int, int]) -> None:
            r, c = cell
            image[r * px : (r + 1) * px, c * px : (c + 1) * px] = colour

        paint(self.start, colours["start"])
        for wall in self.walls:
            paint(wall, colours["wall"])
        paint(self.goal, colours["goal"])
        paint(self.agent_pos, colours["agent"])
        image[::px, :] = 180  # grid lines
        image[:, ::px] = 180
        return image

    def close(self) -> None:
        """Nothing to release."""
