"""``walknoise.nin.probe``: NIN runs over a (σ_ε, learning rate, seed) grid.

For every seed and learning rate the probe trains one reference run without NINs, then one
run per σ_ε with NINs, all from the same initial weights and data order (and, across σ_ε,
the same ε draws scaled by σ_ε), so the runs differ only by the injected noise. Each run is
traced step by step (:mod:`walknoise.nin.train`), classified into a phase and fitted with
exponential time scales (:mod:`walknoise.nin.phases`), and measured along the way: the top
Hessian eigenvalue λ of the loss with respect to each NIN layer's output
(:mod:`walknoise.nin.hessian`), which sets the predicted phase boundary ``η σ_ε² λ = 2``, in
the reference runs too. Everything goes to one ``xarray.Dataset`` with dimensions
``sigma_eps``, ``lr``, ``seed``, ``nin``, ``step`` and ``hessian_step``.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from walknoise.data import Normalization, TensorData, data_normalization, resolve_data
from walknoise.devices import resolve_device
from walknoise.errors import WalknoiseError
from walknoise.models import build_model
from walknoise.nin.config import ProbeConfig
from walknoise.nin.hessian import OutputCurvature
from walknoise.nin.model import attach_nins, nin_targets
from walknoise.nin.phases import PHASES
from walknoise.nin.results import (
    FORMAT,
    FORMAT_VERSION,
    ProbeResult,
    Runs,
    build_dataset,
    file_attrs,
    load_probe,
)
from walknoise.nin.train import torch_threads, train_trace
from walknoise.progress import progress_bar
from walknoise.training import seeded_init
from walknoise.types import Device

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


def train_test_data(
    data: Any, test_data: Any = None, normalize: str | Normalization = "none"
) -> tuple[TensorData, TensorData]:
    """``mnist`` -> its fixed 8,000/2,000 split; anything else needs ``test_data`` too. Both
    are rescaled by ``normalize`` (``"standard"``: mean/std of the training data)."""
    if isinstance(data, str) and data.lower().split(":")[0] == "mnist":
        norm = data_normalization(normalize, "mnist:train")
        test = resolve_data(test_data or "mnist:test", normalize=norm)
        return resolve_data("mnist:train", normalize=norm), test
    train = resolve_data(data)  # a missing file is named before a missing test set
    if test_data is None:
        raise WalknoiseError(
            "a NIN run needs a clean test set to trace the test loss: pass test_data "
            "(a .pt/.npz with x, y) with your data, or use data='mnist'",
            argument="test_data",
        )
    norm = data_normalization(normalize, train)
    return resolve_data(train, normalize=norm), resolve_data(test_data, normalize=norm)


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
    device: Device = "cpu",
    threads: int | None = None,
    progress: bool = True,
    normalize: str | Normalization = "none",
) -> ProbeResult:
    """Train the grid of ``config`` and return (and with ``output``, write) the results.

    ``arch`` is a zoo name, ``package.module:factory``, or a function returning a fresh
    model (called under :func:`~walknoise.training.seeded_init`). ``threads`` sets torch's
    CPU threads for the duration (see :func:`~walknoise.nin.train.torch_threads`).
    ``normalize`` rescales the inputs (see :func:`train_test_data`); the file records it.
    """
    cfg = config or ProbeConfig()
    with torch_threads(threads):
        return _probe(arch, data, cfg, test_data, output, device, progress, normalize)


def _probe(
    arch: str | ModelFactory,
    data: Any,
    cfg: ProbeConfig,
    test_data: Any,
    output: str | Path | None,
    device: Device,
    progress: bool,
    normalize: str | Normalization,
) -> ProbeResult:
    dev = resolve_device(device)
    if output is not None and not Path(output).parent.is_dir():
        raise WalknoiseError(f"directory {Path(output).parent} does not exist; create it first")
    train, test = train_test_data(data, test_data, normalize)
    factory = model_factory(arch, train)
    with seeded_init(0):
        names = nin_targets(factory(), cfg.where)  # a bad layer name fails before training
    steps = cfg.epochs * -(-len(train) // cfg.batch_size)
    every = cfg.eval_every or max(1, steps // 500)
    h_every = cfg.hessian_every or max(1, steps // 20)
    runs = Runs(names=names, hessian_steps=np.unique(np.r_[0:steps:h_every, steps]))
    total = len(cfg.seeds) * len(cfg.lr) * (len(cfg.sigma_eps) + 1) * steps
    with progress_bar(total=total, unit="step", desc="nin probe", disable=not progress) as bar:
        for k, seed in enumerate(cfg.seeds):
            for j, lr in enumerate(cfg.lr):
                for i in (-1, *range(len(cfg.sigma_eps))):  # -1: the reference run
                    sigma = None if i < 0 else cfg.sigma_eps[i]
                    model = _model(factory, seed, sigma, cfg, dev)
                    curvature, on_step = _curvature(model, train, cfg, runs)
                    trace = train_trace(
                        model, train.x, train.y, lr=lr, epochs=cfg.epochs,
                        batch_size=cfg.batch_size, seed=seed, optimizer=cfg.optimizer,
                        x_test=test.x, y_test=test.y, eval_every=every, progress=bar,
                        on_step=on_step,
                    )  # fmt: skip
                    bar.update(steps - trace.steps_done)  # a stopped run skips its rest
                    if i < 0:
                        runs.reference[j, k] = trace
                        runs.reference_hessian[j, k] = curvature
                    else:
                        runs.nin[i, j, k] = trace
                        runs.hessian[i, j, k] = curvature
    attrs = _attrs(cfg, arch, train, test, every) | {"hessian_every": h_every}
    ds = build_dataset(cfg, runs, steps, attrs)
    result = ProbeResult(ds)
    if output is not None:
        result.save(output)
    return result


def _model(
    factory: ModelFactory,
    seed: int,
    sigma: float | None,
    cfg: ProbeConfig,
    device: torch.device,
) -> nn.Module:
    with seeded_init(seed):
        model = factory().to(device)
    if sigma is None:
        return model
    return attach_nins(model, cfg.where, sigma_eps=sigma, init_scale=cfg.init_scale, seed=seed)


def _curvature(
    model: nn.Module, train: TensorData, cfg: ProbeConfig, runs: Runs
) -> tuple[np.ndarray, Callable[[int], None]]:
    """An array ``(nins, hessian steps)`` of λ, and the callback that fills it during training."""
    n = min(cfg.hessian_samples, len(train))
    measure = OutputCurvature(model, runs.names, train.x[:n], train.y[:n])
    values = np.full((len(runs.names), len(runs.hessian_steps)), np.nan)
    slot = {int(step): at for at, step in enumerate(runs.hessian_steps)}

    def on_step(step: int) -> None:
        if step in slot:
            values[:, slot[step]] = measure()

    return values, on_step


def _attrs(
    cfg: ProbeConfig,
    arch: str | ModelFactory,
    train: TensorData,
    test: TensorData,
    every: int,
) -> dict[str, Any]:
    title = "walknoise NIN probe of learning dynamics"
    config = {**cfg.to_dict(), "eval_every": every}
    return file_attrs(FORMAT, FORMAT_VERSION, title, config, arch, train, test) | {
        "optimizer": cfg.optimizer,
        "epochs": cfg.epochs,
        "batch_size": cfg.batch_size,
        "phase_names": " ".join(PHASES),
    }
