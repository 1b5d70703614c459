"""``ProbeConfig``: the grid and the training of a NIN probe (apart from the runner, so the
results module can read it without importing the runner)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from walknoise.errors import WalknoiseError
from walknoise.nin.phases import PhaseCriteria
from walknoise.nin.train import OPTIMIZERS

__all__ = ["ProbeConfig"]


def _positive(values: Sequence[float], what: str, example: str) -> tuple[float, ...]:
    out = tuple(float(v) for v in values)
    if not out or not all(math.isfinite(v) and v > 0 for v in out):
        raise WalknoiseError(f"{what} must be positive numbers, got {list(values)}; e.g. {example}")
    if len(set(out)) != len(out):
        raise WalknoiseError(f"{what} lists a value twice ({list(values)}); give each once")
    return tuple(sorted(out))


@dataclass(frozen=True)
class ProbeConfig:
    """The grid and the training of a probe; invalid values raise ``WalknoiseError``."""

    sigma_eps: tuple[float, ...] = (0.1, 1.0, 10.0, 100.0)
    """Noise scales σ_ε of the NINs (one run each)."""
    lr: tuple[float, ...] = (0.03, 0.1, 0.3)
    """Constant learning rates. The defaults are where SGD on the bundled MNIST (inputs in
    [0, 1]) learns within the default epochs without NINs: at 1e-2 the run without NINs
    barely moves (its test loss falls by 1.3% in 375 steps) and every phase is undetermined."""
    seeds: tuple[int, ...] = (0,)
    """Each seed fixes initial weights, NIWs, data order and ε draws."""
    epochs: int = 3
    batch_size: int = 64
    optimizer: str = "sgd"
    """``sgd`` (vanilla, as in the NIN papers) or ``adam``."""
    where: str | tuple[str, ...] = "input"
    """``input`` (in-NINR), ``all`` (full-NINR) or layer names."""
    init_scale: float | None = None
    """Bound of the NIWs' uniform initialisation; None: the layer's 1/sqrt(fan_in)."""
    eval_every: int | None = None
    """Steps between clean test evaluations; None: as often as keeps it to ~500 per run."""
    hessian_every: int | None = None
    """Steps between measurements of the top Hessian eigenvalue λ of the loss with respect to
    each NIN layer's output (:mod:`walknoise.nin.hessian`); None: about 20 per run."""
    hessian_samples: int = 512
    """How many training samples (the first ones, the same at every step) λ is measured on."""
    criteria: PhaseCriteria = field(default_factory=PhaseCriteria)

    def __post_init__(self) -> None:
        set_ = object.__setattr__
        set_(self, "sigma_eps", _positive(self.sigma_eps, "σ_ε values", "0.1,1,10"))
        set_(self, "lr", _positive(self.lr, "learning rates", "0.03,0.1,0.3"))
        if not self.seeds or len(set(self.seeds)) != len(self.seeds):
            raise WalknoiseError(f"seeds {list(self.seeds)}: give at least one, each once")
        set_(self, "seeds", tuple(int(s) for s in self.seeds))
        if not isinstance(self.where, str):
            set_(self, "where", tuple(self.where))
        checks = (
            (self.epochs >= 1, f"epochs is {self.epochs}; use at least 1"),
            (self.batch_size >= 1, f"batch size is {self.batch_size}; use at least 1"),
            (
                self.optimizer in OPTIMIZERS,
                f"optimizer {self.optimizer!r} is unknown; use one of {', '.join(OPTIMIZERS)}",
            ),
            (self.eval_every is None or self.eval_every >= 1, "eval_every must be at least 1"),
            (
                self.hessian_every is None or self.hessian_every >= 1,
                f"hessian_every is {self.hessian_every}; use at least 1 (None: ~20 per run)",
            ),
            (
                self.hessian_samples >= 1,
                f"hessian_samples is {self.hessian_samples}; use at least 1, e.g. 512",
            ),
            (
                self.init_scale is None or (math.isfinite(self.init_scale) and self.init_scale > 0),
                f"NIW init scale is {self.init_scale}; use a positive value such as 0.05",
            ),
        )
        for ok, message in checks:
            if not ok:
                raise WalknoiseError(message)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)
