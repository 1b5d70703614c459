"""Faster CPU kernels for the modules of the noisy passes' copy of the model.

Measured on this project's 2-core AMD EPYC machine (torch 2.13, one thread, best of 21):

* ``nn.MaxPool2d(2)`` runs ATen's own kernel at 0.1–0.23 G elements/s on a 6×24×24 map in
  NCHW, 0.2–0.4 in channels-last; on 16×8×8, 0.12–0.22 and 2.4. The max of strided slices,
  pairs along W then along H, reached 2.6–3.0 G elements/s in NCHW and 3.1–3.6 (6×24×24) or
  10.6–11.8 (16×8×8) in channels-last: 4–26× faster. It is the same maximum of the same four
  numbers, so bit-identical (NaN propagates in both).
* oneDNN's convolution with one input channel (LeNet-5's conv1) ran at ~34 GFLOP/s on 606
  samples but ~7 on 1,024–2,048; the same convolution over chunks of 64–256 samples ran at
  31–35 on all three. im2col + GEMM (``F.unfold`` + matmul, 2.4–7.9 GFLOP/s) and a sum of 25
  shifted multiply-adds (5–9) were slower than both, so chunking is the only variant kept,
  and only where a calibration on the model's own shapes measures it faster (for LeNet-5 at
  the runner's ~606-sample passes it does not: conv1 keeps its own kernel).

The kernels replace the module's ``forward`` on the copy's instance rather than the module:
the module keeps its class, name and hooks, and ``torch.fx`` still sees a leaf ``call_module``
node (``walknoise.noise.linear`` traces the copy to find linear successors; a subclass defined
here would be traced through).
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable, Sequence

import torch
from torch import nn
from torch.nn.modules.utils import _pair

SMALL_CONV = 64
"""Convolutions with at most this many inputs per output (Cin·kh·kw) are calibrated."""
CHUNK_ELEMENTS = 2**19
"""Output elements per chunk tried for a small convolution (2 MB: this machine's L2; chunks
of 64–256 LeNet-5 samples, 0.9–3.5 MB, all ran at ~20 GFLOP/s)."""
MIN_GAIN = 1.2
"""A chunked convolution is kept only when measured this much faster (timings are noisy)."""


def fits_pool(m: nn.Module) -> bool:
    """A max pooling whose windows are exactly the 2×2 blocks of its input."""
    return (
        type(m) is nn.MaxPool2d
        and _pair(m.kernel_size) == (2, 2)
        and _pair(m.stride) == (2, 2)
        and _pair(m.padding) == (0, 0)
        and _pair(m.dilation) == (1, 1)
        and not m.ceil_mode
        and not m.return_indices
    )


def max_of_slices(x: torch.Tensor) -> torch.Tensor:
    """2×2 max pooling with stride 2, as ``MaxPool2d(2)`` (an odd last row/column dropped)."""
    h, w = x.shape[-2] // 2 * 2, x.shape[-1] // 2 * 2
    pairs = torch.maximum(x[..., :h, 0:w:2], x[..., :h, 1:w:2])
    return torch.maximum(pairs[..., 0::2, :], pairs[..., 1::2, :])


def _pool_forward(_m: nn.Module, x: torch.Tensor) -> torch.Tensor:
    return max_of_slices(x)


def fits_conv(m: nn.Module) -> bool:
    """A plain 2-d convolution with few inputs per output, where oneDNN is slow."""
    return type(m) is nn.Conv2d and m.weight[0].numel() <= SMALL_CONV and m.padding_mode == "zeros"


def _chunked_forward(chunk: int, m: nn.Conv2d, x: torch.Tensor) -> torch.Tensor:
    """``m(x)`` over chunks of ``chunk`` samples."""
    if x.dim() != 4 or len(x) <= chunk:
        out: torch.Tensor = m._conv_forward(x, m.weight, m.bias)
        return out
    parts = [m._conv_forward(x[s : s + chunk], m.weight, m.bias) for s in range(0, len(x), chunk)]
    return torch.cat(parts)


def use_pool_kernel(m: nn.Module) -> None:
    """Run ``m`` (a ``fits_pool`` module) as ``max_of_slices``."""
    m.forward = functools.partial(_pool_forward, m)


def use_chunks(m: nn.Conv2d, chunk: int) -> None:
    """Run ``m`` over chunks of ``chunk`` samples."""
    m.forward = functools.partial(_chunked_forward, chunk, m)  # type: ignore[method-assign]


def kernel_of(m: nn.Module) -> str:
    """Which kernel ``m`` runs: ``"slices"``, ``"chunks of N"`` or ``"own"``."""
    fwd = m.__dict__.get("forward")
    if isinstance(fwd, functools.partial) and fwd.func is _pool_forward:
        return "slices"
    if isinstance(fwd, functools.partial) and fwd.func is _chunked_forward:
        return f"chunks of {fwd.args[0]}"
    return "own"


def best_chunk(m: nn.Conv2d, x: torch.Tensor) -> int | None:
    """Samples per chunk if chunks run ``m`` on ``x`` at least ``MIN_GAIN`` times faster than
    its own kernel, else ``None``."""
    chunk = CHUNK_ELEMENTS // m(x[:1]).numel()
    if not 1 <= chunk < len(x):
        return None
    own = functools.partial(m._conv_forward, weight=m.weight, bias=m.bias)
    plain, chunked = best_times([own, functools.partial(_chunked_forward, chunk, m)], x)
    return chunk if chunked * MIN_GAIN <= plain else None


def best_times(
    fns: Sequence[Callable[[torch.Tensor], object]], x: torch.Tensor, reps: int = 3
) -> list[float]:
    """Each function's best time on ``x`` over ``reps`` rounds, taken in turns after a warm-up
    (the best, since other processes on a shared machine only ever add time)."""
    best = [float("inf")] * len(fns)
    with torch.inference_mode():
        for f in fns:
            f(x)
        for _ in range(reps):
            for i, f in enumerate(fns):
                start = time.perf_counter()
                f(x)
                best[i] = min(best[i], time.perf_counter() - start)
    return best
