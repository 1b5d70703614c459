"""Self-binarization where it lives: the noisy point's activations and the layer feeding it.

Walking Noise (v1 abstract) reports that under multiplicative noise "some networks ...
automatically learn an internal binary representation"; v2 speaks of "self-binarization of
the model parameters". Whole-model weight statistics miss both when only the noisy layer
changes, so each train-phase cell also measures, at its own point and on the clean test
inputs:

* how many of the point's activations are exactly zero, and how bimodal they are;
* the accuracy under the same noise (same σ, same draws as ``trained_accuracy``) when the
  point's activations are replaced by an on/off code (:func:`onoff_code`);
* the accuracy with only the parametrised layer feeding the point binarized, per layer and
  per output channel;
* the accuracy of the noise-trained model at every *test* σ of a grid that starts at 0 (the
  train-σ × test-σ matrix: a model trained at large σ may be at chance without noise).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from walknoise.noise.kinds import Noise
from walknoise.noise.points import GLOBAL, Point
from walknoise.noise.sites import Transform, tap
from walknoise.walk.clean import Tensors
from walknoise.walk.runner import LayerRunner
from walknoise.walk.weights import binarized, moment_bimodality


@dataclass(frozen=True)
class Activity:
    """What a point's activations look like on the clean test inputs."""

    zero_fraction: float
    """Fraction of activations that are exactly 0."""
    bimodality: float
    """(skewness² + 1) / kurtosis of all activations (1: two point masses)."""
    on_amplitude: torch.Tensor
    """Per channel (dim 1), the mean of the activations that are > 0 (0 if there are none)."""
    off_amplitude: torch.Tensor
    """Per channel, the mean of −y over the activations y < 0 (0 if there are none)."""


def _channels(y: torch.Tensor) -> torch.Tensor:
    """``y`` as (batch, channel, rest) in float64: dim 1 is a conv's channel, a Linear's
    feature; a point with one number per sample is one channel."""
    return y.detach().double().reshape(y.shape[0], y.shape[1] if y.dim() > 1 else 1, -1)


def activity(model: nn.Module, point: str, x: torch.Tensor, batch_size: int) -> Activity:
    """:class:`Activity` of ``point`` over ``x``, accumulated batch by batch.

    The moments are summed about the first batch's mean (shifted sums), so they lose no
    precision to a mean far from 0, and nothing bigger than one batch is held.
    """
    sums = torch.zeros(6, dtype=torch.float64)  # n, zeros, Σd, Σd², Σd³, Σd⁴
    shift: list[float] = []
    on: list[torch.Tensor] = []  # [Σ y⁺, #y>0, Σ y⁻, #y<0] per channel

    def record(y: torch.Tensor) -> None:
        c = _channels(y)
        if not shift:
            shift.append(float(c.mean()))
            on.extend(torch.zeros(c.shape[1], dtype=torch.float64) for _ in range(4))
        d = c.flatten() - shift[0]
        count = torch.full((), float(d.numel()), dtype=torch.float64, device=d.device)
        zeros = (c == 0).sum().double()
        sums.add_(torch.stack([count, zeros, *((d**k).sum() for k in (1, 2, 3, 4))]).cpu())
        pos, neg = c > 0, c < 0
        for acc, part in zip(on, (c * pos, pos, -c * neg, neg), strict=True):
            acc.add_(part.double().sum(dim=(0, 2)).cpu())

    handles = tap(model, point, record)
    try:
        with torch.inference_mode():
            for start in range(0, len(x), batch_size):
                model(x[start : start + batch_size])
    finally:
        for h in handles:
            h.remove()
    n, zeros, s1, s2, s3, s4 = (float(v) for v in sums)
    e1, e2, e3, e4 = s1 / n, s2 / n, s3 / n, s4 / n
    m2 = e2 - e1**2  # central moments from the shifted ones
    m3 = e3 - 3 * e1 * e2 + 2 * e1**3
    m4 = e4 - 4 * e1 * e3 + 6 * e1**2 * e2 - 3 * e1**4
    pos_sum, pos_n, neg_sum, neg_n = on
    return Activity(
        zero_fraction=zeros / n,
        bimodality=moment_bimodality(m2, m3, m4),
        on_amplitude=pos_sum / pos_n.clamp(min=1),
        off_amplitude=neg_sum / neg_n.clamp(min=1),
    )


