"""What machine a benchmark ran on, recorded in its JSON: our machines are not all the same
CPU, and a time means little without the CPU, its vector extensions and its caches."""

from __future__ import annotations

import os
import platform
from pathlib import Path
from typing import Any

import torch

FLAGS = ("avx2", "avx512f", "avx512_bf16", "amx_bf16", "avx512_fp16", "avx_vnni")


def machine() -> dict[str, Any]:
    """CPU model, the vector extensions that decide the kernels, caches, cores, torch."""
    from walknoise.walk.budget import element_budget, last_level_cache

    info = _cpuinfo()
    flags = set(info.get("flags", "").split())
    return {
        "cpu": info.get("model name", platform.processor() or "unknown"),
        "cpu_family_model": f"{info.get('cpu family', '?')}/{info.get('model', '?')}",
        "flags": [f for f in FLAGS if f in flags],
        "last_level_cache_bytes": last_level_cache(),
        "element_budget": element_budget(torch.device("cpu")),
        "cores": os.cpu_count(),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "mkldnn_bf16": bool(torch.ops.mkldnn._is_mkldnn_bf16_supported()),
    }


def _cpuinfo() -> dict[str, str]:
    """The first processor's fields of /proc/cpuinfo (empty where there is none)."""
    path = Path("/proc/cpuinfo")
    if not path.exists():
        return {}
    out: dict[str, str] = {}
    for line in path.read_text().splitlines():
        if not line.strip():
            break
        key, _, value = line.partition(":")
        out[key.strip()] = value.strip()
    return out
