"""Noise kinds: how a standard-normal draw ε and a level σ turn an activation y into a noisy one.

Each kind is a small frozen dataclass. ``draws`` says how many independent ε tensors of y's
shape it needs; the caller draws them (from a seeded generator) so that one draw can be reused
for every σ of a grid (common random numbers). ``apply`` broadcasts ``sigma`` against ``y``,
which is how a whole stack of σ copies is made noisy in one call.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import torch

from walknoise.errors import WalknoiseError
from walknoise.types import NOISE_KINDS, NoiseKind


class Noise(Protocol):
    """A noise kind: the ``kind`` name, the number of ε draws it needs, and its formula."""

    @property
    def kind(self) -> str: ...

    @property
    def draws(self) -> int: ...

    def apply(self, y: torch.Tensor, sigma: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
        """Return the noisy activation; ``eps`` has shape ``(draws, *y.shape)``."""
        ...

    def delta(self, y: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
        """``D`` in ``apply(y, σ, eps) = y + σ·D``: every kind is affine in σ."""
        ...

    def to_dict(self) -> dict[str, object]: ...


@dataclass(frozen=True)
class Additive:
    """Additive Gaussian noise ``y + σ·ε``: noise of fixed size whatever the signal."""

    kind: str = "additive"
    draws: int = 1

    def apply(self, y: torch.Tensor, sigma: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
        return torch.addcmul(y, sigma, eps[0])

    def delta(self, y: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
        return eps[0]

    def to_dict(self) -> dict[str, object]:
        return {"kind": self.kind}


@dataclass(frozen=True)
class Multiplicative:
    """Multiplicative Gaussian noise ``y·(1 + σ·ε)`` = ``y·N(1, σ²)``: grows with the signal."""

    kind: str = "multiplicative"
    draws: int = 1

    def apply(self, y: torch.Tensor, sigma: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
        return torch.addcmul(y, sigma, y * eps[0])  # y + σ·y·ε, fused

    def delta(self, y: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
        return y * eps[0]

    def to_dict(self) -> dict[str, object]:
        return {"kind": self.kind}


@dataclass(frozen=True)
class Combined:
    """Multiply, then add, as Walking Noise's ``GaussCombined``.

    σ is split by ``ratio`` as the reference ``StdRatio``: σ_add = σ·ratio and
    σ_mul = σ·(1 − ratio), with independent ε for the two parts.
    """

    ratio: float = 0.5
    kind: str = "combined"
    draws: int = 2

    def __post_init__(self) -> None:
        if not 0.0 <= self.ratio <= 1.0:
            raise WalknoiseError(
                f"ratio={self.ratio} is outside [0, 1]; choose a ratio between 0 "
                "(all multiplicative) and 1 (all additive)",
                argument="ratio",
            )

    def apply(self, y: torch.Tensor, sigma: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
        mul = torch.addcmul(y, sigma * (1 - self.ratio), y * eps[0])
        return torch.addcmul(mul, sigma * self.ratio, eps[1])

    def delta(self, y: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
        return torch.add(y * eps[0] * (1 - self.ratio), eps[1], alpha=self.ratio)

    def to_dict(self) -> dict[str, object]:
        return {"kind": self.kind, "ratio": self.ratio}


KINDS = NOISE_KINDS


def make_noise(kind: NoiseKind | Noise, ratio: float = 0.5) -> Noise:
    """Build a noise kind from its name (``additive``, ``multiplicative``, ``combined``).

    A ``Noise`` object is returned as it is; ``ratio`` is used by ``combined`` only.
    """
    if not isinstance(kind, str):
        return kind
    if kind == "additive":
        return Additive()
    if kind == "multiplicative":
        return Multiplicative()
    if kind == "combined":
        return Combined(ratio=ratio)
    raise WalknoiseError(
        f"unknown noise kind {kind!r}; choose one of {', '.join(KINDS)}", argument="noise"
    )


def noise_from_dict(d: dict[str, object]) -> Noise:
    """Inverse of ``Noise.to_dict`` (used when a results file is read back)."""
    ratio = d.get("ratio", 0.5)
    return make_noise(str(d["kind"]), ratio=float(ratio))  # type: ignore[arg-type]
