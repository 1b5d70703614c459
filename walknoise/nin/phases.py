"""Reading a NIN run: its phase (decoupled, decay, catapult, divergent) and its time scales.

The criteria, checked in this order on the NIW norms ``n(t)`` and the train loss ``L(t)``,
both smoothed by a trailing moving average over a fraction ``smooth`` of the run:

1. **divergent** — training broke: a non-finite loss or NIW; or ``L`` *ends* more than
   ``rise`` times above its start; or a NIN's norm ends more than ``rise`` times above its
   start, still near its peak (less than ``fall`` below it), while the loss curve departs
   from the run without NINs (criterion 3 fails): the noise channel runs away.
2. **catapult** — the norm of some NIN, or ``L``, *peaks* more than ``rise`` times above its
   start and then falls back by at least ``fall`` of its peak: the run is thrown out of its
   valley and settles elsewhere (a series still climbing at the end is not a catapult).
3. **decoupled** — the loss curve matches the run without NINs: the mean absolute gap
   between the smoothed curves is at most ``match`` times the reference's learning (how far
   its smoothed loss fell from start to end). Whatever the NIWs do, the noise does not
   change learning.
4. **decay** — the NIWs' total norm ends below its start and the loss differs from the run
   without NINs: the noise is felt, and the network learns to switch it off.
5. **unclassified** — none of these (e.g. NIWs drifting upwards without a catapult).

"Start" is the NIW norm at initialisation and the mean train loss over the first window;
"end" is the mean over the last window (both windows a fraction ``smooth`` of the run).
Without a reference run, ``decoupled`` is never assigned. Time scales come from fitting
``a·exp(-t/τ) + c`` (τ in optimiser steps) from the series' maximum onward.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from walknoise.errors import WalknoiseError

__all__ = [
    "PHASES",
    "DecayFit",
    "PhaseCriteria",
    "PhaseEvidence",
    "classify",
    "evidence",
    "fit_decay",
    "smooth",
]

PHASES = ("decoupled", "decay", "catapult", "divergent", "unclassified")
"""Phase names; a phase's code in result files is its index here."""

Array = npt.NDArray[np.float64]


@dataclass(frozen=True)
class PhaseCriteria:
    """Thresholds of :func:`classify` (see the module docstring)."""

    rise: float = 2.0
    """'Well above its start': a factor on the start value."""
    fall: float = 0.05
    """How far below its peak a series must end to count as having fallen back."""
    match: float = 0.1
    """Largest mean |L - L_ref| / (L_ref start - end) for a loss curve to match the reference."""
    smooth: float = 0.05
    """Moving-average window and start/end window, as a fraction of the run's steps."""

    def __post_init__(self) -> None:
        if not (self.rise > 1 and math.isfinite(self.rise)):
            raise WalknoiseError(f"rise is {self.rise}; use a factor above 1 such as 2")
        if not 0 < self.fall < 1:
            raise WalknoiseError(f"fall is {self.fall}; use a fraction in (0, 1) such as 0.05")
        if not self.match >= 0:
            raise WalknoiseError(f"match is {self.match}; use a fraction >= 0 such as 0.05")
        if not 0 < self.smooth <= 0.5:
            raise WalknoiseError(f"smooth is {self.smooth}; use a fraction in (0, 0.5]")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class PhaseEvidence:
    """The numbers the criteria compare; ratios are relative to the start value."""

    finite: bool
    niw_peak: float
    """Largest peak/start over the NINs."""
    niw_fall: float
    """1 - end/peak of the NIN with that largest peak."""
    niw_end: float
    """end/start of the NINs' total norm (root of the summed squares)."""
    loss_peak: float
    loss_fall: float
    loss_end: float
    loss_gap: float
    """Mean |L - L_ref| / (L_ref start - end); NaN without a reference, inf if it did not learn."""


def smooth(values: npt.ArrayLike, window: int) -> Array:
    """Trailing moving average (shorter windows at the start); NaNs propagate."""
    y = np.asarray(values, dtype=np.float64)
    if window <= 1 or y.size == 0:
        return y.copy()
    csum = np.concatenate([[0.0], np.cumsum(y)])
    idx = np.arange(1, y.size + 1)
    lo = np.maximum(0, idx - window)
    return np.asarray((csum[idx] - csum[lo]) / (idx - lo), dtype=np.float64)


