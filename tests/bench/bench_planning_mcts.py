"""Benchmarks of MonteCarloTreeSearch: simulations per second (higher is better); never asserted.

Planning over an environment deep-copies it per expansion and per rollout, so env mode is dominated by
``copy.deepcopy``; model mode (a pure ``step_fn``) shows the cost of the tree itself.
"""

from __future__ import annotations

from _timing import time_call

SIMS = 200


class SimpleMCTSEnv:
    """The notebook's cell-11 environment (old 4-tuple step, int state, goal 10)."""

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


def _line_model(state, action):
    nxt = state + action - 1
    return nxt, -abs(nxt - 10), abs(nxt - 10) < 0.5


def bench_mcts(impl) -> dict[str, float | str]:
    """UCT with 200 simulations: SimpleMCTSEnv (env and model mode) and a 5x5 SimpleGridWorld (env mode)."""
    figures: dict[str, float | str] = {"simulations per search": SIMS}

    env = SimpleMCTSEnv()
    mcts = impl.MonteCarloTreeSearch(env=env, num_simulations=SIMS, max_depth=20, num_actions=3, seed=0)
    t = time_call(lambda: mcts.search(0), repeat=10, warmup=1)
    figures["SimpleMCTSEnv, env copies: sims / s"] = SIMS / t
    figures["SimpleMCTSEnv best action (expect 2)"] = str(mcts.get_best_action(0))

    model = impl.MonteCarloTreeSearch(
        model=_line_model, num_simulations=SIMS, max_depth=20, num_actions=3, seed=0
    )
    t = time_call(lambda: model.search(0), repeat=10, warmup=1)
    figures["SimpleMCTSEnv dynamics as model: sims / s"] = SIMS / t

    try:
        grid = impl.SimpleGridWorld(size=5, step_reward=-0.01)
    except Exception as exc:  # noqa: BLE001 - the grid world is another component; report and go on
        figures["SimpleGridWorld 5x5"] = f"unavailable ({type(exc).__name__})"
        return figures
    obs, _ = grid.reset(seed=0)
    planner = impl.MonteCarloTreeSearch(env=grid, num_simulations=SIMS, max_depth=30, gamma=0.95, seed=0)
    t = time_call(lambda: planner.search(obs), repeat=5, warmup=1)
    figures["SimpleGridWorld 5x5, env copies: sims / s"] = SIMS / t
    figures["SimpleGridWorld root visit counts"] = str(
        planner.root.visit_counts(grid.action_space.n).tolist()
    )
    return figures
