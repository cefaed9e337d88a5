"""The options framework and SMDP / intra-option Q-learning.

Sutton, R. S., Precup, D. & Singh, S. (1999). "Between MDPs and semi-MDPs: A framework for temporal
abstraction in reinforcement learning." Artificial Intelligence 112, 181-211.

* An *option* ``o = <I, pi, beta>`` (the paper's section "Options"): an initiation set ``I`` (where it may start), a
  policy ``pi`` (state -> primitive action) and a termination condition ``beta(s)`` in ``[0, 1]`` (the
  probability of stopping on arrival in ``s``). A primitive action ``a`` is the one-step option
  ``<S, a, 1>`` (:func:`primitive_option`).
* SMDP Q-learning (the section on SMDP, option-to-option, methods; after Bradtke & Duff 1995): an option
  ``o`` started in ``s`` runs ``k`` steps, collects the discounted reward
  ``r = r_{t+1} + gamma r_{t+2} + ... + gamma^{k-1} r_{t+k}`` (:func:`option_return`) and ends in ``s'``;
  then ``Q(s, o) <- Q(s, o) + alpha [r + gamma^k max_{o' in O_{s'}} Q(s', o') - Q(s, o)]``
  (:func:`smdp_target`).
* Intra-option Q-learning (the section on intra-option value learning), for Markov options: after every
  primitive transition ``(s_t, a_t, r_{t+1}, s_{t+1})`` *every* option ``o`` whose policy would have taken
  ``a_t`` in ``s_t`` is updated, ``Q(s_t, o) <- Q(s_t, o) + alpha [r_{t+1} + gamma U(s_{t+1}, o) - Q(s_t, o)]``
  with ``U(s, o) = (1 - beta_o(s)) Q(s, o) + beta_o(s) max_{o'} Q(s, o')`` (:func:`intra_option_target`).
* The hallway options of the four-rooms ("rooms") example: two per room, each taking the shortest path to
  one of the room's two hallways (:func:`make_hallway_options`). As in the paper, the initiation set is
  the room plus the room's *other* hallway, and ``beta = 1`` outside the room (hallways included).

Deviations (documented):
    * Greedy choices break ties uniformly at random (a zero-initialised table otherwise always picks the
      first option).
    * With ``intra_option=True`` the agent learns only from the intra-option updates (the executed option
      is among the consistent ones), not additionally from the SMDP update.
    * ``max Q(s', .)`` runs over the options available in ``s'`` (its initiation sets), as in the paper's
      ``O_{s'}``; when none is available it runs over all options.
"""

from __future__ import annotations

import numbers
from collections.abc import Callable, Collection, Mapping, Sequence
from typing import Any

import numpy as np
from utils.checks import check_in_range, check_nonnegative_int, check_positive_int

__all__ = [
    "Option",
    "SMDPQLearningAgent",
    "intra_option_target",
    "make_hallway_options",
    "option_return",
    "primitive_option",
    "smdp_target",
]


def _state_key(state: Any) -> Any:
    """A hashable version of a state (ints stay ints, arrays become tuples)."""
    if isinstance(state, np.ndarray):
        return int(state) if state.ndim == 0 else tuple(state.tolist())
    if isinstance(state, np.integer):
        return int(state)
    if isinstance(state, list):
        return tuple(state)
    return state


