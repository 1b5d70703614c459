"""Adaptive midpoint search against the full grid: σ visited and midpoint error per layer.

Both runs use the same model, data, seed and repeats, so the search sees exactly the
accuracies the grid would have at the σ it visits (common random numbers).

    python benchmarks/bench_search.py                 # LeNet-5 and the MLP, 25 σ × 5 repeats
    python benchmarks/bench_search.py --arch mlp --repeats 2
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

import walknoise
from walknoise.data import resolve_data
from walknoise.metrics import REACHED
from walknoise.models import build_model
from walknoise.training import TrainConfig, seeded_init, train_model

GRID = "log:1e-2:1e3:25"


def trained(arch: str) -> torch.nn.Module:
    train = resolve_data("mnist:train")
    with seeded_init(0):
        model = build_model(arch)
    train_model(model, train.x, train.y, TrainConfig(epochs=3), progress=False)
    return model.eval()


def compare(arch: str, repeats: int) -> None:
    model, test = trained(arch), resolve_data("mnist:test")
    kwargs = dict(sigmas=GRID, repeats=repeats, progress=False)
    start = time.perf_counter()
    grid = walknoise.scan(model, test, **kwargs).dataset
    t_grid = time.perf_counter() - start
    start = time.perf_counter()
    found = walknoise.scan(model, test, midpoint_search=True, **kwargs).dataset
    t_search = time.perf_counter() - start
    print(f"\n{arch}: {len(grid['layer'])} entries, 25 σ × {repeats} repeats")
    print(f"{'layer':<10} {'grid mid':>10} {'search mid':>10} {'error':>7} {'σ visited':>9}")
    errors, visits = [], found["search_visits"].values
    for i, layer in enumerate(grid["layer"].values):
        g, s = grid["midpoint"].values[i], found["midpoint"].values[i]
        reached = grid["midpoint_status"].values[i] == REACHED
        err = abs(s / g - 1) if reached else float("nan")
        errors.append(err)
        print(f"{layer:<10} {g:10.4g} {s:10.4g} {err:7.1%} {int(visits[i]):9d}")
    cells = int(visits.sum()) * repeats
    print(
        f"largest error {np.nanmax(errors):.1%}; most σ visited {int(visits.max())} of 25 "
        f"(limit 6.25); cells {cells} vs {25 * repeats * len(visits)} "
        f"({cells / (25 * repeats * len(visits)):.0%}); time {t_search:.1f} s vs {t_grid:.1f} s"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arch", choices=["lenet5", "mlp", "both"], default="both")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    for arch in ("lenet5", "mlp") if args.arch == "both" else (args.arch,):
        compare(arch, args.repeats)


if __name__ == "__main__":
    main()
