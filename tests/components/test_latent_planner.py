"""LatentSpacePlanner: CEM planning in a learned latent space (PlaNet, Hafner et al. 2019).

A bug is charged once: the planner's models come from other components (DynamicsModel, WorldModel) in the
notebook; here they are test doubles with the same interfaces, so only the planner's code is graded.
"""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from torch import nn

from grader.judge.contracts import assert_inputs_unchanged, assert_noise_not_shared

pytestmark = pytest.mark.component("LatentSpacePlanner")
#: Components whose code these tests replace by test doubles (a bug there is charged there, not here;
#: the student's dashboard says so).
DOUBLES_FOR = ("DynamicsModel", "WorldModel")

STATE_DIM, ACTION_DIM, LATENT_DIM = 4, 2, 16


def _alg(impl):
    return impl.module("planning.algorithms")


class _AddAction(nn.Module):
    """Known linear latent dynamics z' = z + a (latent and action of equal size)."""

    def forward(self, z: torch.Tensor, a: torch.Tensor) -> torch.Tensor:
        return z + a


class _DistanceAfterStep(nn.Module):
    """Known quadratic reward r(z, a) = -||z + a - goal||² (the reward of arriving in z' = z + a)."""

    def __init__(self, goal):
        super().__init__()
        self.register_buffer("goal", torch.as_tensor(goal, dtype=torch.float32))

    def forward(self, z: torch.Tensor, a: torch.Tensor) -> torch.Tensor:
        return -(z + a - self.goal).pow(2).sum(-1, keepdim=True)


class _DynamicsModelDouble(nn.Module):
    """DynamicsModel's interface as the planner uses it: ``action_dim``, and ``forward(state, action)`` returning
    a dict whose ``next_state_mean`` is ``state + f([state, action])`` (an MLP; stds are constant)."""

    def __init__(self, state_dim: int, action_dim: int, hidden_dim: int = 64) -> None:
        super().__init__()
        self.state_dim, self.action_dim = state_dim, action_dim
        self.net = nn.Sequential(
            nn.Linear(state_dim + action_dim, hidden_dim), nn.SiLU(), nn.Linear(hidden_dim, state_dim + 1)
        )

    def forward(self, state: torch.Tensor, action: torch.Tensor) -> dict[str, torch.Tensor]:
        out = self.net(torch.cat([state, action], dim=-1))
        return {
            "next_state_mean": state + out[:, : self.state_dim],
            "reward_mean": out[:, self.state_dim :],
            "next_state_std": torch.ones_like(state),
            "reward_std": torch.ones_like(out[:, self.state_dim :]),
        }


