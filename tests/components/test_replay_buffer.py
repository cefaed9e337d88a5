"""Tests of the uniform ReplayBuffer (ring buffer, uniform sampling with replacement)."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from grader.judge.contracts import assert_draws_only_from, assert_inputs_unchanged

pytestmark = pytest.mark.component("ReplayBuffer")

FIELDS = ("states", "actions", "rewards", "next_states", "dones")


def _add_ids(impl, buf, ids, obs_dim=2):
    """Probe: add transitions whose state, action, reward and next state all encode the id."""
    for i in ids:
        i = int(i)
        buf.add(np.full(obs_dim, i, dtype=np.float32), i, float(i), np.full(obs_dim, i + 1.0), i % 2 == 0)


def _sample_probe(impl, buf, *args, **kwargs):
    """Probe: ``buf.sample(...)`` as data: whether it is a ``utils.Transition``, and its fields by name."""
    batch = buf.sample(*args, **kwargs)
    return {"is_transition": isinstance(batch, impl.module("utils").Transition),
            "fields": dict(zip(batch._fields, batch))}  # fmt: skip


def _fill(impl, buf, ids, obs_dim=2):
    impl.run(_add_ids, buf, [int(i) for i in ids], obs_dim)


def _sample(impl, buf, *args, **kwargs) -> SimpleNamespace:
    """``buf.sample(...)`` taken in the worker: a namespace of its fields, plus ``is_transition``, ``names``
    (the field names, in order) and ``tensors`` (the field values, in order)."""
    out = impl.run(_sample_probe, buf, *args, **kwargs)
    fields = out["fields"]
    named = {name: fields[name] for name in FIELDS if name in fields}
    return SimpleNamespace(is_transition=out["is_transition"], names=tuple(fields),
                           tensors=list(fields.values()), **named)  # fmt: skip


def _stored_ids(impl, buf, rng_seed=0):
    """Set of ids present in the buffer, seen by sampling many times (rewards encode the id)."""
    batch = _sample(impl, buf, 64 * buf.capacity + 64, rng=np.random.default_rng(rng_seed))
    return set(batch.rewards.long().tolist())


def _stored_rows(impl, buf, rng_seed=0):
    """Set of transitions in the buffer, seen by sampling many times: tuples (*state, action, reward,
    *next_state, done)."""
    batch = _sample(impl, buf, 64 * buf.capacity + 64, rng=np.random.default_rng(rng_seed))
    return {(*s.tolist(), int(a), float(r), *ns.tolist(), float(d))
            for s, a, r, ns, d in zip(batch.states, batch.actions, batch.rewards, batch.next_states, batch.dones,
                                      strict=True)}  # fmt: skip


@pytest.mark.shape
def test_circular_write_indices_wrap_around(impl):
    """circular_write_indices gives consecutive slots that wrap to 0 after the last one."""
    f = impl.module("utils").circular_write_indices
    assert f(3, 3, 4).tolist() == [3, 0, 1]
    assert f(0, 2, 5).tolist() == [0, 1]
    assert f(4, 6, 5).tolist() == [4, 0, 1, 2, 3, 4]
    assert f(2, 0, 5).tolist() == []


@pytest.mark.shape
def test_sample_shapes_and_dtypes_discrete(impl, device):
    """Discrete actions come back int64 (B,), states float32 (B, S), rewards and dones float32 (B,)."""
    buf = impl.ReplayBuffer(10, device=device)
    _fill(impl, buf, range(6), obs_dim=3)
    batch = _sample(impl, buf, 4)
    assert batch.is_transition and batch.names == FIELDS
    assert batch.states.shape == (4, 3) and batch.states.dtype == torch.float32
    assert batch.next_states.shape == (4, 3) and batch.next_states.dtype == torch.float32
    assert batch.actions.shape == (4,) and batch.actions.dtype == torch.int64
    assert batch.rewards.shape == (4,) and batch.rewards.dtype == torch.float32
    assert batch.dones.shape == (4,) and batch.dones.dtype == torch.float32
    assert all(t.device.type == device.type for t in batch.tensors)


@pytest.mark.shape
def test_sample_shapes_continuous_actions(impl):
    """Continuous (A,) actions are stored float32 and sampled as (B, A)."""
    buf = impl.ReplayBuffer(5)
    for i in range(3):
        buf.add(np.zeros(4), np.array([0.5, -0.5]) * i, 1.0, np.ones(4), False)
    batch = _sample(impl, buf, 7)
    assert batch.actions.shape == (7, 2) and batch.actions.dtype == torch.float32
    assert batch.states.shape == (7, 4)


@pytest.mark.shape
def test_sampled_fields_stay_aligned(impl):
    """Each sampled row is one stored transition: state, action, reward, next state and done agree."""
    buf = impl.ReplayBuffer(50)
    _fill(impl, buf, range(30))
    b = _sample(impl, buf, 64, rng=np.random.default_rng(1))
    ids = b.rewards
    assert ids.shape == (64,)
    assert torch.equal(b.states[:, 0], ids)
    assert torch.equal(b.actions.float(), ids)
    assert torch.equal(b.next_states[:, 1], ids + 1)
    assert torch.equal(b.dones, (ids.long() % 2 == 0).float())


@pytest.mark.shape
def test_sample_draws_only_stored_slots_uniformly(impl):
    """Samples come from the stored transitions only (not empty slots), each about equally often."""
    buf = impl.ReplayBuffer(100)
    _fill(impl, buf, range(1, 5))  # ids 1..4 in a buffer of 100 slots
    rewards = _sample(impl, buf, 4000, rng=np.random.default_rng(0)).rewards.long()
    assert rewards.shape == (4000,)
    counts = torch.bincount(rewards, minlength=5)
    assert counts[0] == 0  # an empty (zero) slot is never sampled
    assert counts[1:].min() > 850 and counts[1:].max() < 1150  # expected 1000 each


@pytest.mark.shape
def test_sample_is_reproducible_with_rng(impl):
    """The same rng seed gives the same batch; batch larger than the buffer is allowed."""
    buf = impl.ReplayBuffer(8)
    _fill(impl, buf, range(5))
    a = _sample(impl, buf, 12, rng=np.random.default_rng(3))
    b = _sample(impl, buf, 12, rng=np.random.default_rng(3))
    assert a.rewards.shape == (12,)
    assert torch.equal(a.rewards, b.rewards)


@pytest.mark.property
@given(
    capacity=st.integers(1, 8),
    chunks=st.lists(st.integers(1, 12), min_size=1, max_size=6),
    batched=st.lists(st.booleans(), min_size=6, max_size=6),
)
def test_never_exceeds_capacity_and_keeps_newest(impl, capacity, chunks, batched):
    """After any sequence of add/add_batch calls, len = min(added, capacity) and the newest are kept."""
    buf = impl.ReplayBuffer(capacity)
    next_id = 0
    for n, as_batch in zip(chunks, batched):
        ids = np.arange(next_id, next_id + n)
        if as_batch:
            buf.add_batch(np.stack([np.full(2, i, np.float32) for i in ids]), ids, ids.astype(float),
                          np.stack([np.full(2, i + 1.0) for i in ids]), np.zeros(n))
        else:
            _fill(impl, buf, ids)
        next_id += n
        assert len(buf) == min(next_id, capacity)
    expected = set(range(max(0, next_id - capacity), next_id))
    assert _stored_ids(impl, buf) == expected


@pytest.mark.shape
def test_overwrites_oldest_first(impl):
    """A full buffer replaces its oldest transition with each new one."""
    buf = impl.ReplayBuffer(3)
    _fill(impl, buf, range(3))
    assert _stored_ids(impl, buf) == {0, 1, 2}
    _fill(impl, buf, [3])
    assert _stored_ids(impl, buf) == {1, 2, 3}
    _fill(impl, buf, [4, 5])
    assert _stored_ids(impl, buf) == {3, 4, 5}
    assert len(buf) == 3


@pytest.mark.shape
def test_clear_empties_the_buffer(impl):
    """clear() forgets everything; the buffer can be refilled with another shape."""
    buf = impl.ReplayBuffer(4)
    _fill(impl, buf, range(6))
    buf.clear()
    assert len(buf) == 0
    buf.add(np.zeros(5), 1, 2.0, np.zeros(5), True)
    assert _sample(impl, buf, 2).states.shape == (2, 5)


def _sample_with(impl, buf, batch_size, rng):
    """``buf.sample(batch_size, rng=rng)``'s rewards (= ids): the call of the generator-only check."""
    return buf.sample(batch_size, rng=rng).rewards


