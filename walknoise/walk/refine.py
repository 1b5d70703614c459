"""Midpoints to their real precision: narrow the grid interval that holds each crossing.

A grid midpoint interpolates linearly in log σ between two grid points; on a grid a decade
apart that interpolation, not the noise draws, decides most of the digits (the demo LeNet-5's
conv1 read 1.66 on 5 σ and 1.17 on 41 σ). After the grid, the refinement evaluates extra σ
inside the interval [σ_{i−1}, σ_i] where the repeat-mean accuracy first falls to the
threshold, by the adaptive search of :mod:`walknoise.walk.search` started from the grid's two
known ends, until the two evaluated σ around the crossing are within ``rtol`` of each other.
The extra σ use the grid's common random numbers (each repeat's generator draws the same ε
at any σ), so they are points of the very curve the grid samples, and the midpoint, its
bootstrap interval over repeats and the per-repeat midpoints are then computed on the grid
with the extra points merged in. A train-phase midpoint cannot be refined (each extra σ is
a training of every repeat): its bracket is reported instead.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from walknoise.walk.metrics import REACHED, Midpoint, bracket, midpoint
from walknoise.walk.schema import MAX_VISITS
from walknoise.walk.search import Probe, Search, find_midpoint


@dataclass(frozen=True)
class Curve:
    """A layer's accuracy curve: the grid, with any refinement points merged in."""

    sigmas: np.ndarray
    """Increasing σ values."""
    accuracy: np.ndarray
    """Accuracy of each repeat, shape ``(sigma, repeat)``."""
    visits: Search = field(default_factory=Search)
    """The σ evaluated beyond the grid, in the order they were evaluated."""


def refine(
    sigmas: np.ndarray,
    accuracy: np.ndarray,
    clean: float,
    chance: float,
    probe: Probe,
    *,
    rtol: float,
    max_evals: int = MAX_VISITS,
) -> Curve:
    """The grid curve with extra σ inside the interval holding the midpoint crossing.

    Nothing is evaluated when the midpoint is not reached, already below the range, or
    its bracket is within ``rtol``. ``probe(σ)`` returns the accuracy of each repeat at σ.
    """
    sigmas, accuracy = np.asarray(sigmas, dtype=float), np.asarray(accuracy, dtype=float)
    mean = accuracy.mean(axis=1)
    if midpoint(sigmas, mean, clean, chance)[1] != REACHED:
        return Curve(sigmas, accuracy)
    lo, hi = bracket(sigmas, mean, clean, chance)
    i = int(np.searchsorted(sigmas, hi))
    known = {lo: accuracy[i - 1], hi: accuracy[i]}
    found = find_midpoint(probe, lo, hi, clean, chance, rtol=rtol, max_evals=max_evals, known=known)
    if not found.sigmas:
        return Curve(sigmas, accuracy, found)
    merged = np.concatenate([sigmas, found.sigmas])
    order = np.argsort(merged, kind="stable")
    acc = np.concatenate([accuracy, np.asarray(found.accuracy, dtype=float)])
    return Curve(merged[order], acc[order], found)


def visit_values(found: Search, repeats: int) -> dict[str, Any]:
    """The search/refinement path as the file stores it (NaN past the visits)."""
    sigmas = np.full(MAX_VISITS, np.nan)
    acc = np.full((MAX_VISITS, repeats), np.nan)
    if found.sigmas:  # a grid bracket already within rtol visits nothing
        sigmas[: len(found.sigmas)] = found.sigmas
        acc[: len(found.accuracy)] = np.asarray(found.accuracy)
    return {"search_sigma": sigmas, "search_accuracy": acc, "search_visits": len(found.sigmas)}


def midpoint_values(mid: Midpoint, prefix: str = "") -> dict[str, Any]:
    """A layer's midpoint variables (``prefix="trained_"`` for the train phase)."""
    return {
        prefix + "midpoint": mid.value,
        prefix + "midpoint_status": mid.status,
        prefix + "midpoint_low": mid.low,
        prefix + "midpoint_high": mid.high,
        prefix + "midpoint_bracket_low": mid.bracket_low,
        prefix + "midpoint_bracket_high": mid.bracket_high,
        prefix + "midpoint_nonmonotone": int(mid.nonmonotone),
    }
