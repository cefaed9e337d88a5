"""Tests of VisualizationUtils (given code): smoothing and figures with the expected artists."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from matplotlib.collections import PolyCollection
from matplotlib.figure import Figure

pytestmark = pytest.mark.component("VisualizationUtils")


def _bands(ax) -> list:
    return [c for c in ax.collections if isinstance(c, PolyCollection)]


@pytest.mark.shape
@pytest.mark.points(0)
def test_smooth_moving_average_and_ema(impl):
    """Trailing moving average (shorter window at the start) and EMA with factor 2/(window+1)."""
    smooth = impl.VisualizationUtils.smooth
    np.testing.assert_allclose(smooth([1, 2, 3, 4, 5], window=2), [1, 1.5, 2.5, 3.5, 4.5])
    np.testing.assert_allclose(smooth([0, 3, 6, 9], window=3), [0, 1.5, 3, 6])
    np.testing.assert_allclose(smooth([1, 2, 3], window=1), [1, 2, 3])
    np.testing.assert_allclose(smooth([0.0, 3.0, 3.0], window=2, method="ema"), [0, 2, 8 / 3])
    np.testing.assert_allclose(smooth(np.array([[1, 3], [2, 2]]), window=2), [[1, 2], [2, 2]])
    with pytest.raises(ValueError, match="window"):
        smooth([1, 2], window=0)
    with pytest.raises(ValueError, match="method"):
        smooth([1, 2], method="median")


@pytest.mark.shape
@pytest.mark.points(0)
def test_learning_curves_lines_and_bands(impl):
    """One line per curve; a (seeds, T) curve adds a mean line and a ± std band; labels and title are set."""
    rng = np.random.default_rng(0)
    fig = impl.VisualizationUtils.plot_learning_curves(
        {"dyna": rng.normal(size=(3, 50)).cumsum(axis=1), "q": list(range(50)), "mpc": torch.arange(40.0)},
        smoothing=5,
        title="Returns",
    )
    assert isinstance(fig, Figure)
    (ax,) = fig.axes
    assert len(ax.get_lines()) == 3
    assert len(_bands(ax)) == 1
    assert ax.get_title() == "Returns"
    assert [t.get_text() for t in ax.get_legend().get_texts()][1:] == ["q", "mpc"]
    assert len(ax.get_lines()[2].get_xdata()) == 40
    with pytest.raises(ValueError, match="curves"):
        impl.VisualizationUtils.plot_learning_curves({})


@pytest.mark.shape
@pytest.mark.points(0)
def test_uncertainty_band(impl):
    """plot_uncertainty_band draws the mean, a band and optional data points."""
    x = np.linspace(-1, 1, 30)
    fig = impl.VisualizationUtils.plot_uncertainty_band(
        x, np.sin(x), 0.1 + x**2, observations=(x[::5], np.sin(x[::5])), title="ensemble"
    )
    (ax,) = fig.axes
    assert len(ax.get_lines()) == 1 and len(_bands(ax)) == 1
    assert len(ax.collections) == 2  # band + scatter
    np.testing.assert_allclose(ax.get_lines()[0].get_ydata(), np.sin(x))
    with pytest.raises(ValueError, match="same length"):
        impl.VisualizationUtils.plot_uncertainty_band(x, np.sin(x), np.ones(3))


@pytest.mark.shape
@pytest.mark.points(0)
def test_grid_values_and_given_axes(impl):
    """plot_grid_values shows an image (plus colour bar) and annotates each cell; ax= draws into a given Axes."""
    values = np.arange(12.0).reshape(3, 4)
    fig = impl.VisualizationUtils.plot_grid_values(values, title="V(s)")
    ax = fig.axes[0]
    assert len(ax.images) == 1 and len(ax.texts) == 12
    np.testing.assert_array_equal(ax.images[0].get_array(), values)
    target = Figure().add_subplot(1, 1, 1)
    out = impl.VisualizationUtils.plot_learning_curves({"a": [1, 2, 3]}, ax=target)
    assert out is target.figure and len(target.get_lines()) == 1
