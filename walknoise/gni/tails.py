"""Tail and asymmetry statistics of a sample: block tail index α, skewness, kurtosis.

The tail index follows Mohammadi, Mohammadpour & Ogata (2015, Corollary 2.4), the estimator
Şimşekli et al. (2019) applied to SGD noise: for i.i.d. symmetric α-stable X_1..X_n split
into n₂ blocks of n₁, with Y_j the block sums,

    1/α̂ = (mean log|Y_j| − mean log|X_i|) / log n₁,

because a sum of n₁ stable variables is n₁^{1/α} times one of them. It is scale-free, gives
≈ 2 on Gaussian data and needs centred samples (α > 1). Everything here is plain numpy
(float64); the stable-law fit (α, β) the paper reports is in :mod:`walknoise.gni.stable`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from walknoise.errors import WalknoiseError

Array = npt.NDArray[np.float64]

HIST_RANGE = 10.0
"""Histogram bins cover [−HIST_RANGE, HIST_RANGE] in standard deviations."""
HIST_BINS = 100


@dataclass(frozen=True)
class TailStats:
    """Statistics of one standardised sample."""

    alpha: float
    skewness: float
    kurtosis: float
    """Excess kurtosis (0 for a Gaussian)."""
    n: int


def _flat(x: npt.ArrayLike, what: str, least: int) -> Array:
    arr = np.asarray(x, dtype=np.float64).reshape(-1)
    if arr.size < least:
        raise WalknoiseError(f"{what} needs at least {least} samples, got {arr.size}")
    if not np.all(np.isfinite(arr)):
        raise WalknoiseError(f"{what} got non-finite samples; drop NaN/inf values first")
    return arr


def tail_index(
    x: npt.ArrayLike, block: int | None = None, rng: np.random.Generator | None = None
) -> float:
    """Tail index α̂ of a centred sample (Mohammadi et al. 2015; Şimşekli et al. 2019).

    ``block`` is the block length n₁ (default ⌊√n⌋, as both papers use). With ``rng`` the
    sample is shuffled first: our gradient samples come in runs that are dependent (draws of
    one batch sum to zero), and summing such a run would mimic a lighter tail.
    """
    arr = _flat(x, "the tail-index estimator", 4)
    n1 = block if block is not None else math.isqrt(arr.size)
    if n1 < 2 or n1 > arr.size // 2:
        raise WalknoiseError(f"block length {n1} must be in [2, n/2] for n = {arr.size}")
    if rng is not None:
        arr = rng.permutation(arr)
    n2 = arr.size // n1
    arr = arr[: n1 * n2]
    sums = arr.reshape(n2, n1).sum(axis=1)
    tiny = np.finfo(np.float64).tiny  # log(0) guard for exact zeros (e.g. dead ReLU weights)
    diff = np.log(np.abs(sums) + tiny).mean() - np.log(np.abs(arr) + tiny).mean()
    return float(math.log(n1) / diff) if diff > 0 else math.inf


def moments(x: npt.ArrayLike) -> tuple[float, float]:
    """(skewness, excess kurtosis): the biased sample estimators g₁ = m₃/m₂^1.5, m₄/m₂² − 3."""
    arr = _flat(x, "skewness and kurtosis", 2)
    dev = arr - arr.mean()
    sq = dev * dev  # products, not **3/**4: numpy's pow is ~10x slower on millions of values
    m2 = float(np.mean(sq))
    if m2 == 0.0:
        return math.nan, math.nan
    return float(np.mean(sq * dev)) / m2**1.5, float(np.mean(sq * sq)) / m2**2 - 3.0


def standardize(x: npt.ArrayLike) -> Array:
    """(x − mean)/std over the whole array (a constant array becomes zeros)."""
    arr = np.asarray(x, dtype=np.float64)
    std = arr.std()
    return np.asarray((arr - arr.mean()) / (std if std > 0 else 1.0), dtype=np.float64)


def standardize_columns(x: npt.ArrayLike, axis: int = 0) -> Array:
    """Standardise each slice along ``axis`` by its own mean and std (constant slices -> 0).

    Values are bounded by √(n−1) for slices of n, which pulls α̂ towards 2 (α = 1.5 stable
    slices of 100 read 1.7): a conservative control, see :func:`robust_columns`.
    """
    arr = np.asarray(x, dtype=np.float64)
    std = arr.std(axis=axis, keepdims=True)
    centred = arr - arr.mean(axis=axis, keepdims=True)
    return np.asarray(centred / np.where(std > 0, std, 1.0), dtype=np.float64)


def robust_columns(x: npt.ArrayLike, axis: int = 0) -> Array:
    """Divide each slice along ``axis`` by its median absolute deviation (NaN where it is 0).

    The MAD is set by the middle of the slice, so a stable law keeps its α̂ (1.5 reads 1.5),
    but a slice with a narrow core and rare jumps (a ReLU that sometimes flips) gets huge
    ratios: this control leans towards heavy tails, :func:`standardize_columns` away.
    """
    arr = np.asarray(x, dtype=np.float64)
    centre = np.median(arr, axis=axis, keepdims=True)
    mad = np.median(np.abs(arr - centre), axis=axis, keepdims=True)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.asarray(np.where(mad > 0, arr / mad, np.nan), dtype=np.float64)


def summarize(z: npt.ArrayLike, rng: np.random.Generator) -> TailStats:
    """α̂ (shuffled with ``rng``), skewness and excess kurtosis of a standardised sample."""
    arr = np.asarray(z, dtype=np.float64).reshape(-1)
    if arr.size < 16:  # too few for a block estimator: report "unknown", not a number
        return TailStats(math.nan, math.nan, math.nan, int(arr.size))
    skew, kurt = moments(arr)
    return TailStats(tail_index(arr, rng=rng), skew, kurt, int(arr.size))


def histogram(z: npt.ArrayLike) -> tuple[npt.NDArray[np.int64], int]:
    """Counts of ``z`` in :data:`HIST_BINS` equal bins over ±:data:`HIST_RANGE`, and the
    number of samples outside that range."""
    arr = np.asarray(z, dtype=np.float64).reshape(-1)
    counts, _ = np.histogram(arr, bins=HIST_BINS, range=(-HIST_RANGE, HIST_RANGE))
    outside = int(np.count_nonzero(np.abs(arr) > HIST_RANGE))
    return counts.astype(np.int64), outside


def bin_centres() -> Array:
    edges = np.linspace(-HIST_RANGE, HIST_RANGE, HIST_BINS + 1)
    return np.asarray((edges[:-1] + edges[1:]) / 2, dtype=np.float64)
