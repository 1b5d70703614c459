"""σ copies fan out inside a residual block through its traced graph (lazy broadcasting):
the same numbers as replicating the network's input, with the layers before the point (and
the shortcut) run once per sample; a block fx cannot trace falls back to its input."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
import torch
from torch import nn

from benchmarks._macs import count_macs, module_macs
from benchmarks._resnet20 import Block
from tests.conftest import assert_same_accuracy
from walknoise.noise.kinds import make_noise
from walknoise.walk import runner
from walknoise.walk.clean import Tensors
from walknoise.walk.enclosing import FanAt

SIGMAS = [0.05, 0.2, 0.5, 1.0, 3.0]


def _randomize_bn(model: nn.Module) -> nn.Module:
    """Eval-mode BatchNorm with running statistics that are not the identity."""
    gen = torch.Generator().manual_seed(1)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.copy_(torch.randn(m.num_features, generator=gen) * 0.1)
            m.running_var.copy_(torch.rand(m.num_features, generator=gen) + 0.5)
    return model.eval()


class ResNetLike(nn.Module):
    """benchmarks/_resnet20.py blocks: one plain, one with a 1×1 conv shortcut."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.stem, self.act = nn.Conv2d(3, 8, 3, padding=1), nn.ReLU()
        self.b1, self.r1 = Block(8, 8, 1), nn.ReLU()
        self.b2, self.r2 = Block(8, 16, 2), nn.ReLU()
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(16, 4))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.r1(self.b1(self.act(self.stem(x))))
        out: torch.Tensor = self.head(self.r2(self.b2(h)))
        return out


