"""The paper's σ ranges in float32: multiplicative to 1e16, additive to 1e8.

Every accuracy is a number in [0, 1]: where the noise overflows the forward pass, the
samples count as wrong (``score``), and past some σ multiplicative noise after a ReLU is
σ·``y·ε`` (inactive units stay 0), whose argmax downstream does not depend on σ, so the
accuracy levels off at a plateau computed here by hand from the same draws.
"""

from __future__ import annotations

import warnings

import matplotlib
import numpy as np
import pytest
import torch
from torch import nn

import walknoise
from tests.conftest import assert_same_accuracy
from walknoise.noise.inject import batch_seed
from walknoise.walk import plots

matplotlib.use("Agg")


def scan(model: nn.Module, data: object, noise: str, sigmas: str) -> walknoise.Result:
    return walknoise.scan(model, data, noise=noise, sigmas=sigmas, repeats=2, progress=False)


@pytest.mark.parametrize(
    ("noise", "sigmas"),
    [("multiplicative", "log:1:1e16:17"), ("additive", "log:1e-2:1e8:11")],
)
def test_accuracy_is_a_number_in_the_unit_interval(trained_mlp, data, noise, sigmas) -> None:  # type: ignore[no-untyped-def]
    ds = scan(trained_mlp, data, noise, sigmas).dataset
    acc, nonfin = ds["accuracy"].values, ds["nonfinite_fraction"].values
    assert np.isfinite(acc).all() and (acc >= 0).all() and (acc <= 1).all()
    # a cell whose every output overflowed is 0, its loss undefined, never a crash
    assert (acc[nonfin == 1] == 0).all() and np.isnan(ds["loss"].values[nonfin == 1]).all()
    assert np.isfinite(ds["loss"].values[nonfin < 1]).all()


def test_multiplicative_noise_after_relu_levels_off_at_a_plateau(trained_mlp, data) -> None:  # type: ignore[no-untyped-def]
    x, y = data
    result = scan(trained_mlp, data, "multiplicative", "log:1:1e16:17")
    got = result.accuracy.sel(layer="act1").values  # (sigma, repeat)
    n = len(x)
    for r in range(2):
        # σ ≥ 1e8: y(1 + σε) = σ·yε to float32 precision, fc2's bias is negligible beside it
        assert_same_accuracy(got[8:, r], np.full(9, plateau(trained_mlp, x, y, r)), n)


def plateau(model: nn.Module, x: torch.Tensor, y: torch.Tensor, repeat: int) -> float:
    """Accuracy of argmax(W·(act1 ⊙ ε)): the limit σ → ∞, with the scan's draws of ε
    (one per batch of 500 from the (layer, repeat, batch) generator, as the scan draws them)."""
    correct = 0
    with torch.no_grad():
        for start in range(0, len(x), 500):
            h = model.act1(model.fc1(model.flatten(x[start : start + 500])))
            gen = torch.Generator().manual_seed(batch_seed(0, "act1", repeat, start // 500))
            eps = torch.randn((1, *h.shape), generator=gen)[0]
            pred = ((h * eps) @ model.fc2.weight.T).argmax(1)
            correct += int((pred == y[start : start + 500]).sum())
    return correct / len(x)


def test_plots_draw_the_paper_range_without_warnings(trained_mlp, data) -> None:  # type: ignore[no-untyped-def]
    result = scan(trained_mlp, data, "multiplicative", "log:1:1e16:17")
    assert (result.dataset["nonfinite_fraction"].values == 1).any()  # overflow is drawn too
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for draw in (plots.heatmap, plots.curves, plots.midpoints):
            draw(result)
