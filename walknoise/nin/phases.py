"""Reading a NIN run: its phase, in the NIN papers' names, and its time scales.

Levi, Bloch, Freytsis and Volansky (arXiv 2210.13599, 2210.15764) name four phases of a network
with noise injection nodes: **decoupled** (the noise is too weak to move the NIWs within the
run, learning is untouched), **decay** ("for small noise, the NIWs decay and standard learning
proceeds"), **catapult** (the NIWs, or the loss, are thrown up and come back down) and
**divergent** (the poster's "failure": training breaks). The poster's "de-noising" for large
noise is kept apart here as **denoising**: the NIWs decay, but the noise holds learning back
while the network switches it off. "Standard learning proceeds" is judged against the run
without NINs from the same start (the reference); where the reference itself did not learn,
that comparison means nothing and the run is **undetermined**.

The criteria, checked in this order on the NIW norms ``n(t)`` and the train loss ``L(t)``,
both smoothed by a trailing moving average over a fraction ``smooth`` of the run:

1. **divergent** — a non-finite loss or NIW (a broken run is a failure whatever the reference).
2. **undetermined** — no reference run, or the reference did not learn: its loss fell by
   less than ``learned`` (5%) of its start. The loss is the clean test loss on the whole
   test set, from initialisation to the end of the run, where the probe has it (no minibatch
   noise), else the smoothed train loss. Criterion 5 measures a run's learning in units of
   the reference's fall; a reference at chance (2.309 -> 2.299 nat, a 0.4% fall, in the
   first MNIST acceptance grid) gives no unit to measure in. 5% of ln(10) is 0.12 nat.
3. **divergent** — ``L`` *ends* more than ``rise`` times above its start; or a NIN's norm ends
   more than ``rise`` times above its start, still near its peak (less than ``fall`` below
   it), while the loss departs from the reference (criterion 5 fails): the noise runs away.
4. **catapult** — the norm of some NIN, or ``L``, *peaks* more than ``rise`` times above its
   start and then falls back by at least ``fall`` of its peak (still climbing: no catapult).
5. The loss curve **matches the reference** when the mean absolute gap between the smoothed
   curves is at most ``match`` times the reference's learning (how far its smoothed loss fell
   from start to end). Then the run is **decay** if the NIWs' total norm ends at least
   ``decay`` below its start, else **decoupled**.
6. **denoising** — the loss does not match the reference, and the NIWs decay (as in 5).
7. **unclassified** — none of these (e.g. NIWs drifting upwards without a catapult while
   learning suffers).

"Start" is the NIW norm at initialisation and the mean train loss over the first window;
"end" is the mean over the last window (both windows a fraction ``smooth`` of the run).
Time scales come from fitting ``a·exp(-t/τ) + c`` (τ in optimiser steps) from the series'
maximum onward.
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
    "majority",
    "smooth",
]

PHASES = (
    "decoupled",
    "decay",
    "denoising",
    "catapult",
    "divergent",
    "unclassified",
    "undetermined",
)
"""Phase names; a phase's code in result files is its index here. Later codes are more severe,
except the last two, which say that no phase could be told."""

_NO_PHASE = ("unclassified", "undetermined")

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
    learned: float = 0.05
    """Smallest fall of the reference's loss (clean test loss where evaluated), as a fraction
    of its start, for it to count as having learned."""
    decay: float = 0.1
    """Smallest fall of the NIWs' total norm, as a fraction of its start, to count as decay."""

    def __post_init__(self) -> None:
        if not (self.rise > 1 and math.isfinite(self.rise)):
            raise WalknoiseError(f"rise is {self.rise}; use a factor above 1 such as 2")
        if not 0 < self.fall < 1:
            raise WalknoiseError(f"fall is {self.fall}; use a fraction in (0, 1) such as 0.05")
        if not self.match >= 0:
            raise WalknoiseError(f"match is {self.match}; use a fraction >= 0 such as 0.05")
        if not 0 < self.smooth <= 0.5:
            raise WalknoiseError(f"smooth is {self.smooth}; use a fraction in (0, 0.5]")
        for name in ("learned", "decay"):
            value = getattr(self, name)
            if not 0 <= value < 1:
                raise WalknoiseError(f"{name} is {value}; use a fraction in [0, 1) such as 0.1")

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
    reference_fall: float = float("nan")
    """1 - end/start of the reference's train loss; NaN without a reference."""


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
    reference_test_loss: npt.ArrayLike | None = None,
) -> PhaseEvidence:
    """Measure one run: ``niw`` is ``(nins, steps + 1)`` from initialisation on, ``loss`` is
    the train loss of steps ``1..T`` (``(T,)``; a leading NaN for step 0 is dropped).
    ``reference_test_loss`` (NaN where not evaluated) judges whether the reference learned;
    without it, ``reference_loss`` does."""
    criteria = criteria or PhaseCriteria()
    n = np.atleast_2d(np.asarray(niw, dtype=np.float64))
    ell = np.asarray(loss, dtype=np.float64)
    if ell.size == n.shape[1] and np.isnan(ell[0]):  # step-0 slot of a stored run
        ell = ell[1:]
    if ell.size < 2 or n.shape[1] < 2:
        raise WalknoiseError("a run needs at least two steps to be classified")
    w = _window(ell.size, criteria)
    ref = None if reference_loss is None else _aligned(ell, reference_loss)
    ref_fall = float("nan") if ref is None else _reference_fall(ref, w)
    if ref is not None and reference_test_loss is not None:
        ref_fall = _test_fall(np.asarray(reference_test_loss, dtype=np.float64))
    finite = bool(np.isfinite(n).all() and np.isfinite(ell).all())
    if not finite:
        nan = float("nan")
        return PhaseEvidence(False, nan, nan, nan, nan, nan, nan, nan, ref_fall)
    niw_peak, niw_fall, _ = max(_ratios(row, float(row[0]), w) for row in n)
    total = np.sqrt(np.sum(n**2, axis=0))
    niw_end = _ratios(total, float(total[0]), w)[2]
    loss_peak, loss_fall, loss_end = _ratios(ell, float(np.mean(ell[:w])), w)
    gap = float("nan") if ref is None else _gap(ell, ref, w)
    return PhaseEvidence(
        True, niw_peak, niw_fall, niw_end, loss_peak, loss_fall, loss_end, gap, ref_fall
    )


