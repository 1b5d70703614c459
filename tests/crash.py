"""A model whose first forward pass in a worker process kills that process: a job that dies."""

from __future__ import annotations

import os
from pathlib import Path

import torch
from torch import nn


class CrashOnce(nn.Module):
    """``inner``, except that the first forward pass outside the creating process (a worker,
    a SLURM job) ends that process with ``os._exit``, like an OOM kill; only once, claimed
    through ``marker``, so a retry succeeds."""

    def __init__(self, inner: nn.Module, marker: Path) -> None:
        super().__init__()
        self.inner = inner
        self.marker = str(marker)
        self.home = os.getpid()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if os.getpid() != self.home and _claim(self.marker):
            os._exit(3)
        out: torch.Tensor = self.inner(x)
        return out


def _claim(marker: str) -> bool:
    try:
        os.close(os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
    except FileExistsError:
        return False
    return True
