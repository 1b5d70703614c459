"""Eval walk: walknoise against a naive loop and an expert's hand-written loop.

Also the multiply-adds each does against the minimum, the share of the machine's kernel
throughput reached, and the midpoint search against the full grid.

Methods (each timed in a process of its own, so start-up counts and nothing leaks between):

* naive: one full forward pass per (layer, σ, repeat) cell, a hook adding fresh noise, over
  tensors in memory in batches of 128 (the Walking Noise code's DataLoader batch size;
  ``--naive-batch``). ``--all-naive`` adds batches of 500 and, on MNIST, the reference
  code's DataLoader that converts each image to floats as it is read.
* expert: ``_expert_loop.py``, the ~60-line loop an expert would write: per point the clean
  prefix once per batch, one ε per (point, repeat, batch) scaled by every σ, σ copies
  stacked into passes of at most 2**22 activation elements, inference mode, channels-last.
* walknoise: ``walknoise.scan(..., include_global=False, refine=False)``.

Expert and walknoise run as whole processes alternated (``--pairs``, expert first in even
pairs); medians are reported, of the walk's own wall and CPU time and of the whole process.
Multiply-adds (convolutions and matrix products, counted at the ATen level by
``_macs.count_macs`` in an extra untimed run) are set against the minimum (the clean part of
the model once per sample and point, the part after the noise once per cell and sample) and
the naive count. The share of the machine's kernel throughput is 2 × multiply-adds / wall
over the GFLOP/s of a large float32 matmul measured in the same run.

Models: LeNet-5 and the MLP, trained 3 epochs on MNIST, walked on the bundled 2,000 test
images, 25 σ × 5 repeats; a CIFAR-style ResNet-20 (``_resnet20.py``) trained here (2 epochs)
on the bundled MNIST as 3×32×32 input, walked on 500 test images, 3 σ × 2 repeats (no
search: a 3-point grid has no midpoint worth comparing).

    python benchmarks/bench_scan.py             # LeNet-5, MLP and ResNet-20, 3 pairs
    python benchmarks/bench_scan.py --quick     # a smoke run: fewer images, σ, repeats, 1 pair
    python benchmarks/bench_scan.py --arch mlp --json mlp.json
    python benchmarks/bench_scan.py --no-naive  # expert, walknoise and the search only
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from _machine import machine
from torch import nn


@dataclass
class Setup:
    arch: str
    model: nn.Module
    x: torch.Tensor
    y: torch.Tensor
    layers: list[str]
    sigmas: list[float]
    repeats: int


# ------------------------------------------------------------------------------- the methods


def walknoise_kwargs(s: Setup) -> dict[str, Any]:
    return dict(
        sigmas=s.sigmas, layers=s.layers, repeats=s.repeats, include_global=False,
        refine=False, progress=False,
    )  # fmt: skip


def run_method(method: str, s: Setup, naive_batch: int) -> np.ndarray:
    """Accuracies (layer, σ, repeat) of one method."""
    if method == "walknoise":
        import walknoise  # here: the other methods' processes do not import it

        ds = walknoise.scan(s.model, (s.x, s.y), **walknoise_kwargs(s)).dataset
        return np.asarray(ds["accuracy"].transpose("layer", "sigma", "repeat").values)
    if method == "expert":
        from _expert_loop import expert_walk

        return expert_walk(s.model, s.x, s.y, s.layers, s.sigmas, s.repeats)
    from _naive_loop import naive, reference_batches, tensor_batches

    loaders = {
        "naive": lambda: tensor_batches(s.x, s.y, naive_batch),
        "naive-500": lambda: tensor_batches(s.x, s.y, 500),
        "naive-dataloader": lambda: reference_batches(s.x, s.y, naive_batch),
    }
    return naive(s.model, loaders[method](), s.layers, s.sigmas, s.repeats)


def worker(method: str, setup_path: str, out: str, naive_batch: int) -> None:
    """The body of one timed process: load the setup, walk, write times and accuracies."""
    s: Setup = torch.load(setup_path, weights_only=False)
    wall, cpu = time.perf_counter(), time.process_time()
    acc = run_method(method, s, naive_batch)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    np.save(out + ".npy", acc)
    Path(out + ".json").write_text(json.dumps({"wall": wall, "cpu": cpu}))


def timed_process(method: str, setup_path: str, naive_batch: int) -> dict[str, Any]:
    """Run one method in a fresh process: its walk's and the whole process's wall and CPU."""
    out = setup_path + f".{method}"
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    cmd = [sys.executable, __file__, "--worker", method, "--setup", setup_path, "--out", out]
    subprocess.run([*cmd, "--naive-batch", str(naive_batch)], check=True)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
    walk = json.loads(Path(out + ".json").read_text())
    return {"wall": walk["wall"], "cpu": walk["cpu"], "process_wall": wall,
            "process_cpu": cpu, "acc": np.load(out + ".npy")}  # fmt: skip


def median_of(runs: list[dict[str, Any]]) -> dict[str, Any]:
    keys = ("wall", "cpu", "process_wall", "process_cpu")
    return {k: statistics.median(r[k] for r in runs) for k in keys} | {"acc": runs[0]["acc"]}


# ------------------------------------------------------------------------------ measurements


def gemm_gflops(n: int = 2048, tries: int = 5) -> float:
    """Best GFLOP/s of an n×n float32 matmul: the machine's kernel throughput here, now."""
    a, b = torch.randn(n, n), torch.randn(n, n)
    a @ b  # warm-up
    best = min(_seconds(lambda: a @ b) for _ in range(tries))
    return 2 * n**3 / best / 1e9


