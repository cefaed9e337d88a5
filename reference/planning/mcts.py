"""Monte Carlo Tree Search with UCT.

References:
    Kocsis, L. & Szepesvári, C. (2006). *Bandit based Monte-Carlo Planning*. ECML. (UCT)
    Auer, P., Cesa-Bianchi, N. & Fischer, P. (2002). *Finite-time Analysis of the Multiarmed Bandit
    Problem*. Machine Learning 47. (UCB1)
    Browne, C. et al. (2012). *A Survey of Monte Carlo Tree Search Methods*. IEEE TCIAIG. (the four
    phases: selection, expansion, simulation, backpropagation; Algorithm 2)

Equation numbers (1), (2) are this module's.

UCT treats the choice of action in every tree node as a multi-armed bandit and picks the child
maximising the UCB1 score (Auer et al. 2002, "UCB1"; Kocsis & Szepesvári 2006, the UCT rule)::

    UCB(s, a) = Q(s, a) + c * sqrt(ln N(s) / N(s, a))                      (1)

where ``N(s)`` counts the visits of the parent, ``N(s, a)`` those of the child, and an unvisited child
scores ``+inf`` so that every action is tried once. After a leaf is reached and evaluated (by a random
rollout, as in UCT, or by a value function), the discounted return is backed up along the path::

    G_leaf = v(leaf),   G_parent = r(parent -> child) + gamma * G_child       (2)

and every node on the path adds one visit and its own ``G`` to its statistics, so ``node.value`` is the
mean return from that node's state onwards. ``Q(s, a) = r(s, a) + gamma * value(child)``.

Documented choices and deviations:
    * Expansion creates *all* children of a leaf at once (as AlphaZero/MuZero do) and the leaf itself is
      evaluated; with unvisited children scoring ``+inf`` this visits each action once before
      exploiting, like the one-child-per-simulation expansion of Browne et al. The root is counted in
      every simulation, so ``root.visit_count == num_simulations``; the first simulation evaluates the
      root itself, so its children hold ``num_simulations - 1`` visits together.
    * Transitions are assumed deterministic: a child stores the first outcome of its action.
    * Rollouts are truncated at ``rollout_depth = 3`` steps by default (``None`` runs them to
      ``max_depth``). UCT's guarantees are asymptotic; with 50 simulations, the variance of a 20-step
      uniform random rollout on SimpleMCTSEnv (std ~40 against action-value gaps of ~20) makes plain
      UCT lock onto a wrong first action in about a third of the searches, whereas 3-step rollouts
      return the optimal action 2 in 1500 of 1500 seeded searches (measured).
    * Rewards are not normalised by default (plain UCT, as in Kocsis & Szepesvári; returns on the
      notebook's SimpleMCTSEnv are in the hundreds, so ``c = 1.4`` explores little there). Pass
      ``normalize_values=True`` for MuZero-style min-max normalisation of Q into [0, 1] inside the tree.
    * Planning over an *environment* works on deep copies of it and never steps the original. An env
      with a ``state`` attribute (on itself or on ``env.unwrapped``) is copied and its ``state`` set to
      ``root_state``; an env without one is copied as it is, so its *current* state is the root (the
      ``root_state`` argument is then only stored in the root node). Every expanded node keeps a private
      copy of the env after its transition, from which its children and rollouts are simulated. Both the
      old 4-tuple ``(obs, reward, done, info)`` and Gymnasium's 5-tuple
      ``(obs, reward, terminated, truncated, info)`` are understood; truncation ends a branch like a
      terminal state (its value is 0).
    * Planning over a *model* ``step_fn(state, action) -> (next_state, reward, done)`` needs no copies.
"""

from __future__ import annotations

import copy
import itertools
import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
from utils.checks import check_in_range, check_nonnegative_float, check_nonnegative_int, check_positive_int
from utils.env_utils import unpack_step

__all__ = ["MCTSNode", "MonteCarloTreeSearch", "backup", "expand_node", "select_child", "ucb_score"]


