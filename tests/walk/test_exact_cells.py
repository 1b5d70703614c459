"""Scan cells recomputed by hand: the same ε from the cell's seed, the network written out.

A relative cell must equal the absolute cell at σ × (the point's clean std); a model that
breaks fan-out without an error must still get the numbers of the plain forward; weight
growth must be the trained statistic over the clean model's, of the same seed.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

import walknoise
from tests.conftest import learnable_data, tiny_mlp
from walknoise.data import TensorData
from walknoise.noise.inject import batch_seed, make_generator
from walknoise.noise.kinds import Additive
from walknoise.training import TrainConfig, evaluate
from walknoise.walk import runner
from walknoise.walk.trainphase import TrainPhase, train_under_noise
from walknoise.walk.weights import binarized, param_layers

SIGMAS = (0.3, 1.0, 3.0)
Data = tuple[torch.Tensor, torch.Tensor]
BATCH = 200


def by_hand(model: nn.Module, x: torch.Tensor, y: torch.Tensor, sigmas: list[float]) -> list[int]:
    """Correct counts with additive noise after ``act1`` (repeat 0, seed 0), in float64."""
    w1, b1 = model.fc1.weight.double(), model.fc1.bias.double()
    w2, b2 = model.fc2.weight.double(), model.fc2.bias.double()
    correct = [0] * len(sigmas)
    for start in range(0, len(x), BATCH):
        xb, yb = x[start : start + BATCH].flatten(1).double(), y[start : start + BATCH]
        gen = make_generator(batch_seed(0, "act1", 0, start // BATCH))  # one per batch
        eps = torch.randn((1, len(xb), 32), generator=gen)[0].double()
        h = torch.relu(xb @ w1.T + b1)
        for i, sigma in enumerate(sigmas):
            logits = (h + sigma * eps) @ w2.T + b2
            correct[i] += int((logits.argmax(1) == yb).sum())
    return correct


def scanned(model: nn.Module, x: torch.Tensor, y: torch.Tensor, **kwargs: object) -> np.ndarray:
    result = walknoise.scan(
        model, (x, y), sigmas=SIGMAS, layers="act1", repeats=1, batch_size=BATCH,
        include_global=False, progress=False, **kwargs,
    )  # fmt: skip
    return np.rint(result.accuracy.sel(layer="act1").values[:, 0] * len(x))


def assert_counts(got: np.ndarray, expected: list[int]) -> None:
    # float32 scan against float64 by hand: a sample whose top two logits are within float32
    # rounding may flip, so one sample per cell may differ
    assert np.abs(got - np.array(expected)).max() <= 1, (got, expected)


def test_absolute_cells_match_the_hand_computation(trained_mlp: nn.Module, data: Data) -> None:
    model, (x, y) = trained_mlp, data
    assert_counts(scanned(model, x, y), by_hand(model, x, y, list(SIGMAS)))


@pytest.mark.parametrize("path", ["linear", "plain"])
def test_relative_cell_is_the_absolute_cell_at_sigma_times_the_clean_std(
    trained_mlp: nn.Module, data: Data, path: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Through the linear shortcut (act1 feeds fc2) and through the plain noise hook."""
    if path == "plain":
        monkeypatch.setattr(runner, "linear_successors", lambda model: {})
    model, (x, y) = trained_mlp, data
    with torch.no_grad():
        h = torch.relu(model.fc1(x.flatten(1))).double().numpy()
    std = float(np.std(h))  # over every sample and element, ddof 0 (its mean is far from 0)
    expected = by_hand(model, x, y, [s * std for s in SIGMAS])
    # the test can tell σ·std from σ and from σ·rms (an std taken without centring)
    rms = float(np.sqrt(np.mean(h * h)))
    for other in (list(SIGMAS), [s * rms for s in SIGMAS]):
        assert np.abs(np.subtract(expected, by_hand(model, x, y, other))).min() > 3
    assert_counts(scanned(model, x, y, relative=True), expected)


