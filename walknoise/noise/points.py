"""Injection points: discover where noise can go, describe them, and select some.

A point is named by its ``named_modules()`` qualified name, plus two special names:
``<input>`` (the model's input tensor) and ``<global>`` (every chosen point at once). A module
called several times in one forward pass gives one point per call (``act``, ``act#2``, …; see
:mod:`walknoise.noise.sites`). Points are listed in the order the forward pass reaches them,
found with one dummy forward; modules that cannot take noise are listed with the reason.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import nn

from walknoise.errors import WalknoiseError
from walknoise.noise.sites import GLOBAL, INPUT, point_name, split_point, tensor_of

__all__ = ["GLOBAL", "INPUT", "Point", "Skipped", "Survey", "discover", "select", "survey"]

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
    """Qualified ``named_modules()`` name (``act#2`` for a module's second call), or
    ``<input>``."""
    type: str
    """Module class name (``Input`` for the input)."""
    shape: tuple[int, ...]
    """Output shape of one sample (no batch dimension)."""
    params: int
    """Number of parameters the module owns (including its children)."""
    default: bool
    """Whether a scan includes it when no ``layers``/``types`` are given."""
    tuple_output: bool = False
    """The module returns a tuple; the noise goes on its first element (``shape``)."""


@dataclass(frozen=True)
class Skipped:
    """A module that cannot take noise, and why."""

    name: str
    type: str
    reason: str


@dataclass(frozen=True)
class Survey:
    """Every point of a model in forward order, and every module that is not one."""

    points: list[Point]
    skipped: list[Skipped]


def discover(
    model: nn.Module, input_shape: Sequence[int], device: torch.device | str = "cpu"
) -> list[Point]:
    """Every injectable point of ``model`` in forward order, from one dummy forward pass."""
    return survey(model, input_shape, device).points


BATCH = 2  # samples in the dummy forward pass; a point's output must lead with it


def survey(
    model: nn.Module, input_shape: Sequence[int], device: torch.device | str = "cpu"
) -> Survey:
    """Points in forward order (one per call of a module) and the modules that cannot take
    noise, with the reason, from one dummy forward pass."""
    modules = dict(model.named_modules())
    calls: dict[str, int] = {}
    seen: dict[str, tuple[tuple[int, ...], bool]] = {}
    why: dict[str, str] = {}

    def record(name: str) -> Callable[[nn.Module, object, object], None]:
        def hook(_m: nn.Module, _i: object, out: object) -> None:
            calls[name] = calls.get(name, 0) + 1
            point = point_name(name, calls[name])
            tensor = tensor_of(out)
            if isinstance(tensor, str):
                why[point] = tensor
            elif tensor.dim() == 0 or tensor.shape[0] != BATCH:
                why[point] = (
                    f"returns shape {tuple(tensor.shape)} for a batch of {BATCH}: its first "
                    "dimension is not the batch (e.g. an RNN without batch_first=True)"
                )
            else:
                seen[point] = (tuple(tensor.shape[1:]), not isinstance(out, torch.Tensor))

        return hook

    handles = [mod.register_forward_hook(record(n)) for n, mod in modules.items() if n]
    try:
        _dummy_forward(model, input_shape, device)
    finally:
        for h in handles:
            h.remove()
    points = [Point(INPUT, "Input", tuple(input_shape), 0, True)]
    for point, (shape, in_tuple) in seen.items():
        mod = modules[split_point(point)[0]]
        leaf = not any(True for _ in mod.children())
        points.append(
            Point(
                name=point,
                type=type(mod).__name__,
                shape=shape,
                params=sum(p.numel() for p in mod.parameters()),
                default=leaf and isinstance(mod, DEFAULT_TYPES),
                tuple_output=in_tuple,
            )
        )
    why |= {n: "is never called in the forward pass" for n in modules if n and n not in calls}
    skipped = [Skipped(n, type(modules[split_point(n)[0]]).__name__, r) for n, r in why.items()]
    return Survey(points, skipped)


def _dummy_forward(
    model: nn.Module, input_shape: Sequence[int], device: torch.device | str
) -> None:
    dtype = next((p.dtype for p in model.parameters() if p.is_floating_point()), torch.float32)
    x = torch.zeros((BATCH, *input_shape), device=device, dtype=dtype)
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
        model.train(was_training)


def select(
    points: Sequence[Point],
    layers: Sequence[str] | None = None,
    types: Sequence[str] | None = None,
    skipped: Sequence[Skipped] = (),
) -> list[Point]:
    """Choose points by name or glob (``layers``) and/or by module class name (``types``).

    With neither, the default points are chosen. The result keeps forward order. A pattern
    that matches no point but a module in ``skipped`` is refused with that module's reason.
    """
    if not layers and not types:
        return [p for p in points if p.default]
    chosen = list(points) if layers is None else _match_names(points, layers, skipped)
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


def _match_names(
    points: Sequence[Point], patterns: Sequence[str], skipped: Sequence[Skipped]
) -> list[Point]:
    names = [p.name for p in points]
    keep: set[str] = set()
    for pat in patterns:
        hits = fnmatch.filter(names, pat)
        unfit = [s for s in skipped if fnmatch.fnmatchcase(s.name, pat)]
        if not hits and unfit:
            raise WalknoiseError(
                f"layer pattern {pat!r} matches no injection point: "
                + "; ".join(f"{s.name} ({s.type}) {s.reason}" for s in unfit[:3]),
                argument="layers",
            )
        if not hits:
            raise WalknoiseError(
                f"layer pattern {pat!r} matches no injection point (e.g. "
                f"{', '.join(names[:4])}); walknoise.noise.discover(model, input_shape) "
                "lists them all",
                argument="layers",
            )
        keep.update(hits)
    return [p for p in points if p.name in keep]
