"""Noise Injection Nodes: trainable, exact when off, the noise they promise."""

from __future__ import annotations

import copy
import math
from collections import OrderedDict
from collections.abc import Iterator

import pytest
import torch
from torch import nn

from walknoise.errors import WalknoiseError
from walknoise.nin.model import NINModel, attach_nins, nin_targets
from walknoise.nin.train import torch_threads
from walknoise.training import TrainConfig, train_model


@pytest.fixture(autouse=True)
def _one_thread() -> Iterator[None]:
    with torch_threads(1):  # tiny models: a second thread only waits on a busy machine
        yield


def mlp() -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(
        OrderedDict(
            flatten=nn.Flatten(),
            fc1=nn.Linear(16, 8),
            act1=nn.ReLU(),
            fc2=nn.Linear(8, 4),
        )
    )


def convnet() -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(
        OrderedDict(
            conv1=nn.Conv2d(1, 3, 3, padding=1),
            act1=nn.ReLU(),
            flatten=nn.Flatten(),
            fc1=nn.Linear(3 * 4 * 4, 4),
        )
    )


def _x(n: int = 32, seed: int = 1) -> torch.Tensor:
    return torch.randn(n, 1, 4, 4, generator=torch.Generator().manual_seed(seed))


def test_niws_are_parameters_and_get_the_exact_gradient() -> None:
    # One Linear layer: z = Wx + b + w·ε. For L = sum(z * c), dL/dw_j = sum_i ε_i c_ij.
    layer = nn.Linear(5, 3)
    nin = attach_nins(nn.Sequential(OrderedDict(fc=layer)), "input", sigma_eps=2.0)
    assert isinstance(nin, NINModel) and nin.names == ["fc"]
    w = nin.niw_parameters()[0]
    assert any(p is w for p in nin.parameters())
    x = torch.randn(64, 5, generator=torch.Generator().manual_seed(0))
    c = torch.randn(64, 3, generator=torch.Generator().manual_seed(1))
    nin.train()
    out = nin(x)
    with torch.no_grad():
        clean = nn.functional.linear(x, layer.weight, layer.bias)  # layer(x) would add noise
        eps = ((out - clean) / w)[:, :1]  # the ε this pass drew (one per sample)
    (out * c).sum().backward()
    assert w.grad is not None
    torch.testing.assert_close(w.grad, (eps * c).sum(0), rtol=1e-4, atol=1e-5)
    before = w.detach().clone()
    torch.optim.SGD(nin.parameters(), lr=0.1).step()
    torch.testing.assert_close(w.detach(), before - 0.1 * (eps * c).sum(0))


def test_unchanged_optimiser_updates_the_niws() -> None:
    model = mlp()
    nin = attach_nins(model, "all", sigma_eps=1.0)
    start = [w.detach().clone() for w in nin.niw_parameters()]
    x = _x(128)
    y = (x.flatten(1)[:, :4]).argmax(1)
    train_model(nin, x, y, TrainConfig(epochs=2, lr=1e-2, batch_size=32), progress=False)
    for w, w0 in zip(nin.niw_parameters(), start, strict=True):
        assert not torch.equal(w.detach(), w0)


@pytest.mark.parametrize("build", [mlp, convnet])
def test_off_at_eval_equals_the_bare_model(build: type[nn.Module]) -> None:
    bare = build()
    twin = copy.deepcopy(bare)
    nin = attach_nins(bare, "all", sigma_eps=10.0)
    x = _x()
    nin.eval()
    assert torch.equal(nin(x), twin(x))
    nin.train()
    assert not torch.allclose(nin(x), twin(x))  # on while training
    with nin.noise_on():
        nin.eval()
        assert not torch.allclose(nin(x), twin(x))
    assert torch.equal(nin.eval()(x), twin(x))
    model = nin.remove().train()
    assert torch.equal(model(x), twin.train()(x))  # hooks gone for good


def test_dense_eps_is_one_scalar_per_sample_with_the_requested_std() -> None:
    layer = nn.Linear(3, 5)
    nn.init.zeros_(layer.weight)
    nn.init.zeros_(layer.bias)
    nin = attach_nins(nn.Sequential(layer), "input", sigma_eps=0.7, seed=3)
    with torch.no_grad():
        nin.niw_parameters()[0].fill_(1.0)
        out = nin.train()(torch.zeros(40_000, 3))  # = ε, broadcast over the 5 units
        again = nin(torch.zeros(40_000, 3))
    assert torch.equal(out, out[:, :1].expand_as(out))
    eps = out[:, 0].double()
    assert abs(float(eps.std()) - 0.7) < 0.7 * 0.015  # 40k draws: std error 0.35%
    assert abs(float(eps.mean())) < 0.7 * 0.015
    assert not torch.equal(out, again)  # redrawn every forward pass


def test_conv_eps_is_pixelwise_shared_across_channels() -> None:
    conv = nn.Conv2d(1, 3, 3, padding=1)
    nn.init.zeros_(conv.weight)
    nn.init.zeros_(conv.bias)
    nin = attach_nins(nn.Sequential(conv), "input", sigma_eps=2.0)
    scale = torch.tensor([1.0, -2.0, 0.5])
    with torch.no_grad():
        nin.niw_parameters()[0].copy_(scale)
        out = nin.train()(torch.zeros(2000, 1, 6, 6))
    eps = out[:, :1]
    torch.testing.assert_close(out, eps * scale.reshape(1, 3, 1, 1))
    assert float(eps.std()) == pytest.approx(2.0, rel=0.02)
    assert not torch.equal(eps[:, :, 0, 0], eps[:, :, 0, 1])  # one value per position


def test_seeded_streams_and_init() -> None:
    x = _x()
    a = attach_nins(mlp(), "input", sigma_eps=1.0, seed=5).train()
    b = attach_nins(mlp(), "input", sigma_eps=1.0, seed=5).train()
    c = attach_nins(mlp(), "input", sigma_eps=1.0, seed=6).train()
    assert torch.equal(a(x), b(x))
    assert not torch.equal(a(x), c(x))
    bound = 1 / math.sqrt(16)
    w = a.niw_parameters()[0].detach()
    assert w.shape == (8,) and float(w.abs().max()) <= bound and float(w.abs().max()) > bound / 2
    scaled = attach_nins(mlp(), "input", init_scale=0.01).niw_parameters()[0].detach()
    assert float(scaled.abs().max()) <= 0.01


def test_targets() -> None:
    model = convnet()
    assert nin_targets(model, "input") == ["conv1"]
    assert nin_targets(model, "all") == ["conv1", "fc1"]
    assert nin_targets(model, ["fc1"]) == ["fc1"]
    assert attach_nins(model, "all").niw_norms().shape == (2,)


@pytest.mark.parametrize(
    ("where", "match"),
    [(["act1"], "not a Linear/Conv"), (["fc9"], "does not exist"), (["fc1", "fc1"], "once")],
)
def test_bad_targets(where: list[str], match: str) -> None:
    with pytest.raises(WalknoiseError, match=match):
        attach_nins(mlp(), where)


def test_bad_values() -> None:
    with pytest.raises(WalknoiseError, match="σ_ε"):
        attach_nins(mlp(), sigma_eps=-1.0)
    with pytest.raises(WalknoiseError, match="already carries"):
        attach_nins(attach_nins(mlp()))
    with pytest.raises(WalknoiseError, match="no Linear or Conv"):
        attach_nins(nn.Sequential(nn.ReLU()))
