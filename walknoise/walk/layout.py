"""The copy of the model the noisy passes run: faster kernels and the faster memory layout.

On the CPU the copy runs 2×2 max poolings as the max of strided slices (bit-identical, 4–26×
ATen's pooling) and small convolutions over chunks of the batch where that measures faster
(``walknoise.walk.kernels``); its layout, NCHW or channels-last, is the one whose whole
forward pass runs faster on a batch the size of the runner's passes, timed on the spot
(on LeNet-5 conv2 ran ~110 GFLOP/s in NCHW but 50–80 in channels-last and NCHW is chosen;
a CIFAR ResNet-20 pass of 128 took 108 ms in channels-last, 155 in NCHW). The choice costs
~0.1 s on LeNet-5 and ~1.1 s on ResNet-20 (a few passes of each candidate). Every kernel
is checked against the plain module on the probe, and the copy against the plain model;
changes only reorder floating-point sums, so accuracies agree with the plain model up to
argmax ties. Anything that fails keeps the plain model.
"""

from __future__ import annotations

import copy
from collections.abc import Callable

import torch
from torch import nn

from walknoise.walk.budget import element_budget
from walknoise.walk.kernels import (
    best_chunk,
    best_times,
    fits_conv,
    fits_pool,
    max_of_slices,
    use_chunks,
    use_pool_kernel,
)

MAX_TIMED_BATCH = 4096


def fast_layout(
    model: nn.Module, x: torch.Tensor, dtype: torch.dtype | None = None, most: int = MAX_TIMED_BATCH
) -> nn.Module:
    """The fastest verified copy of ``model`` for batches like ``x``, else ``model`` itself;
    timed under autocast to ``dtype`` when the noisy passes run in it (bfloat16 convolutions
    gain far more from channels-last than float32 ones), verified in the model's own.
    ``most``: the most samples a noisy pass will hold (no need to time a larger one)."""
    convs = any(isinstance(m, nn.Conv2d) for m in model.modules())
    kernels = any(fits_pool(m) or fits_conv(m) for m in model.modules())
    # a model in training mode would update its BatchNorm statistics on the probes below
    if x.device.type != "cpu" or x.dim() != 4 or not (convs or kernels) or model.training:
        return model
    probe = x[:2]
    try:
        with torch.inference_mode():
            return _fastest(model, probe, dtype, min(most, MAX_TIMED_BATCH))
    except Exception:  # any failure only means the plain model is used
        return model


def _fastest(
    model: nn.Module, probe: torch.Tensor, dtype: torch.dtype | None, most: int
) -> nn.Module:
    """The plain model (or its copy with faster kernels) or the channels-last copy, whichever
    runs a pass of the runner's size faster."""
    ref = model(probe)
    batch = _timed_batch(model, probe, most)
    chunks: dict[str, int | None] = {}  # calibrated once, on the NCHW copy
    nchw = _candidate(model, False, probe, batch, chunks, ref)
    nets = [model if nchw is None else nchw]
    if any(isinstance(m, nn.Conv2d) for m in model.modules()):
        cl = _candidate(model, True, probe, batch, chunks, ref)
        nets += [] if cl is None else [cl]
    if len(nets) == 1:
        return nets[0]
    with torch.autocast(probe.device.type, dtype=dtype, enabled=dtype is not None):
        times = best_times(nets, probe[torch.arange(batch) % len(probe)])
    return nets[min(range(len(nets)), key=times.__getitem__)]


def _candidate(
    model: nn.Module,
    channels_last: bool,
    probe: torch.Tensor,
    batch: int,
    chunks: dict[str, int | None],
    ref: torch.Tensor,
) -> nn.Module | None:
    """A copy with faster kernels in the layout, if it runs and agrees with the plain model
    on the probe (``model`` itself for NCHW when no kernel fits), else ``None``."""
    try:
        with torch.inference_mode(False):  # parameters made in inference mode refuse autograd
            net = copy.deepcopy(model)
            if channels_last:
                net = net.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
        if not _with_kernels(net, probe, batch, chunks) and not channels_last:
            return model
        return net if _agrees(net(probe), ref) else None
    # A copy that fails (one that cannot be made, or a forward that assumes NCHW strides,
    # e.g. ``x.view(n, -1)``) is only left out.
    except Exception:
        return None


