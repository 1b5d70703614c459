"""Eval-only walk on bundled MNIST: walknoise against the naive loop in the same run, and the
adaptive midpoint search against the full grid.

The naive loop is the reference method: for every (layer, σ, repeat) cell, a forward hook
that adds fresh noise and a full forward pass over the data. It runs three ways: over
tensors in memory in batches of 128 (the Walking Noise code's DataLoader batch size;
``--naive-batch`` changes it) and of 500 (walknoise's own batch), and through a DataLoader
that converts each image to floats as it is read, as the reference code does. walknoise runs
the layers before the noisy point once per batch, fans the activation out into one copy per
σ, reuses one ε for every σ (common random numbers) and runs convolutions channels-last on
the CPU.
The search finds each midpoint from a handful of σ; its error is against the grid's midpoint.

    python benchmarks/bench_scan.py            # LeNet-5 and MLP, all points × 25 σ × 5 repeats
    python benchmarks/bench_scan.py --quick    # 9 σ × 2 repeats
    python benchmarks/bench_scan.py --arch mlp
    python benchmarks/bench_scan.py --no-naive # the scan and the search only
"""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Callable, Iterable
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

import walknoise
from walknoise.data import resolve_data
from walknoise.models import build_model
from walknoise.noise.points import discover, select
from walknoise.training import TrainConfig, seeded_init, train_model
from walknoise.walk.metrics import REACHED

Batches = Callable[[], Iterable[tuple[torch.Tensor, torch.Tensor]]]


def tensor_batches(x: torch.Tensor, y: torch.Tensor, batch: int) -> Batches:
    """Slices of tensors already in memory: the fastest hand-written loop."""
    return lambda: ((x[s : s + batch], y[s : s + batch]) for s in range(0, len(x), batch))


class PerItemImages(Dataset[tuple[torch.Tensor, int]]):
    """Bytes turned into a float tensor per item, as torchvision's MNIST with ``ToTensor``
    does in the Walking Noise code (their ``data/MNIST.py``, ``Normalize(0.5, 0.5)`` off by
    default)."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor) -> None:
        self.raw = (x * 255).round().to(torch.uint8)  # walknoise's MNIST is pixels / 255
        self.y = y.tolist()

    def __len__(self) -> int:
        return len(self.y)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        return self.raw[i].float() / 255, self.y[i]


def reference_batches(x: torch.Tensor, y: torch.Tensor, batch: int) -> Batches:
    loader = DataLoader(PerItemImages(x, y), batch_size=batch)  # the reference's test loader
    return lambda: iter(loader)


def naive(
    model: nn.Module,
    batches: Batches,
    layers: list[str],
    sigmas: np.ndarray,
    repeats: int,
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
                correct = total = 0
                with torch.inference_mode():
                    for xb, yb in batches():
                        correct += int((model(xb).argmax(1) == yb).sum())
                        total += len(yb)
                handle.remove()
                acc[i, j, r] = correct / total
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


def walk(arch: str, n_sigma: int, repeats: int, naive_batch: int, naive_loops: bool) -> None:
    model, test = trained(arch), resolve_data("mnist:test")
    sigmas = np.logspace(-2, 3, n_sigma)
    layers = [p.name for p in select(discover(model, test.input_shape))]
    cells = len(layers) * n_sigma * repeats
    print(
        f"\n{arch}: {len(test)} images, {len(layers)} points × {n_sigma} σ × {repeats} "
        f"repeats = {cells} cells, {torch.get_num_threads()} threads, load "
        f"{os.getloadavg()[0]:.1f}"
    )
    loops = {
        f"naive, tensors, batch {naive_batch}": tensor_batches(test.x, test.y, naive_batch),
        "naive, tensors, batch 500": tensor_batches(test.x, test.y, 500),
        f"naive, reference DataLoader, batch {naive_batch}": reference_batches(
            test.x, test.y, naive_batch
        ),
    }
    runs = {
        name: timed(lambda b=batches: naive(model, b, layers, sigmas, repeats))
        for name, batches in loops.items()
        if naive_loops
    }
    kwargs: dict[str, Any] = dict(
        sigmas=sigmas.tolist(), repeats=repeats, progress=False, include_global=False
    )
    grid, t_fast, m_fast = timed(lambda: walknoise.scan(model, test, **kwargs).dataset)
    print(f"{'':40}{'time':>9} {'cells/s':>9} {'peak RSS':>10} {'scan is':>9}")
    for name, (_, t, m) in [*runs.items(), ("walknoise.scan", (grid, t_fast, m_fast))]:
        print(f"{name:<40}{t:8.1f}s {cells / t:9.1f} {m:7.0f} MiB {t / t_fast:8.1f}×")
    per_layer = grid["accuracy"].sel(layer=layers).mean("repeat").values
    gaps = [np.abs(acc.mean(axis=2) - per_layer).max() for acc, _, _ in runs.values()]
    if gaps:
        print(f"largest gap in repeat-mean accuracy (different noise draws): {max(gaps):.3f}")
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
    parser.add_argument("--no-naive", action="store_true", help="only the scan and the search")
    args = parser.parse_args()
    n_sigma, repeats = (9, 2) if args.quick else (25, 5)
    for arch in ("lenet5", "mlp") if args.arch == "both" else (args.arch,):
        walk(arch, n_sigma, repeats, args.naive_batch, not args.no_naive)


if __name__ == "__main__":
    main()
