"""Weight statistics against hand-built tensors whose answers are known."""

import pytest
import torch
from torch import nn

from tests.conftest import fit, learnable_data, tiny_mlp
from walknoise.training import evaluate
from walknoise.walk.weights import (
    bimodality,
    binarized,
    clamp_weights,
    kurtosis,
    l2_norm,
    max_abs,
    mean_abs,
    mode_fraction,
    param_layers,
    weight_hists,
)

BINARY = torch.tensor([0.5, -0.5, 0.5, -0.5, -0.5, 0.5])


def test_two_point_weights_are_the_binary_extreme() -> None:
    assert kurtosis(BINARY) == pytest.approx(1.0)
    assert bimodality(BINARY) == pytest.approx(1.0)
    assert mode_fraction(BINARY) == 1.0


def test_gaussian_and_uniform_reference_values() -> None:
    g = torch.Generator().manual_seed(0)
    normal = torch.randn(400_000, generator=g)
    uniform = torch.rand(400_000, generator=g) * 2 - 1
    assert kurtosis(normal) == pytest.approx(3.0, abs=0.03)
    assert bimodality(normal) == pytest.approx(1 / 3, abs=0.01)
    assert kurtosis(uniform) == pytest.approx(1.8, abs=0.01)
    assert bimodality(uniform) == pytest.approx(5 / 9, abs=0.01)
    # |w| of U(-1,1) is U(0,1), mean 0.5: within 10% of it means |w| in [0.45, 0.55]
    assert mode_fraction(uniform) == pytest.approx(0.1, abs=0.005)


def test_magnitudes() -> None:
    w = torch.tensor([[3.0, -4.0], [0.0, 0.0]])
    assert l2_norm(w) == 5.0 and mean_abs(w) == 1.75 and max_abs(w) == 4.0


def test_binarizing_binary_weights_changes_nothing() -> None:
    x, y = learnable_data(300)
    model = fit(tiny_mlp(), x, y, steps=30)
    with torch.no_grad():
        for name in param_layers(model):
            w = dict(model.named_modules())[name].weight
            w.copy_(torch.sign(w) * 0.3)
    twin = binarized(model, param_layers(model))
    (acc_twin, loss_twin), (acc, loss) = evaluate(twin, x, y), evaluate(model, x, y)
    assert acc_twin == acc and loss_twin == pytest.approx(loss, rel=1e-6)
    for a, b in zip(model.parameters(), twin.parameters(), strict=True):
        torch.testing.assert_close(a, b)  # mean|w| of ±0.3 is 0.3 up to float rounding


def test_binarized_layer_is_sign_times_mean_abs() -> None:
    lin = nn.Sequential(nn.Linear(3, 2))
    with torch.no_grad():
        lin[0].weight.copy_(torch.tensor([[1.0, -2.0, 3.0], [-4.0, 5.0, 0.0]]))
    w = binarized(lin, ["0"])[0].weight
    assert torch.equal(w, torch.tensor([[2.5, -2.5, 2.5], [-2.5, 2.5, 0.0]]))


def test_clamp_and_histograms() -> None:
    lin = nn.Sequential(nn.Linear(50, 50))
    with torch.no_grad():
        lin[0].weight.mul_(100)
    clamp_weights(lin, 0.2)
    assert lin[0].weight.abs().max() <= 0.2
    (hist,) = weight_hists(lin, ["0"], bins=8)
    width = 2 * 0.2 / 8
    assert sum(hist) * width == pytest.approx(1.0)  # a density
    assert param_layers(lin) == ["0"]