class Option:
    """An option ``<I, pi, beta>`` (Sutton, Precup & Singh 1999, section "Options").

    Args:
        initiation_set: where the option may start: a callable ``state -> bool``, or a collection of
            states (``set``, ``list``, ...; arrays are compared as tuples), or ``None`` for everywhere.
        policy: the option's policy: a callable ``state -> action`` or a mapping ``state -> action``.
        termination_condition: ``beta``: a callable ``state -> bool`` (deterministic) or
            ``state -> float`` (a probability, sampled by :meth:`should_terminate`), or a collection of
            states where it stops surely, or a constant probability in ``[0, 1]``.
        option_id: the option's id (an int >= 0).
        name: a readable name (default ``"option<id>"``).

    Raises:
        ValueError: a policy that is neither callable nor a mapping, an initiation set or termination
            condition of the wrong kind, a constant beta outside ``[0, 1]``, a negative ``option_id``.
    """

    def __init__(
        self,
        initiation_set: Callable[[Any], bool] | Collection[Any] | None,
        policy: Callable[[Any], Any] | Mapping[Any, Any],
        termination_condition: Callable[[Any], bool | float] | Collection[Any] | float,
        option_id: int = 0,
        name: str | None = None,
    ) -> None:
        self.option_id = check_nonnegative_int("option_id", option_id)
        self.name = name if name is not None else f"option{self.option_id}"
        if (
            initiation_set is not None
            and not callable(initiation_set)
            and not isinstance(initiation_set, Collection)
        ):
            raise ValueError(
                f"initiation_set must be a callable state -> bool, a collection of states or None, "
                f"got {type(initiation_set).__name__}"
            )
        if not callable(policy) and not isinstance(policy, Mapping):
            raise ValueError(  # noqa: TRY004 - the kit reports every bad argument as a ValueError
                f"policy must be a callable state -> action or a mapping state -> action, got {type(policy).__name__}"
            )
        if isinstance(termination_condition, numbers.Real) and not isinstance(termination_condition, bool):
            check_in_range("termination_condition", termination_condition, 0.0, 1.0)
        elif not callable(termination_condition) and not isinstance(termination_condition, Collection):
            raise ValueError(  # noqa: TRY004
                f"termination_condition must be a callable state -> bool/probability, a collection of "
                f"states or a probability in [0, 1], got {type(termination_condition).__name__}"
            )
        self.initiation_set = (
            frozenset(_state_key(s) for s in initiation_set)
            if initiation_set is not None and not callable(initiation_set)
            else initiation_set
        )
        self.policy = policy
        self.termination_condition = (
            frozenset(_state_key(s) for s in termination_condition)
            if isinstance(termination_condition, Collection) and not callable(termination_condition)
            else termination_condition
        )

    def __repr__(self) -> str:
        return f"Option(option_id={self.option_id}, name={self.name!r})"

    def can_initiate(self, state: Any) -> bool:
        """Whether ``state`` lies in the initiation set ``I``."""
        if self.initiation_set is None:
            return True
        if callable(self.initiation_set):
            return bool(self.initiation_set(state))
        return _state_key(state) in self.initiation_set

    def get_action(self, state: Any) -> Any:
        """The action ``pi(state)``."""
        if isinstance(self.policy, Mapping):
            key = _state_key(state)
            if key not in self.policy:
                raise ValueError(f"{self.name}: its policy is not defined at state {state!r}")
            return self.policy[key]
        return self.policy(state)

    def termination_probability(self, state: Any) -> float:
        """``beta(state)`` in ``[0, 1]`` (a deterministic condition gives 0.0 or 1.0)."""
        beta = self.termination_condition
        if isinstance(beta, frozenset):
            return 1.0 if _state_key(state) in beta else 0.0
        value = beta(state) if callable(beta) else beta
        value = float(value)
        if not 0.0 <= value <= 1.0:
            raise ValueError(
                f"{self.name}: termination_condition must give a probability in [0, 1], got {value}"
            )
        return value

    def should_terminate(self, state: Any, rng: np.random.Generator | None = None) -> bool:
        """Whether the option stops on arrival in ``state``.

        A boolean condition is returned as is; a probability ``beta(s)`` is sampled, with ``rng`` when
        given, else with numpy's global generator (so ``np.random.seed`` makes it reproducible).
        """
        beta = self.termination_condition
        if callable(beta) and not isinstance(beta, frozenset):
            value = beta(state)
            if isinstance(value, (bool, np.bool_)):
                return bool(value)
            p = float(value)
            if not 0.0 <= p <= 1.0:
                raise ValueError(
                    f"{self.name}: termination_condition must give a probability in [0, 1], got {p}"
                )
        else:
            p = self.termination_probability(state)
        if p <= 0.0:
            return False
        if p >= 1.0:
            return True
        u = rng.random() if rng is not None else np.random.random()
        return bool(u < p)


