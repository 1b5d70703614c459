"""``walknoise.nin_probe.probe``: NIN runs over a (σ_ε, learning rate, seed) grid.

For every seed and learning rate the probe trains one reference run without NINs, then one
run per σ_ε with NINs, all from the same initial weights and data order (and, across σ_ε,
the same ε draws scaled by σ_ε), so the runs differ only by the injected noise. Each run is
traced step by step (:mod:`walknoise.nin_train`), classified into a phase and fitted with
exponential time scales (:mod:`walknoise.nin_phases`); everything goes to one
``xarray.Dataset`` with dimensions ``sigma_eps``, ``lr``, ``seed``, ``nin`` and ``step``.
"""

from __future__ import annotations

import json
import math
import sys
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import torch
from torch import nn
from tqdm.auto import tqdm

import walknoise
from walknoise.data import TensorData, resolve_data
from walknoise.errors import WalknoiseError
from walknoise.models import build_model
from walknoise.nin import attach_nins, nin_targets
from walknoise.nin_phases import PHASES, PhaseCriteria
from walknoise.nin_results import (
    FORMAT,
    FORMAT_VERSION,
    ProbeResult,
    Runs,
    build_dataset,
    load_probe,
)
from walknoise.nin_train import OPTIMIZERS, torch_threads, train_trace
from walknoise.training import seeded_init
from walknoise.walk import resolve_device

__all__ = [
    "FORMAT",
    "ProbeConfig",
    "ProbeResult",
    "load_probe",
    "model_factory",
    "probe",
    "train_test_data",
]

ModelFactory = Callable[[], nn.Module]


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
    lr: tuple[float, ...] = (1e-3, 1e-2, 1e-1)
    """Constant learning rates."""
    seeds: tuple[int, ...] = (0,)
    """Each seed fixes initial weights, NIWs, data order and ε draws."""
    epochs: int = 2
    batch_size: int = 64
    optimizer: str = "sgd"
    """``sgd`` (vanilla, as in the NIN papers) or ``adam``."""
    where: str | tuple[str, ...] = "input"
    """``input`` (in-NINR), ``all`` (full-NINR) or layer names."""
    init_scale: float | None = None
    """Bound of the NIWs' uniform initialisation; None: the layer's 1/sqrt(fan_in)."""
    eval_every: int | None = None
    """Steps between clean test evaluations; None: as often as keeps it to ~500 per run."""
    criteria: PhaseCriteria = field(default_factory=PhaseCriteria)

    def __post_init__(self) -> None:
        set_ = object.__setattr__
        set_(self, "sigma_eps", _positive(self.sigma_eps, "σ_ε values", "0.1,1,10"))
        set_(self, "lr", _positive(self.lr, "learning rates", "1e-3,1e-2,1e-1"))
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
                self.init_scale is None or (math.isfinite(self.init_scale) and self.init_scale > 0),
                f"NIW init scale is {self.init_scale}; use a positive value such as 0.05",
            ),
        )
        for ok, message in checks:
            if not ok:
                raise WalknoiseError(message)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def train_test_data(data: Any, test_data: Any = None) -> tuple[TensorData, TensorData]:
    """``mnist`` -> its fixed 8,000/2,000 split; anything else needs ``test_data`` too."""
    if isinstance(data, str) and data.lower().split(":")[0] == "mnist":
        return resolve_data("mnist:train"), resolve_data(test_data or "mnist:test")
    train = resolve_data(data)  # a missing file is named before a missing test set
    if test_data is None:
        raise WalknoiseError(
            "a NIN run needs a clean test set to trace the test loss: pass --test-data "
            "(a .pt/.npz with x, y) with your --data, or use --data mnist"
        )
    return train, resolve_data(test_data)


def model_factory(arch: str | ModelFactory, train: TensorData) -> ModelFactory:
    """A zero-argument builder: ``arch`` itself if callable, else the zoo/factory name
    built for ``train``'s input shape and classes."""
    if callable(arch):
        return arch
    kwargs = {"input_shape": train.input_shape, "num_classes": train.num_classes}
    return lambda: build_model(arch, **kwargs)


