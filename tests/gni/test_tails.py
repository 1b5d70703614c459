"""Tail statistics checked against samples with known laws, drawn with scipy."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from walknoise.errors import WalknoiseError
from walknoise.gni.tails import (
    bin_centres,
    histogram,
    moments,
    robust_columns,
    standardize,
    standardize_columns,
    summarize,
    tail_index,
)

N = 100_000


def stable(alpha: float, beta: float, n: int = N, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.asarray(stats.levy_stable.rvs(alpha, beta, size=n, random_state=rng))


@pytest.mark.parametrize("alpha", [1.2, 1.5, 1.8])
def test_tail_index_recovers_symmetric_stable_alpha(alpha: float) -> None:
    estimate = tail_index(stable(alpha, 0.0), rng=np.random.default_rng(1))
    assert abs(estimate - alpha) < 0.1, estimate


def test_tail_index_is_two_on_gaussian_samples() -> None:
    x = np.random.default_rng(3).standard_normal(N)
    assert abs(tail_index(x) - 2.0) < 0.1


def test_tail_index_reads_below_two_on_a_finite_variance_laplace() -> None:
    """A documented limit (docs/gni.md): at finite n, α̂ < 2 is not proof of infinite
    variance; leptokurtic laws with every moment finite read below 2 as well."""
    x = np.random.default_rng(11).laplace(size=N)
    assert 1.65 < tail_index(x, rng=np.random.default_rng(0)) < 1.85


def test_tail_index_is_scale_free_and_shuffle_breaks_runs() -> None:
    x = stable(1.5, 0.0, n=40_000)
    assert tail_index(x) == pytest.approx(tail_index(1e-3 * x), rel=1e-9)
    # Runs that sum to zero (like draws of one batch minus their mean) fool the plain
    # estimator into a huge α; a shuffle first restores the right answer.
    runs = np.random.default_rng(4).standard_normal((400, 100))
    runs -= runs.mean(axis=1, keepdims=True)
    assert tail_index(runs, block=100) > 10
    assert abs(tail_index(runs, block=100, rng=np.random.default_rng(5)) - 2.0) < 0.15


@pytest.mark.parametrize("alpha", [1.5, 1.8])
@pytest.mark.parametrize("beta", [1.0, -1.0])
def test_skewness_sign_follows_stable_beta(alpha: float, beta: float) -> None:
    # Sample skewness of a law without a third moment is set by its few largest values;
    # with |β| = 1 only one tail is heavy, so the sign is certain (with |β| = 0.8 about
    # one seed in ten flips it).
    for seed in range(3):
        skew, kurt = moments(stable(alpha, beta, seed=seed))
        assert math.copysign(1.0, skew) == beta
        assert kurt > 10  # heavy tails: far from the Gaussian 0


def test_moments_match_scipy() -> None:
    x = np.random.default_rng(6).gamma(2.0, size=5000)
    skew, kurt = moments(x)
    assert skew == pytest.approx(stats.skew(x, bias=True), rel=1e-10)
    assert kurt == pytest.approx(stats.kurtosis(x, bias=True), rel=1e-10)
    assert abs(moments(np.random.default_rng(7).standard_normal(N))[1]) < 0.05
    assert all(math.isnan(v) for v in moments(np.ones(10)))


def test_standardize_and_robust_columns() -> None:
    x = np.random.default_rng(8).normal(3.0, 5.0, size=(201, 4)) * np.array([1, 10, 100, 0])
    z = standardize(x)
    assert z.mean() == pytest.approx(0.0, abs=1e-12) and z.std() == pytest.approx(1.0)
    zc = standardize_columns(x, axis=0)
    assert np.allclose(zc[:, :3].std(axis=0), 1.0) and np.all(zc[:, 3] == 0.0)
    r = robust_columns(x, axis=0)
    mad = np.median(np.abs(x[:, 1] - np.median(x[:, 1])))
    assert np.allclose(r[:, 1], x[:, 1] / mad) and np.all(np.isnan(r[:, 3]))


@pytest.mark.parametrize("alpha", [1.5, 1.8, 2.0])
def test_per_coordinate_scaling_keeps_the_tail_index(alpha: float) -> None:
    """Columns of 100 draws at log-normal scales, as gradient coordinates are: pooling them
    raw fakes heavy tails; MAD scaling per column keeps α (its own std would not)."""
    rng = np.random.default_rng(10)
    shape = (10, 100, 1000)
    x = stable(alpha, 0.0, n=math.prod(shape)).reshape(shape)
    x = (x - x.mean(axis=1, keepdims=True)) * np.exp(rng.normal(0.0, 1.0, size=(10, 1, 1000)))
    robust = tail_index(robust_columns(x, axis=1).ravel(), rng=rng)
    assert abs(robust - alpha) < 0.1
    own_std = standardize_columns(x, axis=1)
    if alpha < 2:
        biased = tail_index(own_std.ravel(), rng=rng)  # pulled towards 2
        assert biased - alpha > abs(robust - alpha) + 0.05
    else:
        assert tail_index(x.ravel(), rng=rng) < 1.7  # the scale mixture alone


def test_summarize_and_histogram() -> None:
    z = np.random.default_rng(9).standard_normal(20_000)
    st = summarize(z, np.random.default_rng(0))
    assert st.n == 20_000 and abs(st.alpha - 2) < 0.2 and abs(st.skewness) < 0.05
    assert math.isnan(summarize(z[:10], np.random.default_rng(0)).alpha)
    counts, outside = histogram(np.append(z, [50.0, -50.0]))
    assert counts.sum() + outside == 20_002 and outside == 2
    assert len(bin_centres()) == len(counts) and bin_centres()[0] < 0 < bin_centres()[-1]


def test_bad_input_is_a_user_error() -> None:
    with pytest.raises(WalknoiseError, match="non-finite"):
        tail_index(np.array([1.0, np.nan, 2.0, 3.0, 4.0]))
    with pytest.raises(WalknoiseError, match="at least 4"):
        tail_index([1.0, 2.0])
    with pytest.raises(WalknoiseError, match="block length"):
        tail_index(np.ones(100), block=80)
