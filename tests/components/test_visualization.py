"""Tests of VisualizationUtils (given code): smoothing and figures with the expected artists."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from matplotlib.collections import PolyCollection

pytestmark = pytest.mark.component("VisualizationUtils")


def _axes_facts(ax) -> dict:
    """What an Axes shows: its lines' data, band and collection counts, title, legend, images, texts."""
    legend = ax.get_legend()
    return {
        "lines": [
            {"x": np.asarray(line.get_xdata(), dtype=float), "y": np.asarray(line.get_ydata(), dtype=float)}
            for line in ax.get_lines()
        ],
        "bands": sum(isinstance(c, PolyCollection) for c in ax.collections),
        "collections": len(ax.collections),
        "title": ax.get_title(),
        "legend": None if legend is None else [t.get_text() for t in legend.get_texts()],
        "images": [np.asarray(image.get_array(), dtype=float) for image in ax.images],
        "texts": len(ax.texts),
    }


def _figure_facts(impl, fig) -> dict:
    """In the worker: the classes of ``fig`` (its MRO, as qualified names) and the facts of each Axes."""
    return {
        "classes": [f"{c.__module__}.{c.__qualname__}" for c in type(fig).__mro__],
        "axes": [_axes_facts(ax) for ax in fig.axes],
    }


def _new_axes(impl):
    """In the worker: an Axes of a fresh Figure (the judge gets a handle)."""
    from matplotlib.figure import Figure

    return Figure().add_subplot(1, 1, 1)


def _figure_ids(impl, returned, ax):
    """In the worker: the ids of a returned object and of ``ax.figure``, and the facts of ``ax``."""
    return id(returned), id(ax.figure), _axes_facts(ax)


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
    facts = impl.run(_figure_facts, fig)
    assert "matplotlib.figure.Figure" in facts["classes"]
    (ax,) = facts["axes"]
    assert len(ax["lines"]) == 3
    assert ax["bands"] == 1
    assert ax["title"] == "Returns"
    assert ax["legend"] is not None and ax["legend"][1:] == ["q", "mpc"]
    assert len(ax["lines"][2]["x"]) == 40
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
    (ax,) = impl.run(_figure_facts, fig)["axes"]
    assert len(ax["lines"]) == 1 and ax["bands"] == 1
    assert ax["collections"] == 2  # band + scatter
    np.testing.assert_allclose(ax["lines"][0]["y"], np.sin(x))
    with pytest.raises(ValueError, match="same length"):
        impl.VisualizationUtils.plot_uncertainty_band(x, np.sin(x), np.ones(3))


@pytest.mark.shape
@pytest.mark.points(0)
def test_grid_values_and_given_axes(impl):
    """plot_grid_values shows an image (plus colour bar) and annotates each cell; ax= draws into a given Axes."""
    values = np.arange(12.0).reshape(3, 4)
    fig = impl.VisualizationUtils.plot_grid_values(values, title="V(s)")
    ax = impl.run(_figure_facts, fig)["axes"][0]
    assert len(ax["images"]) == 1 and ax["texts"] == 12
    np.testing.assert_array_equal(ax["images"][0], values)
    target = impl.run(_new_axes)
    out = impl.VisualizationUtils.plot_learning_curves({"a": [1, 2, 3]}, ax=target)
    out_id, target_figure_id, target_facts = impl.run(_figure_ids, out, target)
    assert out_id == target_figure_id and len(target_facts["lines"]) == 1
