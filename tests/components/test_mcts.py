"""Graded tests of MonteCarloTreeSearch / MCTSNode (UCT) and the helpers ucb_score, backup, select_child,
expand_node."""

from __future__ import annotations

import math
from types import SimpleNamespace

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from grader.judge.contracts import assert_draws_only_from, assert_inputs_unchanged

pytestmark = pytest.mark.component("MonteCarloTreeSearch")


def _alg(impl):
    return impl.module("planning.algorithms")


class SimpleMCTSEnv:
    """The notebook's cell-11 environment, verbatim: old 4-tuple step, no action_space."""

    def __init__(self):
        self.state = 0
        self.goal = 10

    def reset(self):
        self.state = 0
        return self.state

    def step(self, action):
        self.state += action - 1
        reward = -abs(self.state - self.goal)
        done = abs(self.state - self.goal) < 0.5
        return self.state, reward, done, {}


class _Discrete:
    def __init__(self, n):
        self.n = n


class TwoGoalChain:
    """States 0..6, start 2. Action 0 moves left, 1 right. Reaching 0 pays 0.5, reaching 6 pays 1.0; both end
    the episode. With gamma = 0.9 the optimal values from 2 are Q(left) = 0.9 * 0.5 = 0.45 (two steps) and
    Q(right) = 0.9^3 * 1.0 = 0.729 (four steps): the optimal action is 1 although the left goal is nearer.

    ``five_tuple`` selects Gymnasium's (obs, r, terminated, truncated, info) or the old 4-tuple."""

    def __init__(self, five_tuple=True):
        self.state = 2
        self.five_tuple = five_tuple
        self.action_space = _Discrete(2)
        self.steps_taken = 0

    def reset(self, seed=None):
        self.state = 2
        return (self.state, {}) if self.five_tuple else self.state

    def step(self, action):
        self.steps_taken += 1
        self.state += 1 if action == 1 else -1
        reward = 0.5 if self.state == 0 else (1.0 if self.state == 6 else 0.0)
        done = self.state in (0, 6)
        if self.five_tuple:
            return self.state, reward, done, False, {}
        return self.state, reward, done, {}


def delayed_reward_tree(state, action):
    """Deterministic depth-2 tree over states = tuples of actions. Root action 0 pays 1 now and 0 after;
    root action 1 pays 0 now, then 5 for action 1 (0 for action 0). Optimal: action 1 (0 + 0.9 * 5 = 4.5 > 1)."""
    path = (*state, action)
    if len(path) == 1:
        return path, (1.0 if action == 0 else 0.0), False
    reward = 5.0 if path == (1, 1) else 0.0
    return path, reward, True


def _visit_lead(root, action: int) -> int:
    """Visits of ``action`` at the root minus the most visits of any other root action (positive: it is the
    most visited, which get_best_action returns)."""
    visits = {a: child.visit_count for a, child in root.children.items()}
    return visits[action] - max(n for a, n in visits.items() if a != action)


def _new(impl, cls, *args, **kwargs):
    """In the worker: an instance of a test-owned class; its handle comes back, so that the judge can give that
    very object to the implementation and read its state afterwards."""
    return cls(*args, **kwargs)


def _attach(impl, parent, children):
    """In the worker: hang ``children`` (action -> node) under ``parent.children`` (trees built by hand)."""
    for action, child in children.items():
        parent.children[action] = child


def _ids(impl, *objs):
    """In the worker: ``id()`` of each object; the judge compares them for identity."""
    return [id(o) for o in objs]


def _tree(impl, root):
    """In the worker: every node reachable from ``root`` as plain data, the root first. Nodes refer to each
    other by ``id``: ``children`` maps action -> child id, ``parent`` is the parent's id (None for no parent)."""
    rows, stack, seen = [], [root], set()
    while stack:
        n = stack.pop()
        if id(n) in seen:
            continue
        seen.add(id(n))
        parent = n.parent
        rows.append({
            "id": id(n), "parent": None if parent is None else id(parent), "state": n.state, "action": n.action,
            "reward": n.reward, "terminal": n.terminal, "visit_count": n.visit_count, "value_sum": n.value_sum,
            "value": n.value, "depth": getattr(n, "depth", None),
            "children": {a: id(ch) for a, ch in n.children.items()},
        })  # fmt: skip
        stack.extend(n.children.values())
    return rows


