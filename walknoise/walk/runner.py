"""Run the cells of a scan: clean reference, then one layer at a time, all σ of a repeat at once.

The runner knows nothing about files: it hands each finished layer to a callback, and the
caller (``walknoise.scan``) decides where it goes.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from walknoise.data import has_labels
from walknoise.errors import WalknoiseError
from walknoise.noise.inject import Fanout, cell_seed, hooks, make_generator
from walknoise.noise.kinds import Noise
from walknoise.noise.points import GLOBAL
from walknoise.noise.sites import tap
from walknoise.walk.batchstats import mixes_samples
from walknoise.walk.metrics import BatchStats, extra, score

ELEMENT_BUDGET = 2**21  # activation elements per stacked forward pass


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


def batches(x: torch.Tensor, y: torch.Tensor, size: int) -> Iterable[tuple[torch.Tensor, ...]]:
    for start in range(0, len(x), size):
        yield x[start : start + size], y[start : start + size]


def clean_pass(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
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
    stats, classes, labelled = None, 0, has_labels(y)
    try:
        with torch.inference_mode():
            for xb, yb in batches(x, y, batch_size):
                logits = model(xb)
                if stats is None:
                    classes = int(logits.shape[-1])
                    _check_labels(y, classes)
                    stats = BatchStats.zeros(1, x.device)
                    uniform = torch.zeros_like(logits[:1])
                c, loss, fin = _score(logits.unsqueeze(0), yb, labelled)
                stats.correct += c
                stats.loss_sum += loss
                stats.finite += fin
                stats.add_extra(slice(None), logits.unsqueeze(0), yb, logits, min(topk, classes))
                # KL(p_clean ‖ uniform): the clean logits as "clean", uniform ones as "noisy"
                # (add_extra counted the rows and added KL 0 of the clean output from itself)
                assert stats.kl_sum is not None
                stats.kl_sum += extra(uniform.expand_as(logits).unsqueeze(0), yb, logits, 1)[2]
                stats.total += len(yb)
    finally:
        for h in handles:
            h.remove()
    assert stats is not None
    stats.labelled = labelled
    std = {p: _std(s) for p, s in sums.items()}
    k = min(topk, classes)
    return Clean(
        float(stats.accuracy()[0]),
        float(stats.mean_loss()[0]),
        classes,
        std,
        float(stats.topk_accuracy()[0]),
        float(stats.mean_kl()[0]),
        k,
    )


def _score(logits: torch.Tensor, y: torch.Tensor, labelled: bool) -> tuple[torch.Tensor, ...]:
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


class CellCounter:
    """Drives a progress bar counted in cells from the fractions ``LayerRunner`` reports per
    batch: shown as whole cells as they accumulate; a finished layer tops its count up to the
    exact number of cells (layers computed elsewhere report nothing until then)."""

    def __init__(self, bar: Any) -> None:
        self.bar = bar
        self._done, self._shown = 0.0, 0

    def advance(self, cells: float) -> None:
        self._done += cells
        step = int(self._done) - self._shown
        if step > 0:
            self.bar.update(step)
            self._shown += step

    def layer_done(self, cells: int) -> None:
        if cells > self._shown:
            self.bar.update(cells - self._shown)
        self._done, self._shown = 0.0, 0


class LayerRunner:
    """Evaluates all (σ, repeat) cells of one scan entry."""

    def __init__(
        self,
        model: nn.Module,
        x: torch.Tensor,
        y: torch.Tensor,
        noise: Noise,
        sigmas: Sequence[float],
        *,
        batch_size: int,
        max_batch: int,
        widths: Mapping[str, int] | None = None,
        progress: Callable[[float], None] | None = None,
        topk: int | None = None,
    ) -> None:
        """``progress`` is called after each batch with the cells it finished: the batch's
        share of the samples, once per σ. With ``topk`` set, the stats also hold top-``topk``
        accuracy, agreement with the clean model and KL from it, at the price of one clean
        forward pass per batch (without it, those sums stay zero)."""
        self.model, self.x, self.y, self.noise = model, x, y, noise
        self.topk = topk
        self.progress = progress
        self.sigmas = torch.tensor(list(sigmas), dtype=torch.float32, device=x.device)
        self.batch_size, self.max_batch = batch_size, max_batch
        self.widths = dict(widths or {})
        self._mixes: dict[tuple[str, ...], bool] = {}

    def chunk(self, batch: int, points: Sequence[str]) -> int:
        """σ copies per forward pass: within ``max_batch`` samples and the element budget.

        The budget bounds the widest activation the stacked copies meet after the point;
        stacks that outgrow the CPU cache run slower, not faster (measured on LeNet-5).
        A model whose samples meet in a batch statistic gets one copy per pass: its batch is
        then exactly the ``batch_size`` samples the user chose, whatever the grid.
        """
        if self.mixes(points):
            return 1
        width = max((self.widths.get(p, 1) for p in points), default=1)
        return max(1, min(self.max_batch // batch, ELEMENT_BUDGET // (batch * width)))

    def mixes(self, points: Sequence[str]) -> bool:
        """Whether a sample's output depends on the others in its batch (probed once)."""
        key = tuple(points)
        if key not in self._mixes:
            self._mixes[key] = mixes_samples(self.model, self.x, points)
        return self._mixes[key]

    def run_repeat(
        self, layer: str, points: Sequence[str], scales: Sequence[float], seed: int, repeat: int
    ) -> BatchStats:
        """One repeat of one entry: the same draws as ``run`` gives that repeat."""
        gen = make_generator(cell_seed(seed, layer, repeat), self.x.device)
        return self._repeat(points, scales, gen)

    def run_repeats(
        self,
        layer: str,
        points: Sequence[str],
        scales: Sequence[float],
        seed: int,
        repeats: int,
        metric: str = "accuracy",
    ) -> np.ndarray:
        """``metric`` of each repeat at the runner's single σ, the repeats stacked as copies:
        each draws from its own generator what ``run_repeat`` draws for it alone."""
        if len(self.sigmas) != 1:
            raise ValueError("run_repeats needs a runner of one σ")  # a bug, not user input
        gens = [make_generator(cell_seed(seed, layer, r), self.x.device) for r in range(repeats)]
        stacked = LayerRunner(
            self.model, self.x, self.y, self.noise, [float(self.sigmas[0])] * repeats,
            batch_size=self.batch_size, max_batch=self.max_batch, widths=self.widths,
            topk=self.topk,
        )  # fmt: skip
        return stacked._repeat(points, scales, None, gens).values(metric)

    def _repeat(
        self,
        points: Sequence[str],
        scales: Sequence[float],
        gen: torch.Generator | None,
        gens: Sequence[torch.Generator] | None = None,
    ) -> BatchStats:
        self.mixes(points)  # probed now, with no noise hooks in the way
        fanout_ok: bool | None = None  # undecided until a pass stacks two copies
        fo = Fanout(sigmas=self.sigmas)
        stats = BatchStats.zeros(len(self.sigmas), self.x.device)
        stats.labelled = labelled = has_labels(self.y)
        clean = self._clean_logits() if self.topk is not None else None
        with (
            hooks(self.model, points, fo, self.noise, [gen] * len(points), scales),
            torch.inference_mode(),
        ):
            for b, (xb, yb) in enumerate(batches(self.x, self.y, self.batch_size)):
                fo.new_batch(len(xb))
                chunk = self.chunk(len(xb), points)
                for start in range(0, len(self.sigmas), chunk):
                    sig = self.sigmas[start : start + chunk]
                    if gens is None:
                        fo.new_chunk(sig)
                    else:
                        fo.new_copies(sig, gens[start : start + chunk])
                    logits, fanout_ok = self._forward(xb, fo, fanout_ok)
                    c, ls, fin = _score(logits.reshape(len(sig), len(xb), -1), yb, labelled)
                    stats.correct[start : start + chunk] += c
                    stats.loss_sum[start : start + chunk] += ls
                    stats.finite[start : start + chunk] += fin
                    if clean is not None and self.topk is not None:
                        stats.add_extra(slice(start, start + chunk), logits.reshape(
                            len(sig), len(xb), -1), yb, clean[b], self.topk)  # fmt: skip
                stats.total += len(yb)
                if self.progress is not None:
                    self.progress(len(self.sigmas) * len(xb) / len(self.x))
        return stats

    def _clean_logits(self) -> list[torch.Tensor]:
        """The clean model's logits, one tensor per batch, computed without noise hooks
        (before they are attached: one clean forward pass per batch)."""
        with torch.inference_mode():
            return [self.model(xb) for xb, _ in batches(self.x, self.y, self.batch_size)]

    def _forward(
        self, xb: torch.Tensor, fo: Fanout, fanout_ok: bool | None
    ) -> tuple[torch.Tensor, bool | None]:
        """Fan out at the noisy point when it is a cut of the graph, else replicate the input.

        Whether fan-out works is found on the first pass that stacks two or more copies of a
        batch of two or more samples: a skip connection around the point meets a tensor of
        the wrong batch size and fails, or the output comes back with the wrong batch size;
        either way the replicated input is correct. A pass of one copy proves nothing (its
        fan-out is the batch itself), nor does a batch of one (it broadcasts silently at a
        skip connection), so those leave the question open for a later chunk or batch.
        """
        copies = fo.copies
        if copies == 1:
            return self.model(xb), fanout_ok
        if fanout_ok is None and len(xb) > 1:
            try:
                out = self.model(xb)
                if out.shape[0] == copies * len(xb):
                    return out, True
            except (RuntimeError, WalknoiseError):
                pass
            fo.new_chunk(fo.sigmas)  # replay the ε already drawn, in the same order
            fanout_ok = False
        if fanout_ok:
            return self.model(xb), True
        rep = xb.unsqueeze(0).expand(copies, *xb.shape).reshape(copies * len(xb), *xb.shape[1:])
        return self.model(rep), fanout_ok


def entries(points: Sequence[str], include_global: bool) -> list[str]:
    """The scan's layer axis: each point, then ``<global>``."""
    # with one point, noise "everywhere" is that point: nothing new to compute
    return [*points, GLOBAL] if include_global and len(points) > 1 else list(points)
