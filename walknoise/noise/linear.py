"""Noise before a linear layer, computed once for all σ: lin(y + σ·D) = lin(y) + σ·lin₀(D).

Every noise kind is affine in σ: the noisy activation is ``y + σ·D`` with ``D = ε`` (additive),
``y·ε`` (multiplicative) or a mix of the two (combined). When the point's tensor goes only into
one ``Linear`` or ``Conv`` (through flatten, reshape, view, dropout in eval mode, identity),
that layer's output for σ copy ``s`` is ``lin(y) + σ_s·lin₀(D)``, ``lin₀`` the layer without its
bias: the layer runs on two batches instead of one per σ, and the σ copies fan out after it.
Exact up to float rounding (a sum is formed in another order).

Which layer alone consumes a point is read from a ``torch.fx`` trace of the model; a model
fx cannot trace, or a point used anywhere else, keeps the plain path.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import torch
import torch.nn.functional as F
from torch import fx, nn

from walknoise.noise.inject import Fanout
from walknoise.noise.kinds import Noise
from walknoise.noise.sites import INPUT

LINEAR = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)
SAFE = math.sqrt(torch.finfo(torch.float32).max)
"""Above this σ·max|D| the plain path runs: no copy overflows differently than it would."""


def linear_successors(model: nn.Module) -> dict[str, str]:
    """Point name -> the one ``Linear``/``Conv`` module that alone consumes its tensor."""
    try:
        graph = fx.symbolic_trace(model).graph
    except Exception:  # any model fx cannot trace keeps the plain path
        return {}
    modules = dict(model.named_modules())
    out = {}
    for node in graph.nodes:
        name = _point_of(node, modules)
        if name is not None and (successor := _successor(node, modules)) is not None:
            out[name] = successor
    return out


def _point_of(node: fx.Node, modules: dict[str, nn.Module]) -> str | None:
    if node.op == "placeholder" and node.prev.op == "root":  # the first input
        return INPUT
    if node.op == "call_module" and list(_called(node)) == [node]:
        return str(node.target)
    return None


def _called(node: fx.Node) -> list[fx.Node]:
    """Every call of ``node``'s module in the graph (a module called twice has two points)."""
    return [n for n in node.graph.nodes if n.op == "call_module" and n.target == node.target]


def _successor(node: fx.Node, modules: dict[str, nn.Module]) -> str | None:
    """Follow single users through shape-only operations to a linear module."""
    while len(node.users) == 1:
        (user,) = node.users
        if not user.args or user.args[0] is not node:
            return None
        if user.op == "call_module":
            module = modules[str(user.target)]
            if isinstance(module, LINEAR):
                alone = _plain(module) and len(_called(user)) == 1
                return str(user.target) if alone else None
            if not _passes(module):
                return None
        elif not _shape_only(user):
            return None
        node = user
    return None


def _passes(module: nn.Module) -> bool:
    """A module that hands its input on unchanged in value (in eval mode)."""
    if isinstance(module, nn.Dropout | nn.Dropout1d | nn.Dropout2d):
        return not module.training
    return isinstance(module, nn.Flatten | nn.Identity)


def _shape_only(node: fx.Node) -> bool:
    if node.op == "call_method":
        return node.target in ("flatten", "view", "reshape", "contiguous")
    return node.op == "call_function" and node.target in (torch.flatten, torch.reshape)


def _plain(module: nn.Module) -> bool:
    """A linear map of its first input: no padding mode that is not zeros."""
    return getattr(module, "padding_mode", "zeros") == "zeros"


def without_bias(module: nn.Module) -> Callable[[torch.Tensor], torch.Tensor]:
    """``module``'s linear part (its bias left out)."""
    if isinstance(module, nn.Linear):
        return lambda d: F.linear(d, module.weight)
    assert isinstance(module, nn.Conv1d | nn.Conv2d | nn.Conv3d)
    return lambda d: module._conv_forward(d, module.weight, None)


class LinearHook:
    """A forward hook on the linear module after a point: its output for every σ copy of the
    batch (``fanout``), from the clean output and one pass over the noise's ``D``."""

    def __init__(
        self,
        module: nn.Module,
        fanout: Fanout,
        noise: Noise,
        gen: torch.Generator | None,
        scale: float,
    ) -> None:
        self.part = without_bias(module)
        self.fanout, self.noise, self.gen, self.scale = fanout, noise, gen, scale

    def __call__(
        self, module: nn.Module, inputs: tuple[torch.Tensor, ...], out: torch.Tensor
    ) -> torch.Tensor:
        x, fo = inputs[0], self.fanout
        # drawn in the module's input shape: the same numbers as in the point's shape (the
        # generator fills memory in order, whatever the shape; a test holds it to that)
        eps = fo.eps(id(self), self.gen, self.noise, x).to(x.dtype)
        d = self.noise.delta(x, eps)  # (groups, B, ...) with a generator per group
        # σ in float32 even under autocast: bfloat16 would round it (a 0.4% error shared by
        # every sample of the cell); ε may round like any autocast input of the layer
        sig = (fo.sigmas * self.scale).to(x.device, torch.promote_types(x.dtype, torch.float32))
        (groups, per), batch = fo.lead(), len(x)
        sig = sig.reshape(groups, per, *[1] * x.dim())
        if float(sig.abs().max()) * float(d.abs().max()) >= SAFE:  # as the plain path would
            noisy = self.noise.apply(x.reshape(1, 1, *x.shape), sig, fo.grouped(eps))
            flat = noisy.to(x.dtype).reshape(groups * per * batch, *x.shape[1:])
            stacked: torch.Tensor = module.forward(flat)
            return stacked
        # the layer on the noise term once per group, then every σ of the group from it
        lin = self.part(d.reshape(-1, *x.shape[1:]))
        lin = lin.reshape(groups, 1, batch, *out.shape[1:])
        res = torch.addcmul(out.reshape(1, 1, *out.shape), sig, lin)
        return res.reshape(groups * per * batch, *out.shape[1:]).to(out.dtype)


@contextmanager
def linear_hook(
    model: nn.Module,
    successor: str,
    fanout: Fanout,
    noise: Noise,
    gen: torch.Generator | None,
    scale: float,
) -> Iterator[None]:
    """Attach a :class:`LinearHook` at ``successor`` for the duration of the block."""
    module = model.get_submodule(successor)
    handle = module.register_forward_hook(LinearHook(module, fanout, noise, gen, scale))
    try:
        yield
    finally:
        handle.remove()