def primitive_option(action: int, option_id: int | None = None, name: str | None = None) -> Option:
    """The one-step option ``<S, a, 1>`` of a primitive action: available everywhere, takes ``action``,
    stops after one step.

    Args:
        action: the primitive action (an int >= 0).
        option_id: id of the option (default: ``action``).
        name: readable name (default ``"primitive<action>"``).
    """
    action = check_nonnegative_int("action", action)
    return Option(
        initiation_set=None,
        policy=lambda state: action,
        termination_condition=1.0,
        option_id=action if option_id is None else option_id,
        name=name if name is not None else f"primitive{action}",
    )


def make_hallway_options(env: Any, first_id: int = 0) -> list[Option]:
    """The 8 hallway options of the four-rooms task (Sutton, Precup & Singh 1999, the rooms example).

    For each room and each of its two hallways: the policy follows a shortest path (under deterministic
    moves, staying in the room) to that hallway; the initiation set is the room's cells plus its other
    hallway; ``beta = 1`` outside the room (hallways included), ``0`` inside. States are the state indices
    of ``env`` (a :class:`~hierarchical_rl.environments.FourRoomsEnv`).

    Args:
        env: a ``FourRoomsEnv`` (any observation type; options always take state indices).
        first_id: option id of the first option; the others follow.

    Returns:
        8 options, ordered by room (0..3) then by hallway (as in ``env.room_hallways(room)``).
    """
    for attr in ("rooms", "room_hallways", "move", "cell_index", "num_actions"):
        if not hasattr(env, attr):
            raise ValueError(f"env must be a FourRoomsEnv (it has no {attr!r}), got {type(env).__name__}")
    options = []
    for room, room_cells in enumerate(env.rooms):
        hallways = env.room_hallways(room)
        for target in hallways:
            other = next(h for h in hallways if h != target)
            domain = set(room_cells) | set(hallways)
            dist = {target: 0}
            frontier = [target]
            while frontier:  # breadth-first search backwards from the hallway, inside the domain
                nxt = []
                for cell in domain:
                    if cell in dist:
                        continue
                    if any(env.move(cell, a) in frontier for a in range(env.num_actions)):
                        dist[cell] = dist[frontier[0]] + 1
                        nxt.append(cell)
                frontier = nxt
            policy = {}
            for cell in domain:
                if cell == target:
                    continue
                scores = [dist.get(env.move(cell, a), np.inf) for a in range(env.num_actions)]
                policy[env.cell_index(cell)] = int(np.argmin(scores))
            policy[env.cell_index(target)] = 0  # never used: beta = 1 there
            inside = {env.cell_index(c) for c in room_cells}
            options.append(
                Option(
                    initiation_set=inside | {env.cell_index(other)},
                    policy=policy,
                    termination_condition=lambda s, inside=inside: _state_key(s) not in inside,
                    option_id=first_id + len(options),
                    name=f"room{room}->hallway{target}",
                )
            )
    return options


# ---------------------------------------------------------------------------------------------------------
# The math (pure functions)
# ---------------------------------------------------------------------------------------------------------


def option_return(rewards: Sequence[float] | np.ndarray, gamma: float) -> float:
    """Discounted reward of one option execution: ``r = sum_{i=0}^{k-1} gamma^i r_{t+i+1}``.

    Args:
        rewards: ``(k,)`` the primitive rewards ``r_{t+1}, ..., r_{t+k}`` collected while the option ran.
        gamma: discount factor in ``[0, 1]``.

    Returns:
        The discounted sum (``0.0`` for no rewards).
    """
    gamma = check_in_range("gamma", gamma, 0.0, 1.0)
    # TODO(student): the option's discounted reward r = sum_i gamma^i * rewards[i] (r of the SMDP backup).
    # BEGIN SOLUTION
    total = 0.0
    for reward in reversed(list(rewards)):
        total = float(reward) + gamma * total
    return total
    # END SOLUTION


