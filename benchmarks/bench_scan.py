"""Eval-only walk on bundled MNIST: walknoise against the naive loop in the same run, and the
adaptive midpoint search against the full grid.

The naive loop is the reference method: for every (layer, σ, repeat) cell, a forward hook
that adds fresh noise and a full forward pass over the data in batches of 128 (the Walking
Noise code's DataLoader batch size; ``--naive-batch`` changes it). walknoise runs the layers
before the noisy point once per batch, fans the activation out into one copy per σ, reuses
one ε for every σ (common random numbers) and runs convolutions channels-last on the CPU.
The search finds each midpoint from a handful of σ; its error is against the grid's midpoint.

    python benchmarks/bench_scan.py            # LeNet-5 and MLP, all points × 25 σ × 5 repeats
    python benchmarks/bench_scan.py --quick    # 9 σ × 2 repeats
    python benchmarks/bench_scan.py --arch mlp
"""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from torch import nn

import walknoise
from walknoise.data import resolve_data
from walknoise.metrics import REACHED
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
    batch: int,
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


def peak_rss_mib() -> float:
    """The process's peak RSS (VmHWM) since the last ``reset_peak_rss``."""
    with open("/proc/self/status") as f:
        fields = dict(line.split(":", 1) for line in f)
    return int(fields["VmHWM"].split()[0]) / 1024


def reset_peak_rss() -> None:
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # Linux: reset VmHWM to the current RSS


def timed(fn: Callable[[], Any]) -> tuple[Any, float, float]:
    """Result, seconds and peak RSS of the process (MiB) while ``fn`` ran."""
    reset_peak_rss()
    start = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - start, peak_rss_mib()


def trained(arch: str) -> nn.Module:
    train = resolve_data("mnist:train")
    with seeded_init(0):
        model = build_model(arch)
    train_model(model, train.x, train.y, TrainConfig(epochs=3), progress=False)
    return model.eval()


def walk(arch: str, n_sigma: int, repeats: int, naive_batch: int) -> None:
    model, test = trained(arch), resolve_data("mnist:test")
    sigmas = np.logspace(-2, 3, n_sigma)
    layers = [p.name for p in select(discover(model, test.input_shape))]
    cells = len(layers) * n_sigma * repeats
    print(
        f"\n{arch}: {len(test)} images, {len(layers)} points × {n_sigma} σ × {repeats} "
        f"repeats = {cells} cells, {torch.get_num_threads()} threads, load "
        f"{os.getloadavg()[0]:.1f}"
    )
    slow, t_naive, m_naive = timed(
        lambda: naive(model, test.x, test.y, layers, sigmas, repeats, naive_batch)
    )
    kwargs: dict[str, Any] = dict(sigmas=sigmas.tolist(), repeats=repeats, progress=False)
    grid, t_fast, m_fast = timed(lambda: walknoise.scan(model, test, **kwargs).dataset)
    print(f"{'':16}{'time':>9} {'cells/s':>9} {'peak RSS':>10}")
    for name, t, m in (
        (f"naive (batch {naive_batch})", t_naive, m_naive),
        ("walknoise.scan", t_fast, m_fast),
    ):
        print(f"{name:<16}{t:8.1f}s {cells / t:9.1f} {m:7.0f} MiB")
    print(f"speed-up        {t_naive / t_fast:8.1f}×")
    per_layer = grid["accuracy"].sel(layer=layers).mean("repeat").values
    gap = np.abs(slow.mean(axis=2) - per_layer).max()
    print(f"largest gap in repeat-mean accuracy (different noise draws): {gap:.3f}")
    search(model, test, grid, kwargs, t_fast)


def search(model: nn.Module, test: Any, grid: Any, kwargs: dict[str, Any], t_grid: float) -> None:
    found, t_search, _ = timed(
        lambda: walknoise.scan(model, test, midpoint_search=True, **kwargs).dataset
    )
    n_sigma, repeats = len(kwargs["sigmas"]), kwargs["repeats"]
    print(f"{'layer':<10} {'grid mid':>10} {'search mid':>10} {'error':>7} {'σ visited':>9}")
    errors, visits = [], found["search_visits"].values
    for i, layer in enumerate(grid["layer"].values):
        g, s = grid["midpoint"].values[i], found["midpoint"].values[i]
        reached = grid["midpoint_status"].values[i] == REACHED
        err = abs(s / g - 1) if reached else float("nan")
        errors.append(err)
        print(f"{layer:<10} {g:10.4g} {s:10.4g} {err:7.1%} {int(visits[i]):9d}")
    cells, full = int(visits.sum()) * repeats, n_sigma * repeats * len(visits)
    print(
        f"search: largest error {np.nanmax(errors):.1%}; most σ visited {int(visits.max())} "
        f"of {n_sigma}; cells {cells} of {full} ({cells / full:.0%}); "
        f"{t_search:.1f} s vs {t_grid:.1f} s for the grid"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--arch", choices=["lenet5", "mlp", "both"], default="both")
    parser.add_argument("--naive-batch", type=int, default=128)
    args = parser.parse_args()
    n_sigma, repeats = (9, 2) if args.quick else (25, 5)
    for arch in ("lenet5", "mlp") if args.arch == "both" else (args.arch,):
        walk(arch, n_sigma, repeats, args.naive_batch)


if __name__ == "__main__":
    main()
