"""The choices of the public API, as ``Literal`` types, in one place.

A type checker and an editor see the allowed values; the tuples below (read from the same
``Literal``) are what the runtime checks use, since a notebook may pass any string.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal, TypeAlias, get_args

if TYPE_CHECKING:  # torch stays unimported here: the CLI reads the choices before any work
    import torch

NoiseKind: TypeAlias = Literal["additive", "multiplicative", "combined"]
"""How noise meets an activation y: ``y + σε``, ``y(1 + σε)`` or both (split by ``ratio``)."""

ScanPhase: TypeAlias = Literal["eval", "train", "both"]
"""``eval``: walk the given model; ``train``: train a fresh model per cell under the noise;
``both``: the two."""

DeviceName: TypeAlias = Literal["cpu", "cuda", "auto"]
"""``auto`` takes CUDA when a GPU is visible."""

Device: TypeAlias = "DeviceName | str | torch.device"
"""A :data:`DeviceName`, an indexed ``"cuda:N"`` or a ``torch.device`` (cpu or cuda)."""

ExecutorName: TypeAlias = Literal["auto", "serial", "joblib", "slurm"]
"""Where a scan's layers run: ``auto`` is ``serial`` for one job, ``joblib`` for more."""

NOISE_KINDS: tuple[str, ...] = get_args(NoiseKind)
SCAN_PHASES: tuple[str, ...] = get_args(ScanPhase)
DEVICE_NAMES: tuple[str, ...] = get_args(DeviceName)
EXECUTORS: tuple[str, ...] = get_args(ExecutorName)

__all__ = [
    "DEVICE_NAMES",
    "EXECUTORS",
    "NOISE_KINDS",
    "SCAN_PHASES",
    "Device",
    "DeviceName",
    "ExecutorName",
    "NoiseKind",
    "ScanPhase",
]
