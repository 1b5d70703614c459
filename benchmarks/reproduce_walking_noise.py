"""Reproduce Walking Noise's qualitative findings on bundled MNIST (LeNet-5 and the 3×64 MLP).

(a) eval-only midpoint σ per layer; (b) training under noise raises each layer's midpoint;
(c) additive noisy training grows weight magnitudes (growth > 1), which clamping prevents;
(d) multiplicative noisy training lowers weight kurtosis towards 1 and brings the binarized
model's accuracy closer to the full model's.

    python benchmarks/reproduce_walking_noise.py --quick   # < 10 minutes on 2 CPU cores
    python benchmarks/reproduce_walking_noise.py           # more layers, σ and repeats

Writes figures and ``reproduction.json`` (every number quoted in docs/reproduction.md) to
``--out`` (default ``docs/figures``).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import numpy as np

import walknoise
from walknoise import plots, weight_plots
from walknoise.data import resolve_data
from walknoise.models import build_model
from walknoise.training import TrainConfig, seeded_init, train_model

QUICK = {
    "epochs": 3,
    "repeats": 1,
    "sigmas": "log:1e-1:1e2:4",
    "mult": "log:1e-1:1e1:3",
    "layers": {"lenet5": ["conv1", "act2", "fc2"], "mlp": ["fc1", "act2", "fc4"]},
}
FULL = {
    "epochs": 6,
    "repeats": 2,
    "sigmas": "log:1e-1:1e2:7",
    "mult": "log:1e-1:1e1:5",
    "layers": {"lenet5": None, "mlp": None},
}


def clean_model(arch: str, epochs: int) -> Any:
    train, test = resolve_data("mnist:train"), resolve_data("mnist:test")
    with seeded_init(0):
        model = build_model(arch)
    metrics = train_model(
        model,
        train.x,
        train.y,
        TrainConfig(epochs=epochs),
        x_test=test.x,
        y_test=test.y,
        progress=False,
    )
    return model, float(metrics["test_accuracy"])


def study(arch: str, cfg: dict[str, Any], out: Path) -> dict[str, Any]:
    model, acc = clean_model(arch, cfg["epochs"])
    common = {
        "repeats": cfg["repeats"],
        "layers": cfg["layers"][arch],
        "progress": False,
        "include_global": False,
        "train": {"epochs": cfg["epochs"]},
        "phase": "both",
    }
    start = time.perf_counter()
    add = walknoise.scan(model, "mnist", noise="additive", sigmas=cfg["sigmas"], **common)
    clamp = float(max(add.dataset["clean_weight_max_abs"].max(), 1e-3))
    clamped = walknoise.scan(
        model,
        "mnist",
        noise="additive",
        sigmas=cfg["sigmas"],
        clamp=clamp,
        **{**common, "phase": "train"},
    )
    mult = walknoise.scan(model, "mnist", noise="multiplicative", sigmas=cfg["mult"], **common)
    seconds = time.perf_counter() - start
    for name, fig in [
        (f"{arch}_additive_eval_heatmap", plots.heatmap(add)),
        (f"{arch}_additive_train_heatmap", plots.heatmap(add.for_phase("train"))),
        (f"{arch}_additive_weights", weight_plots.weights(add)),
        (f"{arch}_clamped_weights", weight_plots.weights(clamped)),
        (f"{arch}_multiplicative_weights", weight_plots.weights(mult)),
    ]:
        plots.save_figure(fig, out / f"reproduction_{name}.png")
    return {
        "clean_test_accuracy": acc,
        "seconds": seconds,
        "clamp": clamp,
        "additive": findings(add),
        "clamped": findings(clamped),
        "multiplicative": findings(mult),
    }


def findings(result: walknoise.Result) -> dict[str, Any]:
    ds = result.dataset
    out: dict[str, Any] = {"layers": list(result.layers), "sigmas": result.sigmas.tolist()}
    if "eval" in result.phases:
        out["eval_midpoint"] = _clean(ds["midpoint"].values)
    out["train_midpoint"] = _clean(ds["trained_midpoint"].values)
    over = ["repeat", "param_layer"]
    out["growth_l2"] = np.exp(np.log(ds["growth_l2"]).mean(over)).round(3).values.tolist()
    out["kurtosis"] = ds["weight_kurtosis"].mean(over).round(3).values.tolist()
    out["clean_kurtosis"] = round(float(ds["clean_weight_kurtosis"].mean()), 3)
    out["trained_accuracy"] = ds["trained_accuracy"].mean("repeat").round(4).values.tolist()
    out["binarized_accuracy"] = ds["binarized_accuracy"].mean("repeat").round(4).values.tolist()
    out["clean_model_accuracy"] = round(float(ds["clean_model_accuracy"].mean()), 4)
    return out


def _clean(values: np.ndarray) -> list[float | None]:
    return [None if np.isnan(v) else round(float(v), 4) for v in values]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--out", type=Path, default=Path("docs/figures"))
    args = parser.parse_args()
    cfg = QUICK if args.quick else FULL
    args.out.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    report = {arch: study(arch, cfg, args.out) for arch in ("lenet5", "mlp")}
    report["mode"] = "quick" if args.quick else "full"
    report["total_seconds"] = time.perf_counter() - start
    (args.out / "reproduction.json").write_text(json.dumps(report, indent=1))
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
