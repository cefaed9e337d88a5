"""Hidden tests: ReplayBuffer (other ring-buffer and sampling cases)."""

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

pytestmark = pytest.mark.component("ReplayBuffer")


def _add_ids(impl, buf, ids):
    """Probe: add transitions whose state, action and reward encode the id."""
    for i in ids:
        buf.add(np.full(2, i, dtype=np.float32), int(i), float(i), np.full(2, i + 1.0), False)


def _sampled_rewards(impl, buf, n, seed):
    """Probe: the rewards (= ids) of one batch of n drawn with np.random.default_rng(seed)."""
    return buf.sample(n, rng=np.random.default_rng(seed)).rewards


@pytest.mark.shape
def test_circular_write_indices_other_numbers(impl):
    """From slot 6 of 7, four items take 6, 0, 1, 2; a one-slot ring reuses slot 0."""
    f = impl.module("utils").circular_write_indices
    assert f(6, 4, 7).tolist() == [6, 0, 1, 2]
    assert f(0, 3, 1).tolist() == [0, 0, 0]
    assert f(1, 5, 3).tolist() == [1, 2, 0, 1, 2]


@pytest.mark.property
@given(capacity=st.integers(1, 20), data=st.data(), count=st.integers(0, 50))
def test_circular_write_indices_are_consecutive_mod_capacity(impl, capacity, data, count):
    """Slot k is (position + k) mod capacity: int64, in range, each one after the previous."""
    position = data.draw(st.integers(0, capacity - 1))
    slots = np.asarray(impl.module("utils").circular_write_indices(position, count, capacity))
    assert slots.shape == (count,) and slots.dtype == np.int64
    assert slots.tolist() == [(position + k) % capacity for k in range(count)]


@pytest.mark.shape
def test_wrapped_buffer_samples_its_four_newest_uniformly(impl):
    """Capacity 4 after ids 0..5: 4000 draws hit ids 2..5 only, each 850..1150 times (expected 1000).

    Each count is Binomial(4000, ¼) (sd 27.4): it leaves [850, 1150] with probability 4.3e-8 (exact binomial
    tails), so a correct uniform sampler fails with probability < 2e-7 (union bound over the four ids), for
    any generator stream.
    """
    buf = impl.ReplayBuffer(4)
    impl.run(_add_ids, buf, list(range(6)))
    ids = impl.run(_sampled_rewards, buf, 4000, 7).long()
    counts = torch.bincount(ids, minlength=6)
    assert counts[:2].sum() == 0, "ids 0 and 1 were overwritten and must never be sampled"
    assert counts[2:].min() >= 850 and counts[2:].max() <= 1150, counts.tolist()
