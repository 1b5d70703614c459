"""Midpoints refined to ``rtol``: extra σ inside the grid interval holding the crossing.

The refinement's points are points of the very curve the grid samples (common random
numbers), so a grid scan at exactly those σ must give the same accuracies; a coarse and a
fine grid over one range must then agree on the midpoint to ``rtol``.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

import walknoise
from tests.conftest import assert_same_accuracy, learnable_data, tiny_mlp
from walknoise.walk.metrics import REACHED, layer_midpoint
from walknoise.walk.refine import refine
from walknoise.walk.report import midpoint_table

CLEAN, CHANCE = 0.98, 0.1


def logistic(mid: float, width: float = 0.3, repeats: int = 3):  # type: ignore[no-untyped-def]
    """Accuracy of each repeat at σ, exactly halfway at ``mid``; repeats shifted a little."""

    def probe(sigma: float) -> np.ndarray:
        z = (math.log10(sigma) - math.log10(mid) + 0.02 * np.arange(repeats)) / width
        return CHANCE + (CLEAN - CHANCE) / (1 + np.exp(z))

    return probe


def grid_of(probe, sigmas: np.ndarray) -> np.ndarray:  # type: ignore[no-untyped-def]
    return np.array([probe(s) for s in sigmas])


@pytest.mark.parametrize("mid", [0.05, 2.0, 300.0])
@pytest.mark.parametrize("rtol", [0.05, 0.01])
def test_refined_bracket_holds_the_crossing_within_rtol(mid: float, rtol: float) -> None:
    probe = logistic(mid)
    sigmas = np.logspace(-2, 3, 5)  # a grid 1.25 decades apart
    true_mid = mid * 10 ** (-0.02)  # the crossing of the repeat mean (shifts -0.02..0)
    curve = refine(sigmas, grid_of(probe, sigmas), CLEAN, CHANCE, probe, rtol=rtol)
    found = curve.visits
    assert found.sigmas and all(s not in sigmas for s in found.sigmas)
    assert found.low <= true_mid * 1.02 and true_mid / 1.02 <= found.high  # mean: ±0.02 dex
    assert found.high / found.low <= 1 + rtol
    # the merged curve: grid and visits in order, each visit's accuracy where it belongs
    assert np.all(np.diff(curve.sigmas) > 0) and len(curve.sigmas) == 5 + len(found.sigmas)
    np.testing.assert_array_equal(curve.accuracy, grid_of(probe, curve.sigmas))
    mp = layer_midpoint(curve.sigmas, curve.accuracy, CLEAN, CHANCE)
    assert (mp.bracket_low, mp.bracket_high) == (found.low, found.high)
    assert mp.value == pytest.approx(found.value) and mp.status == REACHED


@pytest.mark.parametrize("mid", [1e-4, 1e5])  # below the range, never reached
def test_nothing_to_refine_evaluates_nothing(mid: float) -> None:
    sigmas = np.logspace(-2, 3, 5)

    def no_probe(sigma: float) -> np.ndarray:
        raise AssertionError(f"evaluated σ={sigma}")

    curve = refine(sigmas, grid_of(logistic(mid), sigmas), CLEAN, CHANCE, no_probe, rtol=0.05)
    assert not curve.visits.sigmas and len(curve.sigmas) == 5


def test_a_grid_already_within_rtol_is_not_refined() -> None:
    sigmas = np.logspace(-2, 3, 400)  # a ratio of 1.03 between neighbours
    probe = logistic(2.0)
    curve = refine(sigmas, grid_of(probe, sigmas), CLEAN, CHANCE, probe, rtol=0.05)
    assert not curve.visits.sigmas


SCAN = {"repeats": 2, "progress": False, "layers": ["fc1", "act1"]}


def test_refinement_points_are_grid_points_of_the_same_draws(trained_mlp, data) -> None:  # type: ignore[no-untyped-def]
    x, _ = data
    coarse = walknoise.scan(trained_mlp, data, sigmas="log:1e-2:1e3:5", **SCAN)
    ds = coarse.dataset
    for layer in ("fc1", "act1"):
        visits = int(ds["search_visits"].sel(layer=layer))
        assert visits >= 1
        sigmas = ds["search_sigma"].sel(layer=layer).values[:visits]
        order = np.argsort(sigmas)
        grid = walknoise.scan(
            trained_mlp, data, sigmas=list(sigmas[order]), refine=False, **SCAN
        )  # a plain grid at the refinement's σ: the same draws give the same accuracy
        got = ds["search_accuracy"].sel(layer=layer).values[:visits][order]
        assert_same_accuracy(got, grid.accuracy.sel(layer=layer).values, len(x))


def test_coarse_and_fine_grids_agree_to_rtol(trained_mlp, data) -> None:  # type: ignore[no-untyped-def]
    """The acceptance line of issue 13 on a tiny model: 5 σ and 41 σ over one range."""
    coarse = walknoise.scan(trained_mlp, data, sigmas="log:1e-2:1e3:5", **SCAN).midpoints()
    fine = walknoise.scan(trained_mlp, data, sigmas="log:1e-2:1e3:41", **SCAN).midpoints()
    for layer in ("fc1", "act1"):
        c, f = coarse.loc[layer], fine.loc[layer]
        assert c["within_rtol"] and f["within_rtol"]
        inside = c["bracket_low"] <= f["midpoint"] <= c["bracket_high"]
        assert abs(c["midpoint"] / f["midpoint"] - 1) <= 0.05 or inside, (c, f)


def test_without_refinement_the_grid_bracket_is_reported(trained_mlp, data) -> None:  # type: ignore[no-untyped-def]
    result = walknoise.scan(trained_mlp, data, sigmas="log:1e-2:1e3:6", refine=False, **SCAN)
    mids = result.midpoints()
    assert "search_visits" not in result.dataset
    # the midpoint lies in its bracket, two neighbouring grid points
    grid = list(result.sigmas)
    for _layer, row in mids.iterrows():
        assert row["bracket_low"] <= row["midpoint"] <= row["bracket_high"]
        assert grid.index(row["bracket_high"]) == grid.index(row["bracket_low"]) + 1
    assert not mids["within_rtol"].any()


def test_train_phase_reports_the_bracket_over_trainings() -> None:
    x, y = learnable_data(200)
    result = walknoise.scan(
        tiny_mlp(), (x, y), sigmas="0.3,3,30", repeats=2, progress=False, layers=["fc1"],
        phase="train", train={"epochs": 1, "batch_size": 50}, train_data=(x, y),
    )  # fmt: skip
    ds = result.dataset
    assert "search_visits" not in ds  # nothing is refined: each extra σ is a training
    mids = result.midpoints("train")
    reached = mids[mids["status"] == REACHED]
    assert len(reached) >= 1
    clean = float(ds["clean_model_accuracy"].mean())  # the seeds' clean models
    chance = result.chance_accuracy
    for layer, row in reached.iterrows():
        acc = ds["trained_accuracy"].sel(layer=layer).values.mean(axis=1)
        i = int(np.flatnonzero(acc <= chance + (clean - chance) / 2)[0])
        assert (row["bracket_low"], row["bracket_high"]) == (result.sigmas[i - 1], result.sigmas[i])
        assert not row["within_rtol"]
        assert f"[{row['bracket_low']:.3g}, {row['bracket_high']:.3g}]" in midpoint_table(result)


def test_phase_both_refines_on_each_seeds_clean_model() -> None:
    # eval cells of phase "both" walk the clean model of each seed: repeat r's extra σ run
    # on model r, so a grid at those σ (the same clean models, retrained alike) agrees
    x, y = learnable_data(200)
    kwargs = dict(
        repeats=2, progress=False, layers=["fc1"], phase="both",
        train={"epochs": 1, "batch_size": 50}, train_data=(x, y),
    )  # fmt: skip
    both = walknoise.scan(tiny_mlp(), (x, y), sigmas="0.01,1,100", **kwargs)  # type: ignore[arg-type]
    ds = both.dataset
    visits = int(ds["search_visits"].sel(layer="fc1"))
    assert visits >= 1 and bool(both.midpoints().loc["fc1", "within_rtol"])
    sigmas = ds["search_sigma"].sel(layer="fc1").values[:visits]
    order = np.argsort(sigmas)
    grid = walknoise.scan(tiny_mlp(), (x, y), sigmas=list(sigmas[order]), refine=False, **kwargs)  # type: ignore[arg-type]
    got = ds["search_accuracy"].sel(layer="fc1").values[:visits][order]
    assert_same_accuracy(got, grid.accuracy.sel(layer="fc1").values, len(x))
