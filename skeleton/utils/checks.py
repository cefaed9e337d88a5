"""Argument checks shared by every component.

Each check raises ``ValueError`` whose message names the argument, the expected value and the actual
one, so that a wrong call teaches what to change: ``horizon must be a positive integer, got 0``.
"""

from __future__ import annotations

import numbers
from collections.abc import Collection
from typing import Any


def _is_int(value: Any) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _is_real(value: Any) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def check_positive_int(name: str, value: Any) -> int:
    """Return ``value`` as int if it is an integer >= 1, else raise ``ValueError`` naming ``name``."""
    if not _is_int(value) or value < 1:
        raise ValueError(f"{name} must be a positive integer (>= 1), got {value!r}")
    return int(value)


def check_nonnegative_int(name: str, value: Any) -> int:
    """Return ``value`` as int if it is an integer >= 0, else raise ``ValueError`` naming ``name``."""
    if not _is_int(value) or value < 0:
        raise ValueError(f"{name} must be a non-negative integer (>= 0), got {value!r}")
    return int(value)


def check_positive_float(name: str, value: Any) -> float:
    """Return ``value`` as float if it is a finite real > 0, else raise ``ValueError``."""
    if not _is_real(value) or not value > 0 or value == float("inf"):
        raise ValueError(f"{name} must be a finite number > 0, got {value!r}")
    return float(value)


def check_nonnegative_float(name: str, value: Any) -> float:
    """Return ``value`` as float if it is a finite real >= 0, else raise ``ValueError``."""
    if not _is_real(value) or not value >= 0 or value == float("inf"):
        raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")
    return float(value)


def check_in_range(
    name: str, value: Any, low: float, high: float, *, low_open: bool = False, high_open: bool = False
) -> float:
    """Return ``value`` as float if it lies in the interval, else raise ``ValueError``.

    ``check_in_range("gamma", g, 0, 1, high_open=True)`` accepts 0 <= g < 1.
    """
    left, right = ("(" if low_open else "["), (")" if high_open else "]")
    ok = _is_real(value) and (value > low if low_open else value >= low) and (
        value < high if high_open else value <= high
    )
    if not ok:
        raise ValueError(f"{name} must be in {left}{low}, {high}{right}, got {value!r}")
    return float(value)


def check_choice(name: str, value: Any, choices: Collection[Any]) -> Any:
    """Return ``value`` if it is one of ``choices``, else raise ``ValueError`` listing them."""
    if value not in choices:
        raise ValueError(f"{name} must be one of {sorted(map(repr, choices))}, got {value!r}")
    return value
