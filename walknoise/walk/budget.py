"""How many activation elements one stacked forward pass may hold: the runner's window size.

A pass stacks (repeat, σ) copies of a window of samples. Too small a window and the fixed
cost of a pass (hooks, kernel launches, Python) dominates; too large and the activations no
longer stay in the last-level cache between layers. ``benchmarks/bench_budget.py`` sweeps the
budget on a LeNet-5 and a ResNet-20 walk (``docs/bench_budget.json``): on a 2-core Zen 3 with
a 32 MiB L3 both are fastest at a quarter of the L3 in float32 elements (2^21, 8 MiB); at
2^16 they ran 2.4× and 1.6× slower, at 2^23 (the whole L3) 1.02× and 1.27×. Hence a quarter
of the cache, clamped to 2^20..2^23: below, the fixed cost of a pass grows (LeNet-5 1.09×
slower at 2^20); above, no machine of ours was measured.
"""

from __future__ import annotations

import functools
import os
from pathlib import Path

import torch

DEFAULT = 2**21  # where the cache size cannot be read, and on GPUs (not measured there)
FLOOR, CEILING = 2**20, 2**23  # float32 elements (see above)
CACHE_SHARE = 4  # a quarter of the last-level cache: the sweep's best (see above)
FLOAT32 = 4  # bytes: the budget counts the float32 elements the activations mostly are
SYSFS = Path("/sys/devices/system/cpu/cpu0/cache")


def element_budget(device: torch.device) -> int:
    """Activation elements per stacked forward pass on ``device``."""
    if device.type != "cpu":
        return DEFAULT
    cache = last_level_cache()
    if cache is None:
        return DEFAULT
    return min(CEILING, max(FLOOR, cache // (CACHE_SHARE * FLOAT32)))


@functools.cache
def last_level_cache() -> int | None:
    """Bytes of the CPU's last-level cache as this machine sees it, or ``None``.

    sysfs first: in a virtual machine it gives the share the guest sees, where
    ``sysconf`` may report the whole socket's (256 MiB against sysfs's 32 MiB on our VMs).
    """
    sizes = [_size(d) for d in sorted(SYSFS.glob("index*"))] if SYSFS.is_dir() else []
    known = [s for s in sizes if s]
    if known:
        return max(known)
    try:
        value = os.sysconf("SC_LEVEL3_CACHE_SIZE") or os.sysconf("SC_LEVEL2_CACHE_SIZE")
    except (ValueError, OSError):  # not a glibc system
        return None
    return value if value > 0 else None


def _size(index: Path) -> int | None:
    """One cache's size from its sysfs directory (``32768K``), or ``None`` if unreadable."""
    try:
        text = (index / "size").read_text().strip()
    except OSError:
        return None
    units = {"K": 2**10, "M": 2**20, "G": 2**30}
    scale = units.get(text[-1:].upper(), 1)
    digits = text[:-1] if text[-1:].upper() in units else text
    return int(digits) * scale if digits.isdigit() else None
