"""The judge's sequential verdicts (grader/judge/episodes.py: ``train_with_looks``, ``drawing_nothing``): a run judged
at several points is the run that one judgement at the end sees (issue 26)."""

from __future__ import annotations

import numpy as np
import pytest

from grader.judge.episodes import JudgeNetwork, drawing_nothing, train_goal_agent, train_with_looks
from tests.components.test_goal_conditioned import BitFlip, _bit_flipping_agent


def _counting_run(values: dict[int, float]):
    """A fake run: ``train(n)`` adds n episodes and returns their numbers; ``judge()`` reads ``values`` there."""
    state = {"episodes": 0}

    def train(n: int) -> list[int]:
        start, state["episodes"] = state["episodes"], state["episodes"] + n
        return list(range(start + 1, state["episodes"] + 1))

    return train, lambda: values[state["episodes"]]


def test_stops_at_the_first_good_look() -> None:
    """The run stops after the first look whose value is good: value, episodes and history of that look."""
    train, judge = _counting_run({2: 0.1, 5: 0.9, 9: 1.0})
    assert train_with_looks(train, judge, (2, 5, 9), lambda v: v > 0.5) == (0.9, 5, [1, 2, 3, 4, 5])


def test_without_a_good_look_the_full_budget_is_judged() -> None:
    """No good look: every piece is trained, the pieces add up to the last look, its value is returned."""
    train, judge = _counting_run({2: 0.1, 5: 0.2, 9: 0.3})
    value, episodes, history = train_with_looks(train, judge, (2, 5, 9), lambda v: v > 0.5)
    assert (value, episodes, history) == (0.3, 9, list(range(1, 10)))


@pytest.mark.parametrize("looks", [(), (5, 5), (5, 2), (0, 3), (2.5,)])
def test_looks_must_be_increasing_episode_counts(looks: tuple) -> None:
    """Empty, repeated, decreasing, zero or fractional looks are refused with the argument's name and value."""
    with pytest.raises(ValueError, match=r"looks: expected increasing positive episode counts, got"):
        train_with_looks(lambda n: [], lambda: 0.0, looks, lambda v: True)


def _q_weights(impl, agent) -> list[np.ndarray]:
    """The Q-network's Linear weights and biases, as the judge sees them."""
    layers = JudgeNetwork(impl, agent.q_network).layers
    return [t.numpy() for layer in layers if layer[0] == "linear" for t in layer[1:] if t is not None]


def test_a_goal_agent_trained_in_pieces_is_the_run_trained_at_once(impl, reseed) -> None:
    """train_goal_agent for 16 episodes (updates start after about 7) equals 10 + 6 episodes with a judge-side
    look between: the same Q weights, which training changed."""
    runs, untrained = [], None
    for pieces in ((16,), (10, 16)):
        reseed(0)
        agent, env = _bit_flipping_agent(impl, 4, 4, seed=0), BitFlip(4, 0)
        untrained = _q_weights(impl, agent)
        train_with_looks(lambda n: train_goal_agent(impl, agent, env, n, 2, 0.2),
                         lambda: float(JudgeNetwork(impl, agent.q_network)(np.zeros((1, 8))).mean()), pieces,
                         lambda v: False)  # fmt: skip
        runs.append(_q_weights(impl, agent))
    assert len(runs[0]) == len(runs[1]) > 0
    assert any(not np.array_equal(a, b) for a, b in zip(untrained, runs[0])), "training changed no weight"
    for once, pieces in zip(*runs):
        np.testing.assert_array_equal(once, pieces)


def _draw(impl) -> list[float]:
    import random

    import torch

    return [random.random(), float(np.random.rand()), float(torch.rand(()))]


def test_a_judgement_drawing_in_the_worker_leaves_its_random_states(impl, reseed) -> None:
    """drawing_nothing: after a judgement that draws from the worker's python, numpy and torch generators, the
    next draws are those without the judgement."""
    reseed(0)
    expected = impl.run(_draw)
    reseed(0)
    assert drawing_nothing(impl, lambda: impl.run(_draw)[0])() == expected[0]  # the judgement drew ...
    assert impl.run(_draw) == expected  # ... and its draws were put back
