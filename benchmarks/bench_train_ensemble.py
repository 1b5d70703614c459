"""Train-phase cells of one layer: one vmapped ensemble against one-by-one training, same run.

Both paths train the same cells (σ × repeats) of one noisy layer on the bundled MNIST train
split with the same seeds; the script prints each path's time, the ratio, and the largest
weight difference between the two (float rounding only).

    python benchmarks/bench_train_ensemble.py                    # MLP and LeNet-5
    python benchmarks/bench_train_ensemble.py --arch mlp --sigmas 9 --repeats 3 --epochs 2
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch
from torch import nn

from walknoise.data import TensorData, resolve_data
from walknoise.models import build_model
from walknoise.noise.kinds import Additive
from walknoise.training import TrainConfig
from walknoise.walk.ensemble import ELEMENT_BUDGET, group_size, train_ensemble, widest_activation
from walknoise.walk.trainphase import fresh, train_under_noise

LAYER = {"mlp": "fc2", "lenet5": "conv2"}


def one_by_one(
    template: nn.Module, members: list[tuple[float, int]], data: TensorData, layer: str,
    config: TrainConfig,
) -> list[nn.Module]:  # fmt: skip
    """Each cell on its own, as the train phase did before (``walknoise.train_under_noise``)."""
    return [
        train_under_noise(
            template, data, noise=Additive(), layer=layer, sigma=s, config=config, seed=seed
        )
        for s, seed in members
    ]


def ensemble(
    template: nn.Module, members: list[tuple[float, int]], data: TensorData, layer: str,
    config: TrainConfig,
) -> list[nn.Module]:  # fmt: skip
    """The same cells, one ensemble per seed of at most ``group_size`` members (as
    ``TrainPhase`` groups them)."""
    size = group_size(widest_activation(fresh(template, 0), data.x), config.batch_size)
    seeds = sorted({seed for _, seed in members})
    groups = [[m for m in members if m[1] == seed] for seed in seeds]
    out: list[nn.Module] = []
    for group in (g[i : i + size] for g in groups for i in range(0, len(g), size)):
        models = [fresh(template, seed) for _, seed in group]
        out += train_ensemble(
            models, group, data.x, data.y, noise=Additive(), points=[layer], scales=[1.0],
            config=config,
        )  # fmt: skip
    return out


def compare(arch: str, n_sigma: int, repeats: int, epochs: int) -> None:
    data = resolve_data("mnist:train")
    template = build_model(arch)
    members = [(float(s), r) for r in range(repeats) for s in np.logspace(-2, 1, n_sigma)]
    config = TrainConfig(epochs=epochs, batch_size=64)
    start = time.perf_counter()
    slow = one_by_one(template, members, data, LAYER[arch], config)
    t_slow = time.perf_counter() - start
    start = time.perf_counter()
    fast = ensemble(template, members, data, LAYER[arch], config)
    t_fast = time.perf_counter() - start
    gaps = torch.cat(
        [
            (a - b).abs().flatten()
            for m1, m2 in zip(slow, fast, strict=True)
            for a, b in zip(m1.state_dict().values(), m2.state_dict().values(), strict=True)
        ]
    )
    per = group_size(widest_activation(fresh(template, 0), data.x), 64)
    print(
        f"{arch}, noise at {LAYER[arch]}: {len(members)} cells ({n_sigma} σ × {repeats} "
        f"repeats), {epochs} epoch(s) on {len(data)} images, {torch.get_num_threads()} threads, "
        f"≤ {per} members per ensemble (budget {ELEMENT_BUDGET:,} elements)"
    )
    print(f"  one by one  {t_slow:7.1f} s")
    print(f"  ensemble    {t_fast:7.1f} s   ratio {t_slow / t_fast:.2f}×")
    print(f"  weight difference: median {gaps.median():.1e}, largest {gaps.max():.1e}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arch", choices=["mlp", "lenet5", "both"], default="both")
    parser.add_argument("--sigmas", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--epochs", type=int, default=1)
    args = parser.parse_args()
    for arch in ("mlp", "lenet5") if args.arch == "both" else (args.arch,):
        compare(arch, args.sigmas, args.repeats, args.epochs)


if __name__ == "__main__":
    main()
