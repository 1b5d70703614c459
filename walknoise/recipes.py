"""Whole workflows the CLI offers as one command: train a zoo model to a checkpoint, the demo."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from walknoise._version import __version__
from walknoise.data import Normalization, data_normalization, resolve_data
from walknoise.devices import resolve_device
from walknoise.errors import WalknoiseError
from walknoise.models import build_model, save_checkpoint
from walknoise.training import LossFn, StepHook, TrainConfig, seeded_init, train_model
from walknoise.walk.driver import scan
from walknoise.walk.plots import heatmap, save_figure
from walknoise.walk.report import midpoint_table
from walknoise.walk.result import Result


def train_checkpoint(
    arch: str,
    output: str | Path,
    *,
    data: Any = "mnist",
    normalize: str | Normalization = "none",
    arch_kwargs: dict[str, Any] | None = None,
    config: TrainConfig | None = None,
    device: str = "cpu",
    progress: bool = True,
    loss_fn: LossFn | None = None,
    on_step: StepHook | None = None,
    extra_meta: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Train ``arch`` on ``data`` (its train split) and save a walknoise checkpoint.

    ``loss_fn``/``on_step`` go to :func:`train_model` (e.g. noisy training, tracking);
    ``extra_meta`` is merged into the checkpoint metadata. ``normalize`` rescales the inputs
    (``"none"``: as given, MNIST in [0, 1]; ``"pm1"``; ``"standard"``: mean/std of the
    training data); the checkpoint records it, and ``walknoise scan`` of it applies the same.

    For ``mnist`` the fixed 8,000/2,000 split is used and test accuracy is recorded;
    a user file is trained on as a whole. Returns the training metrics.
    """
    config = config or TrainConfig()
    if not Path(output).parent.exists():
        raise WalknoiseError(f"directory {Path(output).parent} does not exist; create it first")
    named = isinstance(data, str) and data.split(":")[0] == "mnist"
    norm = data_normalization(normalize, "mnist:train" if named else data)
    train = resolve_data("mnist:train" if named else data, normalize=norm)
    test = resolve_data("mnist:test", normalize=norm) if named else None
    kwargs = {
        "input_shape": train.input_shape,
        "num_classes": train.num_classes,
        **(arch_kwargs or {}),
    }
    with seeded_init(config.seed):
        model = build_model(arch, **kwargs)
    metrics = train_model(
        model,
        train.x,
        train.y,
        config,
        x_test=None if test is None else test.x,
        y_test=None if test is None else test.y,
        progress=progress,
        device=resolve_device(device),
        loss_fn=loss_fn,
        on_step=on_step,
    )
    meta = {
        "data": train.name,
        **norm.attrs(),  # the scan of this checkpoint rescales its data the same way
        "train": config.to_dict(),
        "optimizer": "Adam",
        "train_accuracy": float(metrics["train_accuracy"]),
        "test_accuracy": float(metrics.get("test_accuracy", float("nan"))),
        "seconds": float(metrics["seconds"]),
        "walknoise_version": __version__,
        **(extra_meta or {}),
    }
    kwargs["input_shape"] = list(kwargs["input_shape"])
    save_checkpoint(
        output,
        model.cpu(),
        arch=arch,
        arch_kwargs=kwargs,
        input_shape=tuple(train.input_shape),
        num_classes=int(kwargs["num_classes"]),
        meta=meta,
    )
    return metrics


@dataclass(frozen=True)
class DemoOutput:
    model: Path
    results: Path
    heatmap: Path
    result: Result
    test_accuracy: float
    table: str


def run_demo(
    directory: str | Path = "demo",
    *,
    epochs: int = 12,
    repeats: int = 5,
    sigmas: str = "log:1e-2:1e3:31",
    progress: bool = True,
    normalize: str = "none",
) -> DemoOutput:
    """Train LeNet-5 on bundled MNIST (in [0, 1] unless ``normalize`` says otherwise), scan
    it with additive noise, draw the heatmap."""
    norm = data_normalization(normalize, "mnist")  # training and scan see the same inputs
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    model_path, results_path, png = out / "model.pt", out / "results.h5", out / "heatmap.png"
    metrics = train_checkpoint(
        "lenet5", model_path, normalize=norm, config=TrainConfig(epochs=epochs), progress=progress
    )
    from walknoise.models import load_model  # the scan runs on the saved file, as a user's would

    loaded = load_model(model_path)
    result = scan(
        loaded.model,
        "mnist:test",
        normalize=norm,
        sigmas=sigmas,
        repeats=repeats,
        output=results_path,
        overwrite=True,
        progress=progress,
    )
    save_figure(heatmap(result), png)
    return DemoOutput(
        model_path,
        results_path,
        png,
        result,
        float(metrics["test_accuracy"]),
        midpoint_table(result),
    )
