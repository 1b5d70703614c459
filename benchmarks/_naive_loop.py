"""The naive loop ``bench_scan.py`` times: one full forward pass per (layer, σ, repeat) cell,
a hook adding fresh noise, over tensors in memory or the Walking Noise code's DataLoader."""

from __future__ import annotations

from collections.abc import Callable, Iterable

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

Batches = Callable[[], Iterable[tuple[torch.Tensor, torch.Tensor]]]


def tensor_batches(x: torch.Tensor, y: torch.Tensor, batch: int) -> Batches:
    """Slices of tensors already in memory: the fastest hand-written loop."""
    return lambda: ((x[s : s + batch], y[s : s + batch]) for s in range(0, len(x), batch))


class PerItemImages(Dataset[tuple[torch.Tensor, int]]):
    """Bytes turned into a float tensor per item, as torchvision's MNIST with ``ToTensor``
    does in the Walking Noise code (their ``data/MNIST.py``, ``Normalize(0.5, 0.5)`` off by
    default)."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor) -> None:
        self.raw = (x * 255).round().to(torch.uint8)  # walknoise's MNIST is pixels / 255
        self.y = y.tolist()

    def __len__(self) -> int:
        return len(self.y)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        return self.raw[i].float() / 255, self.y[i]


def reference_batches(x: torch.Tensor, y: torch.Tensor, batch: int) -> Batches:
    loader = DataLoader(PerItemImages(x, y), batch_size=batch)  # the reference's test loader
    return lambda: iter(loader)


def naive(
    model: nn.Module, batches: Batches, layers: list[str], sigmas: list[float], repeats: int
) -> np.ndarray:
    """One full forward pass per cell with a plain additive-noise hook."""
    modules = dict(model.named_modules())
    acc = np.zeros((len(layers), len(sigmas), repeats))
    for i, layer in enumerate(layers):
        for j, sigma in enumerate(sigmas):
            for r in range(repeats):
                gen = torch.Generator().manual_seed(1000 * i + r)

                def add(
                    t: torch.Tensor, s: float = sigma, g: torch.Generator = gen
                ) -> torch.Tensor:
                    return t + s * torch.randn(t.shape, generator=g)

                if layer == "<input>":
                    handle = model.register_forward_pre_hook(lambda _m, a: (add(a[0]),))
                else:
                    handle = modules[layer].register_forward_hook(lambda _m, _i, o: add(o))
                correct = total = 0
                with torch.inference_mode():
                    for xb, yb in batches():
                        correct += int((model(xb).argmax(1) == yb).sum())
                        total += len(yb)
                handle.remove()
                acc[i, j, r] = correct / total
    return acc
