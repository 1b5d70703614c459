"""Multiply-adds of a walk: counted while code runs, and the analytic minimum and naive counts.

``count_macs`` counts at the ATen level (``FlopCounterMode``: convolutions and matrix
products, whatever module or kernel trick issued them; flops / 2 = multiply-adds; bias
additions, pooling, activations and the noise itself are not counted).

The analytic counts cover the conv/linear modules of the model. For one point, a module is
*downstream* when its input depends on the noisy tensor:

* minimum: every module that is not downstream runs once per sample (the clean prefix,
  and clean side branches such as a residual shortcut around the point); every downstream
  module once per (σ, repeat, sample);
* naive: the whole model once per (σ, repeat, sample).

Downstream sets come from the ``torch.fx`` graph when the model traces; otherwise from the
forward order (every module called after the point), which overcounts for side branches.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import fx, nn
from torch.fx.passes.shape_prop import ShapeProp
from torch.utils.flop_counter import FlopCounterMode

INPUT = "<input>"


def count_macs(fn: Callable[[], Any]) -> int:
    """Multiply-adds of the convolutions and matrix products ``fn`` runs."""
    with FlopCounterMode(display=False) as counter:
        fn()
    return int(counter.get_total_flops()) // 2


def module_macs(mod: nn.Module, out_shape: Sequence[int]) -> int:
    """Multiply-adds of one call of a conv or linear module, per sample of ``out_shape``
    (batch first)."""
    outputs = math.prod(out_shape[1:])
    if isinstance(mod, nn.modules.conv._ConvNd):
        return outputs * mod.in_channels // mod.groups * math.prod(mod.kernel_size)
    if isinstance(mod, nn.Linear):
        return outputs * mod.in_features
    return 0


def _probe(model: nn.Module, run: Callable[[torch.Tensor], Any], shape: Sequence[int]) -> None:
    """One forward of two zero samples (BatchNorm1d refuses one) in eval mode, so that
    BatchNorm statistics stay as they are."""
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            run(torch.zeros(2, *shape))
    finally:
        model.train(was_training)


def _calls(model: nn.Module, sample_shape: Sequence[int]) -> list[tuple[str, int]]:
    """(point name, multiply-adds for one sample) of every module call, in forward order."""
    calls: list[tuple[str, int]] = []
    seen: dict[str, int] = {}

    def hook(name: str) -> Callable[[nn.Module, object, Any], None]:
        def record(mod: nn.Module, _i: object, out: Any) -> None:
            seen[name] = seen.get(name, 0) + 1
            point = name if seen[name] == 1 else f"{name}#{seen[name]}"
            tensor = out if isinstance(out, torch.Tensor) else out[0]
            calls.append((point, module_macs(mod, tensor.shape)))

        return record

    mods = [(n, m) for n, m in model.named_modules() if n]
    handles = [m.register_forward_hook(hook(n)) for n, m in mods]
    try:
        _probe(model, lambda x: model(x), sample_shape)
    finally:
        for h in handles:
            h.remove()
    return calls


def _fx_macs(
    model: nn.Module, sample_shape: Sequence[int]
) -> tuple[dict[str, int], dict[str, set[str]]] | None:
    """Per point: its own multiply-adds (one sample) and the points downstream of it, from
    the traced graph; ``None`` when the model does not trace."""
    try:
        gm = fx.symbolic_trace(model)
        _probe(model, ShapeProp(gm).propagate, sample_shape)
    except Exception:  # any trace failure means the forward-order fallback
        return None
    mods = dict(gm.named_modules())
    names: dict[fx.Node, str] = {}
    macs: dict[str, int] = {}
    calls: dict[str, int] = {}
    for node in gm.graph.nodes:
        if node.op == "placeholder":
            names[node] = INPUT
        elif node.op == "call_module":
            calls[node.target] = calls.get(node.target, 0) + 1
            k = calls[node.target]
            name = node.target if k == 1 else f"{node.target}#{k}"
            names[node] = name
            meta = node.meta.get("tensor_meta")
            shape = getattr(meta, "shape", None)  # None for tuple outputs: no conv/linear
            macs[name] = module_macs(mods[node.target], shape) if shape is not None else 0
    down: dict[str, set[str]] = {}
    for node in reversed(gm.graph.nodes):  # users come later: fill them first
        below: set[str] = set()
        for user in node.users:
            below |= down.get(names.get(user, f"@{user.name}"), set())
            if user in names:
                below.add(names[user])
        down[names.get(node, f"@{node.name}")] = below
    return macs, down


def _split(model: nn.Module, sample_shape: Sequence[int], point: str) -> tuple[int, int]:
    """(multiply-adds not downstream of ``point``, multiply-adds downstream), one sample."""
    traced = _fx_macs(model, sample_shape)
    if traced is not None and (point == INPUT or point in traced[0]):
        macs, down = traced
        after = sum(macs[n] for n in down[point] if n in macs)
        return sum(macs.values()) - after, after
    calls = _calls(model, sample_shape)
    names = [n for n, _ in calls]
    cut = 0 if point == INPUT else names.index(point) + 1
    return sum(m for _, m in calls[:cut]), sum(m for _, m in calls[cut:])


def forward_macs(model: nn.Module, sample_shape: Sequence[int]) -> int:
    """Multiply-adds of one clean forward pass of one sample."""
    return sum(m for _, m in _calls(model, sample_shape))


def minimum_walk_macs(
    model: nn.Module,
    sample_shape: Sequence[int],
    points: Sequence[str],
    n_samples: int,
    n_sigma: int,
    repeats: int,
) -> int:
    """The fewest multiply-adds a walk can do without exploiting linearity: per point, the
    clean part once per sample, the part downstream of the noise once per cell and sample."""
    total = 0
    for point in points:
        clean, noisy = _split(model, sample_shape, point)
        total += n_samples * (clean + n_sigma * repeats * noisy)
    return total


def naive_walk_macs(
    model: nn.Module,
    sample_shape: Sequence[int],
    points: Sequence[str],
    n_samples: int,
    n_sigma: int,
    repeats: int,
) -> int:
    """Multiply-adds of the naive loop: a full forward pass per (point, σ, repeat, sample)."""
    return len(points) * n_sigma * repeats * n_samples * forward_macs(model, sample_shape)
