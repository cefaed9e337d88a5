"""WorldModel: VAE encoder/decoder (Kingma & Welling 2014), latent transition and reward (PlaNet-style)."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from torch import nn

from grader.judge.contracts import assert_inputs_unchanged, assert_noise_not_shared

pytestmark = pytest.mark.component("WorldModel")

STATE_DIM, ACTION_DIM, LATENT_DIM = 4, 2, 16


def _kl(impl):
    return impl.module("planning.algorithms").gaussian_kl


def _point_mass_batch(n: int, generator: torch.Generator | None = None):
    """Transitions of the 2-D point mass s' = s + 0.1 a, reward -||s'||, s and a uniform in [-1, 1]^2."""
    s = torch.rand(n, 2, generator=generator) * 2 - 1
    a = torch.rand(n, 2, generator=generator) * 2 - 1
    s2 = s + 0.1 * a
    return s, a, -s2.norm(dim=-1), s2


def _sharp_encoder(impl, wm) -> None:
    """Probe: the encoder's log-variance output made constant -30 (clamped to -10): z ≈ mean, σ = e^-5."""
    last = wm.encoder[-1]
    with torch.no_grad():
        last.weight[wm.latent_dim :].zero_()
        last.bias[wm.latent_dim :].fill_(-30.0)


# ---------------------------------------------------------------------------------------------- shapes / API
@pytest.mark.shape
def test_seed_cell_12_shapes(impl, device):
    """The notebook's calls (state 4, action 2, latent 16, hidden 128) give (1, ·) tensors of the right sizes."""
    wm = impl.WorldModel(
        state_dim=STATE_DIM, action_dim=ACTION_DIM, latent_dim=LATENT_DIM, hidden_dim=128, device=device
    )
    state = torch.randn(1, STATE_DIM, device=device)
    mean, log_var = wm.encode(state)
    z = wm.reparameterize(mean, log_var)
    assert mean.shape == log_var.shape == z.shape == (1, LATENT_DIM)
    assert wm.decode(z).shape == (1, STATE_DIM)
    action = torch.randn(1, ACTION_DIM, device=device)
    next_z = wm.predict_next_latent(z, action)
    assert next_z.shape == (1, LATENT_DIM)
    assert wm.predict_reward(z, action).shape == (1, 1)
    assert wm.decode(next_z).shape == (1, STATE_DIM)
    assert z.dtype == torch.float32


@pytest.mark.shape
def test_gaussian_kl_hand_computed(impl):
    """KL(N(μ, σ²)‖N(0, I)) for μ=(1, 0), σ²=(1, 2) is 1 − ½ ln 2; it is 0 for the standard normal."""
    kl = _kl(impl)
    mean = torch.tensor([[1.0, 0.0], [0.0, 0.0]])
    log_var = torch.tensor([[0.0, math.log(2.0)], [0.0, 0.0]])
    out = kl(mean, log_var)
    assert out.shape == (2,)
    assert out[0].item() == pytest.approx(1.0 - 0.5 * math.log(2.0), abs=1e-5)
    assert out[1].item() == pytest.approx(0.0, abs=1e-6)


@pytest.mark.property
@given(
    mean=st.lists(st.floats(-3, 3, allow_nan=False), min_size=1, max_size=6),
    log_var=st.lists(st.floats(-4, 4, allow_nan=False), min_size=6, max_size=6),
)
def test_gaussian_kl_nonnegative_and_matches_torch(impl, mean, log_var):
    """gaussian_kl is >= 0 and equals torch.distributions' KL summed over the latent dimension."""
    m = torch.tensor(mean, dtype=torch.float64)
    lv = torch.tensor(log_var[: len(mean)], dtype=torch.float64)
    out = _kl(impl)(m, lv)
    q = torch.distributions.Normal(m, torch.exp(0.5 * lv))
    p = torch.distributions.Normal(torch.zeros_like(m), torch.ones_like(m))
    expected = torch.distributions.kl_divergence(q, p).sum(-1)
    assert out.shape == ()
    assert out.item() >= -1e-9
    assert out.item() == pytest.approx(expected.item(), rel=1e-6, abs=1e-9)


