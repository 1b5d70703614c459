"""Where models run: ``resolve_device`` turns ``cpu``/``cuda``/``auto`` into a device."""

from __future__ import annotations

import torch

from walknoise.errors import WalknoiseError

__all__ = ["resolve_device"]


def resolve_device(name: str) -> torch.device:
    """``cpu``, ``cuda`` (must exist) or ``auto`` (cuda when present)."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise WalknoiseError(
            "--device cuda was asked for but no CUDA GPU is visible; "
            "use --device cpu or --device auto"
        )
    try:
        device: torch.device | None = torch.device(name)
    except RuntimeError:
        device = None
    if device is None or device.type not in ("cpu", "cuda"):  # meta, mps: fail deep inside
        raise WalknoiseError(f"unknown device {name!r}; use cpu, cuda or auto")
    return device