def _window(n: int, criteria: PhaseCriteria) -> int:
    return max(1, round(criteria.smooth * n))


def _ratios(series: Array, start: float, window: int) -> tuple[float, float, float]:
    """(peak/start, 1 - end/peak, end/start) of a series, its peak taken after smoothing."""
    peak = float(np.max(smooth(series, window)))
    end = float(np.mean(series[-window:]))
    scale = start if start > 0 else float("nan")
    return peak / scale, 1 - end / peak if peak > 0 else float("nan"), end / scale


def evidence(
    niw: npt.ArrayLike,
    loss: npt.ArrayLike,
    reference_loss: npt.ArrayLike | None = None,
    criteria: PhaseCriteria | None = None,
) -> PhaseEvidence:
    """Measure one run: ``niw`` is ``(nins, steps + 1)`` from initialisation on, ``loss`` is
    the train loss of steps ``1..T`` (``(T,)``; a leading NaN for step 0 is dropped)."""
    criteria = criteria or PhaseCriteria()
    n = np.atleast_2d(np.asarray(niw, dtype=np.float64))
    ell = np.asarray(loss, dtype=np.float64)
    if ell.size == n.shape[1] and np.isnan(ell[0]):  # step-0 slot of a stored run
        ell = ell[1:]
    if ell.size < 2 or n.shape[1] < 2:
        raise WalknoiseError("a run needs at least two steps to be classified")
    finite = bool(np.isfinite(n).all() and np.isfinite(ell).all())
    if not finite:
        nan = float("nan")
        return PhaseEvidence(False, nan, nan, nan, nan, nan, nan, nan)
    w = _window(ell.size, criteria)
    niw_peak, niw_fall, _ = max(_ratios(row, float(row[0]), w) for row in n)
    total = np.sqrt(np.sum(n**2, axis=0))
    niw_end = _ratios(total, float(total[0]), w)[2]
    loss_peak, loss_fall, loss_end = _ratios(ell, float(np.mean(ell[:w])), w)
    gap = float("nan")
    if reference_loss is not None:
        gap = _gap(ell, np.asarray(reference_loss, dtype=np.float64), w)
    return PhaseEvidence(True, niw_peak, niw_fall, niw_end, loss_peak, loss_fall, loss_end, gap)


def _gap(loss: Array, reference: Array, window: int) -> float:
    """Mean |L - L_ref| between smoothed curves, in units of the reference's loss drop."""
    ref = reference[1:] if reference.size == loss.size + 1 else reference
    if ref.size != loss.size:
        raise WalknoiseError("the reference loss must have one value per step of the run")
    if not np.isfinite(ref).all():
        return float("nan")
    diff = float(np.mean(np.abs(smooth(loss, window) - smooth(ref, window))))
    drop = float(np.mean(ref[:window]) - np.mean(ref[-window:]))
    if diff == 0:
        return 0.0
    return diff / drop if drop > 0 else float("inf")


def classify_evidence(ev: PhaseEvidence, criteria: PhaseCriteria | None = None) -> str:
    """Apply the criteria, in order, to measured :class:`PhaseEvidence`."""
    c = criteria or PhaseCriteria()
    decoupled = ev.loss_gap <= c.match  # False for NaN: no reference, no 'decoupled'
    runaway = ev.niw_peak * (1 - ev.niw_fall) > c.rise and ev.niw_fall < c.fall
    if not ev.finite or ev.loss_end > c.rise or (runaway and not decoupled):
        return "divergent"
    for peak, fall in ((ev.niw_peak, ev.niw_fall), (ev.loss_peak, ev.loss_fall)):
        if peak > c.rise and fall >= c.fall:
            return "catapult"
    if decoupled:
        return "decoupled"
    if ev.niw_end < 1.0:
        return "decay"
    return "unclassified"