def _tree_nodes(impl, root):
    """The tree under the handle ``root``, read once from the worker: judge-side nodes (the fields of
    :func:`_tree`, ``children`` as action -> node), the root first."""
    rows = impl.run(_tree, root)
    nodes = {row["id"]: SimpleNamespace(**row) for row in rows}
    for node in nodes.values():
        node.children = {a: nodes[i] for a, i in node.children.items()}
    return list(nodes.values())


# ----------------------------------------------------------------------------------------------- ucb / backup


@pytest.mark.shape
def test_ucb_score_hand_computed(impl):
    """ucb_score = q + c sqrt(ln N / n): 0.5 + 1.4 sqrt(ln 10 / 2); c = 0 gives q; N = 1 gives q (ln 1 = 0);
    an unvisited child is +inf."""
    ucb = _alg(impl).ucb_score
    assert ucb(0.5, 2, 10, 1.4) == pytest.approx(0.5 + 1.4 * math.sqrt(math.log(10) / 2))
    assert ucb(-3.0, 4, 7, 0.0) == pytest.approx(-3.0)
    assert ucb(0.25, 1, 1, 2.0) == pytest.approx(0.25)
    assert ucb(-100.0, 0, 5, 1.4) == math.inf


@pytest.mark.property
@given(
    q=st.floats(-100, 100),
    n=st.integers(1, 50),
    extra=st.integers(0, 200),
    c=st.floats(0.01, 5),
)
def test_ucb_score_properties(impl, q, n, extra, c):
    """UCB >= Q, the bonus shrinks as the child is visited more and grows as the parent is visited more."""
    ucb = _alg(impl).ucb_score
    parent = n + extra + 1
    s = ucb(q, n, parent, c)
    assert s >= q - 1e-9
    assert ucb(q, n + 1, parent, c) <= s + 1e-9
    assert ucb(q, n, parent + 10, c) >= s - 1e-9


@pytest.mark.shape
def test_node_ucb_score_both_forms(impl):
    """parent.ucb_score(child, c) and child.ucb_score(parent_visits, c) both give reward + value + bonus."""
    root = impl.MCTSNode(0)
    child = impl.MCTSNode(1, parent=root, action=0, reward=1.0)
    impl.run(_attach, root, {0: child})
    root.visit_count, child.visit_count, child.value_sum = 9, 3, 6.0
    expected = 1.0 + 2.0 + 1.2 * math.sqrt(math.log(9) / 3)
    assert root.ucb_score(child, 1.2) == pytest.approx(expected)
    assert child.ucb_score(9, 1.2) == pytest.approx(expected)
    best_id, child_id = impl.run(_ids, root.best_child(1.2), child)
    assert best_id == child_id


@pytest.mark.shape
def test_backup_hand_computed_with_gamma(impl):
    """backup adds, leaf to root, G = 3, 2 + 0.5*3 = 3.5, 1 + 0.5*3.5 = 2.75, one visit each; values are means."""
    node_cls, backup = impl.MCTSNode, _alg(impl).backup
    root = impl.MCTSNode("s0")
    mid = node_cls("s1", parent=root, action=1, reward=1.0)
    leaf = node_cls("s2", parent=mid, action=0, reward=2.0)
    g = backup([root, mid, leaf], [1.0, 2.0], 3.0, 0.5)
    assert g == pytest.approx(2.75)
    assert [n.visit_count for n in (root, mid, leaf)] == [1, 1, 1]
    assert [n.value_sum for n in (root, mid, leaf)] == pytest.approx([2.75, 3.5, 3.0])
    backup([root, mid], [1.0], -1.0, 0.5)  # a second simulation stopping at mid: root gets 1 + 0.5*(-1) = 0.5
    assert (root.visit_count, mid.visit_count, leaf.visit_count) == (2, 2, 1)
    assert root.value == pytest.approx((2.75 + 0.5) / 2)
    assert mid.value == pytest.approx((3.5 - 1.0) / 2)


@pytest.mark.shape
@pytest.mark.points(0)
def test_backup_rejects_a_wrong_number_of_rewards(impl):
    """backup needs one reward per edge (len(path) - 1) and says so."""
    root = impl.MCTSNode(0)
    with pytest.raises(ValueError, match="len\\(path\\) - 1"):
        _alg(impl).backup([root], [1.0], 0.0, 0.9)