@pytest.mark.shape
def test_add_and_add_batch_leave_their_inputs_unchanged(impl):
    """add and add_batch copy what they store: the caller's arrays and tensors are left as they were, add returns
    the next slot, and the buffer then holds exactly the transitions handed over (the newest 3 of 6)."""
    buf = impl.ReplayBuffer(3)  # add_batch of 4 into 3 slots wraps around and drops the oldest
    assert assert_inputs_unchanged(impl, buf, "add", np.array([0.5, -1.5], dtype=np.float32), np.int64(1), 2.0,
                                   np.array([1.5, 2.5], dtype=np.float32), True) == 0  # fmt: skip
    assert assert_inputs_unchanged(impl, buf, "add", torch.tensor([3.0, -4.0]), torch.tensor(0), -1.0,
                                   torch.tensor([0.25, 8.0]), False) == 1  # fmt: skip
    assert len(buf) == 2
    assert _stored_rows(impl, buf) == {(0.5, -1.5, 1, 2.0, 1.5, 2.5, 1.0), (3.0, -4.0, 0, -1.0, 0.25, 8.0, 0.0)}
    states = np.array([[1.0, 2.0], [3.0, 4.0], [5.0, 6.0], [7.0, 8.0]])
    slots = assert_inputs_unchanged(impl, buf, "add_batch", states, np.array([0, 1, 1, 0]),
                                    np.array([0.5, -0.5, 2.0, 3.0]),
                                    torch.tensor([[9.0, 9.5], [-1.0, 0.0], [2.0, 2.5], [6.0, 6.5]]),
                                    torch.tensor([True, False, True, False]))  # fmt: skip
    # from slot 2, rows 0..3 go to slots 2, 0, 1, 2: the surviving rows 1..3 sit in slots 0, 1, 2
    assert np.asarray(slots).tolist()[-3:] == [0, 1, 2]
    assert len(buf) == 3
    assert _stored_rows(impl, buf) == {(3.0, 4.0, 1, -0.5, -1.0, 0.0, 0.0), (5.0, 6.0, 1, 2.0, 2.0, 2.5, 1.0),
                                       (7.0, 8.0, 0, 3.0, 6.0, 6.5, 0.0)}  # fmt: skip


