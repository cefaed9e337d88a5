"""Contracts every graded component's tests check the same way (docs/CONVENTIONS.md §3, "What a component's
tests cover"): a call leaves its inputs unchanged, a method given a generator draws only from it, and noise
documented as independent is not shared along any axis.

Both are judge-side assertions over observations a probe takes in the worker (the probes are in this module,
which travels to the worker by value)::

    result_free = assert_inputs_unchanged(impl, model, "loss", states, actions, next_states, rewards)
    assert_draws_only_from(impl, lambda impl, ens, g: ens.sample(s, a, generator=g), ens, kind="torch")

Snapshots compare exactly (bit for bit, NaN equal to NaN): an input changed in place shows however small the
change. The probes return the values they saw, never a verdict (CONVENTIONS §5).
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Callable
from typing import Any

import numpy as np


# ------------------------------------------------------------------------------------- inputs stay unchanged
def _leaves(value: Any, path: str, out: list) -> None:
    """(path, copy) of every tensor and array in ``value`` (nested lists, tuples, dicts, namedtuples)."""
    import torch

    if isinstance(value, torch.Tensor):
        out.append((path, value.detach().cpu().clone()))
    elif isinstance(value, np.ndarray):
        out.append((path, value.copy()))
    elif isinstance(value, dict):
        for key, item in value.items():
            _leaves(item, f"{path}[{key!r}]", out)
    elif isinstance(value, (list, tuple)):
        for i, item in enumerate(value):
            _leaves(item, f"{path}[{i}]", out)


def _snapshots_around_call(impl, target, method: str | None, args: tuple, kwargs: dict):
    """Probe: copies of every tensor/array argument before and after ``target.method(*args, **kwargs)``
    (``target(*args, **kwargs)`` when ``method`` is None), as two lists of (argument path, value)."""
    names = [f"argument {i}" for i in range(len(args))] + [f"argument {k!r}" for k in kwargs]
    values = [*args, *kwargs.values()]
    before: list = []
    for name, value in zip(names, values, strict=True):
        _leaves(value, name, before)
    fn = target if method is None else getattr(target, method)
    result = fn(*args, **kwargs)
    after: list = []
    for name, value in zip(names, values, strict=True):
        _leaves(value, name, after)
    return before, after, result


def _same(a: Any, b: Any) -> bool:
    import torch

    if isinstance(a, torch.Tensor):
        return a.shape == b.shape and a.dtype == b.dtype and bool(torch.equal(torch.nan_to_num(a), torch.nan_to_num(b))
                                                                   and torch.equal(a.isnan(), b.isnan()))  # fmt: skip
    return a.shape == b.shape and a.dtype == b.dtype and bool(np.array_equal(a, b, equal_nan=a.dtype.kind in "fc"))


def assert_inputs_unchanged(impl, target, method: str | None, *args: Any, **kwargs: Any) -> Any:
    """Call ``target.method(*args, **kwargs)`` in the worker and assert that no tensor or array among its
    arguments (nested ones included) changed, naming the first that did: a caller keeps its bootstrap values,
    batches and observations after handing them over. ``method`` None calls ``target`` itself (a function of
    ``impl.module(...)``).

    Returns the call's result (data, or a handle): a test that gives points should also check it, since a call
    that does nothing at all leaves its inputs unchanged too (the hostile suite's ``liar`` earned such a point)."""
    __tracebackhide__ = True
    before, after, result = impl.run(_snapshots_around_call, target, method, args, kwargs)
    label = method or getattr(target, "_name", "the function")
    assert len(before) == len(after), f"{label}: the arguments' tensors and arrays changed in number"
    for (path, old), (_, new) in zip(before, after, strict=True):
        assert _same(old, new), (
            f"{label} changed its {path} in place (shape {tuple(old.shape)}): before {_show(old)}, after "
            f"{_show(new)}. The caller still holds that object: work on a copy (x = x.clone(), x = x.copy()) or "
            "out of place (x = x + 1, not x += 1)."
        )
    return result


def _show(x: Any) -> str:
    flat = np.asarray(x.numpy() if hasattr(x, "numpy") else x).reshape(-1)
    return np.array2string(flat[:6], precision=4) + (" ..." if flat.size > 6 else "")


# ------------------------------------------------------------------------- randomness from the generator only
def _global_states() -> dict[str, str]:
    """Digests of the global generators of python's random, numpy and torch (CPU)."""
    import torch

    np_state = np.random.get_state()
    return {
        "random": hashlib.sha256(repr(random.getstate()).encode()).hexdigest()[:16],
        "numpy": hashlib.sha256(np_state[1].tobytes() + repr(np_state[2:]).encode()).hexdigest()[:16],
        "torch": hashlib.sha256(torch.get_rng_state().numpy().tobytes()).hexdigest()[:16],
    }


def _seed_globals(seed: int) -> None:
    import torch

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def _calls_under_global_seeds(impl, call: Callable, kind: str, seed: int, global_seeds: tuple[int, ...],
                              args: tuple):  # fmt: skip
    """Probe: for each global seed, seed python's, numpy's and torch's global generators with it, make a fresh
    generator of ``kind`` ("torch" or "numpy") seeded with ``seed``, and run ``call(impl, *args, generator)``;
    the output and the global states' digests before and after, per global seed."""
    import torch

    runs = []
    for global_seed in global_seeds:
        _seed_globals(global_seed)
        generator = torch.Generator().manual_seed(seed) if kind == "torch" else np.random.default_rng(seed)
        before = _global_states()
        output = call(impl, *args, generator)
        runs.append((output, before, _global_states()))
    return runs


def assert_draws_only_from(impl, call: Callable, *args: Any, kind: str, seed: int = 0,
                           global_seeds: tuple[int, ...] = (1, 2)) -> Any:  # fmt: skip
    """Assert that ``call(impl, *args, generator)`` (run in the worker; ``args`` are handles or data) draws its
    randomness only from the generator it is given: with the same generator seed it returns the same output
    whatever state the global python, numpy and torch generators are in, and it leaves those global states
    untouched. Returns the output (of the first run), for further checks.

    ``kind`` is the generator the method takes: "torch" (``torch.Generator``) or "numpy"
    (``np.random.Generator``). ``call`` must not construct objects whose initialisation uses the global
    generators (network weights): make them first and pass their handles in ``args``; it must leave them as
    it found them (a sampling method, not an update)."""
    __tracebackhide__ = True
    runs = impl.run(_calls_under_global_seeds, call, kind, seed, global_seeds, args)
    first = runs[0][0]
    for (output, before, after), global_seed in zip(runs, global_seeds, strict=True):
        moved = [name for name in before if before[name] != after[name]]
        assert not moved, (
            f"with a {kind} generator passed in, the call still drew from the global generator(s) of "
            f"{', '.join(moved)}: every draw must come from the generator the caller passed (so that the same "
            "generator state gives the same result)"
        )
        _assert_same_output(first, output, global_seeds[0], global_seed)
    return first


def _assert_same_output(a: Any, b: Any, seed_a: int, seed_b: int, path: str = "output") -> None:
    __tracebackhide__ = True
    import torch

    if isinstance(a, (torch.Tensor, np.ndarray)):
        same = _same(torch.as_tensor(a), torch.as_tensor(b)) if isinstance(a, torch.Tensor) else _same(a, np.asarray(b))
        assert same, (f"the same generator seed gave a different {path} when the global generators were seeded "
                      f"{seed_a} and {seed_b}: {_show(a)} vs {_show(b)}; some draw came from a global generator")  # fmt: skip
    elif isinstance(a, dict):
        for key in a:
            _assert_same_output(a[key], b[key], seed_a, seed_b, f"{path}[{key!r}]")
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), f"{path}: {len(a)} vs {len(b)} items under global seeds {seed_a} and {seed_b}"
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            _assert_same_output(x, y, seed_a, seed_b, f"{path}[{i}]")
    else:
        assert a == b, f"{path}: {a!r} vs {b!r} under global seeds {seed_a} and {seed_b}"


# ------------------------------------------------------------------------------------ independent noise
def assert_noise_not_shared(eps: Any, axes: dict[int, str], why: str = "", atol: float = 1e-3) -> None:
    """Assert that standardised noise ``eps`` (a tensor, ``(x − mean) / std`` of a sample) draws afresh along
    every axis of ``axes`` (``{dim: "rows"}``): no two slices along such a dim are equal (within ``atol``),
    which is what one draw broadcast over that dim would give. A correct sampler fails this only when two
    continuous draws agree to ``atol``, which is negligible. ``why`` ends the message (what the docstring says)."""
    __tracebackhide__ = True
    import torch

    for dim, name in axes.items():
        for j in range(eps.shape[dim]):
            for k in range(j):
                a, b = eps.select(dim, k), eps.select(dim, j)
                assert not torch.allclose(a, b, atol=atol), (
                    f"{name} {k} and {j} got the same noise ({b.reshape(-1)[:6].tolist()}){': ' + why if why else ''}"
                )
