"""A CIFAR-style ResNet-20 (He et al. 2016: 3 stages × 3 basic blocks, 16/32/64 channels)
for timing walks on 3×32×32 inputs; walknoise's zoo has none.

Built as an ``nn.Sequential`` of named steps (the ReLU after each residual addition is a step
of its own), with a 1×1 conv + BatchNorm shortcut where the shape changes (option B).
``random_data`` gives random images labelled by a (random-weight) model itself, for timing
and multiply-add counts only; ``train_mnist32``/``load_trained`` give a ResNet-20 trained on
the bundled MNIST as CIFAR-size input (``mnist32``), whose midpoints mean something.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn


class Block(nn.Module):
    """conv-bn-relu-conv-bn plus the shortcut; the ReLU after the sum is the next step."""

    def __init__(self, c_in: int, c_out: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.relu1 = nn.ReLU()
        self.conv2 = nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or c_in != c_out:
            self.shortcut = nn.Sequential(
                OrderedDict(
                    conv=nn.Conv2d(c_in, c_out, 1, stride, bias=False), bn=nn.BatchNorm2d(c_out)
                )
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.bn2(self.conv2(self.relu1(self.bn1(self.conv1(x)))))
        skip: torch.Tensor = self.shortcut(x)
        return out + skip


def resnet20(num_classes: int = 10) -> nn.Sequential:
    items: list[tuple[str, nn.Module]] = [
        ("conv1", nn.Conv2d(3, 16, 3, 1, 1, bias=False)),
        ("bn1", nn.BatchNorm2d(16)),
        ("relu", nn.ReLU()),
    ]
    c_in = 16
    for stage, c_out in enumerate((16, 32, 64), start=1):
        for b in range(3):
            stride = 2 if stage > 1 and b == 0 else 1
            items += [(f"s{stage}b{b}", Block(c_in, c_out, stride)), (f"s{stage}r{b}", nn.ReLU())]
            c_in = c_out
    items += [
        ("pool", nn.AdaptiveAvgPool2d(1)),
        ("flatten", nn.Flatten()),
        ("fc", nn.Linear(64, num_classes)),
    ]
    return nn.Sequential(OrderedDict(items))


def random_data(model: nn.Module, n: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """``n`` random 3×32×32 images labelled with the model's own predictions."""
    x = torch.randn(n, 3, 32, 32, generator=torch.Generator().manual_seed(seed))
    with torch.inference_mode():
        y = torch.cat([model(x[s : s + 500]).argmax(1) for s in range(0, n, 500)])
    return x, y


def mnist32(split: str) -> tuple[torch.Tensor, torch.Tensor]:
    """The bundled MNIST ``split`` as CIFAR-size input: 28×28 zero-padded to 32×32, the one
    channel repeated to three, pixels in [0, 1]."""
    from walknoise.data import load_mnist

    data = load_mnist(split)
    x = F.pad(data.x.reshape(-1, 1, 28, 28), (2, 2, 2, 2)).expand(-1, 3, -1, -1).contiguous()
    return x, data.y


def train_mnist32(path: Path, epochs: int = 2, seed: int = 0, n: int = 8000) -> dict[str, float]:
    """Train a ResNet-20 on the first ``n`` images of ``mnist32("train")`` (Adam, cosine
    schedule, seeded), save its state to ``path`` and return its accuracy on
    ``mnist32("test")`` and the seconds taken (2 epochs of 8,000: about 2.5 min on 2 cores)."""
    from walknoise.training import TrainConfig, seeded_init, train_model

    start = time.perf_counter()
    with seeded_init(seed):
        model = resnet20()
    x, y = mnist32("train")
    x, y = x[:n], y[:n]
    config = TrainConfig(epochs=epochs, lr=2e-3, batch_size=128, seed=seed)
    train_model(model, x, y, config, progress=False)
    torch.save(model.state_dict(), path)
    xt, yt = mnist32("test")
    with torch.inference_mode():
        hits = sum(
            int((model(xt[s : s + 500]).argmax(1) == yt[s : s + 500]).sum())
            for s in range(0, len(yt), 500)
        )
    return {"test_accuracy": hits / len(yt), "seconds": time.perf_counter() - start}


def load_trained(path: Path) -> nn.Sequential:
    """The ResNet-20 ``train_mnist32`` saved at ``path``, in eval mode."""
    model = resnet20()
    model.load_state_dict(torch.load(path, weights_only=True))
    return model.eval()
