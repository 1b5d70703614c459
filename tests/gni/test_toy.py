"""The sum-of-sines toy regression."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from walknoise.errors import WalknoiseError
from walknoise.gni.measure import gradient_noise, noisy_loss
from walknoise.gni.toy import fit, mse, sinusoid_columns, sinusoids, split, toy_mlp
from walknoise.noise.points import INPUT


def test_sinusoids_are_the_sum_of_phased_sines() -> None:
    t, y = sinusoids(200, (5, 10), seed=3)
    phases = np.random.default_rng(3).random(2)
    want = sum(
        np.sin(2 * np.pi * k * t.numpy()[:, 0] + 2 * np.pi * p)
        for k, p in zip((5, 10), phases, strict=True)
    )
    assert t.shape == y.shape == (200, 1)
    assert np.allclose(y.numpy()[:, 0], want, atol=1e-5)
    assert torch.equal(sinusoids(50, seed=1)[1], sinusoids(50, seed=1)[1])
    with pytest.raises(WalknoiseError):
        sinusoids(1)


def test_split_is_disjoint_and_seeded() -> None:
    t, y = sinusoids(40)
    xtr, _, xte, _ = split(t, y, 0.25, seed=2)
    assert len(xtr) == 30 and len(xte) == 10
    assert set(xtr[:, 0].tolist()).isdisjoint(xte[:, 0].tolist())
    assert torch.equal(split(t, y, 0.25, seed=2)[2], xte)


def test_toy_mlp_fits_and_gni_runs_on_it() -> None:
    t, y = sinusoids(64, (1, 2))
    model = toy_mlp(width=32, depth=2, seed=0)
    assert [n for n, _ in model.named_children()][-1] == "fc3"
    before = mse(model, t, y)
    gen = torch.Generator().manual_seed(0)

    def loss(m: torch.nn.Module, x: torch.Tensor, target: torch.Tensor):  # type: ignore[no-untyped-def]
        return noisy_loss(m, x, target, [INPUT, "act1", "act2"], "additive", 0.01, 2, gen, "mse")

    losses = fit(model, t, y, loss, steps=300, lr=1e-2, optimizer="adam")
    assert len(losses) == 300 and mse(model, t, y) < before / 3
    res = gradient_noise(model, (t, y), loss="mse", sigma=0.1, draws=10, batches=1)
    assert np.all(np.isfinite(res.dataset["alpha"].values))


def test_sgd_fit_is_plain_gradient_descent() -> None:
    """The default ``fit`` is the paper's update w ← w − lr·∇L: on a linear model with the
    squared loss, two steps by hand give the same weights (float32 rounding only)."""
    x, y = torch.randn(20, 3, generator=torch.Generator().manual_seed(0)), torch.ones(20, 1)
    model = torch.nn.Linear(3, 1)
    w, b = model.weight.detach().clone(), model.bias.detach().clone()

    def loss(m: torch.nn.Module, xs: torch.Tensor, ys: torch.Tensor):  # type: ignore[no-untyped-def]
        out = m(xs)
        return ((out - ys) ** 2).mean(), out

    fit(model, x, y, loss, steps=2, lr=0.1)
    for _ in range(2):  # d/dw mean((xw + b − y)²) = 2 xᵀ r / n
        r = x @ w.T + b - y
        w, b = w - 0.1 * 2 * (r.T @ x) / 20, b - 0.1 * 2 * r.mean(0)
    torch.testing.assert_close(model.weight.detach(), w, atol=1e-6, rtol=0)
    torch.testing.assert_close(model.bias.detach(), b, atol=1e-6, rtol=0)
    with pytest.raises(WalknoiseError, match="optimizer"):
        fit(model, x, y, loss, steps=1, optimizer="lbfgs")


def test_sinusoid_columns_and_a_wide_toy_mlp() -> None:
    x, y = sinusoid_columns(50, inputs=3, outputs=4, seed=2)
    t, first = sinusoids(50, seed=3)
    assert x.shape == (50, 3) and y.shape == (50, 4)
    assert torch.equal(y[:, :1], first)  # column j has the phases of seed + 1 + j
    noise = x - t  # every input column is the grid plus unit-variance noise
    assert abs(float(noise.std()) - 1.0) < 0.2 and not torch.equal(noise[:, 0], noise[:, 1])
    model = toy_mlp(8, 2, inputs=3, outputs=4)
    assert model(x).shape == (50, 4)
    with pytest.raises(WalknoiseError):
        sinusoid_columns(10, inputs=0)
