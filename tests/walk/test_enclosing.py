"""σ copies fan out at the input of the block around a point that is not a cut of the graph:
the same cells as replicating the network's input, with the layers before the block run once
per sample."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

import walknoise
from tests.conftest import assert_same_accuracy, fit, learnable_data
from walknoise.walk import runner
from walknoise.walk.enclosing import enclosing


class Block(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc, self.act = nn.Linear(32, 32), nn.ReLU()

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return self.act(h + self.fc(h))


class Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.flatten, self.fc1, self.block = nn.Flatten(), nn.Linear(16, 32), Block()
        self.head = nn.Linear(32, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.block(self.fc1(self.flatten(x))))


def test_enclosing_modules_innermost_first() -> None:
    assert enclosing("s2b0.conv1") == ["s2b0"]
    assert enclosing("layer1.0.relu#2") == ["layer1.0", "layer1"]
    assert enclosing("fc1") == [] and enclosing("<input>") == []


def test_block_fan_out_gives_the_replicated_cells(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    x, y = learnable_data(400)
    model = fit(Net(), x, y, steps=100).eval()
    seen: list[int] = []
    model.fc1.register_forward_hook(lambda _m, _i, out: seen.append(len(out)))
    kw = dict(sigmas="log:1e-2:1e2:7", repeats=2, layers="block.fc", include_global=False,
              batch_size=100, progress=False)  # fmt: skip
    fast = walknoise.scan(model, (x, y), **kw)
    at_block = max(seen)
    seen.clear()
    monkeypatch.setattr(runner, "find_fan", lambda *a: None)  # replicate the input instead
    plain = walknoise.scan(model, (x, y), **kw)
    # before the block, one run per sample: no pass of fc1 larger than a batch, while
    # replicating the input runs fc1 on every σ copy
    assert at_block <= 100 < max(seen)
    assert_same_accuracy(fast.accuracy, plain.accuracy, n=len(y))
    # the same draws, another batch shape in the block: float32 rounding, far below 1e-5
    np.testing.assert_allclose(fast.dataset["loss"], plain.dataset["loss"], rtol=1e-5)
