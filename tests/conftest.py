"""Shared tiny models and data: fast, deterministic, no downloads."""

from __future__ import annotations

import signal
from collections import OrderedDict
from collections.abc import Iterator

import numpy as np
import pytest
import torch
from torch import nn


def tiny_mlp(batchnorm: bool = False) -> nn.Module:
    torch.manual_seed(0)
    layers: OrderedDict[str, nn.Module] = OrderedDict(
        flatten=nn.Flatten(), fc1=nn.Linear(16, 32), act1=nn.ReLU()
    )
    if batchnorm:
        layers["bn1"] = nn.BatchNorm1d(32)
    layers["fc2"] = nn.Linear(32, 4)
    return nn.Sequential(layers)


class Residual(nn.Module):
    """A skip connection around ``inner``: ``inner`` is not a cut point of the graph."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.flatten = nn.Flatten()
        self.fc1 = nn.Linear(16, 32)
        self.inner = nn.Linear(32, 32)
        self.act = nn.ReLU()
        self.head = nn.Linear(32, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.fc1(self.flatten(x))
        return self.head(self.act(h + self.inner(h)))


def learnable_data(n: int = 600, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Inputs (n, 1, 4, 4) with labels a fixed linear map can predict."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 1, 4, 4, generator=g)
    w = torch.randn(16, 4, generator=g)
    return x, (x.flatten(1) @ w).argmax(dim=1)


def fit(model: nn.Module, x: torch.Tensor, y: torch.Tensor, steps: int = 300) -> nn.Module:
    torch.manual_seed(0)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(steps):
        opt.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        opt.step()
    return model.eval()


def assert_same_accuracy(got: object, want: object, n: int, flips: int = 1) -> None:
    """Accuracies of the same cells from two different computations (another batch split, σ
    copies stacked or not, an ensemble), each a count of correct samples / ``n``.

    Draws are equal by construction, but the arithmetic may round differently: BLAS kernels do
    not promise that a sample's result is independent of the batch it is in, and differ
    between CPUs. float32 rounds ~6e-8 relative per operation, so logits move by ~1e-6 of
    their size, and a prediction flips only when its two top logits are that close: about
    one sample in a million. ``flips`` samples per cell is then generous, and any real
    difference (other draws, another σ, mixed batch statistics) flips many more.
    """
    a, b = np.asarray(got, dtype=float), np.asarray(want, dtype=float)
    np.testing.assert_allclose(a, b, rtol=0, atol=(flips + 0.5) / n)  # +0.5: not 2 flips


@pytest.fixture(scope="session")
def data() -> tuple[torch.Tensor, torch.Tensor]:
    return learnable_data()


@pytest.fixture(scope="session")
def trained_mlp(data: tuple[torch.Tensor, torch.Tensor]) -> nn.Module:
    return fit(tiny_mlp(), *data)


@pytest.fixture
def ctrl_c() -> Iterator[None]:
    """Ctrl-C raises ``KeyboardInterrupt`` here and in the children this test starts.

    A test that sends SIGINT must not rely on the disposition it inherits: a suite launched in
    the background (``pytest &``, nohup, some CI runners) starts with SIGINT ignored, children
    inherit "ignored", and the signal never arrives. A handled signal, unlike an ignored one,
    is reset to the default at ``exec``, so the children's Python installs its own handler.
    """
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


@pytest.fixture(autouse=True)
def _torch_threads_restored() -> Iterator[None]:
    """A test that pins torch to one thread (the docs' two-lane runs) leaves the later tests
    the thread count they started with."""
    before = torch.get_num_threads()
    yield
    if torch.get_num_threads() != before:
        torch.set_num_threads(before)
