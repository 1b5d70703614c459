"""Validation split, perturbed accuracy, and the per-method tuning of the NINR comparison.

The validation split is carved once from the *training* data by one seeded permutation (the
same for every method and seed); the test split is never seen while choosing. Every method
trains each of its candidates (the same number for every method) on the rest, and keeps the
one with the best validation score; ties go to the first (smallest) candidate, and a
candidate whose training diverged is never chosen unless every one did.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from walknoise.data import TensorData
from walknoise.errors import WalknoiseError
from walknoise.nin.perturb import PERTURBATIONS
from walknoise.nin.regularisers import Fit, Trained, train_candidate
from walknoise.training import evaluate

__all__ = ["Tuned", "perturbed_accuracy", "split_validation", "tune"]

Conditions = Sequence[tuple[str, float]]


def split_validation(
    train: TensorData, fraction: float, seed: int = 0
) -> tuple[TensorData, TensorData]:
    """(fit, validation): the last ``round(fraction · n)`` of ``default_rng(seed)``'s
    permutation of the training set are the validation samples."""
    n = len(train)
    n_val = round(fraction * n)
    if not 0 < n_val < n:
        raise WalknoiseError(
            f"a validation fraction of {fraction} of {n} training samples leaves one split "
            "empty; use more data or a fraction such as 0.2"
        )
    order = torch.from_numpy(np.random.default_rng(seed).permutation(n))
    fit, val = order[: n - n_val], order[n - n_val :]
    return (
        TensorData(train.x[fit], train.y[fit], f"{train.name}[fit]"),
        TensorData(train.x[val], train.y[val], f"{train.name}[validation]"),
    )


def condition_seed(seed: int, index: int, stream: int = 0) -> int:
    """The generator seed of condition ``index`` for ``seed``: the same for every method, so
    all models of a seed see the same perturbed inputs (a paired comparison). ``stream``
    keeps validation draws apart from the test's."""
    return int(np.random.SeedSequence([stream, seed, index]).generate_state(1)[0])


def perturbed_accuracy(
    model: nn.Module, data: TensorData, conditions: Conditions, seed: int, stream: int = 0
) -> list[float]:
    """Accuracy of ``model`` on ``data`` under each (perturbation, strength) condition."""
    out = []
    for i, (name, strength) in enumerate(conditions):
        gen = torch.Generator().manual_seed(condition_seed(seed, i, stream))
        x = PERTURBATIONS[name].fn(data.x, strength, gen)
        out.append(evaluate(model, x, data.y)[0])
    return out


@dataclass
class Tuned:
    """One (method, seed) after tuning."""

    chosen: int
    """Index of the chosen candidate."""
    trained: Trained
    """The chosen candidate's model and training record."""
    scores: list[float]
    """Validation score of every candidate (NaN where training diverged)."""
    diverged: list[bool]
    seconds: float
    """Training time of all candidates together."""


def tune(
    method: str,
    grid: Sequence[float],
    factory: Callable[[], nn.Module],
    fit_data: TensorData,
    score: Callable[[nn.Module], float],
    fit: Fit,
    seed: int,
) -> Tuned:
    """Train every candidate of ``grid`` and keep the best by ``score`` (on validation)."""
    runs = [train_candidate(method, value, factory, fit_data, fit, seed) for value in grid]
    scores = [score(r.model) if r.finished else float("nan") for r in runs]
    finite = np.where(np.isfinite(scores), scores, -np.inf)
    chosen = int(np.argmax(finite))  # the first of ties; 0 when every candidate diverged
    return Tuned(
        chosen=chosen,
        trained=runs[chosen],
        scores=scores,
        diverged=[not r.finished for r in runs],
        seconds=sum(r.seconds for r in runs),
    )
