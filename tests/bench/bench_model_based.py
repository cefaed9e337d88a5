"""Benchmarks of the model-based components: batched ensemble vs a loop of models, MPC planning overhead."""

from __future__ import annotations

import torch
from _timing import time_call

S, A, E, HIDDEN = 4, 2, 5, 200


def bench_ensemble_forward(impl) -> dict[str, float | str]:
    """Batched ModelEnsemble forward (E=5, B=256 and B=32) vs a Python loop over 5 DynamicsModels of that size."""
    torch.manual_seed(0)
    ens = impl.ModelEnsemble(state_dim=S, action_dim=A, ensemble_size=E, hidden_dim=HIDDEN)
    singles = [impl.DynamicsModel(state_dim=S, action_dim=A, hidden_dim=HIDDEN) for _ in range(E)]
    figures: dict[str, float | str] = {"shape": f"E={E} hidden={HIDDEN}x3"}
    for batch in (256, 32):
        s, a = torch.randn(batch, S), torch.randn(batch, A)

        @torch.no_grad()
        def batched(s=s, a=a):
            ens(s, a)

        @torch.no_grad()
        def looped(s=s, a=a):
            for m in singles:
                m(s, a)

        t_batched = time_call(batched, repeat=50)
        t_loop = time_call(looped, repeat=50)
        figures[f"B={batch} ensemble_forward_ms"] = 1e3 * t_batched
        figures[f"B={batch} loop_of_dynamics_models_ms"] = 1e3 * t_loop
        figures[f"B={batch} loop_over_batched_ratio"] = t_loop / t_batched
    return figures


def bench_plan_action(impl) -> dict[str, float | str]:
    """plan_action latency (CEM, H=10, N=100, 5 iterations, P=20, E=5) vs its ensemble forwards alone."""
    torch.manual_seed(0)
    horizon, samples, iterations, particles = 10, 100, 5, 20
    ens = impl.ModelEnsemble(state_dim=S, action_dim=A, ensemble_size=E, hidden_dim=HIDDEN)
    mpc = impl.ModelPredictiveController(
        ens,
        action_dim=A,
        horizon=horizon,
        num_samples=samples,
        num_iterations=iterations,
        num_particles=particles,
        method="cem",
        propagation="ts1",
    )
    state = torch.randn(S)
    t_plan = time_call(lambda: mpc.plan_action(state), repeat=5, warmup=1)

    # the same network work alone: iterations * horizon forwards of (E, N*P/E) rows through the batched layers
    x = torch.randn(E, samples * particles // E, S + A)

    @torch.no_grad()
    def matmuls_only():
        for _ in range(iterations * horizon):
            ens.net(x)

    t_mm = time_call(matmuls_only, repeat=5, warmup=1)
    return {
        "shape": f"H={horizon} N={samples} iters={iterations} P={particles} E={E} hidden={HIDDEN}x3",
        "plan_action_ms": 1e3 * t_plan,
        "ensemble_matmuls_only_ms": 1e3 * t_mm,
        "plan_over_matmuls_ratio": t_plan / t_mm,
    }
