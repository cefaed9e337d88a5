"""Graded tests of ModelEnsemble (PETS bootstrapped probabilistic ensemble), EnsembleLinear and helpers.

A bug is charged once: the ensemble reuses two of DynamicsModel's tasks (``gaussian_nll`` and
``soft_bound_log_std``, imported into ``model_based_rl.ensemble`` from ``model_based_rl.dynamics``), so before
every test of this module the fixture :func:`_dynamics_doubles` replaces those two names in the worker's
``model_based_rl.ensemble`` by the correct test doubles below and restores the originals afterwards; only
ModelEnsemble's own code (and the given code around it) runs.
"""

from __future__ import annotations

import copy
import math
from types import SimpleNamespace

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from grader.judge.contracts import assert_draws_only_from, assert_inputs_unchanged, assert_noise_not_shared
from tests.components._doubles import names_replaced

pytestmark = pytest.mark.component("ModelEnsemble")
#: Components whose code these tests replace by test doubles (a bug there is charged there, not here;
#: the student's dashboard says so).
DOUBLES_FOR = ("DynamicsModel",)

S, A, E = 4, 2, 5


def _alg(impl):
    return impl.module("model_based_rl.algorithms")


# ---------------------------------------------------------------- test doubles of DynamicsModel's helpers


def _gaussian_nll_double(mean: torch.Tensor, log_std: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """A stand-in for ``gaussian_nll``: the mean over every entry of
    ``-log N(target; mean, exp(log_std)²)``."""
    z = (target - mean) / log_std.exp()
    return (0.5 * z.square() + log_std + 0.5 * math.log(2.0 * math.pi)).mean()


def _soft_bound_log_std_double(
    raw_log_std: torch.Tensor, min_log_std: torch.Tensor, max_log_std: torch.Tensor
) -> torch.Tensor:
    """A stand-in for ``soft_bound_log_std`` (PETS appendix A.1): ``x = max − softplus(max − raw)``, then
    ``min + softplus(x − min)``."""
    softplus = torch.nn.functional.softplus
    upper_bounded = max_log_std - softplus(max_log_std - raw_log_std)
    return min_log_std + softplus(upper_bounded - min_log_std)


_DYNAMICS_DOUBLES = {"gaussian_nll": _gaussian_nll_double, "soft_bound_log_std": _soft_bound_log_std_double}


@pytest.fixture(autouse=True)
def _dynamics_doubles(impl):
    """Every test of this module runs with DynamicsModel's helpers replaced by test doubles in the worker's
    ``model_based_rl.ensemble`` (the worker is reused between tests, and under ``--isolation none`` it is this
    process: the originals are restored at teardown)."""
    with names_replaced(impl, "model_based_rl.ensemble", _DYNAMICS_DOUBLES):
        yield


@pytest.fixture
def ens(impl, device):
    return impl.ModelEnsemble(
        state_dim=S, action_dim=A, ensemble_size=E, hidden_dim=32, num_hidden_layers=2, device=device
    )


@pytest.mark.shape
def test_forward_shapes_broadcast_and_per_member(ens, device):
    """(B,S),(B,A) inputs and (E,B,S),(E,B,A) inputs both give (E,B,S)/(E,B,1) means and positive stds."""
    for lead in [(7,), (E, 7)]:
        out = ens(torch.randn(*lead, S, device=device), torch.randn(*lead, A, device=device))
        assert list(out.keys()) == ["next_state_mean", "reward_mean", "next_state_std", "reward_std"]
        assert out["next_state_mean"].shape == (E, 7, S) and out["next_state_std"].shape == (E, 7, S)
        assert out["reward_mean"].shape == (E, 7, 1) and out["reward_std"].shape == (E, 7, 1)
        assert (out["next_state_std"] > 0).all() and (out["reward_std"] > 0).all()


@pytest.mark.shape
def test_ensemble_linear_matches_member_by_member(impl):
    """EnsembleLinear's batched output equals x[e] @ weight[e] + bias[e] computed member by member."""
    layer = _alg(impl).EnsembleLinear(3, 5, 4)
    assert layer.weight.shape == (3, 5, 4)
    x = torch.randn(3, 6, 5)
    y = layer(x)
    assert y.shape == (3, 6, 4)
    for e in range(3):
        torch.testing.assert_close(y[e], x[e] @ layer.weight[e] + layer.bias[e].reshape(1, 4))


def _torch_calls_of_ensemble_linear(impl, sizes):
    """In the worker: for each ensemble size E, the number of torch functions and tensor methods that one
    EnsembleLinear(E, 5, 4) forward of an (E, 6, 5) input calls (counted with a TorchFunctionMode)."""
    from torch.overrides import TorchFunctionMode

    class Count(TorchFunctionMode):
        def __init__(self):
            super().__init__()
            self.calls = 0

        def __torch_function__(self, func, types, args=(), kwargs=None):
            self.calls += 1
            return func(*args, **(kwargs or {}))

    EnsembleLinear = impl.module("model_based_rl.algorithms").EnsembleLinear
    counts = []
    for e in sizes:
        layer, x = EnsembleLinear(e, 5, 4), torch.randn(e, 6, 5)
        with torch.no_grad(), Count() as mode:
            layer(x)
        counts.append(mode.calls)
    return counts


@pytest.mark.shape
def test_ensemble_linear_has_no_loop_over_members(impl):
    """EnsembleLinear.forward evaluates all members in one batched op: its torch calls do not grow with E."""
    counts = impl.run(_torch_calls_of_ensemble_linear, [2, 8])
    assert len(counts) == 2 and counts[0] >= 1
    assert counts[1] == counts[0], (
        f"EnsembleLinear.forward made {counts[0]} torch calls for E = 2 members but {counts[1]} for E = 8: "
        "evaluate all members at once (one torch.baddbmm over the (E, in, out) weights), never with a loop "
        "over members"
    )


def _layer_calls_per_propagate(impl, ens, states, actions, member_idx):
    """In the worker: per propagation mode, how often each EnsembleLinear layer of ``ens`` runs during one
    ``propagate`` call (counted with forward hooks)."""
    EnsembleLinear = impl.module("model_based_rl.algorithms").EnsembleLinear
    layers = [m for m in ens.modules() if isinstance(m, EnsembleLinear)]
    calls = [0] * len(layers)

    def hook(i):
        return lambda module, inputs, output: calls.__setitem__(i, calls[i] + 1)

    handles = [layer.register_forward_hook(hook(i)) for i, layer in enumerate(layers)]
    out = {}
    try:
        for mode in ("mean", "ts1", "tsinf"):
            calls[:] = [0] * len(layers)
            with torch.no_grad():
                ens.propagate(states, actions, mode=mode, member_idx=member_idx if mode == "tsinf" else None)
            out[mode] = list(calls)
    finally:
        for h in handles:
            h.remove()
    return out


@pytest.mark.shape
def test_propagate_runs_the_network_once(impl, ens, device):
    """Every propagation mode evaluates the ensemble network once per call (no forward per member)."""
    n = 40
    s, a = torch.randn(n, S, device=device), torch.randn(n, A, device=device)
    member_idx = torch.arange(n, device=device) % E  # every member holds particles
    calls = impl.run(_layer_calls_per_propagate, ens, s, a, member_idx)
    for mode, per_layer in calls.items():
        assert per_layer, "the ensemble holds no EnsembleLinear layer"
        assert per_layer == [1] * len(per_layer), (
            f"propagate(mode={mode!r}) ran the EnsembleLinear layers {per_layer} times: predict with ONE "
            "batched forward of all members (forward_members / _mean_log_std), never with a loop over members"
        )


def _net_layers(impl, ens):
    """In the worker: the layers of ``ens.net`` in order: ``("ensemble_linear", in, out, weight, bias)`` for
    an EnsembleLinear, ``("module", handle)`` for any other layer (applied in the worker by the judge)."""
    EnsembleLinear = impl.module("model_based_rl.algorithms").EnsembleLinear
    return [
        ("ensemble_linear", mod.in_features, mod.out_features, mod.weight.detach(), mod.bias.detach())
        if isinstance(mod, EnsembleLinear) else ("module", mod)
        for mod in ens.net
    ]  # fmt: skip


@pytest.mark.shape
def test_ensemble_network_matches_sliced_single_networks(impl, ens, device):
    """The ensemble's network equals, member by member, a plain MLP built from that member's weight slices."""
    x = torch.randn(9, S + A, device=device)
    batched = ens.net(x.unsqueeze(0).expand(E, -1, -1))
    layers = impl.run(_net_layers, ens)
    assert any(layer[0] == "ensemble_linear" for layer in layers), "ens.net holds no EnsembleLinear layer"
    for e in range(E):
        h = x
        for layer in layers:
            if layer[0] == "ensemble_linear":
                _, n_in, n_out, weight, bias = layer
                lin = nn.Linear(n_in, n_out).to(device)
                lin.weight.data = weight[e].T.clone().to(device)
                lin.bias.data = bias[e, 0].clone().to(device)
                h = lin(h).detach()
            else:  # an activation (or other parameter-free layer) of the student's network
                h = layer[1](h)
        torch.testing.assert_close(batched[e], h, rtol=1e-5, atol=1e-5)


@pytest.mark.shape
def test_members_do_not_see_each_others_inputs(ens, device):
    """With per-member inputs, member e's output depends only on its own input slice."""
    s, a = torch.randn(E, 6, S, device=device), torch.randn(E, 6, A, device=device)
    out = ens(s, a)["next_state_mean"]
    s2 = s.clone()
    s2[1] += 3.0
    out2 = ens(s2, a)["next_state_mean"]
    keep = [e for e in range(E) if e != 1]
    torch.testing.assert_close(out[keep], out2[keep])
    assert not torch.allclose(out[1], out2[1])
    # broadcasting one batch equals giving every member that same batch
    b = ens(s[0], a[0])["next_state_mean"]
    torch.testing.assert_close(b, ens(s[0].expand(E, -1, -1), a[0].expand(E, -1, -1))["next_state_mean"])


@pytest.mark.property
@settings(max_examples=25)
@given(batch=st.integers(1, 40), members=st.integers(1, 8))
def test_bootstrap_indices_shape_and_range(impl, batch, members):
    """bootstrap_indices gives an (E,B) int64 tensor of indices in [0, B)."""
    idx = _alg(impl).bootstrap_indices(batch, members, torch.Generator().manual_seed(batch))
    assert idx.shape == (members, batch) and idx.dtype == torch.int64
    assert idx.min() >= 0 and idx.max() < batch


@pytest.mark.shape
def test_bootstrap_resamples_with_replacement_and_differ(impl):
    """Each member's resample holds ~63% distinct indices (with replacement) and the members' rows differ."""
    idx = _alg(impl).bootstrap_indices(2000, 4, torch.Generator().manual_seed(0))
    for e in range(4):
        frac = idx[e].unique().numel() / 2000
        assert 0.58 < frac < 0.68, f"member {e} sees {frac:.2f} distinct samples; expected 1 - 1/e ≈ 0.632"
    for i in range(4):
        for j in range(i + 1, 4):
            assert not torch.equal(idx[i], idx[j])
    counts = torch.bincount(idx.reshape(-1), minlength=2000).float()
    assert abs(counts.mean().item() - 4.0) < 1e-6 and counts.std() > 1.0  # uniform draws, not a permutation


@pytest.mark.shape
def test_combine_ensemble_moments_hand_example(impl):
    """means [1,3], stds [1,2] -> mean 2, aleatoric sqrt(2.5), epistemic 1 (law of total variance)."""
    means = torch.tensor([[[1.0, 0.0]], [[3.0, 0.0]]])  # (E=2, B=1, D=2)
    stds = torch.tensor([[[1.0, 0.5]], [[2.0, 0.5]]])
    mean, ale, epi = _alg(impl).combine_ensemble_moments(means, stds)
    assert mean.shape == ale.shape == epi.shape == (1, 2)
    torch.testing.assert_close(mean, torch.tensor([[2.0, 0.0]]))
    torch.testing.assert_close(ale, torch.tensor([[math.sqrt(2.5), 0.5]]))
    torch.testing.assert_close(epi, torch.tensor([[1.0, 0.0]]))


@pytest.mark.property
@settings(max_examples=30)
@given(
    mus=st.lists(st.floats(-5, 5), min_size=1, max_size=6),
    sig=st.floats(0.01, 3.0),
)
def test_combined_variance_is_the_mixture_variance(impl, mus, sig):
    """aleatoric² + epistemic² equals the variance of the uniform mixture: E[σ²+μ²] − E[μ]²."""
    means = torch.tensor(mus, dtype=torch.float64).reshape(-1, 1, 1)
    stds = sig * torch.linspace(1.0, 2.0, len(mus), dtype=torch.float64).reshape(-1, 1, 1)
    mean, ale, epi = _alg(impl).combine_ensemble_moments(means, stds)
    mix_var = (stds**2 + means**2).mean() - means.mean() ** 2
    assert mean.item() == pytest.approx(means.mean().item(), abs=1e-9)
    assert (ale**2 + epi**2).item() == pytest.approx(mix_var.item(), rel=1e-6, abs=1e-9)


PREDICTION_FIELDS = (
    "next_state_mean",
    "reward_mean",
    "aleatoric_std",
    "epistemic_std",
    "reward_aleatoric_std",
    "reward_epistemic_std",
)


def _predict(impl, ens, states, actions):
    """In the worker: ``ens.predict(states, actions)``, its named fields read by name (a namedtuple would
    otherwise come back as a plain tuple)."""
    p = ens.predict(states, actions)
    return {name: getattr(p, name) for name in PREDICTION_FIELDS}


def _prediction(impl, ens, states, actions) -> SimpleNamespace:
    """The judge's view of ``ens.predict(states, actions)``: its fields as attributes."""
    return SimpleNamespace(**impl.run(_predict, ens, states, actions))


@pytest.mark.shape
def test_predict_returns_named_moments(impl, ens, device):
    """predict gives EnsemblePrediction with (B,S) state moments and (B,) reward moments from the members."""
    s, a = torch.randn(8, S, device=device), torch.randn(8, A, device=device)
    p = _prediction(impl, ens, s, a)
    assert p.next_state_mean.shape == p.aleatoric_std.shape == p.epistemic_std.shape == (8, S)
    assert p.reward_mean.shape == p.reward_aleatoric_std.shape == p.reward_epistemic_std.shape == (8,)
    out = ens(s, a)
    torch.testing.assert_close(p.next_state_mean, out["next_state_mean"].mean(0))
    torch.testing.assert_close(p.epistemic_std, out["next_state_mean"].std(0, unbiased=False))
    torch.testing.assert_close(p.reward_aleatoric_std, out["reward_std"][..., 0].pow(2).mean(0).sqrt())


@pytest.mark.shape
def test_tsinf_deterministic_gives_the_fixed_members_mean(ens, device):
    """propagate(mode='tsinf', member_idx, deterministic=True) returns exactly member_idx[n]'s mean."""
    n = 23
    s, a = torch.randn(n, S, device=device), torch.randn(n, A, device=device)
    idx = ens.sample_member_indices(n)
    assert idx.shape == (n,) and idx.dtype == torch.int64 and 0 <= idx.min() and idx.max() < E
    ns, r = ens.propagate(s, a, mode="tsinf", member_idx=idx, deterministic=True)
    assert ns.shape == (n, S) and r.shape == (n,)
    out = ens(s, a)
    rows = torch.arange(n, device=device)
    torch.testing.assert_close(ns, out["next_state_mean"][idx, rows], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(r, out["reward_mean"][idx, rows, 0], rtol=1e-5, atol=1e-5)
    # a constant member_idx = i reproduces member i
    for i in (0, E - 1):
        ns_i, _ = ens.propagate(
            s, a, mode="tsinf", member_idx=torch.full((n,), i, device=device), deterministic=True
        )
        torch.testing.assert_close(ns_i, out["next_state_mean"][i], rtol=1e-5, atol=1e-5)


@pytest.mark.shape
def test_mean_and_ts1_propagation(ens, device):
    """'mean' averages the member means; deterministic 'ts1' picks one member per particle, all used."""
    n = 200
    s0, a0 = torch.randn(S, device=device), torch.randn(A, device=device)
    s, a = s0.expand(n, -1), a0.expand(n, -1)
    member_means = ens(s0[None], a0[None])["next_state_mean"][:, 0]  # (E, S)
    ns, r = ens.propagate(s, a, mode="mean")
    assert ns.shape == (n, S) and r.shape == (n,)
    torch.testing.assert_close(ns, member_means.mean(0).expand(n, -1), rtol=1e-5, atol=1e-5)
    ns1, _ = ens.propagate(s, a, mode="ts1", deterministic=True, generator=None)
    dist = (ns1[:, None, :] - member_means[None]).abs().amax(-1)  # (n, E)
    assert (dist.min(1).values < 1e-5).all(), "each ts1 particle must equal one member's mean"
    assert set(dist.argmin(1).tolist()) == set(range(E)), "ts1 should draw every member over 200 particles"


@pytest.mark.shape
def test_stochastic_propagation_samples_around_the_member_mean(ens, device):
    """Non-deterministic tsinf draws μ + σ ε for the fixed member: sample mean/std match (within error)."""
    n = 20000
    s0, a0 = torch.randn(S, device=device), torch.randn(A, device=device)
    idx = torch.full((n,), 2, device=device)
    ns, _ = ens.propagate(s0.expand(n, -1), a0.expand(n, -1), mode="tsinf", member_idx=idx)
    out = ens(s0[None], a0[None])
    mu, sd = out["next_state_mean"][2, 0].detach(), out["next_state_std"][2, 0].detach()
    assert ((ns.detach().mean(0) - mu).abs() < 5 * sd / n**0.5).all()
    assert ((ns.detach().std(0) / sd - 1).abs() < 0.05).all()


@pytest.mark.shape
def test_train_step_seed_cell_and_loss_decreases(impl, device):
    """Seed cell 4: train_step on (32,4),(32,2),(32,4),(32,) returns finite floats that decrease."""
    ens = impl.ModelEnsemble(state_dim=4, action_dim=2, ensemble_size=5, hidden_dim=64, device=device)
    s, a, ns, r = torch.randn(32, 4), torch.randn(32, 2), torch.randn(32, 4), torch.randn(32)
    losses = [ens.train_step(s, a, ns, r) for _ in range(60)]
    assert all(isinstance(v, float) and math.isfinite(v) for v in losses)
    assert sum(losses[-5:]) / 5 < sum(losses[:5]) / 5 - 0.1


def _member_grad_norms(impl, ens, batch):
    """In the worker: backpropagate the ensemble loss; the loss and, per named parameter, None (no grad),
    the per-member summed |grad| of an (E, in, out) weight, or the summed |grad| of any other parameter."""
    loss = ens.loss(*batch)
    loss.backward()
    norms = {}
    for name, p in ens.named_parameters():
        if p.grad is None:
            norms[name] = None
        elif p.dim() == 3:
            norms[name] = p.grad.abs().sum(dim=(1, 2)).tolist()
        else:
            norms[name] = float(p.grad.abs().sum())
    return loss.detach(), norms


@pytest.mark.gradient
def test_gradient_reaches_every_member(impl, ens, device):
    """The ensemble loss on bootstrapped batches gives every member's weight slice a non-zero gradient."""
    idx = torch.randint(0, 16, (E, 16), device=device)
    s, a, ns, r = (torch.randn(16, d, device=device) for d in (S, A, S, 1))
    loss, norms = impl.run(_member_grad_norms, ens, (s[idx], a[idx], ns[idx], r[idx]))
    assert loss.shape == ()
    assert norms, "the ensemble has no parameters"
    for name, norm in norms.items():
        assert norm is not None, f"no gradient reaches {name}"
        if isinstance(norm, list):  # (E, in, out) weights: each member's slice gets a gradient
            assert len(norm) == E and all(n > 0 for n in norm), f"a member of {name} gets no gradient"


@pytest.mark.convergence
@pytest.mark.points(2)
@pytest.mark.timeout(120)
@pytest.mark.parametrize("seed", [0, 1])
def test_epistemic_std_grows_off_distribution(impl, device, reseed, seed, margin):
    """Trained on states in [-1,1]², the members disagree far more at |s| = 4 than on the training data.

    Calibration (docs/calibration.md, 2026-12-01): passed all 60 runs (30 seed offsets on the reference, 15 on
    each perturbed reference) per case; the fit of its check puts the false-fail rate at 0.00 % in both (≥ 6.9
    sd).
    """
    reseed(seed)
    ens = impl.ModelEnsemble(
        state_dim=2, action_dim=1, ensemble_size=5, hidden_dim=32, num_hidden_layers=2, lr=3e-3, device=device
    )
    s = torch.rand(512, 2) * 2 - 1
    a = torch.rand(512, 1) * 2 - 1
    ns = s + 0.1 * a + 0.05 * torch.randn(512, 2)
    r = s.sum(-1) + 0.05 * torch.randn(512)
    for _ in range(300):
        i = torch.randint(0, 512, (128,))
        ens.train_step(s[i], a[i], ns[i], r[i])
    s_in = torch.rand(200, 2) * 2 - 1
    s_out = 4.0 * torch.nn.functional.normalize(torch.randn(200, 2), dim=-1)
    a_t = torch.rand(200, 1) * 2 - 1
    epi_in = _prediction(impl, ens, s_in, a_t).epistemic_std.mean().item()  # fresh inputs, drawn by the judge
    epi_out = _prediction(impl, ens, s_out, a_t).epistemic_std.mean().item()
    margin("epistemic std off-distribution", epi_out, ">", 3.0 * epi_in, detail=f"on-distribution {epi_in:.4f}")


# ------------------------------------------------------------ contracts (docs/CONVENTIONS.md §3, issue 23)
def _parameters(impl, module):
    """In the worker: a copy of every named parameter of ``module``."""
    return {name: p.detach().clone() for name, p in module.named_parameters()}


def _joint(out):
    """The (E, B, S+1) member means and stds of a ``forward`` output: next state, then reward."""
    return (torch.cat([out["next_state_mean"], out["reward_mean"]], dim=-1),
            torch.cat([out["next_state_std"], out["reward_std"]], dim=-1))  # fmt: skip


def _assert_member_gaussians(out, lead):
    """``out`` (a ``forward`` output) holds ``lead + (S,)`` / ``lead + (1,)`` finite means and positive stds."""
    __tracebackhide__ = True
    for key, dim in (("next_state_mean", S), ("reward_mean", 1), ("next_state_std", S), ("reward_std", 1)):
        assert out[key].shape == (*lead, dim), f"forward's {key} has shape {tuple(out[key].shape)}"
        assert torch.isfinite(out[key]).all(), f"forward's {key} is not finite"
    assert (out["next_state_std"] > 0).all() and (out["reward_std"] > 0).all()


@pytest.mark.shape
def test_helpers_leave_their_inputs_unchanged(impl):
    """EnsembleLinear and combine_ensemble_moments leave the tensors they are given as they were, and return
    x[e] @ weight[e] + bias[e] (with the layer's weights read back) and the hand-computed mixture moments."""
    alg = _alg(impl)
    layer, x = alg.EnsembleLinear(3, 5, 4), torch.randn(3, 6, 5)
    y = assert_inputs_unchanged(impl, layer, "forward", x)
    weight, bias = layer.weight.detach(), layer.bias.detach()  # (E, in, out) and (E, 1, out)
    torch.testing.assert_close(y, torch.stack([x[e] @ weight[e] + bias[e] for e in range(3)]))
    means = torch.tensor([[[1.0, -2.0], [0.5, 3.0]], [[3.0, 0.0], [-1.5, 2.0]], [[2.0, 1.0], [0.0, -4.0]]])
    stds = torch.tensor([[[0.5, 2.0], [1.0, 0.3]], [[1.5, 0.2], [0.7, 1.0]], [[1.0, 1.0], [2.5, 0.1]]])
    mean, aleatoric, epistemic = assert_inputs_unchanged(impl, alg.combine_ensemble_moments, None, means, stds)
    # per (row, dim), over the 3 members: means (1, 3, 2), (−2, 0, 1), (0.5, −1.5, 0), (3, 2, −4);
    # stds (0.5, 1.5, 1), (2, 0.2, 1), (1, 0.7, 2.5), (0.3, 1, 0.1)
    torch.testing.assert_close(mean, torch.tensor([[2.0, -1 / 3], [-1 / 3, 1 / 3]]))
    torch.testing.assert_close(aleatoric, (torch.tensor([[0.25 + 2.25 + 1, 4 + 0.04 + 1],
                                                         [1 + 0.49 + 6.25, 0.09 + 1 + 0.01]]) / 3).sqrt())  # fmt: skip
    # squared deviations from the mean: 1 + 1 + 0, (25 + 1 + 16) / 9, (25 + 49 + 4) / 36, (64 + 25 + 169) / 9
    torch.testing.assert_close(epistemic, (torch.tensor([[2.0, 42 / 9], [78 / 36, 258 / 9]]) / 3).sqrt())


@pytest.mark.shape
def test_model_methods_leave_their_inputs_unchanged(impl, ens, device):
    """forward, predict, loss, train_step, forward_members and propagate (every mode) leave the caller's
    tensors as they were; their results agree with the members' Gaussians that forward gives (moments, NLL,
    the chosen members' means, samples within 10 σ), and train_step moves the parameters."""
    s, a = 3.0 * torch.randn(8, S, device=device), torch.randn(8, A, device=device)
    ns, r = s + torch.randn(8, S, device=device), torch.randn(8, device=device)
    per_member = [torch.randn(E, 8, d, device=device) for d in (S, A, S)] + [torch.randn(E, 8, device=device)]
    member_idx = torch.arange(8, device=device) % E
    rows = torch.arange(8, device=device)
    close = {"rtol": 1e-5, "atol": 1e-5}

    out = assert_inputs_unchanged(impl, ens, "forward", s, a)
    _assert_member_gaussians(out, (E, 8))
    members = assert_inputs_unchanged(impl, ens, "forward", *per_member[:2])
    _assert_member_gaussians(members, (E, 8))
    p = assert_inputs_unchanged(impl, ens, "predict", s, a)  # the mixture moments of the same members
    mu, sd = out["next_state_mean"], out["next_state_std"]
    torch.testing.assert_close(p.next_state_mean, mu.mean(0), **close)
    torch.testing.assert_close(p.aleatoric_std, sd.pow(2).mean(0).sqrt(), **close)
    torch.testing.assert_close(p.epistemic_std, (mu - mu.mean(0)).pow(2).mean(0).sqrt(), **close)
    torch.testing.assert_close(p.reward_mean, out["reward_mean"].mean(0)[:, 0], **close)

    def nll(out, target):  # the mean over every entry of −log N(target; mean, std²)
        mean, std = _joint(out)
        return (0.5 * ((target - mean) / std) ** 2 + std.log() + 0.5 * math.log(2 * math.pi)).mean()

    # Σ_e NLL_e = E · (mean NLL), plus 0.01 (Σ max_log_std − Σ min_log_std) at the initial bounds 0.5 and −10
    # of the S + 1 = 5 outputs
    regulariser = 0.01 * (5 * 0.5 - 5 * -10.0)
    loss = assert_inputs_unchanged(impl, ens, "loss", *per_member)
    target = torch.cat([per_member[2], per_member[3][..., None]], dim=-1)
    assert loss.shape == ()
    torch.testing.assert_close(loss, E * nll(members, target) + regulariser, rtol=1e-4, atol=1e-4)
    loss = assert_inputs_unchanged(impl, ens, "loss", s, a, ns, r[:, None])  # one batch for every member
    torch.testing.assert_close(loss, E * nll(out, torch.cat([ns, r[:, None]], dim=-1)) + regulariser,
                               rtol=1e-4, atol=1e-4)  # fmt: skip

    before = impl.run(_parameters, ens)
    value = assert_inputs_unchanged(impl, ens, "train_step", s, a, ns, r)
    assert isinstance(value, float) and math.isfinite(value)
    after = impl.run(_parameters, ens)
    assert any(not torch.equal(before[name], after[name]) for name in before), "train_step changed no parameter"

    now_mean, now_std = _joint(ens(s, a))  # the members after the step, (E, 8, S+1)
    mean, std = assert_inputs_unchanged(impl, ens, "forward_members", s, a, member_idx)
    torch.testing.assert_close(mean, now_mean[member_idx, rows], **close)
    torch.testing.assert_close(std, now_std[member_idx, rows], **close)
    next_states, rewards = assert_inputs_unchanged(impl, ens, "propagate", s, a, mode="mean")
    torch.testing.assert_close(torch.cat([next_states, rewards[:, None]], dim=-1), now_mean.mean(0), **close)
    # a sample μ + σ ε of a member lies within 10 σ of that member's mean (|ε| > 10 has probability 1.5e-23)
    next_states, rewards = assert_inputs_unchanged(impl, ens, "propagate", s, a, mode="ts1")
    assert next_states.shape == (8, S) and rewards.shape == (8,)
    z = (torch.cat([next_states, rewards[:, None]], dim=-1) - now_mean) / now_std  # (E, 8, S+1) against each
    assert (z.abs().amax(-1).amin(0) < 10).all(), "a ts1 particle lies 10 σ away from every member's mean"
    next_states, rewards = assert_inputs_unchanged(impl, ens, "propagate", s, a, mode="tsinf", member_idx=member_idx)
    assert next_states.shape == (8, S) and rewards.shape == (8,)
    z = (torch.cat([next_states, rewards[:, None]], dim=-1) - now_mean[member_idx, rows]) / now_std[member_idx, rows]
    assert (z.abs() < 10).all(), f"tsinf particles lie {z.abs().max():.1f} σ away from their member's mean"
    assert z.abs().max() > 1e-3, "tsinf (deterministic=False) returned the members' means without noise"


def _bootstrap_with(impl, batch_size, ensemble_size, generator):
    """In the worker: ``bootstrap_indices(batch_size, ensemble_size, generator=generator)``."""
    bootstrap_indices = impl.module("model_based_rl.algorithms").bootstrap_indices
    return bootstrap_indices(batch_size, ensemble_size, generator=generator)


def _propagate_with(impl, ens, states, actions, generator):
    """In the worker: tsinf members drawn with ``generator``, then a stochastic ts1 and tsinf step with it."""
    member_idx = ens.sample_member_indices(states.shape[0], generator=generator)
    return {
        "member_idx": member_idx,
        "ts1": ens.propagate(states, actions, mode="ts1", generator=generator),
        "tsinf": ens.propagate(states, actions, mode="tsinf", member_idx=member_idx, generator=generator),
    }


def _train_step_on_a_copy_with(impl, ens, batch, generator):
    """In the worker: ``train_step(*batch, generator=generator)`` on a deep copy of ``ens`` (which stays as it
    was, so that every run starts from the same weights); its return value (the loss on the bootstrap)."""
    return copy.deepcopy(ens).train_step(*batch, generator=generator)


@pytest.mark.shape
def test_bootstrap_indices_draw_only_from_the_generator(impl):
    """bootstrap_indices(generator=g): the same g seed gives the same resamples under any global seed, and the
    global generators are left untouched."""
    idx = assert_draws_only_from(impl, _bootstrap_with, 12, 4, kind="torch")
    assert idx.shape == (4, 12)


@pytest.mark.shape
def test_propagate_draws_only_from_the_generator(impl):
    """Stochastic ts1 and tsinf propagation with generator=g draw their members and noise from g alone."""
    ens = impl.ModelEnsemble(state_dim=S, action_dim=A, ensemble_size=E, hidden_dim=16, num_hidden_layers=2)
    s, a = torch.randn(10, S), torch.randn(10, A)
    out = assert_draws_only_from(impl, _propagate_with, ens, s, a, kind="torch")
    assert out["ts1"][0].shape == out["tsinf"][0].shape == (10, S)


@pytest.mark.shape
def test_train_step_draws_its_bootstrap_only_from_the_generator(impl):
    """train_step(generator=g) resamples the batch with g alone: same g seed, same loss, any global seed."""
    ens = impl.ModelEnsemble(state_dim=S, action_dim=A, ensemble_size=E, hidden_dim=16, num_hidden_layers=2)
    batch = (torch.randn(12, S), torch.randn(12, A), torch.randn(12, S), torch.randn(12))
    loss = assert_draws_only_from(impl, _train_step_on_a_copy_with, ens, batch, kind="torch")
    assert math.isfinite(loss)


@pytest.mark.shape
def test_combine_moments_of_a_single_member(impl):
    """E = 1: the mixture is that member: mean μ, aleatoric std σ, epistemic std exactly 0 (not NaN)."""
    means = torch.tensor([[[1.5, -2.0], [0.0, 3.0]]])  # (E=1, B=2, D=2)
    stds = torch.tensor([[[0.5, 2.0], [1.0, 0.25]]])
    mean, aleatoric, epistemic = _alg(impl).combine_ensemble_moments(means, stds)
    torch.testing.assert_close(mean, means[0])
    torch.testing.assert_close(aleatoric, stds[0])
    torch.testing.assert_close(epistemic, torch.zeros(2, 2))


@pytest.mark.shape
def test_propagation_noise_is_independent_across_particles_and_outputs(ens, device):
    """Stochastic tsinf: identical particles get different noise, and no two outputs (state dimensions,
    reward) share one draw."""
    s0, a0 = torch.randn(1, S, device=device), torch.randn(1, A, device=device)
    ns, r = ens.propagate(s0.repeat(4, 1), a0.repeat(4, 1), mode="tsinf", member_idx=torch.full((4,), 2))
    out = ens(s0, a0)
    mean = torch.cat([out["next_state_mean"][2], out["reward_mean"][2]], -1)  # (1, S+1) of member 2
    std = torch.cat([out["next_state_std"][2], out["reward_std"][2]], -1)
    eps = (torch.cat([ns, r[:, None]], -1).detach() - mean) / std  # (4, S+1) standardised noise
    assert_noise_not_shared(eps, {0: "particles", 1: "outputs"}, "each output (every state dimension and the "
                            "reward) of every particle needs its own draw")  # fmt: skip


@pytest.mark.shape
def test_loss_is_the_sum_of_member_nlls_plus_the_bound_regulariser(ens, device):
    """loss on per-member batches = Σ_e (mean NLL of member e on its own batch) + 0.01 (Σ max − Σ min)."""
    s, a, ns = (torch.randn(E, 6, d, device=device) for d in (S, A, S))
    r = torch.randn(E, 6, device=device)
    loss = ens.loss(s, a, ns, r)
    assert loss.shape == ()
    out = ens(s, a)
    mean = torch.cat([out["next_state_mean"], out["reward_mean"]], -1)  # (E, 6, S+1)
    std = torch.cat([out["next_state_std"], out["reward_std"]], -1)
    target = torch.cat([ns, r[..., None]], -1)
    member_nll = -torch.distributions.Normal(mean, std).log_prob(target).mean(dim=(1, 2))  # (E,)
    reg = 0.01 * (ens.max_log_std.sum() - ens.min_log_std.sum())
    torch.testing.assert_close(loss, member_nll.sum() + reg, rtol=1e-4, atol=1e-4)


@pytest.mark.shape
@pytest.mark.points(0)
def test_bad_arguments_raise_value_error(impl):
    """Bad ensemble_size, propagation mode or a missing tsinf member_idx raise ValueError naming it."""
    with pytest.raises(ValueError, match="ensemble_size"):
        impl.ModelEnsemble(state_dim=2, action_dim=1, ensemble_size=0)
    ens = impl.ModelEnsemble(state_dim=2, action_dim=1, ensemble_size=2, hidden_dim=8)
    with pytest.raises(ValueError, match="mode"):
        ens.propagate(torch.randn(3, 2), torch.randn(3, 1), mode="ts2")
    with pytest.raises(ValueError, match="member_idx"):
        ens.propagate(torch.randn(3, 2), torch.randn(3, 1), mode="tsinf")
    with pytest.raises(ValueError, match="states"):
        ens(torch.randn(3, 5), torch.randn(3, 1))


@pytest.mark.gpu
@pytest.mark.points(0)
@pytest.mark.shape
def test_runs_on_device(impl, device):
    """Forward, train_step and propagate run on the --device (cuda) with outputs on it."""
    ens = impl.ModelEnsemble(state_dim=S, action_dim=A, ensemble_size=E, hidden_dim=32, device=device)
    loss = ens.train_step(torch.randn(16, S), torch.randn(16, A), torch.randn(16, S), torch.randn(16))
    assert math.isfinite(loss)
    ns, r = ens.propagate(torch.randn(10, S, device=device), torch.randn(10, A, device=device), mode="ts1")
    assert ns.device.type == device.type and r.shape == (10,)


def _ts1_members(ens, n: int, steps: int, device):
    """The member each of ``n`` identical particles drew in ``steps`` deterministic ts1 calls: ``(steps, n)``
    int64, read off as the member whose mean the particle's output equals, and that output's distance to it."""
    s0, a0 = torch.randn(1, S, device=device), torch.randn(1, A, device=device)
    out = ens(s0, a0)
    means = torch.cat([out["next_state_mean"][:, 0], out["reward_mean"][:, 0]], -1)  # (E, S+1)
    gaps = (means[:, None] - means[None]).abs().amax(-1) + torch.eye(E, device=means.device)
    assert gaps.min() > 1e-3, "two members of the fresh ensemble predict the same mean: the test cannot tell them apart"
    members, distances = [], []
    for _ in range(steps):
        ns, r = ens.propagate(s0.expand(n, -1), a0.expand(n, -1), mode="ts1", deterministic=True)
        dist = (torch.cat([ns, r[:, None]], -1)[:, None] - means[None]).abs().amax(-1)  # (n, E)
        members.append(dist.argmin(1))
        distances.append(dist.min(1).values)
    return torch.stack(members), torch.stack(distances)


@pytest.mark.shape
def test_ts1_draws_members_independently_per_particle_and_step(ens, device):
    """ts1 draws a fresh member for every particle at every call, uniformly and independently: of 1000 identical
    particles each member takes 130..270 at a call, 50..150 of 500 neighbouring particle pairs share a member,
    and 130..270 particles keep their member from one call to the next (expected 200, 100, 200).

    Each count is Binomial with p = 1/E = 0.2 (a pair shares a member with probability 1/5; the members of a
    particle at two calls agree with probability 1/5): outside these bounds with probability ≤ 4.2e-8 each
    (exact binomial tails), so a correct ts1 fails with probability < 3e-7 (union bound over the 7 counts). A
    member fixed per particle (tsinf under another name), a round-robin ``arange(N) % E`` or one member for the
    whole batch fails.
    """
    members, distances = _ts1_members(ens, 1000, 2, device)
    assert (distances < 1e-5).all(), "a deterministic ts1 particle must equal one member's mean"
    counts = torch.bincount(members[0], minlength=E)
    assert counts.min() >= 130 and counts.max() <= 270, (
        f"ts1 gave the E = {E} members to 1000 particles {counts.tolist()} times (expected 200 each)"
    )
    shared = int((members[0, 0::2] == members[0, 1::2]).sum())
    assert 50 <= shared <= 150, (
        f"{shared} of 500 neighbouring particle pairs share a member (expected 100): each particle draws its own"
    )
    kept = int((members[0] == members[1]).sum())
    assert 130 <= kept <= 270, (
        f"{kept} of 1000 particles drew the same member at two ts1 calls (expected 200): ts1 re-draws every "
        "particle's member at every call (step), unlike tsinf"
    )


def _copy_of(impl, module):
    """In the worker: a deep copy of ``module`` (comes back as a handle)."""
    return copy.deepcopy(module)


def _train_step_with_its_bootstrap(impl, ens, batch):
    """In the worker: ``ens.train_step(*batch)``, with the bootstrap indices it drew recorded (the module's
    ``bootstrap_indices`` wrapped for the call); the returned value and the recorded ``(E, B)`` indices."""
    module = impl.module("model_based_rl.ensemble")
    original, seen = module.bootstrap_indices, []

    def recording(*args, **kwargs):
        idx = original(*args, **kwargs)
        seen.append(idx.detach().clone())
        return idx

    module.bootstrap_indices = recording
    try:
        value = ens.train_step(*batch)
    finally:
        module.bootstrap_indices = original
    return value, seen


@pytest.mark.shape
def test_train_step_returns_the_mean_member_loss_on_each_bootstrap(impl, device):
    """train_step returns (Σ_e NLL_e + 0.01 (Σ max_log_std − Σ min_log_std)) / E before its step, NLL_e member e's
    mean NLL on its own resample batch[idx[e]] (hand-computed from the members' Gaussians before the step)."""
    ens = impl.ModelEnsemble(state_dim=S, action_dim=A, ensemble_size=E, hidden_dim=16, num_hidden_layers=2,
                             normalize_inputs=False, device=device)  # fmt: skip
    before = impl.run(_copy_of, ens)  # a handle to a copy of the members before the step
    s, a = torch.randn(12, S, device=device), torch.randn(12, A, device=device)
    ns, r = s + torch.randn(12, S, device=device), torch.randn(12, device=device)
    value, seen = impl.run(_train_step_with_its_bootstrap, ens, (s, a, ns, r))
    assert len(seen) == 1 and seen[0].shape == (E, 12), f"train_step drew bootstrap indices {seen}"
    idx = seen[0].to(device)
    mean, std = (x.detach() for x in _joint(before(s[idx], a[idx])))  # (E, 12, S+1): member e, its resample
    target = torch.cat([ns[idx], r[idx][..., None]], -1)
    member_nll = (0.5 * ((target - mean) / std) ** 2 + std.log() + 0.5 * math.log(2 * math.pi)).mean(dim=(1, 2))
    regulariser = 0.01 * ((S + 1) * 0.5 - (S + 1) * -10.0)  # the initial bounds 0.5 and −10 of the S + 1 outputs
    assert isinstance(value, float)
    assert value == pytest.approx(float(member_nll.sum() + regulariser) / E, rel=1e-4, abs=1e-5), (
        f"member NLLs {member_nll.tolist()} on their resamples, regulariser {regulariser}"
    )