def _seconds(fn: Callable[[], Any]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def work(s: Setup) -> dict[str, Any]:
    """Multiply-adds counted while walknoise and the expert loop walk (untimed), the minimum
    and the naive count; and walknoise's result, for the search comparison."""
    from _expert_loop import expert_walk
    from _macs import count_macs, minimum_walk_macs, naive_walk_macs

    import walknoise

    found: list[Any] = []
    n, shape = len(s.x), tuple(s.x.shape[1:])
    args = (s.model, shape, s.layers, n, len(s.sigmas), s.repeats)
    return {
        "walknoise": count_macs(
            lambda: found.append(walknoise.scan(s.model, (s.x, s.y), **walknoise_kwargs(s)))
        ),
        "expert": count_macs(lambda: expert_walk(s.model, s.x, s.y, s.layers, s.sigmas, s.repeats)),
        "minimum": minimum_walk_macs(*args),
        "naive": naive_walk_macs(*args),
        "grid": found[0].dataset,
    }


# ------------------------------------------------------------------------------------ models


def setup(arch: str, quick: bool) -> Setup:
    """The model, the data and the grid of one benchmark entry."""
    from walknoise.noise.points import discover, select

    model: nn.Module
    if arch == "resnet20":
        from _resnet20 import load_trained, mnist32, train_mnist32

        with tempfile.TemporaryDirectory() as tmp:
            trained_on = train_mnist32(Path(tmp, "r20.pt"), epochs=1 if quick else 2)
            model = load_trained(Path(tmp, "r20.pt"))
        print(f"resnet20 trained on MNIST as 3x32x32: test accuracy {trained_on['test_accuracy']}")
        x, y = mnist32("test")
        x, y = x[: 64 if quick else 500], y[: 64 if quick else 500]
        n_sigma, repeats = (3, 1) if quick else (3, 2)
    else:
        from walknoise.data import resolve_data

        model, test = trained(arch, epochs=1 if quick else 3), resolve_data("mnist:test")
        x, y = (test.x[:500], test.y[:500]) if quick else (test.x, test.y)
        n_sigma, repeats = (5, 2) if quick else (25, 5)
    layers = [p.name for p in select(discover(model, tuple(x.shape[1:])))]
    sigmas = np.logspace(-2, 3, n_sigma).tolist()
    return Setup(arch, model, x, y, layers, sigmas, repeats)


def trained(arch: str, epochs: int) -> nn.Module:
    from walknoise.data import resolve_data
    from walknoise.models import build_model
    from walknoise.training import TrainConfig, seeded_init, train_model

    train = resolve_data("mnist:train")
    with seeded_init(0):
        model = build_model(arch)
    train_model(model, train.x, train.y, TrainConfig(epochs=epochs), progress=False)
    return model.eval()


# ------------------------------------------------------------------------------ the benchmark


def bench(s: Setup, args: argparse.Namespace, peak: float, tmp: str) -> dict[str, Any]:
    path = os.path.join(tmp, f"{s.arch}.pt")
    torch.save(s, path)
    cells = len(s.layers) * len(s.sigmas) * s.repeats
    print(
        f"\n{s.arch}: {len(s.x)} samples, {len(s.layers)} points × {len(s.sigmas)} σ × "
        f"{s.repeats} repeats = {cells} cells; {torch.get_num_threads()} threads, "
        f"OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY', 'unset')}, load "
        f"{os.getloadavg()[0]:.1f}",
        flush=True,
    )
    runs: dict[str, dict[str, Any]] = {}
    naive_methods = ["naive"] if not args.all_naive else ["naive", "naive-500"]
    if args.all_naive and s.arch != "resnet20":
        naive_methods.append("naive-dataloader")
    for method in naive_methods if not args.no_naive else []:
        runs[method] = timed_process(method, path, args.naive_batch)
    pairs: dict[str, list[dict[str, Any]]] = {"expert": [], "walknoise": []}
    for p in range(args.pairs):
        for method in ("expert", "walknoise") if p % 2 == 0 else ("walknoise", "expert"):
            pairs[method].append(timed_process(method, path, args.naive_batch))
    runs |= {m: median_of(r) for m, r in pairs.items()}
    macs = work(s)
    report(s, runs, pairs, macs, peak)
    if not args.no_search and s.arch != "resnet20":  # 3 σ: no midpoint to compare
        search(s, macs["grid"], runs["walknoise"]["wall"], args.quick)
    return {
        "arch": s.arch, "samples": len(s.x), "points": len(s.layers),
        "sigmas": len(s.sigmas), "repeats": s.repeats, "threads": torch.get_num_threads(),
        "gemm_gflops": peak,
        "runs": {m: {k: v for k, v in r.items() if k != "acc"} for m, r in runs.items()},
        "pairs": {m: [{k: v for k, v in r.items() if k != "acc"} for r in rs]
                  for m, rs in pairs.items()},
        "macs": {k: v for k, v in macs.items() if k != "grid"},
        "accuracy": {m: r["acc"].tolist() for m, r in runs.items()},
    }  # fmt: skip


def report(
    s: Setup,
    runs: dict[str, dict[str, Any]],
    pairs: dict[str, list[dict[str, Any]]],
    macs: dict[str, Any],
    peak: float,
) -> None:
    fast, ref = runs["walknoise"], runs.get("naive")
    print(f"{'':22}{'walk wall':>10}{'walk CPU':>10}{'proc wall':>10}{'proc CPU':>10}"
          f"{'walknoise faster (wall, CPU)':>31}")  # fmt: skip
    for name, r in runs.items():
        label = name if name.startswith("naive") else f"{name} (median of {len(pairs[name])})"
        print(
            f"{label:<22}{r['wall']:9.1f}s{r['cpu']:9.1f}s{r['process_wall']:9.1f}s"
            f"{r['process_cpu']:9.1f}s{r['wall'] / fast['wall']:15.2f}×"
            f"{r['cpu'] / fast['cpu']:12.2f}×"
        )
    e_w = [e["wall"] / w["wall"] for e, w in zip(pairs["expert"], pairs["walknoise"], strict=True)]
    print(f"expert / walknoise wall per pair: {', '.join(f'{v:.2f}' for v in e_w)}")
    g = 1e9
    print(
        f"multiply-adds: naive {macs['naive'] / g:,.1f} G, minimum {macs['minimum'] / g:,.1f} G, "
        f"expert {macs['expert'] / g:,.1f} G ({macs['expert'] / macs['minimum']:.2f}× the "
        f"minimum), walknoise {macs['walknoise'] / g:,.1f} G "
        f"({macs['walknoise'] / macs['minimum']:.2f}× the minimum)"
    )
    rate = {m: 2 * macs[m] / runs[m]["wall"] / g for m in ("walknoise", "expert")}
    print(
        f"kernel throughput: float32 GEMM {peak:.0f} GFLOP/s; walknoise "
        f"{rate['walknoise']:.1f} GFLOP/s ({rate['walknoise'] / peak:.0%} of it), expert "
        f"{rate['expert']:.1f} ({rate['expert'] / peak:.0%})"
    )
    mean = {m: r["acc"].mean(axis=2) for m, r in runs.items()}
    spread = fast["acc"].std(axis=2).max() if s.repeats > 1 else float("nan")
    gaps = ", ".join(
        f"{m} {np.abs(a - mean['walknoise']).max():.3f}"
        for m, a in mean.items()
        if m != "walknoise"
    )
    print(f"largest gap in repeat-mean accuracy from walknoise (other noise draws): {gaps}; "
          f"largest repeat std of walknoise {spread:.3f}")  # fmt: skip
    if ref is not None:
        # the naive loop and the expert's draw the same ε (same seeds, same order), so their
        # accuracies match cell for cell up to argmax near-ties: a check of the expert loop
        same = (ref["acc"] == runs["expert"]["acc"]).mean()
        print(f"naive / expert wall: {ref['wall'] / runs['expert']['wall']:.2f}×; naive and "
              f"expert accuracies equal in {same:.1%} of the cells")  # fmt: skip


def search(s: Setup, grid: Any, t_grid: float, quick: bool) -> None:
    import walknoise
    from walknoise.walk.metrics import REACHED

    start = time.perf_counter()
    found = walknoise.scan(s.model, (s.x, s.y), midpoint_search=True, **walknoise_kwargs(s)).dataset
    t_search = time.perf_counter() - start
    print(f"{'layer':<10} {'grid mid':>10} {'search mid':>10} {'error':>7} {'σ visited':>9}")
    errors, visits = [], found["search_visits"].values
    for i, layer in enumerate(grid["layer"].values):
        g, f = grid["midpoint"].values[i], found["midpoint"].values[i]
        err = abs(f / g - 1) if grid["midpoint_status"].values[i] == REACHED else float("nan")
        errors.append(err)
        print(f"{layer:<10} {g:10.4g} {f:10.4g} {err:7.1%} {int(visits[i]):9d}")
    cells, full = int(visits.sum()) * s.repeats, len(s.sigmas) * s.repeats * len(visits)
    worst = np.nanmax(errors) if not np.isnan(errors).all() else float("nan")
    print(
        f"search: largest error {worst:.1%}; most σ visited {int(visits.max())} of "
        f"{len(s.sigmas)}; cells {cells} of {full} ({cells / full:.0%}); {t_search:.1f} s "
        f"in-process vs {t_grid:.1f} s for the grid's walk"
        + (" (--quick: a coarse grid, its midpoints are rough)" if quick else "")
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smoke run: small grid, 1 pair")
    parser.add_argument("--arch", choices=["lenet5", "mlp", "resnet20", "both", "all"],
                        default="all", help="both: LeNet-5 and MLP")  # fmt: skip
    parser.add_argument("--pairs", type=int, default=None, help="expert/walknoise pairs (3)")
    parser.add_argument("--naive-batch", type=int, default=128)
    parser.add_argument("--no-naive", action="store_true", help="expert and walknoise only")
    parser.add_argument("--all-naive", action="store_true", help="also batch 500, DataLoader")
    parser.add_argument("--no-search", action="store_true", help="skip the midpoint search")
    parser.add_argument("--threads", type=int, default=None, help="torch threads, every method")
    parser.add_argument("--json", metavar="PATH", help="write every number here")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--setup", help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
        os.environ["BENCH_THREADS"] = str(args.threads)
    elif os.environ.get("BENCH_THREADS"):  # a worker: the parent's --threads
        torch.set_num_threads(int(os.environ["BENCH_THREADS"]))
    if args.worker:
        worker(args.worker, args.setup, args.out, args.naive_batch)
        return
    args.pairs = args.pairs or (1 if args.quick else 3)
    archs = {"both": ["lenet5", "mlp"], "all": ["lenet5", "mlp", "resnet20"]}
    peak = gemm_gflops()
    print(f"float32 GEMM: {peak:.0f} GFLOP/s (2048², best of 5)")
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        for arch in archs.get(args.arch, [args.arch]):
            results.append(bench(setup(arch, args.quick), args, peak, tmp))
    if args.json:
        Path(args.json).write_text(
            json.dumps({"machine": machine(), "quick": args.quick, "results": results}, indent=1)
        )
        print(f"\nwrote {args.json}")


if __name__ == "__main__":
    main()
