"""Where models run: ``resolve_device`` turns ``cpu``/``cuda``/``auto`` into a device."""

from __future__ import annotations

import torch

from walknoise.errors import WalknoiseError
from walknoise.types import Device

__all__ = ["native_dtype", "resolve_device"]


def resolve_device(device: Device) -> torch.device:
    """``cpu``, ``cuda`` or ``cuda:N`` (a GPU must be visible), ``auto`` (CUDA when present),
    or a ``torch.device`` of type cpu or cuda."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        resolved: torch.device | None = torch.device(device)
    except RuntimeError:
        resolved = None
    if resolved is None or resolved.type not in ("cpu", "cuda"):  # meta, mps: fail deep inside
        raise WalknoiseError(
            f"unknown device {str(device)!r}; choose cpu, cuda or auto", argument="device"
        )
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise WalknoiseError(
            f"device={str(device)!r} was asked for but no CUDA GPU is visible; "
            "choose device='cpu' or device='auto'",
            argument="device",
        )
    return resolved


def native_dtype(name: str, device: torch.device) -> str:
    """``name`` (``float32``, ``bfloat16``, ``float16``) where ``device`` has native kernels
    for it, else ``float32``: emulated half precision is slower than float32, not faster."""
    if name == "float32":
        return name
    if device.type == "cuda":
        ok = name == "float16" or torch.cuda.is_bf16_supported()
    else:
        ok = (
            torch.ops.mkldnn._is_mkldnn_bf16_supported()
            if name == "bfloat16"
            else torch.ops.mkldnn._is_mkldnn_fp16_supported()
        )
    return name if ok else "float32"
