"""Adaptive midpoint search on curves with a known crossing."""

import math

import numpy as np
import pytest

from walknoise.walk.metrics import BELOW_RANGE, NOT_REACHED, REACHED
from walknoise.walk.search import find_midpoint


def logistic(mid: float, width: float = 0.4, clean: float = 0.98, chance: float = 0.1):  # type: ignore[no-untyped-def]
    """Accuracy falling from clean to chance around ``mid``; exactly halfway at ``mid``."""

    def probe(sigma: float) -> np.ndarray:
        z = (math.log10(sigma) - math.log10(mid)) / width
        return np.array([chance + (clean - chance) / (1 + math.exp(z))] * 3)

    return probe


@pytest.mark.parametrize("mid", [0.03, 0.7, 5.0, 400.0])
@pytest.mark.parametrize("width", [0.15, 0.4, 1.0])
def test_finds_the_crossing_within_rtol_in_few_evaluations(mid: float, width: float) -> None:
    found = find_midpoint(logistic(mid, width), 1e-2, 1e3, clean=0.98, chance=0.1, rtol=0.05)
    assert found.status == REACHED
    assert found.value == pytest.approx(mid, rel=0.05)
    assert len(found.sigmas) <= 8
    assert all(1e-2 <= s <= 1e3 for s in found.sigmas)


def test_not_reached_and_below_range() -> None:
    assert find_midpoint(logistic(1e5), 1e-2, 1e3, 0.98, 0.1).status == NOT_REACHED
    below = find_midpoint(logistic(1e-4), 1e-2, 1e3, 0.98, 0.1)
    assert below.status == BELOW_RANGE and below.value == 1e-2 and len(below.sigmas) == 1


def test_search_on_a_real_scan_matches_the_grid(trained_mlp, data) -> None:  # type: ignore[no-untyped-def]
    import walknoise

    kwargs = {"sigmas": "log:1e-2:1e2:25", "repeats": 2, "progress": False}
    grid = walknoise.scan(trained_mlp, data, **kwargs)
    found = walknoise.scan(trained_mlp, data, midpoint_search=True, **kwargs)
    ds = found.dataset
    reached = grid.dataset["midpoint_status"].values == REACHED
    np.testing.assert_allclose(
        ds["midpoint"].values[reached], grid.dataset["midpoint"].values[reached], rtol=0.05
    )
    # a third of the grid's evaluations: it stops on a bracket within rtol (a σ ratio of
    # 1.05), which from [1e-2, 1e2] takes 6-7 Illinois steps here
    assert (ds["search_visits"].values <= 25 / 3).all()
    assert np.isnan(ds["accuracy"].values).all()  # the grid itself was never walked
