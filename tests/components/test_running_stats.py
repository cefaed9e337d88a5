"""Tests of RunningStats: Welford/Chan running moments, merging, normalisation of numpy and torch input."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from grader.judge.contracts import assert_inputs_unchanged

pytestmark = pytest.mark.component("RunningStats")

_values = st.floats(-1e3, 1e3, allow_nan=False, allow_infinity=False)


def _chunks(data: np.ndarray, cuts: list[int]) -> list[np.ndarray]:
    """Split rows of ``data`` at the (sorted, clipped) ``cuts``; empty chunks are kept."""
    cuts = sorted(min(c, len(data)) for c in cuts)
    return np.split(data, cuts)


def _update_all(impl, rs, chunks, single):
    """Probe: feed ``chunks`` to ``rs.update``, as whole batches or (``single``) one row at a time."""
    for chunk in chunks:
        if single:
            for row in chunk:
                rs.update(row)
        else:
            rs.update(chunk)


@pytest.mark.shape
def test_chan_merge_hand_computed(impl):
    """Merging {1, 3} (n 2, mean 2, M2 2) with {5} (n 1, mean 5, M2 0) gives n 3, mean 3, M2 8."""
    chan_merge = impl.module("utils").chan_merge
    n, mean, m2 = chan_merge(2, np.array(2.0), np.array(2.0), 1, np.array(5.0), np.array(0.0))
    assert n == 3
    assert float(mean) == pytest.approx(3.0)
    assert float(m2) == pytest.approx(8.0)
    # merging with an empty set changes nothing
    n, mean, m2 = chan_merge(2, np.array([2.0, 1.0]), np.array([2.0, 0.5]), 0, np.zeros(2), np.zeros(2))
    assert n == 2 and mean.tolist() == [2.0, 1.0] and m2.tolist() == [2.0, 0.5]


@pytest.mark.shape
def test_single_batch_moments(impl):
    """One (N, 2) batch gives numpy's mean and population variance, count N."""
    rs = impl.RunningStats(shape=(2,))
    data = np.array([[1.0, 10.0], [2.0, 20.0], [6.0, 60.0]])
    rs.update(data)
    assert rs.count == 3
    np.testing.assert_allclose(rs.mean, [3.0, 30.0])
    np.testing.assert_allclose(rs.var, [14 / 3, 1400 / 3])
    np.testing.assert_allclose(rs.std, np.sqrt([14 / 3, 1400 / 3]))


@pytest.mark.property
@given(
    data=st.lists(st.tuples(_values, _values), min_size=1, max_size=60),
    cuts=st.lists(st.integers(0, 60), max_size=6),
    single=st.booleans(),
)
def test_stream_equals_numpy_moments(impl, data, cuts, single):
    """Any chunking of a stream (batches or single samples) gives numpy's mean and var (ddof=0)."""
    arr = np.array(data, dtype=np.float64)
    rs = impl.RunningStats(shape=(2,))
    impl.run(_update_all, rs, _chunks(arr, cuts), single)
    assert rs.count == len(arr)
    scale = 1.0 + np.abs(arr).max()
    np.testing.assert_allclose(rs.mean, arr.mean(axis=0), rtol=1e-9, atol=1e-9 * scale)
    np.testing.assert_allclose(rs.var, arr.var(axis=0), rtol=1e-7, atol=1e-9 * scale**2)


@pytest.mark.property
@given(
    a=st.lists(_values, min_size=0, max_size=20),
    b=st.lists(_values, min_size=0, max_size=20),
    c=st.lists(_values, min_size=1, max_size=20),
)
def test_merge_is_associative_and_matches_concatenation(impl, a, b, c):
    """(A+B)+C == A+(B+C) == stats of the concatenated stream."""

    def stats(values):
        rs = impl.RunningStats()
        rs.update(np.array(values, dtype=np.float64))
        return rs

    left = stats(a).merge(stats(b)).merge(stats(c))
    right = stats(a).merge(stats(b).merge(stats(c)))
    allv = np.array(a + b + c)
    scale = 1.0 + np.abs(allv).max()
    for rs in (left, right):
        assert rs.count == len(allv)
        assert float(rs.mean) == pytest.approx(allv.mean(), rel=1e-9, abs=1e-9 * scale)
        assert float(rs.var) == pytest.approx(allv.var(), rel=1e-7, abs=1e-9 * scale**2)