def _aligned(loss: Array, reference: npt.ArrayLike) -> Array:
    """The reference's train loss over the run's steps (a stored step-0 slot dropped)."""
    ref = np.asarray(reference, dtype=np.float64)
    ref = ref[1:] if ref.size == loss.size + 1 else ref
    if ref.size != loss.size:
        raise WalknoiseError("the reference loss must have one value per step of the run")
    return ref


def _reference_fall(reference: Array, window: int) -> float:
    """1 - end/start of the reference's train loss (window means); NaN if it broke."""
    if not np.isfinite(reference).all():
        return float("nan")
    start = float(np.mean(reference[:window]))
    return 1 - float(np.mean(reference[-window:])) / start if start > 0 else float("nan")


def _test_fall(test_loss: Array) -> float:
    """1 - last/first of the evaluated points; NaN if fewer than two or non-finite at the end."""
    done = test_loss[~np.isnan(test_loss)]
    if done.size < 2 or not np.isfinite(done).all() or done[0] <= 0:
        return float("nan")
    return 1 - float(done[-1]) / float(done[0])


def _gap(loss: Array, ref: Array, window: int) -> float:
    """Mean |L - L_ref| between smoothed curves, in units of the reference's loss drop."""
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
    if not ev.finite:
        return "divergent"
    if not ev.reference_fall >= c.learned:  # also NaN: no reference, or a broken one
        return "undetermined"
    matches = ev.loss_gap <= c.match
    runaway = ev.niw_peak * (1 - ev.niw_fall) > c.rise and ev.niw_fall < c.fall
    if ev.loss_end > c.rise or (runaway and not matches):
        return "divergent"
    for peak, fall in ((ev.niw_peak, ev.niw_fall), (ev.loss_peak, ev.loss_fall)):
        if peak > c.rise and fall >= c.fall:
            return "catapult"
    decays = ev.niw_end <= 1 - c.decay
    if matches:
        return "decay" if decays else "decoupled"
    return "denoising" if decays else "unclassified"


def majority(codes: npt.ArrayLike) -> tuple[str, int]:
    """The most common phase among ``codes`` (e.g. over seeds) and how many runs have it;
    a tie goes to the more severe phase, and a phase to 'unclassified'/'undetermined'."""
    counts = np.bincount(np.asarray(codes).astype(int).ravel(), minlength=len(PHASES))

    def rank(code: int) -> tuple[int, int]:
        return int(counts[code]), -1 if PHASES[code] in _NO_PHASE else code

    best = max(range(len(PHASES)), key=rank)
    return PHASES[best], int(counts[best])


def classify(
    niw: npt.ArrayLike,
    loss: npt.ArrayLike,
    reference_loss: npt.ArrayLike | None = None,
    criteria: PhaseCriteria | None = None,
    reference_test_loss: npt.ArrayLike | None = None,
) -> str:
    """The phase of one run (a name in :data:`PHASES`); arguments as for :func:`evidence`."""
    ev = evidence(niw, loss, reference_loss, criteria, reference_test_loss)
    return classify_evidence(ev, criteria)


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
