"""Judge-side evaluation of a trained agent: the judge steps a trusted environment, the worker only acts.

Convergence verdicts come from behaviour the judge observes (docs/CONVENTIONS.md §5), never from a number
the implementation reports about itself. The environment belongs to the tests (a small environment defined
in the test module, never the implementation's copy), and ``act`` asks the worker for one action per step::

    stats = rollout(Corridor(n=8), act=lambda obs: agent.select_action(obs, greedy=True), episodes=20)
    assert stats.success_rate >= 0.7

:class:`JudgeView` is the other direction: an environment of the implementation (given code) seen from the
judge as a gymnasium ``Env`` (spaces rebuilt from raw data, reset/step forwarded), so that the judge can run
gymnasium's ``check_env`` on it. The probes it sends live in this module, which travels to the worker by value.
"""

from __future__ import annotations

from collections.abc import Callable
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
