"""Gradient-noise figures: built from a small real measurement, never via pyplot."""

from __future__ import annotations

from pathlib import Path

import pytest
import xarray as xr
from matplotlib.figure import Figure

from tests.conftest import learnable_data, tiny_mlp
from walknoise.errors import WalknoiseError
from walknoise.gni import plots as gni_plots
from walknoise.gni.measure import GNISpec, measure
from walknoise.gni.store import concat_steps
from walknoise.walk.plots import save_figure


@pytest.fixture(scope="module")
def tracked() -> xr.Dataset:
    x, y = learnable_data(200)
    spec = GNISpec(sigmas=(0.1, 0.3), draws=8, batches=2, batch_size=50)
    model = tiny_mlp()
    parts = [measure(model, x, y, spec, ["<input>", "act1"], step=s) for s in (0, 10)]
    return concat_steps(parts)


def test_figures_have_one_panel_per_statistic_or_tensor(
    tracked: xr.Dataset, tmp_path: Path
) -> None:
    sigma = gni_plots.over_sigma(tracked)
    training = gni_plots.over_training(tracked, sigma=0.3)
    hist = gni_plots.histograms(tracked, sigma=0.1, step=0)
    for fig in (sigma, training, hist):
        assert isinstance(fig, Figure)
    labels = ["tail index α", "asymmetry β", "sample skewness"]
    assert [ax.get_ylabel() for ax in sigma.axes] == labels
    # α: the reference, pooled and MAD-scaled fits and the block line per tensor, and the
    # shaded interval per tensor
    assert len(sigma.axes[0].lines) == 1 + 3 * 2 and len(sigma.axes[0].collections) == 2
    assert sigma.axes[0].get_xscale() == "log"
    assert "step 10" in sigma.get_suptitle()  # the last step by default
    assert "σ = 0.3" in training.get_suptitle()
    visible = [ax for ax in hist.axes if ax.get_visible()]
    assert [ax.get_title() for ax in visible] == ["fc1.weight", "fc2.weight"]
    assert save_figure(hist, tmp_path / "h.png").stat().st_size > 10_000


def test_wrong_input_is_a_user_error() -> None:
    with pytest.raises(WalknoiseError, match="GNIResult"):
        gni_plots.over_sigma(xr.Dataset())
