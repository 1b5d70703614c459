"""The benchmark's own tools: the expert loop (a baseline must be right to be a baseline) and
the multiply-add counts it reports."""

from __future__ import annotations

import sys
from collections import OrderedDict
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import _expert_loop as expert
import _macs as macs


class Res(nn.Module):
    """A residual block: its inner modules are not cuts of the graph."""

    def __init__(self, c: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(c, c, 3, padding=1)
        self.act = nn.ReLU()
        self.skip = nn.Conv2d(c, c, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.conv(x)) + self.skip(x)


class Whole(nn.Module):
    """Not a Sequential: the expert loop must replicate its input."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(2, 3, 3)
        self.act = nn.ReLU()
        self.fc = nn.Linear(3 * 6 * 6, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.act(self.conv(x))
        return self.fc(h.flatten(1) + 0.1 * h.mean())


def cnn() -> nn.Module:
    items = OrderedDict(
        conv=nn.Conv2d(2, 3, 3),
        bn=nn.BatchNorm2d(3),
        act=nn.ReLU(),
        block=Res(3),
        pool=nn.MaxPool2d(2),
        flatten=nn.Flatten(),
        fc=nn.Linear(3 * 3 * 3, 4),
    )
    return nn.Sequential(items)


def reference(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    points: Sequence[str],
    sigmas: Sequence[float],
    repeats: int,
    batch: int,
) -> np.ndarray:
    """A full forward pass per (point, σ, repeat, batch) of the plain model, with a hook that
    adds the ε the expert loop documents it draws: no split, no stacking, no channels-last."""
    acc = np.zeros((len(points), len(sigmas), repeats))
    for i, point in enumerate(points):
        for r in range(repeats):
            gen = torch.Generator().manual_seed(expert.noise_seed(0, i, r))
            for b in range(0, len(x), batch):
                xb, yb = x[b : b + batch], y[b : b + batch]
                eps = torch.randn(forward(model, point, xb)[0].shape, generator=gen)
                for j, sigma in enumerate(sigmas):
                    logits = forward(model, point, xb, sigma * eps)[1]
                    acc[i, j, r] += int((logits.argmax(1) == yb).sum())
    return acc / len(x)


def forward(
    model: nn.Module, point: str, xb: torch.Tensor, noise: torch.Tensor | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """(the clean tensor at ``point``, the logits with ``noise`` added there)."""
    seen: list[torch.Tensor] = []

    def add(t: torch.Tensor) -> torch.Tensor:
        seen.append(t)
        return t if noise is None else t + noise

    if point == expert.INPUT:
        h = model.register_forward_pre_hook(lambda _m, a: (add(a[0]),))
    else:
        h = dict(model.named_modules())[point].register_forward_hook(lambda _m, _i, o: add(o))
    with torch.no_grad():
        logits = model(xb)
    h.remove()
    return seen[0], logits


@pytest.mark.parametrize("build", [cnn, Whole])
def test_expert_loop_matches_a_full_forward_per_cell_fed_the_same_noise(build: type) -> None:
    torch.manual_seed(0)
    model = build().eval()
    x = torch.randn(37, 2, 8, 8)
    with torch.no_grad():
        y = model(x).argmax(1)  # noise then lowers accuracy from 1 at σ → 0
    y[:5] = (y[:5] + 1) % 4  # and a few wrong labels, so that noise can also fix some
    names = [n for n, m in model.named_modules() if n and not list(m.children())]
    points = [expert.INPUT, *names]
    sigmas, repeats = [0.01, 0.3, 1.0, 3.0], 2
    # batches of 16, 16, 5; a budget of 2000 elements splits the σ into several passes
    got = expert.expert_walk(model, x, y, points, sigmas, repeats, batch_size=16, budget=2000)
    want = reference(model, x, y, points, sigmas, repeats, batch=16)
    # Same ε, but sums in another order (channels-last, other batch sizes in the kernels):
    # logits differ by ~1e-6 relative, which flips an argmax only at a near tie. Allow one
    # sample per cell and require nearly every cell to be equal.
    assert np.abs(got - want).max() <= 1 / len(x) + 1e-12
    assert (got == want).mean() >= 0.95
    assert want.min() < 0.5 < want.max()  # the noise matters: the test can fail


def test_count_macs_of_a_linear_layer() -> None:
    fc = nn.Linear(10, 5)
    assert macs.count_macs(lambda: fc(torch.randn(7, 10))) == 7 * 10 * 5 == 350


def test_count_macs_of_convolutions_match_the_formula() -> None:
    conv = nn.Conv2d(3, 8, 3, stride=2, padding=1)
    grouped = nn.Conv2d(4, 8, 3, groups=2)
    # batch × out channels × out positions × (in channels / groups) × kernel area
    assert macs.count_macs(lambda: conv(torch.randn(4, 3, 9, 9))) == 4 * 8 * 5 * 5 * 3 * 9
    assert macs.count_macs(lambda: grouped(torch.randn(2, 4, 6, 6))) == 2 * 8 * 4 * 4 * 2 * 9


def test_walk_macs_of_a_two_layer_mlp_by_hand() -> None:
    model = nn.Sequential(OrderedDict(fc1=nn.Linear(6, 4), act=nn.ReLU(), fc2=nn.Linear(4, 3)))
    points = ["<input>", "fc1", "act", "fc2"]
    n, sig, rep = 10, 3, 2  # 6 cells per point; fc1 is 24 multiply-adds, fc2 12
    # <input>: every cell runs both layers; fc1, act: fc1 once, fc2 per cell; fc2: once
    minimum = n * (6 * 36) + 2 * n * (24 + 6 * 12) + n * 36
    assert minimum == 4440
    assert macs.minimum_walk_macs(model, (6,), points, n, sig, rep) == minimum
    assert macs.naive_walk_macs(model, (6,), points, n, sig, rep) == 4 * 6 * n * 36 == 8640
    assert macs.minimum_walk_macs(model, (6,), points, n, sig, rep) <= 8640


def test_minimum_runs_a_residual_shortcut_once() -> None:
    model = cnn().eval()  # conv 2→3 on 8×8: 3·6·6·18; block.conv 3·6·6·27; skip 3·6·6·3
    conv, inner, skip, fc = 108 * 18, 108 * 27, 108 * 3, 4 * 27
    # noise after block.conv: conv, block.conv and the shortcut are clean, fc is noisy
    got = macs.minimum_walk_macs(model, (2, 8, 8), ["block.conv"], 1, 5, 1)
    assert got == conv + inner + skip + 5 * fc
    assert macs.forward_macs(model, (2, 8, 8)) == conv + inner + skip + fc
