"""Weight statistics of trained models: magnitude growth and self-binarization.

Walking Noise reports that training with additive noise grows weight magnitudes (a better
signal-to-noise ratio) and that multiplicative noise can make weights self-binarize, i.e.
cluster at two values ±a. These functions measure both, per parametrised layer (every module
with a weight matrix or kernel: Linear, Conv).
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn


@dataclass(frozen=True)
class Stat:
    """One weight statistic: its ``long_name`` for the file, and how it is computed."""

    long_name: str
    fn: Callable[[torch.Tensor], float]


def l2_norm(w: torch.Tensor) -> float:
    """Euclidean norm of all weights of the layer: overall magnitude."""
    return float(w.double().norm())


def mean_abs(w: torch.Tensor) -> float:
    """Mean |w|: typical magnitude, and the scale of the binarized layer."""
    return float(w.double().abs().mean())


def max_abs(w: torch.Tensor) -> float:
    """Largest |w|: what weight clamping bounds."""
    return float(w.double().abs().max())


def kurtosis(w: torch.Tensor) -> float:
    """Pearson kurtosis m4/m2² (excess kurtosis + 3).

    Gaussian weights give 3, uniform 1.8, and a two-point ±a distribution 1, the minimum
    any distribution can have: falling towards 1 means the weights are self-binarizing.
    """
    x = w.double().flatten()
    d = x - x.mean()
    m2 = (d**2).mean()
    return float((d**4).mean() / m2**2) if m2 > 0 else float("nan")


def bimodality(w: torch.Tensor) -> float:
    """Bimodality coefficient (skewness² + 1) / kurtosis (the large-sample form).

    1 for two equal point masses, 5/9 for a uniform distribution (the usual threshold:
    above it suggests two modes), 1/3 for a Gaussian.
    """
    x = w.double().flatten()
    d = x - x.mean()
    return moment_bimodality(float((d**2).mean()), float((d**3).mean()), float((d**4).mean()))


def moment_bimodality(m2: float, m3: float, m4: float) -> float:
    """(skewness² + 1) / kurtosis from the central moments m2, m3, m4 (NaN when m2 = 0).

    Shared by :func:`bimodality` and the activation statistics, which accumulate the moments
    over batches instead of holding every value.
    """
    if m2 <= 0:
        return float("nan")
    skew = m3 / m2**1.5
    return float((skew**2 + 1) / (m4 / m2**2))


def mode_fraction(w: torch.Tensor, tolerance: float = 0.1) -> float:
    """Fraction of weights within 10% of the binary modes ±mean|w|: how many are 'binary'."""
    a = w.double().abs()
    m = a.mean()
    return float(((a - m).abs() <= tolerance * m).double().mean()) if m > 0 else float("nan")


STATS: dict[str, Stat] = {
    "weight_l2": Stat("L2 norm of the layer's weights", l2_norm),
    "weight_mean_abs": Stat("mean absolute weight", mean_abs),
    "weight_max_abs": Stat("largest absolute weight", max_abs),
    "weight_kurtosis": Stat("Pearson kurtosis of the weights (Gaussian 3, binary ±a 1)", kurtosis),
    "weight_bimodality": Stat(
        "bimodality coefficient of the weights (binary 1, > 5/9 bimodal)", bimodality
    ),
    "weight_mode_fraction": Stat("fraction of weights within 10% of ±mean|w|", mode_fraction),
}
GROWTH = ("weight_l2", "weight_mean_abs", "weight_max_abs")


def param_layers(model: nn.Module) -> list[str]:
    """Names of the modules that own a weight matrix or kernel (dim >= 2), in module order."""
    return [
        name
        for name, m in model.named_modules()
        if isinstance(getattr(m, "weight", None), nn.Parameter) and m.weight.dim() >= 2
    ]


def weight_stats(model: nn.Module, layers: list[str]) -> dict[str, list[float]]:
    """Every statistic of ``STATS`` for each of ``layers``: name -> one value per layer."""
    modules = dict(model.named_modules())
    weights = [modules[n].weight.detach() for n in layers]
    return {name: [stat.fn(w) for w in weights] for name, stat in STATS.items()}


def weight_hists(model: nn.Module, layers: list[str], bins: int = 64) -> list[list[float]]:
    """Per layer, the density of its weights on ``bins`` bins over [-max|w|, max|w|]."""
    modules = dict(model.named_modules())
    out = []
    for name in layers:
        w = modules[name].weight.detach().double().flatten().cpu()
        edge = float(w.abs().max()) or 1.0
        counts = torch.histc(w, bins=bins, min=-edge, max=edge)
        out.append((counts / (counts.sum() * (2 * edge / bins))).tolist())
    return out


def binarized(model: nn.Module, layers: list[str], per_channel: bool = False) -> nn.Module:
    """A copy with each layer's weights replaced by sign(w)·mean|w| (biases kept).

    ``per_channel`` takes mean|w| per output channel (dim 0 of the weight: a Linear's output
    feature, a Conv's filter) instead of over the whole layer: a layer whose filters binarize
    each at its own scale passes this test and may fail the per-layer one.
    """
    out = copy.deepcopy(model)
    modules = dict(out.named_modules())
    with torch.no_grad():
        for name in layers:
            w = modules[name].weight
            dims = tuple(range(1, w.dim())) if per_channel else tuple(range(w.dim()))
            w.copy_(torch.sign(w) * w.abs().mean(dim=dims, keepdim=True))
    return out


def clamp_weights(model: nn.Module, bound: float) -> None:
    """Clamp every weight matrix/kernel to [-bound, bound] (the control for growth)."""
    modules = dict(model.named_modules())
    with torch.no_grad():
        for name in param_layers(model):
            modules[name].weight.clamp_(-bound, bound)