@pytest.mark.shape
def test_select_child_hand_computed(impl):
    """select_child takes the max of reward + gamma * value + bonus; an unvisited child goes first."""
    alg = _alg(impl)
    root = impl.MCTSNode(0)
    root.visit_count = 10
    stats = {0: (0.0, 5, 5.0), 1: (1.0, 4, 0.0), 2: (0.0, 1, 0.0)}  # action: (reward, N, value_sum)
    for a, (r, n, vs) in stats.items():
        ch = impl.MCTSNode(a, parent=root, action=a, reward=r)
        ch.visit_count, ch.value_sum = n, vs
        impl.run(_attach, root, {a: ch})
    # c = 0: Q = 0 + 0.5 * 1 = 0.5, 1 + 0 = 1.0, 0 -> action 1.
    assert alg.select_child(root, 0.0, 0.5).action == 1
    # c = 2: bonus 2 sqrt(ln 10 / n): action 2 (n = 1) gets 3.03 against 1.86 and 2.52.
    assert alg.select_child(root, 2.0, 0.5).action == 2
    impl.run(_attach, root, {3: impl.MCTSNode(3, parent=root, action=3, reward=-10.0)})
    assert alg.select_child(root, 0.0, 0.5, np.random.default_rng(0)).action == 3


def _tied_selections(impl, n, visited, tied=3):
    """In the worker: a root with children 0..tied, where 0..tied-1 tie for the best UCB score (all unvisited,
    or all visited with equal statistics) and the last scores lower (visited, reward -10); the actions of
    ``n`` calls of ``select_child`` sharing one generator."""
    alg = impl.module("planning.algorithms")
    root = impl.MCTSNode(0)
    root.visit_count = 12
    for a in range(tied + 1):
        child = impl.MCTSNode(a, parent=root, action=a, reward=-10.0 if a == tied else 1.0)
        if visited or a == tied:
            child.visit_count, child.value_sum = 3, 1.5
        root.children[a] = child
    rng = np.random.default_rng(0)
    return [int(alg.select_child(root, 1.0, 0.9, rng).action) for _ in range(n)]


@pytest.mark.shape
@pytest.mark.parametrize("visited", [False, True], ids=["unvisited", "visited"])
def test_select_child_breaks_ties_at_random(impl, visited):
    """Over 100 selections among three (then two) tied best children, each is chosen, and the worse one never.

    A uniform tie-break misses a given one of k tied children with probability ((k-1)/k)^100 <= 2.5e-18, so a
    correct implementation fails this test with probability below 1e-17 (union bound), for any generator
    stream. Always taking the first tied child (of every tie, or of two-way ties only) fails it surely.
    """
    for tied in (3, 2):
        actions = impl.run(_tied_selections, 100, visited, tied)
        assert len(actions) == 100
        assert tied not in actions, f"child {tied} has a lower UCB score than the tied children 0..{tied - 1}"
        assert set(actions) == set(range(tied)), (
            f"ties must be broken uniformly at random with rng; 100 selections among the {tied} tied children "
            f"0..{tied - 1} chose only {sorted(set(actions))}"
        )


@pytest.mark.shape
def test_select_child_without_rng_takes_the_first_tied_child(impl):
    """With rng=None a tie goes to the first tied child in the children's order (0 of the tied 0, 1, 2)."""
    root = impl.MCTSNode(0)
    root.visit_count = 12
    for a in range(4):
        child = impl.MCTSNode(a, parent=root, action=a, reward=-10.0 if a == 3 else 1.0)
        if a == 3:  # visited and worse: the only child that is not tied for +inf
            child.visit_count, child.value_sum = 3, 1.5
        impl.run(_attach, root, {a: child})
    assert _alg(impl).select_child(root, 1.0, 0.9).action == 0


@pytest.mark.shape
def test_expand_node_one_child_per_action_and_never_terminal(impl):
    """expand_node creates children 0..A-1 with the step's state, reward and terminal flag; terminal -> error."""
    alg = _alg(impl)
    root = impl.MCTSNode(5)
    alg.expand_node(root, 3, lambda node, a: (node.state + a, float(a) * 2, a == 2, None))
    top = _tree_nodes(impl, root)[0]
    assert sorted(top.children) == [0, 1, 2]
    for a, ch in top.children.items():
        assert (ch.state, ch.reward, ch.terminal, ch.action, ch.parent) == (5 + a, 2.0 * a, a == 2, a, top.id)
        assert ch.visit_count == 0
    with pytest.raises(ValueError, match="terminal"):
        alg.expand_node(root.children[2], 3, lambda node, a: (0, 0.0, False, None))


