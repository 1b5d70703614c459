"""``GNISpec``: what a gradient-noise measurement does (noise, draws, batches, loss), and the
per-sample losses it may use. Apart from the measurement so that a config can be built and
checked without the measuring code."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

from torch import Tensor
from torch.nn import functional as F

from walknoise.errors import WalknoiseError
from walknoise.noise.kinds import make_noise
from walknoise.types import DeviceName, NoiseKind
from walknoise.walk.spec import check_sigmas

__all__ = ["LOSSES", "PARAMS", "Criterion", "GNISpec", "criterion"]

LOSSES = ("cross_entropy", "mse")
PARAMS = ("weights", "all")
Criterion = Callable[[Tensor, Tensor], Tensor]


def criterion(name: str) -> Criterion:
    """Per-sample loss: cross-entropy, or squared error summed over outputs (the paper's MSE)."""
    if name == "cross_entropy":
        return lambda out, y: F.cross_entropy(out, y, reduction="none")
    if name == "mse":
        return lambda out, y: ((out - y) ** 2).reshape(len(out), -1).sum(dim=1)
    raise WalknoiseError(f"unknown loss {name!r}; choose one of {', '.join(LOSSES)}")


@dataclass(frozen=True)
class GNISpec:
    """What to measure; invalid values raise ``WalknoiseError``."""

    sigmas: tuple[float, ...] = (0.1,)
    """Noise levels, positive and increasing."""
    noise: NoiseKind = "additive"
    """``additive``, ``multiplicative`` or ``combined`` (split by ``ratio``)."""
    ratio: float = 0.5
    layers: tuple[str, ...] | None = None
    """Injection points (names or globs); ``None``: the input and every activation output."""
    params: str = "weights"
    """``weights``: parameter tensors with 2+ dimensions (as the paper); ``all``: biases too."""
    draws: int = 100
    """K, noise draws per mini-batch."""
    batches: int = 10
    """Mini-batches, drawn by a seeded shuffle of the data."""
    batch_size: int = 64
    max_coords: int = 4096
    """Entries kept per parameter tensor (a fixed random subset), to bound memory."""
    loss: str = "cross_entropy"
    seed: int = 0
    bootstrap: int = 100
    """Bootstrap replicates for the intervals on the stable fit's α and β (resampling
    batches; with one batch, its draws); 0 skips the intervals."""
    device: DeviceName | str = "cpu"

    def __post_init__(self) -> None:
        check_sigmas(self.sigmas)
        make_noise(self.noise, self.ratio)  # validates kind and ratio
        criterion(self.loss)
        if self.params not in PARAMS:
            raise WalknoiseError(f"params must be one of {', '.join(PARAMS)}, not {self.params!r}")
        if self.draws < 2:
            raise WalknoiseError(
                f"draws={self.draws}; the implicit effect needs at least 2 draws per batch",
                argument="draws",
            )
        if self.bootstrap < 0:
            raise WalknoiseError(f"bootstrap={self.bootstrap}; use 0 (no intervals) or more")
        for name in ("batches", "batch_size", "max_coords"):
            if getattr(self, name) < 1:
                raise WalknoiseError(f"{name} must be at least 1, got {getattr(self, name)}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)
