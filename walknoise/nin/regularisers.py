"""The methods of the NINR comparison and how one candidate of each is trained.

Every method trains the same architecture from the same initial weights and data order per
seed with the probe's loop (:func:`walknoise.nin.train.train_trace`: a constant learning rate,
SGD by default as in the NIN papers); only the regulariser and its one hyper-parameter differ:

* ``none`` — no regulariser; the baseline spends its tuning budget on its only
  hyper-parameter, the learning rate (:func:`walknoise.nin.compare.compare` then trains
  every other method of that seed at the rate it chose);
* ``in-ninr`` / ``full-ninr`` — a NIN on the first / on every Linear/Conv, tuned over σ_ε;
* ``input-noise`` — Gaussian noise of std σ on every training input, tuned over σ;
* ``l2`` — ``λ w`` added to every gradient, tuned over the weight decay λ;
* ``dropout`` — inverted dropout after each hidden activation, tuned over p.

Training-time noise (NINs, input noise, dropout) is seeded and removed after training, so
every trained model comes back bare, in eval mode, with the architecture's module names.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor, nn
from torch.utils.hooks import RemovableHandle

from walknoise.data import TensorData
from walknoise.errors import WalknoiseError
from walknoise.nin.model import NINModel, attach_nins
from walknoise.nin.train import train_trace
from walknoise.training import seeded_init

__all__ = ["KNOBS", "METHODS", "WHAT", "Fit", "Trained", "check_value", "train_candidate"]

METHODS = ("none", "in-ninr", "full-ninr", "input-noise", "l2", "dropout")
KNOBS = {
    "none": "learning rate",
    "in-ninr": "σ_ε",
    "full-ninr": "σ_ε",
    "input-noise": "σ of the training input noise",
    "l2": "weight decay",
    "dropout": "drop probability",
}
"""The one hyper-parameter each method is tuned over."""
WHAT = {
    "none": "no regulariser",
    "in-ninr": "a NIN on the first Linear/Conv",
    "full-ninr": "a NIN on every Linear/Conv",
    "input-noise": "Gaussian noise on every training input",
    "l2": "L2 weight decay on every parameter",
    "dropout": "inverted dropout after each hidden activation",
}
"""Each method in words."""
ACTIVATIONS: tuple[type[nn.Module], ...] = (
    nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.ELU, nn.SELU, nn.GELU, nn.SiLU, nn.Mish, nn.Tanh,
    nn.Sigmoid, nn.Hardtanh, nn.Softplus, nn.PReLU,
)  # fmt: skip


@dataclass(frozen=True)
class Fit:
    """How every candidate is trained (the same for every method)."""

    optimizer: str
    """``sgd`` or ``adam``."""
    lr: float
    """Constant learning rate (the baseline's candidates replace it)."""
    momentum: float
    """SGD momentum (0: vanilla SGD)."""
    epochs: int
    batch_size: int


@dataclass
class Trained:
    """One trained candidate."""

    model: nn.Module
    """The bare model, in eval mode."""
    finished: bool
    """False when the loss turned non-finite and training stopped early (diverged)."""
    niw_norm: float
    """Total NIW norm at the end (NINR methods; NaN otherwise)."""
    seconds: float
    lr: float
    """The learning rate it was trained with."""


def check_value(method: str, value: float) -> None:
    """Raise unless ``value`` is a valid hyper-parameter for ``method``."""
    if method == "dropout":
        if not 0 < value < 1:
            raise WalknoiseError(f"dropout p is {value}; use a probability in (0, 1) such as 0.2")
    elif not (math.isfinite(value) and value > 0):
        raise WalknoiseError(f"{KNOBS[method]} of {method} is {value}; use a positive value")


@contextmanager
def dropout_hooks(model: nn.Module, p: float, seed: int) -> Iterator[None]:
    """Seeded dropout on every activation's output while training (hooks, so the module
    names a walk reports stay those of the bare model); removed on exit."""
    gen = torch.Generator().manual_seed(seed)

    def hook(module: nn.Module, _inputs: object, out: Tensor) -> Tensor | None:
        if not module.training:
            return None
        keep = torch.rand(out.shape, generator=gen) >= p
        return out * keep.to(out.device, out.dtype) / (1 - p)

    acts = [m for m in model.modules() if isinstance(m, ACTIVATIONS)]
    if not acts:
        raise WalknoiseError("dropout needs activation modules (e.g. nn.ReLU) in the model")
    with _hooks([m.register_forward_hook(hook) for m in acts]):
        yield


@contextmanager
def input_noise_hook(model: nn.Module, sigma: float, seed: int) -> Iterator[None]:
    """Seeded Gaussian noise of std ``sigma`` on the model's input while training."""
    gen = torch.Generator().manual_seed(seed)

    def hook(module: nn.Module, inputs: tuple[Tensor, ...]) -> tuple[Tensor, ...] | None:
        if not module.training:
            return None
        x = inputs[0]
        noise = torch.randn(x.shape, generator=gen).to(x.device, x.dtype)
        return (x + sigma * noise, *inputs[1:])

    with _hooks([model.register_forward_pre_hook(hook)]):
        yield


@contextmanager
def _hooks(handles: list[RemovableHandle]) -> Iterator[None]:
    try:
        yield
    finally:
        for h in handles:
            h.remove()


def _training_noise(
    method: str, value: float, model: nn.Module, seed: int
) -> AbstractContextManager[None]:
    """The context that switches ``method``'s training-time noise on (a no-op for others)."""
    if method == "dropout":
        return dropout_hooks(model, value, seed)
    if method == "input-noise":
        return input_noise_hook(model, value, seed)
    return nullcontext()


def train_candidate(
    method: str,
    value: float,
    factory: Callable[[], nn.Module],
    train: TensorData,
    fit: Fit,
    seed: int,
) -> Trained:
    """Train ``method`` with hyper-parameter ``value`` from ``seed``'s initial weights."""
    check_value(method, value)
    with seeded_init(seed):
        model = factory()
    target: nn.Module = model
    if method in ("in-ninr", "full-ninr"):
        where = "input" if method == "in-ninr" else "all"
        target = attach_nins(model, where, sigma_eps=value, seed=seed)
    lr = value if method == "none" else fit.lr
    start = time.perf_counter()
    with _training_noise(method, value, model, seed):
        trace = train_trace(
            target,
            train.x,
            train.y,
            lr=lr,
            epochs=fit.epochs,
            batch_size=fit.batch_size,
            seed=seed,
            optimizer=fit.optimizer,
            momentum=fit.momentum,
            weight_decay=value if method == "l2" else 0.0,
        )
    seconds = time.perf_counter() - start
    total = fit.epochs * -(-len(train) // fit.batch_size)
    finished = trace.steps_done == total and all(
        bool(torch.isfinite(p).all()) for p in target.parameters()
    )
    niw = float(np.linalg.norm(trace.niw[:, -1])) if trace.niw.size else float("nan")
    if isinstance(target, NINModel):
        target.remove()
    return Trained(model.eval(), finished, niw, seconds, lr)