def onoff_code(act: Activity) -> Transform:
    """Each activation y of channel c replaced by a⁺_c·1[y > 0] − a⁻_c·1[y < 0].

    After a ReLU (or a max-pool of one) y ≥ 0 and this is the on/off code of Walking Noise's
    "internal binary representation": a unit keeps only *whether* it fires, at one amplitude
    per channel, the mean of its firing values on the clean test inputs (so the next layer
    sees inputs of the scale it was trained on). The threshold is exact 0 because that is
    what multiplicative noise cannot move: y(1 + σε) = 0 for y = 0. At a signed point (a
    Linear or Conv output) the same rule is a sign code with one amplitude per sign; exact
    zeros are rare there, so it is binary as well.
    """
    pos, neg = act.on_amplitude, act.off_amplitude

    def code(y: torch.Tensor) -> torch.Tensor:
        shape = (1, -1, *([1] * (y.dim() - 2))) if y.dim() > 1 else (1,)
        up = pos.to(y.device, y.dtype).reshape(shape)
        down = neg.to(y.device, y.dtype).reshape(shape)
        return torch.where(y > 0, up, torch.where(y < 0, -down, torch.zeros_like(y)))

    return code


def feeding_layers(found: Sequence[Point], params: Sequence[str]) -> dict[str, str]:
    """Per point, the last parametrised layer at or before it in execution order (conv1 for
    ``pool1``, the point itself for a Conv or Linear); the input has none."""
    owner: str | None = None
    out: dict[str, str] = {}
    for point in found:
        owner = point.name if point.name in params else owner
        if owner is not None:
            out[point.name] = owner
    return out


@dataclass(frozen=True)
class NoisyEval:
    """Accuracy of a model under the noise of one train-phase cell, with its draws.

    Every evaluation of the cell's (layer, repeat) starts the same generator, so all of them
    (trained, on/off, binarized, each test σ) see the same ε: they differ only by the model.
    """

    x: torch.Tensor
    y: torch.Tensor
    noise: Noise
    layer: str
    points: tuple[str, ...]
    scales: tuple[float, ...]
    seed: int
    repeat: int
    batch_size: int

    def accuracy(
        self, model: nn.Module, sigmas: Sequence[float], code: Transform | None = None
    ) -> np.ndarray:
        """Accuracy at each of ``sigmas``; ``code`` replaces the point's clean activations
        first (its hook is registered before the noise's, so the noise acts on the code)."""
        handles = [] if code is None else tap(model, self.layer, code)
        try:
            runner = LayerRunner(
                model,
                Tensors(self.x, self.y),
                self.noise,
                sigmas,
                batch_size=self.batch_size,
                max_batch=self.batch_size * len(sigmas),
            )
            stats = runner.run_repeat(self.layer, self.points, self.scales, self.seed, self.repeat)
        finally:
            for h in handles:
                h.remove()
        return np.asarray(stats.accuracy(), dtype=float)

    def activity(self, model: nn.Module) -> Activity | None:
        """The point's clean activity; ``None`` for ``<global>`` (no single point)."""
        return (
            None if self.layer == GLOBAL else activity(model, self.layer, self.x, self.batch_size)
        )


def cell_stats(
    ev: NoisyEval,
    model: nn.Module,
    sigma: float,
    owner: str | None,
    test_sigmas: Sequence[float],
) -> dict[str, float | np.ndarray]:
    """The self-binarization statistics of one noise-trained model (NaN where undefined)."""
    nan = float("nan")
    out: dict[str, float | np.ndarray] = {"cross_accuracy": ev.accuracy(model, test_sigmas)}
    for key, per_channel in (("", False), ("_per_channel", True)):
        out["own_layer_binarized_accuracy" + key] = (
            nan
            if owner is None
            else float(ev.accuracy(binarized(model, [owner], per_channel), [sigma])[0])
        )
    act = ev.activity(model)
    out["activation_zero_fraction"] = nan if act is None else act.zero_fraction
    out["activation_bimodality"] = nan if act is None else act.bimodality
    out["onoff_accuracy"] = (
        nan if act is None else float(ev.accuracy(model, [sigma], onoff_code(act))[0])
    )
    return out


def clean_stats(
    ev: NoisyEval, model: nn.Module, sigmas: Sequence[float]
) -> dict[str, float | np.ndarray]:
    """The same point statistics for the clean model of the cell's seed, at every σ at once
    (all σ share each batch's ε, as the noise-trained cells do one by one)."""
    act = ev.activity(model)
    nan = float("nan")
    return {
        "clean_noisy_accuracy": ev.accuracy(model, sigmas),
        "clean_activation_zero_fraction": nan if act is None else act.zero_fraction,
        "clean_activation_bimodality": nan if act is None else act.bimodality,
        "clean_onoff_accuracy": (
            np.full(len(sigmas), nan)
            if act is None
            else ev.accuracy(model, sigmas, onoff_code(act))
        ),
    }
