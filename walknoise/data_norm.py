"""Input normalisation: which scaling walknoise applied to the data, and how it is recorded.

Three settings, chosen with ``normalize=`` wherever data is loaded (``--normalize`` on the CLI):

- ``"none"`` (the default): the inputs as given; bundled MNIST in [0, 1], as ``ToTensor()``
  leaves it in the Walking Noise authors' ``data/MNIST.py`` (their ``normalize=False`` default).
- ``"pm1"``: ``x' = (x - 0.5) / 0.5``, [0, 1] mapped to [-1, 1] (their ``normalize=True``).
- ``"standard"``: ``x' = (x - mean) / std`` with one mean and one std over every value of the
  *training* inputs (for bundled MNIST its 8,000-image ``"train"`` split), so test and training
  data are shifted alike.

Every setting is the same affine map ``(x - mean) / std``; a :class:`Normalization` holds the
kind and the two numbers, and :meth:`Normalization.attrs` is what a results file records.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch

from walknoise.errors import WalknoiseError

__all__ = ["NONE", "NORMALIZATIONS", "Normalization", "normalization_of"]

NORMALIZATIONS = ("none", "pm1", "standard")
"""The settings ``normalize=`` takes."""

ATTR = "data_normalization"
"""Root attribute naming the setting; ``ATTR + "_mean"``/``"_std"``/``"_source"`` beside it."""


@dataclass(frozen=True)
class Normalization:
    """The affine map ``x' = (x - mean) / std`` walknoise applied to the inputs."""

    kind: str = "none"
    """``"none"``, ``"pm1"`` or ``"standard"``."""
    mean: float = 0.0
    """Subtracted from every input value (0 for none, 0.5 for pm1)."""
    std: float = 1.0
    """Divides every shifted value (1 for none, 0.5 for pm1)."""
    source: str = ""
    """The data ``mean`` and ``std`` were measured on (``standard`` only, e.g. mnist:train)."""

    def apply(self, x: torch.Tensor) -> torch.Tensor:
        """``(x - mean) / std`` in ``x``'s dtype; ``x`` itself for ``none``."""
        if self.kind == "none":
            return x
        mean, std = (torch.tensor(v, dtype=x.dtype) for v in (self.mean, self.std))
        return (x - mean.to(x.device)) / std.to(x.device)

    def attrs(self) -> dict[str, Any]:
        """The root attributes a results file records (documented in results-format.md)."""
        return {
            ATTR: self.kind,
            f"{ATTR}_mean": self.mean,
            f"{ATTR}_std": self.std,
            f"{ATTR}_source": self.source,
        }

    @classmethod
    def from_attrs(cls, attrs: Mapping[str, Any]) -> Normalization | None:
        """The normalisation a file or checkpoint recorded; ``None`` if it recorded none
        (files written before walknoise recorded it)."""
        if ATTR not in attrs:
            return None
        return cls(
            kind=str(attrs[ATTR]),
            mean=float(attrs.get(f"{ATTR}_mean", 0.0)),
            std=float(attrs.get(f"{ATTR}_std", 1.0)),
            source=str(attrs.get(f"{ATTR}_source", "")),
        )

    def describe(self) -> str:
        """One phrase for messages and tables: ``none``, ``pm1``, ``standard (mean, std)``."""
        if self.kind != "standard":
            return self.kind
        return f"standard (mean {self.mean:.4g}, std {self.std:.4g} of {self.source})"


NONE = Normalization()
PM1 = Normalization("pm1", 0.5, 0.5)


def check_kind(kind: object) -> str:
    """``kind`` if it is one of :data:`NORMALIZATIONS`, else a WalknoiseError naming them."""
    if kind not in NORMALIZATIONS:
        raise WalknoiseError(
            f"unknown normalize={kind!r}; use 'none' (inputs as given; MNIST in [0, 1]), "
            "'pm1' ((x - 0.5) / 0.5) or 'standard' (mean/std of the training inputs)",
            argument="normalize",
        )
    return str(kind)


def normalization_of(kind: str, x: torch.Tensor | None = None, source: str = "") -> Normalization:
    """The :class:`Normalization` for ``kind``; ``standard`` measures ``x`` (the training
    inputs, named ``source``): one mean and one std over all its values, in float64."""
    kind = check_kind(kind)
    if kind == "none":
        return NONE
    if kind == "pm1":
        return PM1
    if x is None:
        raise WalknoiseError(
            "normalize='standard' needs the training inputs to measure", argument="normalize"
        )
    # numpy's pairwise sums, in one thread: the same bits on every machine and thread count,
    # so a resumed scan normalises to the same bytes (torch's reductions vary with threads)
    values = x.detach().cpu().to(dtype=torch.float64).numpy().ravel()
    mean, std = float(values.mean()), float(values.std())
    if not (math.isfinite(std) and std > 0):
        raise WalknoiseError(
            f"normalize='standard': the inputs of {source or 'the data'} have std {std:g}, so "
            "they cannot be standardised; use normalize='none'",
            argument="normalize",
        )
    return Normalization("standard", mean, std, source)
