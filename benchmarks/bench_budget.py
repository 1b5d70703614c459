"""The element budget of a stacked forward pass: walk time across budgets, against the rule.

``walknoise.walk.budget.element_budget`` sizes a pass from the last-level cache (a quarter of
it in float32 elements, clamped to 2^20..2^23). This sweeps the budget from 2^16 to 2^24 on
two walks, in one process, budgets in alternating order each round, and prints each budget's
median walk time, its ratio to the fastest and to the rule's budget, and the share of the
machine's float32 GEMM throughput reached (multiply-adds counted once: the budget changes
how the work is cut, not how much there is).

* LeNet-5 (trained 3 epochs), bundled 2,000 MNIST test images, 12 points × 25 σ × 2 repeats;
* ResNet-20 (``_resnet20.py``, 2 epochs on MNIST as 3×32×32), 200 test images, every 4th
  point (16) × 3 σ × 2 repeats.

    python benchmarks/bench_budget.py --rounds 3 --json docs/bench_budget.json
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from _machine import machine
from _macs import count_macs
from bench_scan import Setup, gemm_gflops, setup, walknoise_kwargs

import walknoise
import walknoise.walk.layout as layout
import walknoise.walk.runner as runner
from walknoise.heap import keep_freed_memory
from walknoise.walk.budget import element_budget

BUDGETS = [2**k for k in range(16, 25)]


def entries(quick: bool) -> list[Setup]:
    lenet = setup("lenet5", quick)
    lenet.repeats = 2
    resnet = setup("resnet20", quick)
    resnet.x, resnet.y, resnet.layers = resnet.x[:200], resnet.y[:200], resnet.layers[::4]
    return [lenet, resnet]


def walk(s: Setup, budget: int) -> float:
    for module in (runner, layout):  # the runner's windows and the layout probe's batch
        module.element_budget = lambda device, b=budget: b  # type: ignore[attr-defined]
    start = time.perf_counter()
    walknoise.scan(s.model, (s.x, s.y), **walknoise_kwargs(s))
    return time.perf_counter() - start


def sweep(s: Setup, rounds: int, peak: float) -> dict[str, Any]:
    walk(s, 2**21)  # warm-up: imports, first allocations
    times: dict[int, list[float]] = {b: [] for b in BUDGETS}
    for r in range(rounds):
        for b in BUDGETS if r % 2 == 0 else BUDGETS[::-1]:
            times[b].append(walk(s, b))
    macs = count_macs(lambda: walk(s, 2**21))
    med = {b: statistics.median(t) for b, t in times.items()}
    rule, best = element_budget(torch.device("cpu")), min(med.values())
    print(f"\n{s.arch}: {len(s.x)} samples, {len(s.layers)} points × {len(s.sigmas)} σ × "
          f"{s.repeats} repeats; {macs / 1e9:.1f} G multiply-adds; rule's budget 2^"
          f"{int(np.log2(rule))}")  # fmt: skip
    print(f"{'budget':>8}{'MiB f32':>9}{'median':>9}{'/ best':>8}{'/ rule':>8}{'GEMM share':>12}")
    for b in BUDGETS:
        share = 2 * macs / med[b] / 1e9 / peak
        vs_rule = med[b] / med.get(rule, float("nan"))
        print(f"{'2^' + str(int(np.log2(b))):>8}{b * 4 / 2**20:9.2f}{med[b]:8.2f}s"
              f"{med[b] / best:8.2f}{vs_rule:8.2f}{share:12.0%}")  # fmt: skip
    return {
        "arch": s.arch, "samples": len(s.x), "points": len(s.layers), "sigmas": len(s.sigmas),
        "repeats": s.repeats, "macs": macs, "rule_budget": rule,
        "seconds": {str(b): t for b, t in times.items()},
        "median": {str(b): t for b, t in med.items()},
    }  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="smoke run: small data, 1 round")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    keep_freed_memory()  # as the CLI does
    peak = gemm_gflops()
    print(f"float32 GEMM: {peak:.0f} GFLOP/s; {machine()}")
    rounds = 1 if args.quick else args.rounds
    out = {"machine": machine(), "gemm_gflops": peak, "rounds": rounds,
           "results": [sweep(s, rounds, peak) for s in entries(args.quick)]}  # fmt: skip
    if args.json:
        args.json.write_text(json.dumps(out, indent=1) + "\n")
        print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