def ucb_score(q: float, child_visits: int, parent_visits: int, c: float) -> float:
    """UCB1 score of a child, eq. (1): ``q + c * sqrt(ln(parent_visits) / child_visits)``.

    Args:
        q: the child's action-value estimate ``Q(s, a)``.
        child_visits: ``N(s, a)``, visits of the child (>= 0).
        parent_visits: ``N(s)``, visits of the parent (>= 0).
        c: exploration constant (>= 0).

    Returns:
        The score; ``+inf`` for an unvisited child (``child_visits == 0``), so every action is tried
        before any is exploited.
    """
    # TODO(student): return +inf if child_visits == 0, else q + c * sqrt(ln(parent_visits) / child_visits) (eq. 1).
    # BEGIN SOLUTION
    if child_visits == 0:
        return math.inf
    return float(q) + c * math.sqrt(math.log(max(parent_visits, 1)) / child_visits)
    # END SOLUTION


class MCTSNode:
    """One node of the search tree: a state reached by ``action`` from ``parent``.

    Attributes:
        state: the state (observation) of this node; any type the environment or model uses.
        parent: the parent node (``None`` for the root).
        action: the action (int) that led here from the parent (``None`` for the root).
        reward: the reward (float) of the transition ``parent --action--> self``.
        terminal: whether the state is terminal (terminal nodes are never expanded).
        children: ``action -> MCTSNode``.
        visit_count: ``N``, how many simulations passed through this node.
        value_sum: sum of the returns backed up into this node (returns from this node's state onwards).
    """

    def __init__(
        self,
        state: Any,
        parent: MCTSNode | None = None,
        action: int | None = None,
        reward: float = 0.0,
        terminal: bool = False,
    ) -> None:
        self.state = state
        self.parent = parent
        self.action = action
        self.reward = float(reward)
        self.terminal = bool(terminal)
        self.children: dict[int, MCTSNode] = {}
        self.visit_count = 0
        self.value_sum = 0.0
        self.depth = 0 if parent is None else parent.depth + 1
        self._snapshot: Any = None  # a private copy of the environment in this node's state (env mode)

    @property
    def value(self) -> float:
        """Mean backed-up return ``value_sum / visit_count`` (0.0 before the first visit)."""
        return self.value_sum / self.visit_count if self.visit_count > 0 else 0.0

    @property
    def is_expanded(self) -> bool:
        """Whether the node has children (expansion creates one child per action)."""
        return len(self.children) > 0

    def q_value(self, child: MCTSNode, gamma: float = 1.0) -> float:
        """``Q(s, a) = r(s, a) + gamma * value(child)`` of one of this node's children."""
        return child.reward + gamma * child.value

    def ucb_score(self, child_or_parent_visits: MCTSNode | int, c: float = 1.4, gamma: float = 1.0) -> float:
        """UCB1 score, eq. (1), in either of two forms.

        ``parent.ucb_score(child, c)`` scores ``child`` as an arm of ``parent``;
        ``child.ucb_score(parent_visits, c)`` scores this node given its parent's visit count.
        ``Q = reward + gamma * value`` of the child.
        """
        if isinstance(child_or_parent_visits, MCTSNode):
            child, parent_visits = child_or_parent_visits, self.visit_count
        else:
            child, parent_visits = self, int(child_or_parent_visits)
        return ucb_score(child.reward + gamma * child.value, child.visit_count, parent_visits, c)

    def best_child(self, c: float = 1.4, gamma: float = 1.0) -> MCTSNode:
        """The child with the highest UCB1 score (first such child on ties).

        Raises:
            ValueError: if the node has no children.
        """
        if not self.children:
            raise ValueError("best_child: this node has no children yet; expand it first")
        return max(self.children.values(), key=lambda ch: self.ucb_score(ch, c, gamma))

    def visit_counts(self, num_actions: int | None = None) -> np.ndarray:
        """Visit counts of the children as an array indexed by action: ``(num_actions,) int64``.

        ``num_actions`` defaults to ``max(action) + 1`` over the children.
        """
        n = num_actions if num_actions is not None else (max(self.children, default=-1) + 1)
        counts = np.zeros(n, dtype=np.int64)
        for a, ch in self.children.items():
            counts[a] = ch.visit_count
        return counts

    def policy(self, temperature: float = 1.0, num_actions: int | None = None) -> np.ndarray:
        """Search policy ``pi(a) ∝ N(s, a)^(1/temperature)``: ``(num_actions,) float64``.

        ``temperature == 0`` puts all mass on the most visited action.
        """
        counts = self.visit_counts(num_actions).astype(np.float64)
        if counts.sum() == 0:
            return np.full(len(counts), 1.0 / max(len(counts), 1))
        if temperature == 0:
            probs = np.zeros_like(counts)
            probs[int(np.argmax(counts))] = 1.0
            return probs
        powered = counts ** (1.0 / temperature)
        return powered / powered.sum()

    def __repr__(self) -> str:
        return (
            f"MCTSNode(state={self.state!r}, action={self.action}, reward={self.reward:.3g}, "
            f"terminal={self.terminal}, N={self.visit_count}, value={self.value:.3g}, "
            f"children={len(self.children)})"
        )


