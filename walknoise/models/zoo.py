"""Built-in architectures and the ``--arch`` resolver.

Every model is an ``nn.Sequential`` of *named* children, so layer names in reports
(``conv1``, ``act1``, ``fc3`` ...) are stable and readable instead of integer indices.
Build zoo models inside :func:`walknoise.training.seeded_init` for reproducible weights.
"""

from __future__ import annotations

import importlib
import inspect
import math
import os
import sys
from collections import OrderedDict
from collections.abc import Callable, Sequence
from typing import Any

from torch import nn

from walknoise.errors import WalknoiseError

_ARCH_HINT = "package.module:factory (a function returning an nn.Module, e.g. mymodels:build)"


def _shape(input_shape: Sequence[int], arch: str, conv: bool) -> tuple[int, ...]:
    shape = tuple(int(d) for d in input_shape)
    if not shape or any(d < 1 for d in shape):
        raise WalknoiseError(
            f"{arch}: input shape {shape} is invalid; give positive sizes such as 1,28,28"
        )
    if conv and len(shape) != 3:
        raise WalknoiseError(
            f"{arch}: input shape {shape} is not channels,height,width; give e.g. 1,28,28"
        )
    return shape


def _check_classes(num_classes: int, arch: str) -> None:
    if num_classes < 2:
        raise WalknoiseError(f"{arch}: num_classes is {num_classes}; it must be at least 2")


def mlp(
    input_shape: tuple[int, ...] = (1, 28, 28), num_classes: int = 10, batchnorm: bool = False
) -> nn.Module:
    """Walking Noise's RL_TFC: three hidden layers of 64 ReLU units, then logits (``fc4``)."""
    shape = _shape(input_shape, "mlp", conv=False)
    _check_classes(num_classes, "mlp")
    layers: OrderedDict[str, nn.Module] = OrderedDict(flatten=nn.Flatten())
    width = math.prod(shape)
    for i in (1, 2, 3):
        layers[f"fc{i}"] = nn.Linear(width, 64)
        if batchnorm:
            layers[f"bn{i}"] = nn.BatchNorm1d(64)
        layers[f"act{i}"] = nn.ReLU()
        width = 64
    layers["fc4"] = nn.Linear(width, num_classes)
    return nn.Sequential(layers)


def _conv_pool(size: int, kernel: int, padding: int) -> int:
    """Spatial size after a stride-1 conv and a 2x2 max-pool."""
    return (size + 2 * padding - kernel + 1) // 2


def _bn(
    on: bool, name: str, kind: Callable[[int], nn.Module], n: int
) -> list[tuple[str, nn.Module]]:
    return [(name, kind(n))] if on else []


def lenet5(
    input_shape: tuple[int, ...] = (1, 28, 28), num_classes: int = 10, batchnorm: bool = False
) -> nn.Module:
    """Walking Noise's LeNet5: two 5x5 conv/pool stages, then 120-84-``num_classes``."""
    c, h, w = _shape(input_shape, "lenet5", conv=True)
    _check_classes(num_classes, "lenet5")
    for _ in range(2):
        h, w = _conv_pool(h, 5, 0), _conv_pool(w, 5, 0)
    if h < 1 or w < 1:
        raise WalknoiseError(
            f"lenet5: input {tuple(input_shape)} is too small for two 5x5 conv + pool stages; "
            "use at least 16x16 images or arch='cnn'",
            argument="arch",
        )

    items: list[tuple[str, nn.Module]] = [
        ("conv1", nn.Conv2d(c, 6, 5)),
        *_bn(batchnorm, "bn1", nn.BatchNorm2d, 6),
        ("act1", nn.ReLU()),
        ("pool1", nn.MaxPool2d(2)),
        ("conv2", nn.Conv2d(6, 16, 5)),
        *_bn(batchnorm, "bn2", nn.BatchNorm2d, 16),
        ("act2", nn.ReLU()),
        ("pool2", nn.MaxPool2d(2)),
        ("flatten", nn.Flatten()),
        ("fc1", nn.Linear(16 * h * w, 120)),
        *_bn(batchnorm, "bn3", nn.BatchNorm1d, 120),
        ("act3", nn.ReLU()),
        ("fc2", nn.Linear(120, 84)),
        *_bn(batchnorm, "bn4", nn.BatchNorm1d, 84),
        ("act4", nn.ReLU()),
        ("fc3", nn.Linear(84, num_classes)),
    ]
    return nn.Sequential(OrderedDict(items))