class _WorldModelDouble(nn.Module):
    """WorldModel's interface as ``from_world_model`` uses it: ``encode -> (mean, log_var)``, ``decode``,
    ``predict_next_latent(z, a)``, ``predict_reward(z, a) -> (B, 1)``, ``latent_dim``, ``action_dim``."""

    def __init__(self, state_dim: int, action_dim: int, latent_dim: int, hidden_dim: int = 16) -> None:
        super().__init__()
        self.latent_dim, self.action_dim = latent_dim, action_dim
        self.encoder = nn.Sequential(
            nn.Linear(state_dim, hidden_dim), nn.Tanh(), nn.Linear(hidden_dim, 2 * latent_dim)
        )
        self.decoder = nn.Linear(latent_dim, state_dim)
        self.transition = nn.Linear(latent_dim + action_dim, latent_dim)
        self.reward = nn.Linear(latent_dim + action_dim, 1)

    def encode(self, state: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mean, log_var = self.encoder(state).chunk(2, dim=-1)
        return mean, log_var

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return self.decoder(z)

    def predict_next_latent(self, z: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
        return z + self.transition(torch.cat([z, action], dim=-1))

    def predict_reward(self, z: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
        return self.reward(torch.cat([z, action], dim=-1))


def _moved_to(impl, module: nn.Module, device: str) -> nn.Module:
    """``module`` on ``device``, in the worker (returned as a handle)."""
    return module.to(device)


def _seed_cell_13_models():
    """The notebook's cell 13 models, with a :class:`_DynamicsModelDouble` in place of its DynamicsModel."""
    encoder = nn.Sequential(nn.Linear(STATE_DIM, 64), nn.ReLU(), nn.Linear(64, LATENT_DIM))
    decoder = nn.Sequential(nn.Linear(LATENT_DIM, 64), nn.ReLU(), nn.Linear(64, STATE_DIM))
    dynamics = _DynamicsModelDouble(state_dim=LATENT_DIM, action_dim=ACTION_DIM, hidden_dim=64)
    reward = nn.Sequential(nn.Linear(LATENT_DIM + ACTION_DIM, 64), nn.ReLU(), nn.Linear(64, 1))
    return encoder, decoder, dynamics, reward


def _small_sequential_models(state_dim=3, latent_dim=4, action_dim=2):
    encoder = nn.Sequential(nn.Linear(state_dim, 8), nn.Tanh(), nn.Linear(8, latent_dim))
    dynamics = nn.Sequential(nn.Linear(latent_dim + action_dim, 8), nn.Tanh(), nn.Linear(8, latent_dim))
    reward = nn.Sequential(nn.Linear(latent_dim + action_dim, 8), nn.Tanh(), nn.Linear(8, 1))
    return encoder, None, dynamics, reward


# ---------------------------------------------------------------------------------------------- shapes / API
@pytest.mark.shape
def test_seed_cell_13_shapes(impl):
    """The notebook's planner (Sequential encoder/reward, a DynamicsModel, no action_dim) plans a (2,) action."""
    encoder, decoder, dynamics, reward = _seed_cell_13_models()
    planner = impl.LatentSpacePlanner(
        encoder=encoder,
        decoder=decoder,
        dynamics_model=dynamics,
        reward_model=reward,
        latent_dim=LATENT_DIM,
        planning_horizon=10,
    )
    assert planner.action_dim == ACTION_DIM
    action = planner.plan(torch.randn(STATE_DIM), num_candidates=50)
    assert action.shape == (ACTION_DIM,)
    assert action.dtype == torch.float32
    assert bool(((action >= -1.0) & (action <= 1.0)).all())


@pytest.mark.shape
def test_from_world_model_plans(impl, device):
    """A planner built from a WorldModel (VAE encoder, pair-argument models) returns a bounded (A,) action."""
    double = _WorldModelDouble(state_dim=3, action_dim=2, latent_dim=4, hidden_dim=16)
    wm = impl.run(_moved_to, double, str(device))
    planner = impl.LatentSpacePlanner.from_world_model(
        wm, planning_horizon=4, num_iterations=2, action_low=-0.5, action_high=0.5, device=device
    )
    action = planner.plan(torch.randn(3, device=device), num_candidates=30)
    assert action.shape == (2,)
    assert bool(((action >= -0.5) & (action <= 0.5)).all())


@pytest.mark.shape
def test_latent_rollout_returns_hand_computed(impl):
    """With z' = z + a and r(z, a) = z·a, the sequence (1, 2) from z0 = 1 returns 1·1 + 2·2 = 5."""
    z0 = torch.tensor([[1.0], [0.0]])
    actions = torch.tensor([[[1.0], [2.0]], [[1.0], [-1.0]]])  # (N=2, H=2, A=1)
    returns = _alg(impl).latent_rollout_returns(z0, actions, lambda z, a: z + a, lambda z, a: (z * a).sum(-1))
    # second candidate: r0 = 0·1 = 0, z1 = 1, r1 = 1·(-1) = -1
    assert returns.shape == (2,)
    assert returns.tolist() == pytest.approx([5.0, -1.0])


@pytest.mark.shape
def test_cem_refit_hand_computed(impl):
    """The refit is the mean and population std of the K candidates with the highest returns."""
    actions = torch.tensor([[[0.0]], [[1.0]], [[3.0]], [[10.0]]])  # (N=4, H=1, A=1)
    returns = torch.tensor([0.5, 2.0, 1.0, -3.0])
    mean, std = _alg(impl).cem_refit(actions, returns, 2)  # elites: 1.0 and 3.0
    assert mean.shape == std.shape == (1, 1)
    assert mean.item() == pytest.approx(2.0)
    assert std.item() == pytest.approx(1.0)
    mean1, std1 = _alg(impl).cem_refit(actions, returns, 1)
    assert (mean1.item(), std1.item()) == pytest.approx((1.0, 0.0))


@pytest.mark.shape
def test_sample_action_sequences_statistics(impl):
    """Within wide bounds, sampled sequences have the belief's per-entry mean and standard deviation."""
    mean = torch.tensor([[0.5, -1.0], [2.0, 0.0]])
    std = torch.tensor([[0.1, 1.0], [0.5, 2.0]])
    low, high = torch.full((2,), -100.0), torch.full((2,), 100.0)
    samples = _alg(impl).sample_action_sequences(mean, std, 20_000, low, high)
    assert samples.shape == (20_000, 2, 2)
    assert torch.allclose(samples.mean(0), mean, atol=0.06)
    assert torch.allclose(samples.std(0), std, rtol=0.05)


@pytest.mark.property
@given(
    low=st.lists(st.floats(-3, 1), min_size=2, max_size=2),
    width=st.lists(st.floats(0.05, 3), min_size=2, max_size=2),
    mean_shift=st.floats(-5, 5),
    log_std=st.floats(-3, 2),
    n=st.integers(1, 40),
)
def test_sample_action_sequences_respect_bounds(impl, low, width, mean_shift, log_std, n):
    """Every sampled action lies in [action_low, action_high], whatever the belief."""
    lo = torch.tensor(low)
    hi = lo + torch.tensor(width)
    mean = torch.full((3, 2), mean_shift)
    std = torch.full((3, 2), math.exp(log_std))
    samples = _alg(impl).sample_action_sequences(mean, std, n, lo, hi)
    assert samples.shape == (n, 3, 2)
    assert bool(((samples >= lo) & (samples <= hi)).all())


@pytest.mark.property
@given(
    low=st.lists(st.floats(-3, 1), min_size=2, max_size=2),
    width=st.lists(st.floats(0.05, 3), min_size=2, max_size=2),
    state=st.lists(st.floats(-5, 5), min_size=3, max_size=3),
)
def test_plan_respects_bounds(impl, low, width, state):
    """plan() returns an (A,) action in [action_low, action_high] for any per-dimension bounds and state."""
    torch.manual_seed(0)
    encoder, decoder, dynamics, reward = _small_sequential_models()
    hi = [lo + w for lo, w in zip(low, width)]
    planner = impl.LatentSpacePlanner(
        encoder=encoder,
        decoder=decoder,
        dynamics_model=dynamics,
        reward_model=reward,
        latent_dim=4,
        planning_horizon=3,
        num_iterations=2,
        action_low=low,
        action_high=hi,
    )
    action = planner.plan(torch.tensor(state), num_candidates=20)
    assert action.shape == (2,)
    assert bool(((action >= torch.tensor(low) - 1e-6) & (action <= torch.tensor(hi) + 1e-6)).all())


@pytest.mark.shape
@pytest.mark.points(0)
def test_action_dim_inference_and_errors(impl):
    """action_dim: explicit wins, else inferred from the models; bad arguments raise ValueError naming them."""
    encoder, _, dynamics, reward = _small_sequential_models()
    planner = impl.LatentSpacePlanner(encoder, None, dynamics, reward, latent_dim=4)
    assert planner.action_dim == 2
    assert (
        impl.LatentSpacePlanner(encoder, None, dynamics, reward, latent_dim=4, action_dim=2).action_dim == 2
    )
    # pair-argument models without any hint: cannot infer
    with pytest.raises(ValueError, match="action_dim"):
        impl.LatentSpacePlanner(nn.Identity(), None, _AddAction(), _DistanceAfterStep([0.0]), latent_dim=1)
    for kwargs, name in [
        ({"planning_horizon": 0}, "planning_horizon"),
        ({"latent_dim": 0}, "latent_dim"),
        ({"num_iterations": 0}, "num_iterations"),
        ({"action_low": 1.0, "action_high": -1.0}, "action_low"),
        ({"action_low": [0.0, 0.0, 0.0]}, "action_low"),
    ]:
        with pytest.raises(ValueError, match=name):
            impl.LatentSpacePlanner(
                **{
                    "encoder": encoder,
                    "decoder": None,
                    "dynamics_model": dynamics,
                    "reward_model": reward,
                    "latent_dim": 4,
                    **kwargs,
                }
            )
    with pytest.raises(ValueError, match="num_candidates"):
        planner.plan(torch.zeros(3), num_candidates=0)


# ----------------------------------------------------------------------- contracts (CONVENTIONS §3, issue 23)
def _add(z: torch.Tensor, a: torch.Tensor) -> torch.Tensor:
    """Latent transition z' = z + a (a pure function: it builds a new tensor)."""
    return z + a


def _z_dot_a(z: torch.Tensor, a: torch.Tensor) -> torch.Tensor:
    """Reward r(z, a) = z·a, (N,)."""
    return (z * a).sum(-1)


class _DoublingGaussianEncoder(nn.Module):
    """A VAE-style encoder with a known mean: ``s -> (mean 2·s, log_var 0)``."""

    def forward(self, state: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return 2.0 * state, torch.zeros_like(state)


@pytest.mark.shape
def test_helpers_leave_their_inputs_unchanged(impl):
    """sample_action_sequences, latent_rollout_returns and cem_refit leave the tensors they are given as they
    were and return the documented values."""
    alg = _alg(impl)
    mean = torch.tensor([[1.5, -0.2], [0.3, -2.0]])  # outside the box in places: a clip in place would show
    std = torch.tensor([[0.5, 1.0], [0.2, 0.7]])
    low, high = torch.tensor([-1.0, -1.0]), torch.tensor([1.0, 1.0])
    samples = assert_inputs_unchanged(impl, alg.sample_action_sequences, None, mean, std, 6, low, high)
    assert samples.shape == (6, 2, 2) and samples.dtype == torch.float32
    assert torch.all((samples >= -1.0) & (samples <= 1.0)), samples
    # clip(μ + σ ε, −1, 1), ε ~ N(0, I): where nothing is clipped, ε is finite and within 6 sd; and it varies
    inside = (samples > -1.0) & (samples < 1.0)
    eps = ((samples - mean) / std)[inside]
    assert inside.any() and eps.abs().max() < 6.0, eps
    assert not torch.all(samples == samples[0]), "the 6 candidates are identical: no noise was drawn"
    z0 = torch.tensor([[0.5, -1.0], [2.0, 0.0], [-0.3, 0.7]])
    sequences = torch.tensor(
        [[[1.0, 0.5], [-1.0, 0.2]], [[0.3, 0.3], [0.9, -0.9]], [[-0.5, 1.0], [0.0, 0.4]]]
    )  # (N=3, H=2, A=2)
    returns = assert_inputs_unchanged(impl, alg.latent_rollout_returns, None, z0, sequences, _add, _z_dot_a)
    # R = z_0·a_0 + (z_0 + a_0)·a_1
    expected = [(0.5 * 1.0 - 1.0 * 0.5) + (1.5 * -1.0 - 0.5 * 0.2),
                (2.0 * 0.3 + 0.0 * 0.3) + (2.3 * 0.9 + 0.3 * -0.9),
                (-0.3 * -0.5 + 0.7 * 1.0) + (-0.8 * 0.0 + 1.7 * 0.4)]  # fmt: skip
    torch.testing.assert_close(returns, torch.tensor(expected))
    returns = torch.tensor([0.5, 3.0, float("-inf")])  # unsorted, -inf: a sort or clamp in place would show
    elite_mean, elite_std = assert_inputs_unchanged(impl, alg.cem_refit, None, sequences, returns, 2)
    # the 2 elites are candidates 1 and 0: their mean and population std, |a_0 − a_1| / 2
    torch.testing.assert_close(elite_mean, torch.tensor([[(1.0 + 0.3) / 2, (0.5 + 0.3) / 2],
                                                         [(-1.0 + 0.9) / 2, (0.2 - 0.9) / 2]]))  # fmt: skip
    torch.testing.assert_close(elite_std, torch.tensor([[(1.0 - 0.3) / 2, (0.5 - 0.3) / 2],
                                                        [(0.9 + 1.0) / 2, (0.2 + 0.9) / 2]]))  # fmt: skip


@pytest.mark.shape
def test_planner_leaves_its_inputs_unchanged(impl):
    """plan (a tensor or an array state), decode_plan and the model adapters leave the caller's tensors as
    they were and return the documented values."""
    planner = impl.LatentSpacePlanner(
        encoder=_DoublingGaussianEncoder(),  # z = 2 s
        decoder=nn.Identity(),
        dynamics_model=_AddAction(),  # z' = z + a
        reward_model=_DistanceAfterStep((0.5, -0.3)),  # r = −‖z + a − (0.5, −0.3)‖²
        latent_dim=2,
        action_dim=2,
        planning_horizon=3,
        num_iterations=2,
    )
    state = torch.tensor([0.4, -0.8])
    z, action = torch.tensor([[0.4, -0.8], [1.5, 0.0]]), torch.tensor([[2.0, -3.0], [0.5, 0.5]])
    for planned_from in (state, state.numpy()):  # a float32 array shares its memory
        first = assert_inputs_unchanged(impl, planner, "plan", planned_from, num_candidates=20)
        plan = planner.last_plan
        assert first.shape == (2,) and plan.shape == (3, 2), (first.shape, plan.shape)
        assert torch.all((first >= -1.0) & (first <= 1.0)), first
        torch.testing.assert_close(first, plan[0])  # the first action of the final belief mean (in the box)
        assert not torch.equal(plan, torch.zeros(3, 2)), "last_plan is still the initial belief mean"
    decoded = assert_inputs_unchanged(impl, planner, "decode_plan", state)
    # z_0 = 2 s, z_{t+1} = z_t + a_t, decoded by the identity
    torch.testing.assert_close(decoded, 2.0 * state + torch.cumsum(plan, dim=0))
    torch.testing.assert_close(assert_inputs_unchanged(impl, planner, "encode", state[None]), 2.0 * state[None])
    torch.testing.assert_close(assert_inputs_unchanged(impl, planner, "transition", z, action),
                               torch.tensor([[0.4 + 2.0, -0.8 - 3.0], [1.5 + 0.5, 0.0 + 0.5]]))  # fmt: skip
    rewards = assert_inputs_unchanged(impl, planner, "reward", z, action)
    torch.testing.assert_close(rewards, torch.tensor([-((2.4 - 0.5) ** 2 + (-3.8 + 0.3) ** 2),
                                                      -((2.0 - 0.5) ** 2 + (0.5 + 0.3) ** 2)]))  # fmt: skip


@pytest.mark.shape
def test_sampled_noise_is_independent_across_candidates_steps_and_dimensions(impl):
    """ε has one draw per (candidate, step, action dimension): no two candidates, steps or dimensions share
    their noise (within wide bounds, where nothing is clipped)."""
    mean = torch.tensor([[0.5, -1.0], [2.0, 0.0], [0.0, 1.0]])
    std = torch.tensor([[0.1, 1.0], [0.5, 2.0], [1.0, 0.3]])
    low, high = torch.full((2,), -100.0), torch.full((2,), 100.0)
    samples = _alg(impl).sample_action_sequences(mean, std, 4, low, high)
    eps = (samples - mean) / std  # (N=4, H=3, A=2) standardised noise
    assert_noise_not_shared(eps, {0: "candidates", 1: "steps", 2: "action dimensions"},
                            "ε needs one draw per (candidate, step, action dimension)")  # fmt: skip


@pytest.mark.shape
def test_cem_refit_with_every_candidate_an_elite(impl):
    """K = N (the upper bound): the refit is the mean and population std of all candidates."""
    actions = torch.tensor([[[1.0, 0.0]], [[3.0, 4.0]], [[-1.0, 2.0]]])  # (N=3, H=1, A=2)
    mean, std = _alg(impl).cem_refit(actions, torch.tensor([0.0, -2.0, 5.0]), 3)
    # first entry: 1, 3, -1 -> mean 1, variance (0 + 4 + 4) / 3; second: 0, 4, 2 -> mean 2, variance 8 / 3
    assert mean.reshape(-1).tolist() == pytest.approx([1.0, 2.0])
    assert std.reshape(-1).tolist() == pytest.approx([(8 / 3) ** 0.5] * 2, rel=1e-5)


# ---------------------------------------------------------------------------------------------- convergence
@pytest.mark.convergence
@pytest.mark.points(2)
@pytest.mark.timeout(60)
@pytest.mark.parametrize(
    ("goal", "expected_first_action"),
    [((0.5, -0.3), (0.5, -0.3)), ((3.0, 0.2), (1.0, 0.2))],
    ids=["interior", "saturated"],
)
def test_cem_finds_known_optimum(impl, seed_trials, goal, expected_first_action):
    """Identity encoder, z' = z + a, r = -||z'-g||²: the first planned action is g − z0, clipped to [-1, 1]
    (within 0.05, on 2 of 3 seeds).

    Calibration (docs/calibration.md, 2026-12-01): no seed of 60 failed in either case (30 on the reference, 15
    on each perturbed reference), so p ≤ 5 % per seed (rule of three) and the estimated false-fail rate is ≤
    0.73 %. (As one run of all 3 seeds, the fit of the errors gave 0.4 % and 1.0 %.)
    """

    def trial(seed: int) -> tuple[bool, str]:
        planner = impl.LatentSpacePlanner(
            encoder=nn.Identity(),
            decoder=nn.Identity(),
            dynamics_model=_AddAction(),
            reward_model=_DistanceAfterStep(goal),
            latent_dim=2,
            action_dim=2,
            planning_horizon=3,
            num_iterations=8,
            num_elites=50,
        )
        action = planner.plan(torch.zeros(2), num_candidates=500)
        error = (action - torch.tensor(expected_first_action)).abs().max().item()
        return error < 0.05, f"first action {[round(a, 3) for a in action.tolist()]}"

    seed_trials(trial, f"CEM's first action within 0.05 of {list(expected_first_action)}", seeds=(0, 1, 2), need=2)


def _train_point_mass_latent_model(steps: int = 1000):
    """Deterministic auto-encoder + latent dynamics + reward of the point mass s' = s + 0.1a, r = -||s'||,
    trained here in the judge from torch's global generator (seed it first)."""
    enc = nn.Sequential(nn.Linear(2, 32), nn.Tanh(), nn.Linear(32, 4))
    dec = nn.Sequential(nn.Linear(4, 32), nn.Tanh(), nn.Linear(32, 2))
    dyn = nn.Sequential(nn.Linear(6, 64), nn.Tanh(), nn.Linear(64, 4))
    rew = nn.Sequential(nn.Linear(6, 64), nn.Tanh(), nn.Linear(64, 1))
    params = [p for m in (enc, dec, dyn, rew) for p in m.parameters()]
    opt = torch.optim.Adam(params, lr=3e-3)
    for _ in range(steps):
        s = torch.rand(128, 2) * 2.4 - 1.2
        a = torch.rand(128, 2) * 2 - 1
        s2 = s + 0.1 * a
        z, z2 = enc(s), enc(s2)
        za = torch.cat([z, a], -1)
        loss = (
            (dec(z) - s).pow(2).sum(-1).mean()
            + (dyn(za) - z2.detach()).pow(2).sum(-1).mean()
            + (dec(dyn(za)) - s2).pow(2).sum(-1).mean()
            + (rew(za).squeeze(-1) + s2.norm(dim=-1)).pow(2).mean()
        )
        opt.zero_grad()
        loss.backward()
        opt.step()
    return enc, dec, dyn, rew


@pytest.mark.convergence
@pytest.mark.points(2)
@pytest.mark.timeout(120)
def test_planning_with_trained_model_reaches_goal(impl, reseed, seed_trials):
    """With a learned point-mass model, 12 MPC steps end far closer to the goal than random actions (2 of 3 seeds).

    Measured with the reference (seeds 0-2): mean planned distance ≤ 0.15 against about 0.8 for random actions.
    Calibration (docs/calibration.md, 2026-12-01): no seed of 60 failed (30 on the reference, 15 on each
    perturbed reference), so p ≤ 5 % per seed (rule of three) and the estimated false-fail rate is ≤ 0.73 %.
    """

    def trial(seed: int) -> tuple[bool, str]:
        enc, dec, dyn, rew = _train_point_mass_latent_model()
        planner = impl.LatentSpacePlanner(
            encoder=enc,
            decoder=dec,
            dynamics_model=dyn,
            reward_model=rew,
            latent_dim=4,
            planning_horizon=8,
            num_iterations=4,
        )
        reseed(seed)
        angles = torch.rand(4) * 2 * math.pi
        starts = 0.8 * torch.stack([angles.cos(), angles.sin()], -1)
        planned, random_ = [], []
        for start in starts:
            s = start.clone()
            for _ in range(12):
                s = s + 0.1 * planner.plan(s, num_candidates=200).clamp(-1, 1)
            planned.append(s.norm().item())
            s = start.clone()
            for _ in range(12):
                s = s + 0.1 * (torch.rand(2) * 2 - 1)
            random_.append(s.norm().item())
        mean_planned = sum(planned) / len(planned)
        mean_random = sum(random_) / len(random_)
        # optimal: about 0 (12 steps of up to 0.14 from distance 0.8); random: about 0.8
        learned = mean_planned < 0.35 and mean_planned < 0.5 * mean_random
        return learned, f"mean final distance planned {mean_planned:.2f}, random {mean_random:.2f}"

    seed_trials(trial, "MPC on the learned model ended nearer the goal (mean distance < 0.35 and < half of "
                "random's)", seeds=(0, 1, 2), need=2)  # fmt: skip


# ---------------------------------------------------------------------------------------------- device
@pytest.mark.gpu
@pytest.mark.points(0)
@pytest.mark.convergence
@pytest.mark.timeout(60)
def test_plan_on_device(impl, device):
    """On --device, the planner finds the known optimum with models and candidates on the device."""
    if device.type != "cuda":
        pytest.skip("run with --device cuda")
    planner = impl.LatentSpacePlanner(
        encoder=nn.Identity(),
        decoder=None,
        dynamics_model=_AddAction(),
        reward_model=_DistanceAfterStep((0.5, -0.3)),
        latent_dim=2,
        action_dim=2,
        planning_horizon=3,
        num_iterations=8,
        num_elites=50,
        device=device,
    )
    action = planner.plan(torch.zeros(2), num_candidates=1000)
    assert action.device.type == "cuda"
    assert action.tolist() == pytest.approx([0.5, -0.3], abs=0.05)
