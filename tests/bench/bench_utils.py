"""Benchmarks of the replay buffers: PER sample / update throughput at capacity 1e5 (Schaul et al. 2016 B.2.1).

Figures are transitions per second (higher is better) and microseconds per call; never asserted.
"""

from __future__ import annotations

import numpy as np
from _timing import time_call

CAPACITY = 100_000
OBS_DIM = 8
BATCH = 256


def _filled(buffer):
    n = buffer.capacity
    rng = np.random.default_rng(0)
    states = rng.normal(size=(n, OBS_DIM)).astype(np.float32)
    buffer.add_batch(states, rng.integers(0, 4, n), rng.normal(size=n), states, np.zeros(n))
    return buffer


def bench_prioritized_replay(impl) -> dict[str, float | str]:
    """PER at capacity 1e5: sample(256), update_priorities(256), add() and a SumTree.find of 256 prefixes."""
    buf = _filled(impl.PrioritizedReplayBuffer(CAPACITY))
    rng = np.random.default_rng(1)
    buf.update_priorities(np.arange(CAPACITY), rng.exponential(size=CAPACITY))
    batch = buf.sample(BATCH, rng=rng)
    td = np.abs(rng.normal(size=BATCH))
    t_sample = time_call(lambda: buf.sample(BATCH, rng=rng), repeat=50)
    t_update = time_call(lambda: buf.update_priorities(batch.indices, td), repeat=50)
    state = np.zeros(OBS_DIM, dtype=np.float32)
    t_add = time_call(lambda: buf.add(state, 1, 0.0, state, False), repeat=200)
    prefixes = rng.random(BATCH) * buf.tree.total
    t_find = time_call(lambda: buf.tree.find(prefixes), repeat=50)
    return {
        "capacity / batch": f"{CAPACITY} / {BATCH}",
        "sample: us per batch": t_sample * 1e6,
        "sample: transitions / s": BATCH / t_sample,
        "update_priorities: us per batch": t_update * 1e6,
        "update_priorities: priorities / s": BATCH / t_update,
        "add (one transition): us": t_add * 1e6,
        "SumTree.find (256 prefixes): us": t_find * 1e6,
    }


def bench_uniform_replay(impl) -> dict[str, float | str]:
    """Uniform ReplayBuffer at capacity 1e5: sample(256) and add() (the baseline PER is compared with)."""
    buf = _filled(impl.ReplayBuffer(CAPACITY))
    rng = np.random.default_rng(1)
    t_sample = time_call(lambda: buf.sample(BATCH, rng=rng), repeat=50)
    state = np.zeros(OBS_DIM, dtype=np.float32)
    t_add = time_call(lambda: buf.add(state, 1, 0.0, state, False), repeat=200)
    return {
        "sample: us per batch": t_sample * 1e6,
        "sample: transitions / s": BATCH / t_sample,
        "add (one transition): us": t_add * 1e6,
    }