def probe(
    arch: str | ModelFactory = "mlp",
    data: Any = "mnist",
    config: ProbeConfig | None = None,
    *,
    test_data: Any = None,
    output: str | Path | None = None,
    device: str = "cpu",
    threads: int | None = None,
    progress: bool = True,
    command: str | None = None,
) -> ProbeResult:
    """Train the grid of ``config`` and return (and with ``output``, write) the results.

    ``arch`` is a zoo name, ``package.module:factory``, or a function returning a fresh
    model (called under :func:`~walknoise.training.seeded_init`). ``threads`` sets torch's
    CPU threads for the duration (see :func:`~walknoise.nin_train.torch_threads`).
    """
    with torch_threads(threads):
        return _probe(
            arch, data, config or ProbeConfig(), test_data, output, device, progress, command
        )


def _probe(
    arch: str | ModelFactory,
    data: Any,
    cfg: ProbeConfig,
    test_data: Any,
    output: str | Path | None,
    device: str,
    progress: bool,
    command: str | None,
) -> ProbeResult:
    dev = resolve_device(device)
    if output is not None and not Path(output).parent.is_dir():
        raise WalknoiseError(f"directory {Path(output).parent} does not exist; create it first")
    train, test = train_test_data(data, test_data)
    factory = model_factory(arch, train)
    with seeded_init(0):
        nin_targets(factory(), cfg.where)  # a bad layer name fails before any training
    steps = cfg.epochs * -(-len(train) // cfg.batch_size)
    every = cfg.eval_every or max(1, steps // 500)
    runs = Runs()
    total = len(cfg.seeds) * len(cfg.lr) * (len(cfg.sigma_eps) + 1) * steps
    with tqdm(total=total, unit="step", desc="nin probe", disable=not progress) as bar:
        for k, seed in enumerate(cfg.seeds):
            for j, lr in enumerate(cfg.lr):
                for i in (-1, *range(len(cfg.sigma_eps))):  # -1: the reference run
                    sigma = None if i < 0 else cfg.sigma_eps[i]
                    model = _model(factory, seed, sigma, cfg, runs, dev)
                    trace = train_trace(
                        model, train.x, train.y, lr=lr, epochs=cfg.epochs,
                        batch_size=cfg.batch_size, seed=seed, optimizer=cfg.optimizer,
                        x_test=test.x, y_test=test.y, eval_every=every, progress=bar,
                    )  # fmt: skip
                    bar.update(steps - trace.steps_done)  # a stopped run skips its rest
                    if i < 0:
                        runs.reference[j, k] = trace
                    else:
                        runs.nin[i, j, k] = trace
    ds = build_dataset(cfg, runs, steps, _attrs(cfg, arch, train, test, every, command))
    result = ProbeResult(ds)
    if output is not None:
        result.save(output)
    return result


def _model(
    factory: ModelFactory,
    seed: int,
    sigma: float | None,
    cfg: ProbeConfig,
    runs: Runs,
    device: torch.device,
) -> nn.Module:
    with seeded_init(seed):
        model = factory().to(device)
    if sigma is None:
        return model
    nin = attach_nins(model, cfg.where, sigma_eps=sigma, init_scale=cfg.init_scale, seed=seed)
    runs.names = nin.names
    return nin


def _attrs(
    cfg: ProbeConfig,
    arch: str | ModelFactory,
    train: TensorData,
    test: TensorData,
    every: int,
    command: str | None,
) -> dict[str, Any]:
    arch_name = arch if isinstance(arch, str) else getattr(arch, "__name__", "custom")
    config = {**cfg.to_dict(), "arch": arch_name, "eval_every": every}
    config.update(train_data=train.name, test_data=test.name)
    return {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "title": "walknoise NIN probe of learning dynamics",
        "walknoise_version": walknoise.__version__,
        "torch_version": str(torch.__version__),
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "command": command or " ".join(sys.argv),
        "config": json.dumps(config, sort_keys=True),
        "arch": arch_name,
        "data": train.name,
        "test_data": test.name,
        "optimizer": cfg.optimizer,
        "epochs": cfg.epochs,
        "batch_size": cfg.batch_size,
        "phase_names": " ".join(PHASES),
    }
