"""Deterministic, minimal training for the zoo models (Adam or plain SGD + cross-entropy)."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from walknoise.errors import WalknoiseError
from walknoise.progress import progress_bar

SCHEDULES = ("cosine", "constant")
OPTIMIZERS = ("adam", "sgd")

LossFn = Callable[[nn.Module, Tensor, Tensor], tuple[Tensor, Tensor]]
StepHook = Callable[[nn.Module, int, float], None]


@dataclass(frozen=True)
class TrainConfig:
    """Hyper-parameters of :func:`train_model`; invalid values raise ``WalknoiseError``."""

    epochs: int = 5
    """Full passes over the training set."""
    lr: float = 1e-3
    """Learning rate (the peak rate for the cosine schedule)."""
    batch_size: int = 64
    """Samples per optimiser step; the last batch of an epoch may be smaller."""
    seed: int = 0
    """Seeds the shuffling order (a private generator; the global RNG is left alone)."""
    schedule: str = "cosine"
    """``"cosine"``: anneal lr to 0 over all steps; ``"constant"``: keep ``lr``."""
    weight_decay: float = 0.0
    """L2 weight decay."""
    optimizer: str = "adam"
    """``"adam"``, or ``"sgd"``: plain SGD without momentum, as Camuto et al. (2021) train
    (their ``playground/*.ipynb`` use ``torch.optim.SGD(params, lr)``); Adam rescales each
    coordinate's step, which changes how heavy-tailed gradient noise acts."""

    def __post_init__(self) -> None:
        checks = (
            (self.epochs >= 1, f"epochs is {self.epochs}; use at least 1"),
            (self.lr > 0, f"learning rate is {self.lr}; use a positive value such as 1e-3"),
            (self.batch_size >= 1, f"batch size is {self.batch_size}; use at least 1"),
            (
                self.schedule in SCHEDULES,
                f"schedule {self.schedule!r} is unknown; use one of {', '.join(SCHEDULES)}",
            ),
            (self.weight_decay >= 0, f"weight decay is {self.weight_decay}; use 0 or more"),
            (
                self.optimizer in OPTIMIZERS,
                f"optimizer {self.optimizer!r} is unknown; use one of {', '.join(OPTIMIZERS)}",
            ),
        )
        for ok, message in checks:
            if not ok:
                raise WalknoiseError(message)

    def to_dict(self) -> dict[str, Any]:
        """Plain dict of the fields (for checkpoint metadata and result files)."""
        return asdict(self)


@contextmanager
def seeded_init(seed: int) -> Iterator[None]:
    """Seed torch inside the block and restore the caller's RNG state afterwards.

    Build zoo models inside it (``with seeded_init(0): model = build_model("mlp")``) so
    the initial weights depend only on ``seed``, not on what ran before.
    """
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        yield


def _device_of(model: nn.Module) -> torch.device:
    for tensor in model.parameters():
        return tensor.device
    return torch.device("cpu")


def _check_data(x: Tensor, y: Tensor, what: str) -> None:
    if len(x) == 0:
        raise WalknoiseError(f"the {what} set is empty; provide at least one sample")
    if len(x) != len(y):
        raise WalknoiseError(
            f"the {what} set has {len(x)} inputs but {len(y)} labels; they must match"
        )
    if y.dtype.is_floating_point or y.dim() != 1:
        raise WalknoiseError(
            f"{what} labels must be a 1-D integer class-index tensor, got {y.dtype} "
            f"of shape {tuple(y.shape)}"
        )


def evaluate(model: nn.Module, x: Tensor, y: Tensor, batch_size: int = 1000) -> tuple[float, float]:
    """Return ``(accuracy, mean cross-entropy)`` of ``model`` on ``(x, y)`` in eval mode.

    The model's previous train/eval mode is restored afterwards.
    """
    _check_data(x, y, "evaluation")
    device = _device_of(model)
    was_training = model.training
    model.eval()
    correct = 0
    loss_sum = 0.0
    try:
        with torch.inference_mode():
            for start in range(0, len(x), batch_size):
                xb = x[start : start + batch_size].to(device)
                yb = y[start : start + batch_size].to(device, torch.long)
                logits = model(xb)
                loss_sum += float(F.cross_entropy(logits, yb, reduction="sum"))
                correct += int((logits.argmax(dim=1) == yb).sum())
    finally:
        model.train(was_training)
    return correct / len(x), loss_sum / len(x)


def train_model(
    model: nn.Module,
    x: Tensor,
    y: Tensor,
    config: TrainConfig,
    *,
    x_test: Tensor | None = None,
    y_test: Tensor | None = None,
    progress: bool = True,
    device: str | torch.device = "cpu",
    loss_fn: LossFn | None = None,
    on_step: StepHook | None = None,
) -> dict[str, Any]:
    """Train ``model`` in place on ``device`` and return its metrics.

    ``loss_fn(model, xb, yb) -> (loss, logits)`` replaces plain cross-entropy (e.g. a loss
    averaged over noise draws); ``on_step(model, step, loss)`` runs after every optimiser
    step (e.g. weight clamping, or recording a trajectory).

    The result holds ``train_loss`` and ``train_accuracy`` (running values over the last
    epoch), ``test_loss``/``test_accuracy`` when a test set is given, ``seconds``, ``steps``
    and a per-epoch ``history``. The model is left on ``device`` in eval mode.
    """
    _check_data(x, y, "training")
    if (x_test is None) != (y_test is None):
        raise WalknoiseError("give both x_test and y_test, or neither")
    start_time = time.perf_counter()
    dev = torch.device(device)
    model.to(dev)
    make = torch.optim.SGD if config.optimizer == "sgd" else torch.optim.Adam
    optimizer = make(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    steps_per_epoch = -(-len(x) // config.batch_size)
    total_steps = steps_per_epoch * config.epochs
    scheduler = (
        torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=total_steps)
        if config.schedule == "cosine"
        else None
    )
    # A private generator makes the data order depend on config.seed alone.
    generator = torch.Generator().manual_seed(config.seed)
    history: list[dict[str, float]] = []
    loss_sum, correct, seen, step = 0.0, 0, 0, 0
    model.train()
    with progress_bar(total=total_steps, desc="train", unit="step", disable=not progress) as bar:
        for epoch in range(1, config.epochs + 1):
            order = torch.randperm(len(x), generator=generator)
            loss_sum, correct, seen = 0.0, 0, 0
            for start in range(0, len(x), config.batch_size):
                idx = order[start : start + config.batch_size]
                xb = x[idx].to(dev)
                yb = y[idx].to(dev, torch.long)
                step += 1
                if loss_fn is None:
                    logits = model(xb)
                    loss = F.cross_entropy(logits, yb)
                else:
                    loss, logits = loss_fn(model, xb, yb)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()  # type: ignore[no-untyped-call]
                optimizer.step()
                if scheduler is not None:
                    scheduler.step()
                if on_step is not None:
                    on_step(model, step, float(loss.detach()))
                loss_sum += float(loss.detach()) * len(idx)
                correct += int((logits.detach().argmax(dim=1) == yb).sum())
                seen += len(idx)
                bar.update(1)
                bar.set_postfix(
                    epoch=epoch,
                    loss=f"{loss_sum / seen:.4f}",
                    acc=f"{correct / seen:.3f}",
                    refresh=False,
                )
            history.append({"epoch": epoch, "loss": loss_sum / seen, "accuracy": correct / seen})
    result: dict[str, Any] = {
        "train_loss": loss_sum / seen,
        "train_accuracy": correct / seen,
        "steps": total_steps,
        "history": history,
    }
    if x_test is not None and y_test is not None:
        result["test_accuracy"], result["test_loss"] = evaluate(model, x_test, y_test)
    model.eval()
    result["seconds"] = time.perf_counter() - start_time
    return result