def smdp_target(cumulative_reward: float, k: int, next_q_max: float, done: bool, gamma: float) -> float:
    """SMDP Q-learning target of an option that ran ``k`` steps: ``r + gamma^k max_o' Q(s', o')``.

    Args:
        cumulative_reward: the option's discounted reward :func:`option_return`.
        k: number of primitive steps the option took (>= 1).
        next_q_max: ``max_{o' in O_{s'}} Q(s', o')``.
        done: whether ``s'`` is terminal (then nothing is bootstrapped).
        gamma: discount factor in ``[0, 1]``.

    Returns:
        The target ``r + gamma^k (1 - done) next_q_max``.
    """
    gamma = check_in_range("gamma", gamma, 0.0, 1.0)
    k = check_positive_int("k", k)
    # TODO(student): the SMDP backup target r + gamma**k * max_o' Q(s', o'), with no bootstrap when done.
    # BEGIN SOLUTION
    bootstrap = 0.0 if done else gamma**k * float(next_q_max)
    return float(cumulative_reward) + bootstrap
    # END SOLUTION


def intra_option_target(
    reward: float, next_q_option: float, next_q_max: float, beta_next: float, done: bool, gamma: float
) -> float:
    """Intra-option Q-learning target ``r + gamma U(s', o)`` of one primitive step.

    ``U(s', o) = (1 - beta_o(s')) Q(s', o) + beta_o(s') max_o' Q(s', o')``: the option continues with
    probability ``1 - beta`` (value ``Q(s', o)``) or stops and the best option is chosen.

    Args:
        reward: ``r_{t+1}``.
        next_q_option: ``Q(s', o)``.
        next_q_max: ``max_{o'} Q(s', o')``.
        beta_next: ``beta_o(s')`` in ``[0, 1]``.
        done: whether ``s'`` is terminal (then ``U = 0``).
        gamma: discount factor in ``[0, 1]``.
    """
    gamma = check_in_range("gamma", gamma, 0.0, 1.0)
    beta_next = check_in_range("beta_next", beta_next, 0.0, 1.0)
    # TODO(student): r + gamma * U(s', o) with U = (1 - beta) Q(s', o) + beta max_o' Q(s', o'); U = 0 when done.
    # BEGIN SOLUTION
    if done:
        return float(reward)
    u = (1.0 - beta_next) * float(next_q_option) + beta_next * float(next_q_max)
    return float(reward) + gamma * u
    # END SOLUTION


# ---------------------------------------------------------------------------------------------------------
# The agent
# ---------------------------------------------------------------------------------------------------------


