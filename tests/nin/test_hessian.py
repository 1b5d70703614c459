"""The output-curvature λ: power iteration against dense eigenvalues, and the Hessian it
iterates on against torch's dense Hessian and the per-sample definition."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import Tensor, nn
from torch.autograd.functional import hessian
from torch.nn import functional as F

from walknoise.nin.hessian import OutputCurvature, output_hvp, top_eigenvalue
from walknoise.nin.model import attach_nins


def _symmetric(eigenvalues: list[float], seed: int = 0) -> Tensor:
    gen = torch.Generator().manual_seed(seed)
    q, _ = torch.linalg.qr(torch.randn(len(eigenvalues), len(eigenvalues), generator=gen))
    return (q * torch.tensor(eigenvalues)) @ q.T


@pytest.mark.parametrize(
    "eigenvalues",
    [
        [0.1, 0.5, 2.0, 3.0],  # positive definite
        [0.0, 0.0, 1e-3, 4e-3],  # semi-definite, small (the MNIST MLP's scale)
        [-5.0, -1.0, 0.5, 3.0],  # the most negative one dominates: a second, shifted run
        [-2.0, -1.0, -0.5, -0.1],  # negative definite: the top one is -0.1
    ],
)
def test_power_iteration_finds_the_largest_algebraic_eigenvalue(eigenvalues: list[float]) -> None:
    a = _symmetric(eigenvalues).double()
    value, vector = top_eigenvalue(lambda v: a @ v, 4)
    # tol 1e-5 and these gaps (r <= 0.8) bound the error by ~1e-4 of the spectrum's scale
    # (after a shift, of the shifted top eigenvalue): absolute, not relative to a small top.
    scale = max(abs(e) for e in eigenvalues)
    assert value == pytest.approx(max(eigenvalues), abs=1e-4 * scale)
    if max(eigenvalues) > 0:
        residual = a @ vector - value * vector
        assert float(residual.norm()) < 1e-2 * max(abs(e) for e in eigenvalues)


def _net(activation: nn.Module) -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Flatten(), nn.Linear(6, 8), activation, nn.Linear(8, 7), activation, nn.Linear(7, 3)
    ).double()


def _data(n: int = 40) -> tuple[Tensor, Tensor]:
    gen = torch.Generator().manual_seed(1)
    return torch.randn(n, 6, generator=gen, dtype=torch.float64), torch.randint(0, 3, (n,))


def _dense(net: nn.Sequential, layer: int, x: Tensor, y: Tensor) -> Tensor:
    """Hessian of the batch-mean loss w.r.t. a shift u of layer ``layer``'s output, by
    torch's dense Hessian on a hand-split forward (no hooks)."""
    head, tail = net[: layer + 1], net[layer + 1 :]

    def loss(u: Tensor) -> Tensor:
        return F.cross_entropy(tail(head(x) + u), y)

    width = net[layer].out_features
    return hessian(loss, torch.zeros(width, dtype=torch.float64))


@pytest.mark.parametrize("activation", [nn.ReLU(), nn.Tanh()])
@pytest.mark.parametrize("layer", [1, 3])
def test_top_eigenvalue_matches_the_dense_hessian(activation: nn.Module, layer: int) -> None:
    net = _net(activation)
    x, y = _data()
    dense = _dense(net, layer, x, y)
    expected = float(torch.linalg.eigvalsh(dense).max())
    hvp, width = output_hvp(net, str(layer), x, y)
    value, _ = top_eigenvalue(hvp, width)
    assert value == pytest.approx(expected, rel=0.01)  # the acceptance's 1%
    # The operator itself is the dense Hessian (up to float64 rounding).
    columns = torch.stack([hvp(e) for e in torch.eye(width, dtype=torch.float64)], dim=1)
    torch.testing.assert_close(columns, dense, rtol=1e-9, atol=1e-12)


def test_the_hessian_is_the_mean_of_the_per_sample_hessians() -> None:
    """The linear picture's H = mean_b ∂²ℓ_b/∂z_b² (each sample's own pre-activation)."""
    net = _net(nn.Tanh())
    x, y = _data(6)
    head, tail = net[:2], net[2:]
    z = head(x).detach()
    per_sample = [
        hessian(lambda zb, b=b: F.cross_entropy(tail(zb[None]), y[b : b + 1]), z[b])
        for b in range(len(x))
    ]
    mean = torch.stack(per_sample).mean(0)
    torch.testing.assert_close(_dense(net, 1, x, y), mean, rtol=1e-9, atol=1e-12)


def test_linear_readout_has_the_known_curvature() -> None:
    """ŷ = c·z with ½‖ŷ - y‖² per sample: H = c² I exactly, so λ = c²."""
    c = 1.7
    net = nn.Sequential(nn.Linear(4, 5), nn.Identity())
    with torch.no_grad():
        net[0].weight.normal_()

    def half_mse(out: Tensor, target: Tensor) -> Tensor:
        return 0.5 * ((c * out - target) ** 2).sum(1).mean()

    x, y = torch.randn(30, 4), torch.randn(30, 5)
    hvp, width = output_hvp(net, "0", x, y, half_mse)
    assert top_eigenvalue(hvp, width)[0] == pytest.approx(c**2, rel=1e-5)


def test_curvature_of_a_nin_model_is_the_clean_models() -> None:
    torch.manual_seed(0)
    bare = nn.Sequential(
        nn.Conv2d(1, 2, 3), nn.ReLU(), nn.Flatten(), nn.Linear(2 * 4 * 4, 5), nn.ReLU(),
        nn.Linear(5, 3),
    )  # fmt: skip
    x, y = torch.randn(20, 1, 6, 6), torch.randint(0, 3, (20,))
    expected = OutputCurvature(bare, ["0", "3"], x, y)()
    nin = attach_nins(bare, "all", sigma_eps=100.0)
    nin.train()
    measured = OutputCurvature(nin, nin.names, x, y)()
    assert np.isnan(measured[0]) and np.isnan(expected[0])  # pixel-wise conv NIN: not measured
    assert measured[1] == pytest.approx(expected[1], rel=1e-4)  # NINs off: no σ_ε in it
    assert measured[2] > 0 and nin.training  # the mode is restored
