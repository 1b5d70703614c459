"""Noise before a linear layer computed once for all σ: the same cells as the plain path.

lin(y + σD) = lin(y) + σ·lin₀(D) holds exactly in real numbers; in float32 the two sums round
differently, so accuracies agree up to a sample whose two top logits are within rounding, and
losses to ~1e-6 relative. Where σ·max|D| is so large that a copy could overflow, the plain
path runs, so those cells are the plain path's bit for bit.
"""

from __future__ import annotations

from collections import OrderedDict

import numpy as np
import pytest
import torch
from torch import nn

import walknoise
from tests.conftest import assert_same_accuracy, fit, learnable_data
from walknoise.models import build_model
from walknoise.noise.linear import SAFE, linear_successors
from walknoise.walk import evaluate, runner


def small_cnn() -> nn.Module:
    torch.manual_seed(0)
    layers = OrderedDict(
        conv1=nn.Conv2d(1, 3, 2), act1=nn.ReLU(), drop=nn.Dropout(0.5),
        conv2=nn.Conv2d(3, 4, 2, bias=False), act2=nn.ReLU(), flatten=nn.Flatten(),
        fc1=nn.Linear(16, 8), act3=nn.ReLU(), fc2=nn.Linear(8, 4),
    )  # fmt: skip
    return nn.Sequential(layers)


class Skip(nn.Module):
    """act1 goes into fc2 and around it: not a point whose only consumer is linear."""

    def __init__(self) -> None:
        super().__init__()
        self.flatten, self.fc1, self.act1 = nn.Flatten(), nn.Linear(16, 16), nn.ReLU()
        self.fc2, self.fc3 = nn.Linear(16, 16), nn.Linear(16, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.act1(self.fc1(self.flatten(x)))
        return self.fc3(self.fc2(h) + h)


class Branchy(nn.Module):
    """Data-dependent control flow: fx cannot trace it."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(16, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(x.flatten(1)) if x.sum() > 0 else -self.fc(x.flatten(1))


def test_successors_are_read_from_the_graph() -> None:
    assert linear_successors(build_model("lenet5").eval()) == {
        "<input>": "conv1", "pool1": "conv2", "pool2": "fc1", "flatten": "fc1",
        "act3": "fc2", "act4": "fc3",
    }  # fmt: skip
    assert linear_successors(small_cnn().eval()) == {
        "<input>": "conv1", "act1": "conv2", "drop": "conv2", "act2": "fc1",
        "flatten": "fc1", "act3": "fc2",
    }  # fmt: skip
    assert "act1" not in linear_successors(small_cnn().train())  # dropout draws in training
    assert linear_successors(Skip()) == {"<input>": "fc1", "flatten": "fc1"}
    assert linear_successors(Branchy()) == {}


def scan_both(model: nn.Module, noise: str, sigmas: str, monkeypatch) -> tuple:  # type: ignore[no-untyped-def,type-arg]
    x, y = learnable_data(400)
    kw = dict(sigmas=sigmas, repeats=2, batch_size=64, include_global=False, progress=False)
    fast = walknoise.scan(model, (x, y), noise=noise, **kw)
    with monkeypatch.context() as m:
        m.setattr(runner, "linear_successors", lambda model: {})
        plain = walknoise.scan(model, (x, y), noise=noise, **kw)
    return fast, plain, len(y)


@pytest.mark.parametrize("noise", ["additive", "multiplicative", "combined"])
def test_linear_path_gives_the_plain_cells(noise: str, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    x, y = learnable_data(400)
    model = fit(small_cnn(), x, y, steps=100).eval()
    fast, plain, n = scan_both(model, noise, "log:1e-2:1e2:9", monkeypatch)
    assert_same_accuracy(fast.accuracy, plain.accuracy, n=n)
    # float32 sums in another order: ~1e-6 relative on logits; 1e-4 leaves room, a wrong
    # draw or σ would move the mean loss by far more
    np.testing.assert_allclose(fast.dataset["loss"], plain.dataset["loss"], rtol=1e-4)
    assert (fast.accuracy.values != plain.accuracy.values).mean() < 0.05


def test_overflowing_sigmas_take_the_plain_path(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    x, y = learnable_data(400)
    model = fit(small_cnn(), x, y, steps=100).eval()
    assert SAFE < 1e30
    # compared bit for bit, so both scans must run the same model: the faster layout is timed
    # on the spot and could differ between the two on a busy machine
    monkeypatch.setattr(evaluate, "fast_layout", lambda model, *_: model)
    fast, plain, _ = scan_both(model, "additive", "1e30,1e36", monkeypatch)
    for name in ("accuracy", "loss", "nonfinite_fraction"):
        np.testing.assert_array_equal(fast.dataset[name].values, plain.dataset[name].values)


def test_sigma_is_not_rounded_to_bfloat16_under_autocast() -> None:
    """Under ``dtype="bfloat16"`` the linear path's σ stays float32: 1.003 is 1.0 in bfloat16
    (a 0.3% error every sample of the cell would share)."""
    from walknoise.noise.inject import Fanout, make_generator
    from walknoise.noise.kinds import make_noise
    from walknoise.noise.linear import LinearHook

    torch.manual_seed(0)
    layer, x = nn.Linear(64, 32), torch.randn(256, 64).bfloat16()  # as an autocast layer's

    def shift(sigma: float) -> torch.Tensor:
        fo = Fanout(sigmas=torch.tensor([sigma]))
        fo.new_batch(len(x))
        hook = LinearHook(layer, fo, make_noise("additive"), make_generator(7, x.device), 1.0)
        with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16):
            out = layer(x)
            return (hook(layer, (x,), out) - out).float()

    big, one = shift(1.003), shift(1.0)
    ratio = float((big * one).sum() / (one * one).sum())
    # the same ε both times: the ratio is σ's, blurred only by bfloat16 rounding of each
    # element (~0.4% relative, random) averaged over 8,192 elements: well under 0.05%
    assert ratio == pytest.approx(1.003, rel=5e-4)


def test_a_half_precision_layer_takes_both_paths_in_its_dtype() -> None:
    """σ is float32 (not rounded); what the layer receives and returns stays float16, also
    where σ is so large that the plain path is taken (the SAFE branch)."""
    from walknoise.noise.inject import Fanout, make_generator
    from walknoise.noise.kinds import make_noise
    from walknoise.noise.linear import LinearHook

    layer, x = nn.Linear(8, 4).half(), torch.randn(5, 8).half()
    for sigma in (1.0, 1e30):
        fo = Fanout(sigmas=torch.tensor([sigma, 2 * sigma]))
        fo.new_batch(len(x))
        hook = LinearHook(layer, fo, make_noise("additive"), make_generator(1, x.device), 1.0)
        with torch.inference_mode():
            got = hook(layer, (x,), layer(x))
        assert got.dtype == torch.float16 and got.shape == (10, 4)
