"""Where a point lives: a module, which of its calls in a forward pass, which tensor it returns.

A module called k times in one forward pass (a ReLU object reused, as in torchvision's
``BasicBlock``) gives k points: ``act`` is its first call, ``act#2`` its second, and so on.
A bare name is one call, like every other point name, so a name on the layer axis always
means one tensor; ``act,act#*`` takes every call. A module that returns a tuple (``nn.GRU``,
``nn.LSTM``, ``nn.MultiheadAttention``) takes the noise on the tuple's first element, the
sequence output; the rest (hidden states, attention weights) pass through unchanged.

:func:`tap` is the one way walknoise reaches a point's tensor: the noise hooks, the clean
pass and the train-phase ensembles all go through it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import nn
from torch.utils.hooks import RemovableHandle

from walknoise.errors import WalknoiseError

INPUT = "<input>"
GLOBAL = "<global>"
CALL = "#"

Transform = Callable[[torch.Tensor], "torch.Tensor | None"]
"""What a tap does with a point's tensor: a replacement, or ``None`` to leave it."""


def point_name(module: str, call: int) -> str:
    """``act`` for the first call, ``act#2`` for the second, …"""
    return module if call == 1 else f"{module}{CALL}{call}"


def split_point(name: str) -> tuple[str, int]:
    """``act#2`` -> ``("act", 2)``; ``act`` -> ``("act", 1)``."""
    module, sep, call = name.rpartition(CALL)
    if sep and call.isdigit() and int(call) >= 2:
        return module, int(call)
    return name, 1


def tensor_of(out: object) -> torch.Tensor | str:
    """The tensor of a module's output that takes noise, or why there is none."""
    if isinstance(out, torch.Tensor):
        return out
    if isinstance(out, tuple | list) and out and isinstance(out[0], torch.Tensor):
        return out[0]
    if out is None:
        return "returns None"
    if isinstance(out, tuple | list):
        first = type(out[0]).__name__ if out else "nothing"
        return f"returns a {type(out).__name__} whose first element is {first}, not a tensor"
    return f"returns a {type(out).__name__}, not a tensor"


def with_tensor(out: object, new: torch.Tensor) -> object:
    """``out`` with the tensor :func:`tensor_of` found replaced by ``new``."""
    if isinstance(out, torch.Tensor):
        return new
    assert isinstance(out, tuple | list)
    items = [new, *out[1:]]
    if isinstance(out, list):
        return items
    return type(out)(*items) if hasattr(out, "_fields") else tuple(items)  # namedtuple


class _CallTap:
    """Forward hook on a module: ``fn`` on the tensor of its ``call``-th call per pass."""

    def __init__(self, point: str, fn: Transform, call: int) -> None:
        self.point, self.fn, self.call, self.seen = point, fn, call, 0

    def restart(self, _m: nn.Module, _args: object) -> None:
        self.seen = 0  # the root's pre-hook: a new forward pass starts

    def __call__(self, _m: nn.Module, _inputs: object, out: object) -> object:
        self.seen += 1
        if self.seen != self.call:
            return None
        tensor = tensor_of(out)
        if isinstance(tensor, str):
            raise WalknoiseError(f"noise cannot go at {self.point}: {self.point} {tensor}")
        new = self.fn(tensor)
        return None if new is None else with_tensor(out, new)


def _input_tap(fn: Transform) -> Callable[[nn.Module, tuple[Any, ...]], Any]:
    def pre_hook(_m: nn.Module, args: tuple[Any, ...]) -> tuple[Any, ...] | None:
        if not args or not isinstance(args[0], torch.Tensor):
            raise WalknoiseError("noise at <input> needs the model's first argument to be a tensor")
        new = fn(args[0])
        return None if new is None else (new, *args[1:])

    return pre_hook


def tap(model: nn.Module, point: str, fn: Transform) -> list[RemovableHandle]:
    """Hook ``fn`` onto ``point`` of ``model``; remove the returned handles to undo it."""
    if point == INPUT:
        return [model.register_forward_pre_hook(_input_tap(fn))]
    module, call = split_point(point)
    modules = dict(model.named_modules())
    if module == "" or module not in modules:
        names = [n for n in modules if n][:6]
        raise WalknoiseError(
            f"the model has no layer named {point!r}; use a named_modules() name such as "
            f"{', '.join(names)} (or <input>, or name#2 for a module's second call)"
        )
    hook = _CallTap(point, fn, call)
    return [
        model.register_forward_pre_hook(hook.restart),
        modules[module].register_forward_hook(hook),
    ]
