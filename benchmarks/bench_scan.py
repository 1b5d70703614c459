"""Eval-only walk on bundled MNIST: walknoise against the naive loop, same run (LeNet-5, MLP).

The naive loop is what people hand-write: for every (layer, σ, repeat) cell, a forward hook
that adds fresh noise and a full forward pass over the data. walknoise runs the layers before
the noisy point once per batch, fans the activation out into one copy per σ and reuses one ε
for every σ (common random numbers).

    python benchmarks/bench_walk.py            # 12 points × 25 σ × 5 repeats (minutes)
    python benchmarks/bench_walk.py --quick    # 12 points × 9 σ × 2 repeats
    python benchmarks/bench_walk.py --arch mlp # the 3×64 MLP instead
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch
from torch import nn

import walknoise
from walknoise.data import resolve_data
from walknoise.models import build_model
from walknoise.points import discover, select
from walknoise.training import TrainConfig, seeded_init, train_model


def naive(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    layers: list[str],
    sigmas: np.ndarray,
    repeats: int,
    batch: int = 500,
) -> np.ndarray:
    """One full forward pass per cell with a plain additive-noise hook."""
    modules = dict(model.named_modules())
    acc = np.zeros((len(layers), len(sigmas), repeats))
    for i, layer in enumerate(layers):
        for j, sigma in enumerate(sigmas):
            for r in range(repeats):
                gen = torch.Generator().manual_seed(1000 * i + r)

                def add(
                    t: torch.Tensor, s: float = float(sigma), g: torch.Generator = gen
                ) -> torch.Tensor:
                    return t + s * torch.randn(t.shape, generator=g)

                if layer == "<input>":
                    handle = model.register_forward_pre_hook(lambda _m, a: (add(a[0]),))
                else:
                    handle = modules[layer].register_forward_hook(lambda _m, _i, o: add(o))
                correct = 0
                with torch.inference_mode():
                    for s in range(0, len(x), batch):
                        correct += int(
                            (model(x[s : s + batch]).argmax(1) == y[s : s + batch]).sum()
                        )
                handle.remove()
                acc[i, j, r] = correct / len(x)
    return acc


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--arch", choices=["lenet5", "mlp"], default="lenet5")
    args = parser.parse_args()
    n_sigma, repeats = (9, 2) if args.quick else (25, 5)
    sigmas = np.logspace(-2, 3, n_sigma)
    train, test = resolve_data("mnist:train"), resolve_data("mnist:test")
    with seeded_init(0):
        model = build_model(args.arch)
    train_model(model, train.x, train.y, TrainConfig(epochs=3), progress=False)
    layers = [p.name for p in select(discover(model, test.input_shape))]
    cells = len(layers) * n_sigma * repeats
    print(
        f"{args.arch}, {len(test)} images, {len(layers)} points × {n_sigma} σ × {repeats} "
        f"repeats = {cells} cells, {torch.get_num_threads()} threads"
    )

    start = time.perf_counter()
    slow = naive(model, test.x, test.y, layers, sigmas, repeats)
    t_naive = time.perf_counter() - start
    start = time.perf_counter()
    fast = walknoise.scan(
        model, test, sigmas=sigmas.tolist(), repeats=repeats, include_global=False, progress=False
    )
    t_fast = time.perf_counter() - start
    gap = np.abs(slow.mean(axis=2) - fast.accuracy.mean("repeat").values).max()
    print(f"naive loop      {t_naive:8.1f} s  ({cells / t_naive:7.1f} cells/s)")
    print(f"walknoise.scan  {t_fast:8.1f} s  ({cells / t_fast:7.1f} cells/s)")
    print(f"speed-up        {t_naive / t_fast:8.1f}×")
    print(f"largest gap in repeat-mean accuracy (different noise draws): {gap:.3f}")


if __name__ == "__main__":
    main()