@pytest.mark.shape
def test_sample_draws_only_from_the_rng_passed(impl):
    """sample(rng=...) draws from that generator only: the same seed gives the same batch whatever the global
    python, numpy and torch generators hold, and they are left untouched."""
    buf = impl.ReplayBuffer(16)
    _fill(impl, buf, range(10))
    rewards = assert_draws_only_from(impl, _sample_with, buf, 32, kind="numpy")
    assert rewards.shape == (32,) and set(rewards.long().tolist()) <= set(range(10))


@pytest.mark.shape
@pytest.mark.points(0)
def test_bad_arguments_raise_value_error(impl):
    """capacity < 1, batch_size < 1, sampling an empty buffer and a wrong state shape raise ValueError."""
    with pytest.raises(ValueError, match="capacity"):
        impl.ReplayBuffer(0)
    with pytest.raises(ValueError, match="capacity"):
        impl.ReplayBuffer(2.5)
    buf = impl.ReplayBuffer(4)
    with pytest.raises(ValueError, match="empty"):
        buf.sample(1)
    buf.add(np.zeros(2), 0, 0.0, np.zeros(2), False)
    with pytest.raises(ValueError, match="batch_size"):
        buf.sample(0)
    with pytest.raises(ValueError, match="state"):
        buf.add(np.zeros(3), 0, 0.0, np.zeros(3), False)


@pytest.mark.shape
@pytest.mark.points(0)
def test_capacity_attribute(impl):
    """capacity is exposed and len starts at 0."""
    buf = impl.ReplayBuffer(7)
    assert buf.capacity == 7 and len(buf) == 0


def _sampled_devices(impl, buf, batch_size):
    """Probe: the device of every tensor of a sampled batch."""
    return [str(t.device) for t in buf.sample(batch_size)]


@pytest.mark.gpu
@pytest.mark.points(0)
@pytest.mark.shape
def test_samples_on_cuda(impl):
    """With device='cuda' every sampled tensor lives on the GPU."""
    buf = impl.ReplayBuffer(10, device="cuda")
    _fill(impl, buf, range(4))
    devices = impl.run(_sampled_devices, buf, 3)
    assert len(devices) == len(FIELDS) and all(torch.device(d).type == "cuda" for d in devices), devices


@pytest.mark.shape
def test_sampled_rows_are_drawn_independently(impl, seed):
    """Rows of a batch are independent draws (uniform, with replacement): over 2000 neighbouring pairs (rows 2k,
    2k + 1) of 4 stored ids, each of the 16 ordered pairs (i, j), i = j included, appears 70..180 times.

    Each pair count is Binomial(2000, 1/16) (mean 125, sd 10.8): it leaves [70, 180] with probability 6.7e-7
    (exact binomial tails), so a correct sampler fails with probability < 1.1e-5 (union bound over the 16 pairs),
    for any generator stream. A batch of consecutive slots from one random start, sorted indices, or shuffled
    passes over the stored slots (without replacement within a pass) have the right counts per id but miss pairs.
    """
    buf = impl.ReplayBuffer(8)
    _fill(impl, buf, range(4))  # ids 0..3 in slots 0..3, four empty slots
    ids = _sample(impl, buf, 4000, rng=np.random.default_rng(seed)).rewards.long()
    assert ids.shape == (4000,) and set(ids.tolist()) <= {0, 1, 2, 3}
    pairs = torch.bincount(4 * ids[0::2] + ids[1::2], minlength=16).reshape(4, 4)  # [i, j]: row 2k is i, 2k+1 j
    assert pairs.min() >= 70 and pairs.max() <= 180, (
        f"neighbouring rows (2k, 2k+1) hold the ordered id pairs with counts {pairs.tolist()} (expected 125 each): "
        "the rows of a batch must be drawn independently, each uniform over the stored slots, with replacement"
    )
