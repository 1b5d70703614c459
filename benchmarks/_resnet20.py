"""A CIFAR-style ResNet-20 (He et al. 2016: 3 stages × 3 basic blocks, 16/32/64 channels)
for timing walks on 3×32×32 inputs; walknoise's zoo has none.

Built as an ``nn.Sequential`` of named steps (the ReLU after each residual addition is a step
of its own), with a 1×1 conv + BatchNorm shortcut where the shape changes (option B). The
benchmark uses random weights and random images labelled by the model itself: only the
timing and the multiply-adds matter, not the robustness numbers.
"""

from __future__ import annotations

from collections import OrderedDict

import torch
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
