"""Multiply-adds of a CIFAR ResNet-20 walk (all 64 points, 9 σ × 2 repeats, 128 images)
against the minimum, with the σ copies fanned out inside the enclosing block through its
traced graph (the engine), at the block's input and at the network's input (the earlier
fallbacks); counted with FlopCounterMode.

    python benchmarks/bench_resnet_macs.py --json docs/bench_resnet_macs.json
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import torch
from _machine import machine

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import walknoise
from benchmarks._macs import count_macs, minimum_walk_macs
from benchmarks._resnet20 import random_data, resnet20
from walknoise.noise.points import select, survey
from walknoise.walk import enclosing, runner

SIGMAS, REPEATS, N = 9, 2, 128


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    torch.manual_seed(0)
    model = resnet20().eval()
    data = random_data(model, N)
    found = survey(model, (3, 32, 32), torch.device("cpu")).points
    points = [p.name for p in select(found, None, None)]
    kw = dict(sigmas=f"log:1e-2:1e1:{SIGMAS}", repeats=REPEATS, include_global=False,
              refine=False, progress=False)  # fmt: skip
    minimum = minimum_walk_macs(model, (3, 32, 32), points, N, SIGMAS, REPEATS)
    counts = {"traced": count_macs(lambda: walknoise.scan(model, data, **kw))}
    enclosing.WAYS = ("block input",)  # replicate the block's input instead
    counts["block_input"] = count_macs(lambda: walknoise.scan(model, data, **kw))
    runner.find_fan = lambda *a: None  # the network's input instead
    counts["input_replicated"] = count_macs(lambda: walknoise.scan(model, data, **kw))
    out: dict[str, Any] = {"machine": machine(), "points": len(points)}
    out["minimum_G"] = minimum / 1e9
    out |= {f"{k}_G": v / 1e9 for k, v in counts.items()}
    out |= {f"{k}_ratio": v / minimum for k, v in counts.items()}
    print(json.dumps(out, indent=1))
    if args.json:
        args.json.write_text(json.dumps(out, indent=1) + "\n")


if __name__ == "__main__":
    main()