@pytest.mark.shape
def test_torch_input_and_normalize(impl):
    """Torch batches update the stats; normalize returns a tensor of the input's dtype with mean 0, std 1."""
    torch.manual_seed(0)
    x = torch.randn(500, 3, dtype=torch.float64) * torch.tensor([1.0, 5.0, 0.1]) + torch.tensor([2.0, -1.0, 7.0])
    rs = impl.RunningStats(shape=(3,))
    rs.update(x[:200])
    rs.update(x[200:])
    np.testing.assert_allclose(rs.mean, x.mean(0).numpy(), rtol=1e-9)
    z = rs.normalize(x.float())
    assert isinstance(z, torch.Tensor) and z.dtype == torch.float32 and z.shape == (500, 3)
    torch.testing.assert_close(z.mean(0), torch.zeros(3), atol=1e-4, rtol=0)
    torch.testing.assert_close(z.std(0, unbiased=False), torch.ones(3), atol=1e-4, rtol=0)
    torch.testing.assert_close(rs.denormalize(z), x.float(), atol=1e-4, rtol=1e-5)


@pytest.mark.shape
def test_numpy_normalize_round_trip(impl):
    """normalize/denormalize of numpy arrays are inverse and use (x - mean) / sqrt(var + eps)."""
    rs = impl.RunningStats(shape=(), eps=1e-8)
    rs.update(np.array([1.0, 2.0, 3.0, 4.0]))
    x = np.array([2.5, 0.0, 10.0])
    z = rs.normalize(x)
    assert isinstance(z, np.ndarray)
    np.testing.assert_allclose(z, (x - 2.5) / np.sqrt(1.25 + 1e-8))
    np.testing.assert_allclose(rs.denormalize(z), x)


@pytest.mark.shape
def test_chan_merge_at_its_bounds(impl):
    """An empty A gives B's moments; two empty sets give (0, mean_a, m2_a), without dividing by n = 0."""
    chan_merge = impl.module("utils.running_stats").chan_merge
    n, mean, m2 = chan_merge(0, np.array([0.0, 0.0]), np.array([0.0, 0.0]), 3, np.array([2.0, -1.0]),
                             np.array([6.0, 0.5]))  # fmt: skip
    assert n == 3 and mean.tolist() == [2.0, -1.0] and m2.tolist() == [6.0, 0.5]
    n, mean, m2 = chan_merge(0, np.array([0.25, -4.0]), np.array([0.5, 0.0]), 0, np.array([7.0, 7.0]),
                             np.array([3.0, 3.0]))  # fmt: skip
    assert n == 0
    assert np.asarray(mean).tolist() == [0.25, -4.0] and np.asarray(m2).tolist() == [0.5, 0.0]


@pytest.mark.shape
def test_chan_merge_leaves_its_inputs_unchanged(impl):
    """chan_merge returns new moments (n 5, mean (3.8, −0.2), M2 (16.8, 13.3)) and leaves both sets' arrays."""
    chan_merge = impl.module("utils.running_stats").chan_merge
    n, mean, m2 = assert_inputs_unchanged(impl, chan_merge, None, 2.0, np.array([2.0, 1.0]), np.array([2.0, 0.5]),
                                          3.0, np.array([5.0, -1.0]), np.array([4.0, 8.0]))  # fmt: skip
    # δ = (3, −2): mean = mean_a + δ·3/5, M2 = M2_a + M2_b + δ²·2·3/5
    assert n == 5
    np.testing.assert_allclose(mean, [3.8, -0.2])
    np.testing.assert_allclose(m2, [16.8, 13.3])


@pytest.mark.shape
def test_update_and_normalize_leave_their_inputs_unchanged(impl):
    """update (numpy, torch), normalize and denormalize leave the caller's float64 batches as they were, and
    give the hand-computed moments and (de)normalised values, numpy for numpy and a float64 tensor for one."""
    rs = impl.RunningStats(shape=(2,))
    assert_inputs_unchanged(impl, rs, "update", np.array([[1.0, 10.0], [2.0, 20.0], [6.0, 60.0]]))
    assert rs.count == 3
    assert_inputs_unchanged(impl, rs, "update", torch.tensor([[-3.0, 5.0], [7.0, 0.5]], dtype=torch.float64))
    assert rs.count == 5
    assert_inputs_unchanged(impl, rs, "update", np.array([4.0, -2.0]))  # one sample
    assert rs.count == 6
    # the six rows: column 0 is 1, 2, 6, −3, 7, 4 (Σx = 17, Σx² = 115); column 1 is 10, 20, 60, 5, 0.5, −2
    # (Σx = 93.5, Σx² = 4129.25); var = Σx²/6 − (Σx/6)²
    mean = np.array([17 / 6, 93.5 / 6])
    var = np.array([115 / 6 - (17 / 6) ** 2, 4129.25 / 6 - (93.5 / 6) ** 2])
    np.testing.assert_allclose(rs.mean, mean)
    np.testing.assert_allclose(rs.var, var)
    x = np.array([[2.5, 0.0], [10.0, -3.0]])
    std = np.sqrt(var + 1e-8)  # the default eps
    for method, expected in (("normalize", (x - mean) / std), ("denormalize", x * std + mean)):
        out = assert_inputs_unchanged(impl, rs, method, x)
        assert isinstance(out, np.ndarray), f"{method} of an array gave a {type(out).__name__}"
        np.testing.assert_allclose(out, expected, rtol=1e-10)
        out = assert_inputs_unchanged(impl, rs, method, torch.tensor(x))  # float64 tensor
        assert isinstance(out, torch.Tensor) and out.dtype == torch.float64, f"{method} of a float64 tensor"
        np.testing.assert_allclose(out.numpy(), expected, rtol=1e-10)


