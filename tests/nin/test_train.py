"""The probe's training loop, and the linear toy model of the NIN probe paper.

Two-layer linear regression ``ŷ = W2 (W1 x + w ε)`` with loss ``½‖ŷ - y‖²`` and one NIN on
the first layer. Averaged over ε, the NIW's gradient is ``σ_ε² W2ᵀW2 w``, so with
``W2 = c·I`` held fixed, SGD multiplies the NIW by ``1 - η σ_ε² c²`` per step: the NIW decays
for ``η < 2 / (σ_ε² c²)`` (the stability limit) and diverges above it.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Iterator

import numpy as np
import pytest
import torch
from torch import Tensor, nn

from walknoise.errors import WalknoiseError
from walknoise.nin.model import attach_nins
from walknoise.nin.phases import classify, fit_decay
from walknoise.nin.train import torch_threads, train_trace


@pytest.fixture(autouse=True)
def _one_thread() -> Iterator[None]:
    with torch_threads(1):
        yield


def _mse(out: Tensor, y: Tensor) -> Tensor:
    return 0.5 * ((out - y) ** 2).sum(1).mean()


def _regression(n: int = 2048, seed: int = 0) -> tuple[Tensor, Tensor]:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 8, generator=g)
    return x, x @ torch.randn(8, 4, generator=torch.Generator().manual_seed(99))


def _toy(c: float = 1.0, frozen: bool = True) -> nn.Sequential:
    torch.manual_seed(0)
    model = nn.Sequential(
        OrderedDict(fc1=nn.Linear(8, 4, bias=False), fc2=nn.Linear(4, 4, bias=False))
    )
    with torch.no_grad():
        model.fc2.weight.copy_(c * torch.eye(4))
    model.fc2.weight.requires_grad_(not frozen)
    return model


def _run(model: nn.Module, lr: float, epochs: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    x, y = _regression()
    xt, yt = _regression(512, seed=1)
    trace = train_trace(
        model, x, y, lr=lr, epochs=epochs, batch_size=256, x_test=xt, y_test=yt, loss_fn=_mse
    )
    assert np.isnan(trace.test_accuracy).all()  # regression: no accuracy
    return trace.niw, trace.train_loss


def test_niw_decays_at_the_predicted_rate_for_small_noise() -> None:
    sigma, lr = 0.5, 0.05
    nin = attach_nins(_toy(), "input", sigma_eps=sigma, init_scale=0.5)
    niw, loss = _run(nin, lr, epochs=25)  # 8 steps per epoch: 200 steps
    factor = 1 - lr * sigma**2  # c = 1
    steps = niw.shape[1] - 1
    measured = math.log(niw[0, -1] / niw[0, 0]) / steps
    assert measured == pytest.approx(math.log(factor), rel=0.1)
    fit = fit_decay(np.arange(steps + 1), niw[0])
    assert fit.tau == pytest.approx(-1 / math.log(factor), rel=0.15)
    _, reference = _run(_toy(), lr, epochs=25)
    assert classify(niw, loss, reference) in ("decoupled", "decay")


def test_niw_decays_with_every_weight_trained() -> None:
    nin = attach_nins(_toy(frozen=False), "input", sigma_eps=0.5, init_scale=0.5)
    niw, loss = _run(nin, 0.05, epochs=25)
    assert niw[0, -1] < 0.3 * niw[0, 0]
    assert np.isfinite(loss[1:]).all() and loss[-1] < 0.05 * loss[1]


def test_learning_rate_far_above_the_stability_limit_diverges() -> None:
    sigma = 10.0
    limit = 2 / sigma**2  # 0.02 for the NIW; the data alone are stable up to ~1
    lr = 10 * limit
    niw, loss = _run(attach_nins(_toy(), "input", sigma_eps=sigma, init_scale=0.5), lr, 25)
    niw_ref, reference = _run(_toy(), lr, epochs=25)
    assert np.isfinite(reference[1:]).all() and reference[-1] < 1e-3 * reference[1]
    assert classify(niw, loss, reference) == "divergent"
    assert not np.isfinite(loss[1:]).all()  # the run was stopped when it blew up
    grow = niw[0, 1:6] / niw[0, :5]  # early steps: |1 - η σ² c²| = 19 per step
    assert np.median(grow) == pytest.approx(abs(1 - lr * sigma**2), rel=0.35)
    assert niw_ref.shape == (0, loss.size)  # no NIN, no norms


def test_trace_layout_and_reproducibility() -> None:
    x, y = _regression(300)
    run = [
        train_trace(
            attach_nins(_toy(frozen=False), sigma_eps=1.0),
            x,
            y,
            lr=0.01,
            epochs=2,
            batch_size=64,
            x_test=x[:50],
            y_test=y[:50],
            eval_every=3,
            loss_fn=_mse,
        )
        for _ in range(2)
    ]
    a, b = run
    assert a.niw.shape == (1, 11) and a.train_loss.shape == (11,)  # 5 batches x 2 epochs
    assert np.isnan(a.train_loss[0]) and np.isfinite(a.train_loss[1:]).all()
    assert np.flatnonzero(np.isfinite(a.test_loss)).tolist() == [0, 3, 6, 9, 10]
    assert np.array_equal(a.niw, b.niw) and np.array_equal(
        a.train_loss, b.train_loss, equal_nan=True
    )
    assert a.steps_done == 10


def test_bad_inputs() -> None:
    x, y = _regression(10)
    with pytest.raises(WalknoiseError, match="optimizer"):
        train_trace(_toy(), x, y, lr=0.1, epochs=1, optimizer="lbfgs", loss_fn=_mse)
    with pytest.raises(WalknoiseError, match="non-empty"):
        train_trace(_toy(), x[:0], y[:0], lr=0.1, epochs=1, loss_fn=_mse)
    with pytest.raises(WalknoiseError, match="threads"), torch_threads(0):
        pass
