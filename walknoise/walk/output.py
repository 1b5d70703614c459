"""The logits of a model whose forward returns more than a tensor: ``(logits, h)``, a dict, …

``output_key`` picks them: an index (``0``), a key or attribute name (``"logits"``), or a
callable taking the model's output and returning the logits. A forward hook on the root
module swaps the output for the selected tensor while a scan runs, so every pass (the clean
pass, the cells, the train phase) sees plain logits and no module changes its
``named_modules()`` name. The hook is a plain picklable object: it travels with the model to
worker processes and SLURM jobs (a lambda needs cloudpickle, which joblib and submitit use).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import torch
from torch import nn

from walknoise.errors import WalknoiseError

OutputKey = int | str | Callable[[Any], torch.Tensor] | None
"""How to find the logits in a model's output; ``None``: the output is the logits."""

_MISSING = object()
_SHOWN = 6  # entries listed when an output is described


def key_label(key: OutputKey) -> int | str | None:
    """What the results file records: the key itself, or a callable's qualified name (its
    code cannot be stored, so a resume cannot tell two callables of the same name apart)."""
    if key is None or isinstance(key, int | str):
        return key
    name = getattr(key, "__qualname__", type(key).__qualname__)
    return f"callable:{getattr(key, '__module__', '?')}.{name}"


def check_key(key: object) -> None:
    if isinstance(key, bool) or not (key is None or isinstance(key, int | str) or callable(key)):
        raise WalknoiseError(
            f"output_key={key!r}; use an index (0), a key ('logits') or a callable that "
            "returns the logits",
            argument="output_key",
        )


def select_output(out: object, key: OutputKey) -> torch.Tensor:
    """The logits in ``out``, the value a model returned."""
    if key is None:
        if isinstance(out, torch.Tensor):
            return out
        raise WalknoiseError(
            f"the model returns {describe(out)}, not a tensor of logits; say where the "
            f"logits are with output_key (e.g. output_key={_example(out)}) or pass a "
            "callable that returns them",
            argument="output_key",
        )
    shown = key_label(key)
    value: object
    if callable(key) and not isinstance(key, int | str):
        try:
            value = key(out)
        except Exception as err:
            raise WalknoiseError(
                f"output_key={shown} failed on the model's output, {describe(out)}: "
                f"{type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}",
                argument="output_key",
            ) from err
    else:
        value = _lookup(out, key)
        if value is _MISSING:
            raise WalknoiseError(
                f"output_key={shown!r} is not in the model's output, {describe(out)}; "
                f"pass one of {', '.join(repr(k) for k in _keys(out)[:_SHOWN]) or 'nothing'}",
                argument="output_key",
            )
    if not isinstance(value, torch.Tensor):
        raise WalknoiseError(
            f"output_key={shown!r} selects {describe(value)} from the model's output, not a "
            "tensor of logits",
            argument="output_key",
        )
    return value


def _lookup(out: object, key: int | str) -> object:
    if isinstance(out, Mapping):
        if key in out:
            return out[key]
        return out.get(str(key), _MISSING) if isinstance(key, int) else _MISSING
    if isinstance(out, tuple | list) and isinstance(key, int):
        return out[key] if -len(out) <= key < len(out) else _MISSING
    if isinstance(key, str) and not isinstance(out, torch.Tensor):
        return getattr(out, key, _MISSING)  # a namedtuple or dataclass field
    return _MISSING


def _keys(out: object) -> list[int | str]:
    if isinstance(out, Mapping):
        return list(out)
    if isinstance(out, tuple | list):
        return [*range(len(out)), *getattr(out, "_fields", ())]
    if dataclasses.is_dataclass(out):
        return [f.name for f in dataclasses.fields(out)]
    return []


def _example(out: object) -> str:
    tensors = [k for k in _keys(out) if isinstance(_lookup(out, k), torch.Tensor)]
    named = [k for k in tensors if "logit" in str(k).lower()]
    return repr((named or tensors or [0])[0])


def describe(value: object) -> str:
    """``a tuple of 2 (0: Tensor (2, 10), 1: Tensor (1, 2, 8))``, for one-line errors."""
    if isinstance(value, torch.Tensor):
        return f"a tensor of shape {tuple(value.shape)}"
    if value is None:
        return "None"
    kind = type(value).__name__
    keys = _keys(value)
    if not keys:
        return f"a {kind}"
    items = ", ".join(f"{k!r}: {_brief(_lookup(value, k))}" for k in keys[:_SHOWN])
    more = ", …" if len(keys) > _SHOWN else ""
    if isinstance(value, tuple | list):
        return f"a {kind} of {len(value)} ({items}{more})"
    return f"a {kind} with keys ({items}{more})"


def _brief(value: object) -> str:
    if isinstance(value, torch.Tensor):
        return f"Tensor {tuple(value.shape)}"
    return type(value).__name__


class OutputSelector:
    """Forward hook of the root module: returns the selected logits instead of the output."""

    def __init__(self, key: OutputKey) -> None:
        self.key = key

    def __call__(self, _m: nn.Module, _args: object, out: object) -> torch.Tensor:
        return select_output(out, self.key)


@contextmanager
def selecting_output(model: nn.Module, key: OutputKey) -> Iterator[nn.Module]:
    """While the block runs, ``model(x)`` returns the logits ``key`` selects (removed after)."""
    check_key(key)
    handle = model.register_forward_hook(OutputSelector(key))
    try:
        yield model
    finally:
        handle.remove()
