"""Small torch helpers shared by every component: devices, tensor conversion, MLPs, target networks."""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
import torch.nn as nn


def resolve_device(device: str | torch.device | None) -> torch.device:
    """``torch.device`` from a string or device; ``None`` means CPU.

    Raises:
        ValueError: for a string torch cannot parse, naming ``device``.
    """
    if device is None:
        return torch.device("cpu")
    try:
        return torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise ValueError(f"device must be a torch device such as 'cpu' or 'cuda:0', got {device!r}") from exc


def as_tensor(x: Any, device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Any array-like (numpy, list, scalar, tensor) as a tensor of ``dtype`` on ``device``.

    Tensors are moved, not copied, when they already match.
    """
    if isinstance(x, torch.Tensor):
        return x.to(device=device, dtype=dtype)
    return torch.as_tensor(np.asarray(x), dtype=dtype, device=device)


def mlp(
    in_dim: int,
    hidden_dims: Sequence[int],
    out_dim: int,
    activation: type[nn.Module] = nn.ReLU,
    out_activation: type[nn.Module] | None = None,
) -> nn.Sequential:
    """A multilayer perceptron ``in_dim -> hidden_dims... -> out_dim``.

    Args:
        in_dim: input features.
        hidden_dims: width of each hidden layer (may be empty: a single linear layer).
        out_dim: output features.
        activation: module class applied after each hidden layer.
        out_activation: optional module class applied to the output.
    """
    layers: list[nn.Module] = []
    last = in_dim
    for width in hidden_dims:
        layers += [nn.Linear(last, width), activation()]
        last = width
    layers.append(nn.Linear(last, out_dim))
    if out_activation is not None:
        layers.append(out_activation())
    return nn.Sequential(*layers)


@torch.no_grad()
def soft_update(target: nn.Module, source: nn.Module, tau: float) -> None:
    """Polyak averaging ``θ' ← τ θ + (1 − τ) θ'`` of every parameter (τ = 1 copies)."""
    for t, s in zip(target.parameters(), source.parameters(), strict=True):
        t.mul_(1.0 - tau).add_(s, alpha=tau)


def seed_everything(seed: int) -> None:
    """Seed ``random``, ``numpy`` and ``torch`` (all devices)."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