@pytest.mark.shape
def test_reparameterize_statistics(impl):
    """Samples of reparameterize(μ, log σ²) have mean μ and standard deviation σ (20 000 draws)."""
    wm = impl.WorldModel(state_dim=2, action_dim=1, latent_dim=2, hidden_dim=8)
    n = 20_000
    mean = torch.tensor([1.0, -2.0]).expand(n, 2)
    log_var = torch.tensor([math.log(0.25), math.log(4.0)]).expand(n, 2)
    z = wm.reparameterize(mean, log_var)
    assert z.shape == (n, 2)
    # standard errors: 0.5/sqrt(n) = 0.0035 and 2/sqrt(n) = 0.014
    assert z.mean(0).tolist() == pytest.approx([1.0, -2.0], abs=0.06)
    assert z.std(0).tolist() == pytest.approx([0.5, 2.0], rel=0.05)
    assert not torch.equal(wm.reparameterize(mean[:4], log_var[:4]), wm.reparameterize(mean[:4], log_var[:4]))


@pytest.mark.shape
def test_loss_parts_and_total(impl):
    """loss() = rec + β·KL + latent + reward, with rec and latent summed over features and batch-averaged."""
    wm = impl.WorldModel(state_dim=3, action_dim=2, latent_dim=4, hidden_dim=16, beta=0.5)
    impl.run(_sharp_encoder, wm)
    s, a, s2 = torch.randn(32, 3), torch.randn(32, 2), torch.randn(32, 3)
    r = torch.randn(32)
    total, parts = wm.loss(s, a, r, s2)
    assert set(parts) >= {"reconstruction", "kl", "latent", "reward"}
    assert total.shape == ()
    mean, log_var = wm.encode(s)
    rec = (wm.decode(mean) - s).pow(2).sum(-1).mean()
    kl = (-0.5 * (1 + log_var - mean**2 - log_var.exp()).sum(-1)).mean()
    lat = (wm.predict_next_latent(mean, a) - wm.encode(s2)[0]).pow(2).sum(-1).mean()
    rew = (wm.predict_reward(mean, a).squeeze(-1) - r).pow(2).mean()
    assert parts["reconstruction"].item() == pytest.approx(rec.item(), rel=0.02)
    assert parts["kl"].item() == pytest.approx(kl.item(), rel=1e-4)
    assert parts["latent"].item() == pytest.approx(lat.item(), rel=0.02)
    assert parts["reward"].item() == pytest.approx(rew.item(), rel=0.02)
    expected_total = parts["reconstruction"] + 0.5 * parts["kl"] + parts["latent"] + parts["reward"]
    assert total.item() == pytest.approx(expected_total.item(), rel=1e-5)


@pytest.mark.shape
def test_loss_accepts_column_rewards(impl):
    """Rewards of shape (B, 1) give the same loss parts as rewards of shape (B,)."""
    wm = impl.WorldModel(state_dim=3, action_dim=2, latent_dim=4, hidden_dim=16)
    impl.run(_sharp_encoder, wm)
    s, a, s2, r = torch.randn(8, 3), torch.randn(8, 2), torch.randn(8, 3), torch.randn(8)
    _, flat = wm.loss(s, a, r, s2)
    _, column = wm.loss(s, a, r.unsqueeze(-1), s2)
    assert column["reward"].item() == pytest.approx(flat["reward"].item(), rel=1e-3)


