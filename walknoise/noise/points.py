"""Injection points: discover where noise can go, describe them, and select some.

A point is named by its ``named_modules()`` qualified name, plus two special names:
``<input>`` (the model's input tensor) and ``<global>`` (every chosen point at once).
Points are listed in the order the forward pass reaches them, found with one dummy forward.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn

from walknoise.errors import WalknoiseError

INPUT = "<input>"
GLOBAL = "<global>"

# The modules Walking Noise puts a noise operator after.
DEFAULT_TYPES: tuple[type[nn.Module], ...] = (
    nn.Linear,
    nn.Bilinear,
    nn.modules.conv._ConvNd,
    nn.modules.batchnorm._NormBase,
    nn.LayerNorm,
    nn.GroupNorm,
    nn.ReLU,
    nn.ReLU6,
    nn.LeakyReLU,
    nn.PReLU,
    nn.ELU,
    nn.SELU,
    nn.GELU,
    nn.SiLU,
    nn.Mish,
    nn.Tanh,
    nn.Sigmoid,
    nn.Hardtanh,
    nn.Softplus,
    nn.modules.pooling._MaxPoolNd,
    nn.modules.pooling._AvgPoolNd,
    nn.modules.pooling._AdaptiveAvgPoolNd,
    nn.modules.pooling._AdaptiveMaxPoolNd,
)


@dataclass(frozen=True)
class Point:
    """One place noise can be injected."""

    name: str
    """Qualified ``named_modules()`` name, or ``<input>``."""
    type: str
    """Module class name (``Input`` for the input)."""
    shape: tuple[int, ...]
    """Output shape of one sample (no batch dimension)."""
    params: int
    """Number of parameters the module owns (including its children)."""
    default: bool
    """Whether a scan includes it when no ``layers``/``types`` are given."""


def discover(
    model: nn.Module, input_shape: Sequence[int], device: torch.device | str = "cpu"
) -> list[Point]:
    """Every injectable point of ``model`` in forward order, from one dummy forward pass."""
    modules = dict(model.named_modules())
    seen: dict[str, tuple[int, ...]] = {}
    handles = []

    def record(name: str):  # type: ignore[no-untyped-def]
        def hook(_m: nn.Module, _i: object, out: object) -> None:
            if isinstance(out, torch.Tensor) and name not in seen:
                seen[name] = tuple(out.shape[1:])

        return hook

    for name, mod in modules.items():
        if name:
            handles.append(mod.register_forward_hook(record(name)))
    dtype = next((p.dtype for p in model.parameters() if p.is_floating_point()), torch.float32)
    x = torch.zeros((2, *input_shape), device=device, dtype=dtype)
    was_training = model.training
    try:
        model.eval()
        with torch.inference_mode():
            model(x)
    except RuntimeError as err:
        raise WalknoiseError(
            f"the model does not accept inputs of shape {tuple(input_shape)} "
            f"({str(err).splitlines()[0]}); pass data whose samples have the shape it expects"
        ) from None
    finally:
        for h in handles:
            h.remove()
        model.train(was_training)
    points = [Point(INPUT, "Input", tuple(input_shape), 0, True)]
    for name, shape in seen.items():
        mod = modules[name]
        leaf = not any(True for _ in mod.children())
        points.append(
            Point(
                name=name,
                type=type(mod).__name__,
                shape=shape,
                params=sum(p.numel() for p in mod.parameters()),
                default=leaf and isinstance(mod, DEFAULT_TYPES),
            )
        )
    return points


def select(
    points: Sequence[Point],
    layers: Sequence[str] | None = None,
    types: Sequence[str] | None = None,
) -> list[Point]:
    """Choose points by name or glob (``layers``) and/or by module class name (``types``).

    With neither, the default points are chosen. The result keeps forward order.
    """
    if not layers and not types:
        return [p for p in points if p.default]
    chosen = list(points) if layers is None else _match_names(points, layers)
    if types:
        wanted = {t.lower() for t in types}
        known = {p.type.lower() for p in points}
        unknown = sorted(wanted - known)
        if unknown:
            raise WalknoiseError(
                f"no point has type {', '.join(unknown)}; types in this model: "
                f"{', '.join(sorted({p.type for p in points}))}",
                argument="types",
            )
        chosen = [p for p in chosen if p.type.lower() in wanted]
        if layers is None:
            chosen = [p for p in chosen if p.default or p.type.lower() in wanted]
    if not chosen:
        raise WalknoiseError(
            "the layers/types filters leave no point to scan; list the names with "
            "walknoise.noise.discover(model, input_shape)",
            argument="layers",
        )
    return chosen


def _match_names(points: Sequence[Point], patterns: Sequence[str]) -> list[Point]:
    names = [p.name for p in points]
    keep: set[str] = set()
    for pat in patterns:
        hits = fnmatch.filter(names, pat)
        if not hits:
            raise WalknoiseError(
                f"layer pattern {pat!r} matches no injection point (e.g. "
                f"{', '.join(names[:4])}); walknoise.noise.discover(model, input_shape) "
                "lists them all",
                argument="layers",
            )
        keep.update(hits)
    return [p for p in points if p.name in keep]
