"""Adaptive midpoint search: find a layer's midpoint σ without walking the whole grid.

In the spirit of Captum's ``MinParamPerturbation``: bracket the crossing of the repeat-mean
accuracy with the halfway threshold between σ_min and σ_max, then narrow the bracket in log σ
by the Illinois variant of regula falsi (secant steps that cannot stall on one side), until the
bracket is within ``rtol`` in σ (never earlier: two estimates that agree say nothing about the
curve between them). Noise uses the same common random numbers as the grid, so the
accuracy at any σ is the value the grid would have at that σ, and the answer is comparable.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import numpy as np

from walknoise.walk.metrics import BELOW_RANGE, NOT_REACHED, REACHED

# accuracy of each repeat at one σ
Probe = Callable[[float], np.ndarray]


@dataclass
class Search:
    """The outcome of one layer's search, with every σ it evaluated."""

    value: float = float("nan")
    status: int = NOT_REACHED
    sigmas: list[float] = field(default_factory=list)
    accuracy: list[np.ndarray] = field(default_factory=list)
    low: float = float("nan")
    """Lower end of the final bracket: the largest σ seen above the threshold."""
    high: float = float("nan")
    """Upper end: the smallest σ seen at or below it; ``value`` interpolates between."""


def find_midpoint(
    probe: Probe,
    lo: float,
    hi: float,
    clean: float,
    chance: float,
    *,
    rtol: float = 0.05,
    max_evals: int = 12,
    known: Mapping[float, np.ndarray] | None = None,
) -> Search:
    """The σ in [lo, hi] where the mean of ``probe(σ)`` falls halfway from clean to chance.

    Steps are taken on the logit of the fraction of accuracy left, which is close to linear
    in log σ for the sigmoid-shaped curves noise produces, so secant steps land near the
    crossing at once; the answer itself interpolates the accuracy, as the grid does. The
    search stops only when the bracket is within ``rtol`` in σ (the interpolation is then
    off by less than ``rtol`` whatever the curve does inside), or after ``max_evals``
    probes; ``low``/``high`` say which. ``known`` holds accuracies already measured at
    ``lo`` and ``hi`` (a grid's), used instead of probing them again.
    """
    out = Search()
    seen: dict[float, float] = {}  # log σ -> mean accuracy minus the threshold
    threshold = chance + (clean - chance) / 2

    def f(log_sigma: float, sigma: float) -> float:
        if known is not None and sigma in known:
            acc = known[sigma]
        else:
            acc = probe(sigma)
            out.sigmas.append(sigma)
            out.accuracy.append(acc)
        seen[log_sigma] = float(acc.mean()) - threshold
        left = (float(acc.mean()) - chance) / (clean - chance) if clean != chance else 0.5
        left = min(max(left, 1e-3), 1 - 1e-3)
        return math.log(left / (1 - left))

    a, b = math.log(lo), math.log(hi)
    fa = f(a, lo)
    if seen[a] <= 0:
        out.value, out.status = lo, BELOW_RANGE
        return out
    fb = f(b, hi)
    if seen[b] > 0:
        return out  # not reached within [lo, hi]
    side = 0
    while b - a > math.log1p(rtol) and len(out.sigmas) < max_evals:
        c = b - fb * (b - a) / (fb - fa) if fa != fb else (a + b) / 2
        c = min(max(c, a + 0.05 * (b - a)), b - 0.05 * (b - a))  # stay strictly inside
        fc = f(c, math.exp(c))
        if seen[c] > 0:
            a, fa = c, fc
            fb = fb / 2 if side == -1 else fb  # Illinois: halve the side kept twice
            side = -1
        else:
            b, fb = c, fc
            fa = fa / 2 if side == 1 else fa
            side = 1
    out.value, out.status = math.exp(_crossing(a, b, seen)), REACHED
    out.low, out.high = math.exp(a), math.exp(b)
    return out


def _crossing(a: float, b: float, seen: dict[float, float]) -> float:
    """Linear interpolation in log σ inside the bracket, as the grid midpoint does."""
    fa, fb = seen[a], seen[b]
    return a + (fa / (fa - fb) if fa != fb else 0.5) * (b - a)
