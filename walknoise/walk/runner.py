"""Run the cells of a scan: per batch, the clean prefix once and every σ of a repeat after it.

A cell group is one (layer, repeat): every σ as a copy of the batch, all scaled from one ε.
Its noise for batch ``b`` comes from a generator seeded by (seed, layer, repeat, b), so any
order of batches and cells gives the same numbers: a scan may stream its data once for all
cells (``walknoise.walk.stream``) or compute one layer at a time.

The runner knows nothing about files: callers decide where the sums go.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import torch
from torch import nn

from walknoise.errors import WalknoiseError
from walknoise.noise.inject import Fanout, batch_seed, hooks, make_generator
from walknoise.noise.kinds import Noise
from walknoise.noise.linear import linear_hook, linear_successors
from walknoise.noise.points import GLOBAL
from walknoise.walk.batchstats import PROBE_SAMPLES, mixes_samples
from walknoise.walk.budget import element_budget
from walknoise.walk.clean import Batches, score_of
from walknoise.walk.enclosing import FAN_PROBE, FanAt, find_fan, probing, replicated
from walknoise.walk.metrics import BatchStats, all_sums


class CellCounter:
    """Drives a progress bar counted in cells from the fractions ``LayerRunner`` reports per
    batch, shown as whole cells as they accumulate; each finished layer makes sure its exact
    number of cells is shown (layers computed elsewhere report nothing until then)."""

    def __init__(self, bar: Any) -> None:
        self.bar = bar
        self._done, self._finished, self._shown = 0.0, 0, 0

    def advance(self, cells: float) -> None:
        self._done += cells
        self._show(int(self._done + 1e-9))

    def layer_done(self, cells: int) -> None:
        self._finished += cells
        self._done = max(self._done, float(self._finished))
        self._show(self._finished)

    def _show(self, n: int) -> None:
        if n > self._shown:
            self.bar.update(n - self._shown)
            self._shown = n


@dataclass
class Probed:
    """What runners of one model found about it, per set of points."""

    mixes: dict[tuple[str, ...], bool] = field(default_factory=dict)
    """Whether a sample's output depends on the others in its batch."""
    fans: dict[tuple[str, ...], bool | None] = field(default_factory=dict)
    """Whether σ copies fan out at the points (``None``: not known yet)."""
    enclosing: dict[tuple[str, ...], FanAt | None] = field(default_factory=dict)
    """Where copies fan out when not at the points: inside or at the input of a module
    around them, its traced graph kept (``None``: the network's input)."""
    successors: dict[str, str] | None = None
    """Point -> the linear module that alone takes its tensor (``None``: not traced yet)."""


@dataclass(frozen=True)
class Group:
    """The cells one forward pass serves: a scan entry's noise for each of ``repeats`` at
    every σ of the runner, ``len(repeats) × len(sigmas)`` copies, repeat-major (the stats'
    rows in that order). The layers before the point run once for all of them."""

    layer: str
    """The scan entry (seeds the noise)."""
    points: tuple[str, ...]
    scales: tuple[float, ...]
    seed: int
    repeats: tuple[int, ...]


