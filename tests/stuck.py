"""A model whose forward pass never returns once the scan has created its results file."""

from __future__ import annotations

import signal
import time
from pathlib import Path

import torch
from torch import nn


class StuckForward(nn.Module):
    """``inner``, except that a forward pass made while ``results`` exists touches ``entered``
    and then stays in one long call that never looks at Python's signal flags, as a torch
    operation on a big batch does (torch releases the GIL and checks no signals).

    The main thread blocks SIGINT for that call, so the Ctrl-C is taken by another thread and
    only a watcher woken by the signal can stop the process: a ``KeyboardInterrupt`` would
    wait for the call to return, an hour later. Blocking the signal in this thread makes the
    "long operation" last as long as the test needs, on any machine however fast or loaded.
    """

    def __init__(self, inner: nn.Module, results: Path, entered: Path) -> None:
        super().__init__()
        self.inner = inner
        self.results = str(results)
        self.entered = str(entered)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if Path(self.results).exists():
            signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
            Path(self.entered).touch()
            time.sleep(3600)
        out: torch.Tensor = self.inner(x)
        return out