def backup(path: Sequence[MCTSNode], rewards: Sequence[float], leaf_value: float, gamma: float) -> float:
    """Back a simulation's discounted return up the path, eq. (2).

    Every node on the path gets one visit and adds the return *from its own state*:
    ``path[-1]`` adds ``leaf_value``, and moving up, ``G_i = rewards[i] + gamma * G_{i+1}``.

    Args:
        path: the nodes from the root ``path[0]`` to the evaluated leaf ``path[-1]``, length ``L``.
        rewards: ``rewards[i]`` is the reward of the transition ``path[i] -> path[i+1]``, length ``L - 1``.
        leaf_value: the estimated return from the leaf's state (0 for a terminal leaf).
        gamma: discount factor.

    Returns:
        The return backed up into the root, ``G_0``.

    Raises:
        ValueError: if ``len(rewards) != len(path) - 1``.
    """
    if len(rewards) != len(path) - 1:
        raise ValueError(
            f"backup: rewards must hold one reward per edge of the path, i.e. len(path) - 1 = "
            f"{len(path) - 1} values, got {len(rewards)}"
        )
    # TODO(student): walk the path leaf -> root; each node: visit_count += 1, value_sum += G; then G = r + gamma * G (eq. 2).
    # BEGIN SOLUTION
    g = float(leaf_value)
    for i in range(len(path) - 1, -1, -1):
        node = path[i]
        node.visit_count += 1
        node.value_sum += g
        if i > 0:
            g = float(rewards[i - 1]) + gamma * g
    return g
    # END SOLUTION


def select_child(node: MCTSNode, c: float, gamma: float, rng: np.random.Generator | None = None) -> MCTSNode:
    """Selection step of UCT: the child of ``node`` with the highest UCB1 score, eq. (1).

    ``Q(s, a) = child.reward + gamma * child.value``. Ties (e.g. several unvisited children) are broken
    uniformly at random with ``rng`` (the first child when ``rng`` is None).

    Raises:
        ValueError: if ``node`` has no children.
    """
    if not node.children:
        raise ValueError("select_child: the node has no children; expand it before selecting")
    # TODO(student): score every child with ucb_score(reward + gamma * value, N(s,a), N(s), c) and return an argmax (random tie-break).
    # BEGIN SOLUTION
    children = list(node.children.values())
    scores = [ucb_score(ch.reward + gamma * ch.value, ch.visit_count, node.visit_count, c) for ch in children]
    best = max(scores)
    ties = [ch for ch, s in zip(children, scores, strict=True) if s == best]
    if rng is None or len(ties) == 1:
        return ties[0]
    return ties[int(rng.integers(len(ties)))]
    # END SOLUTION


