"""Running mean and variance of a stream, for observation / reward normalisation.

References:
    Welford, B. P. (1962). Note on a method for calculating corrected sums of squares and products.
    Technometrics 4(3). (one-pass, numerically stable update)
    Chan, T. F., Golub, G. H., LeVeque, R. J. (1979). Updating formulae and a pairwise algorithm for
    computing sample variances. Stanford CS report STAN-CS-79-773. Eq. (2.1b) for merging the
    statistics of two sets A and B:
        n = n_A + n_B,   δ = mean_B − mean_A,
        mean = mean_A + δ · n_B / n,
        M2 = M2_A + M2_B + δ² · n_A · n_B / n,
    where M2 = Σ (x − mean)² is the sum of squared deviations. Welford's update is the case n_B = 1.

A batch update computes the batch's own (n, mean, M2) with numpy and merges it (Chan); ``merge`` joins
two RunningStats, e.g. from parallel workers. Statistics are kept in float64 numpy arrays of ``shape``.

Documented choices:
    * ``var`` is the population variance M2 / n (``numpy.var`` with ``ddof=0``).
    * Before any data (n = 0) the statistics are mean 0 and var 1, so ``normalize`` is (almost) the
      identity until the first update (as ``RunningMeanStd`` of OpenAI baselines, without its fake count).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from utils.checks import check_positive_float

__all__ = ["RunningStats", "chan_merge"]


def chan_merge(
    count_a: float, mean_a: np.ndarray, m2_a: np.ndarray, count_b: float, mean_b: np.ndarray, m2_b: np.ndarray
) -> tuple[float, np.ndarray, np.ndarray]:
    """Merge the moments of two disjoint sets (Chan, Golub & LeVeque 1979, Eq. 2.1b).

    Args:
        count_a: n_A >= 0, number of samples of set A.
        mean_a: (*shape) float64 mean of A.
        m2_a: (*shape) float64 sum of squared deviations of A from its mean.
        count_b, mean_b, m2_b: the same for set B.

    Returns:
        ``(n, mean, M2)`` of the union: n float, mean and M2 (*shape) float64. If both sets are empty,
        returns ``(0, mean_a, m2_a)``.
    """
    # TODO(student): n = nA + nB, d = meanB - meanA, mean = meanA + d*nB/n, M2 = M2A + M2B + d^2*nA*nB/n (Chan et al. 1979).
    raise NotImplementedError("chan_merge: n = nA + nB, d = meanB - meanA, mean = meanA + d*nB/n, M2 = M2A + M2B + d^2*nA*nB/n (Chan et al. 1979).")


class RunningStats:
    """Running mean / variance / std over a stream of arrays of a fixed ``shape``.

    Args:
        shape: shape of one sample, e.g. ``()`` for rewards or ``(obs_dim,)`` for observations.
        eps: added to the variance in ``normalize`` / ``denormalize`` so that a constant feature does not
            divide by zero.

    Example:
        >>> rs = RunningStats(shape=(3,))
        >>> rs.update(np.random.randn(100, 3))      # (N, 3) batch; a single (3,) sample works too
        >>> z = rs.normalize(obs)                   # numpy in -> numpy out, tensor in -> tensor out
    """

    def __init__(self, shape: tuple[int, ...] | int = (), eps: float = 1e-8) -> None:
        if isinstance(shape, int) and not isinstance(shape, bool):
            shape = (shape,)
        try:
            shape = tuple(int(d) for d in shape)
        except TypeError as exc:
            raise ValueError(f"shape must be a tuple of non-negative ints, got {shape!r}") from exc
        if any(d < 0 for d in shape):
            raise ValueError(f"shape must be a tuple of non-negative ints, got {shape!r}")
        self.shape: tuple[int, ...] = shape
        self.eps = check_positive_float("eps", eps)
        self._count = 0.0
        self._mean = np.zeros(shape, dtype=np.float64)
        self._m2 = np.zeros(shape, dtype=np.float64)

    # ------------------------------------------------------------------ statistics
    @property
    def count(self) -> int:
        """Number of samples seen."""
        return int(self._count)

    @property
    def mean(self) -> np.ndarray:
        """(*shape) float64 running mean (0 before any data)."""
        return self._mean.copy()

    @property
    def var(self) -> np.ndarray:
        """(*shape) float64 population variance M2 / n (1 before any data)."""
        if self._count == 0:
            return np.ones(self.shape, dtype=np.float64)
        return self._m2 / self._count

    @property
    def std(self) -> np.ndarray:
        """(*shape) float64 standard deviation sqrt(var)."""
        return np.sqrt(self.var)

    # ------------------------------------------------------------------ updates
    def _as_batch(self, batch: Any) -> np.ndarray:
        if isinstance(batch, torch.Tensor):
            batch = batch.detach().cpu().numpy()
        arr = np.asarray(batch, dtype=np.float64)
        if arr.shape == self.shape:  # a single sample
            arr = arr[None]
        if arr.shape[1:] != self.shape:
            raise ValueError(
                f"batch must have shape (N, *{self.shape}) or {self.shape} (one sample), got {arr.shape}; "
                f"create RunningStats(shape=...) with the shape of one sample"
            )
        return arr

    def update(self, batch: Any) -> None:
        """Add a batch ``(N, *shape)`` (or one sample of ``shape``); numpy, list or torch input.

        The batch's own moments are computed with numpy and merged with :func:`chan_merge`. Samples are not
        filtered: a NaN or ``±inf`` in one feature makes that feature's mean non-finite and its var NaN from
        then on, while every other feature keeps its exact moments (features never mix).
        """
        arr = self._as_batch(batch)
        n = arr.shape[0]
        if n == 0:
            return
        # TODO(student): the batch's own moments: mean over axis 0 and M2 = sum over axis 0 of (x - batch_mean)^2.
        raise NotImplementedError("RunningStats.update: the batch's own moments: mean over axis 0 and M2 = sum over axis 0 of (x - batch_mean)^2.")
        self._count, self._mean, self._m2 = chan_merge(self._count, self._mean, self._m2, n, batch_mean, batch_m2)

    def merge(self, other: RunningStats) -> RunningStats:
        """Absorb the statistics of ``other`` (same shape) in place; returns ``self``.

        ``a.merge(b)`` gives the statistics of the concatenation of both streams (Chan et al. 1979).
        """
        if not isinstance(other, RunningStats):
            raise ValueError(f"other must be a RunningStats, got {type(other).__name__}")
        if other.shape != self.shape:
            raise ValueError(f"other must have shape {self.shape}, got {other.shape}")
        self._count, self._mean, self._m2 = chan_merge(
            self._count, self._mean, self._m2, other._count, other._mean, other._m2
        )
        return self

    def copy(self) -> RunningStats:
        """An independent copy."""
        new = RunningStats(self.shape, self.eps)
        new._count, new._mean, new._m2 = self._count, self._mean.copy(), self._m2.copy()
        return new

    def reset(self) -> None:
        """Forget every sample."""
        self._count = 0.0
        self._mean = np.zeros(self.shape, dtype=np.float64)
        self._m2 = np.zeros(self.shape, dtype=np.float64)

    # ------------------------------------------------------------------ transforms
    def _stats_like(self, x: Any) -> tuple[Any, Any, Any]:
        """(x, mean, std) as tensors matching x, or as numpy float arrays."""
        std = np.sqrt(self.var + self.eps)
        if isinstance(x, torch.Tensor):
            dtype = x.dtype if x.is_floating_point() else torch.float32
            as_t = lambda a: torch.as_tensor(a, dtype=dtype, device=x.device)
            return x.to(dtype), as_t(self._mean), as_t(std)
        arr = np.asarray(x)
        dtype = arr.dtype if np.issubdtype(arr.dtype, np.floating) else np.float64
        return arr.astype(dtype, copy=False), self._mean.astype(dtype), std.astype(dtype)

    def normalize(self, x: Any) -> Any:
        """Standardise: (x − mean) / sqrt(var + eps); same type, device and float dtype as ``x``."""
        x, mean, std = self._stats_like(x)
        return (x - mean) / std

    def denormalize(self, x: Any) -> Any:
        """Inverse of :meth:`normalize`: x · sqrt(var + eps) + mean."""
        x, mean, std = self._stats_like(x)
        return x * std + mean

    def state_dict(self) -> dict[str, Any]:
        """Serialisable statistics (count, mean, M2 as lists)."""
        return {"count": self._count, "mean": self._mean.tolist(), "m2": self._m2.tolist(), "shape": list(self.shape)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore statistics saved by :meth:`state_dict`."""
        self._count = float(state["count"])
        self._mean = np.asarray(state["mean"], dtype=np.float64).reshape(self.shape)
        self._m2 = np.asarray(state["m2"], dtype=np.float64).reshape(self.shape)

    def __repr__(self) -> str:
        return f"RunningStats(shape={self.shape}, count={self.count})"
