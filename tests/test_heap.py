"""Freed memory kept for reuse: fewer page faults for the same allocations."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

import walknoise.heap

# Three 12 MiB tensors allocated, touched and freed 30 times. glibc's mmap threshold starts
# at 128 KiB and moves with what was freed before, so the default's count varies between
# runs (33k to 193k seen); the reference pins the starting value (a set threshold no longer
# moves): every tensor is mmapped and faulted in again each round (30 × 3 × 3,072 pages).
# Kept, only the first round faults. Counted, not timed: the kernel counts faults exactly.
CHILD = """
import ctypes, resource, sys, torch
import walknoise.heap
if sys.argv[1] == "keep":
    assert walknoise.heap.keep_freed_memory()
else:
    assert ctypes.CDLL(None).mallopt(walknoise.heap.M_MMAP_THRESHOLD, 128 << 10) == 1
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(30):
    held = [torch.ones(3 << 20) for _ in range(3)]
    del held
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


def faults(mode: str) -> int:
    out = subprocess.run(
        [sys.executable, "-c", CHILD, mode], capture_output=True, text=True, check=True
    )
    return int(out.stdout.split()[-1])


def huge_pages_always() -> bool:
    """Transparent huge pages for every mapping: 2 MiB a fault, so the counts mean less."""
    try:
        return "[always]" in Path("/sys/kernel/mm/transparent_hugepage/enabled").read_text()
    except OSError:
        return False


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt")
@pytest.mark.skipif(huge_pages_always(), reason="transparent huge pages on every mapping")
def test_kept_memory_is_reused_instead_of_faulted_in_again() -> None:
    plain, kept = faults("plain"), faults("keep")
    print(f"\nminor page faults: {plain} with glibc's defaults, {kept} with memory kept")
    assert plain > 30 * 3 * 3072 * 0.9  # the reference does fault every round
    assert kept * 5 < plain  # the first round's faults only


def test_a_libc_without_mallopt_is_reported_not_raised(monkeypatch) -> None:
    class NoMallopt:
        def __init__(self, _name: object) -> None:
            pass

    monkeypatch.setattr(walknoise.heap.ctypes, "CDLL", NoMallopt)
    assert walknoise.heap.keep_freed_memory() is False
