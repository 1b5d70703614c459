"""The walk an expert would hand-write in plain PyTorch: the baseline walknoise must beat.

Per point (a ``named_modules()`` name, or ``<input>``) and batch of 500: the clean prefix
once; per repeat one ε for the batch, scaled by every σ (common random numbers); the σ copies
stacked into passes of at most 2**22 activation elements; ``inference_mode``; a channels-last
copy of conv models.

How the prefix is skipped (the expert's choice, documented): the model is split where it is
a chain. ``nn.Sequential`` containers are flattened recursively into a list of steps; a step
that is not a plain ``Sequential`` (a residual block, or a whole model with its own
``forward``) is atomic. For a point that *is* a step, the steps up to it run once per batch
and the noisy copies go through the rest. For a point *inside* an atomic step (a conv in a
residual block), the clean steps before the block run once, the block's input is replicated
σ-copies times and a forward hook adds the noise inside it: the innermost place a hand
written loop can cut a graph it does not trace. A model that is not a ``Sequential`` at all
is one atomic step: its input is replicated (hooks cannot skip a prefix). ``act#2``-style
points (a module's second call) are not supported.

Noise: the generator of (point i, repeat r) is seeded ``noise_seed(seed, i, r)`` and draws,
batch after batch, one ε of shape ``(batch, *point shape)`` in NCHW order (converted to the
model's layout afterwards), so an independent loop can replay exactly the same draws. With
seed 0 these are the seeds of bench_scan.py's naive loop (which draws per batch of 128 in the
same order): they gave the same accuracy in every cell of its --quick runs.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

INPUT = "<input>"
BUDGET = 2**22  # activation elements per stacked pass
Step = tuple[str, nn.Module]


def noise_seed(seed: int, point: int, repeat: int) -> int:
    return seed * 1_000_003 + 1000 * point + repeat


def steps(mod: nn.Module, prefix: str = "") -> list[Step]:
    """Flatten plain ``nn.Sequential`` containers into their steps, in order."""
    if not isinstance(mod, nn.Sequential) or type(mod).forward is not nn.Sequential.forward:
        return [(prefix, mod)]
    out: list[Step] = []
    for name, child in mod.named_children():
        out += steps(child, f"{prefix}.{name}" if prefix else name)
    return out


def locate(chain: Sequence[Step], point: str) -> tuple[int, str | None]:
    """(first step of the noisy part, the inner module to hook or ``None``)."""
    if point == INPUT:
        return 0, None
    for k, (name, _) in enumerate(chain):
        if point == name:
            return k + 1, None
        if name == "" or point.startswith(name + "."):
            return k, point
    raise ValueError(f"{point!r} is not a module of the model (act#2-style calls unsupported)")


def run(chain: Sequence[Step], x: torch.Tensor) -> torch.Tensor:
    for _, mod in chain:
        x = mod(x)
    return x


def widths(model: nn.Module, chain: Sequence[Step], x1: torch.Tensor) -> list[int]:
    """Widest activation (elements per sample) inside or out of each step."""
    seen: dict[str, int] = {}

    def rec(name: str) -> Callable[[nn.Module, Any, Any], None]:
        def hook(_m: nn.Module, _i: Any, out: Any) -> None:
            if isinstance(out, torch.Tensor):
                seen[name] = max(seen.get(name, 0), out[0].numel())

        return hook

    handles = [m.register_forward_hook(rec(n)) for n, m in model.named_modules() if n]
    try:
        run(chain, x1)
    finally:
        for h in handles:
            h.remove()
    return [max([v for n, v in seen.items() if not s or n == s or n.startswith(s + ".")] or [1])
            for s, _ in chain]  # fmt: skip


class Draw:
    """The noise of one (point, batch, repeat): ε drawn once, scaled by the σ of a pass."""

    def __init__(self, fmt: torch.memory_format) -> None:
        self.fmt = fmt
        self.gen = torch.Generator()
        self.eps: torch.Tensor | None = None
        self.sig = torch.zeros(1)
        self.batch = 0

    def new(self, gen: torch.Generator, batch: int) -> None:
        self.gen, self.eps, self.batch = gen, None, batch

    def add(self, t: torch.Tensor) -> torch.Tensor:
        """``t`` is the clean tensor (batch, ...) or σ copies of it (copies·batch, ...)."""
        base = t.view(-1, self.batch, *t.shape[1:])
        if self.eps is None:
            eps = torch.randn(base.shape[1:], generator=self.gen)  # NCHW: the documented stream
            self.eps = eps.contiguous(memory_format=self.fmt) if eps.dim() == 4 else eps
        z = torch.addcmul(base, self.sig.view(-1, *([1] * t.dim())), self.eps)  # one pass
        z = z.reshape(len(self.sig) * self.batch, *t.shape[1:])
        return z.contiguous(memory_format=self.fmt) if z.dim() == 4 else z


def expert_walk(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    points: Sequence[str],
    sigmas: Sequence[float],
    repeats: int,
    *,
    batch_size: int = 500,
    budget: int = BUDGET,
    seed: int = 0,
) -> np.ndarray:
    """Accuracy of every (point, σ, repeat) cell."""
    conv = x.dim() == 4 and any(isinstance(m, nn.Conv2d) for m in model.modules())
    fmt = torch.channels_last if conv else torch.contiguous_format
    model = copy.deepcopy(model).eval().to(memory_format=fmt)  # type: ignore[call-overload]
    x = x.contiguous(memory_format=fmt)
    chain, modules = steps(model), dict(model.named_modules())
    sig = torch.tensor(list(sigmas), dtype=torch.float32)
    acc = np.zeros((len(points), len(sig), repeats))
    draw = Draw(fmt)
    with torch.inference_mode():
        width = widths(model, chain, x[:1])
        for i, point in enumerate(points):
            start, inner = locate(chain, point)
            gens = [torch.Generator().manual_seed(noise_seed(seed, i, r)) for r in range(repeats)]
            hook = None if inner is None else modules[inner].register_forward_hook(
                lambda _m, _i, out: draw.add(out))  # fmt: skip
            try:
                for b in range(0, len(x), batch_size):
                    xb, yb = x[b : b + batch_size], y[b : b + batch_size]
                    h = run(chain[:start], xb)  # the clean prefix, once per batch
                    widest = max([h[0].numel(), *width[start:]])  # of the noisy part
                    copies = max(1, budget // (len(xb) * widest))
                    for r, gen in enumerate(gens):
                        draw.new(gen, len(xb))
                        for s in range(0, len(sig), copies):
                            draw.sig = sig[s : s + copies]
                            acc[i, s : s + copies, r] += _hits(chain[start:], h, yb, draw, inner)
            finally:
                if hook is not None:
                    hook.remove()
    return acc / len(x)


def _hits(
    suffix: Sequence[Step], h: torch.Tensor, y: torch.Tensor, draw: Draw, inner: str | None
) -> np.ndarray:
    """Correct predictions per σ of one pass over the noisy part."""
    c = len(draw.sig)
    if inner is None:  # noise on the clean tensor, fanned out into σ copies
        z = draw.add(h)
    else:  # noise inside the first step (its hook adds it): replicate the step's input
        z = h.unsqueeze(0).expand(c, *h.shape).reshape(c * len(h), *h.shape[1:])
        z = z.contiguous(memory_format=draw.fmt) if z.dim() == 4 else z
    hits = run(suffix, z).view(c, len(h), -1).argmax(-1) == y
    return hits.sum(1).numpy()
