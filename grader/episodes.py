"""Judge-side evaluation of a trained agent: the judge steps a trusted environment, the worker only acts.

Convergence verdicts come from behaviour the judge observes (docs/CONVENTIONS.md §5), never from a number
the implementation reports about itself. The environment belongs to the tests (a small environment defined
in the test module, never the implementation's copy), and ``act`` asks the worker for one action per step::

    stats = rollout(Corridor(n=8), act=lambda obs: agent.select_action(obs, greedy=True), episodes=20)
    assert stats.success_rate >= 0.7
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any


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
