"""Paired tests of each method against the baseline, over seeds.

Every seed gives each method the same initial weights, data order and perturbed test inputs,
so the per-seed differences ``method − baseline`` are paired. The test is the two-sided
paired t-test (``scipy.stats.ttest_rel``). With 3 seeds it has 2 degrees of freedom and little
power: only differences several times the seed-to-seed spread of the differences reach
p < 0.05. (Wilcoxon's signed-rank test cannot go below p = 0.25 with 3 pairs.) No correction
for the many comparisons of a table is applied: read single p-values near 0.05 as weak.
"""

from __future__ import annotations

import warnings

import numpy as np
from scipy import stats

__all__ = ["TEST", "paired_test"]

SAME = 1e-9
"""Differences closer than this count as equal: accuracies are counts / n, and their float
differences can disagree in the last bit, which would make an infinite t out of rounding."""
TEST = "two-sided paired t-test over seeds (scipy.stats.ttest_rel), method minus baseline"


def paired_test(values: np.ndarray, baseline: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(mean difference, p-value) of ``values − baseline`` along the last axis (seeds).

    NaN where fewer than 2 seeds are finite in both, or where every difference is equal
    (no spread: the t statistic is undefined).
    """
    values, baseline = np.broadcast_arrays(np.asarray(values, float), np.asarray(baseline, float))
    diff = values - baseline
    ok = np.isfinite(diff)
    n = ok.sum(axis=-1)
    with np.errstate(invalid="ignore"):
        mean = np.where(n > 0, np.where(ok, diff, 0).sum(axis=-1) / np.maximum(n, 1), np.nan)
    p = np.full(mean.shape, np.nan)
    for index in np.ndindex(mean.shape):
        d = diff[index][ok[index]]
        if d.size >= 2 and np.ptp(d) > SAME:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)
                p[index] = stats.ttest_rel(d, np.zeros_like(d)).pvalue
    return mean, p
