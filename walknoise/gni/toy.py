"""The paper's toy regression: a sum of sines, fitted by a ReLU MLP, with full-batch steps.

Camuto et al. (2021) generate t on a grid of N points in [0, 1) and the target
y(t) = Σ_k sin(2π k t + 2π φ_k) for k = 5, 10, ..., 50 with random phases φ_k; their MLP
has ReLU layers of equal width, trained by plain full-batch SGD at lr 3e-4
(``playground/ImplicitEffectMarginal.ipynb``: N = 200, width 256, depth 6, 60,000 steps).
Their tail measurements (``playground/SkewKurtosisGradients.ipynb``) use a 100-dimensional
variant, :func:`sinusoid_columns`: 100 input columns t + N(0, 1) and 100 target columns, each
with its own phases, width 512, depth 4. Everything here is seeded and generated.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Sequence

import numpy as np
import torch
from torch import Tensor, nn

from walknoise.errors import WalknoiseError
from walknoise.training import OPTIMIZERS, seeded_init

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


def sinusoid_columns(
    n: int = 200, inputs: int = 100, outputs: int = 100, seed: int = 0
) -> tuple[Tensor, Tensor]:
    """``(x, y)`` of shapes ``(n, inputs)``, ``(n, outputs)``: every input column is the grid
    t plus standard normal noise, every target column a sum of sines with its own phases."""
    if min(inputs, outputs) < 1:
        raise WalknoiseError(f"inputs={inputs}, outputs={outputs}; both must be at least 1")
    t, _ = sinusoids(n, seed=seed)
    noise = np.random.default_rng(seed).standard_normal((n, inputs))
    x = torch.as_tensor(noise, dtype=torch.float32) + t
    y = torch.cat([sinusoids(n, seed=seed + 1 + j)[1] for j in range(outputs)], dim=1)
    return x, y


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


def toy_mlp(
    width: int = 256, depth: int = 6, seed: int = 0, inputs: int = 1, outputs: int = 1
) -> nn.Module:
    """``depth`` Linear+ReLU layers of ``width`` units, then a linear output layer."""
    layers: OrderedDict[str, nn.Module] = OrderedDict()
    fan_in = inputs
    with seeded_init(seed):
        for i in range(1, depth + 1):
            layers[f"fc{i}"] = nn.Linear(fan_in, width)
            layers[f"act{i}"] = nn.ReLU()
            fan_in = width
        layers[f"fc{depth + 1}"] = nn.Linear(fan_in, outputs)
    return nn.Sequential(layers)


def fit(
    model: nn.Module,
    x: Tensor,
    y: Tensor,
    loss_fn: RegressionLoss,
    *,
    steps: int,
    lr: float = 3e-4,
    optimizer: str = "sgd",
) -> list[float]:
    """Full-batch steps on ``loss_fn(model, x, y) -> (loss, outputs)``; returns the losses.

    The default is the paper's plain SGD at lr 3e-4; ``optimizer="adam"`` for Adam."""
    if optimizer not in OPTIMIZERS:
        raise WalknoiseError(
            f"optimizer {optimizer!r} is unknown; use one of {', '.join(OPTIMIZERS)}"
        )
    make = torch.optim.SGD if optimizer == "sgd" else torch.optim.Adam
    step = make(model.parameters(), lr=lr)
    losses = []
    model.train()
    for _ in range(steps):
        loss, _ = loss_fn(model, x, y)
        step.zero_grad(set_to_none=True)
        loss.backward()  # type: ignore[no-untyped-call]
        step.step()
        losses.append(float(loss.detach()))
    model.eval()
    return losses


def mse(model: nn.Module, x: Tensor, y: Tensor) -> float:
    """Mean squared error of ``model`` on ``(x, y)`` without noise."""
    with torch.no_grad():
        return float(((model(x) - y) ** 2).mean())
