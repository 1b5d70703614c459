"""Reproduce Walking Noise's qualitative findings on bundled MNIST (LeNet-5 and the 3×64 MLP).

(a) eval-only midpoint σ per layer; (b) training under noise raises each layer's midpoint;
(c) additive noisy training grows weight magnitudes (growth > 1), which clamping prevents;
(d) multiplicative noisy training lowers weight kurtosis towards 1 and brings the binarized
model's accuracy closer to the full model's.

    python benchmarks/reproduce_walking_noise.py --quick   # < 10 minutes on 2 CPU cores
    python benchmarks/reproduce_walking_noise.py           # more layers, σ and repeats
    python benchmarks/reproduce_walking_noise.py --quick --replot   # figures from the files

Writes figures and ``reproduction_{quick,full}.json`` (every number quoted in
docs/reproduction.md) to ``--out`` (default ``docs/figures``) and the results files to
``--results``.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import numpy as np

import walknoise
from walknoise.data import resolve_data
from walknoise.models import build_model
from walknoise.training import TrainConfig, seeded_init, train_model
from walknoise.walk import plots, weight_plots

QUICK = {
    "name": "quick",
    "epochs": {"lenet5": 4, "mlp": 10},
    "repeats": 2,
    "sigmas": "log:1e-1:1e3:5",
    "mult": "log:1e-1:1e1:3",
    "layers": {"lenet5": ["conv1", "act2", "fc2"], "mlp": ["fc1", "act2", "fc4"]},
}
FULL = {
    "name": "full",
    "epochs": {"lenet5": 8, "mlp": 10},
    "repeats": 2,
    "sigmas": "log:1e-1:1e3:9",
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


def study(
    arch: str, cfg: dict[str, Any], out: Path, results: Path, overwrite: bool
) -> dict[str, Any]:
    mode = cfg["name"]
    epochs = cfg["epochs"][arch]
    model, acc = clean_model(arch, epochs)
    common = {
        "repeats": cfg["repeats"],
        "layers": cfg["layers"][arch],
        "progress": False,
        "include_global": False,
        "train": {"epochs": epochs},
        "phase": "both",
    }
    start = time.perf_counter()
    common["overwrite"] = overwrite  # else an interrupted run resumes where it stopped

    def run(kind: str, noise: str, sigmas: str, **extra: Any) -> walknoise.Result:
        path = results / f"{mode}_{arch}_{kind}.h5"
        options = {**common, **extra}
        return walknoise.scan(model, "mnist", noise=noise, sigmas=sigmas, output=path, **options)

    add = run("additive", "additive", cfg["sigmas"])
    clamp = float(max(add.dataset["clean_weight_max_abs"].max(), 1e-3))
    clamped = run("clamped", "additive", cfg["sigmas"], clamp=clamp, phase="train")
    mult = run("multiplicative", "multiplicative", cfg["mult"])
    seconds = time.perf_counter() - start
    draw(f"{mode}_{arch}", out, add, clamped, mult)
    return {
        "clean_test_accuracy": acc,
        "seconds": seconds,
        "clamp": clamp,
        "additive": findings(add),
        "clamped": findings(clamped),
        "multiplicative": findings(mult),
    }


def draw(prefix: str, out: Path, *results: walknoise.Result) -> None:
    """The figures of one architecture from its additive, clamped and multiplicative scans."""
    add, clamped, mult = results
    for name, fig in [
        ("additive_eval_heatmap", plots.heatmap(add)),
        ("additive_train_heatmap", plots.heatmap(add.for_phase("train"))),
        ("additive_weights", weight_plots.weights(add)),
        ("clamped_weights", weight_plots.weights(clamped)),
        ("multiplicative_weights", weight_plots.weights(mult)),
    ]:
        plots.save_figure(fig, out / f"reproduction_{prefix}_{name}.png")


def findings(result: walknoise.Result) -> dict[str, Any]:
    ds = result.dataset
    out: dict[str, Any] = {"layers": list(result.layers), "sigmas": result.sigmas.tolist()}
    if "eval" in result.phases:
        out["eval_midpoint"] = _clean(ds["midpoint"].values)
    out["train_midpoint"] = _clean(ds["trained_midpoint"].values)
    over = ["repeat", "param_layer"]
    out["growth_l2"] = np.exp(np.log(ds["growth_l2"]).mean(over)).round(3).values.tolist()
    # the growth of the layer whose output the noise hits (or that feeds the noisy point)
    owner = json.loads(ds.attrs["param_layer_of"])
    own = [owner.get(layer) for layer in result.layers]
    out["own_param_layer"] = own
    for stat in ("growth_l2", "growth_max_abs", "weight_kurtosis"):
        out[f"own_{stat}"] = [
            None if p is None else own_stat(ds, stat, lay, p)
            for lay, p in zip(result.layers, own, strict=True)
        ]
    out["clean_own_kurtosis"] = [
        None
        if p is None
        else round(float(ds["clean_weight_kurtosis"].sel(param_layer=p).mean()), 3)
        for p in own
    ]
    out["kurtosis"] = ds["weight_kurtosis"].mean(over).round(3).values.tolist()
    out["clean_kurtosis"] = round(float(ds["clean_weight_kurtosis"].mean()), 3)
    out["trained_accuracy"] = ds["trained_accuracy"].mean("repeat").round(4).values.tolist()
    out["binarized_accuracy"] = ds["binarized_accuracy"].mean("repeat").round(4).values.tolist()
    out["clean_model_accuracy"] = round(float(ds["clean_model_accuracy"].mean()), 4)
    return out


def own_stat(ds: Any, stat: str, layer: str, param: str) -> list[float | None]:
    """Repeat mean of one layer's statistic per σ (geometric for growth ratios)."""
    values = ds[stat].sel(layer=layer, param_layer=param)
    if stat.startswith("growth"):
        return _clean(np.exp(np.log(values).mean("repeat").values))
    return _clean(values.mean("repeat").values)


def _clean(values: np.ndarray) -> list[float | None]:
    return [None if np.isnan(v) else round(float(v), 4) for v in values]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--out", type=Path, default=Path("docs/figures"))
    parser.add_argument("--results", type=Path, default=Path("reproduction-results"))
    parser.add_argument("--replot", action="store_true", help="redraw from --results only")
    parser.add_argument("--overwrite", action="store_true", help="start over, not resume")
    args = parser.parse_args()
    cfg = QUICK if args.quick else FULL
    args.out.mkdir(parents=True, exist_ok=True)
    if args.replot:
        for arch in ("lenet5", "mlp"):
            prefix = f"{cfg['name']}_{arch}"
            kinds = ("additive", "clamped", "multiplicative")
            draw(
                prefix,
                args.out,
                *(walknoise.load(args.results / f"{prefix}_{k}.h5") for k in kinds),
            )
        return
    args.results.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    report = {
        arch: study(arch, cfg, args.out, args.results, args.overwrite) for arch in ("lenet5", "mlp")
    }
    report["mode"] = "quick" if args.quick else "full"
    report["total_seconds"] = time.perf_counter() - start
    (args.out / f"reproduction_{report['mode']}.json").write_text(json.dumps(report, indent=1))
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
