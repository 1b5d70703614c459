"""Issue 13's self-binarization cell: LeNet-5, multiplicative noise at pool1, σ = 100.

A train-phase scan (``walknoise.scan(..., phase="train")``) of the zoo LeNet-5 on bundled
MNIST in [0, 1] (6 epochs, 3 seeds), then what the statistics of
:mod:`walknoise.walk.selfbin` cost next to one training epoch, at a 5- and a 31-σ grid.
Wall times depend on the machine and its load; compare them with each other, not across runs.
Writes ``docs/selfbin_cell.json`` (about 20 minutes on 2 shared cores).

    python benchmarks/selfbin_cell.py
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

import walknoise
from walknoise.data import resolve_data
from walknoise.models import build_model
from walknoise.noise.kinds import Multiplicative
from walknoise.training import TrainConfig
from walknoise.walk.selfbin import NoisyEval, cell_stats, clean_stats
from walknoise.walk.trainphase import train_under_noise

REPORTED = (
    "trained_accuracy",
    "clean_noisy_accuracy",
    "activation_zero_fraction",
    "clean_activation_zero_fraction",
    "activation_bimodality",
    "clean_activation_bimodality",
    "onoff_accuracy",
    "clean_onoff_accuracy",
    "binarized_accuracy",
    "own_layer_binarized_accuracy",
    "own_layer_binarized_accuracy_per_channel",
    "cross_accuracy",
    "clean_model_accuracy",
    "weight_kurtosis",
    "init_weight_kurtosis",
)


def cell(epochs: int, repeats: int, sigma: float) -> dict[str, Any]:
    """The acceptance cell, as the results file records it."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "cell.h5"
        start = time.perf_counter()
        res = walknoise.scan(
            build_model("lenet5"),
            "mnist:test",
            noise="multiplicative",
            sigmas=[sigma],
            layers="pool1",
            repeats=repeats,
            phase="train",
            train={"epochs": epochs},
            output=path,
            progress=False,
        )
        wall = time.perf_counter() - start
        ds = walknoise.load(path).dataset
        out: dict[str, Any] = {
            "wall_s": round(wall, 1),
            "data_normalization": str(ds.attrs.get("data_normalization")),
            "n_test": int(ds.attrs["n_samples"]),
            "param_layer": [str(v) for v in ds["param_layer"].values],
            "test_sigma": ds["test_sigma"].values.tolist(),
            "midpoints_columns": list(res.midpoints("train").columns),
        }
        for name in REPORTED:
            out[name] = {
                "dims": list(ds[name].dims),
                "values": np.round(ds[name].values, 4).tolist(),
            }
    return out


def cost() -> dict[str, float]:
    """Seconds for one training epoch and for the statistics of one cell / one seed."""
    test = resolve_data("mnist:test")
    start = time.perf_counter()
    model = train_under_noise(
        "lenet5", noise="multiplicative", layer="pool1", sigma=100.0,
        config=TrainConfig(epochs=1), seed=0,
    )  # fmt: skip
    out = {"train_one_epoch_s": time.perf_counter() - start}
    ev = NoisyEval(test.x, test.y, Multiplicative(), "pool1", ("pool1",), (1.0,), 0, 0, 500)
    for size in (5, 31):
        grid = list(np.logspace(-2, 3, size))
        start = time.perf_counter()
        cell_stats(ev, model, 100.0, "conv1", [0.0, *grid])
        out[f"cell_stats_{size}_sigmas_s"] = time.perf_counter() - start
        start = time.perf_counter()
        clean_stats(ev, model, grid)
        out[f"clean_stats_{size}_sigmas_s"] = time.perf_counter() - start
    return {k: round(v, 2) for k, v in out.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", type=Path, default=Path("docs/selfbin_cell.json"))
    args = parser.parse_args()
    report = {
        "command": "python benchmarks/selfbin_cell.py",
        "cell": cell(args.epochs, args.repeats, 100.0),
        "cost": cost(),
    }
    args.out.write_text(json.dumps(report, indent=1) + "\n")
    print(json.dumps(report["cost"], indent=1))


if __name__ == "__main__":
    main()
