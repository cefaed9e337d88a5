"""The shared contract checks of grader.judge.contracts: they pass on a well-behaved function and fail, naming the
cause, on each mistake they exist for (an input changed in place; a draw from a global generator)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from grader.judge.contracts import assert_draws_only_from, assert_inputs_unchanged
from grader.judge.remote import LocalSession, ProcessSession, RemoteImplementation

pytestmark = pytest.mark.timeout(120)

SOURCE = '''
import numpy as np
import torch

def pure(x, batch):
    return x * 2 + batch["r"].sum()

def scales_in_place(x, batch):
    batch["r"] *= 0.5
    return x

def clamps_in_place(x, batch):
    return x.clamp_(0.0, 1.0)

def noise(shape, generator):
    return torch.randn(shape, generator=generator)

def noise_half_global(shape, generator):
    return torch.cat([torch.randn(shape, generator=generator), torch.randn(shape)])

def choice(n, rng):
    return rng.integers(0, 100, n)

def choice_global(n, rng):
    return np.random.randint(0, 100, n)
'''


@pytest.fixture(params=["process", "local"])
def impl(request, tmp_path: Path):
    root = tmp_path / "root"
    for name in ("model_based_rl", "hierarchical_rl", "planning", "environments", "utils"):
        (root / name).mkdir(parents=True, exist_ok=True)
        (root / name / "__init__.py").write_text("")
    (root / "model_based_rl" / "algorithms.py").write_text(SOURCE)
    session = ProcessSession(root) if request.param == "process" else LocalSession(root)
    yield RemoteImplementation(session, root)
    session.close()


def _fn(impl, name):
    return getattr(impl.module("model_based_rl.algorithms"), name)


def test_a_pure_call_passes_and_nan_equals_nan(impl) -> None:
    """A call that only reads its inputs (a NaN among them) passes."""
    x = torch.tensor([1.0, float("nan")])
    assert_inputs_unchanged(impl, _fn(impl, "pure"), None, x, {"r": np.array([1.0, 2.0])})


@pytest.mark.parametrize(("name", "where"), [("scales_in_place", "argument 1['r']"), ("clamps_in_place", "argument 0")])
def test_an_input_changed_in_place_is_named(impl, name: str, where: str) -> None:
    """A nested array scaled in place, a tensor clamped in place: the assertion names the argument."""
    x = torch.tensor([-1.0, 0.5, 2.0])
    with pytest.raises(AssertionError, match=rf"changed its {__import__('re').escape(where)} in place"):
        assert_inputs_unchanged(impl, _fn(impl, name), None, x, {"r": np.array([1.0, 2.0])})


def test_draws_from_the_given_generators_pass(impl) -> None:
    """torch and numpy generators: the same seed gives the same output under any global state."""
    out = assert_draws_only_from(impl, lambda impl, f, g: f((3,), g), _fn(impl, "noise"), kind="torch")
    torch.testing.assert_close(out, torch.randn(3, generator=torch.Generator().manual_seed(0)))
    assert_draws_only_from(impl, lambda impl, f, g: f(4, g), _fn(impl, "choice"), kind="numpy")


@pytest.mark.parametrize(("name", "kind", "engine"), [("noise_half_global", "torch", "torch"),
                                                      ("choice_global", "numpy", "numpy")])
def test_a_draw_from_a_global_generator_is_named(impl, name: str, kind: str, engine: str) -> None:
    """Half the noise from torch.randn without the generator, or numpy's legacy global: named, and failed."""
    with pytest.raises(AssertionError, match=rf"global generator\(s\) of {engine}"):
        assert_draws_only_from(impl, lambda impl, f, g: f(2, g) if kind == "numpy" else f((2,), g),
                               _fn(impl, name), kind=kind)  # fmt: skip


def test_noise_not_shared_passes_fresh_draws_and_names_a_broadcast_axis() -> None:
    """Fresh draws pass; one draw broadcast over the rows is named by its axis."""
    from grader.judge.contracts import assert_noise_not_shared

    fresh = torch.randn(4, 3, generator=torch.Generator().manual_seed(0))
    assert_noise_not_shared(fresh, {0: "rows", 1: "outputs"})
    with pytest.raises(AssertionError, match=r"rows 0 and 1 got the same noise.*diagonal"):
        assert_noise_not_shared(fresh[:1].expand(4, 3), {0: "rows", 1: "outputs"}, "diagonal")