@pytest.mark.shape
def test_backup_of_a_root_only_path(impl):
    """The shortest path (the root alone, no rewards, as in a search's first simulation): the root gets one
    visit and the leaf value, which backup returns; with gamma = 0 a longer path backs up only the first
    reward."""
    alg, root = _alg(impl), impl.MCTSNode("s0")
    assert alg.backup([root], [], 2.5, 0.9) == pytest.approx(2.5)
    assert (root.visit_count, root.value_sum) == (1, pytest.approx(2.5))
    child = impl.MCTSNode("s1", parent=root, action=0, reward=1.0)
    assert alg.backup([root, child], [1.0], 4.0, 0.0) == pytest.approx(1.0)
    assert (root.visit_count, root.value_sum, child.value_sum) == (2, pytest.approx(3.5), pytest.approx(4.0))


def _tie_breaks(impl, rng):
    """Probe for assert_draws_only_from: 30 select_child calls on a root whose children 0..2 tie (unvisited),
    all with ``rng``."""
    return _tied_root_selections(impl, rng, 30)


def _tied_root_selections(impl, rng, n):
    alg = impl.module("planning.algorithms")
    root = impl.MCTSNode(0)
    root.visit_count = 4
    for a in range(3):
        root.children[a] = impl.MCTSNode(a, parent=root, action=a, reward=0.0)
    return [int(alg.select_child(root, 1.0, 0.9, rng).action) for _ in range(n)]


@pytest.mark.shape
def test_select_child_draws_only_from_rng(impl):
    """select_child breaks ties with the rng passed only: the same seed gives the same choices whatever the
    global generators' state, which stays untouched; and the 30 choices among three tied children differ (a
    constant choice, which draws nothing, would pass the rest vacuously). A uniform tie-break makes all 30 the
    same with probability 3 * (1/3)^30 < 2e-14, for any generator stream."""
    actions = assert_draws_only_from(impl, _tie_breaks, kind="numpy")
    assert len(actions) == 30 and set(actions) <= {0, 1, 2}
    assert len(set(actions)) > 1, f"30 ties among children 0, 1, 2 all went to child {actions[0]}: no draw broke them"


def _array_model(state, action):
    """A deterministic model over array states: move by action − 1 along the first axis, reward −|x|."""
    nxt = state + np.array([action - 1.0, 0.0])
    return nxt, -float(abs(nxt[0])), bool(abs(nxt[0]) >= 3)


@pytest.mark.shape
def test_helpers_and_search_leave_their_inputs_unchanged(impl):
    """backup leaves a rewards array as it was; search, get_best_action and get_action_probs leave an array
    root state as it was (a model over array states); each returns (or backs up) the documented values."""
    root, mid = impl.MCTSNode("s0"), impl.MCTSNode("s1")
    g0 = assert_inputs_unchanged(impl, _alg(impl).backup, None, [root, mid], np.array([1.5]), 2.0, 0.5)
    assert g0 == pytest.approx(1.5 + 0.5 * 2.0)  # G_0 = r_0 + γ G_1, G_1 = the leaf value
    assert (mid.visit_count, mid.value_sum) == (1, pytest.approx(2.0))
    assert (root.visit_count, root.value_sum) == (1, pytest.approx(1.5 + 0.5 * 2.0))
    mcts = impl.MonteCarloTreeSearch(
        model=_array_model, num_actions=3, num_simulations=20, max_depth=4, gamma=0.9, seed=0
    )
    state = np.array([-1.5, -1.0])
    top = _tree_nodes(impl, assert_inputs_unchanged(impl, mcts, "search", state))[0]
    np.testing.assert_array_equal(top.state, state)
    assert top.visit_count == 20, "a fresh search's root gets one visit per simulation"
    assert sorted(top.children) == [0, 1, 2]
    assert top.visit_count == 1 + sum(ch.visit_count for ch in top.children.values())
    for a, ch in top.children.items():  # the model moves x by a − 1: to −2.5, −1.5 and −0.5, reward −|x|
        np.testing.assert_allclose(ch.state, [-1.5 + a - 1.0, -1.0])
        assert (ch.reward, ch.terminal) == (pytest.approx(-abs(-1.5 + a - 1.0)), False)

    best = assert_inputs_unchanged(impl, mcts, "get_best_action", state)
    top = _tree_nodes(impl, mcts.root)[0]  # the search get_best_action ran
    expected = max(top.children, key=lambda a: (top.children[a].visit_count,
                                                top.children[a].reward + 0.9 * top.children[a].value))  # fmt: skip
    assert isinstance(best, int) and best == expected, f"the most visited root action (ties: highest Q), not {best}"

    probs = assert_inputs_unchanged(impl, mcts, "get_action_probs", state, 0.5)
    visits = np.array([ch.visit_count for _, ch in sorted(_tree_nodes(impl, mcts.root)[0].children.items())])
    assert probs.shape == (3,) and probs.dtype == np.float64
    np.testing.assert_allclose(probs, visits**2.0 / (visits**2.0).sum())  # π(a) ∝ N(s, a)^(1/T), T = 0.5


