"""α-stable fit of gradient-noise samples: the tail index α and the asymmetry β, with
percentile-bootstrap intervals.

Camuto et al. (2021) fit a stable law to each weight tensor's gradient noise by maximum
likelihood with PyLevy (their ``playground/InjectingStableNoise.ipynb``, ``fit_levy_custom``:
L-BFGS-B on PyLevy's tabulated density in Nolan's S0 parametrisation, location fixed at 0
after centring, start α = 1.5, β = 0, scale 1; ``playground/ImplicitEffectMarginal.ipynb``,
``estimate_all_params``: the sample standardised, location 0 and scale 1 held fixed).

We estimate the same two parameters with McCulloch's (1986) quantile estimator, as
implemented in scipy (``scipy.stats.levy_stable._fitstart``, the starting point of
``levy_stable.fit``). It is consistent for 0.6 ≤ α ≤ 2 and location/scale invariant, and it
takes milliseconds on 10⁵ points, whereas scipy's likelihood costs about 0.5 ms per point and
evaluation (minutes for one fit on a 2,000-point subsample). Quantiles of a 5·10⁴-value
subset (:data:`MAX_POINTS`) have a smaller sampling error than a likelihood fit on the few
thousand values scipy's speed allows, and are fast enough to bootstrap. α and β mean the same
in the S0 and S1 parametrisations (only the location differs), so they compare with the
paper's. Not checked: agreement with PyLevy's likelihood fit on non-stable samples.

At α = 2 the law is Gaussian whatever β is: β is not identified there, and McCulloch's
table returns ±1 by the sign of the quantile skew. We report β = 0 (the symmetric
representative) whenever α̂ = 2.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import xarray as xr

from walknoise.errors import WalknoiseError

Array = npt.NDArray[np.float64]

MAX_POINTS = 50_000
"""Values the fit uses per tensor and σ (a fixed random subset spread evenly over the
groups). McCulloch's estimator on 5·10⁴ points has a standard error near 0.01-0.02 in α,
which the bootstrap interval includes (it resamples this subset), and one fit takes about
10 ms, so a 100-replicate interval costs about a second."""
REPLICATES = 100
"""Bootstrap replicates (resampled groups) per interval: enough for a rough 95 % percentile
interval (its ends are about the 3rd and 98th of the sorted replicates)."""
LEVEL = 0.95
"""Coverage of the percentile intervals."""
MIN_POINTS = 16


@dataclass(frozen=True)
class StableFit:
    """α̂, β̂ and their percentile-bootstrap intervals (NaN where they cannot be computed)."""

    alpha: float
    """Tail index, in (0, 2]; 2 is Gaussian."""
    beta: float
    """Asymmetry in [−1, 1]; positive: the right tail is heavier. 0 when α̂ = 2."""
    alpha_low: float
    alpha_high: float
    beta_low: float
    beta_high: float
    n: int
    """Values the point estimate used."""
    groups: int
    """Independent groups the bootstrap resampled (batches, or draws with one batch)."""


def fit_stable(x: npt.ArrayLike) -> tuple[float, float]:
    """(α̂, β̂) of one sample by McCulloch's quantile estimator (scipy's implementation)."""
    from scipy import stats  # imported here: only the stable fit needs scipy

    arr = np.asarray(x, dtype=np.float64).reshape(-1)
    if arr.size < MIN_POINTS:
        raise WalknoiseError(f"the stable fit needs at least {MIN_POINTS} values, got {arr.size}")
    if not np.all(np.isfinite(arr)):
        raise WalknoiseError("the stable fit got non-finite values; drop NaN/inf values first")
    if np.ptp(arr) == 0:
        return math.nan, math.nan  # a constant sample has no law to fit
    alpha, beta, _loc, _scale = stats.levy_stable._fitstart(arr)
    alpha, beta = float(alpha), float(beta)
    return alpha, (0.0 if alpha >= 2.0 else beta)


def _subsample(groups: Sequence[Array], rng: np.random.Generator, total: int) -> list[Array]:
    per = max(1, -(-total // max(1, len(groups))))
    return [g if g.size <= per else rng.choice(g, size=per, replace=False) for g in groups]


def fit_stable_groups(
    groups: Sequence[npt.ArrayLike],
    rng: np.random.Generator,
    *,
    replicates: int = REPLICATES,
    level: float = LEVEL,
    max_points: int = MAX_POINTS,
) -> StableFit:
    """Fit the pooled sample, and bootstrap the fit by resampling whole groups.

    ``groups`` are the independent units (a measurement's batches: the draws and
    coordinates of one batch share its data and are dependent), so the interval covers
    both the data and the noise draws. With fewer than two groups, or fewer than
    ``MIN_POINTS`` values, the interval (or everything) is NaN.
    """
    if not 0 < level < 1:
        raise WalknoiseError(f"level={level}; it must be in (0, 1), e.g. 0.95")
    arrays = [np.asarray(g, dtype=np.float64).reshape(-1) for g in groups]
    picks = [g for g in _subsample(arrays, rng, max_points) if g.size]
    n = int(sum(g.size for g in picks))
    if n < MIN_POINTS:
        nan = math.nan
        return StableFit(nan, nan, nan, nan, nan, nan, n=n, groups=len(picks))
    alpha, beta = fit_stable(np.concatenate(picks))
    low = high = np.full(2, math.nan)
    if len(picks) >= 2 and replicates > 0:
        reps = np.array([_replicate(picks, rng) for _ in range(replicates)])
        tail = 100 * (1 - level) / 2
        low, high = np.nanpercentile(reps, [tail, 100 - tail], axis=0)
    return StableFit(
        alpha, beta, float(low[0]), float(high[0]), float(low[1]), float(high[1]),
        n=n, groups=len(picks),
    )  # fmt: skip


def _replicate(picks: Sequence[Array], rng: np.random.Generator) -> tuple[float, float]:
    chosen = rng.integers(0, len(picks), size=len(picks))
    return fit_stable(np.concatenate([picks[i] for i in chosen]))


def stable_into(
    ds: xr.Dataset,
    cell: tuple[int, int],
    suffix: str,
    values: npt.NDArray[np.float64],
    keep: npt.NDArray[np.bool_],
    rng: np.random.Generator,
    bootstrap: int,
) -> None:
    """Fit ``values[keep]`` (both ``(batch, draw, coordinate)``) and write α, β and their
    intervals into ``ds`` as ``alpha{suffix}``, ``alpha{suffix}_low``, … at ``cell``.

    Batches are the bootstrap's independent units; a single batch falls back to its i.i.d.
    noise draws."""
    by_batch = values.shape[0] >= 2
    units, mask = (values, keep) if by_batch else (values.swapaxes(0, 1), keep.swapaxes(0, 1))
    groups = [u[k] for u, k in zip(units, mask, strict=True)]
    fit = fit_stable_groups(groups, rng, replicates=bootstrap)
    j, i = cell
    for var, (est, low, high) in (
        ("alpha", (fit.alpha, fit.alpha_low, fit.alpha_high)),
        ("beta", (fit.beta, fit.beta_low, fit.beta_high)),
    ):
        ds[f"{var}{suffix}"].values[j, i, 0] = est
        ds[f"{var}{suffix}_low"].values[j, i, 0] = low
        ds[f"{var}{suffix}_high"].values[j, i, 0] = high
    if not suffix:
        ds["stable_n"].values[j, i, 0] = fit.n
