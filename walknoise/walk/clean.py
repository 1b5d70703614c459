"""The clean reference of a scan, and the data a scan walks as a stream of batches.

:class:`Batches` is all the runner asks of data: numbered batches from any batch on, and a
few samples for probes. :class:`Tensors` is data in memory; ``walknoise.sources`` streams
files and user datasets with the same interface.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import torch
from torch import nn

from walknoise.data import has_labels
from walknoise.errors import WalknoiseError
from walknoise.noise.sites import tap
from walknoise.sources import InMemory, Source
from walknoise.walk.metrics import BatchStats, extra, score


class Batches(Protocol):
    """Data as the runner reads it."""

    @property
    def labelled(self) -> bool: ...

    def batches(
        self, batch_size: int, start: int = 0
    ) -> Iterator[tuple[int, torch.Tensor, torch.Tensor]]:
        """(batch index, x, y) for batch ``start`` on, in sample order."""
        ...

    def head(self, n: int) -> torch.Tensor:
        """The first ``n`` inputs."""
        ...

    def __len__(self) -> int: ...


@dataclass(frozen=True)
class Tensors:
    """Data in memory (on the scan's device) as :class:`Batches`."""

    x: torch.Tensor
    y: torch.Tensor

    @property
    def labelled(self) -> bool:
        return has_labels(self.y)

    def batches(
        self, batch_size: int, start: int = 0
    ) -> Iterator[tuple[int, torch.Tensor, torch.Tensor]]:
        for b in range(start, -(-len(self.x) // batch_size)):
            sl = slice(b * batch_size, (b + 1) * batch_size)
            yield b, self.x[sl], self.y[sl]

    def head(self, n: int) -> torch.Tensor:
        return self.x[:n]

    def __len__(self) -> int:
        return len(self.x)

    def on(self, device: torch.device) -> Tensors:
        return Tensors(self.x.to(device), self.y.to(device))


@dataclass(frozen=True)
class Streamed:
    """A :class:`~walknoise.sources.Source` read batch by batch onto ``device`` as ``dtype``:
    what a worker receives is the source's recipe, never its tensors."""

    source: Source
    device: torch.device
    dtype: torch.dtype = torch.float32

    @property
    def labelled(self) -> bool:
        return self.source.labelled

    def batches(
        self, batch_size: int, start: int = 0
    ) -> Iterator[tuple[int, torch.Tensor, torch.Tensor]]:
        for b, x, y in self.source.batches(batch_size, start):
            yield b, x.to(self.device, self.dtype), y.to(self.device)

    def head(self, n: int) -> torch.Tensor:
        return self.source.head(n).to(self.device, self.dtype)

    def __len__(self) -> int:
        return len(self.source)

    def on(self, device: torch.device) -> Streamed:
        return Streamed(self.source, device, self.dtype)


def batches_of(source: Source, device: torch.device, dtype: torch.dtype) -> Tensors | Streamed:
    """Data in memory stays there, on ``device`` (faster for what fits); other sources stream."""
    if isinstance(source, InMemory):
        return Tensors(source.data.x.to(device, dtype), source.data.y.to(device))
    return Streamed(source, device, dtype)


@dataclass(frozen=True)
class Clean:
    """The model without noise on the scan's data."""

    accuracy: float
    loss: float
    num_classes: int
    output_std: dict[str, float]
    """Std of each point's clean output (over all samples and elements), for relative σ."""
    topk_accuracy: float = float("nan")
    """Clean top-``topk`` accuracy."""
    kl_uniform: float = float("nan")
    """Mean over samples of KL(p_clean ‖ uniform) = log C − H(p_clean): the KL metric's end."""
    topk: int = 1
    """The k of ``topk_accuracy``."""


def clean_pass(
    model: nn.Module,
    data: Batches,
    points: Sequence[str],
    batch_size: int,
    topk: int = 1,
) -> Clean:
    """Clean accuracy, top-``topk`` accuracy and loss, the mean KL of the clean output
    distribution from uniform, and the output std of every point (one pass over the data)."""
    sums = {p: torch.zeros(3, dtype=torch.float64) for p in points}

    def record(name: str) -> Callable[[torch.Tensor], None]:
        def hook(t: torch.Tensor) -> None:
            t64 = t.detach().double()
            sums[name] += torch.stack(
                [t64.sum(), (t64 * t64).sum(), torch.tensor(float(t64.numel()))]
            ).cpu()

        return hook

    handles = [h for p in points for h in tap(model, p, record(p))]  # the noise's own tensor
    stats = BatchStats.zeros(1, data.head(1).device)
    stats.labelled = data.labelled
    classes = 0
    try:
        with torch.inference_mode():
            for _, xb, yb in data.batches(batch_size):
                logits = model(xb)
                classes = add_clean(stats, logits, yb, topk)
    finally:
        for h in handles:
            h.remove()
    return clean_of(stats, classes, topk, {p: _std(s) for p, s in sums.items()})


def add_clean(stats: BatchStats, logits: torch.Tensor, yb: torch.Tensor, topk: int) -> int:
    """Add one batch's clean logits to ``stats`` (one copy); the number of classes."""
    classes = int(logits.shape[-1])
    _check_labels(yb, classes)
    c, loss, fin = score_of(logits.unsqueeze(0), yb, stats.labelled)
    stats.correct += c
    stats.loss_sum += loss
    stats.finite += fin
    stats.add_extra(slice(None), logits.unsqueeze(0), yb, logits, topk)
    # KL(p_clean ‖ uniform): the clean logits as "clean", uniform ones as "noisy" (add_extra
    # counted the rows and added KL 0 of the clean output from itself)
    assert stats.kl_sum is not None
    uniform = torch.zeros_like(logits[:1]).expand_as(logits)
    stats.kl_sum += extra(uniform.unsqueeze(0), yb, logits, 1)[2]
    stats.total += len(yb)
    return classes


def clean_of(stats: BatchStats, classes: int, topk: int, output_std: dict[str, float]) -> Clean:
    """The :class:`Clean` reference from the sums of :func:`add_clean`."""
    return Clean(
        float(stats.accuracy()[0]),
        float(stats.mean_loss()[0]),
        classes,
        output_std,
        float(stats.topk_accuracy()[0]),
        float(stats.mean_kl()[0]),
        min(topk, classes),
    )


def score_of(logits: torch.Tensor, y: torch.Tensor, labelled: bool) -> tuple[torch.Tensor, ...]:
    """:func:`score`, or for data without labels zero counts and only the finite rows."""
    if labelled:
        return score(logits, y)
    zero = torch.zeros(logits.shape[0], dtype=torch.int64, device=logits.device)
    return zero, zero.double(), torch.isfinite(logits).all(dim=-1).sum(dim=1)


def _check_labels(y: torch.Tensor, classes: int) -> None:
    if int(y.max()) >= classes:
        raise WalknoiseError(
            f"labels go up to {int(y.max())} but the model has {classes} outputs; "
            "pass data whose labels are 0..classes-1"
        )


def _std(s: torch.Tensor) -> float:
    total, sq, n = s.tolist()
    mean = total / n
    return float(np.sqrt(max(sq / n - mean * mean, 0.0)))