@pytest.mark.shape
def test_imagine_matches_stepwise_rollout(impl):
    """imagine(z, a) returns (B, T, Z) latents z_1..z_T and (B, T) rewards r̂(z_t, a_t), as stepping by hand."""
    wm = impl.WorldModel(state_dim=3, action_dim=2, latent_dim=5, hidden_dim=16)
    z0, actions = torch.randn(4, 5), torch.randn(4, 3, 2)
    latents, rewards = wm.imagine(z0, actions)
    assert latents.shape == (4, 3, 5) and rewards.shape == (4, 3)
    z = z0
    for t in range(3):
        assert torch.allclose(rewards[:, t], wm.predict_reward(z, actions[:, t]).squeeze(-1), atol=1e-6)
        z = wm.predict_next_latent(z, actions[:, t])
        assert torch.allclose(latents[:, t], z, atol=1e-6)


@pytest.mark.shape
def test_imagine_zero_steps_gives_empty_batches(impl):
    """With T = 0 actions imagine returns (B, 0, Z) latents and (B, 0) rewards (B = 4, Z = 5)."""
    wm = impl.WorldModel(state_dim=3, action_dim=2, latent_dim=5, hidden_dim=16)
    latents, rewards = wm.imagine(torch.randn(4, 5), torch.zeros(4, 0, 2))
    assert tuple(latents.shape) == (4, 0, 5) and tuple(rewards.shape) == (4, 0)


@pytest.mark.shape
@pytest.mark.points(0)
def test_constructor_rejects_bad_arguments(impl):
    """Non-positive sizes, a negative beta or lr <= 0 raise ValueError naming the argument."""
    for kwargs, name in [
        ({"state_dim": 0}, "state_dim"),
        ({"latent_dim": -1}, "latent_dim"),
        ({"beta": -0.1}, "beta"),
        ({"lr": 0.0}, "lr"),
    ]:
        with pytest.raises(ValueError, match=name):
            impl.WorldModel(**{"state_dim": 4, "action_dim": 2, **kwargs})


# ---------------------------------------------------------------------------------------------- gradients
def _reparameterize_grads(impl, wm, mean, log_var):
    """Probe: z = reparameterize(μ, log σ²) with μ and log σ² as leaves; z and the gradients of z.sum()."""
    mean = mean.clone().requires_grad_(True)
    log_var = log_var.clone().requires_grad_(True)
    z = wm.reparameterize(mean, log_var)
    z.sum().backward()
    return z, mean.grad, log_var.grad


def _network_grad_sums(impl, wm, batch):
    """Probe: backward of the total loss; per network, Σ|grad| of each parameter (None: no gradient)."""
    total, _ = wm.loss(*batch)
    total.backward()
    return {
        name: [None if p.grad is None else float(p.grad.abs().sum()) for p in getattr(wm, name).parameters()]
        for name in ("encoder", "decoder", "transition", "reward_head")
    }


def _next_state_grad(impl, wm, s, a, r, s2):
    """Probe: the loss with s' as a leaf; the latent part and the gradient that reaches s' (None: none)."""
    s2 = s2.clone().requires_grad_(True)
    total, parts = wm.loss(s, a, r, s2)
    latent = parts["latent"].detach().item()
    total.backward()
    return latent, s2.grad


@pytest.mark.gradient
def test_reparameterize_passes_gradients(impl):
    """∂z/∂μ = 1 and ∂z/∂log σ² = ½ σ ε = ½ (z − μ)."""
    wm = impl.WorldModel(state_dim=2, action_dim=1, latent_dim=3, hidden_dim=8)
    mean = torch.randn(5, 3)
    log_var = torch.randn(5, 3)
    z, mean_grad, log_var_grad = impl.run(_reparameterize_grads, wm, mean, log_var)
    assert mean_grad is not None and log_var_grad is not None
    assert torch.allclose(mean_grad, torch.ones_like(mean))
    assert torch.allclose(log_var_grad, 0.5 * (z - mean), atol=1e-5)