def classify(
    niw: npt.ArrayLike,
    loss: npt.ArrayLike,
    reference_loss: npt.ArrayLike | None = None,
    criteria: PhaseCriteria | None = None,
) -> str:
    """The phase of one run (a name in :data:`PHASES`); arguments as for :func:`evidence`."""
    return classify_evidence(evidence(niw, loss, reference_loss, criteria), criteria)


@dataclass(frozen=True)
class DecayFit:
    """``y ≈ amplitude·exp(-(t - t0)/tau) + offset`` fitted from the peak ``t0`` onward."""

    tau: float
    """Decay time in steps; NaN when the series does not decay measurably."""
    amplitude: float
    offset: float
    r2: float
    t0: float


def _sse(t: Array, y: Array, tau: float) -> tuple[float, float, float]:
    """Best (amplitude, offset) for a fixed τ by linear least squares, and the SSE."""
    basis = np.stack([np.exp(-t / tau), np.ones_like(t)], axis=1)
    coef, *_ = np.linalg.lstsq(basis, y, rcond=None)
    resid = y - basis @ coef
    return float(coef[0]), float(coef[1]), float(resid @ resid)


def fit_decay(
    steps: npt.ArrayLike,
    values: npt.ArrayLike,
    smooth_window: int = 1,
    min_r2: float = 0.5,
    min_drop: float = 0.05,
) -> DecayFit:
    """Fit an exponential decay to the finite part of ``values`` after its (smoothed) peak.

    τ is searched on a log grid from the sampling interval to 10 times the fitted span and
    refined by a golden-section search. τ is NaN when the best fit rises (amplitude <= 0),
    sits at either end of the grid (a jump faster than the sampling, or no decay within the
    run), explains less than ``min_r2`` of the variance
    (jitter, not a decay), decays by less than ``min_drop`` of the peak value (a ripple, not
    a decay), or fewer than 5 points remain.
    """
    t_all = np.asarray(steps, dtype=np.float64)
    y_all = np.asarray(values, dtype=np.float64)
    keep = np.isfinite(t_all) & np.isfinite(y_all)
    t_all, y_all = t_all[keep], y_all[keep]
    nan = float("nan")
    if t_all.size < 5:
        return DecayFit(nan, nan, nan, nan, nan)
    peak = int(np.argmax(smooth(y_all, smooth_window)))
    t, y = t_all[peak:] - t_all[peak], y_all[peak:]
    span = float(t[-1])
    sst = float(np.sum((y - y.mean()) ** 2))
    if t.size < 5 or span <= 0 or sst == 0:
        return DecayFit(nan, nan, nan, nan, float(t_all[peak]))
    step = float(np.median(np.diff(t)))  # the sampling interval: no faster τ is resolved
    grid = np.geomspace(step, 10 * span, 200)
    errors = [_sse(t, y, tau)[2] for tau in grid]
    i = int(np.argmin(errors))
    lo, hi = np.log(grid[max(i - 1, 0)]), np.log(grid[min(i + 1, grid.size - 1)])
    log_tau = _golden(lambda s: _sse(t, y, math.exp(s))[2], lo, hi)
    tau = math.exp(log_tau)
    amplitude, offset, sse = _sse(t, y, tau)
    at_edge = i in (0, grid.size - 1)
    r2 = 1 - sse / sst
    big = amplitude >= min_drop * abs(amplitude + offset)  # of the fitted start
    good = amplitude > 0 and big and not at_edge and r2 >= min_r2
    return DecayFit(tau if good else nan, amplitude, offset, r2, float(t_all[peak]))


def _golden(f: Any, lo: float, hi: float, iterations: int = 40) -> float:
    """Minimise a unimodal ``f`` on ``[lo, hi]``."""
    ratio = (math.sqrt(5) - 1) / 2
    a, b = lo, hi
    c, d = b - ratio * (b - a), a + ratio * (b - a)
    fc, fd = f(c), f(d)
    for _ in range(iterations):
        if fc < fd:
            b, d, fd = d, c, fc
            c = b - ratio * (b - a)
            fc = f(c)
        else:
            a, c, fc = c, d, fd
            d = a + ratio * (b - a)
            fd = f(d)
    return (a + b) / 2