class LayerRunner:
    """Evaluates cell groups of one model over one σ stack, batch by batch."""

    def __init__(
        self,
        model: nn.Module,
        data: Batches,
        noise: Noise,
        sigmas: Sequence[float],
        *,
        batch_size: int,
        max_batch: int,
        widths: Mapping[str, int] | None = None,
        progress: Callable[[float], None] | None = None,
        topk: int | None = None,
        device: torch.device | None = None,
        probed: Probed | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        """``progress`` is called after each batch with the cells it finished: the batch's
        share of the samples, once per σ. With ``topk`` set, the stats also hold top-``topk``
        accuracy, agreement with the clean model and KL from it, at the price of one clean
        forward pass per batch (without it, those sums stay zero). ``device``: where the
        batches go (default: where ``data`` keeps them)."""
        self.model, self.data, self.noise = model, data, noise
        self.topk, self.progress = topk, progress
        self.device = device or data.head(1).device
        self.sigmas = torch.tensor(list(sigmas), dtype=torch.float32, device=self.device)
        self.batch_size, self.max_batch = batch_size, max_batch
        self.widths = dict(widths or {})
        self.probed = probed or Probed()
        self.dtype = dtype  # of the noisy passes (autocast); None: the model's own
        self.budget = element_budget(self.device)  # activation elements per pass
        self._mixes, self._fans = self.probed.mixes, self.probed.fans

    def run_repeat(
        self, layer: str, points: Sequence[str], scales: Sequence[float], seed: int, repeat: int
    ) -> BatchStats:
        """One repeat of one entry at every σ."""
        return self.run(Group(layer, tuple(points), tuple(scales), seed, (repeat,)))

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
        each draws what ``run_repeat`` draws for it alone."""
        if len(self.sigmas) != 1:
            raise ValueError("run_repeats needs a runner of one σ")  # a bug, not user input
        group = Group(layer, tuple(points), tuple(scales), seed, tuple(range(repeats)))
        return self.run(group).values(metric)

    def run(self, group: Group) -> BatchStats:
        """Every batch of the data for one group."""
        stats = self.zeros(len(group.repeats))
        for b, xb, yb in self.data.batches(self.batch_size):
            xb, yb = self.to_device(xb, yb)
            self.add_batch(group, b, xb, yb, self.clean_logits(xb), stats)
        return stats

    def zeros(self, repeats: int = 1) -> BatchStats:
        """Empty sums for ``repeats`` repeats of every σ."""
        stats = BatchStats.zeros(repeats * len(self.sigmas), self.device)
        stats.labelled = self.data.labelled
        return stats

    def to_device(self, xb: torch.Tensor, yb: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return xb.to(self.device, non_blocking=True), yb.to(self.device, non_blocking=True)

    def clean_logits(self, xb: torch.Tensor) -> torch.Tensor | None:
        """The batch's clean logits when the extra metrics need them (no hooks attached)."""
        if self.topk is None:
            return None
        with torch.inference_mode():
            return self._model(xb)

    def add_batch(
        self,
        group: Group,
        b: int,
        xb: torch.Tensor,
        yb: torch.Tensor,
        clean: torch.Tensor | None,
        stats: BatchStats,
    ) -> None:
        """Add batch ``b`` (``xb``, ``yb``, the clean logits) of ``group`` to ``stats``.

        Repeats are stacked as far as ``max_batch`` allows a pass of two samples (a window's
        least); the rest run in further passes, each repeat with the same draws."""
        per = len(self.sigmas)
        fit = max(1, self.max_batch // (min(2, len(xb)) * per))
        for i in range(0, len(group.repeats), fit):
            part = replace(group, repeats=group.repeats[i : i + fit])
            rows = stats.rows(slice(i * per, (i + len(part.repeats)) * per))  # views
            self._add_repeats(part, b, xb, yb, clean, rows)
        stats.total += len(yb)
        if self.progress is not None:
            self.progress(len(group.repeats) * per * len(xb) / len(self.data))

    def _add_repeats(
        self,
        group: Group,
        b: int,
        xb: torch.Tensor,
        yb: torch.Tensor,
        clean: torch.Tensor | None,
        stats: BatchStats,
    ) -> None:
        points = group.points
        self.mixes(points, xb)  # probed now, on this batch, with no noise hooks in the way
        gens = [
            make_generator(batch_seed(group.seed, group.layer, r, b), self.device)
            for r in group.repeats
        ]
        # one repeat draws from the hooks' own generator; several from Fanout.gens
        shared = gens[0] if len(gens) == 1 else None
        fo = Fanout(sigmas=self.sigmas)
        fo.new_batch(len(xb))
        after = self._linear_after(points, xb)
        noisy = (
            linear_hook(self.model, after, fo, self.noise, shared, group.scales[0])
            if after is not None
            else hooks(self.model, points, fo, self.noise, [shared] * len(points), group.scales)
        )
        with noisy, torch.inference_mode(), self._autocast():
            if len(points) == 1 and not self.mixes(points):
                self._windows(points, fo, gens, xb, yb, clean, stats)
            else:
                self._chunks(points, fo, gens, xb, yb, clean, stats)

    def _windows(
        self,
        points: tuple[str, ...],
        fo: Fanout,
        gens: list[torch.Generator],
        xb: torch.Tensor,
        yb: torch.Tensor,
        clean: torch.Tensor | None,
        stats: BatchStats,
    ) -> None:
        """Every σ of every repeat in each pass, over windows of the batch sized to the
        budget: the layers before the point run once per sample. (At least two samples a
        window, so that whether the copies fan out is decided; see ``_forward``.)"""
        if len(gens) > 1:
            fo.new_copies(self.sigmas.repeat(len(gens)), gens)
        copies, width = fo.copies, self.widths.get(points[0], 1)
        fit = min(self.max_batch // copies, self.budget // (copies * width))
        size = max(fit, min(2, len(xb)))
        for off in range(0, len(xb), size):
            fo.window(off, min(size, len(xb) - off))
            sl = slice(off, off + fo.batch)
            logits = self._forward(xb[sl], fo, points)
            self._add(stats, slice(None), logits, yb[sl], None if clean is None else clean[sl])

    def _chunks(
        self,
        points: tuple[str, ...],
        fo: Fanout,
        gens: list[torch.Generator],
        xb: torch.Tensor,
        yb: torch.Tensor,
        clean: torch.Tensor | None,
        stats: BatchStats,
    ) -> None:
        """The whole batch in each pass, one repeat after another, over chunks of σ
        (several points, or a model whose samples mix: its batch is then exactly the
        ``batch_size`` the user chose)."""
        chunk, per = self.chunk(len(xb), points), len(self.sigmas)
        for r, gen in enumerate(gens):
            for start in range(0, per, chunk):
                sigmas = self.sigmas[start : start + chunk]
                if len(gens) > 1 and start == 0:
                    fo.new_copies(sigmas, [gen])  # this repeat's draws, replayed per chunk
                else:
                    fo.new_chunk(sigmas)
                sl = slice(r * per + start, r * per + start + len(sigmas))
                self._add(stats, sl, self._forward(xb, fo, points), yb, clean)

    def _autocast(self) -> contextlib.AbstractContextManager[Any]:
        if self.dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.dtype)

    def _add(
        self,
        stats: BatchStats,
        sl: slice,
        logits: torch.Tensor,
        yb: torch.Tensor,
        clean: torch.Tensor | None,
    ) -> None:
        out = logits.float().reshape(-1, len(yb), logits.shape[-1])
        if clean is None or self.topk is None:
            c, ls, fin = score_of(out, yb, stats.labelled)
            stats.correct[sl] += c
            stats.loss_sum[sl] += ls
            stats.finite[sl] += fin
        else:
            stats.add_all(sl, all_sums(out, yb, clean, self.topk))

    def chunk(self, batch: int, points: Sequence[str]) -> int:
        """σ copies per forward pass of a whole batch: within ``max_batch`` samples and the
        element budget (the widest activation the stacked copies meet after the points).
        A model whose samples meet in a batch statistic gets one copy per pass."""
        if self.mixes(points):
            return 1
        width = max((self.widths.get(p, 1) for p in points), default=1)
        return max(1, min(self.max_batch // batch, self.budget // (batch * width)))

    def mixes(self, points: Sequence[str], xb: torch.Tensor | None = None) -> bool:
        """Whether a sample's output depends on the others in its batch (probed once, on
        the first samples of ``xb`` or of the data)."""
        key = tuple(points)
        if key not in self._mixes:
            probe = self.data.head(PROBE_SAMPLES) if xb is None else xb[:PROBE_SAMPLES]
            self._mixes[key] = mixes_samples(self.model, probe.to(self.device), points)
        return self._mixes[key]

    def _linear_after(self, points: tuple[str, ...], xb: torch.Tensor) -> str | None:
        """The linear module that alone takes the single point's tensor, where the σ copies
        may fan out after it (see ``walknoise.noise.linear``); else ``None``."""
        if len(points) != 1 or self.mixes(points):
            return None
        if self.probed.successors is None:
            self.probed.successors = linear_successors(self.model)
        after = self.probed.successors.get(points[0])
        return after if after is not None and self._fans_out(points, xb) else None

    def _fans_out(self, points: tuple[str, ...], xb: torch.Tensor) -> bool:
        """Whether σ copies fan out at ``points`` (probed on two samples, two copies, once)."""
        if self._fans.get(points) is None and len(xb) >= 2:
            fo = Fanout(sigmas=torch.zeros(2, device=self.device))
            fo.new_batch(2)
            gen = make_generator(0, self.device)
            ones = [1.0] * len(points)
            with hooks(self.model, points, fo, self.noise, [gen] * len(points), ones):
                try:
                    with torch.inference_mode():
                        self._fans[points] = self._model(xb[:2]).shape[0] == 4
                except (RuntimeError, WalknoiseError):
                    self._fans[points] = False
        return bool(self._fans.get(points))

    def _forward(self, xb: torch.Tensor, fo: Fanout, points: tuple[str, ...]) -> torch.Tensor:
        """Fan out at the noisy point when it is a cut of the graph, else inside the block
        around it (``walknoise.walk.enclosing``), else replicate the input.

        Whether fan-out works is probed once, on the first samples of the first pass that
        stacks two or more copies of two or more samples: a skip connection around the point
        meets a tensor of the wrong batch size and fails, or the output comes back with the
        wrong batch size. A pass of one copy proves nothing (its fan-out is the batch
        itself), nor does a batch of one (it broadcasts silently at a skip connection), so
        those leave the question open for a later pass.
        """
        copies, fans = fo.copies, self._fans.get(points)
        if copies == 1:
            return self._model(xb)
        if fans is None and len(xb) > 1:
            with probing(fo, min(len(xb), FAN_PROBE)):
                self._fans[points] = fans = self._cuts(xb[:FAN_PROBE], copies)
        if fans:
            return self._model(xb)
        at = self._fan_at(points, xb, fo)
        if at is not None:
            with at.installed(self.model, fo):
                return self._model(xb)
        return self._model(replicated(xb, copies))

    def _cuts(self, xb: torch.Tensor, copies: int) -> bool:
        """Whether the copies fanned out at the point come out of the model as copies."""
        try:
            out = self._model(xb)
            if out.shape[0] == copies * len(xb):
                return True
        except (RuntimeError, WalknoiseError):
            pass
        return False

    def _fan_at(self, points: tuple[str, ...], xb: torch.Tensor, fo: Fanout) -> FanAt | None:
        """Where around the single point the copies fan out, found and checked on the first
        pass of two or more samples (``find_fan``)."""
        if len(points) != 1:
            return None
        if points not in self.probed.enclosing and len(xb) > 1:
            self.probed.enclosing[points] = find_fan(self.model, points[0], xb, fo)
        return self.probed.enclosing.get(points)

    def _model(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.model(x)
        return out


def entries(points: Sequence[str], include_global: bool) -> list[str]:
    """The scan's layer axis: each point, then ``<global>``."""
    # with one point, noise "everywhere" is that point: nothing new to compute
    return [*points, GLOBAL] if include_global and len(points) > 1 else list(points)