@pytest.mark.gradient
def test_loss_gradients_reach_every_network(impl):
    """The total loss has non-zero gradients in the encoder, decoder, transition and reward networks."""
    wm = impl.WorldModel(state_dim=3, action_dim=2, latent_dim=4, hidden_dim=16)
    batch = (torch.randn(16, 3), torch.randn(16, 2), torch.randn(16), torch.randn(16, 3))
    sums = impl.run(_network_grad_sums, wm, batch)
    for name in ("encoder", "decoder", "transition", "reward_head"):
        grads = sums[name]
        assert all(g is not None for g in grads), name
        assert sum(grads) > 0, name


@pytest.mark.gradient
def test_latent_target_is_stop_gradient(impl):
    """No gradient flows into the next-state encoding (the latent-dynamics target is detached)."""
    wm = impl.WorldModel(state_dim=3, action_dim=2, latent_dim=4, hidden_dim=16)
    s, a, r, s2 = torch.randn(16, 3), torch.randn(16, 2), torch.randn(16), torch.randn(16, 3)
    latent, s2_grad = impl.run(_next_state_grad, wm, s, a, r, s2)
    assert latent > 0
    assert s2_grad is None or torch.count_nonzero(s2_grad) == 0


# ----------------------------------------------------------------------- contracts (CONVENTIONS §3, issue 23)
def _parameters(impl, module):
    """Probe: a copy of every named parameter of ``module``."""
    return {name: p.detach().clone() for name, p in module.named_parameters()}


@pytest.mark.shape
def test_gaussian_kl_leaves_its_inputs_unchanged(impl):
    """gaussian_kl leaves mean and log_var (beyond the clamp range [-10, 10] here) as they were, and returns
    the hand-computed KL of the unclamped Gaussians."""
    mean = torch.tensor([[1.0, -2.0, 0.5], [0.0, 3.0, -1.0]])
    log_var = torch.tensor([[12.0, -15.0, 0.3], [-0.7, 2.0, 11.0]])
    kl = assert_inputs_unchanged(impl, _kl(impl), None, mean, log_var)
    # −½ Σ_j (1 + log σ² − μ² − σ²): row 0 −½ ((12 − e^12) + (−18 − e^−15) + (1.05 − e^0.3)),
    # row 1 −½ ((0.3 − e^−0.7) + (−6 − e^2) + (11 − e^11))
    expected = torch.tensor([0.5 * (math.exp(12) + math.exp(-15) + math.exp(0.3) + 4.95),
                             0.5 * (math.exp(-0.7) + math.exp(2) + math.exp(11) - 5.3)])  # fmt: skip
    torch.testing.assert_close(kl, expected)


