"""Plotting helpers returning matplotlib Figures. Given code (no student task).

Every function builds a :class:`matplotlib.figure.Figure` directly (no ``pyplot`` state), so it works
headless (no display, no backend switch), does not leak figures across calls, and still shows inline in
Jupyter when returned from a cell. Save with ``fig.savefig(path)``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from utils.checks import check_choice, check_positive_int

if TYPE_CHECKING:  # matplotlib is imported by the first plot, not by ``import utils`` (it costs ~1 s)
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

__all__ = ["VisualizationUtils"]


def _as_numpy(x: Any) -> np.ndarray:
    if hasattr(x, "detach"):
        x = x.detach().cpu().numpy()
    return np.asarray(x, dtype=np.float64)


def _new_axes(ax: Axes | None, figsize: tuple[float, float]) -> tuple[Figure, Axes]:
    if ax is not None:
        return ax.figure, ax
    from matplotlib.figure import Figure

    fig = Figure(figsize=figsize)
    return fig, fig.add_subplot(1, 1, 1)


def _finish(fig: Any, ax: Any, xlabel: str, ylabel: str, title: str | None) -> Any:
    """Label, grid and legend an axes; return its figure."""
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if title:
        ax.set_title(title)
    ax.grid(True, alpha=0.3)
    ax.legend()
    return fig


class VisualizationUtils:
    """Static plotting helpers: smoothing, learning curves, uncertainty bands, grid values."""

    @staticmethod
    def smooth(values: Sequence[float] | np.ndarray, window: int = 10, method: str = "moving") -> np.ndarray:
        """Smooth a 1-D series (or each row of a 2-D array) without changing its length.

        Args:
            values: (T,) or (R, T) numbers.
            window: moving-average width (trailing, shorter at the start); for ``"ema"`` the span, i.e.
                smoothing factor 2 / (window + 1). ``window=1`` returns the values unchanged.
            method: ``"moving"`` (trailing moving average) or ``"ema"`` (exponential moving average).

        Returns:
            float64 array of the same shape as ``values``.
        """
        window = check_positive_int("window", window)
        check_choice("method", method, ("moving", "ema"))
        arr = _as_numpy(values)
        if arr.ndim not in (1, 2):
            raise ValueError(f"values must be 1-D (T,) or 2-D (runs, T), got shape {arr.shape}")
        if arr.ndim == 2:
            return np.stack([VisualizationUtils.smooth(row, window, method) for row in arr]) if len(arr) else arr
        if window == 1 or arr.size == 0:
            return arr.copy()
        if method == "moving":
            csum = np.cumsum(np.insert(arr, 0, 0.0))
            idx = np.arange(1, arr.size + 1)
            lo = np.maximum(idx - window, 0)
            return (csum[idx] - csum[lo]) / (idx - lo)
        a = 2.0 / (window + 1.0)
        out = np.empty_like(arr)
        out[0] = arr[0]
        for t in range(1, arr.size):
            out[t] = a * arr[t] + (1.0 - a) * out[t - 1]
        return out

    @staticmethod
    def plot_learning_curves(
        curves: Mapping[str, Any],
        smoothing: int = 1,
        title: str | None = None,
        xlabel: str = "Episode",
        ylabel: str = "Return",
        x: Any = None,
        ax: Axes | None = None,
        figsize: tuple[float, float] = (7.0, 4.0),
    ) -> Figure:
        """One line per entry; a (seeds, T) entry is drawn as its mean with a ± std band.

        Args:
            curves: name -> (T,) values, or (R, T) values of R runs (seeds); lists of lists work.
            smoothing: moving-average window applied to each run before averaging (1: none).
            title, xlabel, ylabel: labels.
            x: optional (T,) shared x values (default 0..T-1 per curve).
            ax: draw into this Axes instead of a new Figure.
            figsize: size of a new Figure.

        Returns:
            The Figure (one line per curve, one band per multi-run curve, a legend).
        """
        if not isinstance(curves, Mapping) or not curves:
            raise ValueError("curves must be a non-empty dict name -> values (T,) or (runs, T)")
        fig, ax = _new_axes(ax, figsize)
        for name, values in curves.items():
            arr = _as_numpy(values)
            if arr.ndim not in (1, 2) or arr.size == 0:
                raise ValueError(f"curves[{name!r}] must be non-empty (T,) or (runs, T), got shape {arr.shape}")
            arr = VisualizationUtils.smooth(arr, smoothing)
            xs = np.arange(arr.shape[-1]) if x is None else _as_numpy(x)[: arr.shape[-1]]
            if arr.ndim == 2:
                mean, std = arr.mean(axis=0), arr.std(axis=0)
                (line,) = ax.plot(xs, mean, label=f"{name} (n={arr.shape[0]})")
                ax.fill_between(xs, mean - std, mean + std, color=line.get_color(), alpha=0.2)
            else:
                ax.plot(xs, arr, label=name)
        return _finish(fig, ax, xlabel, ylabel, title)

    @staticmethod
    def plot_uncertainty_band(
        x: Any,
        mean: Any,
        std: Any,
        label: str = "mean",
        n_std: float = 2.0,
        observations: tuple[Any, Any] | None = None,
        title: str | None = None,
        xlabel: str = "x",
        ylabel: str = "y",
        ax: Axes | None = None,
        figsize: tuple[float, float] = (7.0, 4.0),
    ) -> Figure:
        """A mean line with a ``mean ± n_std · std`` band (e.g. an ensemble's epistemic uncertainty).

        Args:
            x: (T,) positions; mean: (T,); std: (T,) >= 0.
            label: legend label of the mean.
            n_std: half-width of the band in standard deviations.
            observations: optional ``(xs, ys)`` data points drawn as dots.
            title, xlabel, ylabel, ax, figsize: as in :meth:`plot_learning_curves`.
        """
        xs, mu, sd = _as_numpy(x).reshape(-1), _as_numpy(mean).reshape(-1), _as_numpy(std).reshape(-1)
        if not (xs.shape == mu.shape == sd.shape):
            raise ValueError(f"x, mean and std must have the same length, got {xs.shape}, {mu.shape}, {sd.shape}")
        if np.any(sd < 0):
            raise ValueError("std must be >= 0 everywhere")
        fig, ax = _new_axes(ax, figsize)
        (line,) = ax.plot(xs, mu, label=label)
        ax.fill_between(xs, mu - n_std * sd, mu + n_std * sd, color=line.get_color(), alpha=0.25,
                        label=f"± {n_std:g} std")
        if observations is not None:
            ox, oy = (_as_numpy(o).reshape(-1) for o in observations)
            ax.scatter(ox, oy, s=12, color="k", label="data", zorder=3)
        return _finish(fig, ax, xlabel, ylabel, title)

    @staticmethod
    def plot_grid_values(
        values: Any,
        title: str | None = None,
        annotate: bool = True,
        cmap: str = "viridis",
        ax: Axes | None = None,
        figsize: tuple[float, float] = (5.0, 4.5),
    ) -> Figure:
        """A heat map of a 2-D array (e.g. state values V(s) of a grid world), optionally annotated.

        Args:
            values: (H, W) numbers; row 0 is drawn at the top.
            title: axes title; annotate: write each value in its cell; cmap: colour map name.
        """
        grid = _as_numpy(values)
        if grid.ndim != 2:
            raise ValueError(f"values must be a 2-D grid (H, W), got shape {grid.shape}")
        fig, ax = _new_axes(ax, figsize)
        image = ax.imshow(grid, cmap=cmap, origin="upper")
        fig.colorbar(image, ax=ax)
        if annotate and grid.size <= 400:
            finite = grid[np.isfinite(grid)]
            mid = (finite.max() + finite.min()) / 2 if finite.size else 0.0
            for (r, c), v in np.ndenumerate(grid):
                ax.text(c, r, f"{v:.2f}", ha="center", va="center", fontsize=8,
                        color="white" if v < mid else "black")
        ax.set_xticks(range(grid.shape[1]))
        ax.set_yticks(range(grid.shape[0]))
        if title:
            ax.set_title(title)
        return fig
