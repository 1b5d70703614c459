"""Midpoint noise level on curves whose answer is known by hand, and scoring of bad logits."""

import math

import numpy as np
import pytest
import torch

from walknoise.walk.metrics import (
    BELOW_RANGE,
    NOT_REACHED,
    REACHED,
    BatchStats,
    bracket,
    layer_midpoint,
    midpoint,
    nonmonotone,
    score,
)

SIGMAS = np.array([0.01, 0.1, 1.0, 10.0, 100.0])


def test_midpoint_interpolates_in_log_sigma() -> None:
    # clean 0.9, chance 0.1 -> threshold 0.5; crossing between σ=1 (0.7) and σ=10 (0.2):
    # t = (0.7 - 0.5) / (0.7 - 0.2) = 0.4 -> log10 σ = 0 + 0.4 -> σ = 10**0.4
    acc = np.array([0.9, 0.9, 0.7, 0.2, 0.1])
    value, status = midpoint(SIGMAS, acc, clean=0.9, chance=0.1)
    assert status == REACHED
    assert value == pytest.approx(10**0.4)


def test_midpoint_exactly_on_grid_point() -> None:
    value, _ = midpoint(SIGMAS, np.array([0.9, 0.8, 0.5, 0.3, 0.1]), 0.9, 0.1)
    assert value == pytest.approx(1.0)


def test_midpoint_not_reached_and_below_range() -> None:
    value, status = midpoint(SIGMAS, np.array([0.9, 0.9, 0.8, 0.7, 0.6]), 0.9, 0.1)
    assert math.isnan(value) and status == NOT_REACHED
    value, status = midpoint(SIGMAS, np.array([0.3, 0.2, 0.1, 0.1, 0.1]), 0.9, 0.1)
    assert value == 0.01 and status == BELOW_RANGE


def test_a_curve_with_a_missing_cell_has_no_midpoint() -> None:
    """A NaN anywhere (a cell not computed yet), even after the crossing, gives no value."""
    curve = np.array([0.9, 0.8, 0.3, float("nan"), 0.1])
    value, status = midpoint(SIGMAS, curve, 0.9, 0.1)
    assert math.isnan(value) and status == NOT_REACHED


def test_midpoint_first_crossing_wins() -> None:
    # non-monotone curve: the first fall below the threshold is the midpoint
    value, _ = midpoint(SIGMAS, np.array([0.9, 0.5, 0.8, 0.1, 0.1]), 0.9, 0.1)
    assert value == pytest.approx(0.1)


def test_layer_midpoint_spread_over_repeats() -> None:
    # repeat r crosses exactly at grid point r+1; resampling three times the same repeat
    # happens in 1000 draws, so the 95% interval spans the per-repeat extremes
    acc = np.array(
        [[0.9, 0.9, 0.9], [0.5, 0.9, 0.9], [0.1, 0.5, 0.9], [0.1, 0.1, 0.5], [0.1, 0.1, 0.1]]
    )
    mid = layer_midpoint(SIGMAS, acc, clean=0.9, chance=0.1)
    assert mid.per_repeat == pytest.approx([0.1, 1.0, 10.0])
    assert mid.low <= mid.value <= mid.high
    assert mid.low == pytest.approx(0.1) and mid.high == pytest.approx(10.0)


def test_score_counts_nonfinite_rows_as_wrong() -> None:
    y = torch.tensor([0, 1, 2])
    logits = torch.tensor(
        [
            [[5.0, 0, 0], [0, 5.0, 0], [0, 0, 5.0]],
            [[float("nan"), 0, 0], [0, float("inf"), 0], [0, 0, 5.0]],
        ]
    )
    correct, loss_sum, finite = score(logits, y)
    assert correct.tolist() == [3, 1]
    assert finite.tolist() == [3, 1]
    assert torch.isfinite(loss_sum).all()


