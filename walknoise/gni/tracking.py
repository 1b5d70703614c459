"""Training with Gaussian noise injections, and tracking the implicit gradient noise over it.

``implicit`` is plain GNI: every step follows ∇L(w, ε) for one fresh draw ε. ``marginal``
follows the gradient of the mean over K draws, an estimate of the noise-averaged loss
E_ε L(w, ε): the explicit regulariser stays, the implicit effect shrinks like 1/√K. Camuto
et al. (2021) report that the second generalises better; ``walknoise train --gni-mode``
lets you check that on your model.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
import xarray as xr
from torch import Tensor, nn

from walknoise.data import Normalization
from walknoise.errors import WalknoiseError
from walknoise.gni import store as gni_store
from walknoise.gni.measure import (
    GNISpec,
    injection_points,
    measure,
    noisy_loss,
    normalization_for,
    tensors_of,
)
from walknoise.io import netcdf
from walknoise.noise.inject import cell_seed, make_generator
from walknoise.noise.kinds import make_noise
from walknoise.training import TrainConfig
from walknoise.types import NoiseKind

MODES = ("implicit", "marginal")


@dataclass(frozen=True)
class GNITraining:
    """How ``walknoise train`` injects noise and whether it tracks the gradient noise."""

    mode: str | None = None
    """``implicit`` (one draw per step), ``marginal`` (mean over ``draws``) or ``None``."""
    noise: NoiseKind = "additive"
    sigma: float = 0.1
    draws: int = 16
    """K for the marginal loss."""
    layers: tuple[str, ...] | None = None
    """Injection points; ``None``: the input and every activation output (as the paper)."""
    every: int | None = None
    """Measure the implicit gradient noise every ``every`` optimiser steps."""
    output: Path | None = None
    """Where the tracked statistics go (rewritten after every measurement)."""
    track_draws: int = 100
    track_batches: int = 4
    seed: int = 0

    def __post_init__(self) -> None:
        if self.mode is not None and self.mode not in MODES:
            raise WalknoiseError(
                f"unknown GNI mode={self.mode!r}; choose one of {', '.join(MODES)}",
                argument="mode",
            )
        make_noise(self.noise)
        if not self.sigma > 0:
            raise WalknoiseError(f"sigma={self.sigma}; it must be positive", argument="sigma")
        if self.draws < 1:
            raise WalknoiseError(f"draws={self.draws}; it must be at least 1", argument="draws")
        if self.every is not None and self.every < 1:
            raise WalknoiseError(f"every={self.every}; it must be at least 1", argument="every")
        if self.every is not None and self.output is None:
            raise WalknoiseError(
                "tracking the gradient noise (every=N) needs an output file; pass output=PATH",
                argument="output",
            )
        if self.output is not None and not self.output.parent.is_dir():
            raise WalknoiseError(f"directory {self.output.parent} does not exist; create it")

    @property
    def active(self) -> bool:
        return self.mode is not None or self.every is not None

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["output"] = None if self.output is None else str(self.output)
        return out


class NoisyLoss:
    """``loss_fn`` for :func:`walknoise.training.train_model`: the GNI loss over ``draws``."""

    def __init__(
        self,
        noise: NoiseKind,
        sigma: float,
        draws: int,
        seed: int,
        layers: Sequence[str] | None = None,
        loss: str = "cross_entropy",
    ) -> None:
        self.noise, self.sigma, self.draws, self.seed = noise, sigma, draws, seed
        self.layers, self.loss = layers, loss
        self.points: list[str] | None = None
        self.gen: torch.Generator | None = None

    def __call__(self, model: nn.Module, xb: Tensor, yb: Tensor) -> tuple[Tensor, Tensor]:
        if self.points is None or self.gen is None:  # the model is only known at the first step
            self.points = injection_points(model, tuple(xb.shape[1:]), self.layers, xb.device)
            self.gen = make_generator(cell_seed(self.seed, "gni-train", 0), xb.device)
        return noisy_loss(
            model, xb, yb, self.points, self.noise, self.sigma, self.draws, self.gen, self.loss
        )


class GNITracker:
    """``on_step`` hook: measure the gradient noise every ``every`` steps (and at steps 1 and
    ``last_step``), rewriting ``output`` after each measurement so an interrupted run keeps
    what it measured."""

    def __init__(
        self,
        spec: GNISpec,
        every: int,
        output: Path,
        x: Tensor,
        y: Tensor,
        *,
        last_step: int | None = None,
        data: str = "in-memory data",
        attrs: dict[str, Any] | None = None,
    ) -> None:
        self.spec, self.every, self.output = spec, every, output
        self.x, self.y, self.last_step = x, y, last_step
        self.attrs = gni_store.file_attrs(spec.to_dict(), [], data, len(x))
        self.attrs["title"] = "walknoise implicit gradient noise tracked over training"
        self.attrs.update(attrs or {})
        self.parts: list[xr.Dataset] = []
        self.points: list[str] | None = None

    def due(self, step: int) -> bool:
        return step == 1 or step % self.every == 0 or step == self.last_step

    def __call__(self, model: nn.Module, step: int, _loss: float) -> None:
        if not self.due(step):
            return
        device = next(model.parameters()).device
        x, y = self.x.to(device), self.y.to(device)
        if self.points is None:
            self.points = injection_points(model, tuple(x.shape[1:]), self.spec.layers, device)
            self.attrs["injection_points"] = json.dumps(self.points)
        self.parts.append(measure(model, x, y, self.spec, self.points, step=step, attrs=self.attrs))
        netcdf.save(self.output, gni_store.concat_steps(self.parts))


def training_hooks(
    training: GNITraining,
    data: Any,
    config: TrainConfig,
    normalize: str | Normalization = "none",
) -> dict[str, Any]:
    """Keyword arguments for ``train_checkpoint``: ``loss_fn``, ``on_step``, ``extra_meta``
    (``normalize``: the training data's scaling, as ``train_checkpoint`` is given it)."""
    hooks: dict[str, Any] = {"extra_meta": {"gni": training.to_dict()}}
    if training.mode is not None:
        draws = 1 if training.mode == "implicit" else training.draws
        hooks["loss_fn"] = NoisyLoss(
            training.noise, training.sigma, draws, config.seed, training.layers
        )
    if training.every is not None and training.output is not None:
        spec = GNISpec(
            sigmas=(training.sigma,),
            noise=training.noise,
            layers=training.layers,
            draws=training.track_draws,
            batches=training.track_batches,
            batch_size=config.batch_size,
            seed=training.seed,
        )
        norm = normalization_for(data, spec.loss, normalize)
        x, y, name = tensors_of(data, spec.loss, norm)
        steps = -(-len(x) // config.batch_size) * config.epochs
        hooks["on_step"] = GNITracker(
            spec,
            training.every,
            training.output,
            x,
            y,
            last_step=steps,
            data=name,
            attrs={
                "training": json.dumps({"gni": training.to_dict(), "train": config.to_dict()}),
                **norm.attrs(),
            },
        )
    return hooks
