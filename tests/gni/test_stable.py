"""The stable fit against draws from known stable laws, and its bootstrap intervals."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from walknoise.errors import WalknoiseError
from walknoise.gni.stable import fit_stable, fit_stable_groups

N = 100_000
GRID = [(a, b) for a in (1.2, 1.5, 1.8, 2.0) for b in (-0.5, 0.0, 0.5)]


@pytest.mark.parametrize(("alpha", "beta"), GRID)
def test_recovers_known_laws(alpha: float, beta: float) -> None:
    # The acceptance bounds of issue 14: α within 0.1, β within 0.2, on 10⁵ draws. At
    # n = 10⁵ McCulloch's estimator has standard errors near 0.01 (α) and 0.03 (β), so a
    # failure here is a bias, not bad luck.
    x = stats.levy_stable.rvs(alpha, beta, size=N, random_state=np.random.default_rng(7))
    a_hat, b_hat = fit_stable(x * 3.0 + 5.0)  # location and scale must not matter
    assert abs(a_hat - alpha) < 0.1
    if alpha < 2.0:  # at α = 2 every β gives the same Gaussian: β is not identified
        assert abs(b_hat - beta) < 0.2
    else:
        assert b_hat == 0.0  # the symmetric representative, documented in stable.py


def test_sign_of_beta_follows_the_heavy_tail() -> None:
    x = stats.levy_stable.rvs(1.5, 0.8, size=N, random_state=np.random.default_rng(1))
    assert fit_stable(x)[1] > 0.5 and fit_stable(-x)[1] < -0.5


def test_bootstrap_interval_covers_the_truth_and_shrinks_with_groups() -> None:
    rng = np.random.default_rng(3)
    x = stats.levy_stable.rvs(1.5, 0.3, size=(20, 5000), random_state=rng)
    fit = fit_stable_groups(list(x), rng, replicates=100, max_points=x.size)
    assert fit.alpha_low <= fit.alpha <= fit.alpha_high
    assert fit.beta_low <= fit.beta <= fit.beta_high
    assert fit.alpha_low < 1.5 < fit.alpha_high and fit.beta_low < 0.3 < fit.beta_high
    assert fit.n == x.size and fit.groups == 20
    # 10⁵ values: the 95 % interval of α should be a few hundredths wide (not 0, not > 0.2)
    assert 0.005 < fit.alpha_high - fit.alpha_low < 0.2
    # the same values in 4 groups: a wider spread of the group-level resampling is not
    # guaranteed, but the point estimate must not depend on the grouping
    four = fit_stable_groups(
        list(x.reshape(4, -1)), np.random.default_rng(0), replicates=50, max_points=x.size
    )
    assert four.alpha == pytest.approx(fit.alpha) and four.beta == pytest.approx(fit.beta)


def test_one_group_has_no_interval_and_subsampling_caps_the_points() -> None:
    rng = np.random.default_rng(0)
    x = rng.standard_normal((3, 1000))
    one = fit_stable_groups([x[0]], rng)
    assert not math.isnan(one.alpha) and math.isnan(one.alpha_low)
    capped = fit_stable_groups(list(x), rng, max_points=300, replicates=10)
    assert capped.n == 300


def test_degenerate_samples() -> None:
    assert all(math.isnan(v) for v in fit_stable(np.ones(100)))
    with pytest.raises(WalknoiseError, match="at least 16"):
        fit_stable(np.arange(5.0))
    with pytest.raises(WalknoiseError, match="non-finite"):
        fit_stable(np.r_[np.arange(20.0), np.nan])
    empty = fit_stable_groups([np.zeros(0), np.zeros(3)], np.random.default_rng(0))
    assert math.isnan(empty.alpha) and empty.n == 3