@pytest.mark.shape
def test_merge_leaves_the_other_stats_unchanged(impl):
    """a.merge(b) absorbs b into a (the hand-computed count, mean and variance of all five rows) and leaves b's
    count, mean and variance as they were."""
    a, b = impl.RunningStats(shape=(2,)), impl.RunningStats(shape=(2,))
    a.update(np.array([[1.0, 2.0], [3.0, 6.0]]))
    b.update(np.array([[5.0, -1.0], [9.0, 3.0], [1.0, 1.0]]))
    assert a.merge(b) == a
    assert b.count == 3
    np.testing.assert_allclose(b.mean, [5.0, 1.0])
    np.testing.assert_allclose(b.var, [32 / 3, 8 / 3])
    # a holds the five rows: column 0 is 1, 3, 5, 9, 1 (Σx² = 117), column 1 is 2, 6, −1, 3, 1 (Σx² = 51)
    assert a.count == 5
    np.testing.assert_allclose(a.mean, [19 / 5, 11 / 5])
    np.testing.assert_allclose(a.var, [117 / 5 - (19 / 5) ** 2, 51 / 5 - (11 / 5) ** 2])


@pytest.mark.shape
def test_non_finite_samples_poison_only_their_own_feature(impl):
    """+inf, NaN and −inf samples are not filtered: their features end with a non-finite mean and a NaN var,
    while the finite feature beside them keeps its exact moments (1, 3, then 5: mean 3, var 8/3)."""
    rs = impl.RunningStats(shape=(4,))
    inf, nan = float("inf"), float("nan")
    rs.update(np.array([[inf, 1.0, nan, 0.5], [2.0, 3.0, 0.0, 1.5]]))
    rs.update(np.array([0.0, 5.0, 1.0, -inf]))  # one sample: −inf in feature 3 after two finite values
    assert rs.count == 3
    mean, var = rs.mean, rs.var
    assert mean[1] == pytest.approx(3.0) and var[1] == pytest.approx(8 / 3), (mean, var)
    for feature, value in ((0, "+inf"), (2, "NaN"), (3, "−inf")):
        assert not np.isfinite(mean[feature]) and np.isnan(var[feature]), (
            f"feature {feature} received {value}: its mean must be non-finite and its var NaN (samples are not "
            f"filtered), got mean {mean[feature]}, var {var[feature]}"
        )


@pytest.mark.shape
@pytest.mark.points(0)
def test_defaults_before_data_and_bad_shapes(impl):
    """Before any data mean is 0 and var 1; a batch of the wrong shape or eps <= 0 raises ValueError."""
    rs = impl.RunningStats(shape=(2,))
    assert rs.count == 0
    np.testing.assert_array_equal(rs.mean, [0.0, 0.0])
    np.testing.assert_array_equal(rs.var, [1.0, 1.0])
    with pytest.raises(ValueError, match="shape"):
        rs.update(np.zeros((4, 3)))
    with pytest.raises(ValueError, match="eps"):
        impl.RunningStats(shape=(2,), eps=0.0)
    with pytest.raises(ValueError, match="shape"):
        rs.merge(impl.RunningStats(shape=(3,)))


@pytest.mark.gpu
@pytest.mark.points(0)
@pytest.mark.shape
def test_normalize_cuda_tensor(impl):
    """A CUDA tensor is normalised on its device."""
    rs = impl.RunningStats(shape=(2,))
    x = torch.randn(64, 2, device="cuda") * 3 + 1
    rs.update(x)
    z = rs.normalize(x)
    assert z.is_cuda
    torch.testing.assert_close(z.mean(0), torch.zeros(2, device="cuda"), atol=1e-4, rtol=0)
