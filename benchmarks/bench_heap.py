"""Page faults of a walk with glibc's default allocator settings against freed memory kept
(``walknoise.heap.keep_freed_memory``, which the ``walknoise`` command calls at start).

A CIFAR-style ResNet-20 (``_resnet20.py``, random weights, 500 random images labelled by the
model itself: faults do not depend on what the weights learned), every fourth point (16),
3 σ × 2 repeats, no ``<global>``. Each run in a fresh process, the two settings alternated,
``--pairs`` times; minor faults, user and kernel CPU time and wall time of the scan alone.

    python benchmarks/bench_heap.py --json docs/bench_heap.json
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from pathlib import Path
from typing import Any

from _machine import machine

CHILD = """
import json, resource, sys, time
sys.path.insert(0, sys.argv[2])
import numpy as np, torch
import walknoise, walknoise.heap
from _resnet20 import random_data, resnet20
from walknoise.noise.points import discover, select
kept = walknoise.heap.keep_freed_memory() if sys.argv[1] == "kept" else False
torch.manual_seed(0)
model = resnet20().eval()
x, y = random_data(model, 500)
layers = [p.name for p in select(discover(model, tuple(x.shape[1:])))][::4]
walknoise.scan(model, (x[:8], y[:8]), sigmas=[1.0], layers=layers[:1], repeats=1,
               include_global=False, refine=False, progress=False)  # imports, first kernels
r0, t0 = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
walknoise.scan(model, (x, y), sigmas=np.logspace(-2, 3, 3).tolist(), layers=layers, repeats=2,
               include_global=False, refine=False, progress=False)
wall, r1 = time.perf_counter() - t0, resource.getrusage(resource.RUSAGE_SELF)
print(json.dumps({"kept": kept, "points": len(layers), "wall": wall,
                  "user": r1.ru_utime - r0.ru_utime, "sys": r1.ru_stime - r0.ru_stime,
                  "minor_faults": r1.ru_minflt - r0.ru_minflt}))
"""


def run(setting: str) -> dict[str, Any]:
    here = str(Path(__file__).resolve().parent)
    out = subprocess.run(
        [sys.executable, "-c", CHILD, setting, here], capture_output=True, text=True, check=True
    )
    return dict(json.loads(out.stdout.splitlines()[-1]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pairs", type=int, default=3)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    runs: dict[str, list[dict[str, Any]]] = {"default": [], "kept": []}
    for i in range(args.pairs):
        for setting in ("default", "kept") if i % 2 == 0 else ("kept", "default"):
            runs[setting].append(run(setting))
    medians = {
        s: {k: statistics.median(r[k] for r in rs) for k in ("wall", "user", "sys", "minor_faults")}
        for s, rs in runs.items()
    }
    for s, m in medians.items():
        print(
            f"{s:8} wall {m['wall']:.1f} s  user {m['user']:.1f} s  kernel {m['sys']:.2f} s  "
            f"minor faults {m['minor_faults'] / 1e6:.2f} M  (median of {args.pairs})"
        )
    d, k = medians["default"], medians["kept"]
    faults, kernel = d["minor_faults"] / k["minor_faults"], d["sys"] / max(k["sys"], 1e-9)
    print(
        f"kept vs default: faults {faults:.1f}× fewer, kernel time {kernel:.1f}× less, "
        f"wall {d['wall'] / k['wall']:.3f}×"
    )
    if args.json:
        args.json.write_text(
            json.dumps({"machine": machine(), "runs": runs, "medians": medians}, indent=1) + "\n"
        )
        print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