@pytest.mark.shape
def test_model_methods_leave_their_inputs_unchanged(impl):
    """encode, reparameterize, decode, the latent models, loss, train_step and imagine leave the caller's
    tensors as they were; their results agree with the networks' outputs read back (encoder → (μ, clamped
    log σ²), z + transition, reward head), a sample lies within 10 σ, the loss parts add up, the KL part is
    the hand-computed one, and train_step moves the parameters."""
    wm = impl.WorldModel(state_dim=3, action_dim=2, latent_dim=4, hidden_dim=16)
    s, a, s2, r = 3.0 * torch.randn(8, 3), torch.randn(8, 2), torch.randn(8, 3), torch.randn(8, 1)
    z = torch.randn(8, 4)
    log_var = torch.tensor([[12.0, -15.0, 0.5, -1.0]]).repeat(8, 1)  # beyond the clamp range in places

    mean, enc_log_var = assert_inputs_unchanged(impl, wm, "encode", s)
    encoded = wm.encoder(s).detach()  # the given S -> 2Z network: (mean, log_var) halves
    torch.testing.assert_close(mean, encoded[:, :4])
    torch.testing.assert_close(enc_log_var, encoded[:, 4:].clamp(-10.0, 10.0))
    sample = assert_inputs_unchanged(impl, wm, "reparameterize", z, log_var)
    eps = (sample - z) / torch.exp(0.5 * log_var)  # standardised noise: |ε| > 10 has probability 1.5e-23
    assert sample.shape == (8, 4) and (eps.abs() < 10).all(), f"standardised noise {eps.tolist()}"
    assert (sample[:, 0] != z[:, 0]).all(), "no noise was added where σ = e^6"
    torch.testing.assert_close(assert_inputs_unchanged(impl, wm, "decode", z), wm.decoder(z).detach())
    za = torch.cat([z, a], dim=-1)
    torch.testing.assert_close(assert_inputs_unchanged(impl, wm, "predict_next_latent", z, a),
                               z + wm.transition(za).detach())  # fmt: skip
    reward = assert_inputs_unchanged(impl, wm, "predict_reward", z, a)
    assert reward.shape == (8, 1)
    torch.testing.assert_close(reward, wm.reward_head(za).detach())

    kl = (-0.5 * (1 + enc_log_var - mean**2 - enc_log_var.exp()).sum(-1)).mean()  # deterministic, given encode
    for column_or_flat in (r, r[:, 0]):
        total, parts = assert_inputs_unchanged(impl, wm, "loss", s, a, column_or_flat, s2)
        assert total.shape == () and set(parts) >= {"reconstruction", "kl", "latent", "reward"}
        assert all(parts[key].item() >= 0 for key in ("reconstruction", "latent", "reward")), parts
        torch.testing.assert_close(parts["kl"].detach(), kl, rtol=1e-5, atol=1e-5)
        total_of_parts = parts["reconstruction"].detach() + kl + parts["latent"].detach() + parts["reward"].detach()
        torch.testing.assert_close(total.detach(), total_of_parts, rtol=1e-5, atol=1e-5)  # β = 1
    before = impl.run(_parameters, wm)
    logged = assert_inputs_unchanged(impl, wm, "train_step", s, a, r, s2)
    assert set(logged) == {"total", "reconstruction", "kl", "latent", "reward"}
    assert all(isinstance(v, float) and math.isfinite(v) for v in logged.values()), logged
    assert logged["kl"] == pytest.approx(kl.item(), rel=1e-5, abs=1e-5)  # the loss before the step
    assert logged["total"] == pytest.approx(logged["reconstruction"] + logged["kl"] + logged["latent"]
                                            + logged["reward"], rel=1e-5, abs=1e-5)  # fmt: skip
    after = impl.run(_parameters, wm)
    assert any(not torch.equal(before[name], after[name]) for name in before), "train_step changed no parameter"

    actions = torch.randn(8, 3, 2)
    latents, rewards = assert_inputs_unchanged(impl, wm, "imagine", z, actions)
    assert latents.shape == (8, 3, 4) and rewards.shape == (8, 3)
    step = z
    for t in range(3):  # r_t = reward_head([z_t, a_t]), z_{t+1} = z_t + transition([z_t, a_t])
        step_a = torch.cat([step, actions[:, t]], dim=-1)
        torch.testing.assert_close(rewards[:, t], wm.reward_head(step_a).detach()[:, 0], rtol=1e-5, atol=1e-5)
        step = step + wm.transition(step_a).detach()
        torch.testing.assert_close(latents[:, t], step, rtol=1e-5, atol=1e-5)


@pytest.mark.shape
def test_reparameterize_noise_is_independent_across_rows_and_latents(impl):
    """Identical rows get different ε, and no two latent dimensions share one ε."""
    wm = impl.WorldModel(state_dim=2, action_dim=1, latent_dim=4, hidden_dim=8)
    mean = torch.tensor([[0.5, -1.0, 2.0, 0.0]]).repeat(4, 1)
    log_var = torch.tensor([[0.0, math.log(4.0), math.log(0.25), 1.0]]).repeat(4, 1)
    eps = (wm.reparameterize(mean, log_var) - mean) / torch.exp(0.5 * log_var)  # (4, Z) standardised noise
    assert_noise_not_shared(eps, {0: "rows", 1: "latents"}, "ε ~ N(0, I) needs one draw per entry "
                            "(torch.randn_like(std))")  # fmt: skip


#: The first state feature of the batches below sets the encoder's width (see _width_from_first_feature).
SHARP, WIDE = -1.0, 1.0


