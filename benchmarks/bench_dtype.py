"""walknoise's own walk in float32 against ``dtype="bfloat16"``: time and midpoints.

The noisy passes run under autocast (walknoise/walk/runner.py); the noise itself and the
clean reference stay float32. Models: the zoo MLP trained on bundled MNIST (real midpoints),
and a CIFAR ResNet-20 (benchmarks/_resnet20.py) with random weights on random images labelled
by the model itself (its midpoints are real for that model, if not for any task). Each
setting runs in a fresh process, float32 and bfloat16 alternated, ``--pairs`` times.

    python benchmarks/bench_dtype.py --json docs/bench_dtype.json
    python benchmarks/bench_dtype.py --quick
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

CHILD = """
import json, sys, time, torch
sys.path.insert(0, sys.argv[4])
import walknoise
from benchmarks.bench_dtype import setup
model, data, kwargs = setup(sys.argv[1], sys.argv[3] == "quick")
start = time.perf_counter()
result = walknoise.scan(model, data, dtype=sys.argv[2], **kwargs)
seconds = time.perf_counter() - start
mids = result.midpoints()["midpoint"]
print(json.dumps({"seconds": seconds, "midpoints": {k: float(v) for k, v in mids.items()},
                  "compute_dtype": result.dataset.attrs["compute_dtype"]}))
"""


def setup(arch: str, quick: bool) -> tuple[torch.nn.Module, Any, dict[str, Any]]:
    """The model, its data and the scan's settings (the same for both dtypes)."""
    kwargs: dict[str, Any] = dict(
        repeats=2 if quick else 5, include_global=False, refine=True, progress=False
    )
    if arch == "mlp":
        from walknoise.data import load_mnist
        from walknoise.models import build_model
        from walknoise.training import TrainConfig, seeded_init, train_model

        train = load_mnist("train")
        with seeded_init(0):
            model = build_model("mlp")
        train_model(model, train.x, train.y, TrainConfig(epochs=1 if quick else 3), progress=False)
        kwargs["sigmas"] = "log:1e-2:1e2:9" if quick else "log:1e-2:1e2:25"
        return model.eval(), load_mnist("test"), kwargs
    from benchmarks._resnet20 import random_data, resnet20

    torch.manual_seed(0)
    model = resnet20().eval()
    kwargs["sigmas"] = "log:1e-2:1e1:5" if quick else "log:1e-2:1e1:9"
    kwargs["layers"] = "conv1,s2b0.conv1,s3b2.conv2,fc"
    return model, random_data(model, 128 if quick else 500), kwargs


def child(arch: str, dtype: str, quick: bool) -> dict[str, Any]:
    root = str(Path(__file__).resolve().parent.parent)
    argv = [sys.executable, "-c", CHILD, arch, dtype, "quick" if quick else "full", root]
    out = subprocess.run(argv, capture_output=True, text=True, check=True)
    return dict(json.loads(out.stdout.splitlines()[-1]))


def compare(arch: str, pairs: int, quick: bool) -> dict[str, Any]:
    runs: dict[str, list[dict[str, Any]]] = {"float32": [], "bfloat16": []}
    for i in range(pairs):
        order = ("float32", "bfloat16") if i % 2 == 0 else ("bfloat16", "float32")
        for dtype in order:
            runs[dtype].append(child(arch, dtype, quick))
    f32, b16 = (float(np.median([r["seconds"] for r in runs[d]])) for d in runs)
    m32, m16 = runs["float32"][0]["midpoints"], runs["bfloat16"][0]["midpoints"]
    rel = {k: m16[k] / m32[k] - 1 for k in m32 if np.isfinite(m32[k]) and np.isfinite(m16[k])}
    return {
        "seconds_float32": f32,
        "seconds_bfloat16": b16,
        "speedup": f32 / b16,
        "ran": runs["bfloat16"][0]["compute_dtype"],
        "midpoint_rel_diff": rel,
        "max_abs_midpoint_rel_diff": max((abs(v) for v in rel.values()), default=float("nan")),
        "pairs": pairs,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--arch", choices=["mlp", "resnet20", "both"], default="both")
    parser.add_argument("--pairs", type=int, default=2)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    archs = ["mlp", "resnet20"] if args.arch == "both" else [args.arch]
    out: dict[str, Any] = {"date": time.strftime("%Y-%m-%d"), "quick": args.quick}
    with tempfile.TemporaryDirectory():
        for arch in archs:
            r = out[arch] = compare(arch, args.pairs, args.quick)
            print(
                f"{arch}: float32 {r['seconds_float32']:.1f} s, bfloat16 "
                f"{r['seconds_bfloat16']:.1f} s ({r['speedup']:.2f}x, ran {r['ran']}); "
                f"largest midpoint change {100 * r['max_abs_midpoint_rel_diff']:.2f}%"
            )
    if args.json:
        args.json.write_text(json.dumps(out, indent=1) + "\n")


if __name__ == "__main__":
    main()
