"""The paper's toy regression: a sum of sines, fitted by a ReLU MLP, with full-batch steps.

Camuto et al. (2021) generate t on a grid of N points in [0, 1) and the target
y(t) = Σ_k sin(2π k t + 2π φ_k) for k = 5, 10, ..., 50 with random phases φ_k; their MLP
has ReLU layers of equal width. Everything here is seeded and generated, never downloaded.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Sequence

import numpy as np
import torch
from torch import Tensor, nn

from walknoise.errors import WalknoiseError
from walknoise.training import seeded_init

FREQUENCIES = tuple(range(5, 55, 5))
RegressionLoss = Callable[[nn.Module, Tensor, Tensor], tuple[Tensor, Tensor]]


def sinusoids(
    n: int = 200, frequencies: Sequence[int] = FREQUENCIES, seed: int = 0
) -> tuple[Tensor, Tensor]:
    """``(t, y)``, both ``(n, 1)`` float32: the grid and the sum of phased sines on it."""
    if n < 2:
        raise WalknoiseError(f"the sinusoid data needs at least 2 points, got {n}")
    phases = np.random.default_rng(seed).random(len(frequencies))
    t = np.arange(n, dtype=np.float64) / n
    waves = [np.sin(2 * np.pi * (k * t + p)) for k, p in zip(frequencies, phases, strict=True)]
    y = np.sum(waves, axis=0)
    return _column(t), _column(y)


def _column(a: np.ndarray) -> Tensor:
    return torch.as_tensor(a, dtype=torch.float32).reshape(-1, 1)


def split(
    x: Tensor, y: Tensor, test_fraction: float = 0.25, seed: int = 0
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """A seeded random split into ``(x_train, y_train, x_test, y_test)``."""
    order = torch.randperm(len(x), generator=torch.Generator().manual_seed(seed))
    n_test = max(1, round(len(x) * test_fraction))
    test, train = order[:n_test].sort().values, order[n_test:].sort().values
    return x[train], y[train], x[test], y[test]


def toy_mlp(width: int = 256, depth: int = 6, seed: int = 0) -> nn.Module:
    """``depth`` Linear+ReLU layers of ``width`` units on a scalar input, then a scalar output."""
    layers: OrderedDict[str, nn.Module] = OrderedDict()
    fan_in = 1
    with seeded_init(seed):
        for i in range(1, depth + 1):
            layers[f"fc{i}"] = nn.Linear(fan_in, width)
            layers[f"act{i}"] = nn.ReLU()
            fan_in = width
        layers[f"fc{depth + 1}"] = nn.Linear(fan_in, 1)
    return nn.Sequential(layers)


def fit(
    model: nn.Module,
    x: Tensor,
    y: Tensor,
    loss_fn: RegressionLoss,
    *,
    steps: int,
    lr: float = 1e-3,
) -> list[float]:
    """Full-batch Adam on ``loss_fn(model, x, y) -> (loss, outputs)``; returns the losses."""
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    losses = []
    model.train()
    for _ in range(steps):
        loss, _ = loss_fn(model, x, y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()  # type: ignore[no-untyped-call]
        optimizer.step()
        losses.append(float(loss.detach()))
    model.eval()
    return losses


def mse(model: nn.Module, x: Tensor, y: Tensor) -> float:
    """Mean squared error of ``model`` on ``(x, y)`` without noise."""
    with torch.no_grad():
        return float(((model(x) - y) ** 2).mean())
