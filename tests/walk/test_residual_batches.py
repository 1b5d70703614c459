"""A residual CNN whose last batch is smaller than the others (issue 15, item 7).

With 500 images per batch and a wide layer, a batch holds one σ copy per forward pass; the
last batch of 550 images (50 images) holds two, and two copies must not fan out through a
skip connection. Every cell is checked against a plain forward pass per σ with the same ε.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

import walknoise
from tests.cli.conftest import invoke
from walknoise.noise.inject import batch_seed, make_generator
from walknoise.walk import runner

LAYER, SIGMAS, SEED = "block.conv1", (0.3, 3.0), 0


@pytest.fixture(autouse=True)
def _budget_of_our_machines(monkeypatch: pytest.MonkeyPatch) -> None:
    """The budget the scenario below is sized for (it follows the cache: another CPU's would
    fit more copies in a batch and test something else)."""
    monkeypatch.setattr(runner, "element_budget", lambda device: 2**21)


class Block(nn.Module):
    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(channels, channels, 3, padding=1)
        self.relu = nn.ReLU()
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(x + self.conv2(self.relu(self.conv1(x))))  # the skip connection


class TinyResNet(nn.Module):
    """CIFAR-shaped (3×32×32): a stem, one residual block at full resolution, a linear head.
    8 channels × 32 × 32 after ``block.conv1``: 2**21 / (500 · 8192) < 1 copy per batch of 500,
    2 copies for the last batch of 50."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.stem = nn.Conv2d(3, 8, 3, padding=1)
        self.block = Block(8)
        self.pool = nn.AvgPool2d(4)
        self.head = nn.Linear(8 * 8 * 8, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.pool(self.block(self.stem(x))).flatten(1))


def tiny_resnet() -> nn.Module:
    """The factory ``--arch`` names."""
    return TinyResNet()


def _data(n: int = 550) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    x = torch.randn(n, 3, 32, 32, generator=g)
    with torch.inference_mode():
        y = TinyResNet().eval()(x).argmax(1)  # clean accuracy 1: noise can only lower it
    return x, y


def _add_noise(sigma: float, gen: torch.Generator):  # type: ignore[no-untyped-def]
    def hook(_m: nn.Module, _i: object, out: torch.Tensor) -> torch.Tensor:
        return out + sigma * torch.randn((1, *out.shape), generator=gen)[0]

    return hook


def _by_hand(model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch: int) -> np.ndarray:
    """Accuracy per σ: a hook adds σ·ε at the layer, ε drawn per batch from the cell's
    (layer, repeat, batch) generator (the draws a scan shares between all σ of a repeat)."""
    module = dict(model.named_modules())[LAYER]
    accuracy = []
    for sigma in SIGMAS:
        gen = make_generator(0)
        handle = module.register_forward_hook(_add_noise(sigma, gen))
        correct = 0
        try:
            with torch.inference_mode():
                for i in range(0, len(x), batch):
                    gen.manual_seed(batch_seed(SEED, LAYER, 0, i // batch))
                    correct += int((model(x[i : i + batch]).argmax(1) == y[i : i + batch]).sum())
        finally:
            handle.remove()
        accuracy.append(correct / len(x))
    return np.array(accuracy)


def _assert_matches_hand(accuracy: np.ndarray, expected: np.ndarray, n: int) -> None:
    # The scan runs the last batch as 100 stacked samples, the hand loop as 50: a convolution
    # over another batch size may round differently in the last bit, which can flip the
    # argmax of a sample sitting on a tie. One flip per σ is 1/n; more is a real difference.
    np.testing.assert_allclose(accuracy, expected, atol=1.01 / n, rtol=0)
    assert expected[0] > expected[1]  # σ = 3 hurts: the check is not vacuous


def test_scan_with_a_small_last_batch_matches_a_plain_forward_pass() -> None:
    x, y = _data()
    model = TinyResNet().eval()
    result = walknoise.scan(
        model, (x, y), layers=LAYER, sigmas=SIGMAS, repeats=1, seed=SEED, progress=False
    )
    acc = result.accuracy.sel(layer=LAYER).values[:, 0]
    _assert_matches_hand(acc, _by_hand(model, x, y, 500), len(x))


def test_cli_scan_with_a_small_last_batch(tmp_path: Path) -> None:
    x, y = _data()
    weights, data, out = tmp_path / "w.pt", tmp_path / "test.pt", tmp_path / "r.h5"
    torch.save(TinyResNet().state_dict(), weights)
    torch.save({"x": x, "y": y}, data)
    run = invoke(
        "scan", weights, "--arch", f"{__name__}:tiny_resnet", "--data", data,
        "--layers", LAYER, "--sigmas", ",".join(map(str, SIGMAS)), "--repeats", "1",
        "--seed", str(SEED), "--quiet", "-o", out,
    )  # fmt: skip
    assert run.exit_code == 0, run.output
    acc = walknoise.load(out).accuracy.sel(layer=LAYER).values[:, 0]
    _assert_matches_hand(acc, _by_hand(TinyResNet().eval(), x, y, 500), len(x))
