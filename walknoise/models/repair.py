"""State dicts as users save them: inside a training checkpoint, or with a wrapper's prefix.

``torch.save({"model": model.state_dict(), "epoch": 3, ...})`` is the usual training
checkpoint, and a model wrapped in DataParallel or DistributedDataParallel (or compiled with
``torch.compile``) saves every key with ``module.`` (``_orig_mod.``) in front. Both are loaded
rather than refused, and a log line says what was done. Loading is safe because the result
must still fit the architecture exactly (every key, every shape, a strict
``load_state_dict``): no other reading of such a file gives another model, so an error would
only make the user write the same two lines of code, and a wrong guess is still an error.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TypeGuard

import torch

log = logging.getLogger("walknoise")

NESTED = ("state_dict", "model_state_dict", "model", "net")
"""Entries of a training checkpoint that hold the weights, in the order they are tried."""

_SHOWN = 5
"""Names of a checkpoint's other entries listed in the log line."""


def is_state_dict(obj: object) -> TypeGuard[Mapping[str, torch.Tensor]]:
    return (
        isinstance(obj, Mapping)
        and len(obj) > 0
        and all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in obj.items())
    )


def nested_state(obj: Mapping[object, object]) -> tuple[str, Mapping[str, torch.Tensor]] | None:
    """The first of :data:`NESTED` entries holding a state dict, with its key."""
    for key in NESTED:
        state = obj.get(key)
        if is_state_dict(state):
            return key, state
    return None


def took_entry(obj: Mapping[object, object], key: str) -> str:
    """What the log line says after taking entry ``key`` of a training checkpoint."""
    others = sorted(str(k) for k in obj if k != key)
    shown = ", ".join(others[:_SHOWN]) + (", ..." if len(others) > _SHOWN else "")
    also = f" (the file also holds: {shown})" if others else ""
    return f"took the state dict in its {key!r} entry{also}"


def strip_prefix(
    state: Mapping[str, torch.Tensor], expected: Sequence[str]
) -> tuple[str, dict[str, torch.Tensor]] | None:
    """``state`` without the leading components all its keys share, when what remains is
    exactly the model's keys (``expected``); else None."""
    wanted, keys, prefix = set(expected), list(state), ""
    while all("." in k for k in keys) and len({k.split(".", 1)[0] for k in keys}) == 1:
        head = keys[0].split(".", 1)[0] + "."
        prefix += head
        keys = [k[len(head) :] for k in keys]
        if set(keys) == wanted:
            return prefix, {k[len(prefix) :]: v for k, v in state.items()}
    return None


def stripped(prefix: str) -> str:
    return (
        f"stripped {prefix!r} from every key "
        "(saved from a wrapped model: DataParallel, DDP or torch.compile)"
    )


def report(path: Path, notes: Sequence[str]) -> None:
    """One log line saying how the file was read, if it needed any of the above."""
    if notes:
        log.warning("%s: %s", path, "; ".join(notes))