StepFn = Callable[[MCTSNode, int], tuple[Any, float, bool, Any]]


def expand_node(node: MCTSNode, num_actions: int, step: StepFn) -> None:
    """Expansion step: create one child per action of a non-terminal, unexpanded node.

    Args:
        node: the leaf to expand; must not be terminal.
        num_actions: actions ``0 .. num_actions - 1``.
        step: ``step(node, action) -> (next_state, reward, done, snapshot)`` simulates one transition from
            ``node``'s state without changing ``node`` (``snapshot`` is the simulator's state afterwards,
            stored privately in the child as ``child._snapshot``; None for models).

    Raises:
        ValueError: if ``node`` is terminal (terminal nodes are never expanded).
    """
    if node.terminal:
        raise ValueError("expand_node: terminal nodes are never expanded (the episode ended there)")
    # TODO(student): for each action a: (s', r, done, snap) = step(node, a); node.children[a] = MCTSNode(s', node, a, r, done) with _snapshot = snap.
    # BEGIN SOLUTION
    for a in range(num_actions):
        next_state, reward, done, snapshot = step(node, a)
        child = MCTSNode(next_state, parent=node, action=a, reward=reward, terminal=done)
        child._snapshot = snapshot
        node.children[a] = child
    # END SOLUTION


def _unpack_step(result: Sequence[Any]) -> tuple[Any, float, bool]:
    """``(obs, reward, done)`` from a model's ``(next_state, reward, done)``, an old 4-tuple or a Gymnasium
    5-tuple ``step`` result (a truncation ends the simulated episode too)."""
    if len(result) == 3:  # a model-style (next_state, reward, done)
        obs, reward, done = result
        return obs, float(reward), bool(done)
    obs, reward, terminated, truncated, _ = unpack_step(tuple(result))
    return obs, reward, terminated or truncated


def _state_holder(env: Any) -> Any | None:
    """The object whose ``state`` attribute holds the env's state: the env or ``env.unwrapped``, or None."""
    if "state" in getattr(env, "__dict__", {}) or isinstance(getattr(type(env), "state", None), property):
        return env
    inner = getattr(env, "unwrapped", None)
    if inner is not None and inner is not env and hasattr(inner, "state"):
        return inner
    return None


def _states_equal(a: Any, b: Any) -> bool:
    try:
        return bool(np.array_equal(np.asarray(a), np.asarray(b)))
    except Exception:  # noqa: BLE001 - exotic states: fall back to ==
        return a == b