class SMDPQLearningAgent:
    """Tabular SMDP Q-learning over a set of options (optionally intra-option Q-learning).

    ``self.q`` (Q) is a ``(num_states, num_options) float64`` table; column ``i`` belongs to ``options[i]``.
    States are integer indices (a ``FourRoomsEnv`` observation of any type is converted with its
    ``obs_to_index``).

    Args:
        options: the options (e.g. :func:`make_hallway_options` plus :func:`primitive_option` per action).
        num_states: number of states.
        gamma: discount factor in ``[0, 1]`` (the paper's four-rooms experiments use 0.9).
        alpha: step size in ``(0, 1]``; ``lr`` is an alias.
        epsilon: exploration probability in ``[0, 1]`` of the epsilon-greedy choice among the available
            options.
        intra_option: learn with intra-option Q-learning (every option consistent with each primitive
            action is updated) instead of the SMDP update; needs options with deterministic policies.
        initial_q: initial value of every table entry.
        seed: seed of the agent's generator (exploration, tie-breaking, stochastic termination).

    Raises:
        ValueError: no options, a non-Option in ``options``, bad ``num_states``/``gamma``/``alpha``/``epsilon``.
    """

    def __init__(
        self,
        options: Sequence[Option],
        num_states: int,
        gamma: float = 0.9,
        alpha: float = 0.1,
        epsilon: float = 0.1,
        intra_option: bool = False,
        initial_q: float = 0.0,
        seed: int | None = None,
        lr: float | None = None,
    ) -> None:
        self.options = list(options)
        if not self.options:
            raise ValueError("options must hold at least one Option, got an empty sequence")
        bad = [type(o).__name__ for o in self.options if not isinstance(o, Option)]
        if bad:
            raise ValueError(
                f"options must all be Option instances, got {bad}; wrap actions with primitive_option"
            )
        self.num_states = check_positive_int("num_states", num_states)
        self.num_options = len(self.options)
        self.gamma = check_in_range("gamma", gamma, 0.0, 1.0)
        self.alpha = check_in_range(
            "alpha" if lr is None else "lr", alpha if lr is None else lr, 0.0, 1.0, low_open=True
        )
        self.epsilon = check_in_range("epsilon", epsilon, 0.0, 1.0)
        self.intra_option = bool(intra_option)
        self.rng = np.random.default_rng(seed)
        self.q = np.full((self.num_states, self.num_options), float(initial_q))
        self.last_truncated = False

    # --- helpers -----------------------------------------------------------------------------------------
    def _state(self, state: Any, env: Any = None) -> int:
        if env is not None and hasattr(env, "obs_to_index") and np.ndim(state) > 0:
            state = env.obs_to_index(state)
        s = int(np.asarray(state).item()) if np.ndim(state) == 0 else None
        if s is None or not 0 <= s < self.num_states:
            raise ValueError(f"state must be an integer index in [0, {self.num_states}), got {state!r}")
        return s

    def option_index(self, option: Option | int) -> int:
        """Column of ``option`` (an Option of this agent, or already an index)."""
        if isinstance(option, Option):
            for i, o in enumerate(self.options):
                if o is option:
                    return i
            raise ValueError(f"option {option!r} is not one of this agent's options")
        i = int(option)
        if not 0 <= i < self.num_options:
            raise ValueError(f"option index must be in [0, {self.num_options}), got {option!r}")
        return i

    def available(self, state: int) -> list[int]:
        """Indices of the options whose initiation set holds ``state``."""
        return [i for i, o in enumerate(self.options) if o.can_initiate(state)]

    def max_q(self, state: int) -> float:
        """``max_{o in O_s} Q(s, o)`` (over all options when none is available)."""
        avail = self.available(state) or list(range(self.num_options))
        return float(self.q[state, avail].max())

    def _argmax(self, state: int, candidates: list[int]) -> int:
        values = self.q[state, candidates]
        best = np.flatnonzero(values == values.max())
        return candidates[int(best[self.rng.integers(len(best))])]

    # --- acting ------------------------------------------------------------------------------------------
    def select_option(self, state: Any, greedy: bool = False) -> int:
        """Epsilon-greedy option index among the options available in ``state`` (ties broken at random).

        Raises:
            ValueError: when no option can start in ``state``.
        """
        s = self._state(state)
        avail = self.available(s)
        if not avail:
            raise ValueError(f"no option can be initiated in state {s}; add primitive options")
        if not greedy and self.rng.random() < self.epsilon:
            return avail[int(self.rng.integers(len(avail)))]
        return self._argmax(s, avail)

    def execute_option(
        self, env: Any, state: Any, option: Option | int, max_steps: int | None = None
    ) -> tuple[int, float, int, bool]:
        """Run ``option`` from ``state`` in ``env`` until it terminates, the episode ends, or ``max_steps``.

        Args:
            env: a gymnasium env in the middle of an episode, currently in ``state``.
            state: current state index.
            option: the option (or its index).
            max_steps: cap on primitive steps (``None``: none).

        Returns:
            ``(next_state, cumulative discounted reward, k, done)``: ``done`` is the env's
            ``terminated``; a truncation is recorded in ``self.last_truncated``. With ``intra_option``
            the intra-option update runs after every primitive step.
        """
        idx = self.option_index(option)
        opt = self.options[idx]
        s = self._state(state, env)
        rewards: list[float] = []
        terminated = truncated = False
        while True:
            action = opt.get_action(s)
            obs, reward, terminated, truncated, _ = env.step(action)
            s_next = self._state(obs, env)
            rewards.append(float(reward))
            if self.intra_option:
                self.intra_option_update(s, action, float(reward), s_next, bool(terminated))
            s = s_next
            if terminated or truncated:
                break
            if max_steps is not None and len(rewards) >= max_steps:
                break
            if opt.should_terminate(s, self.rng):
                break
        self.last_truncated = bool(truncated)
        return s, option_return(rewards, self.gamma), len(rewards), bool(terminated)

    # --- learning ----------------------------------------------------------------------------------------
    def update(
        self, state: Any, option: Option | int, reward: float, next_state: Any, k: int, done: bool
    ) -> float:
        """SMDP Q-learning: ``Q(s,o) += alpha (r + gamma^k max_o' Q(s',o') - Q(s,o))``. Returns the TD error."""
        s, o = self._state(state), self.option_index(option)
        s_next = self._state(next_state)
        target = smdp_target(reward, k, 0.0 if done else self.max_q(s_next), done, self.gamma)
        td = target - self.q[s, o]
        self.q[s, o] += self.alpha * td
        return float(td)

    def consistent_options(self, state: int, action: Any) -> list[int]:
        """Options that could be executing in ``state`` and would take ``action`` there (Markov options:
        ``state`` in the initiation set and ``pi_o(state) == action``)."""
        out = []
        for i, o in enumerate(self.options):
            if o.can_initiate(state) and o.get_action(state) == action:
                out.append(i)
        return out

    def intra_option_update(
        self, state: Any, action: Any, reward: float, next_state: Any, done: bool
    ) -> list[int]:
        """Intra-option Q-learning after one primitive transition ``(s, a, r, s')``.

        Every option consistent with ``a`` in ``s`` (:meth:`consistent_options`) gets
        ``Q(s,o) += alpha (r + gamma U(s', o) - Q(s,o))`` (:func:`intra_option_target`), with
        ``beta_o(s') = self.options[o].termination_probability(s')`` and ``max_o' Q(s', o')`` over the
        options available in ``s'`` (``next_max``, 0 when ``done``).

        Returns:
            The indices of the updated options.
        """
        s, s_next = self._state(state), self._state(next_state)
        next_max = 0.0 if done else self.max_q(s_next)
        updated = self.consistent_options(s, action)
        # TODO(student): for each o in updated: Q(s,o) += alpha (intra_option_target(r, Q(s',o), ...) - Q(s,o)).
        # BEGIN SOLUTION
        for o in updated:
            beta = self.options[o].termination_probability(s_next)
            target = intra_option_target(reward, self.q[s_next, o], next_max, beta, done, self.gamma)
            self.q[s, o] += self.alpha * (target - self.q[s, o])
        # END SOLUTION
        return updated

    def train(self, env: Any, num_episodes: int, max_steps: int | None = None) -> dict[str, list[float]]:
        """Learn for ``num_episodes`` episodes of at most ``max_steps`` primitive steps each.

        Returns:
            ``{"steps": primitive steps per episode, "decisions": option choices per episode,
            "returns": discounted return per episode, "success": 1.0 if the episode terminated}``.
        """
        num_episodes = check_positive_int("num_episodes", num_episodes)
        if max_steps is not None:
            max_steps = check_positive_int("max_steps", max_steps)
        history: dict[str, list[float]] = {"steps": [], "decisions": [], "returns": [], "success": []}
        for _ in range(num_episodes):
            obs, _ = env.reset(seed=int(self.rng.integers(2**31)))
            s = self._state(obs, env)
            steps = decisions = 0
            ret, discount, done = 0.0, 1.0, False
            while True:
                o = self.select_option(s)
                budget = None if max_steps is None else max_steps - steps
                s_next, r, k, done = self.execute_option(env, s, o, max_steps=budget)
                if not self.intra_option:
                    self.update(s, o, r, s_next, k, done)
                ret += discount * r
                discount *= self.gamma**k
                steps += k
                decisions += 1
                s = s_next
                if done or self.last_truncated or (max_steps is not None and steps >= max_steps):
                    break
            history["steps"].append(steps)
            history["decisions"].append(decisions)
            history["returns"].append(ret)
            history["success"].append(1.0 if done else 0.0)
        return history

    def greedy_policy(self) -> np.ndarray:
        """Greedy option index per state among the available ones: ``(num_states,) int64``."""
        return np.array([self.select_option(s, greedy=True) for s in range(self.num_states)], dtype=np.int64)
