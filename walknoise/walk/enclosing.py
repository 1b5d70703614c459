"""Fan σ copies out inside the module that encloses a point, when the point itself is not a
cut of the graph.

Inside a residual block the copies cannot fan out at the point: the skip connection meets a
tensor of the wrong batch size. Replicating the network's input instead runs everything
before the block once per σ. Two ways do better, tried in this order:

* the block runs as a traced graph that replicates a value only where it meets the copies
  (``walknoise.walk.blockfan``): only what depends on the point runs once per σ;
* the block's own input is replicated (the skip starts there, so it is a cut): the layers
  before the block run once per sample, the block's own layers once per σ.

Each is checked once, on a few samples, against replicating the network's input with the
same ε, before it is used.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass

import torch
from torch import nn

from walknoise.noise.inject import Fanout
from walknoise.noise.sites import INPUT, split_point
from walknoise.walk.blockfan import BlockGraph, lazily, trace_block

FAN_PROBE = 3  # at least two, so that a skip of the wrong batch cannot broadcast silently
WAYS = ("traced", "block input")
"""The ways ``find_fan`` tries, in order (benchmarks and tests narrow them to compare)."""


def enclosing(point: str) -> list[str]:
    """The modules around ``point``, innermost first (``s2b0.conv1`` -> ``["s2b0"]``); the
    root is left out (replicating its input is the runner's last resort anyway)."""
    if point == INPUT:
        return []
    parts = split_point(point)[0].split(".")
    return [".".join(parts[:i]) for i in range(len(parts) - 1, 0, -1)]


@contextmanager
def replicating(module: nn.Module, copies: int) -> Iterator[None]:
    """While the block runs, ``module``'s first input is replicated ``copies`` times."""

    def pre_hook(_m: nn.Module, args: tuple[object, ...]) -> tuple[object, ...] | None:
        x = args[0] if args else None
        if not isinstance(x, torch.Tensor) or x.dim() == 0:
            return None
        return (replicated(x, copies), *args[1:])

    handle = module.register_forward_pre_hook(pre_hook)
    try:
        yield
    finally:
        handle.remove()


@dataclass(frozen=True)
class FanAt:
    """Where the copies of one point fan out: inside module ``name`` through its traced
    ``graph``, or (``graph`` None) at that module's input."""

    name: str
    graph: BlockGraph | None = None

    def installed(self, model: nn.Module, fo: Fanout) -> AbstractContextManager[None]:
        block = model.get_submodule(self.name)
        if self.graph is None:
            return replicating(block, fo.copies)
        return lazily(block, self.graph, fo.copies, fo.batch)


@contextmanager
def probing(fo: Fanout, samples: int) -> Iterator[None]:
    """Passes over the first ``samples`` of the pass's batch, with its ε; afterwards the
    pass replays the same ε in the same order."""
    offset, batch = fo.offset, fo.batch
    fo.window(0, samples)
    try:
        yield
    finally:
        fo.window(offset, batch)


def replicated(x: torch.Tensor, copies: int) -> torch.Tensor:
    """``copies`` of ``x``, copy-major (the order the noise hooks stack σ in)."""
    return x.unsqueeze(0).expand(copies, *x.shape).reshape(copies * len(x), *x.shape[1:])


def find_fan(model: nn.Module, point: str, xb: torch.Tensor, fo: Fanout) -> FanAt | None:
    """The best way to fan out ``point``'s copies whose logits on the first samples of
    ``xb`` are those of the replicated input (``None``: replicate the input)."""
    x = xb[:FAN_PROBE]
    with probing(fo, len(x)), torch.autocast(xb.device.type, enabled=False):
        reference = model(replicated(x, fo.copies))
        for at in _candidates(model, point):
            fo.replay()  # every candidate sees the ε the reference saw
            try:
                with at.installed(model, fo):
                    out = model(x)
            except Exception:  # a probe: whatever fails rules the candidate out
                continue
            if agrees(out, reference):
                return at
    return None


def _candidates(model: nn.Module, point: str) -> Iterator[FanAt]:
    """Traced blocks, innermost first (the root last), then replicated block inputs."""
    names = enclosing(point)
    module = split_point(point)[0]
    for name in [*names, ""] if point != INPUT and "traced" in WAYS else ():
        rel = module[len(name) + 1 :] if name else module
        try:
            graph = trace_block(model.get_submodule(name), rel)
        except Exception:  # fx raises many kinds: any means "not traceable"
            continue
        yield FanAt(name, graph)
    yield from (FanAt(name) for name in names if "block input" in WAYS)


def agrees(out: object, reference: torch.Tensor) -> bool:
    """Whether two computations of the same logits agree to rounding.

    They differ only in batch layout (the prefix on ``B`` rows or on ``S·B``), so kernels may
    sum in another order: a few ulp per layer, grown by the depth to ~1e-6 relative in
    float32. A wrong broadcast (one sample's skip added to another's copy) moves logits by
    their own size. 1e-4 of the largest logit sits between the two with a 100x margin each
    way; half-precision models get 3e-2 (eps 1e-3 to 8e-3, a few roundings).
    """
    if not isinstance(out, torch.Tensor) or out.shape != reference.shape:
        return False
    finite = torch.isfinite(reference)
    if not torch.equal(finite, torch.isfinite(out)):
        return False
    a, b = out[finite].double(), reference[finite].double()
    if a.numel() == 0:
        return True
    tol = 1e-4 if reference.dtype in (torch.float32, torch.float64) else 3e-2
    scale = max(float(b.abs().max()), 1e-30)
    return float((a - b).abs().max()) <= tol * scale