def test_score_loss_of_huge_finite_logits_is_finite_and_counted() -> None:
    # a logit gap of 6e38 overflows float32's log-softmax; the row is finite, so it is
    # scored: correct where its argmax is right, its loss the gap itself (float64)
    y = torch.tensor([0, 1])
    logits = torch.tensor([[[3e38, -3e38, 0.0], [3e38, -3e38, 0.0]]])
    correct, loss_sum, finite = score(logits, y)
    assert correct.tolist() == [1] and finite.tolist() == [2]
    assert float(loss_sum[0]) == pytest.approx(6e38, rel=1e-6)


def test_score_every_row_overflowed_gives_zero_accuracy_and_no_loss() -> None:
    # what a forward pass that overflows float32 everywhere gives: accuracy 0 (below
    # chance, told apart by nonfinite_fraction = 1) and a mean loss of 0/0 = NaN
    stats = BatchStats.zeros(1, "cpu")
    c, ls, fin = score(torch.full((1, 4, 3), float("inf")), torch.tensor([0, 1, 2, 0]))
    stats.correct += c
    stats.loss_sum += ls
    stats.finite += fin
    stats.total += 4
    assert stats.accuracy().tolist() == [0.0]
    assert stats.nonfinite_fraction().tolist() == [1.0]
    assert math.isnan(stats.mean_loss()[0])


# (sigma, repeat) curves with clean 0.9, chance 0.1: threshold 0.5, range 0.8
FALLS = [[0.9, 0.9], [0.6, 0.6], [0.3, 0.3], [0.12, 0.1]]


@pytest.mark.parametrize(
    ("tail", "flagged"),
    [
        ([[0.11, 0.11], [0.1, 0.12]], False),  # wobbles at chance: no rise
        ([[0.3, 0.3], [0.55, 0.55]], True),  # rises by 0.44 and crosses the threshold again
        ([[0.2, 0.3], [0.26, 0.3]], True),  # 0.17 above the low, spreads 0.1 and 0.04
        ([[0.1, 0.4], [0.1, 0.12]], False),  # mean 0.25 but a spread of 0.3: within the spread
    ],
)
def test_nonmonotone_needs_a_rise_beyond_the_repeat_spread(tail, flagged) -> None:  # type: ignore[no-untyped-def]
    acc = np.array(FALLS + tail)
    assert nonmonotone(acc, 0.9, 0.1) is flagged
    assert layer_midpoint(np.logspace(-2, 3, 6), acc, 0.9, 0.1).nonmonotone is flagged


@pytest.mark.parametrize(("last", "flagged"), [(0.125, False), (0.13, True)])
def test_one_repeat_rises_only_past_the_floor(last: float, flagged: bool) -> None:
    # no spread with one repeat: the floor is 2% of clean - chance = 0.016 above the low 0.11
    acc = np.array([[0.9], [0.6], [0.3], [0.11], [0.12], [last]])
    assert nonmonotone(acc, 0.9, 0.1) is flagged


def test_a_rise_before_the_crossing_is_not_flagged() -> None:
    # up and down above the threshold, then down to chance: the midpoint is unambiguous
    acc = np.array([[0.9, 0.9], [0.7, 0.7], [0.85, 0.85], [0.3, 0.3], [0.1, 0.1]])
    assert not nonmonotone(acc, 0.9, 0.1)


def test_bracket_is_the_pair_of_grid_points_interpolated_between() -> None:
    # the crossing of [0.9, 0.9, 0.7, 0.2, 0.1] at threshold 0.5 is between σ = 1 and 10
    assert bracket(SIGMAS, np.array([0.9, 0.9, 0.7, 0.2, 0.1]), 0.9, 0.1) == (1.0, 10.0)
    assert all(math.isnan(v) for v in bracket(SIGMAS, np.array([0.4] * 5), 0.9, 0.1))
    assert all(math.isnan(v) for v in bracket(SIGMAS, np.array([0.9] * 5), 0.9, 0.1))