class BasicBlock(nn.Module):
    """torchvision's: one in-place ReLU called twice, ``out += identity`` with no module on
    the skip, a downsample shortcut where the shape changes."""

    def __init__(self, c_in: int, c_out: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False)
        self.bn1, self.relu = nn.BatchNorm2d(c_out), nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.downsample: nn.Module | None = None
        if stride != 1 or c_in != c_out:
            self.downsample = nn.Sequential(
                nn.Conv2d(c_in, c_out, 1, stride, bias=False), nn.BatchNorm2d(c_out)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        if self.downsample is not None:
            identity = self.downsample(x)
        out += identity
        out = self.relu(out)
        return out


class TorchvisionLike(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.stem = nn.Conv2d(3, 8, 3, padding=1)
        self.layer1 = nn.Sequential(BasicBlock(8, 8, 1), BasicBlock(8, 16, 2))
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(16, 4))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.head(self.layer1(self.stem(x)))
        return out


class Branchy(nn.Module):
    """A residual block with a data-dependent branch: fx cannot trace it."""

    def __init__(self) -> None:
        super().__init__()
        self.conv, self.bn, self.act = nn.Conv2d(8, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.bn(self.conv(x))
        if bool(h.isfinite().all()):
            h = self.act(h)
        return h + x


class Untraceable(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.stem, self.block = nn.Conv2d(3, 8, 3, padding=1), Branchy()
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 4))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.head(self.block(self.stem(x)))
        return out


def _data(n: int = 60) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(2)
    return torch.randn(n, 3, 8, 8, generator=gen), torch.randint(0, 4, (n,), generator=gen)


def _runner(model: nn.Module, n: int = 60, batch: int = 25) -> runner.LayerRunner:
    x, y = _data(n)
    return runner.LayerRunner(
        model, Tensors(x, y), make_noise("combined"), SIGMAS, batch_size=batch, max_batch=4096
    )


def _cells(model: nn.Module, point: str) -> tuple[np.ndarray, np.ndarray]:
    stats = _runner(model).run_repeat(point, [point], [1.0], 7, 0)
    return stats.loss_sum.double().numpy(), stats.accuracy()


def _spy(monkeypatch: pytest.MonkeyPatch) -> dict[str, FanAt | None]:
    chosen: dict[str, FanAt | None] = {}
    real = runner.find_fan

    def spy(model: nn.Module, point: str, *args: Any) -> FanAt | None:
        chosen[point] = at = real(model, point, *args)
        return at

    monkeypatch.setattr(runner, "find_fan", spy)
    return chosen


CASES: list[tuple[Callable[[], nn.Module], str, str | None]] = [
    # (model, point, the block whose traced graph runs; None: the point is a cut)
    (ResNetLike, "b1.conv1", "b1"),
    (ResNetLike, "b1.relu1", "b1"),
    (ResNetLike, "b1.bn2", "b1"),
    (ResNetLike, "b2.conv1", "b2"),
    (ResNetLike, "b2.shortcut.conv", "b2"),  # inside the shortcut, outside the sum
    (ResNetLike, "b2.shortcut.bn", "b2"),
    (ResNetLike, "r1", None),  # after the sum
    (TorchvisionLike, "layer1.0.conv1", "layer1.0"),
    (TorchvisionLike, "layer1.0.relu", "layer1.0"),  # the ReLU's first call
    (TorchvisionLike, "layer1.0.bn2", "layer1.0"),
    (TorchvisionLike, "layer1.1.downsample.0", "layer1.1"),
    (TorchvisionLike, "layer1.1.conv2", "layer1.1"),
    (TorchvisionLike, "layer1.1.relu#2", None),  # its second call, after the sum
]


@pytest.mark.parametrize(("make", "point", "block"), CASES)
def test_traced_block_gives_the_replicated_cells(
    make: Callable[[], nn.Module], point: str, block: str | None, monkeypatch: pytest.MonkeyPatch
) -> None:
    model = _randomize_bn(make())
    chosen = _spy(monkeypatch)
    loss, acc = _cells(model, point)
    at = chosen.get(point)
    if block is None:
        assert point not in chosen  # a cut: the copies fan out at the point itself
    else:
        assert at is not None and at.name == block and at.graph is not None
    monkeypatch.setattr(runner, "find_fan", lambda *a: None)  # replicate the network input
    want_loss, want_acc = _cells(model, point)
    # the same ε, another batch layout before the point: float32 rounding (~1e-6 relative
    # after a few layers); a wrong broadcast would move the loss by far more than 1e-5
    np.testing.assert_allclose(loss, want_loss, rtol=1e-5)
    assert_same_accuracy(acc, want_acc, n=60)
    assert not np.allclose(want_loss[0], want_loss[-1])  # σ matters: the check has teeth


def test_untraceable_block_falls_back_to_its_input(monkeypatch: pytest.MonkeyPatch) -> None:
    model = _randomize_bn(Untraceable())
    chosen = _spy(monkeypatch)
    loss, acc = _cells(model, "block.conv")
    at = chosen["block.conv"]
    assert at is not None and at.name == "block" and at.graph is None  # its input replicated
    monkeypatch.setattr(runner, "find_fan", lambda *a: None)
    want_loss, want_acc = _cells(model, "block.conv")
    np.testing.assert_allclose(loss, want_loss, rtol=1e-5)  # as above
    assert_same_accuracy(acc, want_acc, n=60)


def _per_sample_macs(model: nn.Module, x: torch.Tensor) -> dict[str, int]:
    """Each conv/linear module's multiply-adds for one sample, from a clean pass."""
    macs: dict[str, int] = {}
    handles = [
        m.register_forward_hook(
            lambda mod, _i, out, name=name: macs.__setitem__(name, module_macs(mod, out.shape))
        )
        for name, m in model.named_modules()
        if isinstance(m, nn.Conv2d | nn.Linear)
    ]
    with torch.inference_mode():
        model(x[:2])
    for h in handles:
        h.remove()
    return macs


def test_prefix_inside_the_block_runs_once_per_sample() -> None:
    model = _randomize_bn(ResNetLike())
    run = _runner(model, n=40, batch=40)
    # bn2's tensor meets the skip (no linear module takes it alone: the copies cannot fan
    # out after one, see walknoise.noise.linear): the traced block runs
    run.run_repeat("b2.bn2", ["b2.bn2"], [1.0], 7, 0)  # probes, once
    assert run.probed.enclosing[("b2.bn2",)] is not None
    counted = count_macs(lambda: run.run_repeat("b2.bn2", ["b2.bn2"], [1.0], 7, 1))
    macs = _per_sample_macs(model, _data(2)[0])
    after = {"head.2"}  # the layers that depend on the point
    # b2's convolutions and its shortcut's, before the sum, run once per sample
    once = sum(v for k, v in macs.items() if k not in after)
    # exact: the counter counts every conv and matrix product the pass issues
    assert counted == 40 * once + 40 * len(SIGMAS) * sum(macs[k] for k in after)


class TwoCalls(nn.Module):
    """One ReLU object called twice before the sum: ``act#2`` is its second call."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.stem, self.act = nn.Conv2d(3, 8, 3, padding=1), nn.ReLU()
        self.conv1, self.conv2 = nn.Conv2d(8, 8, 3, padding=1), nn.Conv2d(8, 8, 3, padding=1)
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 4))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.stem(x)
        out: torch.Tensor = self.head(self.act(self.conv2(self.act(self.conv1(h)))) + h)
        return out


class Recurrent(nn.Module):
    """A residual block around an LSTM: the point's module returns a tuple."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.rnn, self.head = nn.LSTM(24, 24, batch_first=True), nn.Linear(24, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = x.reshape(len(x), 8, 24)
        seq, _ = self.rnn(h)
        out: torch.Tensor = self.head((seq + h).mean(1))
        return out


@pytest.mark.parametrize(
    ("make", "point", "traced"),
    [
        (TwoCalls, "act#2", True),  # the root is the block: traced, the first call clean
        (TwoCalls, "conv1", True),
        (Recurrent, "rnn", False),  # a tuple at the point: not traced, the input replicated
    ],
)
def test_calls_and_tuples_at_the_root(
    make: Callable[[], nn.Module], point: str, traced: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    model = make().eval()
    chosen = _spy(monkeypatch)
    loss, acc = _cells(model, point)
    at = chosen[point]
    assert (at is not None and at.name == "" and at.graph is not None) == traced
    monkeypatch.setattr(runner, "find_fan", lambda *a: None)
    want_loss, want_acc = _cells(model, point)
    np.testing.assert_allclose(loss, want_loss, rtol=1e-5)  # as above
    assert_same_accuracy(acc, want_acc, n=60)


class SharedUpdate(nn.Module):
    """A batched value updated in place by the copies, then read again: its replica would
    take the update, not the value the later reader sees, so the graph is not used."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.stem, self.block = nn.Conv2d(3, 8, 3, padding=1), nn.Sequential()
        self.block.add_module("conv", nn.Conv2d(8, 8, 3, padding=1))
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 4))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.stem(x)
        s = h * 2
        t = s.add_(self.block(h))  # eager: s itself now holds the copies
        out: torch.Tensor = self.head(t + s.sum(dim=1, keepdim=True))
        return out


def test_shared_in_place_update_is_not_traced(monkeypatch: pytest.MonkeyPatch) -> None:
    model = SharedUpdate().eval()
    chosen = _spy(monkeypatch)
    loss, acc = _cells(model, "block.conv")
    at = chosen["block.conv"]
    assert at is None or at.graph is None
    monkeypatch.setattr(runner, "find_fan", lambda *a: None)
    want_loss, want_acc = _cells(model, "block.conv")
    np.testing.assert_allclose(loss, want_loss, rtol=1e-5)  # as above
    assert_same_accuracy(acc, want_acc, n=60)
