"""Phase criteria on hand-made trajectories, and the exponential fit on known curves."""

from __future__ import annotations

import math

import numpy as np
import pytest

from walknoise.errors import WalknoiseError
from walknoise.nin.phases import (
    PHASES,
    PhaseCriteria,
    classify,
    evidence,
    fit_decay,
    majority,
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


def test_decoupled_niws_stay_and_loss_matches_the_run_without_nins() -> None:
    niw = _niw(np.exp(-STEPS / 30_000))  # 1.3% down over the run: the NIWs stay put
    assert classify(niw, _loss(seed=2), REFERENCE) == "decoupled"  # only minibatch noise
    assert classify(niw, REFERENCE, REFERENCE) == "decoupled"


def test_decay_niws_decay_and_standard_learning_proceeds() -> None:
    # The poster's decay phase: the NIWs decay, the loss follows the run without NINs.
    niw = _niw(np.exp(-STEPS / 300))  # ends at 0.26 of its start
    assert classify(niw, _loss(seed=2), REFERENCE) == "decay"
    # 'NIWs decay' means at least `decay` (10%) below the start: 8% is not, 12% is.
    assert classify(_niw(1 - 0.08 * STEPS / T), _loss(seed=2), REFERENCE) == "decoupled"
    assert classify(_niw(1 - 0.12 * STEPS / T), _loss(seed=2), REFERENCE) == "decay"


def test_denoising_niws_decay_while_learning_is_held_back() -> None:
    niw = _niw(0.1 + 0.9 * np.exp(-STEPS / 60))
    slower = _loss(drop_time=160.0, seed=2)
    assert classify(niw, slower, REFERENCE) == "denoising"


def test_undetermined_when_the_reference_did_not_learn() -> None:
    # The case: the run without NINs went 2.309 -> 2.299 (chance level all along).
    flat = np.linspace(2.309, 2.299, T) + _noise(0.02, 4)
    niw = _niw(np.exp(-STEPS / 300))
    stuck = np.linspace(2.309, 2.2935, T) + _noise(0.02, 5)  # 'differs' by 0.0055 nat
    assert classify(niw, stuck, flat) == "undetermined"
    assert classify(niw, flat, flat) == "undetermined"  # even a perfect match tells nothing
    ev = evidence(niw, stuck, flat)
    assert ev.reference_fall == pytest.approx(1 - 2.2995 / 2.3085, abs=0.005)
    # A broken run stays a failure whatever the reference did.
    broken = stuck.copy()
    broken[100:] = np.nan
    assert classify(niw, broken, flat) == "divergent"
    # The threshold: the reference's loss must fall by `learned` (5%) of its start.
    for fall, phase in ((0.04, "undetermined"), (0.06, "decay")):
        reference = np.where(STEPS[1:] <= T // 2, 2.3, 2.3 * (1 - fall))  # windows: exact
        assert classify(niw, reference, reference) == phase
        assert classify(niw, reference, reference, PhaseCriteria(learned=0.03)) == "decay"
    # The clean test loss, where given, judges instead (NaN: not evaluated at that step).
    test = np.full(T + 1, np.nan)
    test[[0, 100, T]] = [2.30, 2.0, 1.9]
    assert evidence(niw, flat, flat, reference_test_loss=test).reference_fall == pytest.approx(
        1 - 1.9 / 2.3
    )
    assert classify(niw, flat, flat, reference_test_loss=test) == "decay"
    test[T] = 2.2  # 4.3% down
    assert classify(niw, stuck, flat, reference_test_loss=test) == "undetermined"


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
    # The same NIW growth with learning untouched (e.g. an Adam random walk): the noise does
    # not reach learning, so the NIN is decoupled.
    assert classify(growing, _loss(seed=2), REFERENCE) == "decoupled"


def test_unclassified_and_no_reference() -> None:
    drifting = _niw(1 + 0.5 * STEPS / T)  # up 1.5x: no catapult, no decay
    assert classify(drifting, _loss(drop_time=160.0, seed=2), REFERENCE) == "unclassified"
    # Without a reference run, whether standard learning proceeds cannot be told ...
    assert classify(_niw(np.exp(-STEPS / 300)), REFERENCE) == "undetermined"
    # ... but a broken run, or a catapult, is one by its own series.
    bump = 1 + 6 * np.exp(-(((STEPS - 60) / 25.0) ** 2))
    assert classify(_niw(bump), _loss(seed=2)) == "undetermined"
    loss = _loss(seed=2)
    loss[300:] = np.inf
    assert classify(_niw(bump), loss) == "divergent"


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
    assert (ev.loss_peak, ev.loss_end, ev.loss_gap, ev.reference_fall) == (1.0, 1.0, 0.0, 0.0)
    assert math.isnan(evidence(niw, loss).reference_fall)


def test_majority_over_seeds() -> None:
    code = {name: i for i, name in enumerate(PHASES)}
    assert majority([code["decay"], code["decay"], code["catapult"]]) == ("decay", 2)
    assert majority([code["decay"], code["catapult"]]) == ("catapult", 1)  # tie: more severe
    assert majority([code["undetermined"], code["decay"]]) == ("decay", 1)
    assert majority([code["undetermined"]] * 2) == ("undetermined", 2)


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
    "kwargs",
    [
        {"rise": 1.0},
        {"fall": 0.0},
        {"match": -0.1},
        {"smooth": 0.0},
        {"smooth": 0.7},
        {"learned": 1.0},
        {"decay": -0.1},
    ],
)
def test_bad_criteria(kwargs: dict[str, float]) -> None:
    with pytest.raises(WalknoiseError):
        PhaseCriteria(**kwargs)


def test_run_too_short() -> None:
    with pytest.raises(WalknoiseError, match="two steps"):
        classify(np.ones((1, 1)), np.ones(1))