class FoldsTheBatch(nn.Module):
    """The MLP, then ``reshape(len(x), -1, 4).mean(1)``: the identity on a plain batch, but a
    fanned-out one comes back with the batch size of the input and no error."""

    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.flatten, self.fc1, self.act1, self.fc2 = (
            inner.flatten,
            inner.fc1,
            inner.act1,
            inner.fc2,
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.fc2(self.act1(self.fc1(self.flatten(x))))
        return out.reshape(len(x), -1, 4).mean(1)


def test_a_model_that_silently_breaks_fan_out_gets_the_plain_numbers(
    trained_mlp: nn.Module, data: Data
) -> None:
    model, (x, y) = trained_mlp, data
    folded = FoldsTheBatch(model).eval()
    sigmas = list(SIGMAS[:2])  # two copies: the folded logits would still reshape to a cell
    result = walknoise.scan(
        folded, (x, y), sigmas=sigmas, layers="act1", repeats=1, batch_size=BATCH,
        include_global=False, progress=False,
    )  # fmt: skip
    got = np.rint(result.accuracy.sel(layer="act1").values[:, 0] * len(x))
    assert_counts(got, by_hand(model, x, y, sigmas))


CONFIG = TrainConfig(epochs=2, lr=1e-2, batch_size=50)


def test_weight_growth_is_the_statistic_over_the_clean_model_of_the_same_seed() -> None:
    x, y = learnable_data(400, seed=1)
    xt, yt = learnable_data(200, seed=2)
    tp = TrainPhase(
        template=tiny_mlp(), train_data=TensorData(x, y, "train"), test=TensorData(xt, yt, "test"),
        noise=Additive(), config=CONFIG, seed=3, batch_size=100,
    )  # fmt: skip
    out = tp.run_layer("act1", ["act1"], [2.0], repeats=2, scales=[1.0])
    stats = {"l2": np.linalg.norm, "mean_abs": lambda w: np.abs(w).mean(), "max_abs": np.max}
    for r in range(2):
        clean = tp.clean_model(r)
        weights = [
            clean.fc1.weight.detach().double().numpy(),
            clean.fc2.weight.detach().double().numpy(),
        ]
        for stat, fn in stats.items():
            ref = np.array([fn(np.abs(w)) for w in weights])
            trained = out[f"weight_{stat}"][0, r]
            # both sides divide the same float64 numbers; only the division's rounding differs
            np.testing.assert_allclose(out[f"growth_{stat}"][0, r], trained / ref, rtol=1e-12)
    # noise σ = 2 after act1 trains other weights: a growth of exactly 1 would be a bug
    assert np.abs(out["growth_l2"] - 1).min() > 1e-3


def small_phase(clamp: float | None = None) -> TrainPhase:
    x, y = learnable_data(400, seed=1)
    xt, yt = learnable_data(200, seed=2)
    return TrainPhase(
        template=tiny_mlp(), train_data=TensorData(x, y, "train"), test=TensorData(xt, yt, "test"),
        noise=Additive(), config=CONFIG, seed=3, clamp=clamp, batch_size=100, ensemble=False,
    )  # fmt: skip


def test_clamp_bounds_the_clean_reference_model_too() -> None:
    """Growth under a clamp is measured against a clean model trained under the same clamp."""
    model = small_phase(clamp=0.05).clean_model(0)
    for name in param_layers(model):
        assert dict(model.named_modules())[name].weight.abs().max() <= 0.05


def test_binarized_accuracy_is_that_of_the_binarized_model() -> None:
    tp = small_phase()
    out = tp.run_layer("act1", ["act1"], [1e-6], repeats=1, scales=[1.0])
    # the cell's model, trained again alone (ensemble=False trains each cell this way)
    model = train_under_noise(
        tp.template, tp.train_data, noise=Additive(), layer="act1", sigma=1e-6, config=CONFIG,
        seed=3,
    )  # fmt: skip
    twin = binarized(model, param_layers(model))
    n = len(tp.test.y)
    plain, binary = (
        evaluate(model, tp.test.x, tp.test.y)[0],
        evaluate(twin, tp.test.x, tp.test.y)[0],
    )
    assert abs(plain - binary) * n > 2  # binarizing this net changes its accuracy
    # noise of σ = 1e-6 may flip one sample whose two top logits are that close
    assert abs(out["binarized_accuracy"][0, 0] - binary) * n <= 1
    assert abs(out["trained_accuracy"][0, 0] - plain) * n <= 1
