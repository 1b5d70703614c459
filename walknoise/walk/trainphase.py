"""Training under noise: fresh models trained with noise at a point, then walked and weighed.

Cell (layer, σ, repeat) trains a fresh model of the template's architecture, initialised and
shuffled from seed ``seed + repeat``, with noise at ``layer`` during training *and*
evaluation (Walking Noise's train phase). The clean model of each seed is trained once and
cached: it is the reference for weight growth and serves every eval-only cell.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from walknoise.data import Normalization, TensorData, resolve_data
from walknoise.devices import resolve_device
from walknoise.errors import WalknoiseError
from walknoise.noise.inject import Fanout, cell_seed, hooks, make_generator
from walknoise.noise.kinds import Noise, make_noise
from walknoise.noise.points import survey
from walknoise.training import TrainConfig, evaluate, seeded_init, train_model
from walknoise.types import Device, NoiseKind, ScanPhase
from walknoise.walk.clean import Tensors
from walknoise.walk.ensemble import blocker, group_size, train_ensemble, widest_activation
from walknoise.walk.runner import LayerRunner
from walknoise.walk.schema import HIST_BINS
from walknoise.walk.selfbin import NoisyEval, cell_stats, clean_stats, feeding_layers
from walknoise.walk.weights import (
    GROWTH,
    binarized,
    clamp_weights,
    kurtosis,
    param_layers,
    weight_hists,
    weight_stats,
)

Template = nn.Module | Callable[[], nn.Module]


def fresh(template: Template, seed: int) -> nn.Module:
    """A newly initialised model of the template's architecture, deterministic in ``seed``.

    A factory is called under the seed; a module is deep-copied and every submodule's
    ``reset_parameters`` is called, which re-initialises all standard layers.
    """
    with seeded_init(seed):
        if not isinstance(template, nn.Module):
            return template()
        model = copy.deepcopy(template)
        for name, module in model.named_modules():
            own = list(module.parameters(recurse=False))
            if own and not callable(getattr(module, "reset_parameters", None)):
                raise WalknoiseError(
                    f"module {name or type(module).__name__} has parameters but no "
                    "reset_parameters(), so walknoise cannot re-initialise it; pass a "
                    "factory (a function returning a new model) instead of the model"
                )
            if own:
                module.reset_parameters()
    return model


def train_under_noise(
    model_or_arch: Template | str,
    data: Any = "mnist:train",
    *,
    noise: Noise | NoiseKind = "additive",
    layer: str | Sequence[str] | None = None,
    sigma: float = 0.0,
    config: TrainConfig | None = None,
    clamp: float | None = None,
    seed: int = 0,
    scales: Sequence[float] | None = None,
    progress: bool = False,
    device: Device = "cpu",
    normalize: str | Normalization = "none",
) -> nn.Module:
    """Train a fresh model (``seed``) with noise at ``layer`` (one name, several, or none).

    This is one cell of the train phase of :func:`~walknoise.scan`; with no ``layer`` (or
    ``sigma=0``) it trains the clean model. ``model_or_arch`` is a zoo name, a factory or a
    module whose architecture is reused (the module itself is not trained). ``clamp``
    bounds every weight to [-clamp, clamp] after each step (the growth control).
    ``normalize`` rescales ``data`` (``"none"``: MNIST in [0, 1]; ``"pm1"``; ``"standard"``).
    To train a zoo model into a checkpoint file, see :func:`walknoise.train_checkpoint`.
    """
    from walknoise.models import build_model

    template: Template = (
        (lambda: build_model(model_or_arch)) if isinstance(model_or_arch, str) else model_or_arch
    )
    td = resolve_data(data, normalize=normalize)
    dev = resolve_device(device)  # "auto" and "cuda" mean the same here as in scan()
    model = fresh(template, seed)
    layers = (
        [] if layer is None or sigma == 0 else [layer] if isinstance(layer, str) else list(layer)
    )
    cfg = config or TrainConfig()
    cfg = TrainConfig(**{**cfg.to_dict(), "seed": seed})
    fo = Fanout(sigmas=torch.tensor([float(sigma)], device=dev), cache_eps=False)
    gen = make_generator(cell_seed(seed, "train:" + ",".join(layers), 0), dev)
    model.to(dev)
    on_step = None if clamp is None else (lambda m, _s, _l: clamp_weights(m, clamp))
    with hooks(
        model,
        layers,
        fo,
        make_noise(noise),
        [gen] * len(layers),
        list(scales) if scales is not None else [1.0] * len(layers),
    ):
        train_model(model, td.x, td.y, cfg, progress=progress, on_step=on_step, device=dev)
    return model.eval()


@dataclass
class TrainPhase:
    """Trains and evaluates the cells of the train phase; caches clean models per seed."""

    template: Template
    train_data: TensorData
    test: TensorData
    noise: Noise
    config: TrainConfig
    seed: int = 0
    clamp: float | None = None
    batch_size: int = 500
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    ensemble: bool = True
    """Train the cells of a layer as one vmapped ensemble where the model allows it."""
    clean: dict[int, nn.Module] = field(default_factory=dict)
    trainings: int = 0
    _accuracy: dict[int, float] = field(default_factory=dict)
    _owners: dict[str, str] | None = None

    def owner(self, point: str) -> str | None:
        """The parametrised layer feeding ``point`` (execution order); None for the input."""
        if self._owners is None:
            model = fresh(self.template, self.seed).to(self.device)
            found = survey(model, self.test.input_shape, self.device).points
            self._owners = feeding_layers(found, param_layers(model))
        return self._owners.get(point)

    def init_kurtosis(self, repeat: int, names: Sequence[str]) -> list[float]:
        """Kurtosis of each layer's weights at initialisation (seed ``seed + repeat``): where
        "towards 1" starts (PyTorch's default uniform init: 1.8)."""
        weights = dict(fresh(self.template, self.seed + repeat).named_modules())
        return [kurtosis(weights[n].weight.detach()) for n in names]

    def clean_accuracy(self, repeat: int) -> float:
        """Clean test accuracy of the clean model of seed ``seed + repeat``."""
        if repeat not in self._accuracy:
            model = self.clean_model(repeat)
            self._accuracy[repeat] = evaluate(
                model, self.test.x.to(self.device), self.test.y.to(self.device)
            )[0]
        return self._accuracy[repeat]

    def clean_model(self, repeat: int) -> nn.Module:
        """The model of seed ``seed + repeat`` trained without noise (trained once)."""
        if repeat not in self.clean:
            self.clean[repeat] = self._train([], 0.0, repeat, [])
        return self.clean[repeat]

    def _train(
        self, points: Sequence[str], sigma: float, repeat: int, scales: Sequence[float]
    ) -> nn.Module:
        self.trainings += 1
        return train_under_noise(
            self.template,
            self.train_data,
            noise=self.noise,
            layer=list(points),
            sigma=sigma,
            config=self.config,
            clamp=self.clamp,
            seed=self.seed + repeat,
            scales=scales,
            device=self.device,
        )

    def _train_cells(
        self,
        points: Sequence[str],
        sigmas: Sequence[float],
        repeats: int,
        scales: Sequence[float],
    ) -> dict[tuple[int, int], nn.Module]:
        """The noise-trained model of every (σ index, repeat) cell of one entry."""
        cells = [(j, r) for r in range(repeats) for j in range(len(sigmas))]
        if not self.ensemble or blocker(fresh(self.template, self.seed)) is not None:
            return {(j, r): self._train(points, sigmas[j], r, scales) for j, r in cells}
        x = self.train_data.x
        widest = widest_activation(fresh(self.template, self.seed), x)
        size = group_size(widest, self.config.batch_size)
        # one seed per ensemble: its members share every batch and every ε (see ensemble.py)
        groups = [
            [(j, r) for j in range(start, min(start + size, len(sigmas)))]
            for r in range(repeats)
            for start in range(0, len(sigmas), size)
        ]
        out: dict[tuple[int, int], nn.Module] = {}
        for group in groups:
            members = [(float(sigmas[j]), self.seed + r) for j, r in group]
            models = train_ensemble(
                [fresh(self.template, seed) for _, seed in members],
                members,
                x,
                self.train_data.y,
                noise=self.noise,
                points=points,
                scales=scales,
                config=self.config,
                clamp=self.clamp,
                device=self.device,
            )
            out |= dict(zip(group, models, strict=True))
            self.trainings += len(group)
        return out

    def run_layer(
        self,
        layer: str,
        points: Sequence[str],
        sigmas: Sequence[float],
        repeats: int,
        scales: Sequence[float],
    ) -> dict[str, np.ndarray]:
        """Every (σ, repeat) cell of one entry: accuracy, loss, weight stats, binarized."""
        names = param_layers(self.clean_model(0))
        shape = (len(sigmas), repeats)
        out = {
            k: np.full(shape, np.nan)
            for k in ("trained_accuracy", "trained_loss", "binarized_accuracy")
        }
        trained = self._train_cells(points, sigmas, repeats, scales)
        test_sigmas = [0.0, *sigmas]
        for r in range(repeats):
            ref = weight_stats(self.clean_model(r), names)
            ev = self._noisy_eval(layer, points, scales, r)
            for key, value in clean_stats(ev, self.clean_model(r), sigmas).items():
                per_sigma = np.shape(value)  # (σ,) or () for the point's clean activity
                out.setdefault(key, np.full((*per_sigma, repeats), np.nan))[..., r] = value
            for j, sigma in enumerate(sigmas):
                model = trained.pop((j, r))
                for key, value in cell_stats(
                    ev, model, sigma, self.owner(layer), test_sigmas
                ).items():
                    out.setdefault(key, np.full((*shape, *np.shape(value)), np.nan))[j, r] = value
                stats = self._evaluate(model, layer, points, sigma, r, scales)
                out["trained_accuracy"][j, r], out["trained_loss"][j, r] = stats
                out["binarized_accuracy"][j, r] = self._evaluate(
                    binarized(model, names), layer, points, sigma, r, scales
                )[0]
                out.setdefault("weight_hist", np.full((*shape, len(names), HIST_BINS), np.nan))
                out["weight_hist"][j, r] = weight_hists(model, names, HIST_BINS)
                for name, values in weight_stats(model, names).items():
                    out.setdefault(name, np.full((*shape, len(names)), np.nan))[j, r] = values
                    if name in GROWTH:
                        growth = np.asarray(values) / np.asarray(ref[name])
                        key = name.replace("weight_", "growth_")
                        out.setdefault(key, np.full((*shape, len(names)), np.nan))[j, r] = growth
        return out

    def _noisy_eval(
        self, layer: str, points: Sequence[str], scales: Sequence[float], repeat: int
    ) -> NoisyEval:
        x, y = self.test.x.to(self.device), self.test.y.to(self.device)
        return NoisyEval(
            x, y, self.noise, layer, tuple(points), tuple(scales), self.seed, repeat,
            self.batch_size,
        )  # fmt: skip

    def _evaluate(
        self,
        model: nn.Module,
        layer: str,
        points: Sequence[str],
        sigma: float,
        repeat: int,
        scales: Sequence[float],
    ) -> tuple[float, float]:
        runner = LayerRunner(
            model,
            Tensors(self.test.x.to(self.device), self.test.y.to(self.device)),
            self.noise,
            [sigma],
            batch_size=self.batch_size,
            max_batch=self.batch_size,
        )
        stats = runner.run_repeat(layer, points, scales, self.seed, repeat)
        return float(stats.accuracy()[0]), float(stats.mean_loss()[0])


def train_phase_spec(
    meta: dict[str, Any],
    *,
    phase: ScanPhase = "eval",
    epochs: int | None = None,
    lr: float | None = None,
    train_batch_size: int | None = None,
    clamp_weights: float | None = None,
    train_data: str | None = None,
) -> dict[str, Any]:
    """``ScanSpec`` fields of the train phase: the checkpoint's training, then overrides."""
    if phase == "eval":
        return {"phase": phase}
    stored = meta.get("train") if isinstance(meta.get("train"), dict) else {}
    known = set(TrainConfig().to_dict()) - {"seed"}
    train = {k: v for k, v in (stored or {}).items() if k in known}
    overrides = {"epochs": epochs, "lr": lr, "batch_size": train_batch_size}
    train |= {k: v for k, v in overrides.items() if v is not None}
    TrainConfig(**train)  # validate now, before any work
    return {
        "phase": phase,
        "train": train,
        "clamp": clamp_weights,
        "train_data": train_data or meta.get("data") or None,
    }
