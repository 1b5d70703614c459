"""walknoise's own walk in float32 against ``dtype="bfloat16"``: time and midpoints.

The noisy passes run under autocast (walknoise/walk/runner.py); the noise itself and the
clean reference stay float32. Models: the zoo MLP trained on bundled MNIST, and a CIFAR
ResNet-20 (benchmarks/_resnet20.py) trained here, once per run (seeded, 2 epochs), on the
bundled MNIST as 3×32×32 input and walked on the 2,000 test images; ``--resnet-weights
random`` walks the old random-weight ResNet-20 on random images labelled by itself instead.
Each setting runs in a fresh process, float32 and bfloat16 alternated, ``--pairs`` times.
Both dtypes see the same noise draws; a float32 walk with another seed measures how far the
midpoints move by sampling alone, the yardstick for the bfloat16 change.

    python benchmarks/bench_dtype.py --pairs 1 --json docs/bench_dtype.json
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
model, data, kwargs = setup(sys.argv[1], sys.argv[3] == "quick", sys.argv[6])
start = time.perf_counter()
result = walknoise.scan(model, data, dtype=sys.argv[2], seed=int(sys.argv[5]), **kwargs)
seconds = time.perf_counter() - start
mids = result.midpoints()["midpoint"]
print(json.dumps({"seconds": seconds, "midpoints": {k: float(v) for k, v in mids.items()},
                  "compute_dtype": result.dataset.attrs["compute_dtype"]}))
"""


def setup(
    arch: str, quick: bool, weights: str = "random"
) -> tuple[torch.nn.Module, Any, dict[str, Any]]:
    """The model, its data and the scan's settings (the same for both dtypes). ``weights``:
    for the ResNet-20, ``"random"`` or the path of a ``train_mnist32`` file."""
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
    from benchmarks._resnet20 import load_trained, mnist32, random_data, resnet20

    kwargs["layers"] = "conv1,s2b0.conv1,s3b2.conv2,fc"
    if weights != "random":
        x, y = mnist32("test")
        n = 500 if quick else len(y)
        kwargs["sigmas"] = "log:1e-2:1e2:5" if quick else "log:1e-2:1e2:9"
        return load_trained(Path(weights)), (x[:n], y[:n]), kwargs
    torch.manual_seed(0)
    model = resnet20().eval()
    kwargs["sigmas"] = "log:1e-2:1e1:5" if quick else "log:1e-2:1e1:9"
    return model, random_data(model, 128 if quick else 500), kwargs


def child(
    arch: str, dtype: str, quick: bool, seed: int = 0, weights: str = "random"
) -> dict[str, Any]:
    root = str(Path(__file__).resolve().parent.parent)
    mode = "quick" if quick else "full"
    argv = [sys.executable, "-c", CHILD, arch, dtype, mode, root, str(seed), weights]
    out = subprocess.run(argv, capture_output=True, text=True, check=True)
    return dict(json.loads(out.stdout.splitlines()[-1]))


def rel_diff(a: dict[str, float], b: dict[str, float]) -> dict[str, float]:
    """Per layer, ``b / a - 1`` where both midpoints were reached."""
    return {k: b[k] / a[k] - 1 for k in a if np.isfinite(a[k]) and np.isfinite(b[k])}


def largest(rel: dict[str, float]) -> float:
    return max((abs(v) for v in rel.values()), default=float("nan"))


def compare(arch: str, pairs: int, quick: bool, weights: str = "random") -> dict[str, Any]:
    runs: dict[str, list[dict[str, Any]]] = {"float32": [], "bfloat16": []}
    for i in range(pairs):
        order = ("float32", "bfloat16") if i % 2 == 0 else ("bfloat16", "float32")
        for dtype in order:
            runs[dtype].append(child(arch, dtype, quick, 0, weights))
    f32, b16 = (float(np.median([r["seconds"] for r in runs[d]])) for d in runs)
    m32, m16 = runs["float32"][0]["midpoints"], runs["bfloat16"][0]["midpoints"]
    other = child(arch, "float32", quick, 1, weights)["midpoints"]  # sampling spread
    rel, spread = rel_diff(m32, m16), rel_diff(m32, other)
    return {
        "seconds_float32": f32,
        "seconds_bfloat16": b16,
        "speedup": f32 / b16,
        "ran": runs["bfloat16"][0]["compute_dtype"],
        "midpoints_float32": m32,
        "midpoint_rel_diff": rel,
        "max_abs_midpoint_rel_diff": largest(rel),
        "float32_seed1_rel_diff": spread,
        "max_abs_float32_seed1_rel_diff": largest(spread),
        "pairs": pairs,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--arch", choices=["mlp", "resnet20", "both"], default="both")
    parser.add_argument("--pairs", type=int, default=2)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--resnet-weights", choices=["trained", "random"], default="trained")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    archs = ["mlp", "resnet20"] if args.arch == "both" else [args.arch]
    out: dict[str, Any] = {"date": time.strftime("%Y-%m-%d"), "quick": args.quick}
    with tempfile.TemporaryDirectory() as tmp:
        for arch in archs:
            weights = "random"
            if arch == "resnet20" and args.resnet_weights == "trained":
                from benchmarks._resnet20 import train_mnist32

                weights = str(Path(tmp) / "resnet20.pt")
                out["resnet20_training"] = trained = train_mnist32(Path(weights))
                print(
                    f"resnet20: trained in {trained['seconds']:.0f} s, "
                    f"test accuracy {100 * trained['test_accuracy']:.2f}%"
                )
            r = out[arch] = compare(arch, args.pairs, args.quick, weights)
            r["weights"] = "random" if arch == "resnet20" and weights == "random" else "trained"
            print(
                f"{arch}: float32 {r['seconds_float32']:.1f} s, bfloat16 "
                f"{r['seconds_bfloat16']:.1f} s ({r['speedup']:.2f}x, ran {r['ran']}); "
                f"largest midpoint change {100 * r['max_abs_midpoint_rel_diff']:.2f}% "
                f"(float32, seed 1 against 0: {100 * r['max_abs_float32_seed1_rel_diff']:.2f}%)"
            )
    if args.json:
        from benchmarks._machine import machine  # as _resnet20: this module is imported by tests

        args.json.write_text(json.dumps({"machine": machine(), **out}, indent=1) + "\n")


if __name__ == "__main__":
    main()