# ----------------------------------------------------------------------------------------------- search


@pytest.mark.convergence
@pytest.mark.points(2)
def test_notebook_cell_returns_action_2(impl, reseed, margin):
    """The notebook's call (with num_actions=3) picks action 2 (towards the goal) for several seeds.

    Calibration (docs/calibration.md, 2026-12-01): passed all 60 runs (30 seed offsets on the reference, 15 on
    each perturbed reference); the fit of its 5 checks puts the false-fail rate at 0.00 % (closest: a visit
    lead, 5.0 sd above 0).
    """
    for seed in range(5):
        env = impl.run(_new, SimpleMCTSEnv)  # the env the planner gets, watched by the judge
        mcts = impl.MonteCarloTreeSearch(
            env=env, num_simulations=50, exploration_constant=1.4, max_depth=20, num_actions=3, seed=reseed(seed)
        )
        assert mcts.get_best_action(env.reset()) == 2, f"seed {seed}"
        margin(f"seed {seed}: root visits of action 2 minus the most of any other", _visit_lead(mcts.root, 2), ">", 0)
        assert env.state == 0, "search must not step the original environment"


@pytest.mark.shape
@pytest.mark.points(0)
def test_missing_num_actions_is_a_clear_error(impl):
    """The notebook's original call has no num_actions and the env no action_space: ValueError naming it."""
    with pytest.raises(ValueError, match="num_actions"):
        impl.MonteCarloTreeSearch(
            env=SimpleMCTSEnv(), num_simulations=50, exploration_constant=1.4, max_depth=20
        )
    with pytest.raises(ValueError, match="env=|model="):
        impl.MonteCarloTreeSearch(num_actions=2)
    with pytest.raises(ValueError, match="num_simulations"):
        impl.MonteCarloTreeSearch(env=SimpleMCTSEnv(), num_actions=3, num_simulations=0)


@pytest.mark.shape
def test_root_visits_equal_num_simulations(impl):
    """A fresh search visits the root num_simulations times; every simulation but the first enters a child."""
    mcts = impl.MonteCarloTreeSearch(
        env=SimpleMCTSEnv(), num_simulations=37, max_depth=10, num_actions=3, seed=0
    )
    root = mcts.search(0)
    assert root.visit_count == 37
    assert sum(ch.visit_count for ch in root.children.values()) == 36
    assert sorted(root.children) == [0, 1, 2]
    counts = root.visit_counts()
    assert counts.shape == (3,) and counts.sum() == 36
    probs = root.policy(1.0)
    assert probs.sum() == pytest.approx(1.0) and int(np.argmax(probs)) == int(np.argmax(counts))


@pytest.mark.shape
def test_node_values_are_means_of_backed_up_returns(impl):
    """With a value function at the leaves, an expanded node's value_sum is its own (first) evaluation plus,
    per child, N(child) * reward + gamma * value_sum(child), i.e. value is the mean of the backed-up returns."""
    gamma = 0.8

    def value_fn(state):
        return 0.1 * len(state) + (0.3 if state[-1:] == (1,) else 0.0)

    def model(state, action):
        return (*state, action), float(action) - 0.5 * len(state), len(state) >= 3

    mcts = impl.MonteCarloTreeSearch(
        model=model, num_actions=2, num_simulations=40, max_depth=6, gamma=gamma, value_fn=value_fn, seed=1
    )
    nodes = _tree_nodes(impl, mcts.search(()))
    assert any(n.terminal and n.visit_count > 1 for n in nodes)
    for node in nodes:
        if node.visit_count == 0:
            continue
        own = 0.0 if node.terminal else value_fn(node.state)
        assert node.value == pytest.approx(node.value_sum / node.visit_count)
        if not node.children:  # a leaf (terminal or at max_depth): evaluated on every visit
            assert node.value_sum == pytest.approx(node.visit_count * own), node
            continue
        expected = own + sum(
            ch.visit_count * ch.reward + gamma * ch.value_sum for ch in node.children.values()
        )
        assert node.value_sum == pytest.approx(expected), node
        assert node.visit_count == 1 + sum(ch.visit_count for ch in node.children.values())


