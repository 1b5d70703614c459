"""Whether one sample's output depends on the other samples of its batch.

A scan stacks σ copies of a batch into one forward pass, which is exact only when every
sample is computed on its own. A module that normalises over the batch (BatchNorm without
running statistics, any BatchNorm in training mode) or otherwise mixes samples would mix the
copies: a cell's number would depend on which other σ share its pass and on ``max_batch``.
The runner gives such models one σ copy per pass (``walknoise.walk.runner.LayerRunner``).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

from walknoise.noise.sites import INPUT, tap

PROBE_SAMPLES = 4
# A module that computes each sample alone gives the other samples' outputs bit for bit
# (CPU) or to kernel rounding (GPU); a batch statistic over 4 samples moves them by a sizeable
# fraction of the perturbation, which is as large as the activations themselves.
RTOL, ATOL = 1e-4, 1e-6


def batch_statistics_modules(model: nn.Module) -> list[str]:
    """The BatchNorm-like modules that normalise with the statistics of the batch at hand.

    InstanceNorm, GroupNorm and LayerNorm normalise within one sample, and a BatchNorm in
    eval mode with running statistics uses fixed numbers: none of them mixes samples.
    """
    return [
        name
        for name, m in model.named_modules()
        if isinstance(m, _BatchNorm) and (m.training or m.running_mean is None)
    ]


def mixes_samples(model: nn.Module, x: torch.Tensor, points: Sequence[str]) -> bool:
    """Whether the output for one sample of ``x`` depends on the others, at or after ``points``.

    A known batch-statistics module anywhere counts; otherwise a probe perturbs the first of
    a few samples, at the input and at every point, and looks for a change in another sample's
    output. (Anywhere, not only after the points: when σ copies cannot fan out at a point,
    the whole input is replicated and the modules before it see the copies too.)
    """
    if batch_statistics_modules(model):
        return True
    xs = x[:PROBE_SAMPLES]
    if len(xs) < 2:  # one sample still meets its σ copies: probe with two of it
        xs = torch.cat([xs, xs])
    with torch.inference_mode():
        clean = _leaves(model(xs), len(xs))
        moved = _leaves(_perturbed(model, xs, points), len(xs))
    return any(
        not torch.allclose(a[1:], b[1:], rtol=RTOL, atol=ATOL * _scale(a), equal_nan=True)
        for a, b in zip(clean, moved, strict=True)
    )


def _perturbed(model: nn.Module, xs: torch.Tensor, points: Sequence[str]) -> object:
    """The model's output with the first sample changed at the input and at ``points``."""
    gen = torch.Generator(device=xs.device).manual_seed(0)
    handles = [h for p in points if p != INPUT for h in tap(model, p, lambda t: _bump(t, gen))]
    try:
        return model(_bump(xs, gen))
    finally:
        for h in handles:
            h.remove()


def _bump(t: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """``t`` with noise as large as its values added to its first sample."""
    if not t.is_floating_point() or t.dim() == 0 or len(t) < 2:
        return t
    noise = torch.randn(t[0].shape, generator=gen, device=t.device, dtype=torch.float32)
    out = t.clone()
    out[0] += (noise * (float(t.float().abs().mean()) + 1.0)).to(t.dtype)
    return out


def _leaves(out: object, batch: int) -> list[torch.Tensor]:
    """The batch-first tensors of a model's output (a tensor, or a tuple/list/dict of them)."""
    if isinstance(out, torch.Tensor):
        return [out.float()] if out.dim() > 0 and len(out) == batch else []
    if isinstance(out, dict):
        out = list(out.values())
    if isinstance(out, (tuple, list)):
        return [t for item in out for t in _leaves(item, batch)]
    return []


def _scale(t: torch.Tensor) -> float:
    finite = t[torch.isfinite(t)]
    return float(finite.abs().max()) if finite.numel() else 1.0
