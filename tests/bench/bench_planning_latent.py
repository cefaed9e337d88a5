"""Benchmark of LatentSpacePlanner.plan(): latency of one CEM plan (H = 12, N = 1000, 5 iterations)."""

from __future__ import annotations

import torch
from _timing import time_call
from torch import nn

STATE_DIM, ACTION_DIM, LATENT_DIM = 4, 2, 16
HORIZON, CANDIDATES, ITERATIONS = 12, 1000, 5


def bench_latent_planning(impl) -> dict[str, float | str]:
    """plan() latency with the notebook's models (cell 13) and with a WorldModel (from_world_model)."""
    torch.manual_seed(0)
    encoder = nn.Sequential(nn.Linear(STATE_DIM, 64), nn.ReLU(), nn.Linear(64, LATENT_DIM))
    decoder = nn.Sequential(nn.Linear(LATENT_DIM, 64), nn.ReLU(), nn.Linear(64, STATE_DIM))
    dynamics = impl.DynamicsModel(state_dim=LATENT_DIM, action_dim=ACTION_DIM, hidden_dim=64)
    reward = nn.Sequential(nn.Linear(LATENT_DIM + ACTION_DIM, 64), nn.ReLU(), nn.Linear(64, 1))
    planner = impl.LatentSpacePlanner(
        encoder=encoder,
        decoder=decoder,
        dynamics_model=dynamics,
        reward_model=reward,
        latent_dim=LATENT_DIM,
        planning_horizon=HORIZON,
        num_iterations=ITERATIONS,
    )
    state = torch.randn(STATE_DIM)
    seconds = time_call(lambda: planner.plan(state, num_candidates=CANDIDATES), repeat=10, warmup=2)

    wm = impl.WorldModel(state_dim=STATE_DIM, action_dim=ACTION_DIM, latent_dim=LATENT_DIM, hidden_dim=128)
    wm_planner = impl.LatentSpacePlanner.from_world_model(
        wm, planning_horizon=HORIZON, num_iterations=ITERATIONS
    )
    wm_seconds = time_call(lambda: wm_planner.plan(state, num_candidates=CANDIDATES), repeat=10, warmup=2)

    steps = HORIZON * ITERATIONS
    return {
        "setting": f"H={HORIZON} N={CANDIDATES} iterations={ITERATIONS} latent={LATENT_DIM}",
        "plan latency, cell-13 models [ms]": 1e3 * seconds,
        "plan latency, WorldModel hidden 128 [ms]": 1e3 * wm_seconds,
        "latent steps per second, cell-13 models": CANDIDATES * steps / seconds,
        "latent steps per second, WorldModel": CANDIDATES * steps / wm_seconds,
    }
