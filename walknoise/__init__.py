"""walknoise: walk Gaussian noise through a PyTorch model, one layer at a time.

>>> import walknoise
>>> result = walknoise.scan(model, "mnist", noise="additive", sigmas="log:1e-2:1e3:31")
>>> result.midpoints()

The names below load on first use, so ``import walknoise`` (and ``walknoise --help``) stays
light; the families are subpackages: ``walknoise.walk``, ``walknoise.noise``,
``walknoise.gni``, ``walknoise.nin``, ``walknoise.io``, ``walknoise.models``.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from walknoise.errors import WalknoiseError

if TYPE_CHECKING:
    from walknoise._version import __version__
    from walknoise.noise.inject import inject
    from walknoise.noise.kinds import Additive, Combined, Multiplicative, make_noise
    from walknoise.recipes import train_checkpoint
    from walknoise.walk.driver import scan
    from walknoise.walk.result import Result, load
    from walknoise.walk.trainphase import train_under_noise

# public name -> the module that defines it
_LAZY = {
    # importlib.metadata takes ~50 ms: the console script imports this package before its
    # entry point can catch a Ctrl-C (cli/main.py), so even the version loads on first use
    "__version__": "walknoise._version",
    "Additive": "walknoise.noise.kinds",
    "Combined": "walknoise.noise.kinds",
    "Multiplicative": "walknoise.noise.kinds",
    "make_noise": "walknoise.noise.kinds",
    "inject": "walknoise.noise.inject",
    "Result": "walknoise.walk.result",
    "load": "walknoise.walk.result",
    "scan": "walknoise.walk.driver",
    "train_checkpoint": "walknoise.recipes",
    "train_under_noise": "walknoise.walk.trainphase",
}

__all__ = [
    "Additive",
    "Combined",
    "Multiplicative",
    "Result",
    "WalknoiseError",
    "__version__",
    "inject",
    "load",
    "make_noise",
    "scan",
    "train_checkpoint",
    "train_under_noise",
]


_SUBPACKAGES = ("gni", "io", "models", "nin", "noise", "walk")


def __getattr__(name: str) -> Any:
    if name in _SUBPACKAGES:
        return importlib.import_module(f"walknoise.{name}")
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'walknoise' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # the next access skips this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY) | set(_SUBPACKAGES))