def _width_from_first_feature(impl, wm, mean):
    """Probe: the encoder rewired so that its μ is ``mean`` whatever the state and log σ² = 20·relu(s₀) − 10:
    σ = e⁻⁵ (z ≈ μ) for a state with s₀ = SHARP, σ = e⁵ for one with s₀ = WIDE."""
    first, second, last = [m for m in wm.encoder if isinstance(m, nn.Linear)]
    with torch.no_grad():
        for layer in (first, second, last):
            layer.weight.zero_()
            layer.bias.zero_()
        first.weight[0, 0] = 1.0  # hidden unit 0 carries relu(s0) through both hidden layers
        second.weight[0, 0] = 1.0
        last.weight[wm.latent_dim :, 0] = 20.0
        last.bias[: wm.latent_dim] = mean
        last.bias[wm.latent_dim :] = -10.0


def _batch_with_first_feature(first_of_s: float, first_of_next: float, n: int = 16):
    s, a, s2, r = torch.randn(n, 3), torch.randn(n, 2), torch.randn(n, 3), torch.randn(n)
    s[:, 0], s2[:, 0] = first_of_s, first_of_next
    return s, a, r, s2


@pytest.mark.shape
def test_latent_target_is_the_mean_of_the_next_encoding(impl):
    """The latent part's target is μ' = encode(s').mean, not a sample: with q(z|s') of σ = e⁵ around μ' it
    stays Σ_z (predict_next_latent(z, a) − μ')², z ≈ μ."""
    wm = impl.WorldModel(state_dim=3, action_dim=2, latent_dim=4, hidden_dim=16)
    mu = torch.tensor([-1.0, -0.5, 0.5, 1.0])
    impl.run(_width_from_first_feature, wm, mu)
    s, a, r, s2 = _batch_with_first_feature(SHARP, WIDE)
    _, parts = wm.loss(s, a, r, s2)
    expected = (wm.predict_next_latent(mu.expand(16, -1), a) - mu).pow(2).sum(-1).mean()
    assert parts["latent"].item() == pytest.approx(expected.item(), rel=0.05, abs=0.05)  # z − μ is e⁻⁵ ε


@pytest.mark.shape
def test_parts_that_read_z_use_the_sample(impl):
    """With q(z|s) of σ = e⁵, two calls on one batch give different reconstruction, latent and reward parts
    (they read the sampled z, as the docstring's decode(z)) and the same KL (a function of μ, log σ² only)."""
    wm = impl.WorldModel(state_dim=3, action_dim=2, latent_dim=4, hidden_dim=16)
    impl.run(_width_from_first_feature, wm, torch.tensor([-1.0, -0.5, 0.5, 1.0]))
    batch = _batch_with_first_feature(WIDE, SHARP)
    _, first = wm.loss(*batch)
    _, second = wm.loss(*batch)
    for name in ("reconstruction", "latent", "reward"):
        assert first[name].item() != second[name].item(), (
            f"the {name} part was {first[name].item():.6g} in both calls: it must read the sampled "
            "z = reparameterize(μ, log σ²), not the mean μ"
        )
    assert first["kl"].item() == pytest.approx(second["kl"].item(), rel=1e-6)


def _readouts_that_ignore_z(impl, wm, constant_state):
    """Probe: the decoder rewired to output ``constant_state`` whatever z, and the reward head to output the first
    action coordinate a₀ whatever z (relu(a₀) − relu(−a₀) through its two hidden layers)."""
    decoder = [m for m in wm.decoder if isinstance(m, nn.Linear)]
    head = [m for m in wm.reward_head if isinstance(m, nn.Linear)]
    with torch.no_grad():
        for layer in decoder + head:
            layer.weight.zero_()
            layer.bias.zero_()
        decoder[-1].bias.copy_(constant_state)
        first, second, last = head
        first.weight[0, wm.latent_dim] = 1.0  # unit 0 reads a₀, unit 1 reads −a₀ (the head's input is [z, a])
        first.weight[1, wm.latent_dim] = -1.0
        second.weight[0, 0] = second.weight[1, 1] = 1.0
        last.weight[0, 0], last.weight[0, 1] = 1.0, -1.0