def cnn(
    input_shape: tuple[int, ...] = (1, 28, 28), num_classes: int = 10, batchnorm: bool = False
) -> nn.Module:
    """A small conv net: 32 and 64 3x3 filters with pooling, then a 128-unit hidden layer."""
    c, h, w = _shape(input_shape, "cnn", conv=True)
    _check_classes(num_classes, "cnn")
    for _ in range(2):
        h, w = _conv_pool(h, 3, 1), _conv_pool(w, 3, 1)
    if h < 1 or w < 1:
        raise WalknoiseError(
            f"cnn: input {tuple(input_shape)} is too small for two 2x2 poolings; "
            "use at least 4x4 images or arch='mlp'",
            argument="arch",
        )
    items: list[tuple[str, nn.Module]] = [
        ("conv1", nn.Conv2d(c, 32, 3, padding=1)),
        *_bn(batchnorm, "bn1", nn.BatchNorm2d, 32),
        ("act1", nn.ReLU()),
        ("pool1", nn.MaxPool2d(2)),
        ("conv2", nn.Conv2d(32, 64, 3, padding=1)),
        *_bn(batchnorm, "bn2", nn.BatchNorm2d, 64),
        ("act2", nn.ReLU()),
        ("pool2", nn.MaxPool2d(2)),
        ("flatten", nn.Flatten()),
        ("fc1", nn.Linear(64 * h * w, 128)),
        ("act3", nn.ReLU()),
        ("fc2", nn.Linear(128, num_classes)),
    ]
    return nn.Sequential(OrderedDict(items))


ARCHS: dict[str, Callable[..., nn.Module]] = {"mlp": mlp, "lenet5": lenet5, "cnn": cnn}


def _brief(exc: BaseException) -> str:
    """``Type: message`` squeezed onto one short line (error messages are one line)."""
    text = " ".join(str(exc).split())
    text = text if len(text) <= 160 else text[:157] + "..."
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _unknown(arch: str, why: str) -> WalknoiseError:
    zoo = ", ".join(sorted(ARCHS))
    return WalknoiseError(f"{why}; arch takes a zoo name ({zoo}) or {_ARCH_HINT}", argument="arch")


def import_from_cwd() -> None:
    """Let the user's ``mymodels.py`` in the working directory import as ``mymodels``, as it
    does in ``python script.py``, also under the installed console script (whose
    ``sys.path`` lacks the working directory): for ``arch='mymodels:build'`` and for the
    classes a trusted pickle names."""
    cwd = os.getcwd()
    if cwd not in sys.path:
        sys.path.insert(0, cwd)


def resolve_factory(arch: str) -> Callable[..., nn.Module]:
    """Return the factory for a zoo name or a ``package.module:factory`` reference."""
    if arch in ARCHS:
        return ARCHS[arch]
    if ":" not in arch:
        raise _unknown(arch, f"unknown architecture {arch!r}")
    module_name, _, attr = arch.rpartition(":")
    if not module_name or not attr:
        raise _unknown(arch, f"architecture {arch!r} is malformed")
    import_from_cwd()
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:  # a user module may fail in any way while importing
        raise _unknown(arch, f"cannot import module {module_name!r} ({_brief(exc)})") from exc
    factory = getattr(module, attr, None)
    if factory is None:
        raise _unknown(arch, f"module {module_name!r} has no attribute {attr!r}")
    if not callable(factory):
        raise _unknown(arch, f"{arch!r} is a {type(factory).__name__}, not a callable")
    return factory  # type: ignore[no-any-return]


def build_model(arch: str, **kwargs: Any) -> nn.Module:
    """Build ``arch`` (a zoo name or ``package.module:factory``) with ``kwargs``."""
    factory = resolve_factory(arch)
    try:
        inspect.signature(factory).bind(**kwargs)
    except TypeError as exc:
        raise _unknown(
            arch, f"{arch!r} does not accept arguments {sorted(kwargs)} ({_brief(exc)})"
        ) from exc
    except ValueError:
        pass  # no introspectable signature (some builtins): let the call decide
    try:
        model = factory(**kwargs)
    except WalknoiseError:
        raise
    except Exception as exc:
        # The user's own factory failed; keep its traceback chained for debugging.
        raise WalknoiseError(
            f"architecture {arch!r} failed to build ({_brief(exc)}); "
            "fix the factory or the arguments passed to it"
        ) from exc
    if not isinstance(model, nn.Module):
        raise WalknoiseError(
            f"architecture {arch!r} returned a {type(model).__name__}, not a torch.nn.Module; "
            "make the factory return the model"
        )
    return model
