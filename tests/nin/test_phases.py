"""Phase criteria on hand-made trajectories, and the exponential fit on known curves."""

from __future__ import annotations

import math

import numpy as np
import pytest

from walknoise.errors import WalknoiseError
from walknoise.nin.phases import (
    PhaseCriteria,
    classify,
    evidence,
    fit_decay,
    smooth,
)

T = 400
STEPS = np.arange(T + 1)


def _noise(scale: float, seed: int = 0) -> np.ndarray:
    return scale * np.random.default_rng(seed).standard_normal(T)


def _loss(drop_time: float = 80.0, noise: float = 0.05, seed: int = 0) -> np.ndarray:
    """A learning curve 2.3 -> 0.3 plus minibatch noise (steps 1..T)."""
    t = STEPS[1:]
    return 0.3 + 2.0 * np.exp(-t / drop_time) + _noise(noise, seed)


def _niw(shape: np.ndarray, start: float = 0.2) -> np.ndarray:
    return np.atleast_2d(start * shape)


REFERENCE = _loss(seed=1)


def test_decoupled_niws_decay_loss_matches_the_run_without_nins() -> None:
    niw = _niw(np.exp(-STEPS / 300))
    assert classify(niw, _loss(seed=2), REFERENCE) == "decoupled"  # only minibatch noise
    assert classify(niw, REFERENCE, REFERENCE) == "decoupled"


def test_decay_niws_decay_loss_is_affected() -> None:
    niw = _niw(0.1 + 0.9 * np.exp(-STEPS / 60))
    slower = _loss(drop_time=160.0, seed=2)
    assert classify(niw, slower, REFERENCE) == "decay"


def test_catapult_niw_rises_then_falls() -> None:
    bump = 1 + 6 * np.exp(-(((STEPS - 60) / 25.0) ** 2))  # up to 7x, back to 1x
    assert classify(_niw(bump), _loss(drop_time=200.0, seed=2), REFERENCE) == "catapult"


def test_catapult_by_a_loss_spike() -> None:
    loss = _loss(seed=2)
    loss[40:70] += 5.0  # 2.3 -> ~6: a spike, then learning resumes
    assert classify(_niw(np.exp(-STEPS / 100)), loss, REFERENCE) == "catapult"


def test_divergent_non_finite() -> None:
    loss = _loss(seed=2)
    loss[200:] = np.nan
    assert classify(_niw(np.ones(T + 1)), loss, REFERENCE) == "divergent"
    niw = _niw(np.exp(STEPS / 10.0))
    niw[0, -1] = np.inf
    assert classify(niw, _loss(seed=2), REFERENCE) == "divergent"


def test_divergent_exploding_loss() -> None:
    loss = 2.3 * np.exp(STEPS[1:] / 200)  # ends at 7.4x its start, finite
    assert classify(_niw(np.ones(T + 1)), loss, REFERENCE) == "divergent"


def test_divergent_runaway_niw_that_hurts_learning() -> None:
    growing = _niw(1 + 4 * STEPS / T)  # 5x and still climbing at the end
    stuck = 2.2 + _noise(0.05, 3)  # the network does not learn
    assert classify(growing, stuck, REFERENCE) == "divergent"
    # The same NIW growth with learning untouched (e.g. an Adam random walk) is decoupled.
    assert classify(growing, _loss(seed=2), REFERENCE) == "decoupled"


def test_unclassified_and_no_reference() -> None:
    drifting = _niw(1 + 0.5 * STEPS / T)  # up 1.5x: no catapult, no decay
    assert classify(drifting, _loss(drop_time=160.0, seed=2), REFERENCE) == "unclassified"
    # Without a reference run nothing can be 'decoupled'.
    assert classify(_niw(np.exp(-STEPS / 300)), REFERENCE) == "decay"


def test_evidence_numbers() -> None:
    niw = np.stack([0.2 * np.ones(T + 1), 0.1 * (1 + 3 * np.exp(-(((STEPS - 100) / 30) ** 2)))])
    loss = np.full(T, 2.0)
    ev = evidence(niw, np.concatenate([[np.nan], loss]), np.full(T, 2.0))  # stored layout
    window = round(0.05 * T)
    peak = smooth(niw[1], window).max()
    assert ev.niw_peak == pytest.approx(peak / niw[1, 0])
    assert ev.niw_fall == pytest.approx(1 - np.mean(niw[1, -window:]) / peak)
    total = np.sqrt((niw**2).sum(0))
    assert ev.niw_end == pytest.approx(np.mean(total[-window:]) / total[0])
    assert (ev.loss_peak, ev.loss_end, ev.loss_gap) == (1.0, 1.0, 0.0)


def test_smooth_is_a_trailing_mean() -> None:
    y = np.arange(10.0)
    assert np.allclose(smooth(y, 3), [0, 0.5, 1, 2, 3, 4, 5, 6, 7, 8])
    assert np.array_equal(smooth(y, 1), y)


def test_fit_recovers_a_known_time_scale() -> None:
    rng = np.random.default_rng(0)
    y = 0.4 + 1.6 * np.exp(-STEPS / 57.0) + 0.01 * rng.standard_normal(STEPS.size)
    fit = fit_decay(STEPS, y)
    assert fit.tau == pytest.approx(57.0, rel=0.03)
    assert fit.offset == pytest.approx(0.4, abs=0.01) and fit.r2 > 0.99


def test_fit_starts_at_the_peak() -> None:
    y = np.where(STEPS < 50, 1 + STEPS / 10, 6 * np.exp(-(STEPS - 50) / 30.0))
    fit = fit_decay(STEPS, y)
    assert fit.t0 == 50 and fit.tau == pytest.approx(30.0, rel=0.01)


@pytest.mark.parametrize(
    "values",
    [
        np.exp(STEPS / 100.0),  # rising
        np.ones(STEPS.size),  # flat
        1 + 0.01 * np.random.default_rng(0).standard_normal(STEPS.size),  # jitter
        1 + 0.01 * np.exp(-STEPS / 20.0),  # a 1% ripple
        np.full(3, 1.0),  # too short
    ],
)
def test_fit_reports_no_decay(values: np.ndarray) -> None:
    assert math.isnan(fit_decay(np.arange(values.size), values).tau)


@pytest.mark.parametrize(
    "kwargs", [{"rise": 1.0}, {"fall": 0.0}, {"match": -0.1}, {"smooth": 0.0}, {"smooth": 0.7}]
)
def test_bad_criteria(kwargs: dict[str, float]) -> None:
    with pytest.raises(WalknoiseError):
        PhaseCriteria(**kwargs)


def test_run_too_short() -> None:
    with pytest.raises(WalknoiseError, match="two steps"):
        classify(np.ones((1, 1)), np.ones(1))