@pytest.mark.shape
def test_terminal_nodes_are_never_expanded(impl):
    """Terminal nodes get visits but never children, and no node lies deeper than max_depth."""
    env = TwoGoalChain(five_tuple=True)
    mcts = impl.MonteCarloTreeSearch(env=env, num_simulations=200, max_depth=5, gamma=0.9, seed=0)
    nodes = _tree_nodes(impl, mcts.search(2))
    terminals = [n for n in nodes if n.terminal]
    assert any(n.visit_count > 0 for n in terminals)
    assert all(not n.children for n in terminals)
    assert all(n.state in (0, 6) for n in terminals)
    assert all(n.depth is not None for n in nodes), "MCTSNode.depth is missing"
    assert max(n.depth for n in nodes) <= 5


@pytest.mark.convergence
@pytest.mark.points(2)
def test_four_and_five_tuple_envs_find_the_far_goal(impl, reseed, margin):
    """On TwoGoalChain (Q*(left) = 0.45 < Q*(right) = 0.729) both step APIs pick action 1 within 150
    simulations for several seeds, through env.action_space.n, without stepping the original env.
    Calibration (docs/calibration.md, 2026-12-01): passed all 60 runs (30 seed offsets on the reference, 15 on
    each perturbed reference); the fit of its 6 checks puts the false-fail rate at 0.00 % (the visit lead of
    action 1 is ≥ 10.7 sd above 0).
    """
    for five in (True, False):
        for seed in range(3):
            env = impl.run(_new, TwoGoalChain, five_tuple=five)  # the env the planner gets, watched by the judge
            mcts = impl.MonteCarloTreeSearch(
                env=env, num_simulations=150, max_depth=12, gamma=0.9, rollout_depth=None, seed=reseed(seed)
            )
            assert mcts.get_best_action(2) == 1, f"five_tuple={five} seed={seed}"
            lead = _visit_lead(mcts.root, 1)
            margin(f"five_tuple={five}, seed {seed}: root visits of action 1 minus action 0's", lead, ">", 0)
            assert env.steps_taken == 0 and env.state == 2


@pytest.mark.convergence
def test_model_tree_prefers_delayed_reward(impl, reseed, margin):
    """On a hand-built depth-2 tree (Q*(0) = 1, Q*(1) = 4.5) the model planner picks 1 within 60 simulations
    for several seeds, and Q(root, 1) approaches 4.5 from below.
    Calibration (docs/calibration.md, 2026-12-01): passed all 60 runs (30 seed offsets on the reference, 15 on
    each perturbed reference); the fit of its 10 checks puts the false-fail rate at 0.01 % (closest: a visit
    lead, 4.1 sd above 0).
    """
    for seed in range(5):
        mcts = impl.MonteCarloTreeSearch(
            model=delayed_reward_tree, num_actions=2, num_simulations=60, max_depth=5, gamma=0.9, seed=reseed(seed)
        )
        assert mcts.get_best_action(()) == 1, f"seed {seed}"
        root = mcts.root
        margin(f"seed {seed}: root visits of action 1 minus action 0's", _visit_lead(root, 1), ">", 0)
        q1 = root.children[1].reward + 0.9 * root.children[1].value
        margin(f"seed {seed}: Q(root, 1)", q1, ">", 3.0)
        assert q1 <= 4.5 + 1e-9, f"seed {seed}: Q(root, 1) = {q1} is above Q* = 4.5"


@pytest.mark.shape
def test_tree_reuse_keeps_the_subtree(impl):
    """With reuse_tree, searching from the state of a root child continues that child's subtree."""
    mcts = impl.MonteCarloTreeSearch(
        env=SimpleMCTSEnv(), num_simulations=30, max_depth=10, num_actions=3, seed=0, reuse_tree=True
    )
    root = mcts.search(0)
    child = root.children[2]
    before = child.visit_count
    new_root = mcts.search(child.state)
    new_id, child_id = impl.run(_ids, new_root, child)
    assert new_id == child_id and new_root.parent is None
    assert new_root.visit_count == before + 30
