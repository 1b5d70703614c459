"""The probe's training loop: constant learning rate, one record per optimiser step.

Unlike :func:`walknoise.training.train_model` (Adam with a cosine schedule, the project's
recipe for a good model), a NIN probe needs what the NIN papers use: vanilla SGD (or Adam,
on request) at a *constant* learning rate — the phases are set by the learning rate, which a
schedule would change under the run — and a trace of every step: NIW norms, the train loss
the optimiser saw, and the clean test loss. A run whose loss or weights turn non-finite is
stopped; the rest of its trace stays NaN. The data order matches ``train_model``'s for the
same seed (one ``randperm`` per epoch from a private generator).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn
from torch.nn import functional as F
from tqdm import tqdm

from walknoise.errors import WalknoiseError
from walknoise.nin.model import NINModel

__all__ = ["OPTIMIZERS", "Trace", "torch_threads", "train_trace"]

OPTIMIZERS = ("sgd", "adam")
LossFn = Callable[[Tensor, Tensor], Tensor]


@dataclass
class Trace:
    """One run, indexed by step ``0..T`` (step 0 = before the first update)."""

    niw: np.ndarray
    """``(nins, T + 1)``: each NIN's weight norm after ``t`` updates."""
    train_loss: np.ndarray
    """``(T + 1,)``: the loss of the batch of update ``t`` (NaN at 0)."""
    test_loss: np.ndarray
    """``(T + 1,)``: clean (NINs off) test loss after ``t`` updates; NaN where not evaluated."""
    test_accuracy: np.ndarray
    seconds: float
    steps_done: int
    """Updates made; fewer than ``T`` when the run went non-finite and was stopped."""

    @property
    def final_test_accuracy(self) -> float:
        done = self.test_accuracy[np.isfinite(self.test_accuracy)]
        return float(done[-1]) if done.size else float("nan")


@contextmanager
def torch_threads(threads: int | None) -> Iterator[None]:
    """Use ``threads`` CPU threads inside the block (None: leave torch's setting).

    Small models gain nothing from intra-op threads, and on a busy machine the threads'
    spin-waiting can make them many times slower; one thread is then the fast choice.
    """
    if threads is None:
        yield
        return
    if threads < 1:
        raise WalknoiseError(f"threads is {threads}; use at least 1")
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def make_optimizer(
    name: str, params: object, lr: float, *, momentum: float = 0.0, weight_decay: float = 0.0
) -> torch.optim.Optimizer:
    """SGD (``momentum`` 0: vanilla) or Adam; ``weight_decay`` adds ``weight_decay · w`` to
    every gradient (an L2 penalty ``½ λ‖w‖²``; for Adam before its rescaling, not AdamW)."""
    if name not in OPTIMIZERS:
        raise WalknoiseError(f"optimizer {name!r} is unknown; use one of {', '.join(OPTIMIZERS)}")
    groups: Any = params
    if name == "sgd":
        return torch.optim.SGD(groups, lr=lr, momentum=momentum, weight_decay=weight_decay)
    if momentum:
        raise WalknoiseError(f"momentum is {momentum}; only SGD takes one (Adam: leave it 0)")
    return torch.optim.Adam(groups, lr=lr, weight_decay=weight_decay)


def _evaluate(model: nn.Module, x: Tensor, y: Tensor, loss_fn: LossFn) -> tuple[float, float]:
    """(loss, accuracy) in eval mode, so NINs are off; accuracy NaN for float targets."""
    was = model.training
    model.eval()
    try:
        with torch.inference_mode():
            out = torch.cat([model(x[i : i + 1000]) for i in range(0, len(x), 1000)])
            loss = float(loss_fn(out, y))
            if y.is_floating_point():  # regression: no accuracy
                return loss, float("nan")
            return loss, float((out.argmax(1) == y).double().mean())
    finally:
        model.train(was)


def _niw(model: nn.Module) -> np.ndarray:
    if isinstance(model, NINModel):
        return model.niw_norms().cpu().numpy().astype(np.float64)
    return np.zeros(0)


def train_trace(
    model: nn.Module,
    x: Tensor,
    y: Tensor,
    *,
    lr: float,
    epochs: int,
    batch_size: int = 64,
    seed: int = 0,
    optimizer: str = "sgd",
    momentum: float = 0.0,
    weight_decay: float = 0.0,
    x_test: Tensor | None = None,
    y_test: Tensor | None = None,
    eval_every: int = 1,
    loss_fn: LossFn = F.cross_entropy,
    progress: tqdm | None = None,  # type: ignore[type-arg]
    on_step: Callable[[int], None] | None = None,
) -> Trace:
    """Train ``model`` (a :class:`NINModel` or a bare model) in place and trace every step.

    ``on_step(t)`` is called after update ``t`` is traced (and with 0 before the first), e.g.
    to measure the model along the run; it must leave the model's weights and mode as found.
    """
    if len(x) == 0 or len(x) != len(y):
        raise WalknoiseError("the training set must be non-empty with one target per input")
    device = next((p.device for p in model.parameters()), torch.device("cpu"))
    steps_per_epoch = -(-len(x) // batch_size)
    total = epochs * steps_per_epoch
    trace = _empty_trace(len(_niw(model)), total)
    trace.niw[:, 0] = _niw(model)
    if on_step is not None:
        on_step(0)
    tested = x_test is not None and y_test is not None
    if tested:
        assert x_test is not None and y_test is not None
        x_test, y_test = x_test.to(device), y_test.to(device)
        trace.test_loss[0], trace.test_accuracy[0] = _evaluate(model, x_test, y_test, loss_fn)
    opt = make_optimizer(
        optimizer, model.parameters(), lr, momentum=momentum, weight_decay=weight_decay
    )
    gen = torch.Generator().manual_seed(seed)
    start, step = time.perf_counter(), 0
    model.train()
    for _ in range(epochs):
        order = torch.randperm(len(x), generator=gen)
        for i in range(0, len(x), batch_size):
            idx = order[i : i + batch_size]
            step += 1
            loss = loss_fn(model(x[idx].to(device)), y[idx].to(device))
            trace.train_loss[step] = float(loss.detach())
            if not np.isfinite(trace.train_loss[step]):
                return _stopped(trace, model, step - 1, start)
            opt.zero_grad(set_to_none=True)
            loss.backward()  # type: ignore[no-untyped-call]
            opt.step()
            # Weights blown up by this update show as a non-finite NIW now, or loss next step.
            trace.niw[:, step] = _niw(model)
            if tested and (step % eval_every == 0 or step == total):
                assert x_test is not None and y_test is not None
                ev = _evaluate(model, x_test, y_test, loss_fn)
                trace.test_loss[step], trace.test_accuracy[step] = ev
            if progress is not None:
                progress.update(1)
            if on_step is not None:
                on_step(step)
    return _stopped(trace, model, total, start)


def _empty_trace(nins: int, total: int) -> Trace:
    def blank(*shape: int) -> np.ndarray:
        return np.full(shape, np.nan)

    return Trace(blank(nins, total + 1), blank(total + 1), blank(total + 1), blank(total + 1), 0, 0)


def _stopped(trace: Trace, model: nn.Module, steps: int, start: float) -> Trace:
    """Finish a run after ``steps`` updates; the model is left in eval mode."""
    model.eval()
    trace.steps_done = steps
    trace.seconds = time.perf_counter() - start
    return trace