@pytest.mark.shape
def test_reconstruction_and_reward_parts_hand_computed(impl):
    """With a decoder that outputs c = (0.5, 1) and a reward head that outputs a₀, whatever z, the parts are
    exact: reconstruction = mean_B Σ_s (c − s)² = 1.25 and reward = mean_B (a₀ − r)² = 0.140625, row by row
    (a (B, 1) prediction against (B,) rewards broadcasts to the mean over all B² pairs instead)."""
    wm = impl.WorldModel(state_dim=2, action_dim=2, latent_dim=3, hidden_dim=16)
    impl.run(_readouts_that_ignore_z, wm, torch.tensor([0.5, 1.0]))
    states = torch.tensor([[1.0, 0.0], [0.0, 2.0], [-1.0, 1.0], [0.5, 0.5]])
    actions = torch.tensor([[0.5, 3.0], [-1.0, -2.0], [2.0, 0.0], [0.0, 1.0]])
    rewards = torch.tensor([1.0, -1.0, 1.5, 0.25])
    _, parts = wm.loss(states, actions, rewards, torch.randn(4, 2))
    # c − s per row: (−0.5, 1), (0.5, −1), (1.5, 0), (0, 0.5): squared sums 1.25, 1.25, 2.25, 0.25
    assert parts["reconstruction"].item() == pytest.approx(1.25, rel=1e-6)
    # a₀ − r per row: −0.5, 0, 0.5, −0.25: squares 0.25, 0, 0.25, 0.0625
    assert parts["reward"].item() == pytest.approx(0.140625, rel=1e-6), (
        "the reward part must be mean_B (predict_reward(z, a) − r)², row against row: squeeze the (B, 1) "
        "prediction before comparing it with (B,) rewards"
    )


# ---------------------------------------------------------------------------------------------- convergence
TRAIN_STEPS = 1200

#: seed -> what the judge saw of the WorldModel trained with that seed (trained once, shared by the tests).
_TRAINED: dict[int, dict] = {}


def _train_world_model(impl, wm, batches, lr_drop_at, lower_lr):
    """Probe: wm.train_step on each judge-made batch (Adam lr lowered at lr_drop_at); its return values."""
    states, actions, rewards, next_states = batches
    history = []
    for i in range(states.shape[0]):
        if i == lr_drop_at:
            for group in wm.optimizer.param_groups:
                group["lr"] = lower_lr
        history.append(wm.train_step(states[i], actions[i], rewards[i], next_states[i]))
    return history


@pytest.fixture(params=[1, 2], ids=lambda s: f"seed{s}")
def trained_point_mass(request, impl, reseed):
    """A WorldModel trained 1200 steps on the point mass (β = 0.01, Adam 2e-3, then 5e-4 for the last 30 %),
    then asked by the judge for reconstructions and 5-step imaginations of 1000 held-out states."""
    seed = request.param
    if seed not in _TRAINED:
        reseed(seed)
        wm = impl.WorldModel(state_dim=2, action_dim=2, latent_dim=8, hidden_dim=64, beta=0.01, lr=2e-3)
        batches = [torch.stack(part) for part in zip(*(_point_mass_batch(128) for _ in range(TRAIN_STEPS)))]
        history = impl.run(_train_world_model, wm, batches, int(0.7 * TRAIN_STEPS), 5e-4)
        g = torch.Generator().manual_seed(100)
        s, _, _, _ = _point_mass_batch(1000, g)
        actions = torch.rand(1000, 5, 2, generator=g) * 2 - 1
        mean = wm.encode(s)[0]
        latents, rewards = wm.imagine(mean, actions)
        _TRAINED[seed] = {
            "history": history,
            "states": s,
            "actions": actions,
            "reconstructions": wm.decode(mean),
            "imagined_states": wm.decode(latents),
            "imagined_rewards": rewards,
        }
    return _TRAINED[seed]


