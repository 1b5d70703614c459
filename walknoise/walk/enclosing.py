"""Fan σ copies out at the input of the module that encloses a point, when the point itself
is not a cut of the graph.

Inside a residual block the copies cannot fan out at the point: the skip connection meets a
tensor of the wrong batch size. Replicating the network's input instead runs everything
before the block once per σ. The block's own input is a cut (the skip starts there), so
replicating *that* input keeps the layers before the block at one run per sample: on a
ResNet only the block, not the whole prefix, runs per copy.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import nn

from walknoise.noise.sites import INPUT, split_point


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
        rep = x.unsqueeze(0).expand(copies, *x.shape).reshape(copies * len(x), *x.shape[1:])
        return (rep, *args[1:])

    handle = module.register_forward_pre_hook(pre_hook)
    try:
        yield
    finally:
        handle.remove()
