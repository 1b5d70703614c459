"""``CompareConfig``: methods, seeds, training, tuning grids and test perturbations of a NINR
comparison (apart from the runner, so the report can read it without importing torch code)."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from walknoise.errors import WalknoiseError
from walknoise.nin.perturb import PERTURBATIONS
from walknoise.nin.regularisers import KNOBS, METHODS, Fit, check_value
from walknoise.nin.train import OPTIMIZERS
from walknoise.walk.spec import parse_sigmas

__all__ = ["DEFAULT_GRIDS", "DEFAULT_LR", "SELECTIONS", "CompareConfig"]

DEFAULT_LR = {"sgd": 0.1, "adam": 1e-3}
"""Constant learning rate per optimiser: for SGD the largest of the probe study's rates
(0.01 / 0.03 / 0.1), which the baseline's validation accuracy chose in every seed of the
comparison study; 1e-3 is Adam's usual default."""
DEFAULT_GRIDS: dict[str, dict[str, tuple[float, ...]]] = {
    "sgd": {
        # The probe study's rates; 0.3 would leave the NINR grid mostly divergent (σ_ε ≥ 30).
        "none": (0.01, 0.03, 0.1),
        # At lr 0.1 the probe study found σ_ε ≤ 30 decoupled and 100 catapulting: the grid
        # spans the NIN from switched off to acting.
        "in-ninr": (10.0, 30.0, 100.0),
        "full-ninr": (10.0, 30.0, 100.0),
        "input-noise": (0.1, 0.25, 0.5),  # inputs in [0, 1]
        "l2": (1e-4, 1e-3, 1e-2),
        "dropout": (0.1, 0.25, 0.5),
    },
    "adam": {
        "none": (3e-4, 1e-3, 3e-3),
        # Adam rescales the NIW's steps, so far larger σ_ε train without running away.
        "in-ninr": (10.0, 100.0, 1000.0),
        "full-ninr": (10.0, 100.0, 1000.0),
        "input-noise": (0.1, 0.25, 0.5),  # inputs in [0, 1]
        "l2": (1e-4, 1e-3, 1e-2),
        "dropout": (0.1, 0.25, 0.5),
    },
}
"""Each method's candidates per optimiser: three each, the same budget for every method."""
SELECTIONS = ("clean", "perturbed")


def _tuple(values: object) -> tuple[float, ...]:
    return tuple(float(v) for v in values)  # type: ignore[attr-defined]