@pytest.mark.convergence
@pytest.mark.points(2)
@pytest.mark.timeout(120)
def test_reconstruction_error_falls(trained_point_mass, margin):
    """After training, decode(encode(s).mean) reconstructs held-out states with MSE < 0.01 (state var 1/3).

    Calibration (docs/calibration.md, 2026-12-01): passed all 60 runs (30 seed offsets on the reference, 15 on
    each perturbed reference) per case; the fit of its check puts the false-fail rate at 0.00 % (≥ 14 sd).
    """
    history, s = trained_point_mass["history"], trained_point_mass["states"]
    assert set(history[-1]) >= {"total", "reconstruction", "kl", "latent", "reward"}
    assert all(math.isfinite(v) for v in history[-1].values())
    assert history[-1]["total"] < history[0]["total"]
    mse = (trained_point_mass["reconstructions"] - s).pow(2).mean().item()
    # measured on the reference, seeds 1-10: 0.00016-0.00035
    margin("reconstruction MSE", mse, "<", 0.01)


@pytest.mark.convergence
@pytest.mark.points(2)
@pytest.mark.timeout(120)
def test_k_step_latent_prediction(trained_point_mass, margin):
    """5-step imagined states beat the 'nothing moves' guess by 2x; imagined rewards have MSE < 0.01.

    Calibration (docs/calibration.md, 2026-12-01): passed all 60 runs (30 seed offsets on the reference, 15 on
    each perturbed reference) per case; the fit of its 2 checks puts the false-fail rate at 0.09 % and 0.01 %
    (closest: the 5-step MSE, 3.4 sd).
    """
    s, actions = trained_point_mass["states"], trained_point_mass["actions"]
    true_states = s.unsqueeze(1) + 0.1 * actions.cumsum(1)  # s_1..s_5
    true_rewards = -true_states.norm(dim=-1)  # r(s_t, a_t) = -||s_{t+1}||
    predicted, rewards = trained_point_mass["imagined_states"], trained_point_mass["imagined_rewards"]
    assert predicted.shape == (1000, 5, 2) and rewards.shape == (1000, 5)
    k_step_mse = (predicted[:, -1] - true_states[:, -1]).pow(2).mean().item()
    still_mse = (s - true_states[:, -1]).pow(2).mean().item()  # about 0.0167
    # measured on the reference, seeds 1-10: k_step_mse / still_mse 0.04-0.16, reward MSE 0.0003-0.0012
    margin("5-step state MSE, vs half the 'nothing moves' MSE", k_step_mse, "<", 0.5 * still_mse)
    margin("imagined reward MSE", (rewards - true_rewards).pow(2).mean().item(), "<", 0.01)


# ---------------------------------------------------------------------------------------------- device
def _parameter_devices(impl, wm):
    """Probe: the device type of every parameter of wm."""
    return [p.device.type for p in wm.parameters()]


@pytest.mark.gpu
@pytest.mark.points(0)
@pytest.mark.gradient
def test_train_step_on_device(impl, device):
    """On --device, every network lives on the device and a train step runs and returns finite floats."""
    if device.type != "cuda":
        pytest.skip("run with --device cuda")
    wm = impl.WorldModel(state_dim=2, action_dim=2, latent_dim=4, hidden_dim=16, device=device)
    devices = impl.run(_parameter_devices, wm)
    assert devices and all(d == "cuda" for d in devices)
    batch = [t.to(device) for t in _point_mass_batch(32)]
    out = wm.train_step(*batch)
    assert all(math.isfinite(v) for v in out.values())
    latents, rewards = wm.imagine(wm.encode(batch[0])[0], torch.zeros(32, 3, 2, device=device))
    assert latents.device.type == "cuda" and rewards.shape == (32, 3)