def _agrees(out: object, ref: object) -> bool:
    """The copy's output equals the plain model's to the tolerance of reordered float sums."""
    if not isinstance(out, torch.Tensor) or not isinstance(ref, torch.Tensor):
        return False
    return out.shape == ref.shape and torch.allclose(out, ref, rtol=1e-4, atol=1e-5)


def _timed_batch(model: nn.Module, probe: torch.Tensor, most: int) -> int:
    """Samples per pass whose widest activation fills the runner's element budget (at most
    ``most``)."""
    widest = probe[0].numel()

    def see(_m: nn.Module, _i: object, out: object) -> None:
        nonlocal widest
        if isinstance(out, torch.Tensor) and out.dim() > 0:
            widest = max(widest, out.numel() // max(1, len(probe)))

    leaves = [m for m in model.modules() if not any(True for _ in m.children())]
    handles = [m.register_forward_hook(see) for m in leaves]
    try:
        model(probe)
    finally:
        for h in handles:
            h.remove()
    return max(len(probe), min(most, element_budget(probe.device) // widest))


def _with_kernels(
    net: nn.Module, probe: torch.Tensor, batch: int, chunks: dict[str, int | None]
) -> int:
    """Swap ``net``'s fitting modules to faster kernels; how many were swapped.

    A pool is swapped when the slices equal it exactly on every input it saw on the probe; a
    small convolution when chunks of the batch measured faster (on its probe input scaled up
    to ``batch`` samples; ``chunks`` keeps each name's outcome) and agree with it."""
    inputs = _inputs(net, probe, lambda m: fits_pool(m) or fits_conv(m))
    names = {m: name for name, m in net.named_modules()}
    swapped = 0
    for m, seen in inputs.items():
        if fits_pool(m) and all(_pool_exact(m, t) for t in seen):
            use_pool_kernel(m)
            swapped += 1
        elif isinstance(m, nn.Conv2d) and len(seen) == 1 and seen[0].dim() == 4:
            x = seen[0][torch.arange(batch) % len(seen[0])]
            name = names[m]
            if name not in chunks:
                chunks[name] = best_chunk(m, x)
            swapped += _chunked_if_agrees(m, x, chunks[name])
    return swapped


def _pool_exact(m: nn.Module, t: torch.Tensor) -> bool:
    return t.dim() in (3, 4) and torch.equal(max_of_slices(t), type(m).forward(m, t))


def _chunked_if_agrees(m: nn.Conv2d, x: torch.Tensor, chunk: int | None) -> int:
    """Run ``m`` over chunks of ``chunk`` samples if that agrees with it on ``x``."""
    if chunk is None:
        return 0
    ref = m(x)
    use_chunks(m, chunk)
    # Chunks may make oneDNN pick another blocking and sum the Cin·kh·kw ≤ 64 products in
    # another order: float32 error ≤ 64·2⁻²⁴·Σ|w·x| ≈ 4e-6 of the terms' size; 1e-5 of the
    # largest output leaves room for that, and no more.
    if torch.allclose(m(x), ref, rtol=1e-5, atol=1e-5 * float(ref.abs().max())):
        return 1
    del m.forward
    return 0


def _inputs(
    net: nn.Module, probe: torch.Tensor, wanted: Callable[[nn.Module], bool]
) -> dict[nn.Module, list[torch.Tensor]]:
    """The first input of every call of the ``wanted`` modules on the probe."""
    seen: dict[nn.Module, list[torch.Tensor]] = {}

    def record(m: nn.Module, args: tuple[object, ...]) -> None:
        first = args[0] if args and isinstance(args[0], torch.Tensor) else torch.zeros(())
        seen.setdefault(m, []).append(first)  # a 0-d stand-in: no kernel fits that call

    handles = [m.register_forward_pre_hook(record) for m in net.modules() if wanted(m)]
    try:
        net(probe)
    finally:
        for h in handles:
            h.remove()
    return seen