@dataclass(frozen=True)
class CompareConfig:
    """The whole comparison; invalid values raise ``WalknoiseError``."""

    methods: tuple[str, ...] = METHODS
    """Methods to train, from ``METHODS``; ``none`` is the baseline of the paired tests, and
    the learning rate it chooses is every other method's."""
    seeds: tuple[int, ...] = (0, 1, 2)
    """Each seed fixes initial weights, data order, training noise and test perturbations."""
    optimizer: str = "sgd"
    """``sgd`` (as in the NIN papers) or ``adam``."""
    lr: float | None = None
    """Constant learning rate; None: ``DEFAULT_LR[optimizer]``."""
    momentum: float = 0.0
    """SGD momentum; 0 is the vanilla SGD of the NIN papers."""
    epochs: int = 5
    batch_size: int = 64
    grids: Mapping[str, tuple[float, ...]] = field(default_factory=dict)
    """Candidates per method, overriding ``DEFAULT_GRIDS[optimizer]``; every method must
    end up with the same number (the same tuning budget)."""
    validation_fraction: float = 0.2
    """Share of the training data held out to choose each method's hyper-parameter."""
    split_seed: int = 0
    """Seed of the one permutation that carves the validation split (the same for all)."""
    selection: str = "clean"
    """What the candidate is chosen by: ``clean`` validation accuracy, or ``perturbed``, the
    mean validation accuracy over every test perturbation (tuning for robustness)."""
    perturbations: Mapping[str, tuple[float, ...]] | None = None
    """Test perturbations and their strengths (``walknoise.nin.perturb``); None: every one
    that fits the inputs (images: all), at its default strengths."""
    walk_sigmas: str = "log:1e-2:1e2:17"
    """σ grid of the per-layer walk on the chosen models."""
    walk_repeats: int = 2

    def __post_init__(self) -> None:
        set_ = object.__setattr__
        unknown = [m for m in self.methods if m not in METHODS]
        if unknown or not self.methods or len(set(self.methods)) != len(self.methods):
            raise WalknoiseError(
                f"methods {list(self.methods)}: name each once from {', '.join(METHODS)}"
            )
        if not self.seeds or len(set(self.seeds)) != len(self.seeds):
            raise WalknoiseError(f"seeds {list(self.seeds)}: give at least one, each once")
        set_(self, "methods", tuple(self.methods))
        set_(self, "seeds", tuple(int(s) for s in self.seeds))
        if self.optimizer not in OPTIMIZERS:
            raise WalknoiseError(
                f"optimizer {self.optimizer!r} is unknown; use one of {', '.join(OPTIMIZERS)}"
            )
        lr = DEFAULT_LR[self.optimizer] if self.lr is None else float(self.lr)
        set_(self, "lr", lr)
        self._check_numbers()
        set_(self, "grids", self._grids())
        if self.perturbations is not None:
            set_(self, "perturbations", _perturbations(self.perturbations))
        parse_sigmas(self.walk_sigmas)  # a bad grid fails now, not after the training

    def _check_numbers(self) -> None:
        frac = self.validation_fraction
        checks = (
            (self.epochs >= 1, f"epochs is {self.epochs}; use at least 1"),
            (_pos(self.lr), f"learning rate is {self.lr}; use a positive value such as 0.1"),
            (self.batch_size >= 1, f"batch size is {self.batch_size}; use at least 1"),
            (
                math.isfinite(self.momentum) and 0 <= self.momentum < 1,
                f"momentum is {self.momentum}; use a value in [0, 1)",
            ),
            (self.momentum == 0 or self.optimizer == "sgd", "momentum is for SGD only"),
            (0 < frac < 1, f"validation fraction is {frac}; use a share in (0, 1) such as 0.2"),
            (
                self.selection in SELECTIONS,
                f"selection {self.selection!r} is unknown; use one of {', '.join(SELECTIONS)}",
            ),
            (self.walk_repeats >= 1, "walk repeats must be at least 1"),
        )
        for ok, message in checks:
            if not ok:
                raise WalknoiseError(message)

    def _grids(self) -> dict[str, tuple[float, ...]]:
        stray = [m for m in self.grids if m not in self.methods]
        if stray:
            raise WalknoiseError(f"grids name {stray}, which are not among the methods")
        defaults = DEFAULT_GRIDS[self.optimizer]
        grids = {m: _tuple(self.grids.get(m, defaults[m])) for m in self.methods}
        for method, values in grids.items():
            if not values or len(set(values)) != len(values):
                raise WalknoiseError(f"the {method} grid {list(values)}: give each value once")
            for value in values:
                check_value(method, value)
        sizes = {len(v) for v in grids.values()}
        if len(sizes) > 1:
            counts = ", ".join(f"{m} {len(v)}" for m, v in grids.items())
            raise WalknoiseError(
                f"every method needs the same number of candidates (the same tuning budget); "
                f"got {counts}"
            )
        return {m: tuple(sorted(v)) for m, v in grids.items()}

    @property
    def candidates(self) -> int:
        """Candidates per method: the tuning budget."""
        return len(next(iter(self.grids.values())))

    def fit(self) -> Fit:
        assert self.lr is not None  # set in __post_init__
        return Fit(self.optimizer, self.lr, self.momentum, self.epochs, self.batch_size)

    def conditions(self, images: bool) -> list[tuple[str, float]]:
        """(perturbation, strength) pairs to test, in table order."""
        chosen = self.perturbations
        if chosen is None:
            chosen = {
                n: p.strengths for n, p in PERTURBATIONS.items() if images or not p.images_only
            }
        elif not images and (flat := [n for n in chosen if PERTURBATIONS[n].images_only]):
            raise WalknoiseError(
                f"perturbations {flat} need image inputs (N, C, H, W); leave them out"
            )
        return [(name, s) for name, strengths in chosen.items() for s in strengths]

    def hyperparameters(self) -> dict[str, str]:
        """Each method's tuned hyper-parameter, e.g. ``{"l2": "weight decay"}``."""
        return {m: KNOBS[m] for m in self.methods}

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["grids"] = {m: list(v) for m, v in self.grids.items()}
        if self.perturbations is not None:
            out["perturbations"] = {n: list(v) for n, v in self.perturbations.items()}
        return out


def _pos(value: float | None) -> bool:
    return value is not None and math.isfinite(value) and value > 0


def _perturbations(chosen: Mapping[str, tuple[float, ...]]) -> dict[str, tuple[float, ...]]:
    unknown = [n for n in chosen if n not in PERTURBATIONS]
    if unknown or not chosen:
        raise WalknoiseError(
            f"perturbations {unknown or '(none)'}: use names from {', '.join(PERTURBATIONS)}"
        )
    out = {}
    for name in PERTURBATIONS:  # table order
        if name not in chosen:
            continue
        values = _tuple(chosen[name]) or PERTURBATIONS[name].strengths
        top = PERTURBATIONS[name].max_strength
        if not all(math.isfinite(v) and 0 < v <= top for v in values):
            raise WalknoiseError(
                f"{name} strengths {list(values)}: use positive values up to {top:g}"
            )
        out[name] = tuple(sorted(set(values)))
    return out
