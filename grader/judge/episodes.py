"""Judge-side evaluation of a trained agent: the judge steps a trusted environment, the worker only acts.

Convergence verdicts come from behaviour the judge observes (docs/CONVENTIONS.md §5), never from a number
the implementation reports about itself. The environment belongs to the tests (a small environment defined
in the test module, never the implementation's copy), and ``act`` asks the worker for one action per step::

    stats = rollout(Corridor(n=8), act=lambda obs: agent.select_action(obs, greedy=True), episodes=20)
    assert stats.success_rate >= 0.7

:class:`JudgeNetwork` rebuilds a trained MLP from its weights so that Q-values, their argmax or an actor's
output are computed in the judge, and :func:`train_goal_agent` trains a goal-conditioned agent on an
environment that never leaves the judge: together they make a convergence test measure learning, not a
policy the worker chose (CONVENTIONS §5).

:class:`JudgeView` is the other direction: an environment of the implementation (given code) seen from the
judge as a gymnasium ``Env`` (spaces rebuilt from raw data, reset/step forwarded), so that the judge can run
gymnasium's ``check_env`` on it. The probes it sends live in this module, which travels to the worker by value.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces


@dataclass
class Rollouts:
    """What the judge saw over several episodes."""

    returns: list[float] = field(default_factory=list)
    lengths: list[int] = field(default_factory=list)
    successes: list[bool] = field(default_factory=list)

    @property
    def mean_return(self) -> float:
        return sum(self.returns) / max(1, len(self.returns))

    @property
    def success_rate(self) -> float:
        return sum(self.successes) / max(1, len(self.successes))

    @property
    def mean_length(self) -> float:
        return sum(self.lengths) / max(1, len(self.lengths))


def rollout(
    env: Any,
    act: Callable[[Any], Any],
    episodes: int,
    max_steps: int,
    success: Callable[[Any, float, bool, dict], bool] | None = None,
    reset: Callable[[Any], Any] | None = None,
) -> Rollouts:
    """Run ``episodes`` episodes of at most ``max_steps`` steps of a gymnasium-style ``env``.

    Args:
        env: the judge's environment (``reset() -> (obs, info)``, ``step(a) -> (obs, r, term, trunc, info)``).
        act: the policy, called with the observation (typically a call of a handle in the worker).
        episodes: number of episodes.
        max_steps: step cap per episode (an episode that reaches it without terminating is not a success).
        success: ``success(obs, reward, terminated, info)`` at the final step; default: ``terminated`` and
            ``info.get("is_success", reward > 0)``.
        reset: how to start an episode (default ``env.reset()[0]``).
    """
    out = Rollouts()
    for _ in range(episodes):
        obs = reset(env) if reset is not None else env.reset()[0]
        total, won, steps = 0.0, False, 0
        for steps in range(1, max_steps + 1):
            obs, reward, terminated, truncated, info = env.step(act(obs))
            total += float(reward)
            if terminated or truncated:
                won = (success(obs, float(reward), bool(terminated), info) if success is not None
                       else bool(terminated) and bool(info.get("is_success", reward > 0)))  # fmt: skip
                break
        out.returns.append(total)
        out.lengths.append(steps)
        out.successes.append(won)
    return out


# --- a trained network evaluated in the judge --------------------------------------------------------------
#: Activation modules a judge-side MLP understands (the kit's ``utils.torch_utils.mlp`` uses these).
ACTIVATIONS = {"ReLU": "relu", "Tanh": "tanh", "Identity": "identity"}


def _layers(impl, net):
    """Probe: the layers of an ``nn.Sequential`` as raw data: ``("linear", W, b)`` or ``(activation name,)``."""
    out = []
    for layer in net:
        if type(layer).__name__ == "Linear":
            bias = None if layer.bias is None else layer.bias.detach().cpu().clone()
            out.append(("linear", layer.weight.detach().cpu().clone(), bias))
        else:
            out.append((type(layer).__name__,))
    return out


class JudgeNetwork:
    """A worker's ``nn.Sequential`` MLP, rebuilt in the judge from its weights and evaluated here.

    A convergence test that takes actions through this (argmax of Q-values, the actor's output) measures what
    the network learned: the worker sends weights once, and every forward pass and argmax happens in the judge,
    so a worker that recognises evaluation inputs cannot answer them differently. Layers other than Linear,
    ReLU, Tanh and Identity are refused (an AssertionError naming the layer): the kit's networks are
    ``utils.torch_utils.mlp``, built by given code.
    """

    def __init__(self, impl, net) -> None:
        import torch

        self._torch = torch
        self.layers: list[tuple] = []
        for layer in impl.run(_layers, net):
            kind = layer[0]
            if kind == "linear":
                w, b = layer[1], layer[2]
                assert w.ndim == 2 and (b is None or b.shape == (w.shape[0],)), (
                    f"a Linear layer with weight {tuple(w.shape)} and bias {None if b is None else tuple(b.shape)}"
                )
                self.layers.append(("linear", w.float(), None if b is None else b.float()))
            else:
                assert kind in ACTIVATIONS, (
                    f"the network holds a {kind!r} layer; a judge-side MLP understands Linear, "
                    f"{', '.join(ACTIVATIONS)}"
                )
                self.layers.append((ACTIVATIONS[kind],))
        linear = [layer for layer in self.layers if layer[0] == "linear"]
        assert linear, "the network holds no Linear layer"
        self.in_features: int = linear[0][1].shape[1]

    def __call__(self, x):
        """``(N, in)`` float32 inputs -> ``(N, out)`` float32 outputs, computed in the judge."""
        torch = self._torch
        y = torch.as_tensor(x, dtype=torch.float32).reshape(-1, self.in_features)
        for layer in self.layers:
            if layer[0] == "linear":
                y = y @ layer[1].T + (0.0 if layer[2] is None else layer[2])
            elif layer[0] == "relu":
                y = torch.relu(y)
            elif layer[0] == "tanh":
                y = torch.tanh(y)
        return y


def learned_goal_policy(impl, agent):
    """The greedy policy of what a goal-conditioned agent's network learned, evaluated in the judge: its weights
    are read once (:class:`JudgeNetwork`), then Q-values and their argmax (DQN: ``agent.q_network``) or the
    actor's output clipped to [−1, 1] (DDPG: ``agent.actor``, actions in [−1, 1]) are computed here for
    ``[observation, desired_goal]``."""
    discrete = bool(agent.discrete_actions)
    net = JudgeNetwork(impl, agent.q_network if discrete else agent.actor)

    def act(obs):
        out = net(np.concatenate([obs["observation"], obs["desired_goal"]])[None].astype(np.float32))[0]
        return int(out.argmax()) if discrete else np.clip(out.numpy(), -1.0, 1.0)

    return act


# --- a goal-conditioned agent trained by the judge ------------------------------------------------------------
def _goal_step(impl, agent, stored, episode_over, updates, obs, noise_scale):
    """Probe: one request per environment step of :func:`train_goal_agent`.

    Stores the previous step's transition (``stored``: the ``store_experience`` arguments, or None); if the
    episode is over, closes it (``end_episode`` unless the stored transition was terminal) and runs ``updates``
    updates; otherwise returns the exploratory action for ``obs``."""
    if stored is not None:
        agent.store_experience(*stored[:6], achieved_goal=stored[6], next_achieved_goal=stored[7])
    if episode_over:
        if stored is not None and not stored[4]:
            agent.end_episode()
        for _ in range(updates if len(agent.buffer) >= agent.batch_size else 0):
            agent.update()
        return None
    return agent.get_action(obs["observation"], obs["desired_goal"], noise_scale)


def train_goal_agent(impl, agent, env: Any, episodes: int, updates_per_episode: int, noise_scale: float) -> list[bool]:
    """Train a goal-conditioned agent (HER) on the judge's goal env: the loop of ``GoalConditionedAgent.train``.

    The environment never leaves the judge: each step asks the worker for an exploratory action
    (``get_action``), steps ``env`` here and has the worker store the transition (``store_experience`` with the
    achieved goals the env reports); an episode the env truncates is closed with ``end_episode()``; after each
    episode, once the buffer holds a batch (``agent.batch_size``), ``updates_per_episode`` updates run. One
    request per step (the store of one step travels with the action request of the next).

    Returns:
        per episode, whether its final step was a success (``info["is_success"]``), for feedback curves only.
    """
    successes = []
    for _ in range(episodes):
        obs, info = env.reset()
        stored, done = None, False
        while not done:
            action = impl.run(_goal_step, agent, stored, False, 0, obs, noise_scale)
            obs2, reward, terminated, truncated, info = env.step(action)
            stored = (obs["observation"], action, float(reward), obs2["observation"], bool(terminated),
                      obs["desired_goal"], obs["achieved_goal"], obs2["achieved_goal"])  # fmt: skip
            obs, done = obs2, bool(terminated or truncated)
        impl.run(_goal_step, agent, stored, True, updates_per_episode, obs, noise_scale)
        successes.append(bool(info.get("is_success", False)))
    return successes



def train_with_looks(train: Callable[[int], Any], judge: Callable[[], float], looks: Sequence[int],
                     good: Callable[[float], bool]) -> tuple[float, int, list]:
    """One training run judged at several points: a sequential verdict that stops as soon as it is certain.

    ``train(n)`` continues the same run for ``n`` more episodes; ``judge()`` returns the judged statistic
    (drawing nothing from the run: the judge's own environment and weights evaluated here, or the worker's
    random states put back); ``looks`` are increasing cumulative episode counts, the last one the full budget.
    After each look the run stops once ``good(value)``. Training cut in pieces is the run the full budget
    trains (:func:`train_goal_agent` is the same loop called once or in pieces), so the last look sees what a
    single judgement at the end saw: a correct implementation fails no more often than with one look, and
    passes sooner (issue 26: grading cost).

    Returns:
        ``(value at the last look taken, episodes trained, what the train calls returned, concatenated
        when lists)``.

    Raises:
        ValueError: naming ``looks`` when they are empty or not increasing positive episode counts.
    """
    looks = tuple(looks)
    if not looks or any(not isinstance(n, int) or n <= 0 for n in looks) or list(looks) != sorted(set(looks)):
        raise ValueError(f"looks: expected increasing positive episode counts, got {looks!r}")
    trained, history, value = 0, [], float("nan")
    for look in looks:
        returned = train(look - trained)
        history += returned if isinstance(returned, list) else []
        trained, value = look, float(judge())
        if good(value):
            break
    return value, trained, history


def _worker_random_states(impl) -> tuple:
    """Probe: the worker's global random states (python, numpy, torch)."""
    import random

    import torch

    return random.getstate(), np.random.get_state(), torch.get_rng_state()


def _put_back_random_states(impl, states: tuple) -> None:
    """Probe: set the worker's global random states to ``states`` (from :func:`_worker_random_states`)."""
    import random

    import torch

    python, numpy_state, torch_state = states
    random.setstate((python[0], tuple(python[1]), python[2]))
    np.random.set_state(tuple(numpy_state))
    torch.set_rng_state(torch_state)


def drawing_nothing(impl, judge: Callable[[], float]) -> Callable[[], float]:
    """``judge`` with the worker's global random states put back after it: a judgement that samples actions in
    the worker (a recurrent policy's ``select_action``) then leaves the run it looks at as it was, so that
    :func:`train_with_looks` continues the same run. A generator the implementation keeps itself is not reset."""

    def judged() -> float:
        states = impl.run(_worker_random_states)
        try:
            return judge()
        finally:
            impl.run(_put_back_random_states, states)

    return judged


# --- a recurrent agent trained by the judge --------------------------------------------------------------------
def _recurrent_step(impl, net, obs, episode, first):
    """Probe: one request per environment step of :func:`train_recurrent_agent`.

    ``episode``: the previous episode to learn from (``update`` arguments) or None; ``first``: a new episode
    starts (``reset_state``). Returns the sampled action for ``obs``."""
    if episode is not None:
        net.update(*episode)
    if first:
        net.reset_state()
    return int(net.select_action(obs)[0])


def train_recurrent_agent(impl, net, env: Any, episodes: int, max_steps: int) -> list[float]:
    """Train a recurrent agent (FuN) on the judge's env: the loop of ``FeudalNetwork.train``, one update per episode.

    The environment never leaves the judge: each step asks the worker for a sampled action (``select_action``,
    after ``reset_state`` at an episode's start) and steps ``env`` here; each episode with at least one step
    then becomes one ``update(observations (T+1, S), actions (T,), rewards (T,), terminal)``, sent with the first
    action request of the next episode (one request per step, one more at the end).

    Returns:
        the return of each episode, for feedback curves only.
    """
    returns, pending = [], None
    for _ in range(episodes):
        obs = env.reset()[0]
        observations, actions, rewards, terminal = [np.asarray(obs, np.float32)], [], [], False
        for t in range(max_steps):
            action = impl.run(_recurrent_step, net, obs, pending, t == 0)
            pending = None
            obs, reward, terminated, truncated, _ = env.step(action)
            observations.append(np.asarray(obs, np.float32))
            actions.append(action)
            rewards.append(float(reward))
            if terminated or truncated:
                terminal = bool(terminated)
                break
        pending = (np.stack(observations), np.asarray(actions, np.int64), np.asarray(rewards, np.float32), terminal)
        returns.append(float(sum(rewards)))
    impl.run(_recurrent_update, net, pending)
    return returns


def _recurrent_update(impl, net, episode):
    """Probe: the last episode's update of :func:`train_recurrent_agent`."""
    net.update(*episode)


# --- an implementation's environment seen from the judge -------------------------------------------------
def space_spec(impl, space):
    """Probe: a gymnasium space as raw data (its kind and parameters)."""
    kind = type(space).__name__
    if kind == "Dict":
        return {"kind": kind, "spaces": {k: space_spec(impl, v) for k, v in space.spaces.items()}}
    if kind == "Box":
        return {"kind": kind, "low": np.asarray(space.low), "high": np.asarray(space.high),
                "dtype": np.dtype(space.dtype).str}  # fmt: skip
    if kind == "Discrete":
        return {"kind": kind, "n": int(space.n), "start": int(space.start)}
    return {"kind": kind}


def space_from_spec(spec: dict):
    """The judge's copy of a space described by :func:`space_spec`."""
    kind = spec["kind"]
    if kind == "Dict":
        return spaces.Dict({k: space_from_spec(v) for k, v in spec["spaces"].items()})
    if kind == "Box":
        return spaces.Box(spec["low"], spec["high"], dtype=np.dtype(spec["dtype"]))
    if kind == "Discrete":
        return spaces.Discrete(spec["n"], start=spec["start"])
    raise AssertionError(f"unexpected space {kind!r}")


def _rng_state(env):
    rng = getattr(env.unwrapped, "_np_random", None)
    return None if rng is None else rng.bit_generator.state


def _describe_env(impl, env):
    """Probe: spaces, metadata and render mode of an environment, as raw data."""
    return {"observation_space": space_spec(impl, env.observation_space),
            "action_space": space_spec(impl, env.action_space),
            "metadata": dict(env.metadata), "render_mode": env.render_mode}  # fmt: skip


def _reset_env(impl, env, seed, options):
    obs, info = env.reset(seed=seed, options=options)
    return obs, info, _rng_state(env)


def _step_env(impl, env, action):
    return env.step(action), _rng_state(env)


class JudgeView(gym.Env):
    """The worker's environment as a gymnasium Env in the judge: its spaces rebuilt from raw data, reset/step
    forwarded (one request each), the generator state mirrored, so that check_env runs in the judge."""

    def __init__(self, impl, env) -> None:
        self._impl, self._env = impl, env
        d = impl.run(_describe_env, env)
        self.observation_space = space_from_spec(d["observation_space"])
        self.action_space = space_from_spec(d["action_space"])
        self.metadata = d["metadata"]
        self.render_mode = d["render_mode"]

    def _mirror(self, state) -> None:
        if state is None:
            self._np_random = None
            return
        rng = np.random.Generator(getattr(np.random, state["bit_generator"])())
        rng.bit_generator.state = state
        self._np_random = rng

    def reset(self, *, seed=None, options=None):
        obs, info, state = self._impl.run(_reset_env, self._env, seed, options)
        self._mirror(state)
        return obs, info

    def step(self, action):
        out, state = self._impl.run(_step_env, self._env, action)
        self._mirror(state)
        return out

    def render(self):
        return self._env.render()
