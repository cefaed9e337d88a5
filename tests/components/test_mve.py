"""Graded tests of ModelBasedValueExpansion and its helpers compute_targets, mve_loss (Feinberg et al. 2018)."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from grader.judge.contracts import assert_inputs_unchanged

pytestmark = pytest.mark.component("ModelBasedValueExpansion")

N = 10  # ring states
GAMMA = 0.9


def _alg(impl):
    return impl.module("planning.algorithms")


def ring(device="cpu"):
    """A deterministic ring s -> s + 1 (mod N) over one-hot states, reward r(s) = sin(1.3 s) + 0.5 on leaving s.

    Returns (model, policy, states (N, N), rewards (N,), true values (N,)), the values from the linear system
    (I - gamma P) V = r."""
    r = torch.tensor([math.sin(1.3 * k) + 0.5 for k in range(N)], device=device)
    perm = torch.roll(torch.eye(N, device=device), 1, dims=1)
    v_true = torch.linalg.solve(torch.eye(N, device=device) - GAMMA * perm, r)

    def model(s, a):
        idx = s.argmax(1)
        return torch.nn.functional.one_hot((idx + 1) % N, N).float(), r[idx]

    def policy(s):
        return torch.zeros(s.shape[0], dtype=torch.long, device=s.device)

    return model, policy, torch.eye(N, device=device), r, v_true


def tabular(values, device="cpu"):
    """A value network on one-hot states whose output for state k is values[k]."""
    net = torch.nn.Linear(len(values), 1, bias=False).to(device)
    with torch.no_grad():
        net.weight.copy_(torch.as_tensor(values, dtype=torch.float32, device=device)[None])
    return net


def chain_model(s, a):
    """Chain over one-hot states 0..5: s -> s + 1, reward s + 1; entering state 3 ends the episode."""
    idx = s.argmax(1)
    nxt = (idx + 1).clamp(max=5)
    return torch.nn.functional.one_hot(nxt, 6).float(), (idx + 1).float(), (nxt == 3).float()


class LinearModel(torch.nn.Module):
    """A learnable dynamics model (linear in [s, a]) in the DynamicsModel output format: S = 4, A = 2."""

    def __init__(self):
        super().__init__()
        self.action_dim = 2
        self.f = torch.nn.Linear(4 + 2, 5)

    def forward(self, s, a):
        out = self.f(torch.cat([s, a], dim=-1))
        return {"next_state_mean": out[:, :4], "reward_mean": out[:, 4:]}


def critic_network():
    """A small value network on S = 4 states."""
    return torch.nn.Sequential(torch.nn.Linear(4, 16), torch.nn.Tanh(), torch.nn.Linear(16, 1))


# ----------------------------------------------------------------------------------------------- probes


def _new(impl, make, *args, device=None, **kwargs):
    """In the worker: ``make(*args, **kwargs)`` (moved to ``device``); its handle comes back, so that the judge
    can give that very object to the implementation and read it afterwards."""
    obj = make(*args, **kwargs)
    return obj if device is None else obj.to(device)


def _params(impl, module):
    """In the worker: ``[(name, value, grad or None)]`` of every parameter of ``module``."""
    return [
        (name, p.detach().clone(), None if p.grad is None else p.grad.detach().clone())
        for name, p in module.named_parameters()
    ]


def _loss_and_grads(impl, values, targets, mask):
    """In the worker: mve_loss of fresh leaf tensors, backpropagated: (loss, values.grad, targets.grad)."""
    values = values.detach().clone().requires_grad_(True)
    targets = targets.detach().clone().requires_grad_(True)
    loss = impl.module("planning.algorithms").mve_loss(values, targets, mask)
    loss.backward()
    return loss.detach(), values.grad, targets.grad


def _imagined(impl, mve, *args):
    """In the worker: ``mve.imagine(*args)`` as a dict of its named fields states, rewards, dones."""
    ro = mve.imagine(*args)
    return {"states": ro.states, "rewards": ro.rewards, "dones": ro.dones}


def _train_and_watch(impl, mve, net, steps, *batch):
    """In the worker: ``steps`` calls of ``mve.train_step(*batch)``; the weight row of the linear value network
    ``net`` after each, ``(steps, N)`` (the judge evaluates the values itself)."""
    weights = []
    for _ in range(steps):
        mve.train_step(*batch)
        weights.append(net.weight.detach().reshape(-1).clone())
    return torch.stack(weights)


# ----------------------------------------------------------------------------------------------- pure helpers


@pytest.mark.shape
def test_compute_targets_hand_computed_with_done_masking(impl):
    """Targets built backwards: a terminal transition at t = 1 cuts the bootstrap and everything after it."""
    ct = _alg(impl).compute_targets
    rewards = torch.tensor([[1.0, 2.0, 3.0], [1.0, 1.0, 1.0]])
    dones = torch.tensor([[0.0, 1.0, 0.0], [0.0, 0.0, 0.0]])
    out = ct(rewards, dones, torch.tensor([10.0, 4.0]), 0.5)
    # row 0: t2 = 3 + 0.5 * 10 = 8, t1 = 2 (terminal), t0 = 1 + 0.5 * 2 = 2
    # row 1: t2 = 1 + 0.5 * 4 = 3, t1 = 1 + 1.5 = 2.5, t0 = 1 + 1.25 = 2.25
    torch.testing.assert_close(out, torch.tensor([[2.0, 2.0, 8.0], [2.25, 2.5, 3.0]]))
    assert ct(rewards, dones.bool(), torch.tensor([10.0, 4.0]), 0.5).shape == (2, 3)


@pytest.mark.property
@given(
    b=st.integers(1, 4),
    t=st.integers(1, 6),
    gamma=st.floats(0.0, 1.0),
    seed=st.integers(0, 10_000),
)
def test_compute_targets_matches_the_discounted_sum(impl, b, t, gamma, seed):
    """float32 in, float32 out: sum_{j>=k} gamma^(j-k) r_j to the first done (+ gamma^(T-k) V' if none).

    Tolerance: each of the <= T backward steps g = r + gamma (1 - d) g rounds at most 3 times (relative
    eps32 / 2 each) at magnitudes <= M = sum_j |r_j| + |bootstrap|, and gamma itself is rounded to
    float32 (relative eps32 / 2, at most T powers of it): error <= (3 T + T) eps32 / 2 M = 2 T eps32 M.
    The test allows 8 (T + 1) eps32 M + 1e-6 (a margin of 4 for other summation orders); every wrong
    target is off by O(0.1).
    """
    g = torch.Generator().manual_seed(seed)
    rewards = torch.randn(b, t, generator=g)
    dones = (torch.rand(b, t, generator=g) < 0.3).float()
    boot = torch.randn(b, generator=g)
    out = _alg(impl).compute_targets(rewards, dones, boot, gamma)
    assert out.shape == (b, t) and out.dtype == torch.float32
    eps32 = torch.finfo(torch.float32).eps
    for i in range(b):
        tol = 8 * (t + 1) * eps32 * (rewards[i].abs().sum().item() + abs(boot[i].item())) + 1e-6
        for k in range(t):
            total, disc, ended = 0.0, 1.0, False
            for j in range(k, t):
                total += disc * rewards[i, j].item()
                disc *= gamma
                if dones[i, j] > 0:
                    ended = True
                    break
            if not ended:
                total += disc * boot[i].item()
            assert out[i, k].item() == pytest.approx(total, abs=tol)


@pytest.mark.shape
def test_mve_loss_hand_computed_and_masked(impl):
    """mve_loss is the (masked) mean squared error; the targets get no gradient."""
    loss_fn = _alg(impl).mve_loss
    values = torch.tensor([[1.0, 2.0], [0.0, 5.0]], requires_grad=True)
    targets = torch.tensor([[0.0, 0.0], [2.0, 1.0]], requires_grad=True)
    assert loss_fn(values, targets).item() == pytest.approx((1 + 4 + 4 + 16) / 4)
    mask = torch.tensor([[1.0, 1.0], [1.0, 0.0]])
    assert loss_fn(values, targets, mask).item() == pytest.approx((1 + 4 + 4) / 3)
    loss, values_grad, _ = impl.run(_loss_and_grads, values, targets, mask)  # backward in the worker
    assert loss.item() == pytest.approx((1 + 4 + 4) / 3)
    torch.testing.assert_close(values_grad, torch.tensor([[2 * 1 / 3, 2 * 2 / 3], [2 * -2 / 3, 0.0]]))


@pytest.mark.gradient
@pytest.mark.parametrize("masked", [False, True], ids=["unmasked", "masked"])
def test_mve_loss_sends_no_gradient_into_the_targets(impl, masked):
    """Targets that require grad get none from mve_loss (constants, eq. 2); the values get 2 err / n."""
    values = torch.tensor([[1.0, 2.0], [0.0, 5.0]])
    targets = torch.tensor([[0.0, 0.0], [2.0, 1.0]])
    mask = torch.tensor([[1.0, 1.0], [1.0, 0.0]]) if masked else None
    _, values_grad, targets_grad = impl.run(_loss_and_grads, values, targets, mask)  # leaves with grad
    assert targets_grad is None or torch.count_nonzero(targets_grad) == 0, (
        f"mve_loss must detach its targets; they received the gradient {targets_grad}"
    )
    assert values_grad is not None and torch.count_nonzero(values_grad) > 0, "no gradient reaches the values"


@pytest.mark.shape
def test_compute_targets_of_an_empty_trajectory(impl):
    """T = 0 transitions: a (B, 0) float32 tensor of targets, for any bootstrap."""
    bootstrap = torch.tensor([1.0, -2.0, 5.0])
    out = _alg(impl).compute_targets(torch.zeros(3, 0), torch.zeros(3, 0), bootstrap, 0.9)
    assert out.shape == (3, 0) and out.dtype == torch.float32


@pytest.mark.shape
def test_compute_targets_with_infinite_rewards_and_bootstraps(impl):
    """An infinite reward r_k makes targets[:, k] and the earlier targets infinite, while the later ones stay
    finite; an infinite bootstrap makes every target of its row infinite (γ = 0.5, no terminal transition):
    [1, inf, 2] from 3 gives [inf, inf, 3.5]; [-1, 0.5, 1] from −inf all −inf; [−inf, 1, 1] from 2 gives
    [−inf, 2, 2]."""
    inf = float("inf")
    rewards = torch.tensor([[1.0, inf, 2.0], [-1.0, 0.5, 1.0], [-inf, 1.0, 1.0]])
    bootstrap = torch.tensor([3.0, -inf, 2.0])
    targets = _alg(impl).compute_targets(rewards, torch.zeros(3, 3), bootstrap, 0.5)
    expected = torch.tensor([[inf, inf, 3.5], [-inf, -inf, -inf], [-inf, 2.0, 2.0]])
    assert not targets.isnan().any(), (
        f"targets {targets.tolist()} hold NaN: a later target is a sum of later rewards only (a weight 0 times an "
        "infinite reward is NaN, so an earlier reward must not enter it at all)"
    )
    torch.testing.assert_close(targets, expected)


@pytest.mark.shape
def test_mve_loss_with_fractional_mask_weights(impl):
    """A fractional mask weighs each squared error: sum(mask err^2) / sum(mask); a zero weight drops one."""
    values = torch.tensor([[1.0, 2.0], [0.0, 5.0]])
    targets = torch.tensor([[0.0, 0.0], [2.0, 1.0]])
    mask = torch.tensor([[0.5, 1.0], [0.0, 0.25]])  # squared errors 1, 4, 4, 16
    loss = _alg(impl).mve_loss(values, targets, mask)
    assert loss.shape == () and loss.item() == pytest.approx((0.5 * 1 + 4 + 0.25 * 16) / 1.75)


@pytest.mark.shape
def test_mve_loss_with_light_or_zero_mask_weights(impl):
    """Weights summing below 1 divide by 1: 0.5·(2 − 0)² = 2; an all-zero mask gives 0, not NaN."""
    values, targets = torch.tensor([[2.0, 1.0]]), torch.zeros(1, 2)
    assert _alg(impl).mve_loss(values, targets, torch.tensor([[0.5, 0.0]])).item() == pytest.approx(2.0)
    assert _alg(impl).mve_loss(values, targets, torch.zeros(1, 2)).item() == 0.0


@pytest.mark.shape
def test_helpers_leave_their_inputs_unchanged(impl):
    """compute_targets and mve_loss leave the caller's rewards, dones, bootstrap values, values and mask, and
    return the hand-computed targets and losses."""
    alg = _alg(impl)
    rewards = torch.tensor([[1.0, 2.0, 3.0], [1.0, -1.0, 0.5]])
    dones = torch.tensor([[0.0, 1.0, 0.0], [0.0, 0.0, 0.0]])
    out = assert_inputs_unchanged(impl, alg.compute_targets, None, rewards, dones, torch.tensor([10.0, 4.0]), 0.5)
    # row 0: t2 = 3 + 0.5 * 10 = 8, t1 = 2 (terminal), t0 = 1 + 0.5 * 2 = 2
    # row 1: t2 = 0.5 + 0.5 * 4 = 2.5, t1 = -1 + 0.5 * 2.5 = 0.25, t0 = 1 + 0.5 * 0.25 = 1.125
    torch.testing.assert_close(out, torch.tensor([[2.0, 2.0, 8.0], [1.125, 0.25, 2.5]]))
    values, targets = torch.tensor([[1.0, 2.0], [0.0, 5.0]]), torch.tensor([[0.0, 0.0], [2.0, 1.0]])
    # squared errors 1, 4, 4, 16
    loss = assert_inputs_unchanged(impl, alg.mve_loss, None, values, targets, torch.tensor([[0.5, 1.0], [0.0, 2.0]]))
    assert loss.shape == () and loss.item() == pytest.approx((0.5 * 1 + 4 + 0 * 4 + 2 * 16) / 3.5)
    loss = assert_inputs_unchanged(impl, alg.mve_loss, None, values, targets)
    assert loss.shape == () and loss.item() == pytest.approx((1 + 4 + 4 + 16) / 4)


@pytest.mark.shape
def test_agent_calls_leave_their_inputs_unchanged(impl):
    """mve_targets, train_step and expand_value leave the caller's states, rewards, next states and dones, and
    return the targets, mask, losses and values computed by hand on the ring (critics at V_true and at 0)."""
    model, policy, states, r, v_true = ring()
    k = torch.arange(N)
    nxt = torch.roll(states, -1, dims=0)  # state k + 1
    dones = torch.zeros(N)
    dones[3] = 1.0
    # A critic at the true values, V = V' = v_true = r + γ v_true[k + 1]: the real transition k -> k + 1 with
    # reward r[k] + 1, then 2 imagined steps (T = 3), gives the targets v_true[k] + 1 (r[3] + 1 at the terminal
    # k = 3), v_true[k + 1] and v_true[k + 2]; the mask drops row 3 after t = 0.
    mve = impl.ModelBasedValueExpansion(model, tabular(v_true), horizon=2, gamma=GAMMA, policy=policy)
    traj, targets, mask = assert_inputs_unchanged(impl, mve, "mve_targets", states, r + 1.0, nxt, dones)
    torch.testing.assert_close(traj, torch.stack([states, states[(k + 1) % N], states[(k + 2) % N]], dim=1))
    expected = torch.stack([v_true + 1.0, v_true[(k + 1) % N], v_true[(k + 2) % N]], dim=1)
    expected[3, 0] = r[3] + 1.0
    torch.testing.assert_close(targets, expected, rtol=1e-5, atol=1e-5)
    expected_mask = torch.ones(N, 3)
    expected_mask[3, 1:] = 0.0
    torch.testing.assert_close(mask, expected_mask)
    # its loss: error −1 at t = 0 of the 9 rows k ≠ 3, v_true[3] − r[3] − 1 = γ v_true[4] − 1 at k = 3 and 0
    # elsewhere; 28 entries count
    loss = assert_inputs_unchanged(impl, mve, "train_step", states, r + 1.0, nxt, dones)
    assert isinstance(loss, float)
    assert loss == pytest.approx((9 * 1.0 + (GAMMA * v_true[4].item() - 1.0) ** 2) / 28, rel=1e-4)
    moved = mve.value_network.weight.detach().reshape(-1) - v_true  # the step raises V towards V_true + 1
    assert (moved[k != 3] > 0).all(), f"after train_step V - V_true = {moved.tolist()}"
    # A critic at 0 (V = V' = 0), 2 imagined steps from k: value r[k] + γ r[k+1]; targets r[k] + γ r[k+1], r[k+1]
    mve = impl.ModelBasedValueExpansion(model, tabular(torch.zeros(N)), horizon=2, gamma=GAMMA, policy=policy)
    two_step = r + GAMMA * r[(k + 1) % N]
    values = assert_inputs_unchanged(impl, mve, "expand_value", states)
    torch.testing.assert_close(values, two_step)
    traj, targets, mask = assert_inputs_unchanged(impl, mve, "mve_targets", states[:4])
    torch.testing.assert_close(traj, torch.stack([states[:4], states[1:5]], dim=1))
    torch.testing.assert_close(targets, torch.stack([two_step[:4], r[1:5]], dim=1))
    torch.testing.assert_close(mask, torch.ones(4, 2))
    loss = assert_inputs_unchanged(impl, mve, "train_step", states[:4])  # the mean of the 8 squared targets
    assert loss == pytest.approx(((two_step[:4] ** 2).sum() + (r[1:5] ** 2).sum()).item() / 8, rel=1e-5)


# ----------------------------------------------------------------------------------------------- the agent


@pytest.mark.shape
def test_imagine_and_expand_value_shapes(impl, device):
    """imagine gives (B,T+1,S)/(B,T)/(B,T) tensors; expand_value gives (B,), or () for one state."""
    model, policy, states, _, _ = ring(device)
    mve = impl.ModelBasedValueExpansion(
        model, tabular(torch.zeros(N), device), horizon=3, policy=policy, device=device
    )
    ro = impl.run(_imagined, mve, states[:4])
    assert ro["states"].shape == (4, 4, N) and ro["rewards"].shape == (4, 3) and ro["dones"].shape == (4, 3)
    torch.testing.assert_close(ro["states"][:, 3], states[3:7])
    assert mve.expand_value(states[:4]).shape == (4,)
    assert mve.expand_value(states[0]).shape == ()
    assert impl.run(_imagined, mve, states[:2], 0)["states"].shape == (2, 1, N)


@pytest.mark.shape
def test_expand_value_hand_computed_and_cut_at_terminal(impl):
    """expand_value = sum_{t<H} gamma^t r_t + gamma^H V(s_H); a terminal transition drops later terms."""
    values = torch.arange(6, dtype=torch.float32) * 10  # V(k) = 10 k
    mve = impl.ModelBasedValueExpansion(
        chain_model, tabular(values), horizon=2, gamma=0.5, policy=lambda s: torch.zeros(len(s))
    )
    out = mve.expand_value(torch.eye(6)[[0, 2]])
    # from 0: r = 1, 2, then V(2) = 20: 1 + 0.5 * 2 + 0.25 * 20 = 7;  from 2: r = 3, entering 3 is terminal: 3
    torch.testing.assert_close(out, torch.tensor([7.0, 3.0]))


@pytest.mark.convergence
def test_mve_targets_are_closer_to_the_true_values_than_td(impl, margin):
    """For V = V_true + noise on the ring, the H = 5 expansion's error is gamma^4 times the one-step TD error.

    Calibration (docs/calibration.md, 2026-12-01): passed all 60 runs (30 seed offsets on the reference, 15 on
    each perturbed reference); deterministic: the same values every run.
    """
    model, policy, states, _, v_true = ring()
    noise = torch.tensor([1.0, -2.0, 0.5, 3.0, -1.0, 2.0, -0.5, 1.5, -3.0, 0.7])
    errors = {}
    for h in (1, 5):
        mve = impl.ModelBasedValueExpansion(
            model, tabular(v_true + noise), horizon=h, gamma=GAMMA, policy=policy, target_network=False
        )
        errors[h] = (mve.expand_value(states) - v_true).abs().mean().item()
        _, targets, _ = mve.mve_targets(states)
        assert targets.shape == (N, h)
        torch.testing.assert_close(targets[:, 0], mve.expand_value(states))
    assert errors[1] == pytest.approx(GAMMA * noise.abs().mean().item(), rel=1e-4)
    assert errors[5] == pytest.approx(GAMMA**4 * errors[1], rel=1e-4)
    margin("H = 5 expansion's mean |error|", errors[5], "<", 0.7 * errors[1], detail=f"one-step {errors[1]:.4f}")


@pytest.mark.shape
def test_horizon_zero_is_td0_on_the_real_transition(impl):
    """With H = 0 and a real transition, the targets are r + gamma (1 - d) V(s') and the loss their MSE."""
    model, policy, states, r, _ = ring()
    net = tabular(torch.arange(N, dtype=torch.float32))
    mve = impl.ModelBasedValueExpansion(model, net, horizon=0, gamma=GAMMA, policy=policy, lr=0.01)
    nxt = torch.roll(states, -1, dims=0)
    dones = torch.zeros(N)
    dones[3] = 1.0
    traj, targets, _ = mve.mve_targets(states, r, nxt, dones)
    v_next = torch.arange(1, N + 1, dtype=torch.float32) % N
    expected = r + GAMMA * (1 - dones) * v_next
    assert targets.shape == (N, 1) and traj.shape == (N, 1, N)
    torch.testing.assert_close(targets[:, 0], expected)
    loss = mve.train_step(states, r, nxt, dones)
    assert loss == pytest.approx(((torch.arange(N) - expected) ** 2).mean().item(), rel=1e-5)


@pytest.mark.shape
def test_real_transition_then_imagined_steps(impl):
    """With H = 2 and a real transition the trajectory has 3 steps: the real one first, then the model's."""
    model, policy, states, r, v_true = ring()
    mve = impl.ModelBasedValueExpansion(model, tabular(v_true), horizon=2, gamma=GAMMA, policy=policy)
    fake_r = r + 1.0  # the real reward differs from the model's: it must be the one used at t = 0
    _, targets, mask = mve.mve_targets(states, fake_r, torch.roll(states, -1, dims=0))
    assert targets.shape == (N, 3) and torch.all(mask == 1)
    torch.testing.assert_close(targets[:, 0], v_true + 1.0)
    torch.testing.assert_close(targets[:, 1], torch.roll(v_true, -1))


@pytest.mark.gradient
def test_gradient_reaches_the_value_network_only(impl, device):
    """train_step changes the critic and leaves a learnable dynamics model untouched (no grad, same weights)."""
    model = impl.run(_new, LinearModel, device=device)  # both live in the worker; the judge reads them there
    critic = impl.run(_new, critic_network, device=device)
    before, critic_before = impl.run(_params, model), impl.run(_params, critic)
    mve = impl.ModelBasedValueExpansion(model, critic, horizon=3, lr=1e-2, device=device)  # default policy
    loss = mve.train_step(torch.randn(8, 4, device=device))
    assert isinstance(loss, float) and math.isfinite(loss)
    after, critic_after = impl.run(_params, model), impl.run(_params, critic)
    assert [n for n, _, _ in after] == [n for n, _, _ in before] and len(after) == 2
    assert all(g is None or torch.all(g == 0) for _, _, g in after)
    assert all(torch.equal(p, q) for (_, p, _), (_, q, _) in zip(after, before, strict=True))
    assert [n for n, _, _ in critic_after] == [n for n, _, _ in critic_before] and len(critic_after) == 4
    assert any(not torch.equal(p, q) for (_, p, _), (_, q, _) in zip(critic_after, critic_before, strict=True))
    assert all(g is not None for _, _, g in critic_after)


@pytest.mark.convergence
@pytest.mark.points(2)
@pytest.mark.timeout(60)
def test_mve_critic_converges_in_fewer_updates_than_td0(impl, reseed, margin):
    """On the ring, training from real transitions, MVE (H = 4) reaches max |V - V_true| < 0.1 in fewer than
    0.7x the updates TD(0) (H = 0) needs, for three initialisations (measured: ~175 vs ~395).
    Calibration (docs/calibration.md, 2026-12-01): passed all 60 runs (30 seed offsets on the reference, 15 on
    each perturbed reference); the fit of its 6 checks puts the false-fail rate at 0.00 % (every check ≥ 36 sd).
    """
    model, policy, states, r, v_true = ring()
    nxt = torch.roll(states, -1, dims=0)

    def error(weight):  # the judge evaluates the linear value network on the ring's states itself
        return (torch.nn.functional.linear(states, weight.reshape(1, N)).squeeze(1) - v_true).abs().max()

    def updates_to_converge(h, seed, limit=800, chunk=25):
        reseed(seed)
        net = impl.run(_new, torch.nn.Linear, N, 1, bias=False)  # the critic lives in the worker
        mve = impl.ModelBasedValueExpansion(
            model, net, horizon=h, gamma=GAMMA, lr=0.1, policy=policy, tau=0.1
        )
        if error(impl.run(_params, net)[0][1]) < 0.1:
            return 0
        done = 0
        while done < limit - 1:
            steps = min(chunk, limit - 1 - done)
            weights = impl.run(_train_and_watch, mve, net, steps, states, r, nxt)  # weights after each update
            assert weights.shape == (steps, N)
            for it, w in enumerate(weights, start=done + 1):
                if error(w) < 0.1:
                    return it
            done += steps
        return limit

    for seed in range(3):
        n_mve, n_td = updates_to_converge(4, seed), updates_to_converge(0, seed)
        margin(f"seed {seed}: MVE's updates to converge", n_mve, "<", 400)
        margin(f"seed {seed}: MVE's updates to converge, vs 0.7 x TD(0)'s", n_mve, "<", 0.7 * n_td,
               detail=f"TD(0) {n_td}")  # fmt: skip


@pytest.mark.shape
@pytest.mark.points(0)
def test_argument_errors_name_the_argument(impl):
    """Bad horizon / gamma, a missing policy and states-only training with H = 0 are clear ValueErrors."""
    model, policy, states, _, _ = ring()
    net = tabular(torch.zeros(N))
    with pytest.raises(ValueError, match="horizon"):
        impl.ModelBasedValueExpansion(model, net, horizon=-1, policy=policy)
    with pytest.raises(ValueError, match="gamma"):
        impl.ModelBasedValueExpansion(model, net, gamma=1.5, policy=policy)
    with pytest.raises(ValueError, match="policy"):
        impl.ModelBasedValueExpansion(model, net)
    with pytest.raises(ValueError, match="horizon=0"):
        impl.ModelBasedValueExpansion(model, net, horizon=0, policy=policy).train_step(states)


@pytest.mark.gradient
@pytest.mark.gpu
@pytest.mark.points(0)
def test_train_step_on_the_device(impl, device):
    """On --device, a few MVE steps on the ring run there and lower the loss."""
    model, policy, states, _, _ = ring(device)
    net = tabular(torch.zeros(N), device)
    mve = impl.ModelBasedValueExpansion(
        model, net, horizon=3, gamma=GAMMA, lr=0.1, policy=policy, device=device
    )
    losses = [mve.train_step(states) for _ in range(30)]
    assert losses[-1] < losses[0]
    assert mve.expand_value(states).device.type == device.type