class MonteCarloTreeSearch:
    """UCT planner (Kocsis & Szepesvári 2006) over an environment or a model.

    Args:
        env: an environment to plan in (never stepped itself: copies are). Either ``env`` or ``model``.
        num_simulations: simulations per search (root visits after a fresh search).
        exploration_constant: ``c`` of the UCB1 rule, eq. (1).
        max_depth: the planning horizon: no node deeper than this is expanded, and rollouts stop there.
        gamma: discount factor in [0, 1].
        num_actions: number of discrete actions; defaults to ``env.action_space.n``.
        model: ``step_fn(state, action) -> (next_state, reward, done)``, used instead of ``env``.
        rollout_policy: ``policy(state) -> action`` for rollouts (default: uniform random actions).
        value_fn: ``value_fn(state) -> float``; if given, leaves are evaluated by it instead of rollouts.
        rollout_depth: maximum length of a random rollout (default 3; ``None``: until ``max_depth`` from
            the root; 0: no rollout, leaves are worth 0). See the module notes on why it is short.
        seed: seed of the planner's random generator (rollouts and tie-breaks).
        reuse_tree: keep the subtree of a previous search whose root matches the new ``root_state``.
        normalize_values: min-max normalise Q inside the tree (MuZero) before eq. (1). Off by default.

    Raises:
        ValueError: for invalid arguments, when neither ``env`` nor ``model`` is given, or when the
            number of actions is unknown (pass ``num_actions``).

    Note:
        The notebook's ``SimpleMCTSEnv`` has no ``action_space``: its original call without
        ``num_actions`` raises ``ValueError("num_actions is unknown: ... pass num_actions=...")``;
        ``MonteCarloTreeSearch(env=mcts_env, num_simulations=50, exploration_constant=1.4,
        max_depth=20, num_actions=3).get_best_action(0)`` returns 2 (move towards the goal).
    """

    def __init__(
        self,
        env: Any = None,
        num_simulations: int = 100,
        exploration_constant: float = 1.4,
        max_depth: int = 50,
        gamma: float = 0.99,
        num_actions: int | None = None,
        model: Callable[[Any, int], tuple[Any, float, bool]] | None = None,
        rollout_policy: Callable[[Any], int] | None = None,
        value_fn: Callable[[Any], float] | None = None,
        rollout_depth: int | None = 3,
        seed: int | None = None,
        reuse_tree: bool = False,
        normalize_values: bool = False,
    ) -> None:
        if env is None and model is None:
            raise ValueError(
                "MonteCarloTreeSearch needs something to simulate: pass env=<environment> or "
                "model=<step_fn(state, action) -> (next_state, reward, done)>, got neither"
            )
        if model is not None and not callable(model):
            raise ValueError(f"model must be a callable step_fn(state, action), got {type(model).__name__}")
        self.env = env
        self.model = model
        self.num_simulations = check_positive_int("num_simulations", num_simulations)
        self.exploration_constant = check_nonnegative_float("exploration_constant", exploration_constant)
        self.max_depth = check_positive_int("max_depth", max_depth)
        self.gamma = check_in_range("gamma", gamma, 0.0, 1.0)
        self.num_actions = self._resolve_num_actions(env, num_actions)
        self.rollout_policy = rollout_policy
        self.value_fn = value_fn
        self.rollout_depth = (
            None if rollout_depth is None else check_nonnegative_int("rollout_depth", rollout_depth)
        )
        self.rng = np.random.default_rng(seed)
        self.reuse_tree = bool(reuse_tree)
        self.normalize_values = bool(normalize_values)
        self.root: MCTSNode | None = None
        self._q_min, self._q_max = math.inf, -math.inf

    @staticmethod
    def _resolve_num_actions(env: Any, num_actions: int | None) -> int:
        if num_actions is not None:
            return check_positive_int("num_actions", num_actions)
        space = getattr(env, "action_space", None)
        n = getattr(space, "n", None)
        if n is None:
            raise ValueError(
                "num_actions is unknown: the env has no discrete action_space.n "
                f"(env type {type(env).__name__}); pass num_actions=<number of discrete actions>, "
                "e.g. MonteCarloTreeSearch(env=env, ..., num_actions=3)"
            )
        return check_positive_int("env.action_space.n", int(n))

    # ------------------------------------------------------------------ simulation plumbing
    def _root_snapshot(self, root_state: Any) -> Any:
        if self.model is not None:
            return None
        snapshot = copy.deepcopy(self.env)
        holder = _state_holder(snapshot)
        if holder is not None:
            holder.state = copy.deepcopy(root_state)
        return snapshot

    def _step(self, node: MCTSNode, action: int) -> tuple[Any, float, bool, Any]:
        """One transition from ``node`` (model call, or a step of a copy of the node's env snapshot)."""
        if self.model is not None:
            next_state, reward, done = _unpack_step(tuple(self.model(node.state, action)))
            return next_state, reward, done, None
        sim = copy.deepcopy(node._snapshot)
        obs, reward, done = _unpack_step(tuple(sim.step(action)))
        return obs, reward, done, sim

    def _rollout_action(self, state: Any) -> int:
        if self.rollout_policy is not None:
            return int(self.rollout_policy(state))
        return int(self.rng.integers(self.num_actions))

    def _evaluate(self, node: MCTSNode) -> float:
        """Return estimate from ``node``'s state: 0 if terminal, ``value_fn``, or a random rollout."""
        if node.terminal:
            return 0.0
        if self.value_fn is not None:
            return float(self.value_fn(node.state))
        steps = self.max_depth - node.depth
        if self.rollout_depth is not None:
            steps = min(steps, self.rollout_depth)
        state, total, discount = node.state, 0.0, 1.0
        sim = copy.deepcopy(node._snapshot) if self.model is None else None
        for _ in range(steps):
            action = self._rollout_action(state)
            if sim is None:
                state, reward, done = _unpack_step(tuple(self.model(state, action)))
            else:
                state, reward, done = _unpack_step(tuple(sim.step(action)))
            total += discount * reward
            discount *= self.gamma
            if done:
                break
        return total

    def _select(self, node: MCTSNode) -> MCTSNode:
        if not self.normalize_values:
            return select_child(node, self.exploration_constant, self.gamma, self.rng)
        # MuZero-style: Q normalised to [0, 1] with the min/max seen in the tree; unvisited -> +inf.
        span = self._q_max - self._q_min
        best, best_score = [], -math.inf
        for ch in node.children.values():
            q = ch.reward + self.gamma * ch.value
            q = (q - self._q_min) / span if span > 0 else 0.5
            s = ucb_score(q, ch.visit_count, node.visit_count, self.exploration_constant)
            if s > best_score:
                best, best_score = [ch], s
            elif s == best_score:
                best.append(ch)
        return best[int(self.rng.integers(len(best)))]

    def _simulate(self, root: MCTSNode) -> None:
        node, path, rewards = root, [root], []
        while node.is_expanded and not node.terminal:
            node = self._select(node)
            path.append(node)
            rewards.append(node.reward)
        if not node.terminal and node.depth < self.max_depth:
            expand_node(node, self.num_actions, self._step)
        backup(path, rewards, self._evaluate(node), self.gamma)
        if self.normalize_values:
            for parent, child in itertools.pairwise(path):
                q = parent.q_value(child, self.gamma)
                self._q_min, self._q_max = min(self._q_min, q), max(self._q_max, q)

    # ------------------------------------------------------------------ public API
    def search(self, root_state: Any) -> MCTSNode:
        """Run ``num_simulations`` simulations from ``root_state`` and return the root node.

        With ``reuse_tree=True`` the previous root or one of its children whose state equals
        ``root_state`` becomes the root (keeping its statistics); otherwise a fresh tree is built.
        """
        root = self._reusable_root(root_state) if self.reuse_tree else None
        if root is None:
            root = MCTSNode(root_state)
            root._snapshot = self._root_snapshot(root_state)
            self._q_min, self._q_max = math.inf, -math.inf
        for _ in range(self.num_simulations):
            self._simulate(root)
        self.root = root
        return root

    def _reusable_root(self, root_state: Any) -> MCTSNode | None:
        if self.root is None:
            return None
        for candidate in (self.root, *self.root.children.values()):
            if _states_equal(candidate.state, root_state) and not candidate.terminal:
                candidate.parent, candidate.action = None, None
                _rebase_depth(candidate)
                return candidate
        return None

    def get_best_action(self, root_state: Any) -> int:
        """Search from ``root_state`` and return the most visited root action (ties: highest Q)."""
        root = self.search(root_state)
        return max(
            root.children.values(), key=lambda ch: (ch.visit_count, root.q_value(ch, self.gamma))
        ).action

    def get_action_probs(self, root_state: Any, temperature: float = 1.0) -> np.ndarray:
        """Search from ``root_state`` and return ``pi(a) ∝ N(s, a)^(1/T)``: ``(num_actions,) float64``."""
        return self.search(root_state).policy(temperature, self.num_actions)


def _rebase_depth(root: MCTSNode) -> None:
    """Reset depths below a node that becomes the root of a reused tree."""
    stack = [(root, 0)]
    while stack:
        node, depth = stack.pop()
        node.depth = depth
        stack.extend((ch, depth + 1) for ch in node.children.values())
