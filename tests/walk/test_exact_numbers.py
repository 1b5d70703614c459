"""Metrics, weight statistics and spec rules against independent computations: scipy's moments,
numpy's histogram, a bootstrap redone by hand, and the limits the docs promise.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy import stats
from torch import nn

from tests.conftest import tiny_mlp
from walknoise.errors import WalknoiseError
from walknoise.walk.metrics import NOT_REACHED, BatchStats, layer_midpoint, midpoint, score
from walknoise.walk.spec import MAX_CELLS, ScanSpec, check_sigmas
from walknoise.walk.weights import (
    STATS,
    bimodality,
    kurtosis,
    mode_fraction,
    param_layers,
    weight_hists,
    weight_stats,
)

SIGMAS = np.array([0.01, 0.1, 1.0, 10.0, 100.0])

# --- metrics ---------------------------------------------------------------------------------


def test_a_nan_in_the_curve_means_not_reached() -> None:
    value, status = midpoint(SIGMAS, np.array([0.9, np.nan, 0.2, 0.1, 0.1]), 0.9, 0.1)
    assert math.isnan(value) and status == NOT_REACHED


def by_hand_midpoint(acc: np.ndarray, clean: float, chance: float) -> float:
    """Log-linear crossing of a decreasing curve by np.interp; +inf if it never crosses."""
    threshold = (clean + chance) / 2
    if acc.min() > threshold:
        return math.inf
    return float(np.exp(np.interp(threshold, acc[::-1], np.log(SIGMAS)[::-1])))


def test_bootstrap_interval_redone_by_hand() -> None:
    # repeats crossing at different σ, and one that never crosses: high must be NaN (+inf)
    acc = np.array(
        [
            [0.9, 0.9, 0.9, 0.9],
            [0.6, 0.8, 0.9, 0.9],
            [0.2, 0.4, 0.7, 0.9],
            [0.1, 0.1, 0.3, 0.8],
            [0.1, 0.1, 0.1, 0.7],
        ]
    )
    mid = layer_midpoint(SIGMAS, acc, clean=0.9, chance=0.1, n_boot=400, seed=5)
    idx = np.random.default_rng(5).integers(0, 4, size=(400, 4))
    boots = [by_hand_midpoint(acc[:, ix].mean(axis=1), 0.9, 0.1) for ix in idx]
    # the same interpolation computed two ways: equal to float64 rounding
    assert mid.low == pytest.approx(np.percentile(boots, 2.5, method="lower"), rel=1e-12)
    assert math.isnan(mid.high) and math.isinf(np.percentile(boots, 97.5, method="higher"))
    assert mid.value == pytest.approx(by_hand_midpoint(acc.mean(axis=1), 0.9, 0.1), rel=1e-12)
    assert np.isinf(by_hand_midpoint(acc[:, 3], 0.9, 0.1)) and math.isnan(mid.per_repeat[3])


def test_one_repeat_has_no_interval() -> None:
    mid = layer_midpoint(SIGMAS, np.array([[0.9], [0.8], [0.4], [0.1], [0.1]]), 0.9, 0.1)
    assert math.isfinite(mid.value) and math.isnan(mid.low) and math.isnan(mid.high)


def test_finite_logits_keep_a_finite_loss_in_float64() -> None:
    # float32 log-softmax of (3e38, -3e38) overflows to -inf; in float64 the loss of the
    # wrong class is the logit gap, 6e38: the row is finite, scored and in the loss
    logits = torch.tensor([[[2.0, 0.0], [3e38, -3e38], [0.0, 1.0]]])
    y = torch.tensor([0, 1, 1])
    correct, loss_sum, finite = score(logits, y)
    expected = -torch.log_softmax(torch.tensor([[2.0, 0.0], [0.0, 1.0]]), 1)[[0, 1], [0, 1]]
    assert correct.tolist() == [2] and finite.tolist() == [3]
    assert loss_sum.item() == pytest.approx(6e38 + expected.sum().item(), rel=1e-6)


def test_batch_stats_average_the_finite_rows() -> None:
    acc = BatchStats.zeros(2, "cpu")
    acc.correct += torch.tensor([3.0, 1.0])
    acc.loss_sum += torch.tensor([2.0, 1.5])
    acc.finite += torch.tensor([4.0, 3.0])
    acc.total = 4
    np.testing.assert_allclose(acc.accuracy(), [0.75, 0.25])
    np.testing.assert_allclose(acc.mean_loss(), [0.5, 0.5])
    np.testing.assert_allclose(acc.nonfinite_fraction(), [0.0, 0.25])


# --- weight statistics -----------------------------------------------------------------------

SKEWED = torch.from_numpy(np.random.default_rng(0).gamma(2.0, 3.0, 20_000) + 5)  # mean ≫ 0


def test_moments_match_scipy_on_skewed_offset_weights() -> None:
    w = SKEWED.numpy()
    k = stats.kurtosis(w, fisher=False)
    # two float64 computations of the same moments: equal to rounding
    assert kurtosis(SKEWED) == pytest.approx(k, rel=1e-9)
    assert bimodality(SKEWED) == pytest.approx((stats.skew(w) ** 2 + 1) / k, rel=1e-9)
    assert bimodality(
        -SKEWED
    )  # skew < 0: skew² either way == pytest.approx((stats.skew(w) ** 2 + 1) / k, rel=1e-9)


def test_mode_fraction_is_relative_to_mean_abs() -> None:
    w = torch.tensor([5.0, -5.2, 5.4, -5.6, 4.4, -6.0, 0.1, -2.0])  # mean |w| = 4.2125
    a = w.abs().numpy()
    m = a.mean()
    assert mode_fraction(w) == pytest.approx(np.mean(np.abs(a - m) <= 0.1 * m))
    # within 10% of 4.2125 is [3.79, 4.63]: only 4.4 (an absolute 0.1, or 20%, would differ)
    assert mode_fraction(w) == 0.125


def test_histogram_matches_numpy_over_the_largest_magnitude() -> None:
    g = torch.Generator().manual_seed(0)
    layer = nn.Sequential(nn.Linear(40, 30))
    with torch.no_grad():  # lopsided: the largest |w| is negative, max(w) is much smaller
        layer[0].weight.copy_(torch.rand(30, 40, generator=g) * 1.5 - 1.2)
    w = layer[0].weight.detach().double().numpy().ravel()
    edge = np.abs(w).max()
    expected, _ = np.histogram(w, bins=16, range=(-edge, edge), density=True)
    (hist,) = weight_hists(layer, ["0"], bins=16)
    # histc and np.histogram agree except for values on a bin edge (none in random data)
    np.testing.assert_allclose(hist, expected, rtol=1e-9)


def test_only_weight_matrices_and_kernels_are_weight_layers() -> None:
    model = tiny_mlp(batchnorm=True)  # bn1.weight is 1-D
    model.add_module("norm", nn.LayerNorm(4))
    assert param_layers(model) == ["fc1", "fc2"]


def test_every_statistic_is_reported_with_its_value() -> None:
    model = tiny_mlp()
    out = weight_stats(model, ["fc1", "fc2"])
    assert set(out) == set(STATS) == {
        "weight_l2", "weight_mean_abs", "weight_max_abs", "weight_kurtosis",
        "weight_bimodality", "weight_mode_fraction",
    }  # fmt: skip
    w = model.fc2.weight.detach().double().numpy()
    assert out["weight_max_abs"][1] == np.abs(w).max()
    assert out["weight_l2"][1] == pytest.approx(np.linalg.norm(w), rel=1e-12)


# --- spec rules --------------------------------------------------------------------------------


@pytest.mark.parametrize("sigmas", [(0.0, 1.0), (1.0, math.inf), (0.1, math.nan), (-1.0, 1.0)])
def test_sigmas_must_be_finite_and_positive(sigmas: tuple[float, ...]) -> None:
    with pytest.raises(WalknoiseError, match="finite and positive") as err:
        check_sigmas(sigmas)
    assert err.value.argument == "sigmas"


def test_the_cell_limit_counts_repeats() -> None:
    ScanSpec(sigmas=(1.0, 2.0), repeats=MAX_CELLS // 2)  # exactly at the limit: allowed
    with pytest.raises(WalknoiseError, match="1,000,000 cells per layer"):
        ScanSpec(sigmas=(1.0, 2.0), repeats=MAX_CELLS // 2 + 1)


@pytest.mark.parametrize("phase", ["train", "both"])
def test_midpoint_search_is_eval_only(phase: str) -> None:
    with pytest.raises(WalknoiseError, match="needs phase='eval'"):
        ScanSpec(sigmas=(1.0,), midpoint_search=True, phase=phase)  # type: ignore[arg-type]


@pytest.mark.parametrize("clamp", [0.0, -0.5, math.nan])
def test_clamp_must_be_positive(clamp: float) -> None:
    with pytest.raises(WalknoiseError, match="it must be positive"):
        ScanSpec(sigmas=(1.0,), clamp=clamp)


def test_runtime_fields_are_not_part_of_the_identity() -> None:
    base = ScanSpec(sigmas=(0.1, 1.0))
    fast = ScanSpec(sigmas=(0.1, 1.0), max_batch=64, device="cuda")
    assert base.identity() == fast.identity()
    assert "max_batch" not in base.identity() and "device" not in base.identity()
    assert ScanSpec(sigmas=(0.1, 1.0), batch_size=64).identity() != base.identity()


def test_combined_ratio_survives_the_json_round_trip() -> None:
    spec = ScanSpec(sigmas=(0.1,), noise="combined", ratio=0.3)
    again = ScanSpec.from_json(spec.to_json())
    assert again.ratio == 0.3 and again.identity()["ratio"] == 0.3


def test_midpoint_rows_equal_one_call_per_row() -> None:
    """The bootstrap's vectorised midpoints against :func:`midpoint` row by row, on curves
    that cross, start below, never cross and hold a NaN."""
    from walknoise.walk.metrics import midpoint, midpoint_rows

    rng = np.random.default_rng(3)
    curves = np.sort(rng.uniform(0.05, 0.95, (200, len(SIGMAS))), axis=1)[:, ::-1]
    curves[0] = 0.9  # never crosses
    curves[1] = 0.2  # below at the smallest σ
    curves[2, 3] = np.nan
    want = [midpoint(SIGMAS, c, 0.9, 0.1)[0] for c in curves]
    # same formula, numpy's vector log/exp against its scalar ones: a few ulps at most
    np.testing.assert_allclose(midpoint_rows(SIGMAS, curves, 0.9, 0.1), want, rtol=1e-13)
